//! `ringrift agent`: wires detection, registration, the task supervisor and the REST API, and
//! shuts them down cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::artifacts::ContentStore;
use crate::detect::nvml::NvmlSource;
use crate::detect::simulate::{SimulatedGpus, SimulatedSource};
use crate::detect::{GpuSource, Inventory, NoGpus, os};
use crate::exec::{Runs, supervisor};
use crate::gossip::Gossip;
use crate::metrics::Metrics;
use crate::node::Node;
use crate::register::{self, Registration};
use crate::rest::{self, Rest};
use crate::store::Store;
use crate::sync::key::ClusterKey;

/// Everything `ringrift agent` is told.
#[derive(Debug, Clone)]
pub struct Config {
    /// Agent name.
    pub name: String,
    /// Data directory (database, task directories, artifacts).
    pub data_dir: PathBuf,
    /// REST listen address.
    pub listen: SocketAddr,
    /// REST endpoint to advertise; default `https://<listen address>`.
    pub advertise: Option<String>,
    /// Serve plain HTTP and fetch from peers that do: no TLS at all. For benchmark baselines
    /// only.
    pub insecure_plain_http: bool,
    /// Trust failures (the API client's layer counts into the same counter).
    pub trust: ringrift_tls::trust::TrustMetrics,
    /// Bearer token of the REST API.
    pub token: String,
    /// The token that opens `/metrics` only (for Prometheus), if any.
    pub metrics_token: Option<String>,
    /// Simulated GPUs instead of NVML.
    pub simulate_gpus: Option<SimulatedGpus>,
    /// Heartbeat Lease namespace and timing, disk pressure threshold.
    pub registration: Registration,
    /// Time between SIGTERM and SIGKILL when stopping a task.
    pub grace: Duration,
    /// Least time between progress writes of one task.
    pub progress_interval: Duration,
    /// How often GPUs and the host are sampled.
    pub sample_interval: Duration,
    /// Cancel running tasks on shutdown instead of leaving them to a restarted agent.
    pub drain_on_shutdown: bool,
    /// The `ringrift` executable (task shim, demo workload).
    pub exe: PathBuf,
    /// Version to report.
    pub version: String,
    /// The cluster key: authenticates gossip, and peers fetching artifacts. Without one the
    /// agent does not gossip, and pulls from peers with its own REST token.
    pub cluster_key: Option<ClusterKey>,
    /// Concurrent chunk requests of all pulls.
    pub transfer_slots: usize,
    /// Bandwidth limit of all pulls, bytes per second (0: none).
    pub transfer_rate: u64,
    /// Bandwidth limit of all serving to peers, bytes per second (0: none).
    pub serve_rate: u64,
    /// Responses with content sent to peers at once.
    pub serve_slots: usize,
    /// Gossip: listen address, address to advertise, extra seeds. `None`: no gossip.
    pub gossip: Option<crate::gossip::GossipConfig>,
    /// Disk marks of retention.
    pub retention: crate::sync::retention::Marks,
    /// Time between retention rounds.
    pub retention_interval: Duration,
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Data directory trouble.
    #[error("failed to create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The database.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The serving key pair.
    #[error("failed to set up the agent's TLS key pair")]
    Tls(#[from] crate::tls::TlsError),
    /// The advertised endpoint does not fit how the agent serves.
    #[error("invalid --advertise {0:?}: {1}")]
    Advertise(String, &'static str),
    /// The REST port.
    #[error("failed to listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn gpu_source(config: &Config) -> Box<dyn GpuSource> {
    if let Some(gpus) = &config.simulate_gpus {
        tracing::info!(count = gpus.count, product = %gpus.product, "simulated GPUs");
        return Box::new(SimulatedSource::new(gpus.clone(), &config.name));
    }
    match NvmlSource::open() {
        Ok(source) => {
            tracing::info!(
                driver = source.driver_version().unwrap_or_default(),
                "NVML loaded"
            );
            Box::new(source)
        }
        Err(e) => {
            tracing::warn!(reason = %e, "no GPUs: NVML is not available on this node");
            Box::new(NoGpus(e.to_string()))
        }
    }
}

async fn sample(mut source: Box<dyn GpuSource>, dir: PathBuf) -> (Box<dyn GpuSource>, Inventory) {
    let fallback = dir.clone();
    match tokio::task::spawn_blocking(move || {
        let inventory = Inventory::take(&mut *source, os::host(&dir));
        (source, inventory)
    })
    .await
    {
        Ok(pair) => pair,
        Err(e) => {
            tracing::error!(error = %e, "GPU sampling panicked; continuing without GPUs");
            (
                Box::new(NoGpus(format!("sampling failed: {e}"))),
                Inventory {
                    host: os::host(&fallback),
                    ..Inventory::default()
                },
            )
        }
    }
}

/// What every part of the running agent shares.
fn node(config: &Config, client: Client, db: Store, inventory: watch::Receiver<Inventory>) -> Arc<Node> {
    let content = ContentStore::new(config.data_dir.join("artifacts"));
    let metrics = Metrics::with_trust(config.trust.clone());
    let state = crate::sync::state::SyncState::new(
        config.transfer_slots,
        config.transfer_rate,
        config
            .cluster_key
            .as_ref()
            .map_or_else(|| config.token.clone(), ClusterKey::peer_token),
    )
    .with_serve_rate(config.serve_rate)
    .with_serve_slots(config.serve_slots)
    .with_plain_peers(config.insecure_plain_http);
    let sync = Arc::new(crate::sync::Context {
        name: config.name.clone(),
        client: client.clone(),
        db: db.clone(),
        content: content.clone(),
        state: Arc::new(state),
        metrics: metrics.sync.clone(),
        trust: metrics.trust.clone(),
        inventory: inventory.clone(),
    });
    Arc::new(Node {
        name: config.name.clone(),
        client,
        db,
        content,
        data_dir: config.data_dir.clone(),
        exe: config.exe.clone(),
        grace: config.grace,
        progress_interval: config.progress_interval,
        inventory,
        runs: Runs::default(),
        metrics,
        version: config.version.clone(),
        sync,
    })
}

/// Runs the agent until `shutdown` is cancelled.
///
/// # Errors
/// [`RunError`] when the data directory, the database or the port cannot be used.
pub async fn run(client: Client, mut config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let data_dir_error = |source| RunError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    };
    tokio::fs::create_dir_all(&config.data_dir)
        .await
        .map_err(data_dir_error)?;
    // Tasks run in their own working directories: every path handed to them is absolute.
    let data_dir = tokio::fs::canonicalize(&config.data_dir)
        .await
        .map_err(data_dir_error)?;
    config.data_dir = data_dir;
    let db = Store::open(&config.data_dir.join("agent.db")).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| RunError::Listen {
        addr: config.listen,
        source,
    })?;
    let (endpoint, acceptor, fingerprint) = serving(&config, addr)?;
    let (source, inventory) = sample(gpu_source(&config), config.data_dir.clone()).await;
    let (inventory_tx, inventory_rx) = watch::channel(inventory);
    let node = node(&config, client, db.clone(), inventory_rx);
    node.metrics.observe(&node.name, &node.inventory.borrow());
    let stop = shutdown;
    let tasks = TaskTracker::new();
    let (ready_tx, ready_rx) = watch::channel(false);
    let mut registration = config.registration.clone();
    registration.endpoint.clone_from(&endpoint);
    registration.certificate_fingerprint.clone_from(&fingerprint);

