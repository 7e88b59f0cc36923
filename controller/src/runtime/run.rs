//! [`run`]: the controller's main loop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Api, Client};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::admin::{self, Health};
use super::caches;
use super::events::Recorder;
use super::reconciler::{Reconciler, Tuning};
use super::writer::Writer;
use crate::leader::{ElectionError, Elector, Timing};

/// What the controller needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Namespace of the leader Lease and of the agents' heartbeat Leases.
    pub namespace: String,
    /// Name of the leader Lease.
    pub lease_name: String,
    /// This replica's identity in the Lease.
    pub identity: String,
    /// Leader election timing.
    pub timing: Timing,
    /// Admin port address (`/live`, `/ready`, `/metrics`); port 0 picks one.
    pub admin: SocketAddr,
    /// The admin port's certificate and key files; none: a self-signed certificate made at
    /// start.
    pub admin_tls: Option<(PathBuf, PathBuf)>,
    /// The token `/metrics` asks for.
    pub metrics_token: Option<String>,
    /// Trust failures with the API server (the API client's layer counts into it).
    pub trust: ringrift_tls::trust::TrustMetrics,
    /// Reconciler tuning.
    pub tuning: Tuning,
    /// The web dashboard; none: not served.
    pub dashboard: Option<super::dashboard::DashboardConfig>,
}

/// Why the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The admin port's certificate could not be made or read.
    #[error(transparent)]
    AdminTls(#[from] super::admin_tls::AdminTlsError),
    /// The admin port could not be bound.
    #[error("failed to bind the admin port {addr}: {source}")]
    Admin {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The dashboard's address could not be bound or its certificate read.
    #[error("{0}")]
    Dashboard(String),
    /// Leadership was lost or the timing is invalid.
    #[error(transparent)]
    Election(#[from] ElectionError),
    /// The CRDs never became established before shutdown.
    #[error("stopped while waiting for the RingRift CRDs to be established")]
    NoCrds,
}

impl RunError {
    /// A stable label.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Admin { .. } | Self::AdminTls(_) | Self::Dashboard(_) => "config",
            Self::Election(e) => e.category(),
            Self::NoCrds => "crds",
        }
    }
}

