//! The objects as committed, in memory: `get` and the writer's reads of the object a write is
//! about, without a SQLite query or JSON parsing (the Kubernetes API server serves reads from
//! its watch cache the same way). SQLite stays the truth: the cache is filled from it on open
//! and changed by the writer only together with a commit, under the cache's write lock, so a
//! read never sees a write before it is committed nor misses one that was acknowledged.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use sqlx::{Row, SqlitePool};
use tokio::sync::RwLock;

use super::rows::{db, parse};
use super::types::{ResourceKey, StoreError};

/// One object as stored: decoded, and its JSON.
#[derive(Debug)]
pub(super) struct Stored {
    pub(super) object: Arc<Value>,
    pub(super) body: Arc<str>,
}

/// Every stored object by [`key`].
pub(super) type Objects = Arc<RwLock<HashMap<String, Arc<Stored>>>>;

/// The cache key of an object.
pub(super) fn key(resource: &ResourceKey, namespace: &str, name: &str) -> String {
    // Names and namespaces are DNS labels or subdomains: no newline in them.
    format!("{}/{}\n{namespace}\n{name}", resource.group, resource.resource)
}

/// Reads every stored object.
///
/// # Errors
/// [`StoreError::Database`] or [`StoreError::Json`].
pub(super) async fn load_all(pool: &SqlitePool) -> Result<HashMap<String, Arc<Stored>>, StoreError> {
    let rows = sqlx::query("SELECT resource, namespace, name, body FROM objects")
        .fetch_all(pool)
        .await
        .map_err(db("read the objects"))?;
    rows.iter()
        .map(|row| {
            let body: String = row.get(3);
            let key = format!(
                "{}\n{}\n{}",
                row.get::<String, _>(0),
                row.get::<String, _>(1),
                row.get::<String, _>(2)
            );
            let stored = Stored {
                object: Arc::new(parse(&body)?),
                body: body.into(),
            };
            Ok((key, Arc::new(stored)))
        })
        .collect()
}
