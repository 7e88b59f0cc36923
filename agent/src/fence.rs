//! Which Task the agent should run, stop or leave alone, and whether a status write is still
//! wanted (pure). This is the agent's half of fencing: it never runs an attempt twice, stops
//! work that is no longer current, and never reports over a final phase another writer set.

use kube::ResourceExt as _;
use ringrift_crds::task::{Task, TaskPhase};

use crate::exec::classify::Stop;

/// What to do about one Task bound to this agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start it.
    Start,
    /// Stop the running process.
    Stop(Stop),
    /// It was cancelled before it started: say so in its status.
    MarkCancelled,
    /// Nothing to do.
    Leave,
}

/// The phase of the task's status, as long as the status is about this attempt.
fn phase(task: &Task) -> TaskPhase {
    task.status
        .as_ref()
        .filter(|s| s.attempt.is_none_or(|a| a == task.spec.attempt))
        .map(|s| s.phase)
        .unwrap_or_default()
}

/// Decides for one Task. `running`: this agent runs it now. `seen`: the local database has its
/// uid (it was started before, maybe by an earlier life of this agent). `newest_attempt`: the
/// highest attempt among this agent's Tasks of the same work unit.
pub fn action(task: &Task, running: bool, seen: bool, newest_attempt: u32) -> Action {
    let superseded = task.is_lost() || task.spec.attempt < newest_attempt;
    let final_phase = phase(task).is_finished();
    if running {
        return if superseded || (final_phase && phase(task) != TaskPhase::Succeeded) {
            Action::Stop(Stop::Superseded)
        } else if task.spec.cancel {
            Action::Stop(Stop::Cancelled)
        } else {
            Action::Leave
        };
    }
    if superseded || final_phase || seen || task.metadata.deletion_timestamp.is_some() {
        return Action::Leave;
    }
    if task.spec.cancel {
        return Action::MarkCancelled;
    }
    Action::Start
}

/// Whether a status write for attempt `uid` may go ahead on `task` as it is now.
///
/// # Errors
/// The reason when it may not.
pub fn writable(task: &Task, uid: &str) -> Result<(), String> {
    if task.uid().as_deref() != Some(uid) {
        return Err("the Task was deleted and created again".into());
    }
    if task.is_lost() {
        return Err("the controller marked this attempt lost".into());
    }
    let phase = phase(task);
    if phase.is_finished() {
        return Err(format!("the Task is already {phase:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ringrift_crds::task::{CANCEL_REASON_ANNOTATION, TaskStatus};

    use super::*;

    fn task(attempt: u32) -> Task {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "Task",
            "metadata": {"name": format!("j-u0-{attempt}"), "namespace": "ns", "uid": format!("uid-{attempt}")},
            "spec": {"role": "selfplay", "job": {"kind": "SelfplayJob", "name": "j"}, "workUnit": "u0",
                     "attempt": attempt, "agent": "a1"}
        }))
        .unwrap()
    }

    fn with_phase(mut t: Task, phase: TaskPhase) -> Task {
        t.status = Some(TaskStatus {
            phase,
            attempt: Some(t.spec.attempt),
            ..TaskStatus::default()
        });
        t
    }

    fn cancelled(mut t: Task, reason: &str) -> Task {
        t.spec.cancel = true;
        t.metadata.annotations = Some(BTreeMap::from([(
            CANCEL_REASON_ANNOTATION.to_owned(),
            reason.to_owned(),
        )]));
        t
    }

    #[test]
    fn a_new_task_starts_once() {
        assert_eq!(action(&task(0), false, false, 0), Action::Start);
        assert_eq!(
            action(&task(0), false, true, 0),
            Action::Leave,
            "seen before: never twice"
        );
        assert_eq!(action(&task(0), true, true, 0), Action::Leave);
    }

    #[test]
    fn cancels_stop_running_work_or_are_recorded() {
        let t = cancelled(task(0), "Suspended");
        assert_eq!(action(&t, true, true, 0), Action::Stop(Stop::Cancelled));
        assert_eq!(action(&t, false, false, 0), Action::MarkCancelled);
        assert_eq!(
            action(&with_phase(t, TaskPhase::Cancelled), false, false, 0),
            Action::Leave
        );
    }

    #[test]
    fn lost_or_older_attempts_are_superseded() {
        let lost_task = cancelled(task(0), "Lost");
        assert_eq!(action(&lost_task, true, true, 0), Action::Stop(Stop::Superseded));
        assert_eq!(action(&lost_task, false, false, 0), Action::Leave);
        assert_eq!(action(&task(0), true, true, 1), Action::Stop(Stop::Superseded));
        assert_eq!(action(&task(0), false, false, 1), Action::Leave);
        assert_eq!(
            action(&with_phase(task(0), TaskPhase::Lost), true, true, 0),
            Action::Stop(Stop::Superseded)
        );
    }

    #[test]
    fn finished_tasks_are_left_alone() {
        for phase in [TaskPhase::Succeeded, TaskPhase::Failed, TaskPhase::Cancelled] {
            assert_eq!(
                action(&with_phase(task(0), phase), false, false, 0),
                Action::Leave
            );
        }
        // A status about another attempt says nothing about this one.
        let mut t = with_phase(task(1), TaskPhase::Failed);
        t.status.as_mut().unwrap().attempt = Some(0);
        assert_eq!(action(&t, false, false, 1), Action::Start);
    }

    #[test]
    fn writes_are_fenced() {
        assert!(writable(&task(0), "uid-0").is_ok());
        assert!(writable(&with_phase(task(0), TaskPhase::Running), "uid-0").is_ok());
        assert!(
            writable(&task(0), "uid-other")
                .unwrap_err()
                .contains("created again")
        );
        assert!(
            writable(&cancelled(task(0), "Lost"), "uid-0")
                .unwrap_err()
                .contains("lost")
        );
        assert!(writable(&cancelled(task(0), "Suspended"), "uid-0").is_ok());
        assert!(writable(&with_phase(task(0), TaskPhase::Lost), "uid-0").is_err());
        assert!(
            writable(&with_phase(task(0), TaskPhase::Succeeded), "uid-0")
                .unwrap_err()
                .contains("Succeeded")
        );
    }
}
