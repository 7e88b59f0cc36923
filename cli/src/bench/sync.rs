//! `ringrift bench sync`: artifact transfer between real agents over loopback, side by side in
//! one run with `cp` of the same file and `rsync` from an rsync daemon on loopback; then the
//! spread of one artifact from a single holder to many agents at once against one transfer.
//! A transfer is timed from the creation of a `Task` that needs the artifact to the task
//! running, so it includes the watch delivery, the status writes and the task's start (a few
//! milliseconds). Prints JSON; never fails on speed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use kube::Api;
use kube::api::PostParams;
use ringrift_crds::common::Artifact;
use ringrift_crds::task::{Task, TaskPhase};
use serde_json::json;

use super::fleet::{Fleet, Process};
use super::stats::round3;

/// Options of `ringrift bench sync`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchSyncArgs {
    /// Size of the artifact moved between two agents, MiB.
    #[arg(long, default_value_t = 1024)]
    pub size_mib: u64,
    /// Size of the artifact spread to many agents, MiB.
    #[arg(long, default_value_t = 256)]
    pub spread_mib: u64,
    /// Agents the artifact is spread to.
    #[arg(long, default_value_t = 16)]
    pub spread_agents: usize,
    /// Bandwidth limit of each pulling agent, MiB/s (0: none), to model a network link.
    #[arg(long, default_value_t = 0)]
    pub rate_mib: u64,
    /// Longest wait for any one transfer.
    #[arg(long, default_value = "600s", value_parser = crate::duration::parse)]
    pub patience: Duration,
}

struct Bench {
    fleet: Fleet,
    key_file: PathBuf,
    rate: String,
}

#[allow(clippy::cast_precision_loss)]
fn mib_per_s(mib: u64, seconds: f64) -> f64 {
    round3(mib as f64 / seconds.max(1e-9))
}

impl Bench {
    async fn agent(&self, name: &str) -> anyhow::Result<Process> {
        let key = self.key_file.display().to_string();
        self.fleet
            .agent(
                name,
                &[
                    "--cluster-key-file",
                    &key,
                    "--gossip-listen",
                    "127.0.0.1:0",
                    "--simulate-gpus",
                    "1xT4-16GB",
                    "--sample-interval",
                    "30s",
                    "--transfer-rate-mib",
                    &self.rate,
                ],
            )
            .await
    }

