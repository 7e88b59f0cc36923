//! `ringrift agent` and `ringrift task-shim`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use ringrift_agent::detect::simulate::SimulatedGpus;
use ringrift_agent::gossip::{GossipConfig, Timing};
use ringrift_agent::register::Registration;
use ringrift_agent::run::{Config, load_token, run};
use ringrift_agent::sync::key::ClusterKey;
use ringrift_agent::sync::retention::Marks;

use crate::apiserver::shutdown_on_signal;
use crate::kubeclient::{self, KubeArgs};
use crate::telemetry::{self, TelemetryArgs};

/// Options of `ringrift agent`.
#[derive(Debug, clap::Args)]
pub struct AgentArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Agent name: the cluster-scoped `Agent` object and the heartbeat Lease `agent-<name>`.
    /// Default: `NODE_NAME` (the chart sets it from the downward API), else the host name.
    #[arg(long, env = "RINGRIFT_AGENT_NAME")]
    pub name: Option<String>,
    /// Namespace of the heartbeat Lease (the controller's `--namespace`). Default: the
    /// namespace of the kubeconfig's context, or in a pod the pod's own.
    #[arg(long, env = "RINGRIFT_NAMESPACE")]
    pub namespace: Option<String>,
    /// Data directory: the local database, task directories and logs, artifacts.
    #[arg(long, env = "RINGRIFT_DATA_DIR", default_value = "/var/lib/ringrift")]
    pub data_dir: PathBuf,
    /// REST API listen address. Port 0 picks one; the address is printed.
    #[arg(long, env = "RINGRIFT_AGENT_LISTEN", default_value = "0.0.0.0:8770")]
    pub listen: SocketAddr,
    /// REST endpoint to advertise in the `Agent` status, `https://host:port`. Default:
    /// `https://<listen address>`.
    #[arg(long, env = "RINGRIFT_ADVERTISE")]
    pub advertise: Option<String>,
    /// File holding the REST bearer token. Default: `<data-dir>/token`, generated the first time.
    #[arg(long, env = "RINGRIFT_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// File holding a token that opens `/metrics` only (give it to Prometheus instead of the
    /// REST token).
    #[arg(long, env = "RINGRIFT_METRICS_TOKEN_FILE", value_name = "FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// Serve the REST API and artifacts over plain HTTP, and fetch from peers that do: no TLS,
    /// tokens and data in clear text. For benchmark baselines on one machine only.
    #[arg(long, hide = true, env = "RINGRIFT_INSECURE_PLAIN_HTTP")]
    pub insecure_plain_http: bool,
    /// Simulated GPUs instead of NVML, for tests and benchmarks: `[<count>x]<product>-<memory>GB`,
    /// for example `4xH100-80GB`.
    #[arg(long, env = "RINGRIFT_SIMULATE_GPUS")]
    pub simulate_gpus: Option<SimulatedGpus>,
    /// How often the heartbeat Lease is renewed.
    #[arg(long, env = "RINGRIFT_HEARTBEAT", default_value = "10s", value_parser = crate::duration::parse)]
    pub heartbeat: Duration,
    /// How long a heartbeat stays valid.
    #[arg(long, env = "RINGRIFT_HEARTBEAT_LEASE", default_value = "40s", value_parser = crate::duration::parse)]
    pub heartbeat_lease: Duration,
    /// Time a stopped task gets between SIGTERM and SIGKILL.
    #[arg(long, env = "RINGRIFT_GRACE", default_value = "10s", value_parser = crate::duration::parse)]
    pub grace: Duration,
    /// Least time between progress writes of one task.
    #[arg(long, env = "RINGRIFT_PROGRESS_INTERVAL", default_value = "2s", value_parser = crate::duration::parse)]
    pub progress_interval: Duration,
    /// How often GPUs, CPU, memory and disk are sampled.
    #[arg(long, env = "RINGRIFT_SAMPLE_INTERVAL", default_value = "10s", value_parser = crate::duration::parse)]
    pub sample_interval: Duration,
    /// Free space in the data directory below which the agent reports DiskPressure, MiB.
    #[arg(long, env = "RINGRIFT_DISK_PRESSURE_MIB", default_value_t = 1024)]
    pub disk_pressure_mib: u64,
    /// This box's failure domain (a rack, a provider's region, a building), the
    /// `ringrift.ai/zone` label of its Agent: copies of an output go to agents in other zones
    /// first. A label value: letters, digits, '-', '_' and '.', at most 63 characters.
    #[arg(long, env = "RINGRIFT_ZONE")]
    pub zone: Option<String>,
    /// Without `--zone`: take the zone from this label of the Kubernetes Node named like the
    /// agent (for example `topology.kubernetes.io/zone`; the chart sets it). A Node that cannot
    /// be read, or lacks the label, leaves the agent without a zone, with a warning.
    #[arg(long, env = "RINGRIFT_ZONE_NODE_LABEL", conflicts_with = "zone")]
    pub zone_node_label: Option<String>,
    /// On SIGTERM, cancel running tasks and wait for them (default: leave them running for the
    /// restarted agent to adopt).
    #[arg(long, env = "RINGRIFT_DRAIN_ON_SHUTDOWN")]
    pub drain_on_shutdown: bool,
    #[command(flatten)]
    pub sync: SyncArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