    tasks.spawn(sampler_loop(
        node.clone(),
        source,
        inventory_tx,
        config.sample_interval,
        stop.clone(),
    ));
    start_sync(&config, &node, &mut registration, &tasks, &stop).await?;
    tasks.spawn(register::run(node.clone(), registration, stop.clone()));
    tasks.spawn(crate::relay::run(node.clone(), stop.clone()));
    // Awaited first at shutdown: with draining, tasks are stopped while the rest still runs.
    let supervisor = tokio::spawn(supervisor::run(
        node.clone(),
        stop.clone(),
        config.drain_on_shutdown,
    ));
    let rest = Arc::new(Rest {
        node: node.clone(),
        token: config.token.clone(),
        peer_token: config.cluster_key.as_ref().map(ClusterKey::peer_token),
        metrics_token: config.metrics_token.clone(),
        ready: ready_rx,
    });
    tasks.spawn(rest::serve(rest, listener, Arc::new(acceptor), stop.clone()));
    tasks.spawn(readiness(node.clone(), ready_tx, stop.clone()));
    tasks.close();
    match &fingerprint {
        Some(fp) => println!(
            "ringrift agent {}: REST on {endpoint} (certificate {fp})",
            config.name
        ),
        None => println!(
            "ringrift agent {}: REST on {endpoint} (insecure plain HTTP)",
            config.name
        ),
    }
    tracing::info!(agent = %config.name, %endpoint, fingerprint = ?fingerprint, data_dir = %config.data_dir.display(), "agent started");

    stop.cancelled().await;
    tracing::info!("shutting down");
    let _ = supervisor.await;
    // Every loop returns at once when cancelled; only open REST connections take their grace.
    if tokio::time::timeout(Duration::from_secs(5), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(left = tasks.len(), "still stopping after 5 s; closing");
    }
    db.close().await;
    tracing::info!("agent stopped");
    Ok(())
}

