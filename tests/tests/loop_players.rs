//! Games of more than two seats end to end: the real controller with simulated agents runs a
//! four-player TrainingLoop beside a two-player one of the same board. The four-player
//! gauntlet's tasks report finishing places (`{"places": …}`), which count as the pairwise
//! outcomes they imply (three per game); both loops promote on their own results, and each
//! model is rated in the pool of its own player count.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use kube::Api;
use ringrift_crds::gauntlet::{Decision, GauntletJob};
use ringrift_crds::model::Model;
use ringrift_crds::training_loop::{LoopPhase, TrainingLoop};
use ringrift_e2e::cluster::{Cluster, apply_json, until};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

fn generational(name: &str, players: u8) -> serde_json::Value {
    let run = |ms: u32| json!({"env": {"SIM_DURATION_MS": ms.to_string(), "SIM_WIN_RATE": "0.75"}});
    json!({
        "apiVersion": "ringrift.ai/v1alpha1", "kind": "TrainingLoop",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "game": {"board": "shared-board", "players": players},
            "maxGenerations": 1,
            "selfplay": {"games": 4, "gamesPerTask": 2, "template": run(200)},
            "training": {"window": {"games": 4}, "template": run(200)},
            "gauntlet": {"opponents": [{"name": "random", "baseline": "random"}],
                         "gamesPerOpponent": 4, "gamesPerTask": 4,
                         "promotion": {"winRate": {"minWinRate": 0.6, "minGames": 4}},
                         "template": run(200)}
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_player_gauntlets_count_the_pairwise_outcomes_of_their_places() {
    let cluster = Cluster::start("players").await;
    let _controller = cluster.controller("c1");
    let _agents = cluster.agents("sim", 2, 1);
    let _: TrainingLoop = apply_json(&cluster, generational("duo", 2)).await;
    let _: TrainingLoop = apply_json(&cluster, generational("quad", 4)).await;
    let loops: Api<TrainingLoop> = Api::namespaced(cluster.client.clone(), "default");
    for name in ["duo", "quad"] {
        let status = until(&format!("loop {name} to finish"), WAIT, || async {
            let s = loops.get(name).await.ok()?.status?;
            (s.phase == LoopPhase::Succeeded).then_some(s)
        })
        .await;
        assert_eq!(status.history[0].decision, Decision::Promote, "{status:?}");
        assert_eq!(status.history[0].win_rate, Some(0.75), "{status:?}");
    }
    let gauntlets: Api<GauntletJob> = Api::namespaced(cluster.client.clone(), "default");
    let results = |g: GauntletJob| g.status.unwrap().results[0].clone();
    let duo = results(gauntlets.get("duo-g001-gauntlet").await.unwrap());
    let quad = results(gauntlets.get("quad-g001-gauntlet").await.unwrap());
    // Four games each: two seats give four outcomes, four seats three per game.
    assert_eq!((duo.wins, duo.losses, duo.draws), (3, 1, 0), "{duo:?}");
    assert_eq!((quad.wins, quad.losses, quad.draws), (9, 3, 0), "{quad:?}");
    // Each model is rated from its own pool's games only.
    let models: Api<Model> = Api::namespaced(cluster.client.clone(), "default");
    let rated = |name: &'static str| {
        let models = models.clone();
        async move {
            until(&format!("{name} rated"), WAIT, || async {
                let s = models.get(name).await.ok()?.status?;
                s.elo.map(|_| s)
            })
            .await
        }
    };
    assert_eq!(rated("duo-g001").await.games_rated, 4);
    assert_eq!(rated("quad-g001").await.games_rated, 12);
}
