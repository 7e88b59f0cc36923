//! `ringrift bench fleet`: the fleet's fair share under load. The real API server and
//! controller with simulated agents (200 of 8 GPUs by default) run 12 TrainingLoops weighted
//! 1 to 3 (continuous pipelines by default) whose tasks last a few seconds, once with the
//! share and once with plain priority placement (`--placement priority`, the baseline), each
//! in a fresh system. Reports how busy the GPUs were (from the Tasks' phases), how much of that
//! work was thrown away, and where their idle time went (the gap between two tasks on a GPU,
//! how often no work waited and how much idle capacity no work could have used), how far each
//! loop's use strayed from its entitlement and which loops starved (from the loops'
//! `status.share`). Prints JSON; never fails on speed.

mod figures;

use std::collections::{BTreeMap, HashMap};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use ringrift_crds::common::GpuFraction;
use ringrift_crds::task::{Task, TaskPhase};
use ringrift_crds::training_loop::TrainingLoop;
use serde_json::json;

use self::figures::{Busy, Snapshot, Standing, Tenancy};
use super::stats::round3;
use super::system::Fleet;

/// Options of `ringrift bench fleet`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct BenchFleetArgs {
    /// Simulated agents.
    #[arg(long, default_value_t = 200)]
    pub agents: usize,
    /// GPUs per agent.
    #[arg(long, default_value_t = 8)]
    pub gpus: u32,
    /// TrainingLoops (weights 1, 2, 3, 1, 2, 3, …).
    #[arg(long, default_value_t = 12)]
    pub loops: usize,
    /// How long each task runs, seconds.
    #[arg(long, default_value_t = 4)]
    pub task_seconds: u64,
    /// Time measured with each placement policy, after the warm-up.
    #[arg(long, default_value = "5m", value_parser = crate::duration::parse)]
    pub duration: Duration,
    /// Time from creating the loops to measuring (the fleet filling up).
    #[arg(long, default_value = "30s", value_parser = crate::duration::parse)]
    pub warmup: Duration,
    /// A loop counts as starved when it waits, short of its share while that share is lent,
    /// longer than this (what taking lent work back may take: a pass, a cancel, a task's end).
    #[arg(long, default_value = "10s", value_parser = crate::duration::parse)]
    pub preemption_latency: Duration,
    /// Measure only the fair share, not the priority baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// The loops' pipeline: `continuous` (selfplay all the time, training every batch of
    /// games, as the seed runs its configurations: the GPUs always have work, so what they
    /// lose is placement's) or `generational` (each generation's selfplay, then training, then
    /// the gauntlet, the next selfplay overlapping it: between generations a loop has no work,
    /// and `idle_for_want_of_work_fraction` says how much of the fleet that leaves idle).
    #[arg(long, value_enum, default_value_t = BenchPipeline::Continuous)]
    pub pipeline: BenchPipeline,
}

/// The loops' pipeline in `ringrift bench fleet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchPipeline {
    /// `pipeline: Generational` with `overlapSelfplay`.
    Generational,
    /// `pipeline: Continuous`, training every batch.
    Continuous,
}

/// Selfplay units per generation of each loop.
const UNITS_PER_GENERATION: u64 = 400;
/// Games per selfplay unit.
const GAMES_PER_UNIT: u64 = 4;

