//! `ringrift bench sync`: artifact transfer between real agents over loopback (TLS, as agents
//! always speak), side by side in one run with the same transfer over plain HTTP between agents
//! started with the insecure benchmark flag (what TLS costs), `cp` of the same file and `rsync`
//! from an rsync daemon on loopback (in rounds, each round in another order, medians reported:
//! on a virtual machine the first writer of fresh memory pays for it); then the spread of one artifact from a single holder to many
//! agents at once against one transfer, with no limit and with every agent behind a modelled
//! network link (`--link-mib`, in and out). A transfer is timed from the creation of a `Task`
//! that needs the artifact to the task running, so it includes the watch delivery, the status
//! writes and the task's start (a few milliseconds). Prints JSON; never fails on speed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use kube::Api;
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use ringrift_crds::common::Artifact;
use ringrift_crds::task::{Task, TaskPhase};
use serde_json::json;

use super::stats::round3;
use super::system::{Fleet, Process};

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
    /// Rounds of the agent / cp / rsync comparison (medians reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=20))]
    pub rounds: u64,
    /// Rounds of each spread: all agents at once, and (unlimited links; behind links only in
    /// the first round) the same number of agents one after another (medians reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=20))]
    pub spread_rounds: u64,
    /// The modelled link of every agent in the second spread, MiB/s in and out (0: skip it).
    /// Slow enough that 16 such links stay within what two cores move (about 250 MiB/s
    /// written and hashed), so the links, not the shared CPU, bound the spread.
    #[arg(long, default_value_t = 25)]
    pub link_mib: u64,
    /// Longest wait for any one transfer.
    #[arg(long, default_value = "600s", value_parser = crate::duration::parse)]
    pub patience: Duration,
}

struct Bench {
    fleet: Fleet,
    key_file: PathBuf,
}

#[allow(clippy::cast_precision_loss)]
fn mib_per_s(mib: u64, seconds: f64) -> f64 {
    round3(mib as f64 / seconds.max(1e-9))
}

/// How agents speak to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// TLS, pinned: what agents always do.
    Tls,
    /// Plain HTTP (`--insecure-plain-http`): the baseline.
    Plain,
}

impl Bench {
    /// Starts agent `name`, behind a link of `link` MiB/s in and out (0: none).
    async fn agent(&self, name: &str, link: u64, transport: Transport) -> anyhow::Result<Process> {
        let key = self.key_file.display().to_string();
        let link = link.to_string();
        let mut args = vec![
            "--cluster-key-file",
            &key,
            "--gossip-listen",
            "127.0.0.1:0",
            "--simulate-gpus",
            "1xT4-16GB",
            "--sample-interval",
            "30s",
            "--transfer-rate-mib",
            &link,
            "--serve-rate-mib",
            &link,
        ];
        if transport == Transport::Plain {
            args.push("--insecure-plain-http");
        }
        self.fleet.agent(name, &args).await
    }

    async fn task(&self, name: &str, agent: &str, script: &str, inputs: &[Artifact]) -> anyhow::Result<()> {
        create_task(&self.fleet.client, name, agent, script, inputs).await
    }

    async fn running(&self, names: &[String], since: Instant, patience: Duration) -> anyhow::Result<f64> {
        running(&self.fleet.client, names, since, patience).await
    }

    async fn produce(&self, name: &str, agent: &str, mib: u64) -> anyhow::Result<Artifact> {
        produce(&self.fleet.client, name, agent, mib).await
    }

