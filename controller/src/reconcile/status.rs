//! Status and conditions from a job's plan, without I/O. Conditions keep their
//! `lastTransitionTime` unless their status changes.

use std::borrow::Borrow;
use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use ringrift_contract::Params;
use ringrift_crds::common::{Artifact, JobPhase, QueueStatus, TaskCounts, set_condition};
use ringrift_crds::gauntlet::{Decision, GauntletJobStatus, OpponentResult, SprtStatus};
use ringrift_crds::selfplay::SelfplayJobStatus;
use ringrift_crds::training::TrainingJobStatus;

use super::decide::{JobPlan, Verdict};
use super::promotion;
use super::view::{JobSpecifics, JobView, TaskView};
use crate::sprt;

/// Why a job cannot run as written (an unknown model, an invalid spec): shown as
/// `Ready=False` until the spec or the world changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// Why.
    pub reason: BlockedReason,
    /// For people.
    pub message: String,
}

/// Why a job cannot run now: its `Ready` condition's reason (and the event's), spelled as
/// users and alerts read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockedReason {
    /// Not validated yet.
    Waiting,
    /// A model it names (or a loop's best model) does not exist.
    ModelNotFound,
    /// The spec cannot be run as written.
    InvalidSpec,
    /// Its datasets hold no finished games yet.
    DatasetEmpty,
}

impl BlockedReason {
    /// The reason as conditions spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "Waiting",
            Self::ModelNotFound => "ModelNotFound",
            Self::InvalidSpec => "InvalidSpec",
            Self::DatasetEmpty => "DatasetEmpty",
        }
    }
}

/// The fields every job kind's status shares.
#[derive(Debug, Clone, PartialEq)]
pub struct Common {
    /// Phase.
    pub phase: JobPhase,
    /// Ready, Progressing, Suspended, Failed.
    pub conditions: Vec<Condition>,
    /// Queue position and reason, when work waits for room.
    pub queue: Option<QueueStatus>,
    /// First seen by the controller.
    pub start_time: Option<Time>,
    /// Finished.
    pub completion_time: Option<Time>,
}

/// Inputs for [`common`] taken from the job's current status.
#[derive(Debug, Clone, Default)]
pub struct Previous<'a> {
    /// Current phase.
    pub phase: JobPhase,
    /// Current conditions.
    pub conditions: &'a [Condition],
    /// Current start time.
    pub start_time: Option<&'a Time>,
    /// Current completion time.
    pub completion_time: Option<&'a Time>,
}

/// The shared part of the status.
pub fn common(
    job: &JobView,
    previous: &Previous<'_>,
    plan: Option<&JobPlan>,
    blocked: Option<&Blocked>,
    queue: Option<QueueStatus>,
    now: Timestamp,
) -> Common {
    let g = job.generation;
    let mut conditions = previous.conditions.to_vec();
    let start_time = Some(previous.start_time.cloned().unwrap_or(Time(now)));
    let (Some(plan), None) = (plan, blocked) else {
        let b = blocked.cloned().unwrap_or(Blocked {
            reason: BlockedReason::Waiting,
            message: "waiting for the controller".into(),
        });
        set_condition(
            &mut conditions,
            "Ready",
            false,
            b.reason.as_str(),
            &b.message,
            g,
            now,
        );
        set_condition(
            &mut conditions,
            "Progressing",
            false,
            b.reason.as_str(),
            &b.message,
            g,
            now,
        );
        set_condition(&mut conditions, "Failed", false, "NoFailure", "", g, now);
        return Common {
            phase: if previous.phase.is_finished() {
                previous.phase
            } else {
                JobPhase::Pending
            },
            conditions,
            queue: None,
            start_time,
            completion_time: previous.completion_time.cloned(),
        };
    };
    set_condition(
        &mut conditions,
        "Ready",
        true,
        "Accepted",
        "the spec is valid and its inputs exist",
        g,
        now,
    );
    let (phase, completion_time) =
        progress_conditions(job, previous, plan, queue.as_ref(), &mut conditions, now);
    if let Some((ok, reason, message)) = replication(job, plan) {
        set_condition(&mut conditions, "Replicated", ok, reason, &message, g, now);
    }
    let suspended = phase == JobPhase::Suspended;
    let (reason, msg) = if suspended {
        ("Suspended", "runPolicy.suspend is set")
    } else {
        ("NotSuspended", "")
    };
    set_condition(&mut conditions, "Suspended", suspended, reason, msg, g, now);
    Common {
        phase,
        conditions,
        queue: if phase.is_finished() { None } else { queue },
        start_time,
        completion_time,
    }
}

