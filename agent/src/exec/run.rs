//! One attempt, from start (or adoption after a restart) to its final status.

use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use kube::Api;
use ringrift_crds::task::{FailureClass, Role, StatusUpdate, Task, TaskPhase};
use tokio::time::Instant;

use super::attempt::{Ended, now, progress_update, write};
use super::classify::{Exit, Outcome, Reason, Stop, classify};
use super::finish::{conclude, report};
use super::logs::LogReader;
use super::{RunHandle, launch, process, shim};
use crate::metrics::TaskLabels;
use crate::node::Node;
use crate::status::WriteError;

/// How an attempt is picked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Start it now.
    New,
    /// Watch a process started by an earlier life of this agent.
    Adopt {
        /// The process group leader.
        pid: u32,
        /// Its start time.
        pid_start: u64,
    },
    /// The process ended while the agent was away: read its exit file and report.
    Collect,
    /// Report it failed with this message.
    Fail(&'static str),
    /// Write this recorded outcome (status fields, JSON).
    Report(String),
}

/// How often a running task is checked.
const TICK: Duration = Duration::from_millis(250);

/// Carries the attempt `handle` of `task` through to its final status.
#[tracing::instrument(name = "task", skip_all, fields(task = %handle.name, attempt = handle.attempt))]
pub async fn execute(node: Arc<Node>, task: Task, handle: Arc<RunHandle>, start: Start) {
    let api: Api<Task> = Api::namespaced(node.client.clone(), &handle.namespace);
    let ended = match start {
        Start::New => match launch_process(&node, &api, &task, &handle).await {
            Launched::Running(child, pid, pid_start) => {
                monitor(&node, &api, &task, &handle, pid, pid_start, Some(child)).await
            }
            Launched::NotStarted => {
                handle.mark_done();
                return;
            }
            Launched::Failed(outcome) => Ended::Outcome(outcome),
            Launched::Copied(outputs, fetched) => Ended::Copied(outputs, fetched),
        },
        Start::Adopt { pid, pid_start } => {
            node.metrics.tasks_adopted.inc();
            node.metrics.tasks_running.inc();
            tracing::info!(task = %handle.name, pid, "adopted a task process that outlived the agent's restart");
            monitor(&node, &api, &task, &handle, pid, pid_start, None).await
        }
        Start::Collect => {
            let mut reader = LogReader::default();
            pump(&node, &handle, &mut reader, true);
            Ended::Exited {
                exit: shim::read(&handle.dir.join("exit.json")).map_or(Exit::Unknown, Into::into),
                stop: None,
                gpu_fault: false,
            }
        }
        Start::Fail(message) => Ended::Outcome(Outcome {
            phase: TaskPhase::Failed,
            failure_class: Some(FailureClass::AgentError),
            reason: Reason::AgentRestarted,
            message: message.into(),
        }),
        Start::Report(recorded) => {
            let recorded: StatusUpdate = serde_json::from_str(&recorded).unwrap_or_default();
            handle.update(|i| {
                i.phase = recorded.phase.unwrap_or_default();
                i.reason.clone_from(&recorded.reason);
                i.message.clone_from(&recorded.message);
            });
            report(&node, &api, &handle, &recorded).await;
            handle.mark_done();
            return;
        }
    };
    conclude(&node, &api, &handle, ended).await;
}

enum Launched {
    Running(tokio::process::Child, u32, u64),
    /// A copy task: its inputs are here, verified (and the bytes pulled); nothing to run.
    Copied(Vec<ringrift_crds::common::Artifact>, u64),
    NotStarted,
    Failed(Outcome),
}

fn agent_failure(reason: Reason, message: String, class: FailureClass) -> Launched {
    Launched::Failed(Outcome {
        phase: TaskPhase::Failed,
        failure_class: Some(class),
        reason,
        message,
    })
}

