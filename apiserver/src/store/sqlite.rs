//! [`Store`]: objects and their watch history in SQLite.
//!
//! Writes go to one writing task ([`super::writer`]) that runs the writes waiting in one
//! transaction each (group commit): read the stored object, decide with [`super::semantics`],
//! bump the global revision, write the object and the event, compact old events; then commit and
//! publish the events to live watchers. A write is acknowledged only after its commit. `get`
//! reads the in-memory objects ([`super::cache`]); lists and the watch history go through a pool
//! of connections of their own. The database runs in WAL mode with `synchronous = FULL`: every
//! commit is fsynced before its writes are acknowledged (one fsync per batch), so an
//! acknowledged write survives the process being killed (`kill -9`) and power loss alike.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use serde_json::Value;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::cache::{self, Objects, load_all};
use super::reach::Reach;
use super::rows::{current_revision, db, object_name, parse};
use super::semantics::{Preconditions, Subresource, WriteContext, prepare_create};
use super::snapshot::{Change, rewind};
use super::types::{Deleted, EventType, ResourceKey, StoreError, WatchEvent};
use super::writer::{BATCH_MAX, Live, Op, Request, Writer, Written};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Watch events kept by default for clients that resume from an older resourceVersion.
pub const DEFAULT_HISTORY: u64 = 10_000;
/// Live events buffered per watcher before a slow one is dropped (and must re-list).
const LIVE_BUFFER: usize = 4096;

