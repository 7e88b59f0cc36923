//! Starting the real `ringrift` binary as a process for a test, and cleaning up after it.

// Test harness: a failed unwrap is a failed test with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::missing_panics_doc
)]

pub use crate::https::{HttpClient, Kubeconfig};

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

/// The `ringrift` binary: `$RINGRIFT_BIN`, or the one cargo built next to the test binary.
///
/// # Errors
/// When it has not been built.
pub fn ringrift_bin() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("RINGRIFT_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate the test binary: {e}"))?;
    // target/<profile>/deps/<test> -> target/<profile>/ringrift
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("ringrift"))
        .ok_or("unexpected test binary location")?;
    if bin.exists() {
        // `cargo test -p ringrift-e2e` alone does not rebuild the binary: refuse a stale one
        // rather than test old code.
        let built = std::fs::metadata(&bin)
            .and_then(|m| m.modified())
            .map_err(|e| e.to_string())?;
        if let Some(newer) = newest_source(&crate::repo_root()).filter(|(t, _)| *t > built) {
            return Err(format!(
                "{} is older than {}: rebuild it with `cargo build -p ringrift` (`cargo test --workspace` does)",
                bin.display(),
                newer.1.display()
            ));
        }
        Ok(bin)
    } else {
        Err(format!(
            "{} does not exist: build it with `cargo build -p ringrift` (`cargo test --workspace` and scripts/test.sh do)",
            bin.display()
        ))
    }
}

/// The most recently modified source the binary is built from, and when.
fn newest_source(root: &Path) -> Option<(std::time::SystemTime, PathBuf)> {
    fn walk(dir: &Path, newest: &mut Option<(std::time::SystemTime, PathBuf)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, newest);
            } else if let Ok(modified) = entry.metadata().and_then(|m| m.modified())
                && newest.as_ref().is_none_or(|(t, _)| modified > *t)
            {
                *newest = Some((modified, path));
            }
        }
    }
    let mut newest = None;
    for dir in ["crds/src", "apiserver/src", "apiserver/migrations", "cli/src"] {
        walk(&root.join(dir), &mut newest);
    }
    newest
}

/// Starts `ringrift <args>` (stderr appended to `log`) and waits (30 s at most) for the
/// stdout line starting with `prefix`, which it returns. Later stdout lines are drained.
///
/// # Errors
/// When it cannot start or does not announce itself in time (the error holds the log).
pub fn spawn_announced(
    args: &[String],
    env: &[(&str, &str)],
    log: &Path,
    prefix: &str,
) -> Result<(Child, String), String> {
    spawn_program(&ringrift_bin()?, args, env, &[], log, prefix)
}

/// [`spawn_announced`] for any `program` (a wrapper that ends up running `ringrift`), with the
/// environment variables `remove` taken away.
///
/// # Errors
/// When it cannot start or does not announce itself in time (the error holds the log).
pub fn spawn_program(
    program: &Path,
    args: &[String],
    env: &[(&str, &str)],
    remove: &[&str],
    log: &Path,
    prefix: &str,
) -> Result<(Child, String), String> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("failed to open {}: {e}", log.display()))?;
    // The subcommand: the first argument, or the one after the binary when a wrapper runs it.
    let what = args
        .iter()
        .position(|a| a.ends_with("/ringrift"))
        .map_or(args.first(), |i| args.get(i + 1))
        .map_or("", String::as_str);
    let mut command = Command::new(program);
    for name in remove {
        command.env_remove(name);
    }
    command.args(args).envs(env.iter().copied()).stderr(file);
    let what = format!("ringrift {what}");
    ringrift::harness::spawn_announced(&mut command, &what, prefix, START_DEADLINE)
        .map(|a| (a.child, a.line))
        .map_err(|e| {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            format!("{e}:\n{text}")
        })
}

/// A scratch directory for one test, removed on drop unless the test failed (then kept, and
/// its path printed, for the logs in it).
#[derive(Debug)]
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// A fresh directory named after the test.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn new(test: &str) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("ringrift-e2e-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("failed to create {}: {e}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test failed; its files are kept in {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A running `ringrift apiserver`, killed on drop. Its stderr goes to `apiserver.log` in its
/// directory and is printed when the test fails.
#[derive(Debug)]
pub struct ApiServerProcess {
    child: Child,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// The kubeconfig it wrote.
    pub kubeconfig: PathBuf,
    dir: PathBuf,
    args: Vec<String>,
}

/// How long a server may take to announce its address.
const START_DEADLINE: Duration = Duration::from_secs(30);

