//! `ringrift bench agent-idle`: the resident memory and CPU of an idle agent (registered,
//! heartbeating, sampling its GPUs, watching its Tasks, serving REST) over a period, read from
//! `/proc`. Prints JSON; never fails on speed.
//!
//! Most of an idle agent's resident memory is the binary's own pages, and how many of them a
//! process maps depends on what the page cache holds: the kernel maps the cached neighbours of
//! every page it faults in (fault-around). So the binary's cache state is set before the run,
//! not left to chance: `cold` (default) drops it from the cache, as on a box just booted, which
//! gives the same figure run after run; `warm` reads the whole binary first, the state that maps
//! the most, but one the rest of the machine can undo (other work evicts pages meanwhile).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use super::stats::round3;
use super::system::Fleet;

/// Options of `ringrift bench agent-idle`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchAgentIdleArgs {
    /// How long to measure.
    #[arg(long, default_value = "60s", value_parser = crate::duration::parse)]
    pub duration: Duration,
    /// Settling time after start, not measured.
    #[arg(long, default_value = "5s", value_parser = crate::duration::parse)]
    pub warmup: Duration,
    /// Simulated GPUs (default: NVML, as on a real node; none on a machine without a driver).
    #[arg(long)]
    pub simulate_gpus: Option<String>,
    /// The binary's pages in the page cache before the run: `cold` (dropped first) or `warm`
    /// (all read first).
    #[arg(long, default_value = "cold", value_parser = ["warm", "cold"])]
    pub binary_cache: String,
}

/// Reads the whole of `file` (`warm`) or asks the kernel to drop its cached pages (`cold`).
fn set_cache(file: &std::path::Path, state: &str) -> anyhow::Result<()> {
    let opened = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    if state == "cold" {
        rustix::fs::fadvise(&opened, 0, None, rustix::fs::Advice::DontNeed)
            .with_context(|| format!("cannot drop {} from the page cache", file.display()))?;
    } else {
        std::io::copy(&mut std::io::BufReader::new(opened), &mut std::io::sink())
            .with_context(|| format!("cannot read {}", file.display()))?;
    }
    Ok(())
}

/// The allocator `pid` chose (`ringrift_alloc`), from its environment.
fn allocator_of(pid: u32) -> &'static str {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let wanted = format!("{}=system", ringrift_alloc::VARIABLE);
    if environ.split(|b| *b == 0).any(|v| v == wanted.as_bytes()) {
        "system"
    } else {
        "mimalloc"
    }
}

/// Resident set size of `pid`, KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let [rss] = super::stats::proc_status_kib(pid, ["VmRSS:"]);
    anyhow::ensure!(rss > 0, "the agent is gone (no VmRSS in /proc/{pid}/status)");
    Ok(rss)
}

/// User + system CPU time of every thread of `pid`, clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).context("the agent is gone")?;
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("odd /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime); `rest` starts at field 3.
    let utime: u64 = fields.get(11).and_then(|v| v.parse().ok()).context("no utime")?;
    let stime: u64 = fields.get(12).and_then(|v| v.parse().ok()).context("no stime")?;
    Ok(utime + stime)
}

fn threads(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count() as u64)
}

fn clock_ticks() -> anyhow::Result<f64> {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .context("failed to run getconf CLK_TCK")?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("getconf CLK_TCK printed no number")
}

#[allow(clippy::cast_precision_loss)]
async fn bench(args: BenchAgentIdleArgs) -> anyhow::Result<serde_json::Value> {
    let exe = std::env::current_exe().context("cannot find the ringrift executable")?;
    set_cache(&exe, &args.binary_cache)?;
    let fleet = Fleet::start("agent-idle", false).await?;
    let mut extra = vec![];
    if let Some(gpus) = &args.simulate_gpus {
        extra.extend(["--simulate-gpus", gpus.as_str()]);
    }
    let mut agent = fleet.agent("idle", &extra).await?;
    let pid = agent.pid();
    tokio::time::sleep(args.warmup).await;
    let ticks_per_s = clock_ticks()?;
    let start = Instant::now();
    let cpu_start = cpu_ticks(pid)?;
    let mut samples = Vec::new();
    while start.elapsed() < args.duration {
        samples.push(rss_kib(pid)?);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let cpu = (cpu_ticks(pid)? - cpu_start) as f64 / ticks_per_s;
    let seconds = start.elapsed().as_secs_f64();
    let thread_count = threads(pid);
    let [anon, file] = super::stats::proc_status_kib(pid, ["RssAnon:", "RssFile:"]);
    let allocator = allocator_of(pid);
    agent.kill();
    let max = samples.iter().copied().max().unwrap_or(0);
    let last = samples.last().copied().unwrap_or(0);
    let mean = samples.iter().sum::<u64>() as f64 / samples.len().max(1) as f64;
    Ok(json!({
        "bench": "agent-idle",
        "seconds": round3(seconds),
        "gpus": args.simulate_gpus.unwrap_or_else(|| "NVML".into()),
        "rss_mib": {"max": round3(max as f64 / 1024.0), "mean": round3(mean / 1024.0), "end": round3(last as f64 / 1024.0)},
        "cpu_percent_of_one_core": round3(cpu / seconds * 100.0),
        "cpu_seconds": round3(cpu),
        "threads": thread_count,
        "rss_at_end_mib": {"private": round3(anon as f64 / 1024.0), "file_pages": round3(file as f64 / 1024.0)},
        "binary_page_cache": args.binary_cache,
        "allocator": allocator,
        "targets": {"rss_mib": 20, "cpu_percent_of_one_core": 1},
    }))
}

pub(crate) fn run(args: BenchAgentIdleArgs) -> anyhow::Result<ExitCode> {
    super::report(bench(args))
}
