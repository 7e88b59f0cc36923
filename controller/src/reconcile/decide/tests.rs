//! Job plans, case by case: retries and backoff, fencing, lost agents, suspend, deadlines,
//! TTL and the gauntlet's early stop.

use ringrift_crds::gauntlet::{PromotionPolicy, WinRatePolicy};
use ringrift_crds::task::JobKind;

use ringrift_crds::task::FailureClass;

use super::*;
use crate::plan::split;
use crate::reconcile::fixtures::{BACKOFF, at, env, selfplay, task};
use crate::reconcile::view::JobSpecifics;
use crate::sprt::Record;

fn failed(unit: &str, attempt: u32, agent: &str, finished_at: i64) -> TaskView {
    TaskView {
        finished: Some(at(finished_at)),
        message: "Error: exit code 1".into(),
        ..task(unit, attempt, agent, TaskPhase::Failed)
    }
}

fn units(plan: &JobPlan) -> Vec<(String, u32)> {
    plan.create
        .iter()
        .map(|c| (c.unit.id.clone(), c.attempt))
        .collect()
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    assert_eq!(BACKOFF.delay(1), Duration::from_secs(10));
    assert_eq!(BACKOFF.delay(2), Duration::from_secs(20));
    assert_eq!(BACKOFF.delay(3), Duration::from_secs(40));
    assert_eq!(BACKOFF.delay(4), Duration::from_secs(60));
    assert_eq!(BACKOFF.delay(1000), Duration::from_secs(60));
}

#[test]
fn a_new_job_asks_for_every_unit_within_parallelism() {
    let mut job = selfplay(250, 100);
    let plan = plan_job::<TaskView>(&job, &[], &env(0));
    assert_eq!(
        units(&plan),
        [
            ("games-0000".into(), 0),
            ("games-0001".into(), 0),
            ("games-0002".into(), 0)
        ]
    );
    assert_eq!(plan.verdict, Verdict::Running);

    job.parallelism = Some(2);
    let running = [task("games-0000", 0, "a", TaskPhase::Running)];
    let plan = plan_job(&job, &running, &env(0));
    assert_eq!(
        units(&plan),
        [("games-0001".into(), 0)],
        "one running + one new = 2"
    );
}

#[test]
fn a_failed_unit_is_retried_after_backoff_then_given_up() {
    let job = selfplay(100, 100);
    let tasks = [failed("games-0000", 0, "a", 5)];
    let plan = plan_job(&job, &tasks, &env(10));
    assert!(plan.create.is_empty(), "still backing off");
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(5)));
    assert_eq!(plan.summary.counts.failed, 1);

    let plan = plan_job(&job, &tasks, &env(15));
    assert_eq!(units(&plan), [("games-0000".into(), 1)]);

    // Second failure: 20 s backoff from its end.
    let tasks = [failed("games-0000", 0, "a", 5), failed("games-0000", 1, "a", 30)];
    assert!(plan_job(&job, &tasks, &env(49)).create.is_empty());
    assert_eq!(
        units(&plan_job(&job, &tasks, &env(50))),
        [("games-0000".into(), 2)]
    );

    // backoffLimit 3: the fourth failure gives up.
    let tasks: Vec<TaskView> = (0..4).map(|i| failed("games-0000", i, "a", 100)).collect();
    let plan = plan_job(&job, &tasks, &env(1000));
    let Verdict::Finished {
        phase,
        reason,
        message,
    } = &plan.verdict
    else {
        panic!("not finished: {:?}", plan.verdict)
    };
    assert_eq!(*phase, JobPhase::Failed);
    assert_eq!(reason, "BackoffLimitExceeded");
    assert!(
        message.contains("games-0000 failed 4 times") && message.contains("exit code 1"),
        "{message}"
    );
    assert!(plan.create.is_empty());
}

#[test]
fn a_training_attempt_resumes_from_the_newest_checkpoint_still_held() {
    let checkpoint = |name: &str, holder: &str| ringrift_crds::common::Artifact {
        name: name.into(),
        kind: ringrift_crds::common::ArtifactKind::Checkpoint,
        digest: format!("sha256:{}", name.len()),
        size_bytes: 10,
        holders: vec![holder.into()],
    };
    let with = |attempt: u32, c: Option<ringrift_crds::common::Artifact>| TaskView {
        checkpoint: c,
        ..failed("train", attempt, "a", 5)
    };
    let tasks = [
        with(0, Some(checkpoint("ckpt-0", "a"))),
        with(1, Some(checkpoint("ckpt-one", "gone"))),
        with(2, None),
    ];
    let training = JobView {
        kind: JobKind::TrainingJob,
        ..selfplay(100, 100)
    };
    let training = JobView {
        units: vec![WorkUnit {
            id: "train".into(),
            ..training.units[0].clone()
        }],
        ..training
    };
    let ready = |a: &str| a != "gone";
    let env = Env {
        now: at(1000),
        agent_ready: &ready,
        backoff: BACKOFF,
    };
    let plan = plan_job(&training, &tasks, &env);
    assert_eq!(units(&plan), [("train".into(), 3)]);
    // Attempt 1's is newer, but its only holder is gone: attempt 0's.
    assert_eq!(
        plan.create[0].resume.as_ref().map(|c| c.name.as_str()),
        Some("ckpt-0")
    );
    // Nothing held: from scratch. A selfplay job never resumes.
    let none = [with(0, Some(checkpoint("ckpt-0", "gone")))];
    assert_eq!(plan_job(&training, &none, &env).create[0].resume, None);
    let selfplay_job = JobView {
        kind: JobKind::SelfplayJob,
        ..training.clone()
    };
    assert_eq!(plan_job(&selfplay_job, &tasks, &env).create[0].resume, None);
}

