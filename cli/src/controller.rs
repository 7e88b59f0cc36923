//! `ringrift controller`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use ringrift_controller::leader::Timing;
use ringrift_controller::reconcile::breaker::Policy;
use ringrift_controller::reconcile::units::Backoff;
use ringrift_controller::runtime::reconciler::Tuning;
use ringrift_controller::runtime::run::{Config, run};

use crate::apiserver::shutdown_on_signal;
use crate::kubeclient::{self, KubeArgs};
use crate::telemetry::{self, TelemetryArgs};

/// Leader election options.
#[derive(Debug, clap::Args)]
pub struct LeaderArgs {
    /// Name of the leader Lease.
    #[arg(long, env = "RINGRIFT_LEASE_NAME", default_value = "ringrift-controller")]
    pub lease_name: String,
    /// This replica's identity in the Lease. Default: the host name and a random suffix.
    #[arg(long, env = "RINGRIFT_IDENTITY")]
    pub identity: Option<String>,
    /// How long a claim lasts without renewal.
    #[arg(long, env = "RINGRIFT_LEASE_DURATION", default_value = "15s", value_parser = crate::duration::parse)]
    pub lease_duration: Duration,
    /// A leader that cannot renew within this stops writing and exits.
    #[arg(long, env = "RINGRIFT_RENEW_DEADLINE", default_value = "10s", value_parser = crate::duration::parse)]
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew.
    #[arg(long, env = "RINGRIFT_RETRY_PERIOD", default_value = "2s", value_parser = crate::duration::parse)]
    pub retry_period: Duration,
}

/// Options of `ringrift controller`.
#[derive(Debug, clap::Args)]
pub struct ControllerArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Namespace of the leader Lease and of the agents' heartbeat Leases.
    /// Default: the namespace of the kubeconfig's context, or in a pod the pod's own.
    #[arg(long, env = "RINGRIFT_NAMESPACE")]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub leader: LeaderArgs,
    /// Admin port, over TLS (`/live` and `/ready` open, `/metrics` behind the metrics token).
    /// Port 0 picks one; the address is printed.
    #[arg(long, env = "RINGRIFT_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
    pub admin_listen: SocketAddr,
    /// The admin port's certificate (PEM; for example from cert-manager), read again when it
    /// changes. Unset: a self-signed certificate made at start.
    #[arg(
        long,
        env = "RINGRIFT_ADMIN_TLS_CERT_FILE",
        value_name = "FILE",
        requires = "admin_tls_key_file"
    )]
    pub admin_tls_cert_file: Option<PathBuf>,
    /// The private key of --admin-tls-cert-file.
    #[arg(
        long,
        env = "RINGRIFT_ADMIN_TLS_KEY_FILE",
        value_name = "FILE",
        requires = "admin_tls_cert_file"
    )]
    pub admin_tls_key_file: Option<PathBuf>,
    /// File holding the token `/metrics` asks for (the Prometheus scraper's). Unset: `/metrics`
    /// is refused.
    #[arg(long, env = "RINGRIFT_METRICS_TOKEN_FILE", value_name = "FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// Delay before the first retry of a failed work unit; doubles with each failure.
    #[arg(long, env = "RINGRIFT_RETRY_BACKOFF", default_value = "10s", value_parser = crate::duration::parse)]
    pub retry_backoff: Duration,
    /// Longest delay between retries of a work unit.
    #[arg(long, env = "RINGRIFT_RETRY_BACKOFF_MAX", default_value = "5m", value_parser = crate::duration::parse)]
    pub retry_backoff_max: Duration,
    /// API writes in flight at once.
    #[arg(long, env = "RINGRIFT_WRITE_CONCURRENCY", default_value_t = 32)]
    pub write_concurrency: usize,
    /// Tasks of one agent that must fail for reasons of the agent (`GpuFault`, `AgentError`)
    /// within `--breaker-window` to keep it from new work (0: never).
    #[arg(long, env = "RINGRIFT_BREAKER_FAILURES", default_value_t = 3)]
    pub breaker_failures: u32,
    /// The window those failures are counted in.
    #[arg(long, env = "RINGRIFT_BREAKER_WINDOW", default_value = "10m", value_parser = crate::duration::parse)]
    pub breaker_window: Duration,
    /// The first quarantine; each further trip within 6 hours doubles it, up to an hour.
    #[arg(long, env = "RINGRIFT_BREAKER_QUARANTINE", default_value = "5m", value_parser = crate::duration::parse)]
    pub breaker_quarantine: Duration,
    /// How placement decides: `share` (the fleet's fair share by `share.weight`) or
    /// `priority` (plain priority, first come first served: the baseline `ringrift bench
    /// fleet` measures against).
    #[arg(long, env = "RINGRIFT_PLACEMENT", default_value = "share")]
    pub placement: ringrift_controller::plan::placement::Policy,
    /// Trainings TrainingLoops may run at once across the fleet: a loop's next training waits
    /// while this many TrainingJobs are unfinished (0: no limit).
    #[arg(long, env = "RINGRIFT_MAX_CONCURRENT_TRAININGS", default_value_t = 0)]
    pub max_concurrent_trainings: usize,
    /// Hand-overs: a unit that fits nowhere may be bound to the GPUs of a running task expected
    /// to end within this long (by its job's median task time), and its agent starts it as
    /// soon as that task exits; `0s`: off.
    #[arg(long, env = "RINGRIFT_HAND_OVER", default_value = "2s", value_parser = crate::duration::parse)]
    pub hand_over: Duration,
    /// Act as Kueue's external framework: a job labelled `kueue.x-k8s.io/queue-name` gets a
    /// Workload and runs only while Kueue admits it (needs Kueue's Workload CRD).
    #[arg(long, env = "RINGRIFT_KUEUE")]
    pub kueue: bool,
    #[command(flatten)]
    pub dashboard: DashboardArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// The web dashboard's options.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DashboardArgs {
    /// Serve the read-only web dashboard here (port 0 picks one; the URL is printed). Unset:
    /// no dashboard.
    #[arg(long, env = "RINGRIFT_DASHBOARD_LISTEN", value_name = "ADDR")]
    pub dashboard_listen: Option<SocketAddr>,
    /// File holding the dashboard token: a bearer token, or typed into the login page; it
    /// also signs login links and session cookies. Required with --dashboard-listen.
    #[arg(long, env = "RINGRIFT_DASHBOARD_TOKEN_FILE", value_name = "FILE")]
    pub dashboard_token_file: Option<PathBuf>,
    /// The dashboard's certificate (PEM; one the cluster CA issued, so browsers that trust
    /// the CA open it without a warning).
    #[arg(
        long,
        env = "RINGRIFT_DASHBOARD_TLS_CERT_FILE",
        value_name = "FILE",
        requires = "dashboard_tls_key_file"
    )]
    pub dashboard_tls_cert_file: Option<PathBuf>,
    /// The private key of --dashboard-tls-cert-file.
    #[arg(
        long,
        env = "RINGRIFT_DASHBOARD_TLS_KEY_FILE",
        value_name = "FILE",
        requires = "dashboard_tls_cert_file"
    )]
    pub dashboard_tls_key_file: Option<PathBuf>,
    /// Serve the dashboard over plain HTTP instead of TLS: only on a loopback address (as
    /// `kubectl proxy` does; `ringrift up` uses it).
    #[arg(long, env = "RINGRIFT_DASHBOARD_PLAIN_HTTP")]
    pub dashboard_plain_http: bool,
    /// File holding the agents' REST token: the dashboard shows the agents' GPU utilization
    /// and memory and the tasks' logs from their REST API. Unset: neither is shown.
    #[arg(long, env = "RINGRIFT_AGENT_TOKEN_FILE", value_name = "FILE")]
    pub agent_token_file: Option<PathBuf>,
}

