//! [`ApiServer`]: the shared state every request works on (the store, the served kinds, the
//! settings, the metrics), and how it starts.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_util::task::TaskTracker;

use crate::auth::Tokens;
use crate::auth::audit::AuditLog;
use crate::registry::Registry;
use crate::store::Store;

/// Largest request body accepted, as the Kubernetes API server's default (3 MiB).
pub const DEFAULT_MAX_BODY: usize = 3 * 1024 * 1024;

/// Settings of an [`ApiServer`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Bearer tokens and their users. Every request but health checks, `/version` and
    /// `/metrics` must authenticate: with a client certificate a client CA signed, or one of
    /// these tokens.
    pub tokens: Tokens,
    /// No authentication at all: every request is the administrator's. Only for the insecure
    /// plain-HTTP mode with no token configured (benchmark baselines).
    pub open: bool,
    /// Enforce RBAC (the stored Roles, ClusterRoles and bindings) on resource requests of users
    /// outside `system:masters`.
    pub rbac: bool,
    /// Where to record every API request, if anywhere.
    pub audit: Option<Arc<AuditLog>>,
    /// With RBAC: a request without credentials is `system:anonymous` (group
    /// `system:unauthenticated`), allowed what RBAC grants it, instead of refused 401.
    pub anonymous: bool,
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// How often a watch that asked for bookmarks gets one.
    pub bookmark_interval: Duration,
    /// The cluster CA, with its key, when this server holds it: agents joining with a
    /// bootstrap token get their client certificates signed by it (`/ringrift/v1/join`).
    pub signer: Option<Arc<ringrift_tls::pki::Ca>>,
    /// How long an agent's client certificate (joined or renewed) is valid, in seconds.
    pub agent_cert_validity: i64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tokens: Tokens::none(),
            open: false,
            rbac: false,
            audit: None,
            anonymous: false,
            max_body: DEFAULT_MAX_BODY,
            bookmark_interval: Duration::from_secs(10),
            signer: None,
            agent_cert_validity: super::join::AGENT_CERT_VALIDITY,
        }
    }
}

/// The API server's state: the store, the served kinds, and the settings.
#[derive(Debug)]
pub struct ApiServer {
    pub(crate) store: Store,
    /// Read on every request, changed only when a CRD is: readers take the `Arc`, writers
    /// replace it (copy on write).
    pub(crate) registry: RwLock<Arc<Registry>>,
    pub(crate) options: Options,
    pub(crate) metrics: super::metrics::Metrics,
    /// Work a request leaves running (garbage collection, a CRD's cleanup): waited for at
    /// shutdown, so the store is not closed under it.
    pub(crate) background: TaskTracker,
    /// Task logs passed from agents nobody can connect to (`relay`).
    pub(crate) relay: super::relay::Relay,
}

/// Now, as the API server writes timestamps.
pub(crate) fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A fresh uid.
pub(crate) fn new_uid() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl ApiServer {
    /// The store, for tests and tools in the same process.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Waits (at most `grace`) for background work to finish; none is taken after this.
    pub async fn finish_background(&self, grace: std::time::Duration) {
        self.background.close();
        if tokio::time::timeout(grace, self.background.wait()).await.is_err() {
            tracing::warn!(
                left = self.background.len(),
                "background work still running at shutdown; resumed at the next start"
            );
        }
    }

    pub(crate) fn registry(&self) -> Arc<Registry> {
        let guard = self
            .registry
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(&guard)
    }

    pub(crate) fn with_registry<T>(&self, f: impl FnOnce(&mut Registry) -> T) -> T {
        let mut guard = self
            .registry
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = Registry::clone(&guard);
        let result = f(&mut next);
        *guard = Arc::new(next);
        result
    }
}