/// Loop `i`: weight 1 + i mod 3, generations that run until stopped (in `pipeline`), selfplay of
/// [`UNITS_PER_GENERATION`] one-GPU units overlapping the gauntlet, training on 8 GPUs, a gauntlet
/// of 8 one-GPU units its candidate wins; every task runs `task_seconds`.
fn training_loop(i: usize, task_seconds: u64, pipeline: BenchPipeline) -> anyhow::Result<TrainingLoop> {
    let weight = 1 + i % 3;
    let run = json!({"SIM_DURATION_MS": (task_seconds * 1000).to_string()});
    let gpu = |gpus: u32| json!({"gpus": gpus, "cpuMillis": 1000, "memoryMiB": 1024});
    let games = UNITS_PER_GENERATION * GAMES_PER_UNIT;
    let value = json!({
        "apiVersion": "ringrift.ai/v1alpha1", "kind": "TrainingLoop",
        "metadata": {"name": loop_name(i), "namespace": "default"},
        "spec": {
            "game": {"board": format!("bench{i}"), "players": 2},
            "overlapSelfplay": true,
            "pipeline": match pipeline {
                BenchPipeline::Generational => "Generational",
                BenchPipeline::Continuous => "Continuous",
            },
            "share": {"weight": weight},
            "selfplay": {"games": games, "gamesPerTask": GAMES_PER_UNIT, "simulations": 1,
                         "replicas": 1, "resources": gpu(1), "template": {"env": run}},
            "training": {"window": {"games": games}, "hyperparameters": {"steps": 100},
                         "replicas": 1, "resources": gpu(8), "template": {"env": run}},
            "gauntlet": {"opponents": [{"name": "random", "baseline": "random"}],
                         "gamesPerOpponent": 8, "gamesPerTask": 2, "simulations": 1,
                         "promotion": {"winRate": {"minWinRate": 0.5, "minGames": 8}},
                         "resources": gpu(1),
                         "template": {"env": {"SIM_DURATION_MS": (task_seconds * 1000).to_string(),
                                              "SIM_WIN_RATE": "0.75"}}}
        }
    });
    serde_json::from_value(value).context("the bench's TrainingLoop does not parse")
}

fn loop_name(i: usize) -> String {
    format!("config-{i:02}")
}

/// What the Task watch saw: when each task was first seen, seen running and ended, with its
/// GPUs, by uid (a task's name comes back when a continuous loop's restarted batch is made
/// again, and the new task's time is its own).
#[derive(Default)]
struct Tasks {
    /// When each was first seen (created, with its agent and GPUs set).
    seen: HashMap<String, f64>,
    started: HashMap<String, (f64, f64)>,
    ended: HashMap<String, f64>,
    /// The whole GPUs each holds, as `agent/UUID`.
    devices: HashMap<String, Vec<String>>,
    /// Those that ended other than succeeded (preempted, deleted, failed): their work is lost.
    lost: std::collections::HashSet<String>,
    resource_version: String,
}

impl Tasks {
    fn saw(&mut self, task: &Task, at: f64, deleted: bool) {
        let Some(name) = task.metadata.uid.clone() else {
            return;
        };
        if let Some(rv) = &task.metadata.resource_version {
            self.resource_version.clone_from(rv);
        }
        if !self.seen.contains_key(&name) {
            self.seen.insert(name.clone(), at);
            if let (Some(agent), None) = (&task.spec.agent, task.spec.resources.gpu_fraction) {
                let devices = task.spec.gpus.iter().map(|g| format!("{agent}/{g}")).collect();
                self.devices.insert(name.clone(), devices);
            }
        }
        let phase = task.status.as_ref().map(|s| s.phase);
        if phase == Some(TaskPhase::Running) && !self.started.contains_key(&name) {
            self.started.insert(name.clone(), (at, gpus_of(task)));
        }
        let over = deleted
            || matches!(
                phase,
                Some(TaskPhase::Succeeded | TaskPhase::Failed | TaskPhase::Cancelled | TaskPhase::Lost)
            );
        if over && self.started.contains_key(&name) && !self.ended.contains_key(&name) {
            if deleted || phase != Some(TaskPhase::Succeeded) {
                self.lost.insert(name.clone());
            }
            self.ended.insert(name, at);
        }
    }

