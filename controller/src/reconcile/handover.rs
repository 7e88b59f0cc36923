//! Hand-overs: which running tasks are about to end, so that placement may bind a waiting unit
//! to their GPUs before they do (the agent starts it when its predecessor's process exits), and
//! which successors waited too long for a predecessor that ran past its expected end. Pure: the
//! tasks' views and the time in, answers out.
//!
//! A task's end is expected at its start plus its job's *expected duration*: the median run
//! time of the job's newest succeeded tasks, and, while it has fewer than [`MIN_SAMPLES`], of
//! the newest jobs of the same kind and claimant (the units of one job are alike — the same
//! games with the same model, or the same opponents — and a loop's next generation is much like
//! the last; with 1,600 GPUs a 400-unit generation runs in one wave, so its own tasks teach
//! nothing in time). At most [`MAX_SAMPLES`] runs count. Without enough, or for tasks that have
//! not reported their start, nothing is predicted and nothing follows them.

use std::time::Duration;

use jiff::Timestamp;
use ringrift_crds::task::TaskPhase;

use super::view::TaskView;

/// Succeeded tasks needed before tasks' ends are predicted.
pub const MIN_SAMPLES: usize = 3;

/// Succeeded tasks the expected duration is the median of, at most.
pub const MAX_SAMPLES: usize = 64;

/// A successor waits at most this long past the hand-over window for its predecessor (or half
/// the expected duration, when that is longer) before it is withdrawn and placed again.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// The median run time (start to end) of the first [`MAX_SAMPLES`] succeeded tasks of `tasks`
/// (the job's own first, then its peers', the newest job first); `None` with fewer than
/// [`MIN_SAMPLES`].
pub fn expected_duration<'a>(tasks: impl IntoIterator<Item = &'a TaskView>) -> Option<Duration> {
    let mut runs: Vec<Duration> = tasks
        .into_iter()
        .filter(|t| t.phase == TaskPhase::Succeeded)
        .filter_map(|t| Duration::try_from(t.finished?.duration_since(t.started?)).ok())
        .take(MAX_SAMPLES)
        .collect();
    if runs.len() < MIN_SAMPLES {
        return None;
    }
    let mid = runs.len() / 2;
    Some(*runs.select_nth_unstable(mid).1)
}

/// Milliseconds until a running task's expected end (0: already due), when it may hand its
/// GPUs over: it runs and was not asked to stop, and its end is due within `lookahead` and not
/// overdue by more than half the expected duration (a straggler, or a task whose agent went
/// quiet, takes no successor). `None` otherwise, or with a zero `lookahead` (hand-overs off).
pub fn ends_in(task: &TaskView, expected: Duration, now: Timestamp, lookahead: Duration) -> Option<u64> {
    if lookahead.is_zero() || task.phase != TaskPhase::Running || task.cancel.is_some() {
        return None;
    }
    let end = task.started? + jiff::SignedDuration::try_from(expected).ok()?;
    let left = end.duration_since(now);
    let late = jiff::SignedDuration::try_from(expected / 2).ok()?;
    let ahead = jiff::SignedDuration::try_from(lookahead).ok()?;
    if left > ahead || left < -late {
        return None;
    }
    Some(u64::try_from(left.as_millis()).unwrap_or(0))
}

/// When a running task that may not hand over yet will be able to (its expected end minus
/// `lookahead`), from `now`; `None` when it never will or already may.
pub fn eligible_in(
    task: &TaskView,
    expected: Duration,
    now: Timestamp,
    lookahead: Duration,
) -> Option<Duration> {
    if lookahead.is_zero() || task.phase != TaskPhase::Running || task.cancel.is_some() {
        return None;
    }
    let from = task.started? + jiff::SignedDuration::try_from(expected.checked_sub(lookahead)?).ok()?;
    Duration::try_from(from.duration_since(now))
        .ok()
        .filter(|d| !d.is_zero())
}

/// Whether a successor not started yet has waited too long for its predecessor, which still
/// runs: longer than `lookahead` plus [`PATIENCE`] (or half the predecessor's `expected`
/// duration, when longer) since it was created. Withdrawn, its unit is placed again, where a
/// GPU is free by then.
pub fn overdue(
    successor: &TaskView,
    expected: Option<Duration>,
    now: Timestamp,
    lookahead: Duration,
) -> bool {
    if successor.phase != TaskPhase::Pending || successor.cancel.is_some() {
        return false;
    }
    let patience = expected.map_or(PATIENCE, |e| (e / 2).max(PATIENCE));
    let waited = now.duration_since(successor.created);
    jiff::SignedDuration::try_from(lookahead + patience).is_ok_and(|limit| waited > limit)
}

#[cfg(test)]
mod tests {
    use ringrift_crds::task::CancelReason;

