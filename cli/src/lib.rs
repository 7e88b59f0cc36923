//! The `ringrift` command line: one binary that carries every role as a subcommand, like
//! `k3s server` / `k3s agent`, so one image serves the whole chart.

mod agent;
mod apiserver;
mod bench;
mod controller;
mod crds;
mod duration;
pub mod harness;
mod join;
mod kubeclient;
mod logs;
pub mod netns;
mod renew;
mod server;
mod sim_agents;
mod status;
mod telemetry;
mod tokens;
mod up;
mod workload;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `ringrift --version`: the crate version and the git revision it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("RINGRIFT_GIT_REVISION"),
    ")"
);

/// RingRift: AlphaZero-style training (selfplay → training → gauntlet → promotion) on a fleet of
/// GPU nodes, run by a Kubernetes-style controller and node agents.
#[derive(Debug, Parser)]
#[command(name = "ringrift", version = VERSION, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole system on this machine with the demo training loop.
    ///
    /// Starts the embedded API server, two controller replicas and two agents, installs the
    /// CRDs, writes a kubeconfig for kubectl, applies the sample loop and shows its progress
    /// until it finishes or Ctrl-C stops everything. Re-running it resumes.
    Up(up::UpArgs),
    /// Run the control plane of a fleet without Kubernetes on this head host.
    ///
    /// The embedded API server (TLS, RBAC, port 6443, state under --dir) and two controller
    /// replicas, no agents: GPU boxes join with `ringrift join`, whose command is printed at
    /// start. `ringrift server token create|list|delete` manages the bootstrap tokens they join
    /// with.
    Server(server::ServerArgs),
    /// Run the embedded Kubernetes-compatible API server.
    ///
    /// Serves the subset of the Kubernetes REST API that RingRift, kubectl and kube-rs use:
    /// discovery, CRDs registered at run time, CRUD with resourceVersion preconditions, the
    /// status subresource, patches, selectors and watches, persisted in SQLite.
    Apiserver(apiserver::ApiserverArgs),
    /// Run the controller: leader election, job reconcilers, placement, retries and status.
    ///
    /// Run two or more replicas; one leads (a Lease), the others keep warm caches and take over
    /// when it stops. The admin port serves /live, /ready and /metrics.
    Controller(controller::ControllerArgs),
    /// Run the node agent: registration, GPU detection, task execution and the REST API.
    ///
    /// Registers the `Agent` object and renews its heartbeat Lease, detects GPUs through NVML
    /// (or simulates them), runs the Tasks bound to it under the workload contract, keeps local
    /// state in SQLite so a restart re-adopts running tasks, and serves its REST API (default
    /// port 8770, bearer token).
    Agent(Box<agent::AgentArgs>),
    /// Join a `ringrift server`'s fleet from this GPU box, then run the agent.
    ///
    /// Checks the server's CA against --ca-cert-hash, trades the bootstrap token for this
    /// agent's own client certificate (its key made here), writes a kubeconfig into the data
    /// directory and runs the agent with the same options as `ringrift agent`. Run again with
    /// the same data directory, it resumes with the stored credential.
    Join(Box<join::JoinArgs>),
    /// Run one task's command and record how it ended (started by the agent).
    #[command(hide = true)]
    TaskShim(agent::ShimArgs),
    /// Run the built-in demo workload in one role (selfplay, training or gauntlet), as the
    /// agent starts it under the workload contract.
    ///
    /// Connect Four with tree search guided by a small learned model, on the CPU, deterministic
    /// given the task's seed. Options default to the contract's RINGRIFT_* variables.
    Workload(workload::WorkloadArgs),
    /// Show the training loops with their progress and the agents' readiness.
    ///
    /// Reads the loops, their jobs and models through the API; --watch redraws every second.
    Status(status::StatusArgs),
    /// Show or follow the log of a task, from the agent that runs it.
    ///
    /// Finds the Task's agent and its endpoint through the API, then reads the log from the
    /// agent's REST API with the agents' token.
    Logs(logs::LogsArgs),
    /// Run simulated agents (many in one process) for tests and benchmarks.
    ///
    /// They register Agent objects with simulated GPUs, renew heartbeat Leases and run the
    /// Tasks bound to them to completion after a set time; a task's SIM_* environment variables
    /// ask for failures, hangs and gauntlet results (see the agent crate's `sim` module).
    SimAgents(sim_agents::SimAgentsArgs),
    /// Print every CustomResourceDefinition as YAML, or write one file per CRD.
    Crds(crds::CrdsArgs),
    /// Run a benchmark and print its figures as JSON.
    #[command(subcommand)]
    Bench(Bench),
}

