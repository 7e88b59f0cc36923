//! Watches the Tasks bound to this agent and decides, on every change and every second, what
//! to start and what to stop; on startup, recovers what an earlier life of the agent started.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, ResourceExt as _};
use ringrift_crds::task::{AGENT_LABEL, StatusUpdate, Task, TaskPhase};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::RunHandle;
use super::classify::Stop;
use super::run::{Start, execute};
use crate::fence::{self, Action};
use crate::node::Node;
use crate::recover::{self, Process, Recovery, Wanted};
use crate::store::LocalState;

/// How often recorded outcomes that could not be written are tried again.
const RETRY_REPORTS: Duration = Duration::from_secs(10);

type Guarded = Store<DeserializeGuard<Task>>;

/// The valid Tasks in the cache; malformed ones are logged once each.
fn tasks(store: &Guarded, reported: &mut HashSet<String>) -> Vec<Arc<Task>> {
    let mut out = Vec::new();
    for obj in store.state() {
        match &obj.0 {
            Ok(t) => out.push(Arc::new(t.clone())),
            Err(e) => {
                let key = format!(
                    "{}/{}",
                    e.metadata.namespace.as_deref().unwrap_or_default(),
                    e.metadata.name.as_deref().unwrap_or_default()
                );
                if reported.insert(key.clone()) {
                    tracing::warn!(task = key, error = %e.error, "ignoring a malformed Task");
                }
            }
        }
    }
    out
}

fn start_run(node: &Arc<Node>, task: &Task, start: Start) {
    let uid = task.uid().unwrap_or_default();
    let namespace = task.namespace().unwrap_or_default();
    let name = task.name_any();
    let dir = node.attempt_dir(&namespace, &name, &uid);
    let handle = Arc::new(
        RunHandle::new(
            &uid,
            &namespace,
            &name,
            task.spec.attempt,
            task.spec.role,
            task.spec.gpus.clone(),
            dir,
        )
        .with_replicas(task.spec.replicas.unwrap_or(1)),
    );
    if let Start::Adopt { pid, .. } = start {
        // Shown as adopted from the moment it is listed: a reader never sees an
        // adopted process as a Pending task that is about to start again.
        handle.update(|i| {
            i.phase = TaskPhase::Running;
            i.pid = Some(pid);
            i.adopted = true;
        });
    }
    node.runs.insert(handle.clone());
    tokio::spawn(execute(node.clone(), task.clone(), handle, start));
}

/// Recovers what the database says was started, against the Tasks as they are now.
async fn recover(
    node: &Arc<Node>,
    by_uid: &HashMap<String, Arc<Task>>,
    newest: &HashMap<(String, String), u32>,
) {
    let rows = match node.db.unfinished().await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(error = %e, "failed to read the local state; nothing recovered");
            return;
        }
    };
    for row in rows {
        let task = by_uid.get(&row.uid);
        let wanted = match task {
            Some(t)
                if fence::writable(t, &row.uid).is_ok()
                    && t.spec.attempt >= newest.get(&unit(t)).copied().unwrap_or(0) =>
            {
                Wanted::Yes
            }
            _ => Wanted::No,
        };
        let process = match (row.pid, row.pid_start) {
            (Some(pid), Some(start)) if super::process::alive(pid, start) => Process::Alive,
            _ => Process::Gone,
        };
        let exit_recorded = std::path::Path::new(&row.dir).join("exit.json").exists();
        let decision = recover::decide(row.state, process, exit_recorded, wanted);
        tracing::info!(task = %row.name, attempt = row.attempt, state = row.state.as_str(), ?decision, "recovering");
        let start = match decision {
            Recovery::Adopt => Start::Adopt {
                pid: row.pid.unwrap_or_default(),
                pid_start: row.pid_start.unwrap_or_default(),
            },
            Recovery::Collect => Start::Collect,
            Recovery::Fail(message) => Start::Fail(message),
            Recovery::Report => Start::Report(row.outcome.clone().unwrap_or_default()),
            Recovery::Kill => {
                if let Some(pid) = row.pid {
                    super::process::stop_group(pid, node.grace).await;
                }
                let _ = node.db.reported(&row.uid).await;
                continue;
            }
            Recovery::Forget => {
                let _ = node.db.reported(&row.uid).await;
                continue;
            }
        };
        if let Some(task) = task {
            start_run(node, task, start);
        }
    }
}

fn unit(task: &Task) -> (String, String) {
    (
        format!(
            "{}/{:?}/{}",
            task.namespace().unwrap_or_default(),
            task.spec.job.kind,
            task.spec.job.name
        ),
        task.spec.work_unit.clone(),
    )
}

