//! Simulated agents, many in one process, for tests and benchmarks. They go through the real
//! API like real agents: each registers its `Agent` with simulated GPUs, renews its heartbeat
//! Lease `agent-<name>`, and runs the `Task`s bound to it, reporting progress and finishing
//! after a set time. A task's template environment steers what happens, so a test can ask
//! for failures:
//!
//! | variable | effect |
//! |---|---|
//! | `SIM_DURATION_MS` | run time of the task (default: the fleet's `--task-duration`) |
//! | `SIM_FAIL_ATTEMPTS` | attempts below this number fail (exit code 1) |
//! | `SIM_FAIL_CLASS` | failure class of those failures, for example `GpuFault` (default `UserError`) |
//! | `SIM_FAIL_AGENTS` | comma-separated agents on which every attempt fails |
//! | `SIM_HANG` | `true`: the task reports no progress and never ends (until cancelled) |
//! | `SIM_WIN_RATE` | gauntlet: the candidate's share of wins (default 0.5); with more than two players (`game.players`) the result is finishing places: first in that share of games, last in the others |
//!
//! Artifact digests are made up (a hash of the task's name, in the `sha256:` format): nothing
//! is transferred. A task that follows another (`spec.startAfter`, a hand-over) starts once that
//! task's run on the same agent has ended, as a real agent waits for its process to exit.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use ringrift_contract::Params;
use ringrift_crds::agent::{Agent, AgentSpec, Capacity, Gpu, GpuHealth};
use ringrift_crds::common::{Artifact, ArtifactKind};
use ringrift_crds::task::{AGENT_LABEL, FailureClass, Progress, Role, StatusUpdate, Task, TaskPhase};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::register::heartbeat;

/// Per running task (by uid): woken when the watch brings a change of it, so a task notices a
/// cancel at once without polling the cache.
type Wakers = Arc<Mutex<HashMap<String, Arc<Notify>>>>;

/// Per task run (by Task uid): becomes true when it stops holding its GPUs, for the task that
/// follows it.
type Ends = Arc<Mutex<HashMap<String, tokio::sync::watch::Receiver<bool>>>>;

/// A task's run, registered in [`Ends`] while it holds its GPUs.
struct Holding {
    ends: Ends,
    key: String,
    ended: tokio::sync::watch::Sender<bool>,
}

impl Holding {
    fn new(ends: &Ends, key: String) -> Self {
        let (ended, rx) = tokio::sync::watch::channel(false);
        if let Ok(mut e) = ends.lock() {
            e.insert(key.clone(), rx);
        }
        Self {
            ends: ends.clone(),
            key,
            ended,
        }
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        self.ended.send_replace(true);
        if let Ok(mut e) = self.ends.lock() {
            e.remove(&self.key);
        }
    }
}

/// The fleet.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Agents are named `<prefix>-<i>`.
    pub prefix: String,
    /// How many agents.
    pub count: usize,
    /// GPUs per agent.
    pub gpus: u32,
    /// GPU product name.
    pub gpu_product: String,
    /// GPU memory, MiB.
    pub gpu_memory_mib: u64,
    /// CPU per agent, thousandths of a core.
    pub cpu_millis: u64,
    /// Memory per agent, MiB.
    pub memory_mib: u64,
    /// Namespace of the heartbeat Leases (the controller's).
    pub namespace: String,
    /// How often heartbeats are renewed.
    pub heartbeat: Duration,
    /// How long a heartbeat stays valid.
    pub lease_duration: Duration,
    /// Default run time of a task.
    pub task_duration: Duration,
    /// Least time between two status writes of one task before its end, as a real agent's
    /// `--progress-interval`: a task reports progress at a quarter, half and three quarters
    /// of its run only when this much time passed since its last write.
    pub progress_interval: Duration,
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// Made-up content digest of a simulated artifact.
fn digest(name: &str) -> String {
    let mut out = String::from("sha256:");
    for i in 0..4u8 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (i, name).hash(&mut h);
        let _ = write!(out, "{:016x}", h.finish());
    }
    out
}

fn agent_object(config: &SimConfig, name: &str, version: &str) -> (Agent, serde_json::Value) {
    let gpus: Vec<Gpu> = (0..config.gpus)
        .map(|i| Gpu {
            index: i,
            uuid: format!("GPU-sim-{name}-{i}"),
            product: config.gpu_product.clone(),
            memory_mib: config.gpu_memory_mib,
            health: GpuHealth::Healthy,
            health_message: None,
            mig_enabled: false,
        })
        .collect();
    let status = json!({"status": {
        "conditions": [Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Registered".into(),
            message: "simulated agent".into(),
            observed_generation: None,
            last_transition_time: now(),
        }],
        "version": version,
        "capacity": Capacity {
            cpu_millis: config.cpu_millis,
            memory_mib: config.memory_mib,
            disk_mib: 100_000,
            gpu_count: config.gpus,
            gpu_detection_message: None,
            gpus,
            simulated: true,
        },
        "registeredAt": now(),
    }});
    (Agent::new(name, AgentSpec::default()), status)
}