/// The benchmarks. Each prints JSON figures; none fails on speed.
#[derive(Debug, Subcommand)]
pub enum Bench {
    /// Durable writes/s, list latency, watch delivery latency and memory of the API server,
    /// run as its own process on this machine.
    Apiserver(bench::apiserver::BenchApiserverArgs),
    /// Placements/s and job-to-task latency of the controller with simulated agents.
    ///
    /// Starts an API server, a controller and (by default) 200 simulated agents as processes,
    /// then times a 1,000-task one-GPU job and a 5,000-task job from creation to bound and
    /// running.
    Dispatch(bench::dispatch::BenchDispatchArgs),
    /// The fleet's fair share under load: GPU use, share error and starved loops, against plain
    /// priority placement.
    ///
    /// Starts an API server, a controller and (by default) 200 simulated agents of 8 GPUs as
    /// processes, runs 12 TrainingLoops weighted 1 to 3 with tasks of a few seconds for five
    /// minutes, then does it again in a fresh system with `--placement priority` (`baseline`).
    Fleet(bench::fleet::BenchFleetArgs),
    /// Time from a leader's SIGKILL or SIGTERM to the standby's first write.
    ///
    /// Starts an API server and controllers as processes, stops the leader each way and times
    /// the standby's lease write and its first task.
    Failover(bench::failover::BenchFailoverArgs),
    /// Resident memory and CPU of an idle agent over a minute.
    ///
    /// Starts an API server and one real agent as processes and reads the agent's RSS and CPU
    /// time from /proc while it registers, heartbeats, samples GPUs and watches its Tasks.
    AgentIdle(bench::agent_idle::BenchAgentIdleArgs),
    /// Artifact throughput between agents against plain HTTP, cp and rsync, and swarm spread.
    ///
    /// Starts an API server and real agents as processes: times a 1 GiB artifact pulled from
    /// one agent by another (over TLS, and over plain HTTP as the baseline of its cost) beside
    /// `cp` of the file and `rsync` from a daemon on loopback, then a 256 MiB artifact spread
    /// from one holder to 16 agents against one transfer.
    Sync(bench::sync::BenchSyncArgs),
    /// The fleet across shaped links: joins, transfers and spread between hosts in network
    /// namespaces (root only).
    ///
    /// Builds hosts as network namespaces on a bridge, links shaped with tc (1 Gbit/s, and
    /// 100 Mbit/s for the spread), runs `ringrift server` on one and joins agents with `ringrift
    /// join`: times join to Ready, a 1 GiB pull agent to agent against rsync over the same link,
    /// and a 256 MiB spread to 8 hosts against one pull and against 8 in a row.
    Wan(bench::wan::BenchWanArgs),
    /// What TLS costs the control plane: dispatch and apiserver over HTTPS and over plain HTTP.
    ///
    /// Runs `bench dispatch` and `bench apiserver` once over HTTPS and once over plain HTTP
    /// (`--insecure-plain-http`) per round, interleaved, and reports the medians of each
    /// transport and their ratios. `bench sync` measures the data plane's.
    Tls(bench::tls::BenchTlsArgs),
    /// Gossip convergence and failure-detection times with 100 agents.
    ///
    /// Runs 100 gossip members (the agent's gossip, real UDP on loopback) in this process, idle
    /// and then with both cores saturated: times a state change reaching all of them and a
    /// killed member being seen dead by all, and counts false deaths.
    Gossip(bench::gossip::BenchGossipArgs),
}

/// The async runtime every long-running subcommand runs on.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("failed to start the async runtime: {e}"))
}

/// Runs a parsed command line and returns the process exit status.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Crds(args) => crds::run(args),
        Command::Up(args) => up::run(args),
        Command::Apiserver(args) => apiserver::run_apiserver(args),
        Command::Controller(args) => controller::run_controller(args),
        Command::SimAgents(args) => sim_agents::run_sim_agents(args),
        Command::Agent(args) => agent::run_agent(*args),
        Command::Join(args) => join::run(*args),
        Command::Server(args) => server::run(args),
        Command::TaskShim(args) => Ok(agent::run_shim(&args)),
        Command::Workload(args) => Ok(workload::run(args)),
        Command::Status(args) => status::run(&args),
        Command::Logs(args) => logs::run_logs(&args),
        Command::Bench(bench) => match bench {
            Bench::Apiserver(args) => bench::apiserver::run(args),
            Bench::Dispatch(args) => bench::dispatch::run(args),
            Bench::Fleet(args) => bench::fleet::run(args),
            Bench::Failover(args) => bench::failover::run(args),
            Bench::AgentIdle(args) => bench::agent_idle::run(args),
            Bench::Sync(args) => bench::sync::run(args),
            Bench::Wan(args) => bench::wan::run(args),
            Bench::Gossip(args) => bench::gossip::run(args),
            Bench::Tls(args) => bench::tls::run(args),
        },
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ringrift: {error:#}");
            ExitCode::FAILURE
        }
    }
}
