//! The continuous pipeline end to end: the real controller (`--max-concurrent-trainings 1`)
//! with simulated agents runs two continuous TrainingLoops. Selfplay batches keep running
//! while each loop trains and plays its gauntlet, the next batch made as soon as every unit
//! of the running one has a task; a training starts once eight new games have
//! arrived; the two loops never train at once; later batches play the promoted model; both
//! loops finish their two generations with the history as the generational pipeline keeps it.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Api;
use kube::api::ListParams;
use ringrift_crds::gauntlet::Decision;
use ringrift_crds::selfplay::SelfplayJob;
use ringrift_crds::task::{Role, Task, TaskPhase};
use ringrift_crds::training_loop::{LoopPhase, TrainingLoop};
use ringrift_e2e::cluster::{Cluster, apply_json, until};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(120);

fn continuous(name: &str) -> serde_json::Value {
    let run = |ms: u32| json!({"env": {"SIM_DURATION_MS": ms.to_string(), "SIM_WIN_RATE": "1.0"}});
    json!({
        "apiVersion": "ringrift.ai/v1alpha1", "kind": "TrainingLoop",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "game": {"board": format!("board-{name}")},
            "pipeline": "Continuous",
            "continuous": {"trainEvery": 8},
            "maxGenerations": 2,
            "selfplay": {"games": 4, "gamesPerTask": 1, "resources": {"gpus": 1}, "template": run(700)},
            "training": {"window": {"games": 8}, "resources": {"gpus": 1}, "template": run(2500)},
            "gauntlet": {"opponents": [{"name": "random", "baseline": "random"}],
                         "gamesPerOpponent": 2, "gamesPerTask": 1, "resources": {"gpus": 1},
                         "promotion": {"winRate": {"minWinRate": 0.5, "minGames": 2}},
                         "template": run(300)}
        }
    })
}

/// What a poll of the Tasks saw at its most.
#[derive(Debug, Default)]
struct Seen {
    /// Training tasks live (bound, not ended) at once.
    most_trainings: usize,
    /// Loops with a selfplay task running while their training task was live.
    selfplay_during_training: std::collections::BTreeSet<String>,
    /// Per loop, the most selfplay batches with live tasks at once.
    batches_at_once: std::collections::BTreeMap<String, usize>,
}

fn live(t: &Task) -> bool {
    !t.spec.cancel
        && t.spec.agent.is_some()
        && t.status.as_ref().is_none_or(|s| {
            matches!(
                s.phase,
                TaskPhase::Pending | TaskPhase::Fetching | TaskPhase::Running
            )
        })
}

fn look(tasks: &[Task], seen: &mut Seen) {
    let mut batches: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
        std::collections::BTreeMap::new();
    for t in tasks.iter().filter(|t| t.spec.role == Role::Selfplay && live(t)) {
        let job = t.spec.job.name.as_str();
        if let Some((lp, _)) = job.rsplit_once("-s") {
            batches.entry(lp).or_default().insert(job);
        }
    }
    for (lp, live) in batches {
        let most = seen.batches_at_once.entry(lp.to_owned()).or_default();
        *most = (*most).max(live.len());
    }
    let trainings: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.spec.role == Role::Training && live(t))
        .collect();
    seen.most_trainings = seen.most_trainings.max(trainings.len());
    for training in trainings {
        let name = &training.spec.job.name;
        let lp = name.split("-g").next().unwrap_or_default();
        let playing = tasks.iter().any(|t| {
            t.spec.role == Role::Selfplay
                && t.spec.job.name.starts_with(&format!("{lp}-s"))
                && t.status.as_ref().is_some_and(|s| s.phase == TaskPhase::Running)
        });
        if playing {
            seen.selfplay_during_training.insert(lp.to_owned());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selfplay_never_stops_trainings_start_on_new_games_and_the_fleet_caps_them() {
    let cluster = Cluster::start("continuous").await;
    let _controller = cluster.controller_with("c1", &["--max-concurrent-trainings", "1"]);
    let _agents = cluster.agents("sim", 2, 4);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let watcher = {
        let (tasks, seen) = (cluster.tasks(), seen.clone());
        tokio::spawn(async move {
            loop {
                if let Ok(list) = tasks.list(&ListParams::default()).await {
                    look(&list.items, &mut seen.lock().unwrap());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let _: TrainingLoop = apply_json(&cluster, continuous("alpha")).await;
    let _: TrainingLoop = apply_json(&cluster, continuous("beta")).await;
    let loops: Api<TrainingLoop> = Api::namespaced(cluster.client.clone(), "default");
    for name in ["alpha", "beta"] {
        until(&format!("loop {name} to finish"), WAIT, || async {
            let l = loops.get(name).await.ok()?;
            (l.status?.phase == LoopPhase::Succeeded).then_some(())
        })
        .await;
    }
    watcher.abort();
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.most_trainings, 1, "--max-concurrent-trainings 1: {seen:?}");
        assert!(
            !seen.selfplay_during_training.is_empty(),
            "selfplay ran while a loop trained: {seen:?}"
        );
        // The next batch is made once the running one's units all have tasks: two batches'
        // tasks at once, never three.
        for name in ["alpha", "beta"] {
            assert_eq!(seen.batches_at_once.get(name), Some(&2), "{name}: {seen:?}");
        }
    }
    let batches: Api<SelfplayJob> = Api::namespaced(cluster.client.clone(), "default");
    for name in ["alpha", "beta"] {
        let status = loops.get(name).await.unwrap().status.unwrap();
        assert_eq!(status.history.len(), 2, "{status:?}");
        for record in &status.history {
            assert!(
                record.games >= 8,
                "each training started on 8 new games: {record:?}"
            );
            assert_eq!(record.decision, Decision::Promote, "{record:?}");
        }
        assert_eq!(
            status.best_model.as_deref(),
            Some(format!("{name}-g002").as_str())
        );
        let continuous = status.continuous.unwrap();
        assert!(continuous.batch >= 4, "{continuous:?}");
        assert!(continuous.games >= 16, "{continuous:?}");
        // The first batch played the untrained model; a batch after the first promotion plays
        // the promoted one.
        let first = batches.get(&format!("{name}-s0001")).await.unwrap();
        assert_eq!(first.spec.model, None);
        let all = batches.list(&ListParams::default()).await.unwrap().items;
        assert!(
            all.iter().any(|b| b
                .metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(&format!("{name}-s")))
                && b.spec.model.as_ref().and_then(|m| m.model.as_deref()) == Some(&format!("{name}-g001"))),
            "a batch on {name}-g001"
        );
    }
}