/// The dashboard's configuration from its options: none without --dashboard-listen.
///
/// # Errors
/// When a token file cannot be read, or the options contradict each other (plain HTTP off
/// loopback, neither a certificate nor plain HTTP, a dashboard without a token).
pub(crate) fn dashboard_config(
    args: DashboardArgs,
) -> anyhow::Result<Option<ringrift_controller::runtime::dashboard::DashboardConfig>> {
    let Some(listen) = args.dashboard_listen else {
        for (given, flag) in [
            (args.dashboard_token_file.is_some(), "--dashboard-token-file"),
            (
                args.dashboard_tls_cert_file.is_some(),
                "--dashboard-tls-cert-file",
            ),
            (args.dashboard_plain_http, "--dashboard-plain-http"),
        ] {
            anyhow::ensure!(!given, "{flag} is given without --dashboard-listen");
        }
        return Ok(None);
    };
    let token_file = args
        .dashboard_token_file
        .context("--dashboard-listen needs --dashboard-token-file: the dashboard is never open to all")?;
    let tls = args.dashboard_tls_cert_file.zip(args.dashboard_tls_key_file);
    match (&tls, args.dashboard_plain_http) {
        (Some(_), true) => {
            anyhow::bail!("--dashboard-plain-http and --dashboard-tls-cert-file exclude each other")
        }
        (None, false) => anyhow::bail!(
            "--dashboard-listen {listen} needs --dashboard-tls-cert-file and --dashboard-tls-key-file (a certificate from the cluster CA), or --dashboard-plain-http on a loopback address"
        ),
        (None, true) => anyhow::ensure!(
            listen.ip().is_loopback(),
            "--dashboard-plain-http serves only on a loopback address (127.0.0.1, ::1), not {listen}: elsewhere give --dashboard-tls-cert-file"
        ),
        (Some(_), false) => {}
    }
    Ok(Some(ringrift_controller::runtime::dashboard::DashboardConfig {
        listen,
        token: crate::tokens::read(&token_file, "--dashboard-token-file")?,
        tls,
        agent_token: args
            .agent_token_file
            .as_deref()
            .map(|f| crate::tokens::read(f, "--agent-token-file"))
            .transpose()?,
    }))
}

