//! `ringrift bench gossip`: many gossip members (the agent's own gossip, real UDP on loopback)
//! in one process. Times how long a state change takes to reach every member and how long every
//! member takes to see a killed one as dead, idle and with both cores saturated by spinning
//! threads, and counts false deaths (a live member declared dead). Prints JSON; never fails on
//! speed.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use ringrift_agent::gossip::state::AgentState;
use ringrift_agent::gossip::{Gossip, GossipConfig, Timing};
use ringrift_agent::sync::key::ClusterKey;
use ringrift_agent::sync::metrics::SyncMetrics;
use serde_json::json;

use super::stats::{percentile, round3};

/// Options of `ringrift bench gossip`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchGossipArgs {
    /// Members, all in this process.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(3..=1000))]
    pub agents: u64,
    /// State changes timed per run.
    #[arg(long, default_value_t = 5)]
    pub changes: u32,
    /// Members killed (one after the other) per run.
    #[arg(long, default_value_t = 3)]
    pub kills: u32,
    /// A member that does not refute a suspicion within this is declared dead (the agent's
    /// default).
    #[arg(long, default_value = "4s", value_parser = crate::duration::parse)]
    pub suspect_timeout: Duration,
    /// Longest wait for any one event before the run reports it as not reached.
    #[arg(long, default_value = "60s", value_parser = crate::duration::parse)]
    pub patience: Duration,
}

fn key() -> anyhow::Result<ClusterKey> {
    Ok(ClusterKey::new(
        uuid::Uuid::new_v4().simple().to_string().as_bytes(),
    )?)
}

/// Polls `done` every 10 ms; the time it took, or `None` past `patience`.
async fn time_until(patience: Duration, mut done: impl FnMut() -> bool) -> Option<f64> {
    let start = Instant::now();
    loop {
        if done() {
            return Some(start.elapsed().as_secs_f64());
        }
        if start.elapsed() > patience {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn summary(samples: &[f64], wanted: u32) -> serde_json::Value {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    json!({
        "reached": sorted.len(),
        "of": wanted,
        "p50_s": (!sorted.is_empty()).then(|| round3(percentile(&mut sorted.clone(), 50.0))),
        "max_s": sorted.last().map(|m| round3(*m)),
    })
}

async fn run_once(args: &BenchGossipArgs, saturate: bool) -> anyhow::Result<serde_json::Value> {
    let key = key()?;
    let timing = Timing {
        suspect_to_down: args.suspect_timeout,
        cluster_size: u32::try_from(args.agents).unwrap_or(u32::MAX),
        ..Timing::default()
    };
    let spinning = Arc::new(AtomicBool::new(saturate));
    let spinners: Vec<_> = (0..if saturate { 2 } else { 0 })
        .map(|_| {
            let on = spinning.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while on.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
                }
            })
        })
        .collect();
    let mut members: Vec<Option<Gossip>> = Vec::new();
    let started = Instant::now();
    for i in 0..args.agents {
        let seeds = members
            .first()
            .and_then(Option::as_ref)
            .map(|g: &Gossip| vec![g.addr()])
            .unwrap_or_default();
        let config = GossipConfig {
            listen: "127.0.0.1:0".parse()?,
            advertise: None,
            seeds,
            timing,
        };
        let metrics = SyncMetrics::register(&mut Registry::default());
        members.push(Some(
            Gossip::start(&format!("m{i}"), &config, key.clone(), metrics).await?,
        ));
    }
    let n = members.len();
    let live = |members: &[Option<Gossip>]| members.iter().flatten().count();
    let joined = time_until(args.patience, || {
        members.iter().flatten().all(|m| m.members().len() == n)
    })
    .await
    .map(|_| started.elapsed().as_secs_f64());

    let mut changes = Vec::new();
    for c in 0..args.changes {
        let who = (c as usize * 7 + 1) % n;
        let Some(m) = members[who].as_ref() else { continue };
        let name = format!("m{who}");
        let marker = 1000 + c;
        m.set_state(AgentState {
            endpoint: "http://127.0.0.1:1".into(),
            free_gpus: marker,
            ..AgentState::default()
        });
        if let Some(t) = time_until(args.patience, || {
            members
                .iter()
                .flatten()
                .all(|o| o.state_of(&name).is_some_and(|s| s.free_gpus == marker))
        })
        .await
        {
            changes.push(t);
        }
    }

    let mut deaths = Vec::new();
    let mut killed = Vec::new();
    for k in 0..args.kills {
        let who = n - 1 - k as usize;
        let Some(victim) = members[who].take() else {
            continue;
        };
        let name = format!("m{who}");
        victim.kill();
        killed.push(name.clone());
        if let Some(t) = time_until(args.patience, || {
            members
                .iter()
                .flatten()
                .all(|o| o.dead().contains(&name) && !o.members().iter().any(|x| x.name == name))
        })
        .await
        {
            deaths.push(t);
        }
    }
    let false_deaths: usize = members
        .iter()
        .flatten()
        .map(|m| m.dead().iter().filter(|d| !killed.contains(d)).count())
        .sum();
    let remaining = live(&members);
    for m in members.into_iter().flatten() {
        m.kill();
    }
    spinning.store(false, Ordering::Relaxed);
    for s in spinners {
        let _ = s.join();
    }
    Ok(json!({
        "load": if saturate { "both cores saturated by 2 spinning threads" } else { "idle" },
        "all_joined_s": joined.map(round3),
        "state_change_to_all": summary(&changes, args.changes),
        "killed_seen_dead_by_all": summary(&deaths, args.kills),
        "false_deaths": false_deaths,
        "members_left": remaining,
    }))
}

async fn bench(args: BenchGossipArgs) -> anyhow::Result<serde_json::Value> {
    let idle = run_once(&args, false).await?;
    let loaded = run_once(&args, true).await?;
    Ok(json!({
        "bench": "gossip",
        "agents": args.agents,
        "transport": "UDP on loopback, HMAC-SHA256 on every packet",
        "timing": {
            "probe_period_s": Timing::default().probe_period.as_secs_f64(),
            "probe_rtt_s": Timing::default().probe_rtt.as_secs_f64(),
            "suspect_timeout_s": args.suspect_timeout.as_secs_f64(),
            "gossip_interval_s": Timing::default().gossip_interval.as_secs_f64(),
            "fanout": Timing::default().fanout,
        },
        "runs": [idle, loaded],
        "targets": {"state_change_to_all_s": 2, "killed_seen_dead_by_all_s": 10, "false_deaths": 0},
    }))
}

pub(crate) fn run(args: BenchGossipArgs) -> anyhow::Result<ExitCode> {
    super::report(bench(args))
}