/// Registers (or re-registers) one agent.
async fn register(client: &Client, config: &SimConfig, name: &str, version: &str) -> kube::Result<()> {
    let agents: Api<Agent> = Api::all(client.clone());
    let (agent, status) = agent_object(config, name, version);
    match agents.create(&PostParams::default(), &agent).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e),
    }
    agents
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

fn env<'a>(task: &'a Task, key: &str) -> Option<&'a str> {
    task.spec.template.env.get(key).map(String::as_str)
}

/// The task's games (selfplay, gauntlet) or steps (training), as its parameters say.
fn work(task: &Task) -> Option<u64> {
    match Params::from_value(task.spec.role.workload()?, &task.spec.params).ok()? {
        Params::Selfplay(p) => Some(p.games),
        Params::Gauntlet(p) => Some(p.games),
        Params::Training(p) => Some(p.hyperparameters.steps),
    }
}

fn artifact(name: String, kind: ArtifactKind, size_bytes: u64) -> Artifact {
    let digest = digest(&name);
    Artifact {
        name,
        kind,
        digest,
        size_bytes,
        holders: Vec::new(),
    }
}

/// What a task's run ends with.
fn outcome(task: &Task, agent: &str) -> StatusUpdate {
    let attempt = task.spec.attempt;
    let fail_attempts: u32 = env(task, "SIM_FAIL_ATTEMPTS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bad_agent = env(task, "SIM_FAIL_AGENTS").is_some_and(|l| l.split(',').any(|a| a.trim() == agent));
    if attempt < fail_attempts || bad_agent {
        let class = env(task, "SIM_FAIL_CLASS")
            .and_then(|c| serde_json::from_value(json!(c)).ok())
            .unwrap_or(FailureClass::UserError);
        return StatusUpdate {
            phase: Some(TaskPhase::Failed),
            exit_code: Some(1),
            failure_class: Some(class),
            reason: Some("Error".into()),
            message: Some(format!("simulated failure of attempt {attempt} on {agent}")),
            ..StatusUpdate::default()
        };
    }
    let name = task.name_any();
    let done = work(task).unwrap_or(0);
    let (outputs, result) = match task.spec.role {
        // A copy: the inputs, now held here too.
        Role::Copy => (
            task.spec
                .inputs
                .iter()
                .cloned()
                .map(|mut a| {
                    a.holders = vec![agent.to_owned()];
                    a
                })
                .collect(),
            json!({}),
        ),
        Role::Selfplay => (
            vec![artifact(
                format!("{name}.games"),
                ArtifactKind::Games,
                done * 1000,
            )],
            json!({"games": done}),
        ),
        Role::Training => (
            vec![artifact(format!("{name}.model"), ArtifactKind::Model, 1_000_000)],
            json!({"steps": done}),
        ),
        Role::Gauntlet => {
            let rate: f64 = env(task, "SIM_WIN_RATE")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.5);
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let wins = ((done as f64) * rate.clamp(0.0, 1.0)).round() as u64;
            let players = task.spec.params["game"]["players"].as_u64().unwrap_or(2);
            let result = if players > 2 {
                // Games of more seats report finishing places, the candidate's first: first of
                // all in the games it wins, last in the others.
                let places: Vec<Vec<u64>> = (0..done)
                    .map(|g| {
                        if g < wins {
                            (1..=players).collect()
                        } else {
                            std::iter::once(players).chain(1..players).collect()
                        }
                    })
                    .collect();
                json!({"places": places})
            } else {
                json!({"wins": wins, "losses": done - wins, "draws": 0})
            };
            (Vec::new(), result)
        }
    };
    StatusUpdate {
        phase: Some(TaskPhase::Succeeded),
        exit_code: Some(0),
        reason: Some("Completed".into()),
        outputs: Some(outputs),
        result: Some(result),
        progress: Some(Progress {
            done,
            total: done,
            unit: None,
        }),
        progress_text: Some(format!("{done}/{done}")),
        ..StatusUpdate::default()
    }
}