/// The `Replicated` condition, once counted tasks reported outputs: whether each has the
/// job's `replicas` copies on distinct agents whose heartbeat is current. A shortfall (fewer
/// Ready, reachable agents with disk to spare than copies) never holds the job back; this says
/// it. An output whose recorded holders are all gone is `CopiesLost`, named with the agents
/// that held it.
fn replication(job: &JobView, plan: &JobPlan) -> Option<(bool, &'static str, String)> {
    let replicas = usize::try_from(job.replicas?).unwrap_or(usize::MAX);
    let outputs = &plan.summary.outputs;
    if outputs.is_empty() {
        return None;
    }
    let live = |a: &Artifact| plan.summary.live_holders.get(&a.digest).map_or(0, Vec::len);
    let listed = |items: &[&Artifact], each: &dyn Fn(&Artifact) -> String| {
        let names: Vec<String> = items.iter().take(3).map(|a| each(a)).collect();
        let more = items.len().saturating_sub(names.len());
        format!(
            "{}{}",
            names.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        )
    };
    let lost: Vec<&Artifact> = outputs
        .iter()
        .filter(|a| !a.holders.is_empty() && live(a) == 0)
        .collect();
    if !lost.is_empty() {
        return Some((
            false,
            "CopiesLost",
            format!(
                "{} of {} outputs have no copy on a Ready agent: {}",
                lost.len(),
                outputs.len(),
                listed(&lost, &|a| format!(
                    "{} ({}, held by {})",
                    a.name,
                    a.digest,
                    a.holders.join(", ")
                )),
            ),
        ));
    }
    let short: Vec<&Artifact> = outputs.iter().filter(|a| live(a) < replicas).collect();
    if short.is_empty() {
        return Some((
            true,
            "Replicated",
            format!("every output has {replicas} copies on distinct agents"),
        ));
    }
    let fewest = short.iter().map(|a| live(a)).min().unwrap_or(0);
    Some((
        false,
        "ShortOfCopies",
        format!(
            "{} of {} outputs have fewer than {replicas} copies (fewest {fewest}): {}; not enough Ready, reachable agents with disk to spare took one",
            short.len(),
            outputs.len(),
            listed(&short, &|a| a.name.clone()),
        ),
    ))
}

/// Phase, completion time, and the Progressing and Failed conditions of an accepted job.
fn progress_conditions(
    job: &JobView,
    previous: &Previous<'_>,
    plan: &JobPlan,
    queue: Option<&QueueStatus>,
    conditions: &mut Vec<Condition>,
    now: Timestamp,
) -> (JobPhase, Option<Time>) {
    let g = job.generation;
    let s = &plan.summary;
    match &plan.verdict {
        Verdict::Finished {
            phase,
            reason,
            message,
        } => {
            if !reason.is_empty() {
                let ok = *phase == JobPhase::Succeeded;
                set_condition(conditions, "Progressing", false, reason, message, g, now);
                set_condition(
                    conditions,
                    "Failed",
                    !ok,
                    if ok { "NoFailure" } else { reason },
                    if ok { "" } else { message },
                    g,
                    now,
                );
            }
            (
                *phase,
                Some(previous.completion_time.cloned().unwrap_or(Time(now))),
            )
        }
        Verdict::Suspended => {
            let msg = format!(
                "suspended with {} of {} work units done",
                s.units_done,
                job.units.len()
            );
            set_condition(conditions, "Progressing", false, "Suspended", &msg, g, now);
            (JobPhase::Suspended, None)
        }
        Verdict::Running => {
            let (reason, msg) = match queue {
                _ if !s.regenerating.is_empty() => (
                    "RegeneratingLostOutputs",
                    format!(
                        "every copy of the outputs of {} work unit(s) was lost while still needed; running them again: {}",
                        s.regenerating.len(),
                        s.regenerating.join(", ")
                    ),
                ),
                Some(q) if s.live.is_empty() => ("Unschedulable", q.reason.clone()),
                _ => (
                    "TasksRunning",
                    format!(
                        "{} running, {} pending, {} of {} work units done",
                        s.counts.running,
                        s.counts.pending,
                        s.units_done,
                        job.units.len()
                    ),
                ),
            };
            set_condition(conditions, "Progressing", true, reason, &msg, g, now);
            set_condition(conditions, "Failed", false, "NoFailure", "", g, now);
            let started = s.units_done > 0 || !s.live.is_empty();
            (
                if started {
                    JobPhase::Running
                } else {
                    JobPhase::Pending
                },
                None,
            )
        }
    }
}

