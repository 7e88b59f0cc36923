//! Model ratings from every gauntlet game: a Bradley–Terry (Elo) fit over all players of a pool
//! at once, with draws as half a win, the `random` baseline anchored at Elo 0, and a wide
//! Gaussian prior (σ = 1,000 Elo) so a player that won every game still gets a finite rating.
//! The 95% interval of each rating comes from the curvature of the fit (the inverse Hessian).
//! Pure functions: the same games always give the same ratings, so recomputing them from the
//! gauntlets' counted results can never count a game twice.

use std::collections::BTreeMap;

use crate::sprt::Record;

/// Name of the anchor player (Elo 0 by definition).
pub const ANCHOR: &str = "baseline:random";
/// Elo per natural-log unit of strength.
const ELO_PER_NAT: f64 = 400.0 / std::f64::consts::LN_10;
/// Standard deviation of the prior, in Elo.
const PRIOR_SD_ELO: f64 = 1000.0;
/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

/// Games between two players, from `a`'s side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pairing {
    /// One player.
    pub a: String,
    /// The other.
    pub b: String,
    /// `a`'s wins, losses and draws against `b`.
    pub record: Record,
}

/// A player's rating.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rating {
    /// Elo, relative to the anchor.
    pub elo: f64,
    /// Lower end of the 95% interval.
    pub low: f64,
    /// Upper end of the 95% interval.
    pub high: f64,
    /// Games it played.
    pub games: u64,
}

#[allow(clippy::cast_precision_loss)] // game counts stay far below 2^52
fn f(n: u64) -> f64 {
    n as f64
}

/// Solves `m x = v` by Gaussian elimination with partial pivoting; none if `m` is singular.
#[allow(clippy::many_single_char_names)] // the usual notation
fn solve(mut m: Vec<Vec<f64>>, mut v: Vec<f64>) -> Option<Vec<f64>> {
    let n = v.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|a, b| m[*a][col].abs().total_cmp(&m[*b][col].abs()))?;
        if m[pivot][col].abs() < 1e-12 {
            return None;
        }
        m.swap(col, pivot);
        v.swap(col, pivot);
        let (upper, lower) = m.split_at_mut(col + 1);
        let pivot_row = &upper[col];
        for (offset, row) in lower.iter_mut().enumerate() {
            let k = row[col] / pivot_row[col];
            if k != 0.0 {
                for (x, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                    *x -= k * p;
                }
                v[col + 1 + offset] -= k * v[col];
            }
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|c| m[row][c] * x[c]).sum();
        x[row] = (v[row] - s) / m[row][row];
    }
    Some(x)
}

