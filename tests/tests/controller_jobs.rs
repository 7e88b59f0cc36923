//! The controller end to end: the real `ringrift apiserver`, `ringrift controller` and
//! `ringrift sim-agents` processes, driven through the API and kubectl. Jobs run to the right
//! counts; failures are retried then given up; a killed agent's work is rescheduled and counted
//! once; suspend and resume; deletion cleans up; queue reasons and preemption; stuck tasks.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use ringrift_crds::agent::Agent;
use ringrift_crds::common::JobPhase;
use ringrift_crds::task::{Task, TaskPhase};
use ringrift_e2e::cluster::{Cluster, apply_json, finished, model, phase_count, selfplay, successes, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selfplay_job_runs_to_succeeded_with_the_right_game_count() {
    let cluster = Cluster::start("selfplay-succeeds").await;
    let _controller = cluster.controller("c1");
    let _agents = cluster.agents("sim", 2, 2);
    cluster
        .jobs()
        .create(&PostParams::default(), &selfplay("demo", 1050, 100, &[]))
        .await
        .unwrap();
    let job = finished(&cluster, "demo", Duration::from_secs(60)).await;
    let status = job.status.unwrap();
    assert_eq!(status.phase, JobPhase::Succeeded, "{status:?}");
    assert_eq!((status.games_done, status.games_total), (1050, 1050));
    assert_eq!(status.tasks.succeeded, 11);
    assert_eq!(status.outputs.len(), 11, "one game file per work unit");
    assert_eq!(status.observed_generation, job.metadata.generation);
    let tasks = cluster.tasks_of("demo").await;
    assert!(successes(&tasks).values().all(|n| *n == 1));
    assert_eq!(successes(&tasks).len(), 11);
    for t in &tasks {
        let owner = &t.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("SelfplayJob", "demo")
        );
        assert_eq!(t.labels()["ringrift.ai/agent"], t.spec.agent.clone().unwrap());
        assert_eq!(t.spec.gpus.len(), 1);
    }
    // What a user sees.
    let table = cluster.kubectl(&["get", "sp", "demo"]);
    assert!(
        table.contains("Succeeded") && table.contains("1050/1050"),
        "{table}"
    );
    let described = until("the Succeeded event", Duration::from_secs(10), || async {
        let d = cluster.kubectl(&["describe", "sp", "demo"]);
        d.contains("TasksCreated").then_some(d)
    })
    .await;
    assert!(described.contains("Succeeded"), "{described}");
    let ready = cluster.kubectl(&[
        "get",
        "agt",
        "sim-0",
        "-o",
        "jsonpath={.status.capacity.gpuCount}",
    ]);
    assert_eq!(ready.trim(), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_with_new_attempts_then_given_up_with_a_reason() {
    let cluster = Cluster::start("selfplay-retries").await;
    let _controller = cluster.controller("c1");
    let _agents = cluster.agents("sim", 2, 2);
    // The first attempt of every unit fails; the second succeeds.
    let flaky = selfplay("flaky", 300, 100, &[("SIM_FAIL_ATTEMPTS", "1")]);
    let mut broken = selfplay("broken", 100, 100, &[("SIM_FAIL_ATTEMPTS", "99")]);
    broken.spec.settings.run_policy.backoff_limit = 2;
    cluster
        .jobs()
        .create(&PostParams::default(), &flaky)
        .await
        .unwrap();
    cluster
        .jobs()
        .create(&PostParams::default(), &broken)
        .await
        .unwrap();

    let flaky = finished(&cluster, "flaky", Duration::from_secs(60)).await;
    let status = flaky.status.unwrap();
    assert_eq!(status.phase, JobPhase::Succeeded, "{status:?}");
    assert_eq!(status.games_done, 300);
    assert_eq!(status.tasks.failed, 3);
    let tasks = cluster.tasks_of("flaky").await;
    assert_eq!(tasks.len(), 6, "attempt 0 and 1 of each unit");
    assert!(tasks.iter().all(|t| t.spec.attempt <= 1));

    let broken = finished(&cluster, "broken", Duration::from_secs(60)).await;
    let status = broken.status.unwrap();
    assert_eq!(status.phase, JobPhase::Failed);
    let failed = status.conditions.iter().find(|c| c.type_ == "Failed").unwrap();
    assert_eq!(
        (failed.status.as_str(), failed.reason.as_str()),
        ("True", "BackoffLimitExceeded")
    );
    assert!(
        failed.message.contains("games-0000 failed 3 times"),
        "{}",
        failed.message
    );
    assert!(failed.message.contains("simulated failure"), "{}", failed.message);
    assert_eq!(
        cluster.tasks_of("broken").await.len(),
        3,
        "backoffLimit 2: three attempts"
    );
    let described = until("the failure events", Duration::from_secs(10), || async {
        let d = cluster.kubectl(&["describe", "sp", "broken"]);
        d.contains("BackoffLimitExceeded").then_some(d)
    })
    .await;
    assert!(described.contains("TaskFailed"), "{described}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agents_tasks_are_rescheduled_and_counted_once() {
    let cluster = Cluster::start("agent-killed").await;
    let _controller = cluster.controller("c1");
    let mut doomed = cluster.agents("doomed", 1, 4);
    let job = selfplay("long", 800, 100, &[("SIM_DURATION_MS", "2500")]);
    cluster.jobs().create(&PostParams::default(), &job).await.unwrap();
    until(
        "tasks running on the doomed agent",
        Duration::from_secs(30),
        || async {
            let tasks = cluster.tasks_of("long").await;
            (phase_count(&tasks, TaskPhase::Running) >= 2).then_some(())
        },
    )
    .await;
    let _survivor = cluster.agents("survivor", 1, 4);
    doomed.kill();

    let job = finished(&cluster, "long", Duration::from_secs(90)).await;
    let status = job.status.unwrap();
    assert_eq!(status.phase, JobPhase::Succeeded, "{status:?}");
    assert_eq!(status.games_done, 800, "every unit counted exactly once");
    let tasks = cluster.tasks_of("long").await;
    let lost: Vec<&Task> = tasks
        .iter()
        .filter(|t| {
            t.spec.agent.as_deref() == Some("doomed-0")
                && t.status.as_ref().is_some_and(|s| s.phase == TaskPhase::Lost)
        })
        .collect();
    assert!(!lost.is_empty(), "the doomed agent's running tasks are Lost");
    let message = lost[0]
        .status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default();
    assert!(
        message.contains("agent doomed-0 stopped heartbeating"),
        "{message}"
    );
    assert!(
        successes(&tasks).values().all(|n| *n == 1),
        "{:?}",
        successes(&tasks)
    );
    assert_eq!(successes(&tasks).len(), 8);
    for t in &lost {
        let retry = tasks
            .iter()
            .find(|r| r.spec.work_unit == t.spec.work_unit && r.spec.attempt > t.spec.attempt);
        assert_eq!(retry.and_then(|r| r.spec.agent.as_deref()), Some("survivor-0"));
    }
    let agents: Api<Agent> = Api::all(cluster.client.clone());
    let doomed = agents.get("doomed-0").await.unwrap();
    let ready = doomed
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "HeartbeatLapsed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_cancels_running_tasks_and_resume_finishes_with_progress_kept() {
    let cluster = Cluster::start("suspend").await;
    let controller = cluster.controller("c1");
    let _agents = cluster.agents("sim", 1, 2);
    let job = selfplay("pausable", 600, 100, &[("SIM_DURATION_MS", "1500")]);
    cluster.jobs().create(&PostParams::default(), &job).await.unwrap();
    until("a counted unit", Duration::from_secs(30), || async {
        let s = cluster.job("pausable").await.status?;
        (s.games_done >= 100 && s.tasks.running > 0).then_some(())
    })
    .await;
    let suspend = serde_json::json!({"spec": {"runPolicy": {"suspend": true}}});
    cluster
        .jobs()
        .patch("pausable", &PatchParams::default(), &Patch::Merge(&suspend))
        .await
        .unwrap();
    let status = until(
        "Suspended with nothing running",
        Duration::from_secs(30),
        || async {
            let s = cluster.job("pausable").await.status?;
            (s.phase == JobPhase::Suspended && s.tasks.running == 0 && s.tasks.pending == 0).then_some(s)
        },
    )
    .await;
    let done_when_suspended = status.games_done;
    assert!((100..600).contains(&done_when_suspended), "{done_when_suspended}");
    let tasks = cluster.tasks_of("pausable").await;
    assert!(
        phase_count(&tasks, TaskPhase::Cancelled) >= 1,
        "running tasks were cancelled"
    );
    // Passes go by (counted, not slept through) and create nothing new.
    Cluster::after_passes(&controller, 3.0).await;
    assert_eq!(
        cluster.tasks_of("pausable").await.len(),
        tasks.len(),
        "no new tasks while suspended"
    );

    let resume = serde_json::json!({"spec": {"runPolicy": {"suspend": false}}});
    cluster
        .jobs()
        .patch("pausable", &PatchParams::default(), &Patch::Merge(&resume))
        .await
        .unwrap();
    let job = finished(&cluster, "pausable", Duration::from_secs(60)).await;
    let status = job.status.unwrap();
    assert_eq!(status.phase, JobPhase::Succeeded);
    assert_eq!(status.games_done, 600);
    assert_eq!(status.tasks.failed, 0, "a suspension uses no retry");
    assert!(
        successes(&cluster.tasks_of("pausable").await)
            .values()
            .all(|n| *n == 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_job_deletes_its_tasks() {
    let cluster = Cluster::start("delete").await;
    let controller = cluster.controller("c1");
    let _agents = cluster.agents("sim", 1, 2);
    let job = selfplay("doomed-job", 1000, 100, &[("SIM_DURATION_MS", "5000")]);
    cluster.jobs().create(&PostParams::default(), &job).await.unwrap();
    until("tasks", Duration::from_secs(30), || async {
        (cluster.tasks_of("doomed-job").await.len() >= 2).then_some(())
    })
    .await;
    cluster
        .jobs()
        .delete("doomed-job", &DeleteParams::default())
        .await
        .unwrap();
    until("its tasks to be gone", Duration::from_secs(30), || async {
        cluster.tasks_of("doomed-job").await.is_empty().then_some(())
    })
    .await;
    Cluster::after_passes(&controller, 3.0).await;
    assert!(
        cluster.tasks_of("doomed-job").await.is_empty(),
        "the controller does not recreate them"
    );
}

/// The leader named in the Lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_that_fits_nowhere_says_why_and_a_gauntlet_preempts_selfplay() {
    use ringrift_crds::gauntlet::GauntletJob;
    use ringrift_crds::model::Model;

    let cluster = Cluster::start("queue-preempt").await;
    let _controller = cluster.controller("c1");
    let _agents = cluster.agents("sim", 1, 2);
    let mut huge = selfplay("huge", 100, 100, &[]);
    huge.spec.settings.resources.gpus = 16;
    cluster
        .jobs()
        .create(&PostParams::default(), &huge)
        .await
        .unwrap();
    let queue = until("a queue reason", Duration::from_secs(30), || async {
        cluster.job("huge").await.status?.queue
    })
    .await;
    assert_eq!(queue.position, 1);
    assert_eq!(queue.reason, "needs 16 free GPUs; the most on any agent is 2");

    // Selfplay fills both GPUs; a gauntlet (higher priority) takes one of them.
    let filler = selfplay("filler", 400, 100, &[("SIM_DURATION_MS", "20000")]);
    cluster
        .jobs()
        .create(&PostParams::default(), &filler)
        .await
        .unwrap();
    until("both GPUs busy", Duration::from_secs(30), || async {
        (phase_count(&cluster.tasks_of("filler").await, TaskPhase::Running) == 2).then_some(())
    })
    .await;
    let _: Model = apply_json(&cluster, model("cand", 1)).await;
    let _: GauntletJob = apply_json(
        &cluster,
        serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "GauntletJob",
            "metadata": {"name": "urgent", "namespace": "default"},
            "spec": {"game": {"board": "connect4"}, "candidate": {"model": "cand"},
                     "opponents": [{"name": "random", "baseline": "random"}],
                     "gamesPerOpponent": 10, "gamesPerTask": 10,
                     "promotion": {"winRate": {"minWinRate": 0.5, "minGames": 10}},
                     "resources": {"gpus": 1}}
        }),
    )
    .await;
    let gauntlets: Api<GauntletJob> = Api::namespaced(cluster.client.clone(), "default");
    until("the gauntlet to finish", Duration::from_secs(30), || async {
        let s = gauntlets.get("urgent").await.ok()?.status?;
        (s.phase == JobPhase::Succeeded).then_some(())
    })
    .await;
    let tasks = cluster.tasks_of("filler").await;
    let preempted: Vec<&Task> = tasks
        .iter()
        .filter(|t| {
            t.annotations()
                .get("ringrift.ai/cancel-reason")
                .map(String::as_str)
                == Some("Preempted")
        })
        .collect();
    assert_eq!(preempted.len(), 1, "one selfplay task made room");
    let status = cluster.job("filler").await.status.unwrap();
    assert_eq!(status.tasks.failed, 0, "a preemption uses no retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_task_is_cancelled_and_retried_until_the_job_gives_up() {
    let cluster = Cluster::start("stuck").await;
    let _controller = cluster.controller("c1");
    let _agents = cluster.agents("sim", 1, 2);
    let mut job = selfplay("hangs", 100, 100, &[("SIM_HANG", "true")]);
    job.spec.settings.run_policy.progress_deadline_seconds = Some(1);
    job.spec.settings.run_policy.backoff_limit = 1;
    cluster.jobs().create(&PostParams::default(), &job).await.unwrap();
    let job = finished(&cluster, "hangs", Duration::from_secs(60)).await;
    let status = job.status.unwrap();
    assert_eq!(status.phase, JobPhase::Failed, "{status:?}");
    let failed = status.conditions.iter().find(|c| c.type_ == "Failed").unwrap();
    assert_eq!(failed.reason, "BackoffLimitExceeded");
    let tasks = cluster.tasks_of("hangs").await;
    assert_eq!(tasks.len(), 2, "the first attempt and one retry");
    for t in &tasks {
        assert_eq!(t.annotations()["ringrift.ai/cancel-reason"], "Stuck");
        assert_eq!(t.status.as_ref().unwrap().phase, TaskPhase::Cancelled);
    }
}