    async fn task(&self, name: &str, agent: &str, script: &str, inputs: &[Artifact]) -> anyhow::Result<()> {
        let task: Task = serde_json::from_value(json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "Task",
            "metadata": {"name": name, "namespace": "default", "labels": {"ringrift.ai/agent": agent}},
            "spec": {
                "role": "training", "job": {"kind": "TrainingJob", "name": "bench"}, "workUnit": name,
                "attempt": 0, "agent": agent,
                "template": {"command": ["/bin/sh", "-c", script]},
                "inputs": inputs,
            },
        }))?;
        let tasks: Api<Task> = Api::namespaced(self.fleet.client.clone(), "default");
        tasks
            .create(&PostParams::default(), &task)
            .await
            .with_context(|| format!("failed to create Task {name}"))?;
        Ok(())
    }

    /// Waits until every task in `names` runs (or ran); the time from `since`.
    async fn running(&self, names: &[String], since: Instant, patience: Duration) -> anyhow::Result<f64> {
        let tasks: Api<Task> = Api::namespaced(self.fleet.client.clone(), "default");
        let mut left: Vec<String> = names.to_vec();
        while !left.is_empty() {
            anyhow::ensure!(
                since.elapsed() < patience,
                "tasks {left:?} not running within {patience:?}"
            );
            let mut still = Vec::new();
            for name in left {
                let phase = tasks
                    .get(&name)
                    .await
                    .ok()
                    .and_then(|t| t.status)
                    .map(|s| (s.phase, s.message));
                match phase {
                    Some((TaskPhase::Running | TaskPhase::Succeeded, _)) => {}
                    Some((TaskPhase::Failed, message)) => anyhow::bail!("task {name} failed: {message:?}"),
                    _ => still.push(name),
                }
            }
            left = still;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(since.elapsed().as_secs_f64())
    }

    /// Makes an artifact of `mib` random MiB on `agent`.
    async fn produce(&self, name: &str, agent: &str, mib: u64) -> anyhow::Result<Artifact> {
        self.task(
            name,
            agent,
            &format!("head -c {mib}M /dev/urandom > \"$RINGRIFT_OUTPUT_DIR/{name}.bin\""),
            &[],
        )
        .await?;
        let tasks: Api<Task> = Api::namespaced(self.fleet.client.clone(), "default");
        let start = Instant::now();
        loop {
            let t = tasks.get(name).await?;
            if let Some(s) = t.status.filter(|s| s.phase == TaskPhase::Succeeded) {
                return s
                    .outputs
                    .into_iter()
                    .next()
                    .context("the producing task has no output");
            }
            anyhow::ensure!(
                start.elapsed() < Duration::from_secs(600),
                "producing {name} took too long"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Pulls `artifact` onto a fresh agent `name`; the seconds it took.
    async fn one_transfer(
        &self,
        name: &str,
        artifact: &Artifact,
        patience: Duration,
    ) -> anyhow::Result<(f64, Process)> {
        let agent = self.agent(name).await?;
        let since = Instant::now();
        self.task(
            &format!("{name}-pull"),
            name,
            "true",
            std::slice::from_ref(artifact),
        )
        .await?;
        let secs = self.running(&[format!("{name}-pull")], since, patience).await?;
        Ok((secs, agent))
    }
}

fn time_command(program: &str, args: &[&str]) -> anyhow::Result<f64> {
    let start = Instant::now();
    let status = std::process::Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("failed to run {program} (is it installed?)"))?;
    anyhow::ensure!(status.success(), "{program} {args:?} failed: {status}");
    Ok(start.elapsed().as_secs_f64())
}

/// `rsync` of `file` from an rsync daemon on loopback into `dest`.
async fn rsync(file: &Path, dest: &Path, dir: &Path) -> anyhow::Result<f64> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let conf = dir.join("rsyncd.conf");
    let module = file.parent().context("artifact without a directory")?;
    std::fs::write(
        &conf,
        format!(
            "use chroot = false\nlog file = {}\npid file = {}\n[m]\npath = {}\nread only = true\n",
            dir.join("rsyncd.log").display(),
            dir.join("rsyncd.pid").display(),
            module.display()
        ),
    )?;
    let mut daemon = tokio::process::Command::new("rsync")
        .args([
            "--daemon",
            "--no-detach",
            "--address",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--config",
        ])
        .arg(&conf)
        .kill_on_drop(true)
        .spawn()
        .context("failed to start rsync (is it installed?)")?;
    let start = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(10),
            "the rsync daemon did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let name = file
        .file_name()
        .context("no file name")?
        .to_string_lossy()
        .into_owned();
    let url = format!("rsync://127.0.0.1:{port}/m/{name}");
    let secs = time_command("rsync", &[&url, &dest.display().to_string()]);
    let _ = daemon.kill().await;
    secs
}

#[allow(clippy::too_many_lines, clippy::cast_precision_loss)]
async fn bench(args: BenchSyncArgs) -> anyhow::Result<serde_json::Value> {
    let fleet = Fleet::start("sync").await?;
    let key_file = fleet.dir().join("cluster-key");
    std::fs::write(&key_file, uuid::Uuid::new_v4().simple().to_string())?;
    let b = Bench {
        key_file,
        rate: args.rate_mib.to_string(),
        fleet,
    };
    let _seed = b.agent("seed").await?;
    eprintln!("making a {} MiB artifact on the seed agent", args.size_mib);
    let big = b.produce("big", "seed", args.size_mib).await?;
    let stored = b
        .fleet
        .dir()
        .join("agent-seed/artifacts/sha256")
        .join(big.digest.trim_start_matches("sha256:"));

    eprintln!("agent to agent");
    let (agent_s, _puller) = b.one_transfer("puller", &big, args.patience).await?;
    let cp_dest = b.fleet.dir().join("cp-copy");
    let cp_s = time_command(
        "cp",
        &[&stored.display().to_string(), &cp_dest.display().to_string()],
    )?;
    let _ = std::fs::remove_file(&cp_dest);
    eprintln!("rsync");
    let rsync_dest = b.fleet.dir().join("rsync-copy");
    let rsync_s = rsync(&stored, &rsync_dest, b.fleet.dir()).await?;
    let _ = std::fs::remove_file(&rsync_dest);

    eprintln!(
        "spreading {} MiB to {} agents",
        args.spread_mib, args.spread_agents
    );
    let small = b.produce("spread", "seed", args.spread_mib).await?;
    let (one_s, _one) = b.one_transfer("single", &small, args.patience).await?;
    let mut spreaders = Vec::new();
    for i in 0..args.spread_agents {
        spreaders.push(b.agent(&format!("s{i}")).await?);
    }
    // Let gossip tell everyone about everyone (a pull asks partial holders it knows of).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let names: Vec<String> = (0..args.spread_agents).map(|i| format!("s{i}-pull")).collect();
    let since = Instant::now();
    for (i, name) in names.iter().enumerate() {
        b.task(name, &format!("s{i}"), "true", std::slice::from_ref(&small))
            .await?;
    }
    let spread_s = b.running(&names, since, args.patience).await?;
    let agent_rate = mib_per_s(args.size_mib, agent_s);
    let cp_rate = mib_per_s(args.size_mib, cp_s);
    let rsync_rate = mib_per_s(args.size_mib, rsync_s);
    Ok(json!({
        "bench": "sync",
        "rate_limit_mib_per_s": args.rate_mib,
        "transfer": {
            "size_mib": args.size_mib,
            "agent_to_agent": {"seconds": round3(agent_s), "mib_per_s": agent_rate},
            "cp": {"seconds": round3(cp_s), "mib_per_s": cp_rate},
            "rsync_daemon_loopback": {"seconds": round3(rsync_s), "mib_per_s": rsync_rate},
            "vs_rsync": round3(agent_rate / rsync_rate.max(1e-9)),
            "vs_cp": round3(agent_rate / cp_rate.max(1e-9)),
        },
        "spread": {
            "size_mib": args.spread_mib,
            "agents": args.spread_agents,
            "one_transfer_s": round3(one_s),
            "all_agents_s": round3(spread_s),
            "sixteen_single_transfers_s": round3(one_s * args.spread_agents as f64),
            "vs_one_transfer": round3(spread_s / one_s.max(1e-9)),
        },
        "targets": {"vs_rsync": 2.0, "vs_cp": 0.5, "spread_vs_one_transfer": 3.0},
    }))
}

pub(crate) fn run(args: BenchSyncArgs) -> anyhow::Result<ExitCode> {
    super::report(bench(args))
}
