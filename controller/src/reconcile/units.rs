//! Where each work unit of a job stands, from the job's tasks (pure): its one counted success,
//! its live attempts, the failures that used up retries, the agents to avoid, and when it may
//! run again. The job's decision (`decide`) and the gauntlet's tally both read it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use ringrift_crds::task::{CancelReason, FailureClass, TaskPhase};

use super::view::TaskView;
use crate::plan::split::WorkUnit;

/// Delay before a failed unit's next attempt: `base * 2^(failures - 1)`, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// After the first failure.
    pub base: Duration,
    /// The most.
    pub max: Duration,
}

impl Backoff {
    /// The delay after `failures` failures (at least one).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.base.saturating_mul(1 << doublings).min(self.max)
    }
}

/// Where one work unit stands.
#[derive(Debug, Clone)]
pub struct UnitState<'a> {
    /// The unit.
    pub unit: &'a WorkUnit,
    /// Its one counted success.
    pub counted: Option<&'a Arc<TaskView>>,
    /// Attempts that still hold an agent.
    pub live: Vec<&'a Arc<TaskView>>,
    /// Attempts that used up a retry.
    pub failures: Vec<&'a Arc<TaskView>>,
    /// Number for the next attempt.
    pub next_attempt: u32,
    /// Agents to avoid: where it had a GPU fault or was lost.
    pub avoid: Vec<String>,
    /// Not before this may it run again (backoff after a failure).
    pub retry_at: Option<Timestamp>,
    /// It had succeeded, but every copy of its outputs was lost: it runs again.
    pub outputs_lost: bool,
}

/// Whether an attempt used up a retry: failed or cancelled, unless the controller cancelled it for
/// a reason that is not the attempt's fault.
pub(super) fn counts_as_failure(t: &TaskView) -> bool {
    match t.cancel {
        Some(
            CancelReason::Lost
            | CancelReason::Suspended
            | CancelReason::Preempted
            | CancelReason::JobFinished
            | CancelReason::OutputsLost,
        ) => false,
        Some(CancelReason::Stuck | CancelReason::User) => {
            matches!(t.phase, TaskPhase::Failed | TaskPhase::Cancelled)
        }
        None => matches!(t.phase, TaskPhase::Failed | TaskPhase::Cancelled),
    }
}

/// `t + d`, at most the end of time.
pub(super) fn add(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// The state of every unit given the job's tasks (each task read once: a job of thousands of
/// units and tasks is planned on every pass).
pub fn unit_states<'a>(
    units: &'a [WorkUnit],
    tasks: &[&'a Arc<TaskView>],
    backoff: Backoff,
) -> Vec<UnitState<'a>> {
    let mut by_unit: HashMap<&str, Vec<&'a Arc<TaskView>>> = HashMap::with_capacity(units.len());
    for t in tasks {
        by_unit.entry(t.unit.as_str()).or_default().push(t);
    }
    units
        .iter()
        .map(|unit| {
            let mine: &[&Arc<TaskView>] = by_unit.get(unit.id.as_str()).map_or(&[], Vec::as_slice);
            let counted = mine
                .iter()
                .filter(|t| {
                    t.phase == TaskPhase::Succeeded
                        && !matches!(t.cancel, Some(CancelReason::Lost | CancelReason::OutputsLost))
                })
                .min_by_key(|t| t.attempt)
                .copied();
            let failures: Vec<&Arc<TaskView>> =
                mine.iter().copied().filter(|t| counts_as_failure(t)).collect();
            let avoid = mine
                .iter()
                .filter(|t| {
                    t.failure_class == Some(FailureClass::GpuFault) || t.cancel == Some(CancelReason::Lost)
                })
                .filter_map(|t| t.agent.clone())
                .collect();
            let retry_at = failures
                .iter()
                .map(|t| t.finished.unwrap_or(t.created))
                .max()
                .map(|last| {
                    add(
                        last,
                        backoff.delay(u32::try_from(failures.len()).unwrap_or(u32::MAX)),
                    )
                });
            let outputs_lost =
                counted.is_none() && mine.iter().any(|t| t.cancel == Some(CancelReason::OutputsLost));
            UnitState {
                unit,
                outputs_lost,
                counted,
                live: mine.iter().copied().filter(|t| t.is_live()).collect(),
                failures,
                next_attempt: mine.iter().map(|t| t.attempt + 1).max().unwrap_or(0),
                avoid,
                retry_at,
            }
        })
        .collect()
}
