//! `ringrift apiserver`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use ringrift_apiserver::certs::TlsOptions;
use ringrift_apiserver::http::DEFAULT_MAX_BODY;
use ringrift_apiserver::run::{Config, run};
use tokio_util::sync::CancellationToken;

use crate::telemetry::{self, TelemetryArgs};

/// Options of `ringrift apiserver`.
#[derive(Debug, clap::Args)]
pub struct ApiserverArgs {
    /// Address to listen on. Port 0 picks a free port; the address is printed on start.
    #[arg(long, env = "RINGRIFT_APISERVER_LISTEN", default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// The address clients reach this server at: the kubeconfig's server, and a name of the
    /// serving certificate. Default: the listen address (127.0.0.1 when listening on all).
    #[arg(long, env = "RINGRIFT_APISERVER_ADVERTISE_ADDRESS")]
    pub advertise_address: Option<IpAddr>,
    #[command(flatten)]
    pub tls: TlsArgs,
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
    /// A bearer token that authenticates as the administrator (besides the client certificate
    /// in the kubeconfig this server writes).
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
    /// With `--authorization-mode RBAC`: a request without credentials is the user
    /// `system:anonymous` (group `system:unauthenticated`), allowed what RBAC grants it, instead
    /// of refused 401.
    #[arg(long, env = "RINGRIFT_APISERVER_ANONYMOUS_AUTH")]
    pub anonymous_auth: bool,
    /// Append one JSON line per API request (user, verb, resource, namespace, name, code) to
    /// this file.
    #[arg(long, env = "RINGRIFT_APISERVER_AUDIT_LOG", value_name = "FILE")]
    pub audit_log: Option<PathBuf>,
    /// Write a kubeconfig for this server to this file (mode 0600): its CA and an
    /// administrator's client certificate (for kubectl and the other roles).
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

/// TLS options of `ringrift apiserver`: its own CA by default, or kube-apiserver's flags.
#[derive(Debug, clap::Args)]
pub struct TlsArgs {
    /// A serving certificate (PEM, leaf first) of one's own, instead of one issued by this
    /// server's CA. Read again when the file changes.
    #[arg(
        long,
        env = "RINGRIFT_APISERVER_TLS_CERT_FILE",
        value_name = "FILE",
        requires = "tls_private_key_file"
    )]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key of --tls-cert-file.
    #[arg(
        long,
        env = "RINGRIFT_APISERVER_TLS_PRIVATE_KEY_FILE",
        value_name = "FILE",
        requires = "tls_cert_file"
    )]
    pub tls_private_key_file: Option<PathBuf>,
    /// CAs (PEM bundle) whose client certificates authenticate (CN = user, O = group), besides
    /// this server's own CA.
    #[arg(long, env = "RINGRIFT_APISERVER_CLIENT_CA_FILE", value_name = "FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// More names (DNS names or IP addresses) for the serving certificate, comma-separated or
    /// repeated. localhost, 127.0.0.1, ::1, the host name and the advertised address are always
    /// in it.
    #[arg(long, env = "RINGRIFT_APISERVER_TLS_SAN", value_delimiter = ',')]
    pub tls_san: Vec<String>,
    /// Serve plain HTTP: no TLS, no client certificates, tokens in clear text, and without a
    /// token no authentication at all. For benchmark baselines on one machine only.
    #[arg(long, env = "RINGRIFT_APISERVER_INSECURE_PLAIN_HTTP")]
    pub insecure_plain_http: bool,
    /// How long a serving certificate this server issues is valid.
    #[arg(long, hide = true, default_value = "8760h", value_parser = crate::duration::parse)]
    pub tls_serving_validity: Duration,
    /// How often the serving certificate is checked for renewal (and --tls-cert-file for
    /// changes).
    #[arg(long, hide = true, default_value = "1h", value_parser = crate::duration::parse)]
    pub tls_renew_check: Duration,
}

impl TlsArgs {
    /// The TLS options, or `None` for plain HTTP.
    fn options(self) -> anyhow::Result<Option<TlsOptions>> {
        let Self {
            tls_cert_file,
            tls_private_key_file,
            client_ca_file,
            tls_san,
            insecure_plain_http,
            tls_serving_validity,
            tls_renew_check,
        } = self;
        if insecure_plain_http {
            anyhow::ensure!(
                tls_cert_file.is_none() && client_ca_file.is_none() && tls_san.is_empty(),
                "--insecure-plain-http serves no TLS: drop --tls-cert-file, --client-ca-file and --tls-san"
            );
            return Ok(None);
        }
        for san in &tls_san {
            anyhow::ensure!(
                san.parse::<IpAddr>().is_ok() || ringrift_tls::pki::valid_dns_name(san.trim()),
                "invalid --tls-san {san:?}: a DNS name or an IP address"
            );
        }
        Ok(Some(TlsOptions {
            cert_file: tls_cert_file,
            key_file: tls_private_key_file,
            client_ca_file,
            sans: tls_san,
            serving_validity: tls_serving_validity,
            renew_check: tls_renew_check,
            ..TlsOptions::default()
        }))
    }
}

pub(crate) fn run_apiserver(args: ApiserverArgs) -> anyhow::Result<ExitCode> {
    let ApiserverArgs {
        listen,
        advertise_address,
        tls,
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
        advertise: advertise_address,
        tls: tls.options()?,
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
        .block_on(async { run(config, shutdown_on_signal()).await })
        .context("apiserver failed")?;
    Ok(ExitCode::SUCCESS)
}

/// The process's shutdown: a token cancelled on SIGTERM or Ctrl-C, handed down to every
/// long-running task (each returns when it is cancelled). Call inside the runtime.
pub(crate) fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let signal = shutdown_signal().await;
        tracing::info!("{signal}; shutting down");
        cancel.cancel();
    });
    token
}

/// Completes on SIGTERM or Ctrl-C, with which it was.
pub(crate) async fn shutdown_signal() -> &'static str {
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
        () = ctrl_c => "interrupted",
        () = term => "SIGTERM",
    }
}
