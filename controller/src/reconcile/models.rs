//! The model registry's status, without I/O: each `Model`'s rating from every gauntlet game it
//! played (one pool per namespace, game board and player count, see [`crate::bradley_terry`]), whether it is the
//! best model of its loop now, and which agents hold its weights.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use ringrift_crds::gauntlet::{Baseline, GauntletJob};
use ringrift_crds::model::{Model, ModelStatus};
use ringrift_crds::training::TrainingJob;
use ringrift_crds::training_loop::TrainingLoop;

use crate::bradley_terry::{self, Pairing, Rating};
use crate::sprt::Record;
use ringrift_crds::common::set_condition;

/// A rating pool: namespace, game board and player count. Models of different games, or of
/// the same board with different numbers of players, are never compared.
pub type Pool = (String, String, u8);

/// The pool of a game played in `namespace`.
pub fn pool_of(namespace: &str, game: &ringrift_crds::common::GameSpec) -> Pool {
    (namespace.to_owned(), game.board.clone(), game.players)
}

/// The player name of a baseline in a pool.
pub fn baseline_player(b: Baseline) -> &'static str {
    match b {
        Baseline::Random => bradley_terry::ANCHOR,
        Baseline::Heuristic => "baseline:heuristic",
    }
}

/// Every pool's ratings from the gauntlets' counted results, as [`pairings`] gathers them.
pub fn pool_ratings(gauntlets: &[GauntletJob]) -> Pools {
    pairings(gauntlets)
        .into_iter()
        .map(|(pool, pairings)| (pool, bradley_terry::fit(&pairings)))
        .collect()
}

/// Every pool's games between two players, from the gauntlets' counted results (the ratings'
/// input and the dashboard's matchup matrix). Only explicitly named models are players (a
/// `bestOf` reference may have pointed elsewhere when the games were played).
pub fn pairings(gauntlets: &[GauntletJob]) -> BTreeMap<Pool, Vec<Pairing>> {
    let mut pools: BTreeMap<Pool, Vec<Pairing>> = BTreeMap::new();
    for g in gauntlets {
        let (Some(candidate), Some(status)) = (&g.spec.candidate.model, &g.status) else {
            continue;
        };
        let pool = pool_of(&g.namespace().unwrap_or_default(), &g.spec.game);
        for result in &status.results {
            let Some(opponent) = g.spec.opponents.iter().find(|o| o.name == result.name) else {
                continue;
            };
            let player = match (&opponent.model, opponent.baseline) {
                (Some(m), _) => m.clone(),
                (None, Some(b)) => baseline_player(b).to_owned(),
                (None, None) => continue,
            };
            pools.entry(pool.clone()).or_default().push(Pairing {
                a: candidate.clone(),
                b: player,
                record: Record {
                    wins: result.wins,
                    losses: result.losses,
                    draws: result.draws,
                },
            });
        }
    }
    pools
}

