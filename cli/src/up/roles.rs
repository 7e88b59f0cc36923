//! The child processes of `ringrift up`: controller replicas and agents, each started from this
//! binary with a credential of its own ([`super::identities`]) and its log under `logs/`,
//! watched, and stopped with SIGTERM then SIGKILL.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, Command};

use super::identities::{self, Identity};

/// A child process of `up`: a controller replica or an agent.
pub(crate) struct Role {
    name: String,
    child: Child,
}

/// A random secret in `path` (mode 0600), made the first time.
fn secret_file(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        ringrift_tls::files::write_private(path, secret.as_bytes())
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(())
}

/// The shared secrets of the processes `up` starts, each in a file of `dir` made the first time:
/// the agents' REST token, the cluster key (gossip and peer fetches), the metrics token and the
/// dashboard token.
pub(crate) struct Secrets {
    token: PathBuf,
    cluster_key: PathBuf,
    metrics_token: PathBuf,
    dashboard_token: PathBuf,
}

impl Secrets {
    /// The cluster key's file.
    pub(crate) fn cluster_key_path(&self) -> PathBuf {
        self.cluster_key.clone()
    }

    /// The dashboard token (it signs the login link `up` prints).
    pub(crate) fn dashboard_token(&self) -> anyhow::Result<String> {
        crate::tokens::read(&self.dashboard_token, "the dashboard token")
    }

    /// Makes the secrets in `dir` that are not there yet.
    pub(crate) fn in_dir(dir: &Path) -> anyhow::Result<Self> {
        let secrets = Self {
            token: dir.join("agent-token"),
            cluster_key: dir.join("cluster-key"),
            metrics_token: dir.join("metrics-token"),
            dashboard_token: dir.join("dashboard-token"),
        };
        for file in [
            &secrets.token,
            &secrets.cluster_key,
            &secrets.metrics_token,
            &secrets.dashboard_token,
        ] {
            secret_file(file)?;
        }
        Ok(secrets)
    }
}

/// How the controllers serve the web dashboard: every replica serves it, the first at `at`,
/// the others on ports of their own on the same address.
pub(crate) enum Dashboard {
    /// Plain HTTP on a loopback address (`ringrift up`).
    Plain {
        /// Where the first replica listens.
        at: std::net::SocketAddr,
    },
    /// TLS with a certificate from the cluster CA (`ringrift server`).
    Tls {
        /// Where the first replica listens.
        at: std::net::SocketAddr,
        /// The certificate and its key.
        files: (PathBuf, PathBuf),
    },
}

impl Dashboard {
    /// The flags of replica `i` (from 1).
    fn flags(&self, i: u32) -> Vec<String> {
        let at = match self {
            Self::Plain { at } | Self::Tls { at, .. } => *at,
        };
        let listen = if i == 1 {
            at
        } else {
            std::net::SocketAddr::new(at.ip(), 0)
        };
        let mut flags = vec!["--dashboard-listen".to_owned(), listen.to_string()];
        match self {
            Self::Plain { .. } => flags.push("--dashboard-plain-http".into()),
            Self::Tls { files, .. } => flags.extend([
                "--dashboard-tls-cert-file".to_owned(),
                files.0.display().to_string(),
                "--dashboard-tls-key-file".to_owned(),
                files.1.display().to_string(),
            ]),
        }
        flags
    }
}

/// Starts `controllers` controller replicas and `agents` agents against the API server at
/// `url`, each with a client certificate from the cluster CA of `dir/apiserver` (kubeconfigs
/// under `dir/credentials`). Every replica serves the web dashboard as `dashboard` says.
pub(crate) fn start(
    dir: &Path,
    url: &str,
    secrets: &Secrets,
    (controllers, agents): (u32, u32),
    dashboard: &Dashboard,
) -> anyhow::Result<Vec<Role>> {
    let exe = std::env::current_exe().context("cannot find the ringrift executable")?;
    let ca = identities::cluster_ca(&dir.join("apiserver"))?;
    let credentials = dir.join("credentials");
    let metrics_token = secrets.metrics_token.display().to_string();
    let mut roles = Vec::new();
    for i in 1..=controllers {
        let name = format!("controller-{i}");
        let kc = identities::credential(&ca, url, &credentials, Identity::Controller(&name))?;
        let kc = kc.display().to_string();
        let a = [
            "controller",
            "--kubeconfig",
            &kc,
            "--identity",
            &name,
            "--admin-listen",
            "127.0.0.1:0",
            "--metrics-token-file",
            &metrics_token,
            "--dashboard-token-file",
            &secrets.dashboard_token.display().to_string(),
            "--agent-token-file",
            &secrets.token.display().to_string(),
        ];
        let mut a: Vec<String> = a.map(String::from).to_vec();
        a.extend(dashboard.flags(i));
        roles.push(spawn(&exe, dir, &name, &a)?);
    }
    for i in 1..=agents {
        let name = format!("agent-{i}");
        let data = dir.join(&name).display().to_string();
        let kc = identities::credential(&ca, url, &credentials, Identity::Agent(&name))?;
        let kc = kc.display().to_string();
        let a = [
            "agent",
            "--kubeconfig",
            &kc,
            "--metrics-token-file",
            &metrics_token,
            "--name",
            &name,
            "--data-dir",
            &data,
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            &secrets.token.display().to_string(),
            "--cluster-key-file",
            &secrets.cluster_key.display().to_string(),
            "--gossip-listen",
            "127.0.0.1:0",
        ];
        roles.push(spawn(&exe, dir, &name, &a.map(String::from))?);
    }
    Ok(roles)
}

/// Which of `roles` has exited, with where its log is.
pub(crate) fn exited(roles: &mut [Role], dir: &Path) -> Option<String> {
    roles.iter_mut().find_map(|r| {
        let status = r.child.try_wait().ok()??;
        Some(format!(
            "{} exited ({status}); see {}",
            r.name,
            dir.join("logs").join(format!("{}.log", r.name)).display()
        ))
    })
}

fn spawn(exe: &Path, dir: &Path, name: &str, args: &[String]) -> anyhow::Result<Role> {
    let log_path = dir.join("logs").join(format!("{name}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("failed to open {}", log_path.display()))?;
    let mut command = std::process::Command::new(exe);
    if args.first().is_some_and(|role| role == "agent") {
        ringrift_agent::allocator_env(&mut command);
    }
    let child = Command::from(command)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("failed to start {name}"))?;
    Ok(Role {
        name: name.to_owned(),
        child,
    })
}

/// SIGTERM to each, then SIGKILL to those still running after `grace`.
pub(crate) async fn stop(roles: &mut [Role], grace: Duration) {
    for r in roles.iter() {
        if let Some(pid) = r
            .child
            .id()
            .and_then(|p| rustix::process::Pid::from_raw(p.cast_signed()))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
    let deadline = tokio::time::Instant::now() + grace;
    for r in roles.iter_mut() {
        if tokio::time::timeout_at(deadline, r.child.wait()).await.is_err() {
            eprintln!(
                "ringrift up: {} did not stop within {grace:?}; killing it",
                r.name
            );
            let _ = r.child.kill().await;
        }
    }
}