async fn patch_status(
    tasks: &Api<Task>,
    name: &str,
    attempt: u32,
    update: &StatusUpdate,
) -> kube::Result<()> {
    let mut status = serde_json::to_value(update).map_err(kube::Error::SerdeError)?;
    if let Some(s) = status.as_object_mut() {
        s.insert("attempt".into(), json!(attempt));
    }
    tasks
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "status": status })),
        )
        .await
        .map(|_| ())
}

/// Logs a status write that failed: at debug level when the Task is gone (deleted while it
/// ran, as the tasks of a batch restarted on a new best are: nothing to report to), else as a
/// warning.
fn failed_to_report(name: &str, e: &kube::Error, what: &str) {
    if matches!(e, kube::Error::Api(status) if status.code == 404) {
        tracing::debug!(
            task = name,
            "the task was deleted before {what} could be reported"
        );
    } else {
        tracing::warn!(task = name, error = %e, "failed to report {what}");
    }
}

/// Whether the task, as the cache has it now, was cancelled; `Some(true)` when it was marked
/// lost or deleted (stop silently: it is no longer current, as a real agent stops the process
/// of a deleted Task).
fn cancelled(store: &Store<Task>, task: &Task) -> Option<bool> {
    let Some(current) = store.get(&reflector::ObjectRef::from_obj(task)) else {
        return Some(true);
    };
    if current.metadata.uid != task.metadata.uid {
        return Some(true);
    }
    current.spec.cancel.then(|| current.is_lost())
}

/// The final status of a cancelled task.
fn cancelled_status() -> StatusUpdate {
    StatusUpdate {
        phase: Some(TaskPhase::Cancelled),
        reason: Some("Cancelled".into()),
        completion_time: Some(now()),
        ..StatusUpdate::default()
    }
}

/// Waits until the run `task` follows (`spec.startAfter`) has ended, if it runs here; false when
/// the task was cancelled meanwhile (it then records that, unless it was marked lost).
async fn wait_for_predecessor(
    tasks: &Api<Task>,
    store: &Store<Task>,
    task: &Task,
    ends: &Ends,
    wake: &Notify,
) -> bool {
    let Some(mut ended) = task
        .spec
        .start_after
        .as_ref()
        .and_then(|p| ends.lock().ok()?.get(p).cloned())
    else {
        return true;
    };
    loop {
        if *ended.borrow_and_update() {
            return true;
        }
        if let Some(lost) = cancelled(store, task) {
            if !lost {
                let status = StatusUpdate {
                    message: Some("cancelled before it started".into()),
                    ..cancelled_status()
                };
                let _ = patch_status(tasks, &task.name_any(), task.spec.attempt, &status).await;
            }
            return false;
        }
        tokio::select! {
            r = ended.changed() => if r.is_err() { return true },
            () = wake.notified() => {}
        }
    }
}

/// Runs one task to its end.
async fn run_task(
    client: Client,
    store: Store<Task>,
    task: Task,
    (agent, ends): (String, Ends),
    default: Duration,
    wake: Arc<Notify>,
    progress_interval: Duration,
) {
    let ns = task.namespace().unwrap_or_default();
    let name = task.name_any();
    let attempt = task.spec.attempt;
    let tasks: Api<Task> = Api::namespaced(client, &ns);
    if !wait_for_predecessor(&tasks, &store, &task, &ends, &wake).await {
        return;
    }
    let holding = Holding::new(&ends, task.uid().unwrap_or_default());
    let duration = env(&task, "SIM_DURATION_MS")
        .and_then(|v| v.parse().ok())
        .map_or(default, Duration::from_millis);
    let hang = env(&task, "SIM_HANG") == Some("true");
    let total = match task.spec.role {
        Role::Training | Role::Copy => None,
        Role::Selfplay | Role::Gauntlet => work(&task),
    }
    .unwrap_or(100);
    let progress = |done: u64| StatusUpdate {
        last_progress_time: Some(now()),
        progress: Some(Progress {
            done,
            total,
            unit: None,
        }),
        progress_text: Some(format!("{done}/{total}")),
        ..StatusUpdate::default()
    };
    let running = StatusUpdate {
        phase: Some(TaskPhase::Running),
        start_time: Some(now()),
        ..progress(0)
    };
    if let Err(e) = patch_status(&tasks, &name, attempt, &running).await {
        failed_to_report(&name, &e, "Running");
    }
    let mut last_write = tokio::time::Instant::now();
    let steps = 4u32;
    for step in 1..=steps {
        let deadline = tokio::time::Instant::now() + duration / steps;
        loop {
            if let Some(lost) = cancelled(&store, &task) {
                // Stopped: the GPUs are free (a task following it may start) before the
                // end is written, as a real process's exit.
                drop(holding);
                if !lost {
                    let _ = patch_status(&tasks, &name, attempt, &cancelled_status()).await;
                }
                tracing::info!(task = name, agent, lost, "stopped a cancelled task");
                return;
            }
            if hang {
                wake.notified().await;
            } else if tokio::time::Instant::now() >= deadline {
                break;
            } else {
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep_until(deadline) => {}
                }
            }
        }
        if step < steps && last_write.elapsed() >= progress_interval {
            let done = total * u64::from(step) / u64::from(steps);
            let _ = patch_status(&tasks, &name, attempt, &progress(done)).await;
            last_write = tokio::time::Instant::now();
        }
    }
    if cancelled(&store, &task) == Some(true) {
        return;
    }
    // The simulated process has exited: the GPUs are free before the end is written.
    drop(holding);
    let end = StatusUpdate {
        completion_time: Some(now()),
        ..outcome(&task, &agent)
    };
    if let Err(e) = patch_status(&tasks, &name, attempt, &end).await {
        failed_to_report(&name, &e, "the end of a task");
    }
}