    /// Each started task's time on each whole GPU it held, and on its fraction of one.
    fn busy(&self, end: f64) -> Vec<Busy> {
        let mut busy = Vec::new();
        for (name, (start, gpus)) in self.started.iter().filter(|(_, (_, gpus))| *gpus > 0.0) {
            let end = self.ended.get(name).copied().unwrap_or(end);
            let lost = self.lost.contains(name);
            match self.devices.get(name) {
                Some(devices) => busy.extend(devices.iter().map(|d| Busy {
                    start: *start,
                    end,
                    gpus: 1.0,
                    device: Some(d.clone()),
                    lost,
                })),
                None => busy.push(Busy {
                    start: *start,
                    end,
                    gpus: *gpus,
                    device: None,
                    lost,
                }),
            }
        }
        busy
    }

    /// Each started task's time on each whole GPU it held.
    fn tenancies(&self) -> Vec<Tenancy> {
        let mut held = Vec::new();
        for (name, (start, _)) in &self.started {
            let created = self.seen.get(name).copied().unwrap_or(*start);
            for gpu in self.devices.get(name).into_iter().flatten() {
                held.push(Tenancy {
                    gpu: gpu.clone(),
                    created,
                    start: *start,
                    end: self.ended.get(name).copied(),
                });
            }
        }
        held
    }
}

fn gpus_of(task: &Task) -> f64 {
    match task.spec.resources.gpu_fraction {
        Some(f) => f64::from(f.thousandths()) / f64::from(GpuFraction::WHOLE),
        #[allow(clippy::cast_precision_loss)]
        None => task.spec.gpus.len() as f64,
    }
}

/// Watches every Task into `seen` (seconds from `began`) until the process ends, watching
/// again from the last version seen when a watch closes.
async fn watch_tasks(client: kube::Client, seen: Arc<Mutex<Tasks>>, began: Instant) {
    let api: Api<Task> = Api::all(client);
    loop {
        let rv = seen
            .lock()
            .map(|s| s.resource_version.clone())
            .unwrap_or_default();
        let rv = if rv.is_empty() { "0".to_owned() } else { rv };
        let Ok(stream) = api.watch(&WatchParams::default().timeout(290), &rv).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut stream = stream.boxed();
        while let Some(event) = stream.next().await {
            let at = began.elapsed().as_secs_f64();
            let Ok(mut s) = seen.lock() else { return };
            match event {
                Ok(WatchEvent::Added(t) | WatchEvent::Modified(t)) => s.saw(&t, at, false),
                Ok(WatchEvent::Deleted(t)) => s.saw(&t, at, true),
                Ok(WatchEvent::Bookmark(b)) => s.resource_version = b.metadata.resource_version,
                // Expired: go on from now (tasks that ended meanwhile count as running to the
                // end; the bench's watch keeps up in practice).
                Ok(WatchEvent::Error(_)) => s.resource_version.clear(),
                Err(_) => break,
            }
        }
    }
}

/// Every loop's share as its status says now.
async fn snapshot(loops: &Api<TrainingLoop>, at: f64) -> anyhow::Result<(Snapshot, BTreeMap<String, u32>)> {
    let mut snap = Snapshot {
        at,
        loops: BTreeMap::new(),
    };
    let mut generations = BTreeMap::new();
    for l in loops.list(&ListParams::default()).await?.items {
        let name = l.metadata.name.clone().unwrap_or_default();
        let status = l.status.unwrap_or_default();
        generations.insert(name.clone(), status.generation);
        let share = status.share.unwrap_or_default();
        snap.loops.insert(
            name,
            Standing {
                entitled: share.entitled_gpus,
                used: share.used_gpus,
                waiting: share.waiting,
            },
        );
    }
    Ok((snap, generations))
}

