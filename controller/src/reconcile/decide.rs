//! The decision for one job, without I/O: which tasks are lost, which to cancel, which work
//! units get a new attempt now, whether the job is done, and when to look again.
//!
//! Fencing: a unit counts exactly one succeeded attempt, the lowest; an attempt marked lost
//! never counts, even when its agent comes back and reports success.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use ringrift_crds::common::{Artifact, JobPhase, TaskCounts};
use ringrift_crds::gauntlet::Decision;
use ringrift_crds::task::{JobKind, TaskPhase};

use ringrift_crds::task::CancelReason;

use super::durability::merged_outputs;
use super::gauntlet::{GauntletTally, tally};
use super::units::{Backoff, UnitState, add, counts_as_failure, unit_states};
use super::view::{JobView, TaskView};
use crate::plan::split::WorkUnit;

fn until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// What is known about the world outside the job.
pub struct Env<'a> {
    /// Now.
    pub now: Timestamp,
    /// Whether an agent's heartbeat is current.
    pub agent_ready: &'a dyn Fn(&str) -> bool,
    /// Retry backoff.
    pub backoff: Backoff,
}

/// How the job stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Working, or waiting for room or a retry.
    Running,
    /// Suspended.
    Suspended,
    /// Finished with this phase, reason and message.
    Finished {
        /// Succeeded or Failed.
        phase: JobPhase,
        /// CamelCase reason.
        reason: String,
        /// For people.
        message: String,
    },
}

/// A new attempt to place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAttempt {
    /// The unit.
    pub unit: WorkUnit,
    /// Its attempt number.
    pub attempt: u32,
    /// Agents to avoid if another fits.
    pub avoid: Vec<String>,
    /// The newest checkpoint an earlier attempt of the unit left with a copy on a Ready agent:
    /// this attempt resumes from it.
    pub resume: Option<Artifact>,
}

/// Aggregates for the job's status.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Tasks by phase.
    pub counts: TaskCounts,
    /// Units with a counted success.
    pub units_done: u64,
    /// Games of the counted units.
    pub games_done: u64,
    /// Progress reported by live tasks (games or steps), not yet counted.
    pub in_flight: u64,
    /// The counted tasks, in unit order.
    pub counted: Vec<Arc<TaskView>>,
    /// Attempts made in all.
    pub attempts: u32,
    /// When the first task started, if one has.
    pub first_start: Option<Timestamp>,
    /// The live tasks.
    pub live: Vec<Arc<TaskView>>,
    /// What the latest failed or lost attempt reported.
    pub last_failure: Option<String>,
    /// Copies of its outputs made after a holder was lost (copy Tasks, not work units).
    pub copies: Vec<Arc<TaskView>>,
    /// Units that run again because every copy of their outputs was lost.
    pub regenerating: Vec<String>,
    /// The counted tasks' outputs with the copies since among their holders.
    pub outputs: Vec<Artifact>,
    /// Per output digest, its holders whose heartbeat is current.
    pub live_holders: BTreeMap<String, Vec<String>>,
    /// Bytes every attempt and copy moved between agents.
    pub bytes_moved: u64,
}

/// What to do for one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPlan {
    /// Tasks whose agent stopped heartbeating, with that agent: mark lost.
    pub lost: Vec<(String, String)>,
    /// Tasks to cancel, with why.
    pub cancel: Vec<(String, CancelReason)>,
    /// Units to place now.
    pub create: Vec<NewAttempt>,
    /// How the job stands.
    pub verdict: Verdict,
    /// For the gauntlet: per-opponent records and the decision with its reason.
    pub gauntlet: Option<GauntletTally>,
    /// Delete the job (its TTL after finishing ran out).
    pub delete: bool,
    /// Look again after this, even if nothing changes (backoff, deadlines, TTL).
    pub requeue_after: Option<Duration>,
    /// For the status.
    pub summary: Summary,
}

