//! `ringrift bench dispatch`: how fast the controller turns jobs into bound tasks, with the API
//! server, the controller and many simulated agents as separate processes on this machine.
//! Prints JSON; never fails on speed.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use kube::api::{Api, DeleteParams, PostParams, WatchEvent, WatchParams};
use ringrift_crds::common::{GameSpec, RunPolicy, TaskResources, WorkloadTemplate};
use ringrift_crds::selfplay::{DatasetOutput, SelfplayJob, SelfplayJobSpec, SelfplaySettings};
use ringrift_crds::task::{Task, TaskPhase};
use serde_json::json;

use super::stats::{per_second, percentile, round3};
use super::system::Fleet;

/// Options of `ringrift bench dispatch`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct BenchDispatchArgs {
    /// Simulated agents.
    #[arg(long, default_value_t = 200)]
    pub agents: usize,
    /// GPUs per agent.
    #[arg(long, default_value_t = 8)]
    pub gpus: u32,
    /// Tasks in the throughput run (CPU-only tasks, so all fit at once).
    #[arg(long, default_value_t = 5000)]
    pub tasks: u64,
    /// Tasks of the one-GPU job whose created-to-bound latency is measured.
    #[arg(long, default_value_t = 1000)]
    pub latency_tasks: u64,
    /// Run the API server and every client over plain HTTP (no TLS, no authentication): the
    /// baseline that shows what TLS costs.
    #[arg(long)]
    pub insecure_plain_http: bool,
}

/// When each task was first seen (bound) and seen running.
#[derive(Default)]
struct Seen {
    bound: HashMap<String, Instant>,
    running: HashMap<String, Instant>,
}

fn job(name: &str, tasks: u64, gpus: u32) -> SelfplayJob {
    let mut job = SelfplayJob::new(
        name,
        SelfplayJobSpec {
            game: GameSpec {
                board: "bench".into(),
                players: 2,
                options: std::collections::BTreeMap::new(),
            },
            model: None,
            settings: SelfplaySettings {
                games: tasks,
                games_per_task: 1,
                parallelism: None,
                simulations: 1,
                template: WorkloadTemplate {
                    // Tasks run long: the benchmark measures placement, not completion.
                    env: [("SIM_DURATION_MS".to_owned(), "600000".to_owned())].into(),
                    ..WorkloadTemplate::default()
                },
                resources: TaskResources {
                    gpus,
                    cpu_millis: 1000,
                    memory_mib: 512,
                    ..TaskResources::default()
                },
                run_policy: RunPolicy::default(),
                replicas: None,
            },
            output: DatasetOutput {
                dataset: format!("{name}-games"),
            },
            share: None,
        },
    );
    job.metadata.namespace = Some("default".into());
    job
}

/// Creates a job and waits until its `tasks` tasks are bound and running (or 300 s pass).
async fn measure(
    fleet: &Fleet,
    seen: &Arc<Mutex<Seen>>,
    job: &SelfplayJob,
    tasks: u64,
) -> anyhow::Result<serde_json::Value> {
    let name = job.metadata.name.clone().unwrap_or_default();
    let prefix = format!("{name}-");
    let jobs: Api<SelfplayJob> = Api::namespaced(fleet.client.clone(), "default");
    let created = Instant::now();
    jobs.create(&PostParams::default(), job)
        .await
        .context("failed to create the job")?;
    let deadline = created + Duration::from_secs(300);
    let wanted = usize::try_from(tasks).unwrap_or(usize::MAX);
    let (mut bound, mut running) = loop {
        let (bound, running) = {
            let s = seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let pick = |m: &HashMap<String, Instant>| -> Vec<f64> {
                m.iter()
                    .filter(|(k, _)| k.starts_with(&prefix))
                    .map(|(_, t)| t.saturating_duration_since(created).as_secs_f64())
                    .collect()
            };
            (pick(&s.bound), pick(&s.running))
        };
        if (bound.len() >= wanted && running.len() >= wanted) || Instant::now() >= deadline {
            break (bound, running);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let last_bound = bound.iter().copied().fold(0.0, f64::max);
    let first_bound = bound.iter().copied().reduce(f64::min).unwrap_or(0.0);
    let result = json!({
        "tasks": tasks,
        "bound": bound.len(),
        "running": running.len(),
        "placements_per_second": per_second(bound.len(), last_bound),
        "created_to_bound_s": {
            "min": round3(first_bound),
            "p50": round3(percentile(&mut bound, 50.0)),
            "p99": round3(percentile(&mut bound, 99.0)),
            "max": round3(last_bound),
        },
        "created_to_running_s": {
            "p50": round3(percentile(&mut running, 50.0)),
            "p99": round3(percentile(&mut running, 99.0)),
        },
    });
    jobs.delete(&name, &DeleteParams::background())
        .await
        .context("failed to delete the job")?;
    Ok(result)
}

/// Runs the benchmark; its JSON report.
///
/// # Errors
/// When the fleet cannot be started or a job does not get going.
pub(crate) async fn bench(args: BenchDispatchArgs) -> anyhow::Result<serde_json::Value> {
    let BenchDispatchArgs {
        agents,
        gpus,
        tasks,
        latency_tasks,
        insecure_plain_http,
    } = args;
    let fleet = Fleet::start("dispatch", insecure_plain_http).await?;
    let _controller = fleet.controller("bench", &[]).await?;
    let _agents = fleet.agents(agents, gpus).await?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let api: Api<Task> = Api::all(fleet.client.clone());
    let mut stream = api.watch(&WatchParams::default(), "0").await?.boxed();
    let recorder = seen.clone();
    tokio::spawn(async move {
        while let Some(Ok(event)) = stream.next().await {
            let (WatchEvent::Added(t) | WatchEvent::Modified(t)) = event else {
                continue;
            };
            let now = Instant::now();
            let Some(name) = t.metadata.name.clone() else {
                continue;
            };
            let Ok(mut s) = recorder.lock() else { return };
            s.bound.entry(name.clone()).or_insert(now);
            if t.status.as_ref().is_some_and(|st| st.phase == TaskPhase::Running) {
                s.running.entry(name).or_insert(now);
            }
        }
    });
    // Wait for the controller to lead and to see the agents: a one-task warm-up job.
    let warmup = measure(&fleet, &seen, &job("warmup", 1, 0), 1).await?;
    let latency = measure(&fleet, &seen, &job("latency", latency_tasks, 1), latency_tasks).await?;
    let throughput = measure(&fleet, &seen, &job("throughput", tasks, 0), tasks).await?;
    Ok(json!({
        "benchmark": "dispatch",
        "transport": if insecure_plain_http { "http" } else { "https" },
        "agents": agents,
        "gpus_per_agent": gpus,
        "warmup": warmup,
        "latency_job": latency,
        "throughput_job": throughput,
        "targets": {"placements_per_second": ">= 500", "latency_job_created_to_bound_p99_s": "<= 1"},
    }))
}

pub(crate) fn run(args: BenchDispatchArgs) -> anyhow::Result<ExitCode> {
    super::report(bench(args))
}
