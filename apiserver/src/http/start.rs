//! How an [`ApiServer`] starts over a store: the stored CRDs served again, Events kept apart by
//! earlier versions moved into the one store, the initial namespaces, and the garbage
//! collection and CRD cleanups an earlier life left unfinished.

use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

use super::state::{ApiServer, Options, new_uid, now};
use crate::registry::{Registry, crd_key};
use crate::store::semantics::WriteContext;
use crate::store::{ResourceKey, Store, StoreError};

/// Namespaces that always exist, as in a new cluster.
const INITIAL_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];

impl ApiServer {
    /// Builds the server over `store`: re-registers the stored CRDs and creates the initial
    /// namespaces if missing.
    ///
    /// # Errors
    /// When the store cannot be read or written.
    pub async fn new(store: Store, options: Options) -> Result<Arc<Self>, StoreError> {
        let mut registry = Registry::default();
        let (crds, _) = store.list(&crd_key(), None).await?;
        for crd in &crds {
            if let Err(errors) = registry.register_crd(crd) {
                let name = crd
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                tracing::warn!(crd = name, errors = ?errors, "stored CRD is not servable; skipped");
            }
        }
        super::convert::migrate_events(&store).await?;
        let namespaces = ResourceKey::new("", "namespaces");
        for name in INITIAL_NAMESPACES {
            if store.get(&namespaces, "", name).await?.is_none() {
                let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
                                "spec": {"finalizers": ["kubernetes"]}});
                let (now, uid) = (now(), new_uid());
                let ctx = WriteContext {
                    now: &now,
                    uid: &uid,
                    status_subresource: true,
                    generation: false,
                };
                store.create(&namespaces, "", ns, &ctx).await?;
            }
        }
        let server = Arc::new(Self {
            metrics: super::metrics::Metrics::with_store(store.batch_sizes()),
            store,
            registry: RwLock::new(Arc::new(registry)),
            options,
            background: tokio_util::task::TaskTracker::new(),
            relay: super::relay::Relay::default(),
        });
        super::lifecycle::resume(&server).await;
        Ok(server)
    }
}