#[test]
fn a_gpu_fault_avoids_the_agent_next_time() {
    let job = selfplay(100, 100);
    let mut t = failed("games-0000", 0, "gpu-box", 0);
    t.failure_class = Some(FailureClass::GpuFault);
    let plan = plan_job(&job, &[t], &env(100));
    assert_eq!(plan.create[0].avoid, ["gpu-box"]);
}

#[test]
fn tasks_on_a_lapsed_agent_are_lost_and_rerun_at_once_without_using_a_retry() {
    let job = selfplay(200, 100);
    let tasks = [
        task("games-0000", 0, "dead", TaskPhase::Running),
        task("games-0001", 0, "alive", TaskPhase::Running),
    ];
    let ready = |a: &str| a != "dead";
    let env = Env {
        now: at(10),
        agent_ready: &ready,
        backoff: BACKOFF,
    };
    let plan = plan_job(&job, &tasks, &env);
    assert_eq!(plan.lost, [("sp-games-0000-0".to_owned(), "dead".to_owned())]);
    assert_eq!(units(&plan), [("games-0000".into(), 1)]);
    assert_eq!(plan.create[0].avoid, ["dead"]);
    assert_eq!(plan.summary.counts.failed, 1);
    assert_eq!(plan.summary.counts.running, 1);
}

#[test]
fn a_lost_attempt_that_reports_success_later_is_never_counted() {
    let job = selfplay(100, 100);
    let mut stale = task("games-0000", 0, "came-back", TaskPhase::Succeeded);
    stale.cancel = Some(CancelReason::Lost);
    let current = task("games-0000", 1, "b", TaskPhase::Running);
    let plan = plan_job(&job, &[stale.clone(), current], &env(10));
    assert_eq!(plan.summary.units_done, 0);
    assert_eq!(plan.verdict, Verdict::Running);
    assert!(plan.create.is_empty(), "attempt 1 is live");

    let done = task("games-0000", 1, "b", TaskPhase::Succeeded);
    let plan = plan_job(&job, &[stale, done], &env(10));
    assert_eq!(plan.summary.units_done, 1);
    assert_eq!(plan.summary.counted[0].attempt, 1);
    assert_eq!(plan.summary.games_done, 100);
}

#[test]
fn two_successes_of_one_unit_count_once() {
    let job = selfplay(100, 100);
    let tasks = [
        task("games-0000", 0, "a", TaskPhase::Succeeded),
        task("games-0000", 1, "b", TaskPhase::Succeeded),
    ];
    let plan = plan_job(&job, &tasks, &env(10));
    assert_eq!(plan.summary.units_done, 1);
    assert_eq!(plan.summary.games_done, 100);
    assert_eq!(plan.summary.counted[0].attempt, 0, "the lowest attempt counts");
    assert!(matches!(
        plan.verdict,
        Verdict::Finished {
            phase: JobPhase::Succeeded,
            ..
        }
    ));
}

#[test]
fn suspend_cancels_running_work_and_resume_does_not_use_retries() {
    let mut job = selfplay(300, 100);
    job.policy.suspend = true;
    let tasks = [
        task("games-0000", 0, "a", TaskPhase::Succeeded),
        task("games-0001", 0, "a", TaskPhase::Running),
    ];
    let plan = plan_job(&job, &tasks, &env(10));
    assert_eq!(plan.verdict, Verdict::Suspended);
    assert_eq!(plan.cancel, [("sp-games-0001-0".into(), CancelReason::Suspended)]);
    assert!(plan.create.is_empty());

    job.policy.suspend = false;
    let mut cancelled = task("games-0001", 0, "a", TaskPhase::Cancelled);
    cancelled.cancel = Some(CancelReason::Suspended);
    let tasks = [task("games-0000", 0, "a", TaskPhase::Succeeded), cancelled];
    let plan = plan_job(&job, &tasks, &env(11));
    assert_eq!(
        units(&plan),
        [("games-0001".into(), 1), ("games-0002".into(), 0)],
        "resumed at once, progress kept"
    );
    assert_eq!(plan.summary.counts.failed, 0);
    assert_eq!(plan.summary.games_done, 100);
}