/// The endpoint to advertise, the acceptor of REST connections, and the fingerprint of the
/// certificate they are served with (none in the insecure plain-HTTP mode).
fn serving(
    config: &Config,
    bound: SocketAddr,
) -> Result<(String, ringrift_tls::serve::Acceptor, Option<String>), RunError> {
    let scheme = if config.insecure_plain_http {
        "http"
    } else {
        "https"
    };
    let endpoint = match &config.advertise {
        Some(a) if !a.starts_with(&format!("{scheme}://")) => {
            let why = if config.insecure_plain_http {
                "with --insecure-plain-http the agent serves plain HTTP: advertise http://"
            } else {
                "the agent serves TLS: advertise https://host:port"
            };
            return Err(RunError::Advertise(a.clone(), why));
        }
        Some(a) => a.trim_end_matches('/').to_owned(),
        None => format!("{scheme}://{bound}"),
    };
    if config.insecure_plain_http {
        tracing::warn!(
            "serving plain HTTP (--insecure-plain-http): tokens and artifacts cross the network in clear text"
        );
        return Ok((endpoint, ringrift_tls::serve::Acceptor::insecure_plain(), None));
    }
    let names = crate::tls::names(config.listen, &endpoint);
    let identity = crate::tls::load_or_create(&config.data_dir, &config.name, &names, ringrift_tls::now())?;
    let key = ringrift_tls::serve::certified_key(&identity.pem, "the agent's key pair")
        .map_err(crate::tls::TlsError::from)?;
    let acceptor = ringrift_tls::serve::Acceptor::new(key, None).map_err(crate::tls::TlsError::from)?;
    Ok((endpoint, acceptor, Some(identity.fingerprint)))
}

/// Starts retention, and gossip when configured with a key (recording its address for the
/// `Agent` status).
async fn start_sync(
    config: &Config,
    node: &Arc<Node>,
    registration: &mut Registration,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) -> Result<(), RunError> {
    tasks.spawn(crate::sync::sweep::run(
        node.sync.clone(),
        config.retention,
        config.retention_interval,
        stop.clone(),
    ));
    match (&config.gossip, &config.cluster_key) {
        (Some(g), Some(key)) => {
            let gossip = Gossip::start(&node.name, g, key.clone(), node.metrics.sync.clone())
                .await
                .map_err(|source| RunError::Listen {
                    addr: g.listen,
                    source,
                })?;
            registration.gossip_address = Some(gossip.addr().to_string());
            tasks.spawn(crate::gossip::node::run(
                node.clone(),
                gossip,
                registration.endpoint.clone(),
                stop.clone(),
            ));
        }
        (Some(_), None) => {
            tracing::warn!(
                "no cluster key: not gossiping (give --cluster-key-file to gossip with other agents)"
            );
        }
        (None, _) => {}
    }
    Ok(())
}

async fn sampler_loop(
    node: Arc<Node>,
    mut source: Box<dyn GpuSource>,
    tx: watch::Sender<Inventory>,
    interval: Duration,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = stop.cancelled() => return,
        }
        let (back, inventory) = sample(source, node.data_dir.clone()).await;
        source = back;
        let before = tx.borrow().unhealthy();
        let now = inventory.unhealthy();
        for uuid in now.iter().filter(|u| !before.contains(u)) {
            tracing::warn!(gpu = %uuid, "GPU turned unhealthy; no more work is placed on it");
        }
        node.metrics.observe(&node.name, &inventory);
        tx.send_if_modified(|current| {
            let changed = *current != inventory;
            *current = inventory;
            changed
        });
    }
}

/// Ready once the API answers; rechecked every 5 s.
async fn readiness(node: Arc<Node>, ready: watch::Sender<bool>, stop: CancellationToken) {
    loop {
        ready.send_replace(register::reachable(&node.client).await);
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// The REST token: read from `file` when given (it must hold one), else `<data-dir>/token`,
/// created with a random token (mode 0600) the first time.
///
/// # Errors
/// When the file cannot be read or written, or is empty.
pub fn load_token(file: Option<&std::path::Path>, data_dir: &std::path::Path) -> std::io::Result<String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = match file {
        Some(f) => f.to_owned(),
        None => data_dir.join("token"),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "token file {} is empty",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && file.is_none() => {}
        Err(e) => {
            return Err(std::io::Error::new(
                e.kind(),
                format!("failed to read the token file {}: {e}", path.display()),
            ));
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(token.as_bytes())?;
    tracing::info!(path = %path.display(), "generated a REST token");
    Ok(token)
}