/// One run with `policy`: a fresh system, the loops, the warm-up, then `duration` measured.
async fn run_with(args: BenchFleetArgs, policy: &str) -> anyhow::Result<serde_json::Value> {
    let fleet = Fleet::start(&format!("fleet-{policy}"), false).await?;
    let _controller = fleet.controller("bench", &["--placement", policy]).await?;
    let _agents = fleet.agents(args.agents, args.gpus).await?;
    let began = Instant::now();
    let seen = Arc::new(Mutex::new(Tasks::default()));
    let watcher = tokio::spawn(watch_tasks(fleet.client.clone(), seen.clone(), began));
    let loops: Api<TrainingLoop> = Api::namespaced(fleet.client.clone(), "default");
    let mut weights = BTreeMap::new();
    for i in 0..args.loops {
        let l = training_loop(i, args.task_seconds, args.pipeline)?;
        weights.insert(loop_name(i), l.spec.share.weight);
        loops
            .create(&PostParams::default(), &l)
            .await
            .with_context(|| format!("failed to create loop {}", loop_name(i)))?;
    }
    eprintln!(
        "bench fleet ({policy}): {} loops created; warming up for {:?}",
        args.loops, args.warmup
    );
    tokio::time::sleep(args.warmup).await;
    let from = began.elapsed().as_secs_f64();
    let (_, generations_before) = snapshot(&loops, from).await?;
    let mut snapshots = Vec::new();
    let mut next = tokio::time::Instant::now();
    let end = next + args.duration;
    let mut generations_after = generations_before.clone();
    while tokio::time::Instant::now() < end {
        let (s, g) = snapshot(&loops, began.elapsed().as_secs_f64()).await?;
        snapshots.push(s);
        generations_after = g;
        next += Duration::from_secs(1);
        tokio::time::sleep_until(next).await;
    }
    let to = began.elapsed().as_secs_f64();
    watcher.abort();
    let (busy, tasks_run, turnover) = {
        let s = seen
            .lock()
            .map_err(|_| anyhow::anyhow!("the task watch panicked"))?;
        (
            s.busy(to),
            s.started.len(),
            figures::turnover(&s.tenancies(), (from, to), &snapshots),
        )
    };
    #[allow(clippy::cast_precision_loss)]
    let capacity = (args.agents as f64) * f64::from(args.gpus);
    let errors = figures::share_errors(&snapshots);
    let starvation = figures::longest_starvation(&snapshots);
    let latency = args.preemption_latency.as_secs_f64();
    let mean = |name: &str, f: fn(&Standing) -> f64| {
        let v: Vec<f64> = snapshots
            .iter()
            .filter_map(|s| s.loops.get(name).map(f))
            .collect();
        #[allow(clippy::cast_precision_loss)]
        let n = v.len().max(1) as f64;
        round3(v.iter().sum::<f64>() / n)
    };
    let per_loop: Vec<serde_json::Value> = weights
        .iter()
        .map(|(name, weight)| {
            json!({
                "loop": name,
                "weight": weight,
                "mean_entitled_gpus": mean(name, |s| s.entitled),
                "mean_used_gpus": mean(name, |s| s.used),
                "mean_waiting_units": mean(name, |s| f64::from(s.waiting)),
                "share_error": round3(errors.get(name).copied().unwrap_or(0.0)),
                "longest_starvation_s": round3(starvation.get(name).copied().unwrap_or(0.0)),
                "generations": generations_after.get(name).copied().unwrap_or(0)
                    .saturating_sub(generations_before.get(name).copied().unwrap_or(0)),
            })
        })
        .collect();
    let share_error_max = errors.values().copied().fold(0.0, f64::max);
    let starved = starvation.values().filter(|s| **s > latency).count();
    Ok(json!({
        "placement": policy,
        "gpu_busy_fraction": round3(figures::busy_fraction(&busy, (from, to), capacity)),
        "gpu_lost_fraction": round3(figures::lost_fraction(&busy, (from, to), capacity)),
        "share_error_max": round3(share_error_max),
        "starved_loops": starved,
        "measured_s": round3(to - from),
        "tasks_started": tasks_run,
        "gpu_turnover": {
            "changes": turnover.changes,
            "idle_mean_s": round3(turnover.idle_mean_s),
            "until_created_mean_s": round3(turnover.until_created_mean_s),
            "until_running_mean_s": round3(turnover.until_running_mean_s),
            "while_waiting": turnover.while_waiting,
            "while_waiting_idle_mean_s": round3(turnover.while_waiting_idle_mean_s),
        },
        "samples": snapshots.len(),
        "nothing_waiting_fraction": round3(figures::nothing_waiting(&snapshots)),
        "idle_for_want_of_work_fraction": round3(figures::want_of_work(&snapshots, capacity)),
        "loops": per_loop,
    }))
}