/// Tries again to write outcomes recorded while the API was unreachable.
async fn retry_reports(node: &Arc<Node>, by_uid: &HashMap<String, Arc<Task>>) {
    let Ok(rows) = node.db.unfinished().await else {
        return;
    };
    for row in rows.into_iter().filter(|r| r.state == LocalState::Finished) {
        if node.runs.get(&row.uid).is_some_and(|r| !r.is_done()) {
            continue;
        }
        match by_uid.get(&row.uid) {
            Some(task) => start_run(node, task, Start::Report(row.outcome.unwrap_or_default())),
            None => {
                let _ = node.db.reported(&row.uid).await;
            }
        }
    }
}

async fn mark_cancelled(node: Arc<Node>, task: Arc<Task>) {
    let api: Api<Task> = Api::namespaced(node.client.clone(), &task.namespace().unwrap_or_default());
    let uid = task.uid().unwrap_or_default();
    let update = StatusUpdate {
        phase: Some(TaskPhase::Cancelled),
        reason: Some("Cancelled".into()),
        message: Some("cancelled before it started".into()),
        completion_time: Some(Time(jiff::Timestamp::now())),
        ..StatusUpdate::default()
    };
    match crate::status::write(&api, &task.name_any(), &uid, task.spec.attempt, &update).await {
        Ok(_) => node.metrics.status_write("ok"),
        Err(e) => {
            node.metrics.status_write(e.category());
            tracing::debug!(error = %e, "cancel not recorded");
        }
    }
}

/// Runs until `shutdown` is cancelled. With `drain`, running tasks are cancelled (and awaited)
/// before returning; otherwise they keep running and a restarted agent adopts them.
pub async fn run(node: Arc<Node>, shutdown: CancellationToken, drain: bool) {
    let api: Api<DeserializeGuard<Task>> = Api::all(node.client.clone());
    let config = watcher::Config::default().labels(&format!("{AGENT_LABEL}={}", node.name));
    let (store, writer) = reflector::store();
    let notify = Arc::new(Notify::new());
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
    let wake = notify.clone();
    let watch_task = tokio::spawn(async move {
        stream
            .for_each(|event| {
                if let Err(e) = event {
                    tracing::warn!(error = %e, "Task watch failed; retrying");
                }
                wake.notify_one();
                std::future::ready(())
            })
            .await;
    });
    tokio::select! {
        r = store.wait_until_ready() => if r.is_err() { return },
        () = shutdown.cancelled() => { watch_task.abort(); return }
    }
    let mut malformed = HashSet::new();
    let mut cancelled_marked: HashSet<String> = HashSet::new();
    // Tasks waiting for a stopping task's GPUs (logged once each).
    let mut waiting: HashSet<String> = HashSet::new();
    {
        let all = tasks(&store, &mut malformed);
        let (by_uid, newest) = index(&all);
        recover(&node, &by_uid, &newest).await;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_retry = tokio::time::Instant::now();
    loop {
        tokio::select! {
            () = notify.notified() => {}
            () = node.runs.an_exit() => {}
            _ = tick.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let all = tasks(&store, &mut malformed);
        let (by_uid, newest) = index(&all);
        sync(
            &node,
            &all,
            &by_uid,
            &newest,
            (&mut cancelled_marked, &mut waiting),
        )
        .await;
        cancelled_marked.retain(|u| by_uid.contains_key(u));
        waiting.retain(|u| by_uid.contains_key(u) && node.runs.get(u).is_none());
        if last_retry.elapsed() >= RETRY_REPORTS {
            last_retry = tokio::time::Instant::now();
            retry_reports(&node, &by_uid).await;
        }
    }
    watch_task.abort();
    finish(&node, drain).await;
}

/// One pass over the Tasks: start, stop, or record cancels.
async fn sync(
    node: &Arc<Node>,
    all: &[Arc<Task>],
    by_uid: &HashMap<String, Arc<Task>>,
    newest: &HashMap<(String, String), u32>,
    (cancelled_marked, waiting): (&mut HashSet<String>, &mut HashSet<String>),
) {
    node.metrics.supervisor_passes.inc();
    let mut starts = Vec::new();
    for task in all {
        let uid = task.uid().unwrap_or_default();
        let run = node.runs.get(&uid).filter(|r| !r.is_done());
        let newest_attempt = newest.get(&unit(task)).copied().unwrap_or(0);
        let mut decision = fence::action(task, run.is_some(), false, newest_attempt);
        if decision == Action::Start
            && (node.runs.get(&uid).is_some() || node.db.seen(&uid).await.unwrap_or(true))
        {
            decision = Action::Leave;
        }
        match decision {
            Action::Start => starts.push(task),
            Action::Stop(why) => {
                if let Some(run) = run
                    && run.request_stop(why)
                {
                    tracing::info!(task = %run.name, ?why, "stopping");
                }
            }
            Action::MarkCancelled => {
                if cancelled_marked.insert(uid) {
                    tokio::spawn(mark_cancelled(node.clone(), task.clone()));
                }
            }
            Action::Leave => {}
        }
    }
    for run in node.runs.active() {
        if !by_uid.contains_key(&run.uid) && run.request_stop(Stop::Superseded) {
            tracing::info!(task = %run.name, "Task deleted; stopping its process");
        }
    }
    // Stops first, then starts: a task bound to the GPUs of one being stopped (a preemption:
    // the controller binds the new task as it cancels its victims) waits for that process to
    // exit, which may take the grace period, rather than sharing the device's memory with it.
    let stopping: Vec<(String, Vec<String>)> = node
        .runs
        .active()
        .iter()
        .filter(|r| r.is_stopping() && r.holds_gpus())
        .map(|r| (r.name.clone(), r.gpus.clone()))
        .collect();
    // A hand-over's successor (`spec.startAfter`) waits the same way for the task it follows,
    // which the controller expected to end about now.
    for task in starts {
        if let Some(before) = predecessor(node, task) {
            if waiting.insert(task.uid().unwrap_or_default()) {
                tracing::info!(
                    task = %task.name_any(),
                    after = before,
                    "waiting for the task it follows to exit"
                );
            }
            continue;
        }
        match held_by_stopping(&task.spec.gpus, &stopping) {
            None => start_run(node, task, Start::New),
            Some(holder) => {
                if waiting.insert(task.uid().unwrap_or_default()) {
                    tracing::info!(
                        task = %task.name_any(),
                        stopping = holder,
                        "waiting for a stopping task to release its GPUs"
                    );
                }
            }
        }
    }
}

/// The task `task` follows (`spec.startAfter`, its uid), by name, while its process still runs
/// here; none once it has exited, or when this agent never ran it.
fn predecessor(node: &Node, task: &Task) -> Option<String> {
    let run = node.runs.get(task.spec.start_after.as_deref()?)?;
    run.holds_gpus().then(|| run.name.clone())
}

/// The first of the `stopping` runs (name, GPU UUIDs) that holds one of `gpus`.
fn held_by_stopping<'a>(gpus: &[String], stopping: &'a [(String, Vec<String>)]) -> Option<&'a str> {
    stopping
        .iter()
        .find(|(_, held)| held.iter().any(|g| gpus.contains(g)))
        .map(|(name, _)| name.as_str())
}

