//! Status and conditions from plans.

use std::time::Duration;

use ringrift_crds::task::TaskPhase;

use super::*;
use crate::plan::split;
use crate::reconcile::decide::{Env, plan_job};
use crate::reconcile::fixtures::{self, at};
use crate::reconcile::units::Backoff;
use crate::reconcile::view::TaskView;

fn job() -> JobView {
    JobView {
        generation: 3,
        ..fixtures::selfplay(1000, 100)
    }
}

/// A task started at `at(0)` with `done` units of progress.
fn task(unit: &str, phase: TaskPhase, done: u64) -> TaskView {
    TaskView {
        name: format!("sp-{unit}"),
        created: at(0),
        started: Some(at(0)),
        finished: None,
        done,
        ..fixtures::task(unit, 0, "a", phase)
    }
}

fn plan(job: &JobView, tasks: &[TaskView], now: i64) -> JobPlan {
    let ready = |_: &str| true;
    plan_job(
        job,
        tasks,
        &Env {
            now: at(now),
            agent_ready: &ready,
            backoff: Backoff {
                base: Duration::from_secs(1),
                max: Duration::from_secs(1),
            },
        },
    )
}

fn condition<'a>(conditions: &'a [Condition], t: &str) -> &'a Condition {
    conditions.iter().find(|c| c.type_ == t).unwrap()
}

#[test]
fn eta_reads_like_a_person_would_write_it() {
    assert_eq!(eta(100, Some(10.0)), Some("10s".into()));
    assert_eq!(eta(250, Some(1.0)), Some("4m10s".into()));
    assert_eq!(eta(7200, Some(1.0)), Some("2h0m".into()));
    assert_eq!(eta(10, None), None);
    assert_eq!(eta(10, Some(0.0)), None);
}

#[test]
fn a_running_selfplay_job_reports_games_rate_and_eta() {
    let job = job();
    let tasks = [
        TaskView {
            finished: Some(at(50)),
            ..task("games-0000", TaskPhase::Succeeded, 100)
        },
        task("games-0001", TaskPhase::Running, 50),
        task("games-0002", TaskPhase::Pending, 0),
    ];
    let p = plan(&job, &tasks, 100);
    let c = common(&job, &Previous::default(), Some(&p), None, None, at(100));
    assert_eq!(c.phase, JobPhase::Running);
    let s = selfplay(&job, Some(&p), c, None, at(100));
    assert_eq!(s.games_done, 100, "only the counted unit");
    assert_eq!(s.games_total, 1000);
    assert_eq!(s.progress.as_deref(), Some("100/1000"));
    assert_eq!(
        s.games_per_second,
        Some(1.5),
        "150 games in 100 s, in flight included"
    );
    assert_eq!(s.eta.as_deref(), Some("9m27s"));
    assert_eq!((s.tasks.running, s.tasks.pending, s.tasks.succeeded), (1, 1, 1));
    assert_eq!(s.observed_generation, Some(3));
    let progressing = condition(&s.conditions, "Progressing");
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("True", "TasksRunning")
    );
}

#[test]
fn waiting_work_shows_why_and_its_place_in_the_queue() {
    let job = job();
    let p = plan(&job, &[], 0);
    let queue = QueueStatus {
        position: 3,
        reason: "no agents registered".into(),
    };
    let c = common(
        &job,
        &Previous::default(),
        Some(&p),
        None,
        Some(queue.clone()),
        at(0),
    );
    assert_eq!(c.phase, JobPhase::Pending);
    assert_eq!(c.queue, Some(queue));
    let progressing = condition(&c.conditions, "Progressing");
    assert_eq!(progressing.reason, "Unschedulable");
    assert_eq!(progressing.message, "no agents registered");
}

#[test]
fn a_failed_job_says_why_and_keeps_its_completion_time() {
    let mut job = job();
    job.units = split::selfplay(100, 100);
    let tasks: Vec<TaskView> = (0..4)
        .map(|i| TaskView {
            name: format!("t{i}"),
            attempt: i,
            finished: Some(at(1)),
            message: "Error: exit code 3".into(),
            ..task("games-0000", TaskPhase::Failed, 0)
        })
        .collect();
    let p = plan(&job, &tasks, 10);
    let c = common(&job, &Previous::default(), Some(&p), None, None, at(10));
    assert_eq!(c.phase, JobPhase::Failed);
    assert_eq!(c.completion_time, Some(Time(at(10))));
    let failed = condition(&c.conditions, "Failed");
    assert_eq!(
        (failed.status.as_str(), failed.reason.as_str()),
        ("True", "BackoffLimitExceeded")
    );
    assert!(failed.message.contains("exit code 3"));

    // The next pass sees the job finished and changes nothing.
    let earlier = Time(at(10));
    job.finished = Some((JobPhase::Failed, at(10)));
    let p = plan(&job, &tasks, 20);
    let previous = Previous {
        phase: JobPhase::Failed,
        conditions: &c.conditions,
        start_time: c.start_time.as_ref(),
        completion_time: Some(&earlier),
    };
    let again = common(&job, &previous, Some(&p), None, None, at(20));
    assert_eq!(again, c);
}