/// Runs the benchmark; its JSON report.
///
/// # Errors
/// When a system cannot be started or the loops cannot be created.
pub(crate) async fn bench(args: BenchFleetArgs) -> anyhow::Result<serde_json::Value> {
    let share = run_with(args, "share").await?;
    let baseline = if args.no_baseline {
        serde_json::Value::Null
    } else {
        run_with(args, "priority").await?
    };
    let mut report = json!({
        "benchmark": "fleet",
        "agents": args.agents,
        "gpus_per_agent": args.gpus,
        "loops": args.loops,
        "task_seconds": args.task_seconds,
        "pipeline": format!("{:?}", args.pipeline).to_lowercase(),
        "warmup_s": args.warmup.as_secs_f64(),
        "preemption_latency_s": args.preemption_latency.as_secs_f64(),
        "baseline": baseline,
        "targets": {"gpu_busy_fraction": ">= 0.95", "share_error_max": "<= 0.10", "starved_loops": "0"},
    });
    for key in [
        "gpu_busy_fraction",
        "gpu_lost_fraction",
        "share_error_max",
        "starved_loops",
        "measured_s",
        "tasks_started",
        "gpu_turnover",
        "nothing_waiting_fraction",
        "idle_for_want_of_work_fraction",
        "samples",
    ] {
        report[key] = share[key].clone();
    }
    report["per_loop"] = share["loops"].clone();
    Ok(report)
}

pub(crate) fn run(args: BenchFleetArgs) -> anyhow::Result<ExitCode> {
    super::report(bench(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(uid: &str, phase: Option<TaskPhase>) -> Task {
        serde_json::from_value(json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "Task",
            "metadata": {"name": "l-s0002-games-0001-0", "namespace": "default", "uid": uid},
            "spec": {"job": {"kind": "SelfplayJob", "name": "l-s0002"}, "workUnit": "games-0001", "attempt": 0,
                     "role": "selfplay", "agent": "sim-1", "gpus": ["GPU-1"],
                     "resources": {"gpus": 1}},
            "status": phase.map(|p| json!({"phase": p}))
        }))
        .expect("a Task")
    }

    /// A batch deleted and made again has tasks of the same names: each is its own.
    #[test]
    fn tasks_are_told_apart_by_uid_not_by_name() {
        let mut seen = Tasks::default();
        seen.saw(&task("a", None), 0.0, false);
        seen.saw(&task("a", Some(TaskPhase::Running)), 1.0, false);
        seen.saw(&task("a", Some(TaskPhase::Running)), 2.0, true);
        seen.saw(&task("b", None), 2.5, false);
        seen.saw(&task("b", Some(TaskPhase::Running)), 3.0, false);
        seen.saw(&task("b", Some(TaskPhase::Succeeded)), 7.0, false);
        // A task deleted after it succeeded is not lost.
        seen.saw(&task("b", Some(TaskPhase::Succeeded)), 8.0, true);
        let mut busy: Vec<(f64, f64, bool)> =
            seen.busy(10.0).iter().map(|b| (b.start, b.end, b.lost)).collect();
        busy.sort_by(|x, y| x.0.total_cmp(&y.0));
        assert_eq!(
            busy,
            [(1.0, 2.0, true), (3.0, 7.0, false)],
            "the one deleted running is lost"
        );
        assert_eq!(seen.tenancies().len(), 2);
    }
}