/// Ratings as written to statuses: to a tenth of a point, so refits that move nothing visible
/// write nothing.
pub fn rounded(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Every pool's ratings, as [`pool_ratings`] computes them.
pub type Pools = BTreeMap<Pool, BTreeMap<String, Rating>>;

/// The statuses to write: each model whose status should change, with its new status.
pub fn model_statuses(
    models: &[Model],
    pools: &Pools,
    training: &[TrainingJob],
    loops: &[TrainingLoop],
    now: Timestamp,
) -> Vec<(Model, ModelStatus)> {
    let best: HashSet<(String, String)> = loops
        .iter()
        .filter_map(|l| {
            Some((
                l.namespace().unwrap_or_default(),
                l.status.as_ref()?.best_model.clone()?,
            ))
        })
        .collect();
    let mut out = Vec::new();
    for m in models {
        let ns = m.namespace().unwrap_or_default();
        let name = m.name_any();
        let old = m.status.clone().unwrap_or_default();
        let mut new = old.clone();
        new.observed_generation = m.metadata.generation;
        let rating = pools.get(&pool_of(&ns, &m.spec.game)).and_then(|p| p.get(&name));
        if let Some(r) = rating {
            new.elo = Some(rounded(r.elo));
            new.elo_low = Some(rounded(r.low));
            new.elo_high = Some(rounded(r.high));
            new.games_rated = r.games;
        }
        new.promoted = best.contains(&(ns.clone(), name.clone()));
        if new.promoted && new.promoted_at.is_none() {
            new.promoted_at = Some(Time(now));
        }
        let mut holders: BTreeSet<String> = old.holders.iter().cloned().collect();
        for job in training
            .iter()
            .filter(|j| j.namespace().unwrap_or_default() == ns)
        {
            for a in job.status.iter().flat_map(|s| &s.outputs) {
                if a.digest == m.spec.digest {
                    holders.extend(a.holders.iter().cloned());
                }
            }
        }
        new.holders = holders.into_iter().collect();
        let available = !new.holders.is_empty();
        set_condition(
            &mut new.conditions,
            "Available",
            available,
            if available { "Held" } else { "NoHolder" },
            &if available {
                format!("weights held by {}", new.holders.join(", "))
            } else {
                "no agent is known to hold its weights".to_owned()
            },
            m.metadata.generation.unwrap_or(0),
            now,
        );
        if new != old {
            out.push((m.clone(), new));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(name: &str, digest: &str) -> Model {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "Model",
            "metadata": {"name": name, "namespace": "default", "generation": 1},
            "spec": {"game": {"board": "connect4"}, "digest": digest, "sizeBytes": 10}
        }))
        .unwrap()
    }

    fn gauntlet(name: &str, candidate: &str, results: &[(&str, u64, u64, u64)]) -> GauntletJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "GauntletJob",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "game": {"board": "connect4"},
                "candidate": {"model": candidate},
                "opponents": [
                    {"name": "best", "model": "m1"},
                    {"name": "random", "baseline": "random"},
                    {"name": "heuristic", "baseline": "heuristic"},
                    {"name": "other", "bestOf": "loop"}
                ],
                "gamesPerOpponent": 100,
                "promotion": {"winRate": {"minWinRate": 0.55, "minGames": 10}}
            },
            "status": {"results": results.iter().map(|(n, w, l, d)| serde_json::json!(
                {"name": n, "wins": w, "losses": l, "draws": d})).collect::<Vec<_>>()}
        }))
        .unwrap()
    }

    fn now() -> Timestamp {
        "2026-11-24T10:00:00Z".parse().unwrap()
    }

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn ratings_come_from_every_gauntlet_a_model_played() {
        let gauntlets = [
            gauntlet("g1", "m1", &[("random", 90, 10, 0), ("heuristic", 50, 50, 0)]),
            gauntlet(
                "g2",
                "m2",
                &[("best", 70, 30, 0), ("random", 98, 2, 0), ("other", 100, 0, 0)],
            ),
        ];
        let pools = pool_ratings(&gauntlets);
        let pool = &pools[&("default".to_owned(), "connect4".to_owned(), 2)];
        assert_eq!(
            pool["m1"].games,
            100 + 100 + 100,
            "its own gauntlet and as m2's opponent"
        );
        assert_eq!(pool["m2"].games, 200, "the bestOf opponent is not rated");
        assert!(pool["m2"].elo > pool["m1"].elo);
        assert!(pool.contains_key("baseline:heuristic"));
        assert!(pool[bradley_terry::ANCHOR].elo.abs() < f64::EPSILON);
    }

    #[test]
    fn models_of_one_board_with_other_player_counts_are_rated_apart() {
        let mut three = gauntlet("g3", "m3", &[("random", 90, 10, 0)]);
        three.spec.game.players = 3;
        let pools = pool_ratings(&[gauntlet("g1", "m1", &[("random", 50, 50, 0)]), three]);
        let two = &pools[&("default".to_owned(), "connect4".to_owned(), 2)];
        let three = &pools[&("default".to_owned(), "connect4".to_owned(), 3)];
        assert!(two.contains_key("m1") && !two.contains_key("m3"));
        assert!(three.contains_key("m3") && !three.contains_key("m1"));
        // A model is rated in its own game's pool only.
        let mut m3 = model("m3", D1);
        m3.spec.game.players = 3;
        let out = model_statuses(&[m3], &pools, &[], &[], now());
        assert!(out[0].1.elo.is_some_and(|e| e > 100.0), "{:?}", out[0].1);
    }

    #[test]
    fn statuses_carry_rating_promotion_and_holders_and_only_change_when_needed() {
        let models = [model("m1", D1), model("m2", D2)];
        let pools = pool_ratings(&[gauntlet("g1", "m1", &[("random", 90, 10, 0)])]);
        let training: TrainingJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": "t", "namespace": "default"},
            "spec": {"game": {"board": "connect4"}, "datasets": ["d"], "window": {"games": 5},
                     "output": {"model": "m1"}},
            "status": {"outputs": [{"name": "model.json", "kind": "model", "digest": D1,
                                    "sizeBytes": 10, "holders": ["a1"]}]}
        }))
        .unwrap();
        let lp: TrainingLoop = serde_json::from_value(serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "TrainingLoop",
            "metadata": {"name": "loop", "namespace": "default"},
            "spec": {"game": {"board": "connect4"}, "selfplay": {"games": 1},
                     "training": {"window": {"games": 1}},
                     "gauntlet": {"gamesPerOpponent": 1, "promotion": {}}},
            "status": {"bestModel": "m1"}
        }))
        .unwrap();
        let out = model_statuses(
            &models,
            &pools,
            std::slice::from_ref(&training),
            std::slice::from_ref(&lp),
            now(),
        );
        assert_eq!(out.len(), 2);
        let (_, m1) = &out[0];
        assert!(m1.promoted && m1.promoted_at.is_some());
        assert!((m1.elo.unwrap() - 380.0).abs() < 20.0, "{m1:?}");
        assert!(m1.elo_low.unwrap() < m1.elo.unwrap() && m1.elo_high.unwrap() > m1.elo.unwrap());
        assert_eq!(m1.games_rated, 100);
        assert_eq!(m1.holders, ["a1"]);
        let (_, m2) = &out[1];
        assert!(!m2.promoted && m2.elo.is_none());
        assert_eq!(m2.conditions[0].reason, "NoHolder");
        // Written back, nothing changes.
        let written: Vec<Model> = out
            .into_iter()
            .map(|(mut m, s)| {
                m.status = Some(s);
                m
            })
            .collect();
        assert!(
            model_statuses(
                &written,
                &pools,
                std::slice::from_ref(&training),
                std::slice::from_ref(&lp),
                now()
            )
            .is_empty()
        );
        // A new best: the old one is not promoted any more, exactly one is.
        let mut newer = lp;
        newer.status.as_mut().unwrap().best_model = Some("m2".into());
        let out = model_statuses(&written, &pools, &[training], &[newer], now());
        let promoted: Vec<bool> = out.iter().map(|(_, s)| s.promoted).collect();
        assert_eq!(promoted, [false, true]);
    }
}
