//! What every part of a running agent shares.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::watch;

use crate::artifacts::ContentStore;
use crate::detect::Inventory;
use crate::exec::Runs;
use crate::metrics::Metrics;
use crate::store::Store;

/// The agent's shared state.
pub struct Node {
    /// Agent name (the `Agent` object, the heartbeat Lease `agent-<name>`).
    pub name: String,
    /// API client.
    pub client: Client,
    /// Local database.
    pub db: Store,
    /// Artifact store.
    pub content: ContentStore,
    /// Data directory.
    pub data_dir: PathBuf,
    /// The `ringrift` executable: the task shim and the default (demo) workload.
    pub exe: PathBuf,
    /// Time a stopped task gets between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Least time between progress writes of one task.
    pub progress_interval: Duration,
    /// The latest inventory.
    pub inventory: watch::Receiver<Inventory>,
    /// Runs.
    pub runs: Runs,
    /// Metrics.
    pub metrics: Metrics,
    /// Version reported in the `Agent` status.
    pub version: String,
    /// What data sync sees of the agent (its gate, pulls in progress, peer directory among
    /// it): pulls, the chunk server and retention get only this.
    pub sync: Arc<crate::sync::Context>,
}

impl Node {
    /// The directory of one attempt.
    pub fn attempt_dir(&self, namespace: &str, name: &str, uid: &str) -> PathBuf {
        self.data_dir
            .join("tasks")
            .join(namespace)
            .join(format!("{name}-{uid}"))
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}
