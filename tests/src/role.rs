//! Any `ringrift` role (controller, simulated agents) as a process: started with its log in
//! the scratch directory, stopped with SIGTERM or SIGKILL, and killed when dropped.

// Test harness: a failed unwrap is a failed test with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::missing_panics_doc
)]

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::Duration;

use crate::process::{spawn_announced, spawn_program};

/// A running `ringrift` subcommand.
#[derive(Debug)]
pub struct RoleProcess {
    child: Child,
    /// Its name (and log file `<dir>/<name>.log`).
    pub name: String,
    log: PathBuf,
    /// The stdout line that announced it was up.
    pub announced: String,
}

impl RoleProcess {
    /// Starts `ringrift <args>` (log in `<dir>/<name>.log`) and waits (30 s at most) for a
    /// stdout line starting with `ready_prefix`.
    ///
    /// # Errors
    /// When it cannot start or does not announce itself in time.
    pub fn start(dir: &Path, name: &str, args: &[String], ready_prefix: &str) -> Result<Self, String> {
        Self::start_with_env(
            dir,
            name,
            args,
            ready_prefix,
            &[("RINGRIFT_LOG", "info,ringrift_controller=debug")],
        )
    }

    /// [`RoleProcess::start`] with these environment variables (and no others added).
    ///
    /// # Errors
    /// When it cannot start or does not announce itself in time.
    pub fn start_with_env(
        dir: &Path,
        name: &str,
        args: &[String],
        ready_prefix: &str,
        env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let log = dir.join(format!("{name}.log"));
        let (child, announced) = spawn_announced(args, env, &log, ready_prefix)?;
        Ok(Self {
            child,
            name: name.to_owned(),
            log,
            announced,
        })
    }

    /// Starts `program <args>` (a wrapper that ends up running `ringrift`) with `env` and
    /// without the variables in `remove`, as [`RoleProcess::start`] does.
    ///
    /// # Errors
    /// When it cannot start or does not announce itself in time.
    pub fn start_program(
        dir: &Path,
        name: &str,
        program: &Path,
        args: &[String],
        ready_prefix: &str,
        env: &[(String, String)],
        remove: &[&str],
    ) -> Result<Self, String> {
        let log = dir.join(format!("{name}.log"));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (child, announced) = spawn_program(program, args, &env, remove, &log, ready_prefix)?;
        Ok(Self {
            child,
            name: name.to_owned(),
            log,
            announced,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash would, and waits for it to be gone.
    pub fn kill(&mut self) {
        ringrift::harness::reap(&mut self.child);
    }

    /// Sends SIGTERM.
    ///
    /// # Errors
    /// When `kill` cannot be run.
    pub fn terminate(&self) -> Result<(), String> {
        ringrift::harness::terminate(self.child.id()).map_err(|e| e.to_string())
    }

    /// Waits at most `within` for it to exit.
    ///
    /// # Errors
    /// When it is still running after `within`.
    pub fn wait(&mut self, within: Duration) -> Result<ExitStatus, String> {
        ringrift::harness::wait_exit(&mut self.child, within)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("ringrift {} still runs after {within:?}", self.name))
    }

    /// A client for the server it announced (its URL and certificate fingerprint): an agent's
    /// REST API, a controller's admin port.
    ///
    /// # Panics
    /// When the announcement names no https URL and fingerprint.
    pub fn announced_client(&self) -> crate::https::HttpClient {
        let (url, fingerprint) = crate::https::announced_endpoint(&self.announced);
        crate::https::HttpClient::pinned(&url, &fingerprint).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for RoleProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of the {} log ---", self.name);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