/// Runs the fleet until `shutdown` is cancelled. Prints each agent's name when registered.
///
/// # Errors
/// When an agent cannot register.
pub async fn run(
    client: Client,
    config: SimConfig,
    version: &str,
    shutdown: CancellationToken,
) -> kube::Result<()> {
    let names: Vec<String> = (0..config.count)
        .map(|i| format!("{}-{i}", config.prefix))
        .collect();
    let leases: Api<Lease> = Api::namespaced(client.clone(), &config.namespace);
    futures_util::stream::iter(names.clone())
        .map(|n| {
            let (client, config, leases) = (client.clone(), config.clone(), leases.clone());
            async move {
                register(&client, &config, &n, version).await?;
                heartbeat(&leases, &n, config.lease_duration).await.map(|_| ())
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<kube::Result<Vec<()>>>()?;
    println!(
        "ringrift sim-agents: {} agents registered ({}-0..{})",
        names.len(),
        config.prefix,
        names.len()
    );
    let beat = {
        let (names, leases, config) = (names.clone(), leases.clone(), config.clone());
        async move {
            loop {
                tokio::time::sleep(config.heartbeat).await;
                let results: Vec<kube::Result<()>> = futures_util::stream::iter(names.clone())
                    .map(|n| {
                        let leases = leases.clone();
                        async move { heartbeat(&leases, &n, config.lease_duration).await.map(|_| ()) }
                    })
                    .buffer_unordered(32)
                    .collect()
                    .await;
                if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
                    tracing::warn!(error = %e, "failed to renew heartbeats");
                }
            }
        }
    };
    let mine: HashSet<String> = names.into_iter().collect();
    let (store, writer) = reflector::store::<Task>();
    let selector = watcher::Config::default().labels(AGENT_LABEL);
    let started: Arc<Mutex<HashSet<String>>> = Arc::default();
    let wakers: Wakers = Arc::default();
    let ends: Ends = Arc::default();
    let work = reflector::reflector(
        writer,
        watcher(Api::<Task>::all(client.clone()), selector).default_backoff(),
    )
    .touched_objects()
    .for_each(|task| {
        if let Ok(task) = task {
            let agent = task.spec.agent.clone().unwrap_or_default();
            let fresh = task.status.as_ref().is_none_or(|s| s.phase == TaskPhase::Pending);
            let uid = task.metadata.uid.clone().unwrap_or_default();
            // The cache holds this change (or deletion) now: the task's run looks again.
            if let Some(wake) = wakers.lock().ok().and_then(|w| w.get(&uid).cloned()) {
                wake.notify_one();
            }
            let deleted = store.get(&reflector::ObjectRef::from_obj(&task)).is_none();
            if mine.contains(&agent) && fresh && !task.spec.cancel && !deleted {
                let first = started.lock().is_ok_and(|mut s| s.insert(uid.clone()));
                if first {
                    let wake = Arc::new(Notify::new());
                    if let Ok(mut w) = wakers.lock() {
                        w.insert(uid.clone(), wake.clone());
                    }
                    let (client, store, wakers) = (client.clone(), store.clone(), wakers.clone());
                    let ends = ends.clone();
                    let (duration, interval) = (config.task_duration, config.progress_interval);
                    tokio::spawn(async move {
                        run_task(client, store, task, (agent, ends), duration, wake, interval).await;
                        if let Ok(mut w) = wakers.lock() {
                            w.remove(&uid);
                        }
                    });
                }
            }
        }
        std::future::ready(())
    });
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = beat => {}
        () = work => {}
    }
    Ok(())
}
