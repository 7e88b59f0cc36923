//! What a restarted agent does with each attempt it had started (pure).
//!
//! The rule that matters: an attempt recorded in the local database is never started again.
//! A process still alive and still wanted is adopted; one that ended while the agent was away is
//! reported as it ended (the shim's exit file says how); anything else is failed or stopped.

use crate::store::LocalState;

/// Whether the attempt's process is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// Running (same pid and start time as recorded).
    Alive,
    /// Not running, or the pid now belongs to another process.
    Gone,
}

/// Whether the Task still wants this attempt to run or be reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    /// The Task exists with this uid and no final phase.
    Yes,
    /// Deleted, replaced, or already final (for example `Lost`): nothing may be reported.
    No,
}

/// The decision for one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Watch the running process again (a cancel request is then handled as usual).
    Adopt,
    /// The process ended while the agent was away: read its exit file, collect and report.
    Collect,
    /// Report it as failed, with this message; never start it again.
    Fail(&'static str),
    /// Stop the process group; report nothing.
    Kill,
    /// Write the outcome recorded before the restart.
    Report,
    /// Nothing to do but mark it done locally.
    Forget,
}

/// Decides what to do with one unfinished attempt.
pub fn decide(state: LocalState, process: Process, exit_recorded: bool, wanted: Wanted) -> Recovery {
    match (state, process, wanted) {
        (LocalState::Finished, _, Wanted::Yes) => Recovery::Report,
        (LocalState::Reported, _, _)
        | (LocalState::Finished, _, Wanted::No)
        | (_, Process::Gone, Wanted::No) => Recovery::Forget,
        (_, Process::Alive, Wanted::Yes) => Recovery::Adopt,
        (_, Process::Alive, Wanted::No) => Recovery::Kill,
        (_, Process::Gone, Wanted::Yes) if exit_recorded => Recovery::Collect,
        (LocalState::Starting, Process::Gone, Wanted::Yes) => {
            Recovery::Fail("the agent restarted while starting this attempt; it is not started twice")
        }
        (LocalState::Running, Process::Gone, Wanted::Yes) => {
            Recovery::Fail("the process ended while the agent was not running and left no exit status")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LocalState::{Finished, Reported, Running, Starting};

    #[test]
    fn a_live_wanted_process_is_adopted_and_an_unwanted_one_killed() {
        assert_eq!(
            decide(Running, Process::Alive, false, Wanted::Yes),
            Recovery::Adopt
        );
        assert_eq!(
            decide(Starting, Process::Alive, false, Wanted::Yes),
            Recovery::Adopt
        );
        assert_eq!(decide(Running, Process::Alive, false, Wanted::No), Recovery::Kill);
    }

    #[test]
    fn a_process_that_ended_meanwhile_is_collected_from_its_exit_file() {
        assert_eq!(
            decide(Running, Process::Gone, true, Wanted::Yes),
            Recovery::Collect
        );
        assert_eq!(
            decide(Starting, Process::Gone, true, Wanted::Yes),
            Recovery::Collect
        );
    }

    #[test]
    fn without_an_exit_record_it_fails_and_never_restarts() {
        assert!(matches!(
            decide(Running, Process::Gone, false, Wanted::Yes),
            Recovery::Fail(_)
        ));
        assert!(
            matches!(decide(Starting, Process::Gone, false, Wanted::Yes), Recovery::Fail(m) if m.contains("not started twice"))
        );
    }

    #[test]
    fn recorded_outcomes_are_reported_once_and_only_when_wanted() {
        assert_eq!(
            decide(Finished, Process::Gone, true, Wanted::Yes),
            Recovery::Report
        );
        assert_eq!(
            decide(Finished, Process::Gone, true, Wanted::No),
            Recovery::Forget
        );
        assert_eq!(
            decide(Reported, Process::Gone, true, Wanted::Yes),
            Recovery::Forget
        );
        assert_eq!(decide(Running, Process::Gone, true, Wanted::No), Recovery::Forget);
    }
}