async fn launch_process(node: &Node, api: &Api<Task>, task: &Task, handle: &RunHandle) -> Launched {
    let dir = &handle.dir;
    match node
        .db
        .begin(
            &handle.uid,
            &handle.namespace,
            &handle.name,
            handle.attempt,
            &dir.display().to_string(),
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(task = %handle.name, "attempt was started before; not starting it twice");
            return Launched::NotStarted;
        }
        Err(e) => {
            tracing::error!(task = %handle.name, error = %e, "cannot record the start; not starting");
            return Launched::NotStarted;
        }
    }
    for sub in ["input", "output", "work"] {
        if let Err(e) = tokio::fs::create_dir_all(dir.join(sub)).await {
            return agent_failure(
                Reason::AgentError,
                format!("failed to create {}: {e}", dir.join(sub).display()),
                FailureClass::AgentError,
            );
        }
    }
    let started = now();
    let fetching = StatusUpdate {
        phase: Some(TaskPhase::Fetching),
        start_time: Some(started.clone()),
        message: Some(format!("fetching inputs on {}", node.name)),
        ..StatusUpdate::default()
    };
    if let Err(WriteError::NotCurrent { why, .. }) = write(node, api, handle, &fetching).await {
        tracing::info!(task = %handle.name, why, "task no longer current before it started");
        let _ = node.db.reported(&handle.uid).await;
        return Launched::NotStarted;
    }
    // A stop (cancel, deadline, superseded) ends the pull; what it fetched so far stays for
    // the next pull of the same artifact.
    let mut stops = handle.stop_requests();
    let fetched = tokio::select! {
        fetched = super::inputs::fetch(node, task) => match fetched {
            Ok(bytes) => bytes,
            Err(e) => return agent_failure(Reason::InputUnavailable, e.to_string(), FailureClass::InputUnavailable),
        },
        why = async { stops.wait_for(Option::is_some).await.ok().and_then(|s| *s) } => {
            tracing::info!(task = %handle.name, ?why, "stopped while fetching its inputs");
            if matches!(why, Some(Stop::Superseded) | None) {
                let _ = node.db.reported(&handle.uid).await;
                return Launched::NotStarted;
            }
            return Launched::Failed(classify(&Exit::Signal(15), why, false, &[]));
        }
    };
    if task.spec.role == Role::Copy {
        let outputs = task
            .spec
            .inputs
            .iter()
            .cloned()
            .map(|mut a| {
                a.holders = vec![node.name.clone()];
                a
            })
            .collect();
        node.metrics.copies_made.inc();
        tracing::info!(task = %handle.name, inputs = task.spec.inputs.len(), "copy made");
        return Launched::Copied(outputs, fetched);
    }
    for input in &task.spec.inputs {
        if let Err(e) = node.content.materialize(input, &dir.join("input")).await {
            return agent_failure(
                Reason::InputUnavailable,
                e.to_string(),
                FailureClass::InputUnavailable,
            );
        }
    }
    let (child, program) = match spawn(node, task, handle) {
        Ok(c) => c,
        Err(failed) => return Launched::Failed(failed),
    };
    let Some(pid) = child.id() else {
        return agent_failure(
            Reason::StartFailed,
            "the process exited at once".into(),
            FailureClass::UserError,
        );
    };
    let pid_start = process::start_time(pid).unwrap_or(0);
    if let Err(e) = node.db.running(&handle.uid, pid, pid_start).await {
        tracing::error!(task = %handle.name, error = %e, "failed to record the task's process");
    }
    node.metrics.tasks_started.inc();
    node.metrics.tasks_running.inc();
    handle.update(|i| {
        i.phase = TaskPhase::Running;
        i.pid = Some(pid);
        i.started_at = Some(started.0.to_string());
    });
    tracing::info!(task = %handle.name, attempt = handle.attempt, pid, %program, "task started");
    let running = StatusUpdate {
        phase: Some(TaskPhase::Running),
        message: Some(format!("running on {} (pid {pid})", node.name)),
        bytes_fetched: Some(fetched),
        ..StatusUpdate::default()
    };
    if let Err(e) = write(node, api, handle, &running).await {
        tracing::info!(task = %handle.name, error = %e, "could not report the start");
    }
    Launched::Running(child, pid, pid_start)
}