#[test]
fn a_stuck_task_is_cancelled_then_retried_as_a_failure() {
    let mut job = selfplay(100, 100);
    job.policy.progress_deadline_seconds = Some(30);
    let mut t = task("games-0000", 0, "a", TaskPhase::Running);
    t.last_progress = Some(at(10));
    let plan = plan_job(&job, std::slice::from_ref(&t), &env(30));
    assert!(plan.cancel.is_empty());
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(10)));
    let plan = plan_job(&job, std::slice::from_ref(&t), &env(40));
    assert_eq!(plan.cancel, [("sp-games-0000-0".into(), CancelReason::Stuck)]);

    t.cancel = Some(CancelReason::Stuck);
    t.phase = TaskPhase::Cancelled;
    t.finished = Some(at(41));
    let plan = plan_job(&job, &[t], &env(60));
    assert_eq!(plan.summary.counts.failed, 1);
    assert_eq!(units(&plan), [("games-0000".into(), 1)]);
}

#[test]
fn the_active_deadline_fails_the_job_and_cancels_its_tasks() {
    let mut job = selfplay(200, 100);
    job.policy.active_deadline_seconds = Some(60);
    let tasks = [task("games-0000", 0, "a", TaskPhase::Running)];
    let plan = plan_job(&job, &tasks, &env(59));
    assert_eq!(plan.verdict, Verdict::Running);
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(1)));
    let plan = plan_job(&job, &tasks, &env(60));
    assert!(matches!(&plan.verdict, Verdict::Finished { reason, .. } if reason == "DeadlineExceeded"));
    assert_eq!(
        plan.cancel,
        [("sp-games-0000-0".into(), CancelReason::JobFinished)]
    );
    assert!(plan.create.is_empty());
}

#[test]
fn a_finished_job_is_deleted_after_its_ttl() {
    let mut job = selfplay(100, 100);
    job.policy.ttl_seconds_after_finished = Some(30);
    job.finished = Some((JobPhase::Succeeded, at(100)));
    let tasks = [task("games-0000", 0, "a", TaskPhase::Succeeded)];
    let plan = plan_job(&job, &tasks, &env(110));
    assert!(!plan.delete);
    assert_eq!(plan.requeue_after, Some(Duration::from_secs(20)));
    assert!(plan_job(&job, &tasks, &env(130)).delete);

    job.policy.ttl_seconds_after_finished = None;
    assert!(!plan_job(&job, &tasks, &env(100_000)).delete, "no TTL: kept");
}

#[test]
fn a_finished_job_stays_finished_when_tasks_change() {
    let mut job = selfplay(200, 100);
    job.finished = Some((JobPhase::Failed, at(100)));
    let plan = plan_job(
        &job,
        &[task("games-0000", 0, "a", TaskPhase::Succeeded)],
        &env(200),
    );
    assert!(matches!(
        plan.verdict,
        Verdict::Finished {
            phase: JobPhase::Failed,
            ..
        }
    ));
    assert!(plan.create.is_empty());
}

#[test]
fn a_succeeded_job_whose_games_were_lost_runs_those_units_again() {
    let mut job = selfplay(200, 100);
    job.finished = Some((JobPhase::Succeeded, at(100)));
    let lost = TaskView {
        cancel: Some(CancelReason::OutputsLost),
        ..task("games-0001", 0, "a", TaskPhase::Succeeded)
    };
    let tasks = [task("games-0000", 0, "b", TaskPhase::Succeeded), lost];
    let plan = plan_job(&job, &tasks, &env(200));
    assert_eq!(plan.verdict, Verdict::Running, "reopened");
    assert_eq!(units(&plan), [("games-0001".to_owned(), 1)]);
    assert_eq!(plan.summary.units_done, 1);
    assert_eq!(plan.summary.regenerating, ["games-0001"]);
    assert_eq!(
        plan.summary.counts.failed, 0,
        "not the attempt's fault: no retry used"
    );
    // Once it succeeded again, the job is done again.
    let again = task("games-0001", 1, "c", TaskPhase::Succeeded);
    let plan = plan_job(&job, &[tasks[0].clone(), tasks[1].clone(), again], &env(300));
    assert!(matches!(
        plan.verdict,
        Verdict::Finished {
            phase: JobPhase::Succeeded,
            ..
        }
    ));
    assert!(plan.summary.regenerating.is_empty());
    // A failed job is not reopened.
    job.finished = Some((JobPhase::Failed, at(100)));
    let plan = plan_job(&job, &tasks, &env(200));
    assert!(matches!(plan.verdict, Verdict::Finished { .. }));
}