fn default_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "controller".into());
    format!("{host}-{}", std::process::id())
}

pub(crate) fn run_controller(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    let ControllerArgs {
        kube,
        namespace,
        leader:
            LeaderArgs {
                lease_name,
                identity,
                lease_duration,
                renew_deadline,
                retry_period,
            },
        admin_listen,
        admin_tls_cert_file,
        admin_tls_key_file,
        metrics_token_file,
        retry_backoff,
        retry_backoff_max,
        write_concurrency,
        breaker_failures,
        breaker_window,
        breaker_quarantine,
        placement,
        max_concurrent_trainings,
        hand_over,
        kueue,
        dashboard,
        telemetry,
    } = args;
    telemetry::init(&telemetry)?;
    let dashboard = dashboard_config(dashboard)?;
    let metrics_token = metrics_token_file
        .as_deref()
        .map(|f| crate::tokens::read(f, "--metrics-token-file"))
        .transpose()?;
    let mut config = Config {
        namespace: namespace.clone().unwrap_or_default(),
        lease_name,
        identity: identity.unwrap_or_else(default_identity),
        timing: Timing {
            lease_duration,
            renew_deadline,
            retry_period,
        },
        admin: admin_listen,
        admin_tls: admin_tls_cert_file.zip(admin_tls_key_file),
        metrics_token,
        trust: ringrift_tls::trust::TrustMetrics::default(),
        tuning: Tuning {
            backoff: Backoff {
                base: retry_backoff,
                max: retry_backoff_max,
            },
            concurrency: write_concurrency,
            breaker: (breaker_failures > 0).then(|| Policy {
                failures: breaker_failures,
                window: breaker_window,
                quarantine: breaker_quarantine,
                longest: breaker_quarantine.max(Duration::from_secs(3600)),
                ..Policy::default()
            }),
            placement,
            max_concurrent_trainings,
            kueue,
            hand_over,
        },
        dashboard,
    };
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let (client, trust) = kubeclient::connect(&kube).await?;
        config.trust = trust;
        if namespace.is_none() {
            config.namespace = client.default_namespace().to_owned();
        }
        Box::pin(run(client, config, shutdown_on_signal()))
            .await
            .context("controller stopped")
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token_file(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ringrift-dashboard-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join(name);
        std::fs::write(&f, "dash-token\n").unwrap();
        f
    }

    #[test]
    fn the_dashboard_needs_a_token_and_tls_or_plain_http_on_loopback() {
        let token = token_file("token");
        let base = DashboardArgs {
            dashboard_listen: Some("127.0.0.1:0".parse().unwrap()),
            dashboard_token_file: Some(token.clone()),
            dashboard_plain_http: true,
            ..DashboardArgs::default()
        };
        let config = dashboard_config(base.clone()).unwrap().unwrap();
        assert_eq!(config.token, "dash-token");
        assert!(config.tls.is_none() && config.agent_token.is_none());
        assert!(dashboard_config(DashboardArgs::default()).unwrap().is_none());
        let err = |args: DashboardArgs| dashboard_config(args).unwrap_err().to_string();
        assert!(
            err(DashboardArgs {
                dashboard_token_file: None,
                ..base.clone()
            })
            .contains("--dashboard-token-file")
        );
        assert!(
            err(DashboardArgs {
                dashboard_listen: Some("0.0.0.0:80".parse().unwrap()),
                ..base.clone()
            })
            .contains("loopback")
        );
        assert!(
            err(DashboardArgs {
                dashboard_plain_http: false,
                ..base.clone()
            })
            .contains("--dashboard-tls-cert-file")
        );
        assert!(
            err(DashboardArgs {
                dashboard_listen: None,
                ..base.clone()
            })
            .contains("without --dashboard-listen")
        );
        let tls = DashboardArgs {
            dashboard_tls_cert_file: Some(token.clone()),
            dashboard_tls_key_file: Some(token.clone()),
            ..base.clone()
        };
        assert!(err(tls.clone()).contains("exclude"));
        let tls = DashboardArgs {
            dashboard_plain_http: false,
            dashboard_listen: Some("0.0.0.0:0".parse().unwrap()),
            ..tls
        };
        assert!(dashboard_config(tls).unwrap().unwrap().tls.is_some());
        let missing = DashboardArgs {
            agent_token_file: Some(token.with_file_name("missing")),
            ..base
        };
        assert!(err(missing).contains("--agent-token-file"));
    }
}