/// Rates every player that played at least one game.
#[allow(clippy::many_single_char_names)] // the usual notation
pub fn fit(pairings: &[Pairing]) -> BTreeMap<String, Rating> {
    let mut games: BTreeMap<&str, u64> = BTreeMap::new();
    for p in pairings.iter().filter(|p| p.record.games() > 0 && p.a != p.b) {
        *games.entry(&p.a).or_default() += p.record.games();
        *games.entry(&p.b).or_default() += p.record.games();
    }
    // Free parameters: every player but the anchor.
    let players: Vec<&str> = games.keys().copied().filter(|p| *p != ANCHOR).collect();
    let index: BTreeMap<&str, usize> = players.iter().enumerate().map(|(i, p)| (*p, i)).collect();
    let n = players.len();
    let tau2 = (PRIOR_SD_ELO / ELO_PER_NAT).powi(2);
    let mut r = vec![0.0f64; n];
    let strength = |r: &[f64], p: &str| index.get(p).map_or(0.0, |i| r[*i]);
    let mut hessian = vec![vec![0.0; n]; n];
    for _ in 0..100 {
        let mut grad: Vec<f64> = r.iter().map(|x| -x / tau2).collect();
        for (i, row) in hessian.iter_mut().enumerate() {
            row.fill(0.0);
            row[i] = -1.0 / tau2;
        }
        for p in pairings.iter().filter(|p| p.record.games() > 0 && p.a != p.b) {
            let n_games = f(p.record.games());
            let score = f(p.record.wins) + f(p.record.draws) / 2.0;
            let prob = 1.0 / (1.0 + (strength(&r, &p.b) - strength(&r, &p.a)).exp());
            let g = score - n_games * prob;
            let h = n_games * prob * (1.0 - prob);
            let (ia, ib) = (index.get(p.a.as_str()), index.get(p.b.as_str()));
            if let Some(&i) = ia {
                grad[i] += g;
                hessian[i][i] -= h;
            }
            if let Some(&j) = ib {
                grad[j] -= g;
                hessian[j][j] -= h;
            }
            if let (Some(&i), Some(&j)) = (ia, ib) {
                hessian[i][j] += h;
                hessian[j][i] += h;
            }
        }
        // Newton step: r -= H⁻¹ g (H is negative definite thanks to the prior).
        let neg: Vec<Vec<f64>> = hessian
            .iter()
            .map(|row| row.iter().map(|x| -x).collect())
            .collect();
        let Some(step) = solve(neg, grad) else { break };
        let mut largest = 0.0f64;
        for (x, s) in r.iter_mut().zip(&step) {
            // Damped: never more than 2 nats (~350 Elo) at once.
            let s = s.clamp(-2.0, 2.0);
            *x += s;
            largest = largest.max(s.abs());
        }
        if largest < 1e-9 {
            break;
        }
    }
    // Covariance: the inverse of the negated Hessian, column by column for the diagonal.
    let neg: Vec<Vec<f64>> = hessian
        .iter()
        .map(|row| row.iter().map(|x| -x).collect())
        .collect();
    let mut out = BTreeMap::new();
    for (player, played) in &games {
        let (elo, sd) = match index.get(player) {
            Some(&i) => {
                let mut unit = vec![0.0; n];
                unit[i] = 1.0;
                let var = solve(neg.clone(), unit).map_or(tau2, |col| col[i].max(0.0));
                (r[i] * ELO_PER_NAT, var.sqrt() * ELO_PER_NAT)
            }
            None => (0.0, 0.0),
        };
        out.insert(
            (*player).to_owned(),
            Rating {
                elo,
                low: elo - Z95 * sd,
                high: elo + Z95 * sd,
                games: *played,
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairing(a: &str, b: &str, wins: u64, losses: u64, draws: u64) -> Pairing {
        Pairing {
            a: a.into(),
            b: b.into(),
            record: Record { wins, losses, draws },
        }
    }

    #[test]
    #[allow(clippy::cast_precision_loss)]
    fn four_player_rankings_rate_players_of_known_strength() {
        // Four players of known Elo finish four-seat games in a Plackett–Luce order (each next
        // place drawn among those left with odds 10^(elo/400)). A ranking implies pairwise
        // outcomes (ahead of: a win) whose odds are exactly the Bradley–Terry ones, so the fit
        // over them recovers the strengths. Pairs from one ranking are not independent: the
        // intervals are somewhat too narrow, so the check allows twice their half-width.
        let truth = [(ANCHOR, 0.0), ("p100", 100.0), ("p250", 250.0), ("p400", 400.0)];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut uniform = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut tallies: BTreeMap<(usize, usize), Record> = BTreeMap::new();
        for _ in 0..4000 {
            let mut left: Vec<usize> = (0..truth.len()).collect();
            let mut order = Vec::new();
            while !left.is_empty() {
                let odds: Vec<f64> = left.iter().map(|i| 10f64.powf(truth[*i].1 / 400.0)).collect();
                let mut pick = uniform() * odds.iter().sum::<f64>();
                let mut at = left.len() - 1;
                for (k, o) in odds.iter().enumerate() {
                    if pick < *o {
                        at = k;
                        break;
                    }
                    pick -= o;
                }
                order.push(left.remove(at));
            }
            for (place, &a) in order.iter().enumerate() {
                for &b in &order[place + 1..] {
                    tallies.entry((a, b)).or_default().wins += 1;
                }
            }
        }
        let pairings: Vec<Pairing> = tallies
            .iter()
            .map(|(&(a, b), r)| pairing(truth[a].0, truth[b].0, r.wins, r.losses, r.draws))
            .collect();
        let fit = fit(&pairings);
        for (name, elo) in truth {
            let r = fit[name];
            let half = (r.high - r.low) / 2.0;
            assert!(
                (r.elo - elo).abs() <= 2.0 * half + 1.0,
                "{name}: fitted {r:?}, truth {elo}"
            );
        }
        assert!(fit["p100"].elo < fit["p250"].elo && fit["p250"].elo < fit["p400"].elo);
    }

    #[test]
    fn a_76_percent_score_is_about_200_elo() {
        let r = fit(&[pairing("m", ANCHOR, 76, 24, 0)]);
        let m = r["m"];
        assert!((m.elo - 200.0).abs() < 10.0, "{m:?}");
        assert!(m.low < m.elo && m.elo < m.high);
        assert!(m.high - m.low > 100.0 && m.high - m.low < 300.0, "{m:?}");
        assert_eq!(m.games, 100);
        assert!(r[ANCHOR].elo.abs() < f64::EPSILON);
    }

    #[test]
    fn more_games_narrow_the_interval_and_draws_count_half() {
        let few = fit(&[pairing("m", ANCHOR, 30, 10, 0)])["m"];
        let many = fit(&[pairing("m", ANCHOR, 300, 100, 0)])["m"];
        assert!(
            many.high - many.low < (few.high - few.low) / 2.5,
            "{few:?} {many:?}"
        );
        let drawn = fit(&[pairing("m", ANCHOR, 0, 0, 50)])["m"];
        assert!(drawn.elo.abs() < 1.0, "{drawn:?}");
    }

    #[test]
    fn ratings_chain_through_common_opponents() {
        // a beats random 90%; b beats a 75%: b is rated about 190 above a.
        let r = fit(&[
            pairing("a", ANCHOR, 90, 10, 0),
            pairing("b", "a", 75, 25, 0),
            pairing("b", ANCHOR, 95, 5, 0),
        ]);
        let (a, b) = (r["a"], r["b"]);
        assert!(b.elo > a.elo + 120.0 && b.elo < a.elo + 260.0, "{a:?} {b:?}");
        assert_eq!(b.games, 200);
    }

    #[test]
    fn a_perfect_record_is_finite_and_the_order_of_games_does_not_matter() {
        let one = fit(&[pairing("m", ANCHOR, 100, 0, 0), pairing("m", "h", 60, 40, 0)]);
        let m = one["m"];
        assert!(m.elo.is_finite() && m.elo > 400.0, "{m:?}");
        let other = fit(&[pairing("h", "m", 40, 60, 0), pairing(ANCHOR, "m", 0, 100, 0)]);
        assert!((other["m"].elo - m.elo).abs() < 1e-6);
        assert!((other["h"].elo - one["h"].elo).abs() < 1e-6);
    }

    #[test]
    fn without_the_anchor_the_prior_centres_the_pool() {
        let r = fit(&[pairing("x", "y", 50, 50, 0)]);
        assert!(r["x"].elo.abs() < 1e-6 && r["y"].elo.abs() < 1e-6);
        assert!(fit(&[]).is_empty());
        assert!(
            fit(&[pairing("x", "x", 5, 5, 0)]).is_empty(),
            "self-play is not rated"
        );
    }
}
