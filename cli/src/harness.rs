//! Running `ringrift` roles as child processes and waiting for them to say they are up: the one
//! harness the benchmarks (`ringrift bench …`) and the end-to-end tests (`tests/`) share.
//!
//! Every role prints one line on stdout once it serves (`ringrift apiserver listening on …`,
//! `ringrift agent a1: REST on …`); [`spawn_announced`] starts a command and waits for that line
//! with a deadline, then keeps draining stdout so the child never blocks on a full pipe.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A started child and the line it announced itself with.
#[derive(Debug)]
pub struct Announced {
    /// The child (stdout taken; the rest as the command set it).
    pub child: Child,
    /// Its announcement.
    pub line: String,
}

/// A child that could not be started, signalled or waited for.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The command did not start.
    #[error("failed to start {what}: {source}")]
    Start {
        /// What was started.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No announcement within the deadline (the child was killed).
    #[error("{what} did not announce itself within {within:?}")]
    Silent {
        /// What was started.
        what: String,
        /// The deadline.
        within: Duration,
    },
    /// It closed stdout (exited) before announcing itself.
    #[error("{what} exited before it announced itself ({status})")]
    Exited {
        /// What was started.
        what: String,
        /// How it ended, as far as known.
        status: String,
    },
    /// A signal could not be sent.
    #[error("failed to signal process {pid}: {source}")]
    Signal {
        /// The process.
        pid: u32,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Starts `command` (its stdout piped; stdin null) and waits at most `within` for a stdout line
/// starting with `prefix`. Later lines are read and dropped on a thread. A child that does not
/// announce itself in time is killed and reaped.
///
/// # Errors
/// [`HarnessError::Start`], [`HarnessError::Silent`] or [`HarnessError::Exited`].
pub fn spawn_announced(
    command: &mut Command,
    what: &str,
    prefix: &str,
    within: Duration,
) -> Result<Announced, HarnessError> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|source| HarnessError::Start {
            what: what.to_owned(),
            source,
        })?;
    let Some(stdout) = child.stdout.take() else {
        reap(&mut child);
        return Err(HarnessError::Exited {
            what: what.to_owned(),
            status: "no stdout".into(),
        });
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut announced = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // After the announcement the receiver is gone; lines are still read, so the
            // child never blocks writing them.
            if !announced {
                announced = tx.send(line).is_err();
            }
        }
    });
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with(prefix) => return Ok(Announced { child, line }),
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                reap(&mut child);
                return Err(HarnessError::Silent {
                    what: what.to_owned(),
                    within,
                });
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = wait_exit(&mut child, Duration::from_secs(5))
                    .ok()
                    .flatten()
                    .map_or_else(
                        || "still running with stdout closed".to_owned(),
                        |s| s.to_string(),
                    );
                reap(&mut child);
                return Err(HarnessError::Exited {
                    what: what.to_owned(),
                    status,
                });
            }
        }
    }
}

/// Sends SIGTERM to `pid`.
///
/// # Errors
/// [`HarnessError::Signal`] when it cannot be sent (no such process, among others).
pub fn terminate(pid: u32) -> Result<(), HarnessError> {
    let target = rustix::process::Pid::from_raw(pid.cast_signed()).ok_or_else(|| HarnessError::Signal {
        pid,
        source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
    })?;
    rustix::process::kill_process(target, rustix::process::Signal::TERM).map_err(|e| HarnessError::Signal {
        pid,
        source: e.into(),
    })
}

/// Waits at most `within` for `child` to exit: its status, or none if it still runs.
///
/// # Errors
/// When its state cannot be read.
pub fn wait_exit(child: &mut Child, within: Duration) -> std::io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILL, then waits for it to be gone (a crash, or cleaning up).
pub fn reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn the_announcement_is_found_after_other_lines() {
        let mut a = spawn_announced(
            &mut sh("echo starting; echo 'ready at 1'; sleep 5"),
            "sh",
            "ready at",
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(a.line, "ready at 1");
        terminate(a.child.id()).unwrap();
        let status = wait_exit(&mut a.child, Duration::from_secs(10)).unwrap().unwrap();
        assert!(!status.success());
    }

    #[test]
    fn a_child_that_exits_or_stays_silent_is_an_error_that_says_which() {
        let e = spawn_announced(
            &mut sh("echo nope; exit 3"),
            "sh",
            "ready",
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert!(matches!(e, HarnessError::Exited { .. }), "{e}");
        assert!(e.to_string().contains("exit status: 3"), "{e}");
        let e = spawn_announced(&mut sh("sleep 30"), "sh", "ready", Duration::from_millis(200)).unwrap_err();
        assert!(matches!(e, HarnessError::Silent { .. }), "{e}");
        let e = spawn_announced(
            &mut Command::new("/nonexistent/ringrift"),
            "ringrift",
            "x",
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(e, HarnessError::Start { .. }), "{e}");
    }
}
