//! The three job kinds in a row, end to end with real processes: selfplay waits for its model,
//! then records games; training on them creates the next Model; a gauntlet promotes it early
//! by SPRT.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use kube::Api;
use kube::api::PostParams;
use ringrift_crds::common::JobPhase;
use ringrift_crds::task::TaskPhase;
use ringrift_e2e::cluster::{Cluster, apply_json, finished, model, phase_count, selfplay, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selfplay_then_training_then_a_gauntlet_that_promotes_early() {
    use ringrift_crds::model::Model;
    use ringrift_crds::training::TrainingJob;

    let cluster = Cluster::start("pipeline").await;
    let _controller = cluster.controller("c1");
    let _agents = cluster.agents("sim", 2, 4);

    // A job naming a model that does not exist waits, saying why.
    let mut games = selfplay("gen0-games", 400, 100, &[]);
    games.spec.model = Some(ringrift_crds::common::ModelRef::model("gen0"));
    games.spec.output.dataset = "connect4".into();
    cluster
        .jobs()
        .create(&PostParams::default(), &games)
        .await
        .unwrap();
    until("ModelNotFound", Duration::from_secs(30), || async {
        let s = cluster.job("gen0-games").await.status?;
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready")?;
        (ready.status == "False" && ready.reason == "ModelNotFound" && s.phase == JobPhase::Pending)
            .then_some(())
    })
    .await;
    let _: Model = apply_json(&cluster, model("gen0", 0)).await;
    let done = finished(&cluster, "gen0-games", Duration::from_secs(60)).await;
    assert_eq!(done.status.as_ref().unwrap().phase, JobPhase::Succeeded);
    assert_eq!(done.status.unwrap().model.as_deref(), Some("gen0"));
    let described = cluster.kubectl(&["describe", "sp", "gen0-games"]);
    assert!(
        described.contains("Warning") && described.contains("ModelNotFound"),
        "{described}"
    );

    let _: TrainingJob = apply_json(
        &cluster,
        serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": "train-gen1", "namespace": "default"},
            "spec": {"game": {"board": "connect4"}, "datasets": ["connect4"], "window": {"games": 300},
                     "baseModel": {"model": "gen0"}, "hyperparameters": {"steps": 50},
                     "resources": {"gpus": 2}, "output": {"model": "gen1"}}
        }),
    )
    .await;
    let trainings: Api<TrainingJob> = Api::namespaced(cluster.client.clone(), "default");
    let trained = until("training to finish", Duration::from_secs(60), || async {
        let j = trainings.get("train-gen1").await.ok()?;
        j.status
            .as_ref()
            .is_some_and(|s| s.phase.is_finished())
            .then_some(j)
    })
    .await;
    let status = trained.status.unwrap();
    assert_eq!(status.phase, JobPhase::Succeeded, "{status:?}");
    assert_eq!(status.model.as_deref(), Some("gen1"));
    assert_eq!((status.step, status.total_steps), (50, 50));
    let task = &cluster.tasks_of("train-gen1").await[0];
    assert_eq!(task.spec.gpus.len(), 2, "both GPUs on one agent");
    assert_eq!(task.spec.inputs.len(), 5, "four game files and the base model");
    let models: Api<Model> = Api::namespaced(cluster.client.clone(), "default");
    let gen1 = until("Model gen1", Duration::from_secs(10), || async {
        models.get_opt("gen1").await.ok().flatten()
    })
    .await;
    assert_eq!(gen1.spec.parent.as_deref(), Some("gen0"));
    assert_eq!(gen1.spec.generation, 1);
    assert_eq!(gen1.spec.training_job.as_deref(), Some("train-gen1"));
    assert_eq!(gen1.spec.digest, status.outputs[0].digest);

    gauntlet_promotes_early(&cluster).await;
}

/// A gauntlet of gen1 against gen0 and a baseline, decided by SPRT.
async fn gauntlet_promotes_early(cluster: &Cluster) {
    use ringrift_crds::gauntlet::{Decision, GauntletJob};

    // The candidate wins 80% of its games: SPRT accepts H1 long before 2 x 400 games.
    let _: GauntletJob = apply_json(
        cluster,
        serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "GauntletJob",
            "metadata": {"name": "gauntlet-gen1", "namespace": "default"},
            "spec": {"game": {"board": "connect4"}, "candidate": {"model": "gen1"},
                     "opponents": [{"name": "best", "model": "gen0"}, {"name": "random", "baseline": "random"}],
                     "gamesPerOpponent": 400, "gamesPerTask": 10,
                     "promotion": {"opponent": "best", "sprt": {"elo0": 0, "elo1": 30}},
                     "template": {"env": {"SIM_WIN_RATE": "0.8", "SIM_DURATION_MS": "300"}},
                     "resources": {"gpus": 1}}
        }),
    )
    .await;
    let gauntlets: Api<GauntletJob> = Api::namespaced(cluster.client.clone(), "default");
    let decided = until("the gauntlet to decide", Duration::from_secs(90), || async {
        let j = gauntlets.get("gauntlet-gen1").await.ok()?;
        j.status
            .as_ref()
            .is_some_and(|s| s.phase.is_finished())
            .then_some(j)
    })
    .await;
    let status = decided.status.unwrap();
    assert_eq!(status.phase, JobPhase::Succeeded, "{status:?}");
    assert_eq!(status.decision, Decision::Promote, "{status:?}");
    assert!(
        status
            .decision_reason
            .as_deref()
            .unwrap()
            .contains("SPRT accepted H1")
    );
    assert!(
        status.games_done < status.games_total,
        "stopped early: {} of {}",
        status.games_done,
        status.games_total
    );
    let best = status.results.iter().find(|r| r.name == "best").unwrap();
    assert!(best.wins > best.losses && best.wins > 0);
    assert!(best.elo_diff.unwrap() > 0.0 && best.elo_low.unwrap() < best.elo_diff.unwrap());
    assert!(status.sprt.unwrap().llr >= 2.9);
    let ready = until(
        "the gauntlet's tasks to stop",
        Duration::from_secs(30),
        || async {
            let tasks = cluster.tasks_of("gauntlet-gen1").await;
            let live = tasks
                .iter()
                .filter(|t| t.status.as_ref().is_none_or(|s| !s.phase.is_finished()))
                .count();
            (live == 0).then_some(tasks)
        },
    )
    .await;
    assert!(
        phase_count(&ready, TaskPhase::Cancelled) + phase_count(&ready, TaskPhase::Succeeded) == ready.len()
    );
}