fn summarize(states: &[UnitState<'_>], tasks: &[&Arc<TaskView>]) -> Summary {
    let mut s = Summary::default();
    for state in states {
        if state.outputs_lost {
            s.regenerating.push(state.unit.id.clone());
        }
        if let Some(t) = state.counted {
            s.units_done += 1;
            s.games_done += state.unit.games;
            s.counted.push(Arc::clone(t));
        }
    }
    for t in tasks {
        match t.phase {
            _ if t.cancel == Some(CancelReason::Lost) => s.counts.failed += 1,
            TaskPhase::Pending => s.counts.pending += 1,
            TaskPhase::Fetching | TaskPhase::Running => s.counts.running += 1,
            TaskPhase::Failed | TaskPhase::Lost => s.counts.failed += 1,
            TaskPhase::Cancelled if counts_as_failure(t) => s.counts.failed += 1,
            TaskPhase::Succeeded | TaskPhase::Cancelled => {}
        }
        if t.is_live() {
            s.in_flight += t.done;
            s.live.push(Arc::clone(t));
        }
    }
    s.last_failure = tasks
        .iter()
        .filter(|t| counts_as_failure(t) || t.cancel == Some(CancelReason::Lost))
        .max_by_key(|t| (t.finished.unwrap_or(t.created), t.attempt))
        .map(|t| {
            let what = if t.cancel == Some(CancelReason::Lost) {
                format!("{} lost with agent {}", t.name, t.agent.as_deref().unwrap_or("?"))
            } else {
                format!("{} {:?}", t.name, t.phase)
            };
            if t.message.is_empty() {
                what
            } else {
                format!("{what}: {}", t.message)
            }
        });
    s.counts.succeeded = u32::try_from(s.units_done).unwrap_or(u32::MAX);
    s.attempts = u32::try_from(tasks.len()).unwrap_or(u32::MAX);
    s.first_start = tasks.iter().filter_map(|t| t.started).min();
    s
}

fn finished(phase: JobPhase, reason: &str, message: String) -> Verdict {
    Verdict::Finished {
        phase,
        reason: reason.to_owned(),
        message,
    }
}

/// The verdict from the unit states, before suspend and placement.
fn verdict(
    job: &JobView,
    states: &[UnitState<'_>],
    gauntlet: Option<&GauntletTally>,
    now: Timestamp,
) -> Verdict {
    // A succeeded job stays finished, unless the outputs of some of its units were lost with
    // every copy while still needed: then those units run again.
    let regenerating = states.iter().any(|s| s.outputs_lost);
    if let Some((phase, _)) = job.finished
        && !(phase == JobPhase::Succeeded && regenerating)
    {
        return finished(phase, "", String::new());
    }
    let started = job.started.unwrap_or(job.created);
    if let Some(limit) = job.policy.active_deadline_seconds
        && now >= add(started, Duration::from_secs(limit))
    {
        return finished(
            JobPhase::Failed,
            "DeadlineExceeded",
            format!("the job ran longer than activeDeadlineSeconds ({limit}s)"),
        );
    }
    if let Some(state) = states
        .iter()
        .find(|s| s.counted.is_none() && s.failures.len() > job.policy.backoff_limit as usize)
    {
        let last = state
            .failures
            .iter()
            .max_by_key(|t| t.attempt)
            .map_or("", |t| t.message.as_str());
        return finished(
            JobPhase::Failed,
            "BackoffLimitExceeded",
            format!(
                "work unit {} failed {} times (backoffLimit {}); last: {}",
                state.unit.id,
                state.failures.len(),
                job.policy.backoff_limit,
                if last.is_empty() {
                    "no reason reported"
                } else {
                    last
                }
            ),
        );
    }
    if let Some(t) = gauntlet
        && t.decision != Decision::Pending
    {
        return finished(
            JobPhase::Succeeded,
            "Decided",
            format!("{:?}: {}", t.decision, t.reason),
        );
    }
    if states.iter().all(|s| s.counted.is_some()) {
        return finished(
            JobPhase::Succeeded,
            "Completed",
            format!("all {} work units succeeded", states.len()),
        );
    }
    if job.policy.suspend {
        return Verdict::Suspended;
    }
    Verdict::Running
}

/// Plans one job from its tasks: the planner's views, shared (a pass plans every job from all
/// its tasks, and the plan keeps those it counts), or owned.
pub fn plan_job<T>(job: &JobView, tasks: &[T], env: &Env<'_>) -> JobPlan
where
    T: Borrow<TaskView> + Clone + Into<Arc<TaskView>>,
{
    let now = env.now;
    // Tasks on agents that stopped heartbeating are lost: from here on they read as such (a
    // copy of those only).
    let mut lost = Vec::new();
    let tasks: Vec<Arc<TaskView>> = tasks
        .iter()
        .map(|shared| {
            let t: &TaskView = shared.borrow();
            if t.is_live() && t.agent.as_deref().is_some_and(|a| !(env.agent_ready)(a)) {
                lost.push((t.name.clone(), t.agent.clone().unwrap_or_default()));
                let mut t = t.clone();
                t.cancel = Some(CancelReason::Lost);
                t.phase = TaskPhase::Lost;
                Arc::new(t)
            } else {
                shared.clone().into()
            }
        })
        .collect();
    // Copies of outputs are not work units: they count toward the outputs' holders only.
    let (copies, tasks): (Vec<&Arc<TaskView>>, Vec<&Arc<TaskView>>) = tasks.iter().partition(|t| t.copy);
    let copies: Vec<Arc<TaskView>> = copies.into_iter().cloned().collect();
    let states = unit_states(&job.units, &tasks, env.backoff);
    let gauntlet = tally(job, &states);
    let verdict = verdict(job, &states, gauntlet.as_ref(), now);
    let mut summary = summarize(&states, &tasks);
    summary.outputs = merged_outputs(&summary.counted, &copies);
    summary.live_holders = summary
        .outputs
        .iter()
        .map(|a| {
            let live = a
                .holders
                .iter()
                .filter(|h| (env.agent_ready)(h))
                .cloned()
                .collect();
            (a.digest.clone(), live)
        })
        .collect();
    summary.bytes_moved = tasks
        .iter()
        .copied()
        .chain(&copies)
        .map(|t| t.bytes_moved)
        .fold(0, u64::saturating_add);
    summary.copies = copies;
    let mut plan = JobPlan {
        lost,
        cancel: Vec::new(),
        create: Vec::new(),
        verdict,
        gauntlet,
        delete: false,
        requeue_after: None,
        summary,
    };
    let live = tasks.iter().filter(|t| t.is_live());
    match &plan.verdict {
        Verdict::Finished { .. } => {
            for t in live.filter(|t| t.cancel.is_none()) {
                plan.cancel.push((t.name.clone(), CancelReason::JobFinished));
            }
            let at = job.finished.map_or(now, |(_, at)| at);
            if let Some(ttl) = job.policy.ttl_seconds_after_finished {
                let expiry = add(at, Duration::from_secs(ttl));
                if now >= expiry {
                    plan.delete = true;
                } else {
                    plan.wake(until(now, expiry));
                }
            }
        }
        Verdict::Suspended => {
            for t in live.filter(|t| t.cancel.is_none()) {
                plan.cancel.push((t.name.clone(), CancelReason::Suspended));
            }
        }
        Verdict::Running => plan_running(job, &tasks, &states, (now, env.agent_ready), &mut plan),
    }
    plan
}

impl JobPlan {
    /// Asks to look again after `d` at the latest.
    fn wake(&mut self, d: Duration) {
        self.requeue_after = Some(self.requeue_after.map_or(d, |r| r.min(d)));
    }
}

/// The checkpoint a new attempt of `unit` resumes from: the one of its newest attempt that left
/// one held by an agent whose heartbeat is current (an older attempt's, when the newest's
/// holders are all gone).
pub fn resume_point(
    tasks: &[&Arc<TaskView>],
    unit: &str,
    agent_ready: &dyn Fn(&str) -> bool,
) -> Option<Artifact> {
    tasks
        .iter()
        .filter(|t| t.unit == unit)
        .filter_map(|t| Some((t.attempt, t.checkpoint.as_ref()?)))
        .filter(|(_, c)| c.holders.iter().any(|h| agent_ready(h)))
        .max_by_key(|(attempt, _)| *attempt)
        .map(|(_, c)| c.clone())
}

/// A running job: stuck tasks, tasks of units that went away, and new attempts.
fn plan_running(
    job: &JobView,
    tasks: &[&Arc<TaskView>],
    states: &[UnitState<'_>],
    (now, agent_ready): (Timestamp, &dyn Fn(&str) -> bool),
    plan: &mut JobPlan,
) {
    let live = tasks.iter().filter(|t| t.is_live());
    let known = |t: &TaskView| job.units.iter().any(|u| u.id == t.unit);
    for t in live.clone().filter(|t| t.cancel.is_none()) {
        if !known(t) {
            plan.cancel.push((t.name.clone(), CancelReason::JobFinished));
        } else if let (Some(limit), TaskPhase::Fetching | TaskPhase::Running) =
            (job.policy.progress_deadline_seconds, t.phase)
        {
            let since = t.last_progress.or(t.started).unwrap_or(t.created);
            let expiry = add(since, Duration::from_secs(limit));
            if now >= expiry {
                plan.cancel.push((t.name.clone(), CancelReason::Stuck));
            } else {
                plan.wake(until(now, expiry));
            }
        }
    }
    if let Some(limit) = job.policy.active_deadline_seconds {
        plan.wake(until(
            now,
            add(job.started.unwrap_or(job.created), Duration::from_secs(limit)),
        ));
    }
    let running = live.filter(|t| known(t)).count();
    let room = job
        .parallelism
        .map_or(usize::MAX, |p| (p as usize).saturating_sub(running));
    for state in states {
        if plan.create.len() >= room {
            break;
        }
        if state.counted.is_some() || !state.live.is_empty() {
            continue;
        }
        if let Some(at) = state.retry_at
            && at > now
        {
            plan.wake(until(now, at));
            continue;
        }
        plan.create.push(NewAttempt {
            unit: state.unit.clone(),
            attempt: state.next_attempt,
            avoid: state.avoid.clone(),
            resume: if job.kind == JobKind::TrainingJob {
                resume_point(tasks, &state.unit.id, agent_ready)
            } else {
                None
            },
        });
    }
}

#[cfg(test)]
mod tests;
