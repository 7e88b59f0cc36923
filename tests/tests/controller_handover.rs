//! Hand-overs end to end: the real controller with simulated agents. Once a job's tasks take a
//! known time, a unit that fits nowhere is bound to the GPU of a running task about to end
//! (`spec.startAfter`), and the agent starts it when that task's run ends — never before, so
//! two tasks never share a GPU. With `--hand-over 0s` the controller binds nothing ahead.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{DeleteParams, PostParams};
use ringrift_crds::common::JobPhase;
use ringrift_crds::task::{Task, TaskPhase};
use ringrift_e2e::cluster::{Cluster, finished, selfplay, until};
use serde_json::json;

/// Run time of each simulated task.
const RUN_MS: i64 = 3000;

/// Runs a job of seven one-GPU units of `RUN_MS` on one agent with one GPU, to its end, and
/// returns its tasks.
async fn one_gpu_job(cluster: &Cluster) -> Vec<Task> {
    let run = RUN_MS.to_string();
    let job = selfplay("turns", 7, 1, &[("SIM_DURATION_MS", run.as_str())]);
    cluster.jobs().create(&PostParams::default(), &job).await.unwrap();
    let job = finished(cluster, "turns", Duration::from_secs(90)).await;
    assert_eq!(job.status.unwrap().phase, JobPhase::Succeeded);
    cluster.tasks_of("turns").await
}

fn started(t: &Task) -> Time {
    t.status
        .as_ref()
        .and_then(|s| s.start_time.clone())
        .expect("started")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_follows_a_task_about_to_end_and_starts_when_it_ends() {
    let cluster = Cluster::start("handover").await;
    // A window longer than a task's run: the next unit is bound as soon as the task before
    // it runs, so a start that did not wait for that task's end would come seconds early.
    let controller = cluster.controller_with("c1", &["--hand-over", "10s"]);
    let _agents = cluster.agents("sim", 1, 1);
    let tasks = one_gpu_job(&cluster).await;
    let by_uid: HashMap<String, &Task> = tasks.iter().map(|t| (t.uid().unwrap(), t)).collect();
    let followers: Vec<&Task> = tasks.iter().filter(|t| t.spec.start_after.is_some()).collect();
    // The first three tasks teach the controller how long a task takes; from the fourth on,
    // each next unit is bound while the one before runs.
    assert!(
        followers.len() >= 2,
        "{} of {} tasks followed another",
        followers.len(),
        tasks.len()
    );
    for next in &followers {
        // Named by uid.
        let after = next.spec.start_after.as_deref().unwrap();
        let before = by_uid
            .get(after)
            .unwrap_or_else(|| panic!("{} follows {after}, not a task of the job", next.name_any()));
        let name = before.name_any();
        assert_eq!(next.spec.gpus, before.spec.gpus, "the same GPU");
        assert_eq!(next.spec.agent, before.spec.agent, "the same agent");
        assert_eq!(
            before.status.as_ref().unwrap().phase,
            TaskPhase::Succeeded,
            "the task followed ran to its end"
        );
        // It started only once the run before had ended (a simulated run is RUN_MS long;
        // start times are written to the second).
        let ran = started(next).0.duration_since(started(before).0).as_millis();
        assert!(
            ran >= i128::from(RUN_MS - 1000),
            "{} started {ran} ms after the start of {name}, which runs {RUN_MS} ms",
            next.name_any()
        );
    }
    let counted = Cluster::metric(&controller, "ringrift_controller_hand_overs_total");
    #[allow(clippy::cast_precision_loss)]
    let followed = followers.len() as f64;
    assert!(counted >= followed, "metric {counted}, tasks {followed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_hand_overs_off_no_unit_is_bound_ahead() {
    let cluster = Cluster::start("handover-off").await;
    let controller = cluster.controller_with("c1", &["--hand-over", "0s"]);
    let _agents = cluster.agents("sim", 1, 1);
    let tasks = one_gpu_job(&cluster).await;
    assert!(tasks.iter().all(|t| t.spec.start_after.is_none()));
    assert!(Cluster::metric(&controller, "ringrift_controller_hand_overs_total").abs() < f64::EPSILON);
}

/// The simulated agents stop the run of a deleted Task at once, as a real agent stops its
/// process: a task following it starts then, not when the deleted run would have ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_run_whose_task_is_deleted_lets_its_follower_start() {
    let cluster = Cluster::start("handover-deleted").await;
    let _agents = cluster.agents("sim", 1, 1);
    let long = json!({"template": {"env": {"SIM_DURATION_MS": "600000"}}});
    let first = cluster.shell_task("first", "sim-0", "", long.clone()).await;
    task_phase(&cluster, "first", TaskPhase::Running).await;
    let mut next = long;
    next["startAfter"] = json!(first.uid().unwrap());
    next["template"]["env"]["SIM_DURATION_MS"] = json!("100");
    cluster.shell_task("next", "sim-0", "", next).await;
    // Held back while the first runs.
    let held = cluster.tasks().get("next").await.unwrap();
    assert!(held.status.is_none_or(|s| s.phase == TaskPhase::Pending));
    cluster
        .tasks()
        .delete("first", &DeleteParams::default())
        .await
        .unwrap();
    task_phase(&cluster, "next", TaskPhase::Succeeded).await;
}

async fn task_phase(cluster: &Cluster, name: &str, want: TaskPhase) {
    until(&format!("{name} {want:?}"), Duration::from_secs(60), || async {
        let t = cluster.tasks().get(name).await.ok()?;
        (t.status.as_ref().map(|s| s.phase) == Some(want)).then_some(())
    })
    .await;
}
