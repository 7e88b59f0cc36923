//! Durability as a training loop lives it, end to end with a controller and four real agents
//! running small shell workloads: a generation's games lost with their only copy are made
//! again before its training reads them, and a best model lost with its only copy makes the
//! loop fall back and replace the job already playing with it; the loop then finishes.
//!
//! The workloads wait on gate files the test creates, so the losses happen at chosen points:
//! every selfplay waits for `gate-games`, and one that was given a model also for `gate-model`
//! (created only at the end: only the replacement, which plays the fallback, may finish).

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams};
use ringrift_crds::common::JobPhase;
use ringrift_crds::model::Model;
use ringrift_crds::selfplay::SelfplayJob;
use ringrift_crds::training_loop::{LoopPhase, Stage, TrainingLoop};
use ringrift_e2e::agent::{AgentProcess, CLUSTER_KEY};
use ringrift_e2e::cluster::{Cluster, apply_json, until};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(90);

fn sh(script: &str) -> serde_json::Value {
    json!({"command": ["/bin/sh", "-c", script]})
}

/// The loop: two generations of 2 selfplay units (one copy of their games each), a training
/// that writes 16 KiB of "weights" (one copy), a gauntlet against `random` that always wins.
fn training_loop(gates: &Path) -> serde_json::Value {
    let small = json!({"cpuMillis": 100, "memoryMiB": 64});
    let selfplay = format!(
        "gates={gates}; while [ ! -e $gates/gate-games ]; do sleep 0.2; done; \
         if [ -n \"$(ls -A \"$RINGRIFT_INPUT_DIR\" 2>/dev/null)\" ]; then \
           while [ ! -e $gates/gate-model ]; do sleep 0.2; done; fi; \
         head -c 64K /dev/urandom > \"$RINGRIFT_OUTPUT_DIR/part.games\"",
        gates = gates.display()
    );
    json!({
        "apiVersion": "ringrift.ai/v1alpha1", "kind": "TrainingLoop",
        "metadata": {"name": "l", "namespace": "default"},
        "spec": {
            "game": {"board": "connect4", "players": 2},
            "maxGenerations": 2,
            "selfplay": {"games": 2, "gamesPerTask": 1, "replicas": 1, "resources": small,
                         "template": sh(&selfplay)},
            "training": {"window": {"games": 2}, "replicas": 1, "resources": small,
                         "template": sh("head -c 16K /dev/urandom > \"$RINGRIFT_OUTPUT_DIR/model.bin\"")},
            "gauntlet": {
                "opponents": [{"name": "random", "baseline": "random"}],
                "gamesPerOpponent": 2, "gamesPerTask": 2,
                "promotion": {"winRate": {"minWinRate": 0.5, "minGames": 2}},
                "resources": small,
                "template": sh("echo '{\"wins\": 2, \"losses\": 0, \"draws\": 0}' > \"$RINGRIFT_OUTPUT_DIR/result.json\""),
            }
        }
    })
}

async fn set_suspend(cluster: &Cluster, suspend: bool) {
    let loops: Api<TrainingLoop> = Api::namespaced(cluster.client.clone(), "default");
    loops
        .patch(
            "l",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": suspend}})),
        )
        .await
        .unwrap();
}

async fn the_loop(cluster: &Cluster) -> TrainingLoop {
    let loops: Api<TrainingLoop> = Api::namespaced(cluster.client.clone(), "default");
    loops.get("l").await.unwrap()
}