impl ApiServerProcess {
    /// Starts `ringrift apiserver` on a free port with its data in `dir/data`, plus `extra`
    /// arguments, and waits (with a deadline) until it announces its address.
    ///
    /// # Errors
    /// When it cannot be started or does not announce itself in time.
    pub fn start(dir: &Path, extra: &[&str]) -> Result<Self, String> {
        let kubeconfig = dir.join("kubeconfig");
        let mut args: Vec<String> = vec![
            "apiserver".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            dir.join("data").display().to_string(),
            "--write-kubeconfig".into(),
            kubeconfig.display().to_string(),
            "--log-level".into(),
            "debug".into(),
        ];
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let (child, url) = Self::spawn(dir, &args)?;
        Ok(Self {
            child,
            url,
            kubeconfig,
            dir: dir.to_path_buf(),
            args,
        })
    }

    fn spawn(dir: &Path, args: &[String]) -> Result<(Child, String), String> {
        let log = dir.join("apiserver.log");
        let (child, line) = spawn_announced(args, &[], &log, "ringrift apiserver listening on ")?;
        let url = line
            .trim_start_matches("ringrift apiserver listening on ")
            .to_owned();
        Ok((child, url))
    }

    /// Kills it with SIGKILL, as a crash would, and waits for it to be gone.
    pub fn kill(&mut self) {
        ringrift::harness::reap(&mut self.child);
    }

    /// Kills it, removes its database and starts it again on the same address, as if the
    /// control plane came back empty (its CA kept: clients keep their kubeconfig).
    ///
    /// # Errors
    /// As [`Self::start`].
    pub fn restart_empty_on_same_address(&mut self) -> Result<(), String> {
        self.restart_without(&["apiserver.db", "apiserver.db-wal", "apiserver.db-shm"])
    }

    /// Kills it, removes its data and its CA, and starts it again on the same address: another
    /// cluster where this one was, which the clients' kubeconfigs do not trust.
    ///
    /// # Errors
    /// As [`Self::start`].
    pub fn restart_with_a_new_ca_on_same_address(&mut self) -> Result<(), String> {
        self.restart_without(&["apiserver.db", "apiserver.db-wal", "apiserver.db-shm", "pki"])
    }

    /// Kills it and starts it again with its data on the same address (clients' kubeconfigs
    /// stay right).
    ///
    /// # Errors
    /// As [`Self::start`].
    pub fn restart_on_same_address(&mut self) -> Result<(), String> {
        self.restart_without(&[])
    }

    fn restart_without(&mut self, entries: &[&str]) -> Result<(), String> {
        self.kill();
        for entry in entries {
            let path = self.dir.join("data").join(entry);
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match removed {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(format!("failed to remove {}: {e}", path.display()));
                }
                _ => {}
            }
        }
        let address = crate::https::authority(&self.url);
        let mut args = self.args.clone();
        if let Some(i) = args.iter().position(|a| a == "--listen") {
            args[i + 1] = address;
        }
        let (child, url) = Self::spawn(&self.dir, &args)?;
        self.child = child;
        self.url = url;
        Ok(())
    }

    /// Starts it again with the same arguments and data (after [`Self::kill`]).
    ///
    /// # Errors
    /// As [`Self::start`].
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let (child, url) = Self::spawn(&self.dir, &self.args)?;
        self.child = child;
        self.url = url;
        Ok(())
    }

    /// A raw HTTP client for its API as the administrator of its kubeconfig (TLS, the CA and
    /// the admin's client certificate), usable from other threads.
    ///
    /// # Panics
    /// When the kubeconfig is unreadable.
    pub fn client(&self) -> HttpClient {
        let kubeconfig = Kubeconfig::read(&self.kubeconfig).unwrap_or_else(|e| panic!("{e}"));
        HttpClient::from_kubeconfig(&kubeconfig).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A raw HTTP client for its API that trusts its CA and presents no client certificate:
    /// anonymous, unless a request carries a token.
    ///
    /// # Panics
    /// When the kubeconfig is unreadable.
    pub fn anonymous_client(&self) -> HttpClient {
        let kubeconfig = Kubeconfig::read(&self.kubeconfig).unwrap_or_else(|e| panic!("{e}"));
        self.client().without_identity(&kubeconfig)
    }

    /// A raw HTTP/1.1 request as the administrator; returns the status code and body.
    ///
    /// # Errors
    /// When the connection fails.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, String), String> {
        self.client().http(method, path, headers, body)
    }

    /// The port it listens on.
    ///
    /// # Panics
    /// When its URL has none.
    pub fn port(&self) -> u16 {
        crate::https::authority(&self.url)
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {}", self.url))
    }

    /// The CA bundle clients trust it by (from its kubeconfig).
    ///
    /// # Panics
    /// When the kubeconfig has none.
    pub fn ca(&self) -> String {
        Kubeconfig::read(&self.kubeconfig)
            .ok()
            .and_then(|k| k.ca)
            .unwrap_or_else(|| panic!("{} has no CA", self.kubeconfig.display()))
    }
}

impl Drop for ApiServerProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.join("apiserver.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- last lines of the apiserver log ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}
