//! Running the Tasks bound to this agent under the workload contract (DESIGN.md section 6).
//!
//! [`supervisor`] watches the Tasks and decides; [`run`] carries one attempt from start to its
//! final status; [`Runs`] is what the REST API reads.

mod attempt;
mod checkpoint;
pub mod classify;
mod finish;
pub mod inputs;
pub mod launch;
pub mod logs;
pub mod process;
pub mod run;
pub mod shim;
pub mod supervisor;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ringrift_crds::task::{Progress, Role, TaskPhase};
use serde::Serialize;
use tokio::sync::watch;

use self::classify::Stop;
use self::logs::LogTail;

/// Lines kept in memory per task.
const TAIL_LINES: usize = 2000;
/// Bytes kept in memory per task.
const TAIL_BYTES: usize = 512 * 1024;
/// Finished runs kept for the REST API.
const KEEP_FINISHED: usize = 256;

/// What the REST API shows about a run.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunInfo {
    /// Phase as this agent sees it.
    pub phase: TaskPhase,
    /// The process group leader.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Whether this agent adopted the process after a restart.
    pub adopted: bool,
    /// Latest progress report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Latest metrics.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// When the process started (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it ended (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Exit code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// CamelCase reason of the outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Message of the outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Report lines that could not be parsed.
    pub bad_reports: u64,
    /// GPU memory its processes use, MiB (from NVML).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_memory_mib: Option<u64>,
    /// SM utilization of its processes, percent (from NVML).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_utilization_pct: Option<u32>,
    /// The newest checkpoint the process announced, kept in the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<ringrift_crds::common::Artifact>,
    /// A checkpoint announced and not kept yet: its path under the output directory.
    #[serde(skip)]
    pub checkpoint_announced: Option<String>,
}

/// One attempt this agent runs or ran.
#[derive(Debug)]
pub struct RunHandle {
    /// The Task's uid.
    pub uid: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Attempt.
    pub attempt: u32,
    /// Role.
    pub role: Role,
    /// GPU UUIDs given to it.
    pub gpus: Vec<String>,
    /// The attempt's directory.
    pub dir: PathBuf,
    /// Log tail and followers.
    pub log: LogTail,
    /// Copies of each output to have on distinct agents before it counts as Succeeded (the
    /// Task's `replicas`; 1: this agent's only).
    pub replicas: u32,
    info: Mutex<RunInfo>,
    stop: watch::Sender<Option<Stop>>,
    done: watch::Sender<bool>,
    /// Its process has exited (or never ran): its GPUs are free, though its outputs may still
    /// be collected and copied.
    exited: std::sync::atomic::AtomicBool,
}

impl RunHandle {
    /// A handle for an attempt about to start or be adopted.
    pub fn new(
        uid: &str,
        namespace: &str,
        name: &str,
        attempt: u32,
        role: Role,
        gpus: Vec<String>,
        dir: PathBuf,
    ) -> Self {
        Self {
            uid: uid.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            attempt,
            role,
            gpus,
            dir,
            log: LogTail::new(TAIL_LINES, TAIL_BYTES),
            replicas: 1,
            info: Mutex::new(RunInfo::default()),
            stop: watch::channel(None).0,
            done: watch::channel(false).0,
            exited: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Asks for `replicas` copies of each output (at least one).
    #[must_use]
    pub fn with_replicas(self, replicas: u32) -> Self {
        Self {
            replicas: replicas.max(1),
            ..self
        }
    }

    /// The log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("log")
    }

    /// A copy of what is known about the run.
    pub fn info(&self) -> RunInfo {
        self.info.lock().map(|i| i.clone()).unwrap_or_default()
    }

    /// Changes what is known about the run.
    pub fn update(&self, f: impl FnOnce(&mut RunInfo)) {
        if let Ok(mut info) = self.info.lock() {
            f(&mut info);
        }
    }

    /// Asks the run to stop (the first reason wins). Returns whether this call asked.
    pub fn request_stop(&self, why: Stop) -> bool {
        let mut asked = false;
        self.stop.send_if_modified(|s| {
            if s.is_none() && !*self.done.borrow() {
                *s = Some(why);
                asked = true;
            }
            asked
        });
        asked
    }

    /// Stop requests.
    pub fn stop_requests(&self) -> watch::Receiver<Option<Stop>> {
        self.stop.subscribe()
    }

    /// Marks the run finished (its final status recorded).
    pub fn mark_done(&self) {
        self.done.send_replace(true);
    }

    /// Whether it was asked to stop and has not finished yet: its process may still hold its
    /// GPUs.
    pub fn is_stopping(&self) -> bool {
        self.stop.borrow().is_some() && !self.is_done()
    }

    /// Records that its process has exited (its GPUs are free).
    pub fn mark_exited(&self) {
        self.exited.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether it still holds its GPUs: not finished, and its process not exited.
    pub fn holds_gpus(&self) -> bool {
        !self.is_done() && !self.exited.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether the run finished.
    pub fn is_done(&self) -> bool {
        *self.done.borrow()
    }

    /// Becomes true when the run finishes.
    pub fn done(&self) -> watch::Receiver<bool> {
        self.done.subscribe()
    }
}

/// Every run this agent knows, by Task uid.
#[derive(Debug, Default)]
pub struct Runs {
    runs: Mutex<HashMap<String, Arc<RunHandle>>>,
    /// Woken when a run's process exits, for a task waiting for its GPUs.
    exits: tokio::sync::Notify,
}

impl Runs {
    /// Records that `run`'s process exited and wakes whoever waits for its GPUs.
    pub fn exited(&self, run: &RunHandle) {
        run.mark_exited();
        self.exits.notify_one();
    }

    /// Becomes ready when a run's process exits (see [`Runs::exited`]).
    pub async fn an_exit(&self) {
        self.exits.notified().await;
    }

    /// Adds a run, dropping the oldest finished ones past the limit.
    pub fn insert(&self, run: Arc<RunHandle>) {
        let Ok(mut runs) = self.runs.lock() else { return };
        runs.insert(run.uid.clone(), run);
        let finished = runs.values().filter(|r| r.is_done()).count();
        if finished > KEEP_FINISHED {
            let mut done: Vec<(String, String)> = runs
                .values()
                .filter(|r| r.is_done())
                .map(|r| (r.info().finished_at.unwrap_or_default(), r.uid.clone()))
                .collect();
            done.sort();
            for (_, uid) in done.into_iter().take(finished - KEEP_FINISHED) {
                runs.remove(&uid);
            }
        }
    }

    /// A run by uid.
    pub fn get(&self, uid: &str) -> Option<Arc<RunHandle>> {
        self.runs.lock().ok()?.get(uid).cloned()
    }

    /// A run by Task namespace and name (the newest attempt).
    pub fn by_name(&self, namespace: &str, name: &str) -> Option<Arc<RunHandle>> {
        let runs = self.runs.lock().ok()?;
        runs.values()
            .filter(|r| r.namespace == namespace && r.name == name)
            .max_by_key(|r| (!r.is_done(), r.attempt))
            .cloned()
    }

    /// Every run, sorted by namespace and name.
    pub fn all(&self) -> Vec<Arc<RunHandle>> {
        let mut all: Vec<_> = self
            .runs
            .lock()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default();
        all.sort_by(|a, b| (&a.namespace, &a.name, a.attempt).cmp(&(&b.namespace, &b.name, b.attempt)));
        all
    }

    /// Runs not finished.
    pub fn active(&self) -> Vec<Arc<RunHandle>> {
        self.all().into_iter().filter(|r| !r.is_done()).collect()
    }
}