/// Objects and their watch history in one SQLite database.
#[derive(Debug)]
pub struct Store {
    /// Lists and the watch history.
    pool: SqlitePool,
    /// Writes, to the writing task.
    writes: mpsc::Sender<Request>,
    /// The writing task's connection (the same pool as `pool` in memory).
    writer: SqlitePool,
    /// One live channel per kind, so a write wakes only the watchers of its kind.
    live: Live,
    /// The revision up to which every event is in the live channels.
    published: Arc<AtomicU64>,
    /// Writes per committed transaction.
    batch_sizes: Histogram,
    /// The objects as committed, for `get` (and dry runs, `dry_run.rs`).
    pub(super) objects: Objects,
    /// How far back the history reaches per kind; raised by the writer as it compacts.
    reach: Arc<std::sync::Mutex<Reach>>,
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
            // FULL: every commit is fsynced before the writer answers, so an acknowledged
            // write survives power loss, not only the process being killed (NORMAL would lose
            // the last commits of the WAL). Group commit makes that one fsync per batch.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .map_err(db("open the database"))?;
        // The writer's own connection, kept: its page cache stays warm (nobody else writes).
        let writer = single_connection(options).await?;
        Self::start(pool, writer, history).await
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
        // One connection does the work, reads and writes (shared-cache connections lock tables
        // against each other).
        let pool = single_connection(options).await?;
        let mut store = Self::start(pool.clone(), pool, history).await?;
        store.keep_alive = Some(std::sync::Mutex::new(keep_alive));
        Ok(store)
    }

    /// Starts the writing task on `writer` (which may be the read pool itself).
    async fn start(pool: SqlitePool, writer: SqlitePool, history: u64) -> Result<Self, StoreError> {
        MIGRATOR.run(&pool).await.map_err(|e| StoreError::Database {
            action: "migrate the database",
            source: e.into(),
        })?;
        let revision = current_revision(&pool).await?;
        // Whatever was compacted before now is gone for every kind: below the oldest event
        // kept, or everything when none is.
        let oldest: Option<i64> = sqlx::query_scalar("SELECT MIN(revision) FROM events")
            .fetch_one(&pool)
            .await
            .map_err(db("read the history"))?;
        let before = oldest.map_or(revision, |r| u64::try_from(r).unwrap_or(0).saturating_sub(1));
        let reach = Arc::new(std::sync::Mutex::new(Reach::new(before)));
        let objects = Objects::new(tokio::sync::RwLock::new(load_all(&pool).await?));
        let live = Live::default();
        let published = Arc::new(AtomicU64::new(revision));
        let batch_sizes = Histogram::new(exponential_buckets(1.0, 2.0, 8));
        let (sender, requests) = mpsc::channel(4 * BATCH_MAX);
        let task = Writer {
            pool: writer.clone(),
            objects: objects.clone(),
            revision,
            history: history.max(1),
            live: live.clone(),
            published: published.clone(),
            batch_sizes: batch_sizes.clone(),
            reach: reach.clone(),
        };
        tokio::spawn(task.run(requests));
        Ok(Self {
            pool,
            writes: sender,
            writer,
            live,
            published,
            batch_sizes,
            objects,
            reach,
            keep_alive: None,
        })
    }

    /// Writes per committed transaction, for the server's metrics.
    pub fn batch_sizes(&self) -> Histogram {
        self.batch_sizes.clone()
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

    /// The store's revision up to which every committed event has been sent to the live
    /// channels ([`Store::subscribe`]): a watcher that read this and then took everything
    /// waiting in its channel has seen every event of its kind up to it, so it may bookmark
    /// this revision even when its own kind has been quiet.
    pub fn published_revision(&self) -> u64 {
        self.published.load(Ordering::Acquire)
    }

    /// The journal mode and `synchronous` level (0 off, 1 normal, 2 full, 3 extra) of the
    /// connection every write goes through, as SQLite reports them: `("wal", 2)` for a store
    /// on disk, whose acknowledged writes survive power loss.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn write_durability(&self) -> Result<(String, i64), StoreError> {
        let mut conn = self
            .writer
            .acquire()
            .await
            .map_err(db("reach the writer's connection"))?;
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await
            .map_err(db("read the journal mode"))?;
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await
            .map_err(db("read the synchronous level"))?;
        Ok((journal, synchronous))
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
        Ok(self
            .get_shared(resource, namespace, name)
            .await
            .map(Arc::unwrap_or_clone))
    }

    /// The committed object, shared rather than copied: for a look at a field or two.
    pub async fn get_shared(
        &self,
        resource: &ResourceKey,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<Value>> {
        let objects = self.objects.read().await;
        objects
            .get(&cache::key(resource, namespace, name))
            .map(|stored| Arc::clone(&stored.object))
    }

    /// Every object whose `metadata.ownerReferences` name `owner_uid`, with its kind, sorted by
    /// kind, namespace and name: from memory, without reading other objects.
    pub async fn dependents(&self, owner_uid: &str) -> Vec<(ResourceKey, Value)> {
        let found = self.objects.read().await.dependents_of(owner_uid);
        found
            .into_iter()
            .map(|(resource, object)| (resource, Arc::unwrap_or_clone(object)))
            .collect()
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

    /// Every object of a kind (in one namespace, or all) as it was at `revision`, sorted by
    /// namespace and name: the objects now with the writes after `revision` undone from the
    /// watch history, read in one transaction.
    ///
    /// # Errors
    /// [`StoreError::Expired`] when the history no longer reaches back to `revision`;
    /// [`StoreError::TooLarge`] when `revision` is newer than the store; database errors.
    pub async fn list_at(
        &self,
        resource: &ResourceKey,
        namespace: Option<&str>,
        revision: u64,
    ) -> Result<Vec<Value>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("start a read"))?;
        let current = current_revision(&mut *tx).await?;
        if revision > current {
            return Err(StoreError::TooLarge {
                requested: revision,
                current,
            });
        }
        self.history_reaches(resource, revision, current)?;
        let objects = sqlx::query(
            "SELECT namespace, name, body FROM objects WHERE resource = ?1 AND (?2 IS NULL OR namespace = ?2)",
        )
        .bind(resource.column())
        .bind(namespace)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("list objects"))?;
        let events = sqlx::query(
            "SELECT namespace, name, type, prev_body FROM events
             WHERE resource = ?1 AND revision > ?3 AND (?2 IS NULL OR namespace = ?2) ORDER BY revision",
        )
        .bind(resource.column())
        .bind(namespace)
        .bind(i64::try_from(revision).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(db("read the history"))?;
        tx.commit().await.map_err(db("finish a read"))?;
        let now = objects
            .iter()
            .map(|r| Ok(((r.get(0), r.get(1)), parse(&r.get::<String, _>(2))?)))
            .collect::<Result<_, StoreError>>()?;
        let changes = events
            .iter()
            .map(|r| {
                Ok(Change {
                    key: (r.get(0), r.get(1)),
                    event_type: EventType::parse(&r.get::<String, _>(2)).unwrap_or(EventType::Modified),
                    previous: r.get::<Option<String>, _>(3).as_deref().map(parse).transpose()?,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(rewind(now, changes).into_values().collect())
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
        let op = Op::Create { name, object };
        Ok(self.submit(resource, namespace, op, ctx).await?.object)
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
        let op = Op::Update {
            name: name.to_owned(),
            object,
            sub,
        };
        Ok(self.submit(resource, namespace, op, ctx).await?.object)
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
        let op = Op::Delete {
            name: name.to_owned(),
            preconditions: preconditions.clone(),
        };
        self.submit(resource, namespace, op, ctx).await
    }

    /// Hands a write to the writer and waits for its commit. A write whose requester goes away
    /// meanwhile is still done.
    async fn submit(
        &self,
        resource: &ResourceKey,
        namespace: &str,
        op: Op,
        ctx: &WriteContext<'_>,
    ) -> Result<Written, StoreError> {
        let stopped = || StoreError::Unavailable {
            reason: "the store's writer has stopped".into(),
        };
        let (reply, answer) = oneshot::channel();
        let request = Request {
            resource: resource.clone(),
            namespace: namespace.to_owned(),
            op,
            now: ctx.now.to_owned(),
            uid: ctx.uid.to_owned(),
            status_subresource: ctx.status_subresource,
            generation: ctx.generation,
            reply,
        };
        self.writes.send(request).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Whether the watch history still holds every event of `resource`'s kind after `revision`
    /// (or there is nothing newer): what resuming a watch or undoing writes back to `revision`
    /// needs. Called inside the read's transaction, after its first read: the writer records
    /// what it compacts before committing, so a snapshot without those events finds them gone.
    fn history_reaches(&self, resource: &ResourceKey, revision: u64, current: u64) -> Result<(), StoreError> {
        let gone = self
            .reach
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .gone(&resource.column());
        if revision < current && revision < gone {
            return Err(StoreError::Expired {
                requested: revision,
                oldest: gone,
            });
        }
        Ok(())
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
        self.history_reaches(resource, revision, current)?;
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
                    body: row.get::<String, _>(3).into(),
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
}

/// A pool of one connection that is never closed for being idle or old.
async fn single_connection(options: SqliteConnectOptions) -> Result<SqlitePool, StoreError> {
    SqlitePoolOptions::new()
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await
        .map_err(db("open the database"))
}
