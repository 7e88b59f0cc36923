//! How a finished process is classified for the retry policy (pure).

use ringrift_crds::task::{FailureClass, TaskPhase};

/// How the process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
    /// The command could not be started (message from the shim).
    SpawnFailed(String),
    /// Gone with no record of how (killed together with its shim while the agent was away).
    Unknown,
}

/// Why the agent stopped the process, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Cancelled by request (Task `spec.cancel`, the REST API, suspend).
    Cancelled,
    /// Ran past `activeDeadlineSeconds`.
    Deadline,
    /// The Task is no longer current (deleted, `Lost`, a newer attempt): nothing is reported.
    Superseded,
}

/// Why an attempt ended as it did: the Task status's `reason` (CamelCase, as users and alerts
/// read it; the values never change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Exited with code 0.
    Completed,
    /// Stopped on request.
    Cancelled,
    /// Ran past `activeDeadlineSeconds`.
    DeadlineExceeded,
    /// A GPU failed under it.
    GpuFault,
    /// Killed by a signal it did not get from the agent.
    Signaled,
    /// The command could not be started.
    StartFailed,
    /// It ended while the agent was away and left no exit status.
    ProcessVanished,
    /// Exited with another code.
    Error,
    /// Its outputs could not be taken into the content store.
    OutputsFailed,
    /// It left more output files than are taken.
    TooManyOutputs,
    /// Its `result.json` is not a JSON object of at most 1 MiB.
    InvalidResult,
    /// An input could not be fetched or materialized.
    InputUnavailable,
    /// The agent restarted and could neither adopt nor collect it.
    AgentRestarted,
    /// The agent failed around it (directories, its log).
    AgentError,
}

impl Reason {
    /// The reason as the Task status spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "Completed",
            Self::Cancelled => "Cancelled",
            Self::DeadlineExceeded => "DeadlineExceeded",
            Self::GpuFault => "GpuFault",
            Self::Signaled => "Signaled",
            Self::StartFailed => "StartFailed",
            Self::ProcessVanished => "ProcessVanished",
            Self::Error => "Error",
            Self::OutputsFailed => "OutputsFailed",
            Self::TooManyOutputs => "TooManyOutputs",
            Self::InvalidResult => "InvalidResult",
            Self::InputUnavailable => "InputUnavailable",
            Self::AgentRestarted => "AgentRestarted",
            Self::AgentError => "AgentError",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict written to the Task status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Succeeded, Failed or Cancelled.
    pub phase: TaskPhase,
    /// For failures: the class the retry policy uses.
    pub failure_class: Option<FailureClass>,
    /// Why.
    pub reason: Reason,
    /// For people.
    pub message: String,
}

/// Output that means the GPU failed, not the program.
const GPU_FAULT_MARKERS: [&str; 6] = [
    "uncorrectable ECC error",
    "CUDA error: an illegal instruction",
    "CUDA error: unspecified launch failure",
    "CUDA_ERROR_ECC_UNCORRECTABLE",
    "GPU has fallen off the bus",
    "Xid",
];

fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        6 => "SIGABRT",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        _ => "signal",
    }
}

