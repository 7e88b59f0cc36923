//! `ringrift bench wan`: the fleet across shaped links. Hosts are network namespaces on a
//! bridge (`crate::netns`, the harness of the multi-host tests), every link shaped with `tc tbf`
//! at both ends; `ringrift server` runs on one host and every agent joins it with `ringrift
//! join`, as on real boxes. Figures, medians of interleaved rounds:
//!
//! - `join_to_ready_s`: from starting `ringrift join` to the agent's `Ready`;
//! - `transfer`: one artifact (1 GiB) pulled agent to agent over a link of `--rate` (1 Gbit/s),
//!   timed from the Task that needs it to the Task running, against an rsync daemon on the same
//!   hosts (`link_utilization`: the agent's rate over the link's; `vs_rsync`: rsync's time over
//!   the agent's);
//! - `spread`: one artifact (256 MiB) pulled by 8 hosts at once over links of `--spread-rate`
//!   (100 Mbit/s, slow enough that eight stay within what two cores move; the CPU's busy share is
//!   recorded), against one pull alone (`vs_one_transfer`), rounds of both interleaved, and
//!   the 8 one after another (once).
//!
//! No delay is added unless `--delay-ms` asks (it needs `netem`, which this machine's kernel
//! lacks); the JSON says which were in force. Needs root, `ip`, `tc`, `nft` and `rsync`. Never fails on speed.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use kube::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use ringrift_crds::agent::Agent;
use ringrift_crds::common::Artifact;
use serde_json::json;

use super::stats::round3;
use super::sync::{create_task, figure, median, produce, running};
use super::system::Process;
use crate::netns::{Host, Net, Plan};

/// Options of `ringrift bench wan`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchWanArgs {
    /// Rate of every link for the agent-to-agent transfer (`tc` syntax: `1gbit`, `100mbit`).
    #[arg(long, default_value = "1gbit")]
    pub rate: String,
    /// Rate of every link for the spread.
    #[arg(long, default_value = "100mbit")]
    pub spread_rate: String,
    /// Size of the artifact moved agent to agent, MiB.
    #[arg(long, default_value_t = 1024)]
    pub size_mib: u64,
    /// Size of the artifact spread, MiB.
    #[arg(long, default_value_t = 256)]
    pub spread_mib: u64,
    /// Hosts the artifact is spread to.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(2..=40))]
    pub hosts: u8,
    /// Rounds of the agent / rsync comparison and of the spread against one pull alone
    /// (medians reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=20))]
    pub rounds: u8,
    /// Longest wait for any one transfer.
    #[arg(long, default_value = "900s", value_parser = crate::duration::parse)]
    pub patience: Duration,
    /// Delay added at each end of every link, ms (needs `netem` in the kernel; this machine's
    /// has none, so the default adds none).
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u32,
}

/// A rate in `tc` syntax, bits per second.
pub fn bits_per_second(rate: &str) -> anyhow::Result<f64> {
    let lower = rate.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let n: f64 = number
        .parse()
        .with_context(|| format!("rate {rate:?}: a number and a unit, like 1gbit"))?;
    let scale = match unit {
        "bit" | "" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        _ => anyhow::bail!("rate {rate:?}: the unit must be bit, kbit, mbit or gbit"),
    };
    Ok(n * scale)
}

/// `ringrift server` on the host `head` of `net`, and the administrator's client.
struct Site {
    net: Net,
    dir: PathBuf,
    join: Vec<String>,
    client: kube::Client,
    _server: Process,
}