#[test]
fn a_blocked_job_is_not_ready_and_waits() {
    let job = job();
    let blocked = Blocked {
        reason: BlockedReason::ModelNotFound,
        message: "Model gen-3 does not exist".into(),
    };
    let c = common(&job, &Previous::default(), None, Some(&blocked), None, at(0));
    assert_eq!(c.phase, JobPhase::Pending);
    let ready = condition(&c.conditions, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "ModelNotFound")
    );
}

#[test]
fn suspended_jobs_say_so() {
    let mut job = job();
    job.policy.suspend = true;
    let p = plan(&job, &[task("games-0000", TaskPhase::Succeeded, 100)], 5);
    let c = common(&job, &Previous::default(), Some(&p), None, None, at(5));
    assert_eq!(c.phase, JobPhase::Suspended);
    assert_eq!(condition(&c.conditions, "Suspended").status, "True");
    assert_eq!(condition(&c.conditions, "Progressing").reason, "Suspended");
}

#[test]
fn the_replicated_condition_says_which_outputs_are_short_of_copies() {
    // Each output's digest: its unit's last digit, 64 times.
    let output = |name: &str, holders: &[&str]| Artifact {
        name: name.into(),
        kind: ringrift_crds::common::ArtifactKind::Games,
        digest: format!("sha256:{}", name[9..10].repeat(64)),
        size_bytes: 1,
        holders: holders.iter().map(|h| (*h).to_owned()).collect(),
    };
    let mut job = job();
    job.replicas = Some(2);
    let done = |unit: &str, holders: &[&str]| TaskView {
        finished: Some(at(50)),
        outputs: vec![output(&format!("{unit}.games"), holders)],
        ..task(unit, TaskPhase::Succeeded, 100)
    };
    // Nothing counted yet: no condition.
    let p = plan(&job, &[task("games-0000", TaskPhase::Running, 5)], 100);
    let c = common(&job, &Previous::default(), Some(&p), None, None, at(100));
    assert!(c.conditions.iter().all(|c| c.type_ != "Replicated"));
    // Both outputs have two copies.
    let tasks = [done("games-0000", &["a", "b"]), done("games-0001", &["b", "c"])];
    let p = plan(&job, &tasks, 100);
    let c = common(&job, &Previous::default(), Some(&p), None, None, at(100));
    let r = condition(&c.conditions, "Replicated");
    assert_eq!((r.status.as_str(), r.reason.as_str()), ("True", "Replicated"));
    // One has only its producer's.
    let tasks = [done("games-0000", &["a", "b"]), done("games-0001", &["c"])];
    let p = plan(&job, &tasks, 100);
    let c = common(&job, &Previous::default(), Some(&p), None, None, at(100));
    let r = condition(&c.conditions, "Replicated");
    assert_eq!((r.status.as_str(), r.reason.as_str()), ("False", "ShortOfCopies"));
    assert!(
        r.message
            .starts_with("1 of 2 outputs have fewer than 2 copies (fewest 1): games-0001.games"),
        "{}",
        r.message
    );
    assert_ne!(c.phase, JobPhase::Failed, "a shortfall never holds a job back");
    // Every holder's heartbeat lapsed: the outputs are named as lost, with who held them.
    let mut gone = p.clone();
    gone.summary.live_holders.clear();
    let c = common(&job, &Previous::default(), Some(&gone), None, None, at(100));
    let r = condition(&c.conditions, "Replicated");
    assert_eq!((r.status.as_str(), r.reason.as_str()), ("False", "CopiesLost"));
    assert!(
        r.message.starts_with(&format!(
            "2 of 2 outputs have no copy on a Ready agent: games-0000.games (sha256:{}, held by a, b)",
            "0".repeat(64)
        )),
        "{}",
        r.message
    );
    // A job without replicas (a gauntlet) gets no condition.
    job.replicas = None;
    let c = common(&job, &Previous::default(), Some(&p), None, None, at(100));
    assert!(c.conditions.iter().all(|c| c.type_ != "Replicated"));
}

#[test]
fn selfplay_metrics_are_averaged_over_tasks_by_games() {
    let task = |done: u64, draw_rate: f64| {
        let mut t = crate::reconcile::fixtures::task("u", 0, "a", ringrift_crds::task::TaskPhase::Succeeded);
        t.done = done;
        t.metrics = std::collections::BTreeMap::from([("draw_rate".to_owned(), draw_rate)]);
        t
    };
    let mut odd = task(0, f64::NAN);
    odd.metrics.insert("only_here".into(), 3.0);
    let m = super::mean_metrics(&[task(30, 0.1), task(10, 0.5), odd]);
    assert!((m["draw_rate"] - 0.2).abs() < 1e-12, "{m:?}: a NaN is left out");
    assert!((m["only_here"] - 3.0).abs() < 1e-12);
    assert!(super::mean_metrics::<TaskView>(&[]).is_empty());
}