/// Classifies an ended process. `gpu_unhealthy` says whether one of its GPUs turned unhealthy
/// while it ran; `tail` is the end of its log.
pub fn classify(exit: &Exit, stop: Option<Stop>, gpu_unhealthy: bool, tail: &[String]) -> Outcome {
    let failed = |class, reason, message: String| Outcome {
        phase: TaskPhase::Failed,
        failure_class: Some(class),
        reason,
        message,
    };
    match stop {
        Some(Stop::Cancelled | Stop::Superseded) => {
            return Outcome {
                phase: TaskPhase::Cancelled,
                failure_class: None,
                reason: Reason::Cancelled,
                message: "stopped on request".into(),
            };
        }
        Some(Stop::Deadline) => {
            return failed(
                FailureClass::DeadlineExceeded,
                Reason::DeadlineExceeded,
                "ran longer than activeDeadlineSeconds and was killed".into(),
            );
        }
        None => {}
    }
    if *exit == Exit::Code(0) {
        return Outcome {
            phase: TaskPhase::Succeeded,
            failure_class: None,
            reason: Reason::Completed,
            message: "exited with code 0".into(),
        };
    }
    let marker = tail
        .iter()
        .rev()
        .find_map(|line| GPU_FAULT_MARKERS.iter().find(|m| line.contains(*m)));
    if gpu_unhealthy || marker.is_some() {
        let why = marker.map_or_else(
            || "one of its GPUs turned unhealthy while it ran".to_owned(),
            |m| format!("its output reports a GPU fault ({m})"),
        );
        return failed(
            FailureClass::GpuFault,
            Reason::GpuFault,
            format!("{}; {why}", describe(exit)),
        );
    }
    match exit {
        Exit::Signal(s) => failed(
            FailureClass::Signal,
            Reason::Signaled,
            format!("killed by {} ({s})", signal_name(*s)),
        ),
        Exit::SpawnFailed(e) => failed(
            FailureClass::UserError,
            Reason::StartFailed,
            format!("failed to start the command: {e}"),
        ),
        Exit::Unknown => failed(
            FailureClass::AgentError,
            Reason::ProcessVanished,
            "the process ended while the agent was not running and left no exit status".into(),
        ),
        Exit::Code(code) => failed(
            FailureClass::UserError,
            Reason::Error,
            format!("exited with code {code}"),
        ),
    }
}

fn describe(exit: &Exit) -> String {
    match exit {
        Exit::Code(c) => format!("exited with code {c}"),
        Exit::Signal(s) => format!("killed by {} ({s})", signal_name(*s)),
        Exit::SpawnFailed(e) => format!("failed to start: {e}"),
        Exit::Unknown => "ended without an exit status".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn zero_is_success() {
        let o = classify(&Exit::Code(0), None, false, &[]);
        assert_eq!(o.phase, TaskPhase::Succeeded);
        assert_eq!(o.failure_class, None);
    }

    #[test]
    fn nonzero_is_a_user_error() {
        let o = classify(&Exit::Code(3), None, false, &tail(&["Traceback", "ValueError"]));
        assert_eq!(o.phase, TaskPhase::Failed);
        assert_eq!(o.failure_class, Some(FailureClass::UserError));
        assert_eq!(o.message, "exited with code 3");
    }

    #[test]
    fn signals_are_named() {
        let o = classify(&Exit::Signal(9), None, false, &[]);
        assert_eq!(o.failure_class, Some(FailureClass::Signal));
        assert!(o.message.contains("SIGKILL"));
    }

    #[test]
    fn gpu_faults_from_health_or_output() {
        let o = classify(&Exit::Code(1), None, true, &[]);
        assert_eq!(o.failure_class, Some(FailureClass::GpuFault));
        let o = classify(
            &Exit::Signal(6),
            None,
            false,
            &tail(&["RuntimeError: CUDA error: uncorrectable ECC error encountered"]),
        );
        assert_eq!(o.failure_class, Some(FailureClass::GpuFault));
        assert!(o.message.contains("SIGABRT"));
        // Success is success even if a GPU turned bad afterwards.
        assert_eq!(
            classify(&Exit::Code(0), None, true, &[]).phase,
            TaskPhase::Succeeded
        );
    }

    #[test]
    fn the_agents_own_stops_win() {
        let o = classify(&Exit::Signal(15), Some(Stop::Cancelled), false, &[]);
        assert_eq!(o.phase, TaskPhase::Cancelled);
        let o = classify(&Exit::Code(0), Some(Stop::Deadline), false, &[]);
        assert_eq!(o.failure_class, Some(FailureClass::DeadlineExceeded));
    }

    #[test]
    fn spawn_failures_and_vanished_processes() {
        let o = classify(
            &Exit::SpawnFailed("No such file or directory".into()),
            None,
            false,
            &[],
        );
        assert_eq!(
            (o.failure_class, o.reason.as_str()),
            (Some(FailureClass::UserError), "StartFailed")
        );
        let o = classify(&Exit::Unknown, None, false, &[]);
        assert_eq!(o.failure_class, Some(FailureClass::AgentError));
    }
}
