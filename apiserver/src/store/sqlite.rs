//! [`Store`]: objects and their watch history in SQLite.
//!
//! Writes are serialized in-process and each is one transaction: read the stored object,
//! decide with [`super::semantics`], bump the global revision, write the object and the event,
//! compact old events, commit, then publish the event to live watchers. A write is acknowledged
//! only after its commit. The database runs in WAL mode with `synchronous = NORMAL`: a committed
//! write survives the process being killed (`kill -9`); it is not flushed for power loss.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use tokio::sync::{Mutex, broadcast};

use super::rows::{current_revision, db, load, object_name, parse};
use super::types::{Deleted, EventType, ResourceKey, StoreError, WatchEvent};

use super::semantics::{
    DeleteOutcome, Preconditions, Subresource, UpdateOutcome, WriteContext, prepare_create, prepare_delete,
    prepare_update,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Watch events kept by default for clients that resume from an older resourceVersion.
pub const DEFAULT_HISTORY: u64 = 10_000;
/// Live events buffered per watcher before a slow one is dropped (and must re-list).
const LIVE_BUFFER: usize = 4096;

/// Objects and their watch history in one SQLite database.
#[derive(Debug)]
pub struct Store {
    pool: SqlitePool,
    /// Held by every write; holds the current revision (the one in the database).
    write_lock: Mutex<u64>,
    /// One live channel per kind, so a write wakes only the watchers of its kind.
    live: std::sync::Mutex<HashMap<ResourceKey, broadcast::Sender<WatchEvent>>>,
    history: u64,
    /// In memory: a connection that is never used, only held, so the database lives as long
    /// as the store even when the pool drops its connection (it does when a request is
    /// cancelled mid-query, and a fresh `:memory:` connection would be an empty database).
    keep_alive: Option<std::sync::Mutex<sqlx::SqliteConnection>>,
}

impl Store {
    /// Opens (creating if needed) the database file at `path` and applies migrations. Keeps the
    /// newest `history` events (and up to 32 more) for watches.
    ///
    /// # Errors
    /// [`StoreError::Database`] when the file cannot be opened or migrated.
    pub async fn open(path: &Path, history: u64) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(db("open the database"))?;
        Self::with_pool(pool, history).await
    }

    /// A store that lives in memory only, for tests.
    ///
    /// # Errors
    /// [`StoreError::Database`] when SQLite cannot start.
    pub async fn in_memory(history: u64) -> Result<Self, StoreError> {
        use sqlx::Connection as _;
        // A named, shared-cache in-memory database: every connection to this name is the same
        // database while one of them is open.
        let name = format!(
            "sqlite:file:ringrift-{}?mode=memory&cache=shared",
            uuid::Uuid::new_v4().simple()
        );
        let options = SqliteConnectOptions::from_str(&name).map_err(db("configure the database"))?;
        let keep_alive = sqlx::SqliteConnection::connect_with(&options)
            .await
            .map_err(db("open the database"))?;
        // One connection does the work (shared-cache connections lock tables against each other).
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(db("open the database"))?;
        let mut store = Self::with_pool(pool, history).await?;
        store.keep_alive = Some(std::sync::Mutex::new(keep_alive));
        Ok(store)
    }

    async fn with_pool(pool: SqlitePool, history: u64) -> Result<Self, StoreError> {
        MIGRATOR.run(&pool).await.map_err(|e| StoreError::Database {
            action: "migrate the database",
            source: e.into(),
        })?;
        let revision = current_revision(&pool).await?;
        Ok(Self {
            pool,
            write_lock: Mutex::new(revision),
            live: std::sync::Mutex::new(HashMap::new()),
            history: history.max(1),
            keep_alive: None,
        })
    }

    /// Live events of one kind from now on. A receiver that falls more than the buffer behind gets
    /// `Lagged` and should resume with [`Store::events_since`] or re-list.
    pub fn subscribe(&self, resource: &ResourceKey) -> broadcast::Receiver<WatchEvent> {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        live.entry(resource.clone())
            .or_insert_with(|| broadcast::channel(LIVE_BUFFER).0)
            .subscribe()
    }

    /// The current global revision.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn revision(&self) -> Result<u64, StoreError> {
        current_revision(&self.pool).await
    }

    /// One object.
    ///
    /// # Errors
    /// [`StoreError::Database`] or [`StoreError::Json`].
    pub async fn get(
        &self,
        resource: &ResourceKey,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, StoreError> {
        load(&self.pool, resource, namespace, name).await
    }

    /// Every object of a kind, in one namespace or (None) all, sorted by namespace and name,
    /// with the revision the list is consistent at.
    ///
    /// # Errors
    /// [`StoreError::Database`] or [`StoreError::Json`].
    pub async fn list(
        &self,
        resource: &ResourceKey,
        namespace: Option<&str>,
    ) -> Result<(Vec<Value>, u64), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("start a read"))?;
        let rows =
            match namespace {
                Some(ns) => sqlx::query(
                    "SELECT body FROM objects WHERE resource = ? AND namespace = ? ORDER BY namespace, name",
                )
                .bind(resource.column())
                .bind(ns)
                .fetch_all(&mut *tx)
                .await,
                None => {
                    sqlx::query("SELECT body FROM objects WHERE resource = ? ORDER BY namespace, name")
                        .bind(resource.column())
                        .fetch_all(&mut *tx)
                        .await
                }
            }
            .map_err(db("list objects"))?;
        let revision = current_revision(&mut *tx).await?;
        tx.commit().await.map_err(db("finish a read"))?;
        let objects = rows
            .iter()
            .map(|r| parse(&r.get::<String, _>(0)))
            .collect::<Result<_, _>>()?;
        Ok((objects, revision))
    }

    /// Creates an object (its name already set and validated by the caller).
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`], [`StoreError::Write`], or a database error.
    pub async fn create(
        &self,
        resource: &ResourceKey,
        namespace: &str,
        object: Value,
        ctx: &WriteContext<'_>,
    ) -> Result<Value, StoreError> {
        let object = prepare_create(object, ctx)?;
        let name = object_name(&object)?;
        let mut revision = self.write_lock.lock().await;
        let tx = self.pool.begin().await.map_err(db("start a write"))?;
        // No read first: the insert itself fails on an existing name.
        self.commit_write(
            &mut revision,
            tx,
            resource,
            namespace,
            &name,
            EventType::Added,
            object,
            None,
        )
        .await
    }

    /// Updates an object through the main endpoint or `/status`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Write`] (conflicts among them), or a database
    /// error.
    pub async fn update(
        &self,
        resource: &ResourceKey,
        namespace: &str,
        name: &str,
        object: Value,
        sub: Subresource,
        ctx: &WriteContext<'_>,
    ) -> Result<Value, StoreError> {
        let mut revision = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await.map_err(db("start a write"))?;
        let Some(old) = load(&mut *tx, resource, namespace, name).await? else {
            return Err(StoreError::NotFound {
                resource: resource.clone(),
                name: name.to_owned(),
            });
        };
        match prepare_update(&old, object, sub, ctx)? {
            UpdateOutcome::Unchanged => Ok(old),
            UpdateOutcome::Write(new) => {
                self.commit_write(
                    &mut revision,
                    tx,
                    resource,
                    namespace,
                    name,
                    EventType::Modified,
                    new,
                    Some(&old),
                )
                .await
            }
            UpdateOutcome::Remove(last) => {
                self.commit_write(
                    &mut revision,
                    tx,
                    resource,
                    namespace,
                    name,
                    EventType::Deleted,
                    last,
                    Some(&old),
                )
                .await
            }
        }
    }

    /// Deletes an object, or marks it for deletion while finalizers remain.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Write`] on a failed precondition, or a database
    /// error.
    pub async fn delete(
        &self,
        resource: &ResourceKey,
        namespace: &str,
        name: &str,
        preconditions: &Preconditions,
        ctx: &WriteContext<'_>,
    ) -> Result<Deleted, StoreError> {
        let mut revision = self.write_lock.lock().await;
        let mut tx = self.pool.begin().await.map_err(db("start a write"))?;
        let Some(old) = load(&mut *tx, resource, namespace, name).await? else {
            return Err(StoreError::NotFound {
                resource: resource.clone(),
                name: name.to_owned(),
            });
        };
        match prepare_delete(&old, preconditions, ctx)? {
            DeleteOutcome::AlreadyDeleting => Ok(Deleted {
                object: old,
                removed: false,
            }),
            DeleteOutcome::MarkDeleting(marked) => {
                let object = self
                    .commit_write(
                        &mut revision,
                        tx,
                        resource,
                        namespace,
                        name,
                        EventType::Modified,
                        marked,
                        Some(&old),
                    )
                    .await?;
                Ok(Deleted {
                    object,
                    removed: false,
                })
            }
            DeleteOutcome::Remove => {
                let object = self
                    .commit_write(
                        &mut revision,
                        tx,
                        resource,
                        namespace,
                        name,
                        EventType::Deleted,
                        old.clone(),
                        Some(&old),
                    )
                    .await?;
                Ok(Deleted {
                    object,
                    removed: true,
                })
            }
        }
    }

    /// Events after `revision` (exclusive) for one kind, oldest first, to resume a watch.
    ///
    /// # Errors
    /// [`StoreError::Expired`] when events after `revision` have been compacted away.
    pub async fn events_since(
        &self,
        resource: &ResourceKey,
        revision: u64,
    ) -> Result<Vec<WatchEvent>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("start a read"))?;
        let current = current_revision(&mut *tx).await?;
        let oldest_kept = sqlx::query("SELECT MIN(revision) FROM events")
            .fetch_one(&mut *tx)
            .await
            .map_err(db("read the history"))?
            .get::<Option<i64>, _>(0)
            .map_or(current + 1, |r| u64::try_from(r).unwrap_or(0));
        // Resuming from `revision` needs every event after it: the history must reach back to
        // revision + 1 (or there must be nothing newer).
        if revision < current && revision + 1 < oldest_kept {
            return Err(StoreError::Expired {
                requested: revision,
                oldest: oldest_kept.saturating_sub(1),
            });
        }
        let rows = sqlx::query(
            "SELECT revision, namespace, type, body, prev_body FROM events WHERE resource = ? AND revision > ? ORDER BY revision",
        )
        .bind(resource.column())
        .bind(i64::try_from(revision).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(db("read the history"))?;
        tx.commit().await.map_err(db("finish a read"))?;
        rows.iter()
            .map(|row| {
                Ok(WatchEvent {
                    revision: u64::try_from(row.get::<i64, _>(0)).unwrap_or(0),
                    resource: resource.clone(),
                    namespace: row.get(1),
                    event_type: EventType::parse(&row.get::<String, _>(2)).unwrap_or(EventType::Modified),
                    object: Arc::new(parse(&row.get::<String, _>(3))?),
                    previous: row
                        .get::<Option<String>, _>(4)
                        .as_deref()
                        .map(parse)
                        .transpose()?
                        .map(Arc::new),
                })
            })
            .collect()
    }

    /// Stamps the next revision on `object`, stores it (or removes it, for a delete), records
    /// the event (with `previous`, the object before the write), compacts the history,
    /// commits, and publishes the event.
    #[allow(clippy::too_many_arguments)]
    async fn commit_write(
        &self,
        current: &mut u64,
        mut tx: Transaction<'static, Sqlite>,
        resource: &ResourceKey,
        namespace: &str,
        name: &str,
        event_type: EventType,
        mut object: Value,
        previous: Option<&Value>,
    ) -> Result<Value, StoreError> {
        let revision = *current + 1;
        let rev_db = i64::try_from(revision).unwrap_or(i64::MAX);
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), revision.to_string().into());
        }
        let body = serde_json::to_string(&object).map_err(|source| StoreError::Json {
            action: "encode an object",
            source,
        })?;
        let stored = if event_type == EventType::Deleted {
            sqlx::query("DELETE FROM objects WHERE resource = ? AND namespace = ? AND name = ?")
                .bind(resource.column())
                .bind(namespace)
                .bind(name)
                .execute(&mut *tx)
                .await
        } else {
            // A create must not replace: the plain insert fails on an existing name.
            let sql = if event_type == EventType::Added {
                "INSERT INTO objects (resource, namespace, name, revision, body) VALUES (?, ?, ?, ?, ?)"
            } else {
                "INSERT INTO objects (resource, namespace, name, revision, body) VALUES (?, ?, ?, ?, ?)
                 ON CONFLICT (resource, namespace, name) DO UPDATE SET revision = excluded.revision, body = excluded.body"
            };
            sqlx::query(sql)
                .bind(resource.column())
                .bind(namespace)
                .bind(name)
                .bind(rev_db)
                .bind(&body)
                .execute(&mut *tx)
                .await
        };
        match stored {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::AlreadyExists {
                    resource: resource.clone(),
                    name: name.to_owned(),
                });
            }
            other => other.map_err(db("write an object"))?,
        };
        let previous_body = previous
            .map(serde_json::to_string)
            .transpose()
            .map_err(|source| StoreError::Json {
                action: "encode an object",
                source,
            })?;
        sqlx::query(
            "INSERT INTO events (revision, resource, namespace, name, type, body, prev_body) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(rev_db)
        .bind(resource.column())
        .bind(namespace)
        .bind(name)
        .bind(event_type.as_str())
        .bind(&body)
        .bind(previous_body)
        .execute(&mut *tx)
        .await
        .map_err(db("record an event"))?;
        // Compacted every so many writes rather than on each: the history holds between
        // `history` and `history + COMPACT_EVERY` events.
        if revision.is_multiple_of(COMPACT_EVERY) {
            let keep_from = rev_db.saturating_sub(i64::try_from(self.history).unwrap_or(i64::MAX)) + 1;
            sqlx::query("DELETE FROM events WHERE revision < ?")
                .bind(keep_from)
                .execute(&mut *tx)
                .await
                .map_err(db("compact the history"))?;
        }
        tx.commit().await.map_err(db("commit a write"))?;
        *current = revision;
        // Nobody listening is fine.
        let sender = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(resource)
            .cloned();
        let Some(sender) = sender else { return Ok(object) };
        let _ = sender.send(WatchEvent {
            revision,
            resource: resource.clone(),
            namespace: namespace.to_owned(),
            event_type,
            object: Arc::new(object.clone()),
            previous: previous.cloned().map(Arc::new),
        });
        Ok(object)
    }
}

/// Writes between two compactions of the watch history.
const COMPACT_EVERY: u64 = 32;
