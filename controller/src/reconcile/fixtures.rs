//! Sample jobs and tasks for the reconcile tests.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use ringrift_crds::common::{RunPolicy, TaskResources, WorkloadTemplate};
use ringrift_crds::task::{JobKind, TaskPhase};

use super::decide::Env;
use super::units::Backoff;
use super::view::{JobSpecifics, JobView, TaskView};
use crate::plan::split;

/// A fixed instant `secs` after a base time.
pub fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

/// The retry backoff of the tests: 10 s doubling up to 60 s.
pub const BACKOFF: Backoff = Backoff {
    base: Duration::from_secs(10),
    max: Duration::from_secs(60),
};

fn all_ready(_: &str) -> bool {
    true
}

/// The world at `at(now)` with every agent Ready and [`BACKOFF`].
pub fn env(now: i64) -> Env<'static> {
    Env {
        now: at(now),
        agent_ready: &all_ready,
        backoff: BACKOFF,
    }
}

/// A selfplay job of `games` games in units of `per_task`, started at `at(0)`.
pub fn selfplay(games: u64, per_task: u64) -> JobView {
    JobView {
        kind: JobKind::SelfplayJob,
        namespace: "default".into(),
        name: "sp".into(),
        uid: "uid-1".into(),
        generation: 1,
        created: at(0),
        units: split::selfplay(games, per_task),
        resources: TaskResources::default(),
        template: WorkloadTemplate::default(),
        policy: RunPolicy::default(),
        priority: 100,
        parallelism: None,
        params: None,
        inputs: Vec::new(),
        replicas: None,
        specifics: JobSpecifics::Selfplay,
        finished: None,
        started: Some(at(0)),
    }
}

/// A task of `unit` on `agent`, created at `at(1)`, started at `at(2)` and (if finished) done at
/// `at(5)`.
pub fn task(unit: &str, attempt: u32, agent: &str, phase: TaskPhase) -> TaskView {
    TaskView {
        name: format!("sp-{unit}-{attempt}"),
        unit: unit.into(),
        attempt,
        agent: Some(agent.into()),
        phase,
        cancel: None,
        failure_class: None,
        message: String::new(),
        created: at(1),
        started: Some(at(2)),
        last_progress: None,
        finished: phase.is_finished().then(|| at(5)),
        done: 0,
        outputs: Vec::new(),
        checkpoint: None,
        result: None,
        metrics: BTreeMap::new(),
        resources: TaskResources::default(),
        gpus: Vec::new(),
        copy: false,
        bytes_moved: 0,
    }
}
