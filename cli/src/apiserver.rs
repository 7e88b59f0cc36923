//! `ringrift apiserver`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use ringrift_apiserver::http::DEFAULT_MAX_BODY;
use ringrift_apiserver::run::{Config, run};

use crate::telemetry::{self, TelemetryArgs};

/// Options of `ringrift apiserver`.
#[derive(Debug, clap::Args)]
pub struct ApiserverArgs {
    /// Address to listen on. Port 0 picks a free port; the address is printed on start.
    #[arg(long, env = "RINGRIFT_APISERVER_LISTEN", default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Directory of the SQLite database (created if missing).
    #[arg(
        long,
        env = "RINGRIFT_APISERVER_DATA_DIR",
        default_value = ".ringrift/apiserver"
    )]
    pub data_dir: PathBuf,
    /// Keep everything in memory and lose it on exit (for tests); ignores --data-dir.
    #[arg(long, env = "RINGRIFT_APISERVER_IN_MEMORY")]
    pub in_memory: bool,
    /// Bearer token every client must send. Unset: no authentication.
    #[arg(long, env = "RINGRIFT_APISERVER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Static bearer tokens, in the format of kube-apiserver's `--token-auth-file`: one
    /// `token,user,uid[,"group1,group2"]` per line (ServiceAccounts are users
    /// `system:serviceaccount:<namespace>:<name>`).
    #[arg(long, env = "RINGRIFT_APISERVER_TOKEN_AUTH_FILE", value_name = "FILE")]
    pub token_auth_file: Option<PathBuf>,
    /// `AlwaysAllow` (every authenticated user may do anything) or `RBAC` (users outside
    /// `system:masters` may do what the stored Roles and ClusterRoles bound to them allow).
    #[arg(long, env = "RINGRIFT_APISERVER_AUTHORIZATION_MODE", default_value = "AlwaysAllow", value_parser = ["AlwaysAllow", "RBAC"])]
    pub authorization_mode: String,
    /// With `--authorization-mode RBAC`: a request without a token is the user
    /// `system:anonymous` (group `system:unauthenticated`), allowed what RBAC grants it, instead
    /// of refused (kubectl sends tokens only over TLS; bind a role to that group for it).
    #[arg(long, env = "RINGRIFT_APISERVER_ANONYMOUS_AUTH")]
    pub anonymous_auth: bool,
    /// Append one JSON line per API request (user, verb, resource, namespace, name, code) to
    /// this file.
    #[arg(long, env = "RINGRIFT_APISERVER_AUDIT_LOG", value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Write a kubeconfig for this server to this file (for kubectl and the other roles).
    #[arg(long, env = "RINGRIFT_APISERVER_KUBECONFIG", value_name = "FILE")]
    pub write_kubeconfig: Option<PathBuf>,
    /// Watch events kept for clients that resume from an older resourceVersion.
    #[arg(long, env = "RINGRIFT_APISERVER_WATCH_HISTORY", default_value_t = 10_000)]
    pub watch_history: u64,
    /// Largest request body, in bytes.
    #[arg(long, env = "RINGRIFT_APISERVER_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY)]
    pub max_body_bytes: usize,
    /// How often watches that ask for bookmarks get one.
    #[arg(long, env = "RINGRIFT_APISERVER_BOOKMARK_INTERVAL", default_value = "10s", value_parser = crate::duration::parse)]
    pub bookmark_interval: Duration,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

pub(crate) fn run_apiserver(args: ApiserverArgs) -> anyhow::Result<ExitCode> {
    let ApiserverArgs {
        listen,
        data_dir,
        in_memory,
        token,
        token_auth_file,
        authorization_mode,
        audit_log,
        anonymous_auth,
        write_kubeconfig,
        watch_history,
        max_body_bytes,
        bookmark_interval,
        telemetry,
    } = args;
    telemetry::init(&telemetry)?;
    anyhow::ensure!(
        !anonymous_auth || authorization_mode == "RBAC",
        "--anonymous-auth needs --authorization-mode RBAC (otherwise anyone could do anything)"
    );
    let config = Config {
        listen,
        data_dir: (!in_memory).then_some(data_dir),
        token: token.filter(|t| !t.is_empty()),
        token_file: token_auth_file,
        rbac: authorization_mode == "RBAC",
        audit_log,
        anonymous: anonymous_auth,
        kubeconfig: write_kubeconfig,
        watch_history,
        max_body: max_body_bytes,
        bookmark_interval,
    };
    let runtime = crate::runtime()?;
    runtime
        .block_on(async { run(config, shutdown_signal()).await })
        .context("apiserver failed")?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGTERM or Ctrl-C.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("interrupted; shutting down"),
        () = term => tracing::info!("SIGTERM; shutting down"),
    }
}