#[test]
fn a_gauntlet_stops_once_decided() {
    let policy = PromotionPolicy {
        opponent: None,
        win_rate: Some(WinRatePolicy {
            min_win_rate: 0.55,
            min_games: 40,
        }),
        sprt: None,
        gates: Vec::new(),
    };
    let job = JobView {
        kind: JobKind::GauntletJob,
        units: split::gauntlet(&["best".into()], 100, 20),
        specifics: JobSpecifics::Gauntlet {
            candidate_metrics: std::collections::BTreeMap::new(),
            gates: crate::reconcile::promotion::gates(&policy, "best"),
            deciding: "best".into(),
            per_opponent: 100,
        },
        ..selfplay(1, 1)
    };
    let won = |unit: &str| {
        let mut t = task(unit, 0, "a", TaskPhase::Succeeded);
        t.result = Some(serde_json::json!({"wins": 15, "losses": 5, "draws": 0}));
        t
    };
    let one = [won("best-0000"), task("best-0001", 0, "a", TaskPhase::Running)];
    let plan = plan_job(&job, &one, &env(10));
    assert_eq!(plan.gauntlet.as_ref().unwrap().decision, Decision::Pending);
    assert_eq!(plan.verdict, Verdict::Running);

    let two = [
        won("best-0000"),
        won("best-0001"),
        task("best-0002", 0, "a", TaskPhase::Running),
    ];
    let plan = plan_job(&job, &two, &env(10));
    let tally = plan.gauntlet.as_ref().unwrap();
    assert_eq!(tally.decision, Decision::Promote);
    assert_eq!(
        tally.records[0].1,
        Record {
            wins: 30,
            losses: 10,
            draws: 0
        }
    );
    assert!(matches!(&plan.verdict, Verdict::Finished { reason, .. } if reason == "Decided"));
    assert_eq!(
        plan.cancel,
        [("sp-best-0002-0".into(), CancelReason::JobFinished)]
    );
    assert!(plan.create.is_empty());
}

#[test]
fn one_failed_gate_rejects_before_the_other_gates_are_decided() {
    let policy: PromotionPolicy = serde_json::from_value(serde_json::json!({"gates": [
        {"opponent": "random", "winRate": {"minWinRate": 0.9, "minGames": 20}},
        {"opponent": "best", "sprt": {"elo0": 0, "elo1": 10}},
    ]}))
    .unwrap();
    let job = JobView {
        kind: JobKind::GauntletJob,
        units: split::gauntlet(&["random".into(), "best".into()], 100, 20),
        specifics: JobSpecifics::Gauntlet {
            candidate_metrics: std::collections::BTreeMap::new(),
            gates: crate::reconcile::promotion::gates(&policy, "best"),
            deciding: "best".into(),
            per_opponent: 100,
        },
        ..selfplay(1, 1)
    };
    let played = |unit: &str, wins: u64| {
        let mut t = task(unit, 0, "a", TaskPhase::Succeeded);
        t.result = Some(serde_json::json!({"wins": wins, "losses": 20 - wins, "draws": 0}));
        t
    };
    // 16 of 20 against random (0.8 < 0.9) while the SPRT against the best is still open.
    let tasks = [
        played("random-0000", 16),
        played("best-0000", 11),
        task("best-0001", 0, "a", TaskPhase::Running),
    ];
    let plan = plan_job(&job, &tasks, &env(10));
    let tally = plan.gauntlet.as_ref().unwrap();
    assert_eq!(tally.decision, Decision::Reject);
    assert_eq!(
        tally.reason,
        "gate winRate-random failed: score 0.800 < 0.900 over 20 games"
    );
    let verdicts: Vec<_> = tally.gates.iter().map(|g| (g.name.as_str(), g.verdict)).collect();
    assert_eq!(
        verdicts,
        [
            ("winRate-random", ringrift_crds::gauntlet::GateVerdict::Failed),
            ("sprt-best", ringrift_crds::gauntlet::GateVerdict::Pending)
        ]
    );
    assert!(matches!(&plan.verdict, Verdict::Finished { reason, .. } if reason == "Decided"));
    assert_eq!(plan.cancel.len(), 1, "the rest of the gauntlet stops");
}

#[test]
fn a_user_cancel_counts_as_a_failure() {
    let job = selfplay(100, 100);
    let mut t = task("games-0000", 0, "a", TaskPhase::Cancelled);
    t.cancel = Some(CancelReason::User);
    let plan = plan_job(&job, &[t], &env(100));
    assert_eq!(plan.summary.counts.failed, 1);
    assert_eq!(units(&plan), [("games-0000".into(), 1)]);
}