/// Gossip and data sync options of `ringrift agent`.
#[derive(Debug, clap::Args)]
pub struct SyncArgs {
    /// File holding the cluster key (at least 16 bytes): authenticates gossip and artifact
    /// fetches between agents. Without it the agent does not gossip, and fetches from peers with
    /// its REST token (which then must be the same on every agent).
    #[arg(long, env = "RINGRIFT_CLUSTER_KEY_FILE", value_name = "FILE")]
    pub cluster_key_file: Option<PathBuf>,
    /// Gossip UDP listen address. Port 0 picks one.
    #[arg(long, env = "RINGRIFT_GOSSIP_LISTEN", default_value = "0.0.0.0:7946")]
    pub gossip_listen: SocketAddr,
    /// Gossip address other agents reach this one at. Default: the listen address (127.0.0.1
    /// when listening on every interface).
    #[arg(long, env = "RINGRIFT_GOSSIP_ADVERTISE")]
    pub gossip_advertise: Option<SocketAddr>,
    /// Gossip addresses to announce to besides those of the `Agent` objects, comma-separated.
    #[arg(long, env = "RINGRIFT_GOSSIP_SEEDS", value_delimiter = ',')]
    pub gossip_seeds: Vec<SocketAddr>,
    /// A member that does not refute a suspicion within this is declared dead.
    #[arg(long, env = "RINGRIFT_GOSSIP_SUSPECT_TIMEOUT", default_value = "4s", value_parser = crate::duration::parse)]
    pub gossip_suspect_timeout: Duration,
    /// Bandwidth limit of all pulls together, MiB/s (0: none).
    #[arg(long, env = "RINGRIFT_TRANSFER_RATE_MIB", default_value_t = 0)]
    pub transfer_rate_mib: u64,
    /// Bandwidth limit of all serving to peers together, MiB/s (0: none).
    #[arg(long, env = "RINGRIFT_SERVE_RATE_MIB", default_value_t = 0)]
    pub serve_rate_mib: u64,
    /// Artifact responses sent to peers at once; more are answered 503 `Busy` (the peer asks
    /// another holder).
    #[arg(long, env = "RINGRIFT_SERVE_SLOTS", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub serve_slots: u64,
    /// Chunk requests in flight across all pulls.
    #[arg(long, env = "RINGRIFT_TRANSFER_SLOTS", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub transfer_slots: u64,
    /// Retention starts dropping artifacts when the data directory's file system is fuller
    /// than this fraction...
    #[arg(long, env = "RINGRIFT_DISK_HIGH_WATER", default_value_t = 0.85)]
    pub disk_high_water: f64,
    /// ...and stops once it is at or under this one.
    #[arg(long, env = "RINGRIFT_DISK_LOW_WATER", default_value_t = 0.75)]
    pub disk_low_water: f64,
    /// How often retention checks the disk.
    #[arg(long, env = "RINGRIFT_RETENTION_INTERVAL", default_value = "60s", value_parser = crate::duration::parse)]
    pub retention_interval: Duration,
}

impl SyncArgs {
    fn key(&self) -> anyhow::Result<Option<ClusterKey>> {
        let Some(path) = &self.cluster_key_file else {
            return Ok(None);
        };
        let bytes = std::fs::read(path)
            .with_context(|| format!("failed to read --cluster-key-file {}", path.display()))?;
        ClusterKey::new(&bytes)
            .map(Some)
            .with_context(|| format!("invalid --cluster-key-file {}", path.display()))
    }

    fn marks(&self) -> anyhow::Result<Marks> {
        let (low, high) = (self.disk_low_water, self.disk_high_water);
        anyhow::ensure!(
            low > 0.0 && low < high && high <= 1.0,
            "--disk-low-water ({low}) and --disk-high-water ({high}) must satisfy 0 < low < high <= 1"
        );
        Ok(Marks { high, low })
    }
}

/// Options of `ringrift task-shim` (started by the agent, not by people).
#[derive(Debug, clap::Args)]
pub struct ShimArgs {
    /// Where to record how the command ended.
    #[arg(long)]
    pub exit_file: PathBuf,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

pub(crate) fn default_name() -> String {
    std::env::var("NODE_NAME")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_lowercase())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "agent".into())
}

pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

pub(crate) fn run_agent(args: AgentArgs) -> anyhow::Result<ExitCode> {
    run_agent_until(args, None).map(|_| ExitCode::SUCCESS)
}

