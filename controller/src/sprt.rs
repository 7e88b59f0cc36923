//! Gauntlet statistics: score, Elo difference with a 95% interval, the sequential probability
//! ratio test (SPRT) on the Elo difference. Pure functions; the promotion gates built on them
//! are [`crate::reconcile::promotion`].
//!
//! The SPRT is the generalized (trinomial) SPRT used by engine-testing frameworks: with the
//! per-game score variance estimated from the games played, the log-likelihood ratio of
//! H1 (Elo difference `elo1`) against H0 (`elo0`) is approximately
//! `N (s1 - s0) (2 s - s0 - s1) / (2 var)`, where `s` is the observed mean score and
//! `s0`, `s1` the expected scores under each hypothesis.

/// Results against one opponent, from the candidate's side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record {
    /// Games won.
    pub wins: u64,
    /// Games lost.
    pub losses: u64,
    /// Games drawn.
    pub draws: u64,
}

/// z for a two-sided 95% interval.
const Z95: f64 = 1.959_963_984_540_054;

#[allow(clippy::cast_precision_loss)] // game counts stay far below 2^52
fn f(n: u64) -> f64 {
    n as f64
}

impl Record {
    /// Games played.
    pub fn games(&self) -> u64 {
        self.wins + self.losses + self.draws
    }

    /// Mean score per game (draws count half); none before any game.
    pub fn score(&self) -> Option<f64> {
        let n = self.games();
        (n > 0).then(|| (f(self.wins) + f(self.draws) / 2.0) / f(n))
    }

    /// Variance of one game's score around the mean.
    fn variance(&self) -> Option<f64> {
        let s = self.score()?;
        let n = f(self.games());
        Some(
            (f(self.wins) * (1.0 - s).powi(2)
                + f(self.losses) * s.powi(2)
                + f(self.draws) * (0.5 - s).powi(2))
                / n,
        )
    }
}

/// Expected score for an Elo difference (logistic model).
pub fn expected_score(elo: f64) -> f64 {
    1.0 / (1.0 + 10f64.powf(-elo / 400.0))
}

/// Elo difference for an expected score; infinite at 0 and 1.
pub fn elo_from_score(score: f64) -> f64 {
    if score <= 0.0 {
        f64::NEG_INFINITY
    } else if score >= 1.0 {
        f64::INFINITY
    } else {
        -400.0 * (1.0 / score - 1.0).log10()
    }
}

/// Elo difference with its 95% interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EloEstimate {
    /// Point estimate.
    pub diff: f64,
    /// Lower end of the 95% interval.
    pub low: f64,
    /// Upper end of the 95% interval.
    pub high: f64,
}

/// The Elo difference the record shows, with a 95% interval from the normal approximation of
/// the mean score. None before any game.
pub fn elo(record: &Record) -> Option<EloEstimate> {
    let s = record.score()?;
    let stderr = (record.variance()? / f(record.games())).sqrt();
    Some(EloEstimate {
        diff: elo_from_score(s),
        low: elo_from_score((s - Z95 * stderr).max(0.0)),
        high: elo_from_score((s + Z95 * stderr).min(1.0)),
    })
}

/// The state of an SPRT.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sprt {
    /// Log-likelihood ratio of H1 against H0 so far.
    pub llr: f64,
    /// Accept H0 (reject) at or below this: `ln(beta / (1 - alpha))`.
    pub lower: f64,
    /// Accept H1 (promote) at or above this: `ln((1 - beta) / alpha)`.
    pub upper: f64,
}

/// The SPRT of H1 (Elo difference `elo1`) against H0 (`elo0`) on the record.
pub fn sprt(record: &Record, elo0: f64, elo1: f64, alpha: f64, beta: f64) -> Sprt {
    let lower = (beta / (1.0 - alpha)).ln();
    let upper = ((1.0 - beta) / alpha).ln();
    let llr = match (record.score(), record.variance()) {
        (Some(s), Some(var)) if var > 0.0 => {
            let (s0, s1) = (expected_score(elo0), expected_score(elo1));
            f(record.games()) * (s1 - s0) * (2.0 * s - s0 - s1) / (2.0 * var)
        }
        // No games, or all results equal (no variance yet): no evidence.
        _ => 0.0,
    };
    Sprt { llr, lower, upper }
}

#[cfg(test)]
#[allow(clippy::float_cmp)]
mod tests {
    use super::*;

    fn rec(wins: u64, losses: u64, draws: u64) -> Record {
        Record { wins, losses, draws }
    }

    #[test]
    fn scores_and_elo() {
        assert_eq!(rec(0, 0, 0).score(), None);
        assert_eq!(rec(3, 1, 2).score(), Some(4.0 / 6.0));
        assert!((expected_score(0.0) - 0.5).abs() < 1e-12);
        assert!(
            (elo_from_score(expected_score(100.0)) - 100.0).abs() < 1e-9,
            "inverse of each other"
        );
        assert!((elo_from_score(0.75) - 190.848).abs() < 1e-3);
        assert_eq!(elo_from_score(1.0), f64::INFINITY);
    }

    #[test]
    fn the_interval_contains_the_estimate_and_narrows_with_games() {
        let few = elo(&rec(6, 4, 0)).unwrap();
        let many = elo(&rec(600, 400, 0)).unwrap();
        assert!((few.diff - many.diff).abs() < 1e-9, "same score, same estimate");
        assert!(few.low < few.diff && few.diff < few.high);
        assert!(
            many.high - many.low < (few.high - few.low) / 5.0,
            "100x games, ~10x narrower"
        );
        // 600-400: score 0.6, Elo ~70, interval roughly +-22.
        assert!((many.diff - 70.44).abs() < 0.1, "{many:?}");
        assert!((many.high - many.diff - 22.0).abs() < 2.0, "{many:?}");
    }

    #[test]
    fn sprt_bounds_and_direction() {
        let t = sprt(&rec(300, 200, 0), 0.0, 10.0, 0.05, 0.05);
        assert!((t.llr - 2.7817).abs() < 1e-3, "worked by hand: {}", t.llr);
        let t = sprt(&rec(0, 0, 0), 0.0, 10.0, 0.05, 0.05);
        assert_eq!(t.llr, 0.0);
        assert!((t.upper - 2.944).abs() < 1e-3 && (t.lower + 2.944).abs() < 1e-3);
        assert!(
            sprt(&rec(60, 40, 0), 0.0, 10.0, 0.05, 0.05).llr > 0.0,
            "better than H1 evidence"
        );
        assert!(sprt(&rec(40, 60, 0), 0.0, 10.0, 0.05, 0.05).llr < 0.0);
        assert_eq!(
            sprt(&rec(5, 0, 0), 0.0, 10.0, 0.05, 0.05).llr,
            0.0,
            "no variance, no evidence yet"
        );
    }
}