/// Kills the agent `name` (`a1`…`a4`) among `agents`.
fn kill(agents: &mut [Option<AgentProcess>], name: &str) {
    let index = usize::from(name.as_bytes()[1] - b'1');
    agents[index]
        .take()
        .unwrap_or_else(|| panic!("{name} is already gone"))
        .role
        .kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_makes_lost_games_again_and_replaces_jobs_playing_a_lost_model() {
    let cluster = Cluster::start("loop-durability").await;
    let gates = cluster.dir().join("gates");
    std::fs::create_dir_all(&gates).unwrap();
    let _controller = cluster.controller("c1");
    let mut agents: Vec<Option<AgentProcess>> = ["a1", "a2", "a3", "a4"]
        .iter()
        .map(|n| Some(cluster.synced_agent(n, CLUSTER_KEY, &[])))
        .collect();
    cluster.ready_and_reachable(&["a1", "a2", "a3", "a4"]).await;
    let _: TrainingLoop = apply_json(&cluster, training_loop(&gates)).await;

    // Suspended while generation 1's selfplay runs: it finishes, and no training starts.
    until("generation 1's selfplay", WAIT, || async {
        cluster.jobs().get_opt("l-g001-selfplay").await.ok().flatten()
    })
    .await;
    set_suspend(&cluster, true).await;
    until("the loop suspended", WAIT, || async {
        (the_loop(&cluster).await.status?.phase == LoopPhase::Suspended).then_some(())
    })
    .await;
    std::fs::write(gates.join("gate-games"), "").unwrap();
    let made = until("generation 1's games, one copy each", WAIT, || async {
        let s = cluster.job("l-g001-selfplay").await.status?;
        (s.phase == JobPhase::Succeeded && s.outputs.len() == 2).then_some(s.outputs)
    })
    .await;
    let trainings: Api<ringrift_crds::training::TrainingJob> =
        Api::namespaced(cluster.client.clone(), "default");
    assert!(
        trainings.get_opt("l-g001-train").await.unwrap().is_none(),
        "suspended: no training yet"
    );

    // The holder of the first unit's games dies with the only copy: the loop says so while
    // the unit runs again (held at the gate meanwhile), and its outputs are whole again.
    std::fs::remove_file(gates.join("gate-games")).unwrap();
    let gone = made[0].holders[0].clone();
    kill(&mut agents, &gone);
    let lost: Vec<String> = made
        .iter()
        .filter(|a| a.holders == [gone.clone()])
        .map(|a| a.digest.clone())
        .collect();
    until("the loop to name the lost games", WAIT, || async {
        let s = the_loop(&cluster).await.status?;
        let c = s.conditions.iter().find(|c| c.type_ == "OutputsAvailable")?;
        (c.status == "False" && c.reason == "CopiesLost" && c.message.contains("l-g001-selfplay"))
            .then_some(())
    })
    .await;
    std::fs::write(gates.join("gate-games"), "").unwrap();
    let again = until("the lost games made again", WAIT, || async {
        let s = cluster.job("l-g001-selfplay").await.status?;
        let whole = s.phase == JobPhase::Succeeded
            && s.outputs.len() == 2
            && s.outputs.iter().all(|a| !a.holders.contains(&gone));
        whole.then_some(s.outputs)
    })
    .await;
    assert!(again.iter().all(|a| !lost.contains(&a.digest)), "{again:?}");
    until("the loop's outputs available again", WAIT, || async {
        let s = the_loop(&cluster).await.status?;
        let c = s.conditions.iter().find(|c| c.type_ == "OutputsAvailable")?;
        (c.status == "True").then_some(())
    })
    .await;

    // Resumed: the training reads the games made again, and generation 1 promotes its model.
    set_suspend(&cluster, false).await;
    until("generation 1 promoted", WAIT, || async {
        let s = the_loop(&cluster).await.status?;
        (s.best_model.as_deref() == Some("l-g001") && s.generation == 2).then_some(())
    })
    .await;
    let read: Vec<String> = cluster
        .tasks_of("l-g001-train")
        .await
        .into_iter()
        .flat_map(|t| t.spec.inputs.into_iter().map(|i| i.digest))
        .collect();
    assert!(
        again.iter().all(|a| read.contains(&a.digest)) && lost.iter().all(|d| !read.contains(d)),
        "the training read {read:?}; made again {again:?}; lost {lost:?}"
    );

    // Generation 2's selfplay plays l-g001 (and waits at its gate). Its weights' only holder
    // dies: the loop falls back to no model and replaces that selfplay with one that plays it.
    let first = until("generation 2's selfplay on l-g001", WAIT, || async {
        let j = cluster.jobs().get_opt("l-g002-selfplay").await.ok().flatten()?;
        let model = j.spec.model.as_ref()?.model.clone()?;
        (model == "l-g001").then_some(j.metadata.uid.unwrap())
    })
    .await;
    let models: Api<Model> = Api::namespaced(cluster.client.clone(), "default");
    let holder = until("l-g001's holder", WAIT, || async {
        models
            .get("l-g001")
            .await
            .ok()?
            .status?
            .holders
            .into_iter()
            .next()
    })
    .await;
    kill(&mut agents, &holder);
    let replaced: SelfplayJob = until("generation 2's selfplay replaced", WAIT, || async {
        let j = cluster.jobs().get_opt("l-g002-selfplay").await.ok().flatten()?;
        (j.metadata.uid.as_ref() != Some(&first)).then_some(j)
    })
    .await;
    assert_eq!(replaced.spec.model, None, "the fallback: no model");
    let done = until("the loop done", Duration::from_secs(120), || async {
        let lp = the_loop(&cluster).await;
        let s = lp.status?;
        (s.phase == LoopPhase::Succeeded).then_some(s)
    })
    .await;
    assert_eq!(done.stage, Stage::Done);
    assert_eq!(done.history.len(), 2, "{:?}", done.history);
    let described = cluster.kubectl(&["describe", "trainingloop", "l"]);
    for reason in ["OutputsLost", "BestModelLost", "JobReplaced"] {
        assert!(described.contains(reason), "{reason}: {described}");
    }
    // Nothing waits at a gate after the test.
    std::fs::write(gates.join("gate-model"), "").unwrap();
}