/// Something that asks a running agent to stop so that it can be started again (a renewed
/// credential).
pub(crate) type Restart = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// How an agent run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Stopped (SIGTERM, Ctrl-C).
    Stopped,
    /// `restart` completed: the caller starts it again.
    Restart,
}

/// Runs the agent until a signal, or until `restart` completes.
/// Refuses a `--zone` that is not a label value, before anything starts.
fn check_zone(zone: Option<&str>) -> anyhow::Result<()> {
    if let Some(z) = zone {
        anyhow::ensure!(
            ringrift_crds::identity::valid_zone(z),
            "invalid --zone {z:?}: letters, digits, '-', '_' and '.', starting and ending with a letter or digit, at most 63 characters"
        );
    }
    Ok(())
}

/// The agent's zone: `--zone`, else the `--zone-node-label` label of its Node, else none.
async fn resolve_zone(
    client: &kube::Client,
    name: &str,
    zone: Option<String>,
    node_label: Option<String>,
) -> Option<String> {
    match (zone, node_label) {
        (None, Some(label)) => ringrift_agent::register::zone_of_node(client, name, &label).await,
        (zone, _) => zone,
    }
}

pub(crate) fn run_agent_until(args: AgentArgs, restart: Option<Restart>) -> anyhow::Result<Ended> {
    let AgentArgs {
        kube,
        name,
        namespace,
        data_dir,
        listen,
        advertise,
        token_file,
        metrics_token_file,
        insecure_plain_http,
        simulate_gpus,
        heartbeat,
        heartbeat_lease,
        grace,
        progress_interval,
        sample_interval,
        disk_pressure_mib,
        zone,
        zone_node_label,
        drain_on_shutdown,
        sync,
        telemetry,
    } = args;
    telemetry::init(&telemetry)?;
    let name = name.unwrap_or_else(default_name);
    anyhow::ensure!(
        valid_name(&name),
        "invalid --name {name:?}: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 253 characters"
    );
    check_zone(zone.as_deref())?;
    let exe = std::env::current_exe().context("failed to find the ringrift executable")?;
    // Two workers are plenty for an agent and keep its footprint small on big nodes.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    // The API first: a wrong kubeconfig is reported before anything is written to disk.
    let (client, trust) = runtime.block_on(kubeclient::connect(&kube))?;
    let zone = runtime.block_on(resolve_zone(&client, &name, zone, zone_node_label));
    let metrics_token = metrics_token_file
        .as_deref()
        .map(|f| crate::tokens::read(f, "--metrics-token-file"))
        .transpose()?;
    let cluster_key = sync.key()?;
    let retention = sync.marks()?;
    let token = load_token(token_file.as_deref(), &data_dir).context("failed to load the REST token")?;
    let config = Config {
        name,
        data_dir,
        listen,
        advertise,
        insecure_plain_http,
        trust,
        token,
        metrics_token,
        simulate_gpus,
        registration: Registration {
            namespace: namespace.unwrap_or_else(|| client.default_namespace().to_owned()),
            heartbeat,
            lease_duration: heartbeat_lease,
            endpoint: String::new(),
            certificate_fingerprint: None,
            disk_pressure_mib,
            gossip_address: None,
            zone,
        },
        grace,
        progress_interval,
        sample_interval,
        drain_on_shutdown,
        exe,
        version: crate::VERSION.to_owned(),
        gossip: cluster_key.is_some().then(|| GossipConfig {
            listen: sync.gossip_listen,
            advertise: sync.gossip_advertise,
            seeds: sync.gossip_seeds.clone(),
            timing: Timing {
                suspect_to_down: sync.gossip_suspect_timeout,
                ..Timing::default()
            },
        }),
        cluster_key,
        transfer_slots: usize::try_from(sync.transfer_slots).unwrap_or(8),
        transfer_rate: sync.transfer_rate_mib.saturating_mul(1024 * 1024),
        serve_rate: sync.serve_rate_mib.saturating_mul(1024 * 1024),
        serve_slots: usize::try_from(sync.serve_slots).unwrap_or(4),
        retention,
        retention_interval: sync.retention_interval,
    };
    let restarting = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    runtime.block_on(async {
        let shutdown = shutdown_on_signal();
        if let Some(restart) = restart {
            let (stop, flag) = (shutdown.clone(), restarting.clone());
            tokio::spawn(async move {
                restart.await;
                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                stop.cancel();
            });
        }
        run(client, config, shutdown).await.context("agent stopped")
    })?;
    drop(runtime);
    Ok(if restarting.load(std::sync::atomic::Ordering::SeqCst) {
        Ended::Restart
    } else {
        Ended::Stopped
    })
}

pub(crate) fn run_shim(args: &ShimArgs) -> ExitCode {
    let code = ringrift_agent::exec::shim::run(&args.exit_file, &args.command);
    ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names() {
        assert!(valid_name("gpu-node-1.example"));
        for bad in ["", "Upper", "-x", "x-", "a_b"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