/// Starts `ringrift <args>` in `host` and waits for its announcement.
fn spawn_in(host: &Host, args: &[String], prefix: &str, agent: bool) -> anyhow::Result<Process> {
    let exe = std::env::current_exe().context("cannot find the ringrift executable")?;
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", &host.netns])
        .arg(exe)
        .args(args)
        .env(
            "RINGRIFT_LOG",
            std::env::var("RINGRIFT_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stderr(std::process::Stdio::inherit());
    if agent {
        ringrift_agent::allocator_env(&mut command);
    }
    let what = format!("ringrift {}", args.first().map_or("", String::as_str));
    let announced = crate::harness::spawn_announced(&mut command, &what, prefix, Duration::from_secs(60))?;
    Ok(Process {
        child: announced.child,
    })
}

impl Site {
    async fn start(net: Net, dir: &Path) -> anyhow::Result<Self> {
        let head = net.host("head").cloned().context("no head host")?;
        let server_dir = dir.join("server");
        let args: Vec<String> = [
            "server",
            "--dir",
            &server_dir.display().to_string(),
            "--advertise",
            &head.addr,
            "--controllers",
            "1",
        ]
        .map(String::from)
        .to_vec();
        let exe = std::env::current_exe().context("cannot find the ringrift executable")?;
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &head.netns])
            .arg(exe)
            .args(&args)
            .env("RINGRIFT_LOG", "warn")
            .stderr(std::process::Stdio::inherit());
        let announced = crate::harness::spawn_announced(
            &mut command,
            "ringrift server",
            "  ringrift join https://",
            Duration::from_secs(60),
        )?;
        let join: Vec<String> = announced
            .line
            .split_whitespace()
            .skip(1)
            .map(String::from)
            .collect();
        let kubeconfig = Kubeconfig::read_from(server_dir.join("kubeconfig"))?;
        let mut config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
        config.cluster_url = format!("https://{}:6443", head.addr).parse()?;
        Ok(Self {
            net,
            dir: dir.to_owned(),
            join,
            client: kube::Client::try_from(config)?,
            _server: Process {
                child: announced.child,
            },
        })
    }

    fn host(&self, name: &str) -> anyhow::Result<Host> {
        self.net
            .host(name)
            .cloned()
            .with_context(|| format!("no host {name}"))
    }

    /// `ringrift join` as agent `name` on `host`; the agent and the seconds to its `Ready`.
    async fn join(&self, host: &Host, name: &str) -> anyhow::Result<(Process, f64)> {
        let data = self.dir.join(name);
        let mut args = self.join.clone();
        args.extend(
            [
                "--name",
                name,
                "--data-dir",
                &data.display().to_string(),
                "--listen",
                &format!("{}:0", host.addr),
                "--gossip-listen",
                &format!("{}:0", host.addr),
                "--simulate-gpus",
                "1xT4-16GB",
                "--sample-interval",
                "30s",
                "--heartbeat",
                "1s",
                "--heartbeat-lease",
                "5s",
            ]
            .map(String::from),
        );
        let started = Instant::now();
        let agent = spawn_in(host, &args, &format!("ringrift agent {name}: REST on"), true)?;
        let agents: Api<Agent> = Api::all(self.client.clone());
        loop {
            let ready = agents.get_opt(name).await.ok().flatten().is_some_and(|a| {
                a.status.is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            });
            if ready {
                return Ok((agent, started.elapsed().as_secs_f64()));
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(120),
                "agent {name} not Ready within 2 minutes"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops agent `name` and deletes its data and its `Agent`.
    async fn retire(&self, name: &str, mut agent: Process) {
        agent.kill();
        let _ = std::fs::remove_dir_all(self.dir.join(name));
        let _ = Api::<Agent>::all(self.client.clone())
            .delete(name, &kube::api::DeleteParams::default())
            .await;
    }

    /// A fresh agent `name` on `host` pulls `artifact`: the seconds from the Task to it
    /// running, and how long joining took.
    async fn pull(
        &self,
        host: &Host,
        name: &str,
        artifact: &Artifact,
        patience: Duration,
    ) -> anyhow::Result<(f64, f64)> {
        let (agent, joined) = self.join(host, name).await?;
        let since = Instant::now();
        create_task(
            &self.client,
            &format!("{name}-pull"),
            name,
            "true",
            std::slice::from_ref(artifact),
        )
        .await?;
        let secs = running(&self.client, &[format!("{name}-pull")], since, patience).await?;
        self.retire(name, agent).await;
        Ok((secs, joined))
    }
}

/// rsync from a daemon on `from` (serving `file`) to `to`: the seconds it took.
fn rsync_between(from: &Host, to: &Host, file: &Path, dir: &Path) -> anyhow::Result<f64> {
    let conf = super::sync::rsync_conf(file, dir)?;
    let _ = std::fs::remove_file(dir.join("rsyncd.pid"));
    let daemon = from
        .command("rsync")
        .args([
            "--daemon",
            "--no-detach",
            "--address",
            &from.addr,
            "--port",
            "8873",
            "--config",
        ])
        .arg(&conf)
        .spawn()
        .context("failed to start rsync (is it installed?)")?;
    let mut daemon = Process { child: daemon };
    let name = file
        .file_name()
        .context("no file name")?
        .to_string_lossy()
        .into_owned();
    let copy = dir.join("rsync-copy");
    let url = format!("rsync://{}:8873/m/{name}", from.addr);
    let start = Instant::now();
    let mut result = Err(anyhow::anyhow!("rsync did not run"));
    // The daemon takes a moment to listen.
    while start.elapsed() < Duration::from_secs(10) {
        let begun = Instant::now();
        let status = to.command("rsync").arg(&url).arg(&copy).status()?;
        if status.success() {
            result = Ok(begun.elapsed().as_secs_f64());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon.kill();
    let _ = std::fs::remove_file(&copy);
    result
}

/// Busy and total jiffies of all CPUs, from `/proc/stat`.
fn cpu_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3).copied().unwrap_or(0) + fields.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

#[allow(clippy::cast_precision_loss)]
async fn transfer(
    args: &BenchWanArgs,
    dir: &Path,
    joins: &mut Vec<f64>,
) -> anyhow::Result<serde_json::Value> {
    let net = Net::build_with_delay(
        "rrbw",
        90,
        &[
            Plan {
                name: "head",
                nat: false,
            },
            Plan {
                name: "a",
                nat: false,
            },
            Plan {
                name: "b",
                nat: false,
            },
        ],
        &args.rate,
        args.delay_ms,
    )
    .map_err(anyhow::Error::msg)?;
    let site = Site::start(net, dir).await?;
    let (a, b) = (site.host("a")?, site.host("b")?);
    let (holder, joined) = site.join(&a, "holder").await?;
    joins.push(joined);
    let artifact = produce(&site.client, "big", "holder", args.size_mib).await?;
    let hex = artifact.digest.trim_start_matches("sha256:");
    let file = dir.join("holder").join("artifacts").join("sha256").join(hex);
    let (mut agent_s, mut rsync_s) = (Vec::new(), Vec::new());
    for round in 0..args.rounds {
        for step in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
            if step == 0 {
                let (secs, joined) = site
                    .pull(&b, &format!("puller{round}"), &artifact, args.patience)
                    .await?;
                agent_s.push(secs);
                joins.push(joined);
            } else {
                rsync_s.push(rsync_between(&a, &b, &file, dir)?);
            }
        }
    }
    let bits = (args.size_mib * 1024 * 1024 * 8) as f64;
    let rate = bits_per_second(&args.rate)?;
    let (agent, rsync) = (median(&agent_s), median(&rsync_s));
    drop(holder);
    drop(site);
    Ok(json!({
        "size_mib": args.size_mib,
        "rate": args.rate,
        "agent": figure(&agent_s, args.size_mib),
        "rsync": figure(&rsync_s, args.size_mib),
        "link_utilization": round3(bits / agent.max(1e-9) / rate),
        "rsync_link_utilization": round3(bits / rsync.max(1e-9) / rate),
        "vs_rsync": round3(rsync / agent.max(1e-9)),
    }))
}

#[allow(clippy::cast_precision_loss)]
async fn spread(args: &BenchWanArgs, dir: &Path, joins: &mut Vec<f64>) -> anyhow::Result<serde_json::Value> {
    let names: Vec<String> = (1..=args.hosts).map(|i| format!("h{i}")).collect();
    let mut plan = vec![
        Plan {
            name: "head",
            nat: false,
        },
        Plan {
            name: "src",
            nat: false,
        },
        Plan {
            name: "solo",
            nat: false,
        },
    ];
    plan.extend(names.iter().map(|n| Plan { name: n, nat: false }));
    let net = Net::build_with_delay("rrbs", 91, &plan, &args.spread_rate, args.delay_ms)
        .map_err(anyhow::Error::msg)?;
    let site = Site::start(net, dir).await?;
    let (holder, joined) = site.join(&site.host("src")?, "source").await?;
    joins.push(joined);
    let artifact = produce(&site.client, "spread", "source", args.spread_mib).await?;
    // Rounds of one pull alone and of the spread, in turn which goes first; fresh agents each
    // time, retired (data deleted) after.
    let (mut alone, mut together, mut busy) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..args.rounds {
        for step in 0..2 {
            if (round + step) % 2 == 0 {
                let (one_s, _) = site
                    .pull(
                        &site.host("solo")?,
                        &format!("solo{round}"),
                        &artifact,
                        args.patience,
                    )
                    .await?;
                alone.push(one_s);
            } else {
                let (all_s, cpu) = at_once(&site, &names, round, &artifact, args.patience, joins).await?;
                together.push(all_s);
                busy.push(cpu);
            }
        }
    }
    // One after another (once: eight transfers behind these links take minutes).
    let mut sequential = 0.0;
    for (i, n) in names.iter().enumerate() {
        let (secs, _) = site
            .pull(&site.host(n)?, &format!("q{i}"), &artifact, args.patience)
            .await?;
        sequential += secs;
    }
    drop(holder);
    drop(site);
    let (one_s, all_s) = (median(&alone), median(&together));
    let samples = |v: &[f64]| v.iter().map(|s| round3(*s)).collect::<Vec<_>>();
    Ok(json!({
        "size_mib": args.spread_mib,
        "hosts": args.hosts,
        "rate": args.spread_rate,
        "rounds": args.rounds,
        "one_transfer_s": round3(one_s),
        "one_transfer_samples_s": samples(&alone),
        "spread_s": round3(all_s),
        "spread_samples_s": samples(&together),
        "sequential_s": round3(sequential),
        "vs_one_transfer": round3(all_s / one_s.max(1e-9)),
        "vs_sequential": round3(all_s / f64::max(sequential, 1e-9)),
        "cpu_busy_fraction": round3(median(&busy)),
    }))
}

/// One spread: a fresh agent on each of the hosts `names` pulls `artifact` at once; the seconds
/// until every one's Task runs, and the CPU's busy share meanwhile. The agents are retired
/// after.
async fn at_once(
    site: &Site,
    names: &[String],
    round: u8,
    artifact: &Artifact,
    patience: Duration,
    joins: &mut Vec<f64>,
) -> anyhow::Result<(f64, f64)> {
    let mut agents = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let name = format!("s{round}-{i}");
        let (agent, joined) = site.join(&site.host(n)?, &name).await?;
        joins.push(joined);
        agents.push((name, agent));
    }
    let (busy0, total0) = cpu_jiffies();
    let since = Instant::now();
    let tasks: Vec<String> = agents.iter().map(|(n, _)| format!("{n}-pull")).collect();
    for (n, _) in &agents {
        create_task(
            &site.client,
            &format!("{n}-pull"),
            n,
            "true",
            std::slice::from_ref(artifact),
        )
        .await?;
    }
    let all_s = running(&site.client, &tasks, since, patience).await?;
    let (busy1, total1) = cpu_jiffies();
    for (n, agent) in agents {
        site.retire(&n, agent).await;
    }
    #[allow(clippy::cast_precision_loss)]
    Ok((all_s, (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64))
}

async fn bench(args: BenchWanArgs) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(
        crate::netns::is_root(),
        "ringrift bench wan builds network namespaces: run it as root"
    );
    bits_per_second(&args.rate)?;
    bits_per_second(&args.spread_rate)?;
    let dir = std::env::temp_dir().join(format!("ringrift-bench-wan-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut joins = Vec::new();
    let result = async {
        let transfer = transfer(&args, &dir.join("transfer"), &mut joins).await?;
        let spread = spread(&args, &dir.join("spread"), &mut joins).await?;
        anyhow::Ok((transfer, spread))
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let (transfer, spread) = result?;
    Ok(json!({
        "bench": "wan",
        "links": {
            "shaping": "tc tbf at both ends of every link, burst 256 KiB",
            "rate": args.rate,
            "spread_rate": args.spread_rate,
            "delay_ms": args.delay_ms,
            "delay": if args.delay_ms == 0 {
                "none added (--delay-ms needs netem, which this machine's kernel lacks)".to_owned()
            } else {
                format!("{} ms at each end of every link (netem), so {} ms per round trip", args.delay_ms, 4 * args.delay_ms)
            },
        },
        "join_to_ready_s": {
            "median": round3(median(&joins)),
            "samples": joins.iter().map(|s| round3(*s)).collect::<Vec<_>>(),
        },
        "transfer": transfer,
        "spread": spread,
        "targets": {"transfer.link_utilization": 0.9, "transfer.vs_rsync": 0.95, "spread.vs_one_transfer": 2.0},
    }))
}

pub(crate) fn run(args: BenchWanArgs) -> anyhow::Result<ExitCode> {
    super::report(bench(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_tc_writes_them() {
        assert!((bits_per_second("1gbit").unwrap() - 1e9).abs() < 1.0);
        assert!((bits_per_second("100Mbit").unwrap() - 1e8).abs() < 1.0);
        assert!((bits_per_second("2.5mbit").unwrap() - 2.5e6).abs() < 1.0);
        assert!(bits_per_second("1gb").is_err());
        assert!(bits_per_second("fast").is_err());
    }
}