    /// Pulls `artifact` onto a fresh agent `name` (behind `link`); the seconds it took.
    async fn one_transfer(
        &self,
        name: &str,
        link: u64,
        artifact: &Artifact,
        patience: Duration,
        transport: Transport,
    ) -> anyhow::Result<(f64, Process)> {
        let agent = self.agent(name, link, transport).await?;
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

/// Creates a Task `name` bound to `agent` that runs `script` with `inputs`.
pub(super) async fn create_task(
    client: &kube::Client,
    name: &str,
    agent: &str,
    script: &str,
    inputs: &[Artifact],
) -> anyhow::Result<()> {
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
    let tasks: Api<Task> = Api::namespaced(client.clone(), "default");
    tasks
        .create(&PostParams::default(), &task)
        .await
        .with_context(|| format!("failed to create Task {name}"))?;
    Ok(())
}

/// Waits until every task in `names` runs (or ran); the time from `since`. It lists the
/// namespace's Tasks once and then watches them, so waiting costs the API server nothing while
/// the transfers it times share the same cores (polling each Task every few milliseconds did:
/// sixteen GETs a round for sixteen pullers against one for one, a load that fell on the swarm
/// alone).
pub(super) async fn running(
    client: &kube::Client,
    names: &[String],
    since: Instant,
    patience: Duration,
) -> anyhow::Result<f64> {
    let tasks: Api<Task> = Api::namespaced(client.clone(), "default");
    let mut left: std::collections::BTreeSet<&str> = names.iter().map(String::as_str).collect();
    // Takes `task` off `left` once it runs (or ran); an error if one of `left` failed.
    let check = |left: &mut std::collections::BTreeSet<&str>, task: &Task| -> anyhow::Result<()> {
        let name = task.metadata.name.as_deref().unwrap_or_default();
        match task.status.as_ref().map(|s| (&s.phase, &s.message)) {
            Some((TaskPhase::Running | TaskPhase::Succeeded, _)) => {
                left.remove(name);
            }
            Some((TaskPhase::Failed, message)) if left.contains(name) => {
                anyhow::bail!("task {name} failed: {message:?}")
            }
            _ => {}
        }
        Ok(())
    };
    while !left.is_empty() {
        let remaining = patience.saturating_sub(since.elapsed());
        anyhow::ensure!(
            !remaining.is_zero(),
            "tasks {left:?} not running within {patience:?}"
        );
        let list = tasks
            .list(&ListParams::default())
            .await
            .context("failed to list Tasks")?;
        for task in &list.items {
            check(&mut left, task)?;
        }
        let version = list.metadata.resource_version.unwrap_or_default();
        if left.is_empty() {
            break;
        }
        let params =
            WatchParams::default().timeout(u32::try_from(remaining.as_secs().clamp(1, 290)).unwrap_or(290));
        let mut events = tasks
            .watch(&params, &version)
            .await
            .context("failed to watch Tasks")?
            .boxed();
        // A watch that ends (its timeout, a dropped connection, an expired version) is followed
        // by a fresh list.
        let waited = tokio::time::timeout(remaining, async {
            while let Some(event) = events.next().await {
                match event {
                    Ok(WatchEvent::Added(t) | WatchEvent::Modified(t)) => check(&mut left, &t)?,
                    Ok(WatchEvent::Error(_)) | Err(_) => break,
                    Ok(_) => {}
                }
                if left.is_empty() {
                    break;
                }
            }
            anyhow::Ok(())
        })
        .await;
        if let Ok(outcome) = waited {
            outcome?;
        }
    }
    Ok(since.elapsed().as_secs_f64())
}

/// Makes an artifact of `mib` random MiB on `agent`.
pub(super) async fn produce(
    client: &kube::Client,
    name: &str,
    agent: &str,
    mib: u64,
) -> anyhow::Result<Artifact> {
    create_task(
        client,
        name,
        agent,
        &format!("head -c {mib}M /dev/urandom > \"$RINGRIFT_OUTPUT_DIR/{name}.bin\""),
        &[],
    )
    .await?;
    let tasks: Api<Task> = Api::namespaced(client.clone(), "default");
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

pub(super) fn time_command(program: &str, args: &[&str]) -> anyhow::Result<f64> {
    let start = Instant::now();
    let status = std::process::Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("failed to run {program} (is it installed?)"))?;
    anyhow::ensure!(status.success(), "{program} {args:?} failed: {status}");
    Ok(start.elapsed().as_secs_f64())
}

/// Writes the configuration of an rsync daemon serving the directory of `file` as module `m`
/// (its log and pid file in `dir`); its path.
pub(super) fn rsync_conf(file: &Path, dir: &Path) -> anyhow::Result<PathBuf> {
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
    Ok(conf)
}

/// An rsync daemon on loopback serving the directory of `file`; the URL of `file`.
async fn rsync_daemon(file: &Path, dir: &Path) -> anyhow::Result<(tokio::process::Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let conf = rsync_conf(file, dir)?;
    let daemon = tokio::process::Command::new("rsync")
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
    Ok((daemon, format!("rsync://127.0.0.1:{port}/m/{name}")))
}

/// SHA-256 on one core of this machine, MiB/s, with the code that checks chunks: the bound of
/// any transfer that checks what it receives (every byte pulled is hashed once).
fn sha256_rate() -> f64 {
    use ringrift_agent::sync::chain;
    let buf = vec![0x5au8; 64 * 1024 * 1024];
    let start = Instant::now();
    let mut state = chain::INITIAL;
    for _ in 0..4 {
        chain::advance(&mut state, &buf);
    }
    std::hint::black_box(state);
    mib_per_s(256, start.elapsed().as_secs_f64())
}

/// The median of `samples` (not empty).
pub(super) fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

pub(super) fn figure(samples: &[f64], mib: u64) -> serde_json::Value {
    let m = median(samples);
    json!({
        "seconds": round3(m),
        "mib_per_s": mib_per_s(mib, m),
        "samples_s": samples.iter().map(|s| round3(*s)).collect::<Vec<_>>(),
    })
}

/// One spread: a holder behind `link` makes a `mib` MiB artifact; then, in each of `rounds`
/// rounds (in turn which goes first), `agents` fresh agents get a Task each at once, and, in
/// the first `sequential_rounds` rounds, `agents` fresh agents pull it one after another from
/// the holder (each stopped once it has its copy, so it serves none of the next). Every copy
/// stays until its step ends, so both ways write the same bytes and leave the same dirty page
/// cache for the kernel to write back (sixteen 256 MiB copies pass its background threshold
/// on this machine: a copy deleted at once is never written back at all); then every puller is
/// stopped and its data deleted, so each step starts from the same disk and page cache.
#[allow(clippy::too_many_arguments)]
async fn spread(
    b: &Bench,
    tag: &str,
    link: u64,
    mib: u64,
    agents: usize,
    rounds: u64,
    sequential_rounds: u64,
    patience: Duration,
) -> anyhow::Result<serde_json::Value> {
    let _holder = b.agent(&format!("{tag}-seed"), link, Transport::Tls).await?;
    let artifact = b
        .produce(&format!("{tag}-art"), &format!("{tag}-seed"), mib)
        .await?;
    let seed_file = b
        .fleet
        .dir()
        .join(format!("agent-{tag}-seed/artifacts/sha256"))
        .join(artifact.digest.trim_start_matches("sha256:"));
    let (mut all, mut singles, mut sequential) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        for step in 0..2 {
            settle(&seed_file);
            if (round + step) % 2 == 0 {
                eprintln!("round {round}: {agents} agents at once");
                all.push(at_once(b, &format!("{tag}{round}a"), link, agents, &artifact, patience).await?);
            } else if round < sequential_rounds {
                eprintln!("round {round}: {agents} agents one after another");
                let mut total = 0.0;
                let mut copies = Vec::new();
                for i in 0..agents {
                    let name = format!("{tag}{round}q{i}");
                    let (secs, mut puller) = b
                        .one_transfer(&name, link, &artifact, patience, Transport::Tls)
                        .await?;
                    // Stopped, so the next pulls from the holder alone; its copy stays until
                    // the round ends, as the swarm's sixteen copies do.
                    puller.kill();
                    copies.push(name);
                    singles.push(secs);
                    total += secs;
                }
                for name in copies {
                    let _ = std::fs::remove_dir_all(b.fleet.dir().join(format!("agent-{name}")));
                }
                sequential.push(total);
            }
        }
    }
    let (all_s, one_s, sequential_s) = (median(&all), median(&singles), median(&sequential));
    Ok(json!({
        "size_mib": mib,
        "agents": agents,
        "link_mib_per_s": link,
        "rounds": rounds,
        "one_transfer_s": round3(one_s),
        "one_transfer_samples_s": singles.iter().map(|s| round3(*s)).collect::<Vec<_>>(),
        "all_agents_s": round3(all_s),
        "all_agents_samples_s": all.iter().map(|s| round3(*s)).collect::<Vec<_>>(),
        "single_transfers_one_after_another_s": round3(sequential_s),
        "one_after_another_samples_s": sequential.iter().map(|s| round3(*s)).collect::<Vec<_>>(),
        "vs_one_transfer": round3(all_s / one_s.max(1e-9)),
        "vs_one_after_another": round3(all_s / sequential_s.max(1e-9)),
    }))
}

/// Puts the machine in the same state before every timed step of a spread: every dirty page
/// written back (`sync`), the clean page cache dropped when this runs as root (so no step has
/// to reclaim the gigabytes of cache the steps before it filled memory with: on two cores the
/// kernel's reclaim competed with the sixteen pullers, and the first spread after the big
/// transfer comparison took 1.6 × the last), and the seed's copy of the artifact read back into
/// the cache (`seed_file`), where a holder's hot artifact is.
fn settle(seed_file: &Path) {
    if let Err(e) = std::process::Command::new("sync").status() {
        eprintln!("sync failed ({e}); the next step may pay for the last one's write-back");
    }
    if std::fs::write("/proc/sys/vm/drop_caches", "1").is_err() {
        eprintln!("cannot drop the page cache (not root?); steps may differ in what they reclaim");
    }
    if let Err(e) =
        std::fs::File::open(seed_file).and_then(|mut f| std::io::copy(&mut f, &mut std::io::sink()))
    {
        eprintln!("cannot read {} back into the cache: {e}", seed_file.display());
    }
}

/// `agents` fresh agents named `prefix<i>` pull `artifact` at once; the seconds until every
/// one's Task runs. They are stopped and their data deleted after.
async fn at_once(
    b: &Bench,
    prefix: &str,
    link: u64,
    agents: usize,
    artifact: &Artifact,
    patience: Duration,
) -> anyhow::Result<f64> {
    let mut spreaders = Vec::new();
    for i in 0..agents {
        let name = format!("{prefix}{i}");
        spreaders.push((name.clone(), b.agent(&name, link, Transport::Tls).await?));
    }
    // Let gossip tell everyone about everyone (a pull asks partial holders it knows of).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let names: Vec<String> = spreaders.iter().map(|(n, _)| format!("{n}-pull")).collect();
    let since = Instant::now();
    for (name, _) in &spreaders {
        b.task(
            &format!("{name}-pull"),
            name,
            "true",
            std::slice::from_ref(artifact),
        )
        .await?;
    }
    let secs = b.running(&names, since, patience).await?;
    for (name, agent) in spreaders {
        discard(b, &name, agent);
    }
    Ok(secs)
}

/// Seconds each way of moving the big artifact, per round: agent to agent over TLS and over
/// plain HTTP, `cp`, `rsync`.
#[derive(Debug, Default)]
struct Samples {
    tls: Vec<f64>,
    plain: Vec<f64>,
    cp: Vec<f64>,
    rsync: Vec<f64>,
}

/// Stops a puller and deletes its data: every step of the comparison leaves the machine as it
/// found it, as `cp` and `rsync` delete their copies. (On a virtual machine, writing memory the
/// guest has not touched lately costs several times more; a step that follows one which freed a
/// gigabyte of page cache writes into warm pages. When only the copies of `cp` and `rsync` were
/// deleted, the step after `rsync`, always the plain-HTTP pull, got warm pages and the TLS
/// pull never did: it looked three times slower for that alone.)
fn discard(b: &Bench, name: &str, mut puller: Process) {
    puller.kill();
    let _ = std::fs::remove_dir_all(b.fleet.dir().join(format!("agent-{name}")));
}

/// The rounds of the transfer comparison, each round in another order.
async fn compare(
    b: &Bench,
    args: &BenchSyncArgs,
    big: &Artifact,
    big_plain: &Artifact,
    stored: &Path,
) -> anyhow::Result<Samples> {
    let (mut daemon, url) = rsync_daemon(stored, b.fleet.dir()).await?;
    let mut s = Samples::default();
    let copy = b.fleet.dir().join("copy");
    for round in 0..args.rounds {
        for step in 0..4 {
            match (round + step) % 4 {
                0 => {
                    eprintln!("round {round}: agent to agent (TLS)");
                    let name = format!("puller{round}");
                    let (secs, puller) = b
                        .one_transfer(&name, 0, big, args.patience, Transport::Tls)
                        .await?;
                    s.tls.push(secs);
                    discard(b, &name, puller);
                }
                3 => {
                    eprintln!("round {round}: agent to agent (insecure plain HTTP)");
                    let name = format!("plain-puller{round}");
                    let (secs, puller) = b
                        .one_transfer(&name, 0, big_plain, args.patience, Transport::Plain)
                        .await?;
                    s.plain.push(secs);
                    discard(b, &name, puller);
                }
                1 => {
                    eprintln!("round {round}: cp");
                    s.cp.push(time_command(
                        "cp",
                        &[&stored.display().to_string(), &copy.display().to_string()],
                    )?);
                    let _ = std::fs::remove_file(&copy);
                }
                _ => {
                    eprintln!("round {round}: rsync");
                    s.rsync
                        .push(time_command("rsync", &[&url, &copy.display().to_string()])?);
                    let _ = std::fs::remove_file(&copy);
                }
            }
        }
    }
    let _ = daemon.kill().await;
    Ok(s)
}

async fn bench(args: BenchSyncArgs) -> anyhow::Result<serde_json::Value> {
    let sha256 = sha256_rate();
    let fleet = Fleet::start("sync", false).await?;
    let key_file = fleet.dir().join("cluster-key");
    std::fs::write(&key_file, uuid::Uuid::new_v4().simple().to_string())?;
    let b = Bench { fleet, key_file };
    let _seed = b.agent("seed", 0, Transport::Tls).await?;
    eprintln!("making a {} MiB artifact on the seed agent", args.size_mib);
    let big = b.produce("big", "seed", args.size_mib).await?;
    // The plain-HTTP baseline: an agent speaking plain HTTP holds another artifact of the
    // same size, pulled by agents that speak plain HTTP too.
    let _plain_seed = b.agent("seed-plain", 0, Transport::Plain).await?;
    let big_plain = b.produce("big-plain", "seed-plain", args.size_mib).await?;
    let stored = b
        .fleet
        .dir()
        .join("agent-seed/artifacts/sha256")
        .join(big.digest.trim_start_matches("sha256:"));
    let samples = compare(&b, &args, &big, &big_plain, &stored).await?;
    eprintln!(
        "spreading {} MiB to {} agents",
        args.spread_mib, args.spread_agents
    );
    let free = spread(
        &b,
        "s",
        0,
        args.spread_mib,
        args.spread_agents,
        args.spread_rounds,
        args.spread_rounds,
        args.patience,
    )
    .await?;
    let linked = if args.link_mib > 0 {
        eprintln!(
            "spreading {} MiB to {} agents behind {} MiB/s links",
            args.spread_mib, args.spread_agents, args.link_mib
        );
        // One round one after another: 16 transfers behind links take minutes.
        spread(
            &b,
            "l",
            args.link_mib,
            args.spread_mib,
            args.spread_agents,
            args.spread_rounds,
            1,
            args.patience,
        )
        .await?
    } else {
        serde_json::Value::Null
    };
    let rate = |samples: &[f64]| mib_per_s(args.size_mib, median(samples));
    let (agent_rate, cp_rate, rsync_rate) = (rate(&samples.tls), rate(&samples.cp), rate(&samples.rsync));
    let plain_rate = rate(&samples.plain);
    Ok(json!({
        "bench": "sync",
        "sha256_one_core_mib_per_s": sha256,
        "transfer": {
            "size_mib": args.size_mib,
            "rounds": args.rounds,
            "agent_to_agent": figure(&samples.tls, args.size_mib),
            "agent_to_agent_plain_http": figure(&samples.plain, args.size_mib),
            "tls_vs_plain_http": round3(agent_rate / plain_rate.max(1e-9)),
            "cp": figure(&samples.cp, args.size_mib),
            "rsync_daemon_loopback": figure(&samples.rsync, args.size_mib),
            "vs_rsync": round3(agent_rate / rsync_rate.max(1e-9)),
            "vs_cp": round3(agent_rate / cp_rate.max(1e-9)),
        },
        "spread": free,
        "spread_behind_links": linked,
        "targets": {"vs_rsync": 2.0, "vs_cp": 0.5, "spread_vs_one_transfer": 3.0, "spread_vs_one_after_another": 1.0, "tls_vs_plain_http": 0.85},
    }))
}

pub(crate) fn run(args: BenchSyncArgs) -> anyhow::Result<ExitCode> {
    super::report(bench(args))
}
