//! What data sync needs of the agent, and nothing more.

use std::sync::Arc;

use kube::Client;
use ringrift_tls::trust::TrustMetrics;
use tokio::sync::watch;

use super::metrics::SyncMetrics;
use super::state::SyncState;
use crate::artifacts::ContentStore;
use crate::detect::Inventory;
use crate::store::Store;

/// The agent as data sync sees it: its name (to skip itself among holders and spread its first
/// chunks), the API (peers' fingerprints, the Tasks that keep artifacts), the local database and
/// content store, the shared sync state, its metrics, and the host's disk (retention). Pulls, the
/// chunk server and retention take this, not the whole agent: they cannot reach its tasks, its
/// supervisor or its GPUs.
#[derive(Clone)]
pub struct Context {
    /// The agent's name.
    pub name: String,
    /// API client.
    pub client: Client,
    /// Local database: artifacts held, transfers in progress, peers met.
    pub db: Store,
    /// Artifact store.
    pub content: ContentStore,
    /// Gate, pulls in progress, peer directory, pins.
    pub state: Arc<SyncState>,
    /// Sync metrics.
    pub metrics: SyncMetrics,
    /// Trust failures of calls to peers.
    pub trust: TrustMetrics,
    /// The latest inventory (its host disk, for retention).
    pub inventory: watch::Receiver<Inventory>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