/// With `drain`, cancels running tasks and waits for them; otherwise leaves them running.
async fn finish(node: &Node, drain: bool) {
    if drain {
        let active = node.runs.active();
        tracing::info!(tasks = active.len(), "draining: cancelling running tasks");
        for run in &active {
            run.request_stop(Stop::Cancelled);
        }
        let wait_all = async {
            for run in &active {
                let _ = run.done().wait_for(|d| *d).await;
            }
        };
        if tokio::time::timeout(node.grace + Duration::from_secs(15), wait_all)
            .await
            .is_err()
        {
            tracing::warn!("some tasks did not finish draining in time");
        }
    } else {
        tracing::info!(
            tasks = node.runs.active().len(),
            "leaving running tasks running; a restarted agent adopts them"
        );
    }
}

type Index = (HashMap<String, Arc<Task>>, HashMap<(String, String), u32>);

fn index(all: &[Arc<Task>]) -> Index {
    let mut by_uid = HashMap::new();
    let mut newest: HashMap<(String, String), u32> = HashMap::new();
    for t in all {
        by_uid.insert(t.uid().unwrap_or_default(), t.clone());
        let n = newest.entry(unit(t)).or_default();
        *n = (*n).max(t.spec.attempt);
    }
    (by_uid, newest)
}

#[cfg(test)]
mod tests {
    use super::held_by_stopping;

    #[test]
    fn a_task_waits_only_for_stopping_runs_on_its_own_gpus() {
        let gpus = |l: &[&str]| l.iter().map(|g| (*g).to_owned()).collect::<Vec<_>>();
        let stopping = vec![
            ("victim-a".to_owned(), gpus(&["GPU-0", "GPU-1"])),
            ("victim-b".to_owned(), gpus(&["GPU-3"])),
        ];
        assert_eq!(held_by_stopping(&gpus(&["GPU-1"]), &stopping), Some("victim-a"));
        assert_eq!(
            held_by_stopping(&gpus(&["GPU-2", "GPU-3"]), &stopping),
            Some("victim-b")
        );
        assert_eq!(held_by_stopping(&gpus(&["GPU-2"]), &stopping), None);
        assert_eq!(
            held_by_stopping(&[], &stopping),
            None,
            "a CPU task waits for nobody"
        );
        assert_eq!(held_by_stopping(&gpus(&["GPU-0"]), &[]), None);
    }
}