/// Starts the task's process group: the shim leading it, output appended to the log file.
fn spawn(node: &Node, task: &Task, handle: &RunHandle) -> Result<(tokio::process::Child, String), Outcome> {
    let dir = &handle.dir;
    let spec = launch::launch(&node.exe, task, dir);
    let log_error = |e: std::io::Error| Outcome {
        phase: TaskPhase::Failed,
        failure_class: Some(FailureClass::AgentError),
        reason: Reason::AgentError,
        message: format!("failed to open the log: {e}"),
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(handle.log_path())
        .map_err(log_error)?;
    let stderr = log.try_clone().map_err(log_error)?;
    let mut command = std::process::Command::new(&node.exe);
    command
        .arg("task-shim")
        .arg("--exit-file")
        .arg(dir.join("exit.json"))
        .arg("--")
        .arg(&spec.program)
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr)
        .process_group(0);
    for key in launch::inherited_to_remove() {
        command.env_remove(key);
    }
    command.envs(spec.env.iter().map(|(k, v)| (k, v)));
    match tokio::process::Command::from(command).spawn() {
        Ok(child) => Ok((child, spec.program)),
        Err(e) => Err(Outcome {
            phase: TaskPhase::Failed,
            failure_class: Some(FailureClass::UserError),
            reason: Reason::StartFailed,
            message: format!("failed to start {}: {e}", spec.program),
        }),
    }
}

async fn wait(child: &mut Option<tokio::process::Child>) -> Option<ExitStatus> {
    match child {
        Some(c) => c.wait().await.ok(),
        None => std::future::pending().await,
    }
}

/// Reads new log lines into the tail and the run's progress. Returns whether progress or
/// metrics changed.
fn pump(node: &Node, handle: &RunHandle, reader: &mut LogReader, flush: bool) -> bool {
    let mut changed = false;
    loop {
        let lines = match reader.read_new(&handle.log_path(), flush) {
            Ok(lines) => lines,
            Err(e) => {
                tracing::warn!(task = %handle.name, error = %e, "failed to read the task log");
                return changed;
            }
        };
        changed |= take(node, handle, lines);
        if reader.caught_up() {
            return changed;
        }
    }
}

/// Feeds log lines to the tail and the run's progress; whether progress or metrics changed.
fn take(node: &Node, handle: &RunHandle, lines: Vec<String>) -> bool {
    let mut changed = false;
    for line in lines {
        match crate::progress::parse(&line) {
            None => {}
            Some(Ok(report)) => {
                handle.update(|i| {
                    if report.progress.is_some() {
                        i.progress = report.progress;
                    }
                    i.metrics.extend(report.metrics);
                    if report.checkpoint.is_some() {
                        i.checkpoint_announced = report.checkpoint;
                    }
                    while i.metrics.len() > crate::progress::MAX_METRICS {
                        i.metrics.pop_last();
                    }
                });
                changed = true;
            }
            Some(Err(why)) => {
                node.metrics.bad_reports.inc();
                handle.update(|i| i.bad_reports += 1);
                tracing::debug!(task = %handle.name, why, "unreadable report line");
            }
        }
        handle.log.push(line);
    }
    changed
}

