//! `ringrift sim-agents`: simulated agents for tests and benchmarks.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use ringrift_agent::sim::{SimConfig, run};

use crate::apiserver::shutdown_on_signal;
use crate::kubeclient::{self, KubeArgs};
use crate::telemetry::{self, TelemetryArgs};

/// Options of `ringrift sim-agents`.
#[derive(Debug, clap::Args)]
pub struct SimAgentsArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Agents are named `<prefix>-<i>`.
    #[arg(long, env = "RINGRIFT_SIM_PREFIX", default_value = "sim")]
    pub prefix: String,
    /// How many agents.
    #[arg(long, env = "RINGRIFT_SIM_COUNT", default_value_t = 2)]
    pub count: usize,
    /// GPUs per agent.
    #[arg(long, env = "RINGRIFT_SIM_GPUS", default_value_t = 8)]
    pub gpus: u32,
    /// GPU product name.
    #[arg(
        long,
        env = "RINGRIFT_SIM_GPU_PRODUCT",
        default_value = "NVIDIA H100 80GB HBM3 (simulated)"
    )]
    pub gpu_product: String,
    /// GPU memory, MiB.
    #[arg(long, env = "RINGRIFT_SIM_GPU_MEMORY_MIB", default_value_t = 81_559)]
    pub gpu_memory_mib: u64,
    /// CPU per agent, in thousandths of a core.
    #[arg(long, env = "RINGRIFT_SIM_CPU_MILLIS", default_value_t = 64_000)]
    pub cpu_millis: u64,
    /// Memory per agent, MiB.
    #[arg(long, env = "RINGRIFT_SIM_MEMORY_MIB", default_value_t = 512 * 1024)]
    pub memory_mib: u64,
    /// Namespace of the heartbeat Leases (the controller's `--namespace`).
    #[arg(long, env = "RINGRIFT_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// How often heartbeats are renewed.
    #[arg(long, env = "RINGRIFT_HEARTBEAT", default_value = "10s", value_parser = crate::duration::parse)]
    pub heartbeat: Duration,
    /// How long a heartbeat stays valid.
    #[arg(long, env = "RINGRIFT_HEARTBEAT_LEASE", default_value = "40s", value_parser = crate::duration::parse)]
    pub heartbeat_lease: Duration,
    /// Run time of a task unless its `SIM_DURATION_MS` says otherwise.
    #[arg(long, env = "RINGRIFT_SIM_TASK_DURATION", default_value = "2s", value_parser = crate::duration::parse)]
    pub task_duration: Duration,
    /// Least time between two progress writes of one task (a real agent's
    /// `--progress-interval`).
    #[arg(long, env = "RINGRIFT_PROGRESS_INTERVAL", default_value = "2s", value_parser = crate::duration::parse)]
    pub progress_interval: Duration,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

pub(crate) fn run_sim_agents(args: SimAgentsArgs) -> anyhow::Result<ExitCode> {
    let SimAgentsArgs {
        kube,
        prefix,
        count,
        gpus,
        gpu_product,
        gpu_memory_mib,
        cpu_millis,
        memory_mib,
        namespace,
        heartbeat,
        heartbeat_lease,
        task_duration,
        progress_interval,
        telemetry,
    } = args;
    telemetry::init(&telemetry)?;
    anyhow::ensure!(
        heartbeat < heartbeat_lease,
        "--heartbeat must be shorter than --heartbeat-lease"
    );
    let config = SimConfig {
        prefix,
        count,
        gpus,
        gpu_product,
        gpu_memory_mib,
        cpu_millis,
        memory_mib,
        namespace,
        heartbeat,
        lease_duration: heartbeat_lease,
        task_duration,
        progress_interval,
    };
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let client = kubeclient::client(&kube).await?;
        run(client, config, crate::VERSION, shutdown_on_signal())
            .await
            .context("simulated agents stopped")
    })?;
    Ok(ExitCode::SUCCESS)
}
