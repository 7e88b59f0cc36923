//! The task shim: `ringrift task-shim --exit-file F -- COMMAND…`.
//!
//! The agent starts every workload through the shim, which leads the task's process group,
//! runs the command, and writes how it ended to the exit file (through a temporary file and a
//! rename). An agent that restarted while the task ran is not the shim's parent and cannot wait
//! for it; it reads the exit file instead, so a task that finished meanwhile is reported as it
//! really ended.

use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::classify::Exit;

/// What the exit file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ExitRecord {
    /// Exit code.
    Code(i32),
    /// Terminating signal.
    Signal(i32),
    /// The command could not be started.
    SpawnError(String),
}

impl From<ExitRecord> for Exit {
    fn from(r: ExitRecord) -> Self {
        match r {
            ExitRecord::Code(c) => Exit::Code(c),
            ExitRecord::Signal(s) => Exit::Signal(s),
            ExitRecord::SpawnError(e) => Exit::SpawnFailed(e),
        }
    }
}

/// Reads an exit file; `None` when there is none (or it cannot be read).
pub fn read(path: &Path) -> Option<ExitRecord> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

fn write(path: &Path, record: &ExitRecord) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(record).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Runs `command` (program and arguments), records how it ended and returns the shim's exit
/// code (the command's, or 128 + signal).
pub fn run(exit_file: &Path, command: &[String]) -> i32 {
    let record = match command.split_first() {
        None => ExitRecord::SpawnError("empty command".into()),
        Some((program, args)) => match std::process::Command::new(program).args(args).status() {
            Ok(status) => match (status.code(), status.signal()) {
                (Some(code), _) => ExitRecord::Code(code),
                (None, Some(signal)) => ExitRecord::Signal(signal),
                (None, None) => ExitRecord::SpawnError("no exit status".into()),
            },
            Err(e) => ExitRecord::SpawnError(format!("{program}: {e}")),
        },
    };
    if let Err(e) = write(exit_file, &record) {
        eprintln!("ringrift task-shim: failed to write {}: {e}", exit_file.display());
    }
    match record {
        ExitRecord::Code(c) => c,
        ExitRecord::Signal(s) => 128 + s,
        ExitRecord::SpawnError(e) => {
            eprintln!("ringrift task-shim: {e}");
            127
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_codes_signals_and_spawn_errors() {
        let dir = std::env::temp_dir().join(format!("shim-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exit = dir.join("exit.json");
        let sh = |script: &str| vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned()];

        assert_eq!(run(&exit, &sh("exit 3")), 3);
        assert_eq!(read(&exit), Some(ExitRecord::Code(3)));

        assert_eq!(run(&exit, &sh("kill -9 $$")), 137);
        assert_eq!(read(&exit), Some(ExitRecord::Signal(9)));

        assert_eq!(run(&exit, &["/no/such/program".to_owned()]), 127);
        assert!(matches!(read(&exit), Some(ExitRecord::SpawnError(e)) if e.contains("/no/such/program")));

        std::fs::write(&exit, "garbage").unwrap();
        assert_eq!(read(&exit), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