#[allow(clippy::cast_precision_loss)] // counts stay far below 2^52
fn rate(done: u64, since: Option<Timestamp>, now: Timestamp) -> Option<f64> {
    let secs = now.duration_since(since?).as_secs_f64();
    (secs > 0.0 && done > 0).then(|| (done as f64 / secs * 100.0).round() / 100.0)
}

/// `1h2m3s`-style time left at `rate` per second.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]
pub fn eta(remaining: u64, rate: Option<f64>) -> Option<String> {
    let rate = rate.filter(|r| *r > 0.0)?;
    let secs = (remaining as f64 / rate).ceil() as u64;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    Some(match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m"),
    })
}

fn outputs(plan: &JobPlan) -> Vec<Artifact> {
    plan.summary.outputs.clone()
}

/// A `SelfplayJob`'s status.
pub fn selfplay(
    job: &JobView,
    plan: Option<&JobPlan>,
    common: Common,
    model: Option<String>,
    now: Timestamp,
) -> SelfplayJobStatus {
    let total: u64 = job.units.iter().map(|u| u.games).sum();
    let (done, in_flight, counts, outs, first) =
        plan.map_or((0, 0, TaskCounts::default(), Vec::new(), None), |p| {
            (
                p.summary.games_done,
                p.summary.in_flight,
                p.summary.counts.clone(),
                outputs(p),
                p.summary.first_start,
            )
        });
    let running = common.phase == JobPhase::Running;
    let games_per_second = if running {
        rate(done + in_flight, first, now)
    } else {
        None
    };
    SelfplayJobStatus {
        observed_generation: Some(job.generation),
        phase: common.phase,
        conditions: common.conditions,
        games_done: done,
        games_total: total,
        progress: Some(format!("{done}/{total}")),
        games_per_second,
        eta: if running {
            eta(total.saturating_sub(done + in_flight), games_per_second)
        } else {
            None
        },
        model,
        tasks: counts,
        queue: common.queue,
        outputs: outs,
        metrics: plan.map(|p| mean_metrics(&p.summary.counted)).unwrap_or_default(),
        bytes_moved: plan.map_or(0, |p| p.summary.bytes_moved),
        start_time: common.start_time,
        completion_time: common.completion_time,
    }
}

/// Each metric the `tasks` reported, averaged over those that reported it, weighted by their
/// progress (games, for selfplay; at least 1).
pub fn mean_metrics<T: Borrow<TaskView>>(tasks: &[T]) -> BTreeMap<String, f64> {
    let mut sums: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for t in tasks.iter().map(Borrow::borrow) {
        #[allow(clippy::cast_precision_loss)] // a count of games
        let weight = t.done.max(1) as f64;
        for (name, value) in &t.metrics {
            if value.is_finite() {
                let (sum, weights) = sums.entry(name.clone()).or_default();
                *sum += value * weight;
                *weights += weight;
            }
        }
    }
    sums.into_iter()
        .map(|(name, (sum, weights))| (name, sum / weights))
        .collect()
}