/// Sums the GPU memory and utilization of the processes of group `pgid`.
fn gpu_usage(node: &Node, handle: &RunHandle, pgid: u32) {
    let inventory = node.inventory.borrow();
    let mut memory = 0;
    let mut util = None::<u32>;
    let mut any = false;
    for gpu in &inventory.gpus {
        for p in &gpu.processes {
            if process::group_of(p.pid) == Some(pgid) {
                any = true;
                memory += p.memory_used_mib;
                if let Some(u) = p.sm_utilization_pct {
                    util = Some(util.unwrap_or(0) + u);
                }
            }
        }
    }
    if any {
        #[allow(clippy::cast_precision_loss)]
        node.metrics
            .task_gpu_memory
            .get_or_create(&TaskLabels {
                namespace: handle.namespace.clone(),
                task: handle.name.clone(),
            })
            .set(memory as f64);
        handle.update(|i| {
            i.gpu_memory_mib = Some(memory);
            i.gpu_utilization_pct = util;
        });
    }
}

async fn monitor(
    node: &Arc<Node>,
    api: &Api<Task>,
    task: &Task,
    handle: &RunHandle,
    pid: u32,
    pid_start: u64,
    mut child: Option<tokio::process::Child>,
) -> Ended {
    let started = task
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map_or_else(jiff::Timestamp::now, |t| t.0);
    let deadline = task.spec.active_deadline_seconds.map(|s| {
        let elapsed = jiff::Timestamp::now().duration_since(started).unsigned_abs();
        Instant::now() + Duration::from_secs(s).saturating_sub(elapsed)
    });
    let mut reader = LogReader::default();
    let mut stops = handle.stop_requests();
    let mut stop: Option<Stop> = None;
    let mut stopper: Option<tokio::task::JoinHandle<()>> = None;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_write = Instant::now();
    let mut dirty = false;
    let mut gpu_fault = false;
    let mut ticks: u64 = 0;
    let grace = node.grace;
    let status = loop {
        tokio::select! {
            status = wait(&mut child) => break status,
            _ = tick.tick() => {
                ticks += 1;
                dirty |= pump(node, handle, &mut reader, false);
                dirty |= super::checkpoint::keep(node, handle).await;
                if child.is_none() && !process::alive(pid, pid_start) {
                    break None;
                }
                if stop.is_none() && deadline.is_some_and(|d| Instant::now() >= d) {
                    tracing::info!(task = %handle.name, "active deadline passed; stopping the task");
                    stop = Some(Stop::Deadline);
                    stopper = Some(tokio::spawn(process::stop_group(pid, grace)));
                }
                if !gpu_fault {
                    let bad = node.inventory.borrow().unhealthy();
                    gpu_fault = handle.gpus.iter().any(|g| bad.contains(g));
                }
                if ticks.is_multiple_of(8) {
                    gpu_usage(node, handle, pid);
                }
                if dirty && last_write.elapsed() >= node.progress_interval {
                    dirty = false;
                    last_write = Instant::now();
                    if let Err(e) = write(node, api, handle, &progress_update(handle)).await {
                        tracing::debug!(task = %handle.name, error = %e, "progress not written");
                    }
                }
            }
            changed = stops.changed(), if stop.is_none() => {
                if changed.is_err() {
                    continue;
                }
                let why = *stops.borrow_and_update();
                if let Some(why) = why {
                    tracing::info!(task = %handle.name, ?why, pid, "stopping the task's process group");
                    stop = Some(why);
                    stopper = Some(tokio::spawn(process::stop_group(pid, grace)));
                }
            }
        }
    };
    match stopper {
        Some(s) => {
            let _ = s.await;
        }
        // Whatever the task left behind in its group goes with it.
        None if process::group_alive(pid) => process::stop_group(pid, Duration::from_secs(2)).await,
        None => {}
    }
    node.metrics.tasks_running.dec();
    pump(node, handle, &mut reader, true);
    // A checkpoint announced last is kept too, whatever the exit.
    super::checkpoint::keep(node, handle).await;
    let exit = shim::read(&handle.dir.join("exit.json")).map_or_else(
        || match status {
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => Exit::Code(c),
                (None, Some(sig)) => Exit::Signal(sig),
                (None, None) => Exit::Unknown,
            },
            None => Exit::Unknown,
        },
        Into::into,
    );
    Ended::Exited {
        exit,
        stop,
        gpu_fault,
    }
}