    use super::*;
    use crate::reconcile::fixtures;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_000_000 + secs).expect("a valid time")
    }

    fn ran(unit: &str, from: i64, to_ms: i64) -> TaskView {
        let mut t = fixtures::task(unit, 0, "a", TaskPhase::Succeeded);
        t.started = Some(at(from));
        t.finished = Some(at(from) + jiff::SignedDuration::from_millis(to_ms));
        t
    }

    fn running(started: i64) -> TaskView {
        let mut t = fixtures::task("u", 0, "a", TaskPhase::Running);
        t.started = Some(at(started));
        t
    }

    const LOOKAHEAD: Duration = Duration::from_secs(2);

    #[test]
    fn the_expected_duration_is_the_median_of_succeeded_runs() {
        let tasks = [
            ran("a", 0, 4000),
            ran("b", 0, 3000),
            ran("c", 0, 60_000),
            ran("d", 0, 4100),
        ];
        // The slow outlier does not move the median far: 4,000 or 4,100 ms.
        let d = expected_duration(&tasks).expect("four samples");
        assert!(
            d == Duration::from_secs(4) || d == Duration::from_millis(4100),
            "{d:?}"
        );
        // Too few samples, and failed or unfinished tasks do not count.
        assert_eq!(expected_duration(&tasks[..2]), None);
        let mut failed = ran("e", 0, 1);
        failed.phase = TaskPhase::Failed;
        let mut unfinished = ran("f", 0, 1);
        unfinished.finished = None;
        assert_eq!(
            expected_duration(&[tasks[0].clone(), tasks[1].clone(), failed, unfinished]),
            None
        );
        // Only the first MAX_SAMPLES count: a job's own newest runs before its peers' older ones.
        let mut many: Vec<TaskView> = (0..MAX_SAMPLES)
            .map(|i| ran(&format!("new-{i}"), 0, 2000))
            .collect();
        many.extend((0..MAX_SAMPLES * 2).map(|i| ran(&format!("old-{i}"), 0, 9000)));
        assert_eq!(expected_duration(&many), Some(Duration::from_secs(2)));
    }

    #[test]
    fn a_running_task_hands_over_inside_the_window_only() {
        let four = Duration::from_secs(4);
        let t = running(0);
        // Due at 4 s: too early at 1 s, 2,000 ms left at 2 s, due at 4 s, late but not a
        // straggler at 5 s, a straggler past 6 s (half its expected run late).
        assert_eq!(ends_in(&t, four, at(1), LOOKAHEAD), None);
        assert_eq!(ends_in(&t, four, at(2), LOOKAHEAD), Some(2000));
        assert_eq!(ends_in(&t, four, at(3), LOOKAHEAD), Some(1000));
        assert_eq!(ends_in(&t, four, at(5), LOOKAHEAD), Some(0));
        assert_eq!(ends_in(&t, four, at(7), LOOKAHEAD), None);
        // Off, not running, asked to stop, or no start reported: none.
        assert_eq!(ends_in(&t, four, at(3), Duration::ZERO), None);
        let mut stopping = running(0);
        stopping.cancel = Some(CancelReason::Preempted);
        assert_eq!(ends_in(&stopping, four, at(3), LOOKAHEAD), None);
        let mut pending = running(0);
        pending.phase = TaskPhase::Pending;
        assert_eq!(ends_in(&pending, four, at(3), LOOKAHEAD), None);
        let mut unstarted = running(0);
        unstarted.started = None;
        assert_eq!(ends_in(&unstarted, four, at(3), LOOKAHEAD), None);
    }

    #[test]
    fn the_next_pass_is_due_when_a_task_enters_the_window() {
        let four = Duration::from_secs(4);
        let t = running(0);
        assert_eq!(
            eligible_in(&t, four, at(1), LOOKAHEAD),
            Some(Duration::from_secs(1))
        );
        assert_eq!(eligible_in(&t, four, at(2), LOOKAHEAD), None, "eligible now");
        assert_eq!(eligible_in(&t, four, at(3), LOOKAHEAD), None);
        // A run shorter than the window is eligible from its start.
        assert_eq!(eligible_in(&t, Duration::from_secs(1), at(0), LOOKAHEAD), None);
        assert_eq!(eligible_in(&t, four, at(1), Duration::ZERO), None, "off");
    }

    #[test]
    fn a_successor_is_withdrawn_once_it_waited_past_its_patience() {
        let mut q = fixtures::task("q", 0, "a", TaskPhase::Pending);
        q.created = at(0);
        // Lookahead 2 s + patience 5 s.
        assert!(!overdue(&q, Some(Duration::from_secs(4)), at(7), LOOKAHEAD));
        assert!(overdue(&q, Some(Duration::from_secs(4)), at(8), LOOKAHEAD));
        assert!(overdue(&q, None, at(8), LOOKAHEAD));
        // Long tasks: half their expected run.
        assert!(!overdue(&q, Some(Duration::from_secs(60)), at(31), LOOKAHEAD));
        assert!(overdue(&q, Some(Duration::from_secs(60)), at(33), LOOKAHEAD));
        // Started, or already cancelled: not a waiting successor.
        let mut started = q.clone();
        started.phase = TaskPhase::Running;
        assert!(!overdue(&started, None, at(100), LOOKAHEAD));
        let mut cancelled = q;
        cancelled.cancel = Some(CancelReason::Preempted);
        assert!(!overdue(&cancelled, None, at(100), LOOKAHEAD));
    }
}