/// A `TrainingJob`'s status.
pub fn training(job: &JobView, plan: Option<&JobPlan>, common: Common, now: Timestamp) -> TrainingJobStatus {
    let total = match &job.params {
        Some(Params::Training(p)) => p.hyperparameters.steps,
        _ => 0,
    };
    let model_name = match &job.specifics {
        JobSpecifics::Training { model, .. } => Some(model.clone()),
        _ => None,
    };
    let mut status = TrainingJobStatus {
        observed_generation: Some(job.generation),
        phase: common.phase,
        conditions: common.conditions,
        total_steps: total,
        queue: common.queue,
        start_time: common.start_time,
        completion_time: common.completion_time,
        ..TrainingJobStatus::default()
    };
    let Some(plan) = plan else {
        status.progress = Some(format!("0/{total}"));
        return status;
    };
    let s = &plan.summary;
    let current = s.counted.first().or(s.live.first());
    status.step = if s.counted.is_empty() {
        current.map_or(0, |t| t.done)
    } else {
        total
    };
    status.progress = Some(format!("{}/{total}", status.step));
    status.loss = current.and_then(|t| t.metrics.get("loss").copied());
    status.metrics = current.map(|t| t.metrics.clone()).unwrap_or_default();
    status.epoch = current.and_then(|t| t.metrics.get("epoch").copied());
    status.agent = current.and_then(|t| t.agent.clone());
    status.attempts = s.attempts;
    if common.phase == JobPhase::Running {
        status.eta = eta(
            total.saturating_sub(status.step),
            rate(status.step, current.and_then(|t| t.started), now),
        );
    }
    status.outputs = outputs(plan);
    status.bytes_moved = plan.summary.bytes_moved;
    if common.phase == JobPhase::Succeeded {
        status.model = model_name;
    }
    status
}

/// A `GauntletJob`'s status.
pub fn gauntlet(job: &JobView, plan: Option<&JobPlan>, common: Common) -> GauntletJobStatus {
    let total: u64 = job.units.iter().map(|u| u.games).sum();
    let mut status = GauntletJobStatus {
        observed_generation: Some(job.generation),
        phase: common.phase,
        conditions: common.conditions,
        games_total: total,
        progress: Some(format!("0/{total}")),
        queue: common.queue,
        start_time: common.start_time,
        completion_time: common.completion_time,
        ..GauntletJobStatus::default()
    };
    let (Some(plan), JobSpecifics::Gauntlet { gates, deciding, .. }) = (plan, &job.specifics) else {
        return status;
    };
    status.games_done = plan.summary.games_done;
    status.bytes_moved = plan.summary.bytes_moved;
    status.progress = Some(format!("{}/{total}", plan.summary.games_done));
    status.tasks = plan.summary.counts.clone();
    let Some(tally) = &plan.gauntlet else {
        return status;
    };
    status.results = tally
        .records
        .iter()
        .map(|(name, r)| {
            let elo = sprt::elo(r);
            OpponentResult {
                name: name.clone(),
                wins: r.wins,
                losses: r.losses,
                draws: r.draws,
                win_rate: r.score(),
                elo_diff: elo.map(|e| e.diff).filter(|v| v.is_finite()),
                elo_low: elo.map(|e| e.low).filter(|v| v.is_finite()),
                elo_high: elo.map(|e| e.high).filter(|v| v.is_finite()),
            }
        })
        .collect();
    let record_of = |opponent: &str| {
        tally
            .records
            .iter()
            .find(|(n, _)| n == opponent)
            .map(|(_, r)| *r)
            .unwrap_or_default()
    };
    status.win_rate = record_of(deciding).score();
    // The state of the first SPRT among the gates.
    status.sprt = gates.iter().find_map(|g| match &g.test {
        promotion::Test::Sprt(p) => {
            let t = sprt::sprt(&record_of(&g.opponent), p.elo0, p.elo1, p.alpha, p.beta);
            Some(SprtStatus {
                llr: t.llr,
                lower_bound: t.lower,
                upper_bound: t.upper,
            })
        }
        _ => None,
    });
    status.gates.clone_from(&tally.gates);
    // Failed gauntlets decide nothing.
    if common.phase == JobPhase::Failed {
        status.decision = Decision::Pending;
    } else {
        status.decision = tally.decision;
        status.decision_reason = Some(tally.reason.clone());
    }
    status
}

#[cfg(test)]
mod tests;