/// Waits until every RingRift CRD is established, logging what is missing now and then.
/// False if `shutdown` came first.
async fn crds_established(client: &Client, shutdown: &CancellationToken) -> bool {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let names: Vec<String> = ringrift_crds::all()
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    let mut logged: Option<std::time::Instant> = None;
    loop {
        let mut missing = Vec::new();
        for name in &names {
            let established = match crds.get_opt(name).await {
                Ok(Some(crd)) => crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True"),
                _ => false,
            };
            if !established {
                missing.push(name.clone());
            }
        }
        if missing.is_empty() {
            return true;
        }
        if logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
            tracing::info!(
                missing = missing.join(","),
                "waiting for CRDs to be established (install them with `ringrift crds | kubectl apply -f -`)"
            );
            logged = Some(std::time::Instant::now());
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Runs the controller until `shutdown` is cancelled: then finishes the pass in flight, releases the Lease
/// (so a standby takes over at once) and returns.
///
/// # Errors
/// [`RunError`]; [`ElectionError::Lost`] when leadership could not be renewed in time (writes
/// have stopped already; the process should exit and restart clean).
pub async fn run(client: Client, config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let Config {
        namespace,
        lease_name,
        identity,
        timing,
        admin,
        admin_tls,
        metrics_token,
        trust,
        tuning,
        dashboard,
    } = config;
    let elector = Elector::new(client.clone(), &namespace, &lease_name, &identity, timing)?;
    let health = Arc::new(Health {
        metrics: super::metrics::Metrics::with_trust(trust),
        metrics_token,
        ..Health::default()
    });
    let listener = TcpListener::bind(admin)
        .await
        .map_err(|source| RunError::Admin { addr: admin, source })?;
    let admin_addr = listener
        .local_addr()
        .map_err(|source| RunError::Admin { addr: admin, source })?;
    let (acceptor, fingerprint) = super::admin_tls::acceptor(admin_tls.as_ref(), admin_addr)?;
    let acceptor = Arc::new(acceptor);
    println!("ringrift controller {identity}: admin on https://{admin_addr} (certificate {fingerprint})");
    let dashboard = match dashboard {
        Some(d) => Some(super::dashboard::bind(d).await.map_err(RunError::Dashboard)?),
        None => None,
    };
    // The admin port outlives `shutdown`: it answers (not ready) until the Lease is released.
    let admin_stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    if let Some(files) = admin_tls {
        tasks.spawn(super::admin_tls::keep_current(
            files,
            acceptor.clone(),
            admin_stop.clone(),
        ));
    }
    tasks.spawn(admin::serve(
        listener,
        acceptor,
        health.clone(),
        admin_stop.clone(),
    ));
    tasks.close();
    let result = Box::pin(lead(
        client,
        &namespace,
        &lease_name,
        &identity,
        elector,
        tuning,
        dashboard,
        &health,
        &shutdown,
    ))
    .await;
    admin_stop.cancel();
    tasks.wait().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn lead(
    client: Client,
    namespace: &str,
    lease_name: &str,
    identity: &str,
    elector: Elector,
    tuning: Tuning,
    dashboard: Option<super::dashboard::Bound>,
    health: &Arc<Health>,
    shutdown: &CancellationToken,
) -> Result<(), RunError> {
    if !crds_established(&client, shutdown).await {
        return Err(RunError::NoCrds);
    }
    let notify = Arc::new(Notify::new());
    let lease_changed = Arc::new(Notify::new());
    // The caches and their readiness live as long as this function.
    let background = TaskTracker::new();
    let stop_background = CancellationToken::new();
    let caches = caches::start(
        &client,
        namespace,
        &notify,
        (lease_name, &lease_changed),
        (&background, &stop_background),
        tuning.kueue,
    );
    let elector = elector.with_nudge(lease_changed);
    if let Some(bound) = dashboard {
        // Every replica serves it from its own caches, leader or not.
        background.spawn(super::dashboard::serve(
            bound,
            (caches.clone(), client.clone()),
            health.clone(),
            stop_background.clone(),
        ));
    }
    {
        let (caches, health) = (caches.clone(), health.clone());
        background.spawn(stop_background.clone().run_until_cancelled_owned(async move {
            if caches.synced().await.is_ok() {
                health.ready.store(true, Ordering::Relaxed);
                tracing::info!("caches synced; ready");
            }
        }));
    }
    let (leading_tx, mut leading) = watch::channel(false);
    // Stopped after the pass in flight, not at `shutdown`: the Lease is released last.
    let stop_elector = CancellationToken::new();
    let mut election = tokio::spawn(elector.run(leading_tx, stop_elector.clone()));
    let recorder = Recorder::new(client.clone(), "ringrift-controller", identity);
    let writer = Writer::new(client, leading.clone(), recorder);
    background.spawn(super::reach::run(
        caches.clone(),
        writer.clone(),
        leading.clone(),
        health.clone(),
        stop_background.clone(),
    ));
    let mut reconciler = Reconciler::new(caches, writer, health.clone(), tuning);
    reconciler.wake_on_answers(notify.clone());
    let mut wake: Option<Duration> = None;
    let outcome = loop {
        let sleep = tokio::time::sleep(wake.unwrap_or(Duration::from_secs(3600)));
        tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            ended = &mut election => {
                // The elector only ends on its own when leadership was lost.
                break match ended {
                    Ok(Err(e)) => Err(RunError::Election(e)),
                    _ => Ok(()),
                };
            }
            changed = leading.changed() => {
                if changed.is_err() {
                    continue;
                }
                let now_leading = *leading.borrow();
                health.metrics.leader.set(i64::from(now_leading));
                reconciler.reset();
                tracing::info!(leading = now_leading, "leadership changed");
            }
            () = notify.notified() => {}
            () = sleep => {}
        }
        wake = None;
        if *leading.borrow() && health.ready.load(Ordering::Relaxed) {
            wake = reconciler.pass().await;
        } else if !health.ready.load(Ordering::Relaxed) {
            wake = Some(Duration::from_millis(100));
        }
    };
    // Finish: the pass in flight is done and its creates answered; release the Lease so a
    // standby takes over now.
    reconciler.settle(Duration::from_secs(10)).await;
    stop_elector.cancel();
    if !election.is_finished() {
        let _ = election.await;
    }
    health.metrics.leader.set(0);
    stop_background.cancel();
    background.close();
    background.wait().await;
    outcome
}
