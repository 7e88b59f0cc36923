//! The store's one writer, with group commit.
//!
//! Every write is a request on a channel to one task that owns the writing connection. The task
//! takes the requests waiting (up to [`BATCH_MAX`]), runs them in arrival order in one
//! transaction, commits once, then publishes their events in revision order and answers each
//! request. A write is acknowledged only after the commit that holds it.
//!
//! A refused write (a name taken, a stale resourceVersion, a missing object) writes nothing and
//! leaves the others in its batch alone: SQLite undoes only the failed statement. A database
//! error (disk full, I/O) rolls the whole batch back and fails each of its writes, saying so;
//! nothing of the batch is stored and the revision does not move.
//!
//! One transaction per batch instead of per write: one WAL append and one commit for many
//! writes, and a connection whose page cache stays warm because nobody else writes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::histogram::Histogram;
use serde_json::Value;
use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::cache::{self, Objects, Stored};
use super::reach::Reach;
use super::rows::db;
use super::semantics::{
    DeleteOutcome, Preconditions, Subresource, UpdateOutcome, WriteContext, prepare_delete, prepare_update,
};
use super::types::{Deleted, EventType, ResourceKey, StoreError, WatchEvent};

/// Writes taken into one transaction at most.
pub(super) const BATCH_MAX: usize = 128;
/// Writes between two compactions of the watch history.
const COMPACT_EVERY: u64 = 32;

/// The live channels, one per kind, shared by the store (subscribers) and the writer (senders).
pub(super) type Live = Arc<std::sync::Mutex<HashMap<ResourceKey, broadcast::Sender<WatchEvent>>>>;

/// What a write does.
pub(super) enum Op {
    /// Insert a prepared new object (server-owned metadata already set).
    Create {
        /// Its name.
        name: String,
        /// The object.
        object: Value,
    },
    /// Update an object through the main endpoint or `/status`.
    Update {
        /// Its name.
        name: String,
        /// The object as sent.
        object: Value,
        /// Which endpoint.
        sub: Subresource,
    },
    /// Delete an object, or mark it for deletion while finalizers remain.
    Delete {
        /// Its name.
        name: String,
        /// What the object must still be.
        preconditions: Preconditions,
    },
}

/// One write waiting for the writer.
pub(super) struct Request {
    pub(super) resource: ResourceKey,
    pub(super) namespace: String,
    pub(super) op: Op,
    /// [`WriteContext::now`].
    pub(super) now: String,
    /// [`WriteContext::uid`].
    pub(super) uid: String,
    /// [`WriteContext::status_subresource`].
    pub(super) status_subresource: bool,
    /// [`WriteContext::generation`].
    pub(super) generation: bool,
    pub(super) reply: oneshot::Sender<Result<Written, StoreError>>,
}

/// What a write left: the object as stored (its last state when removed), and whether it is
/// gone.
pub(super) type Written = Deleted;

/// The writing task's state.
pub(super) struct Writer {
    /// The connection(s) writes go through; only this task writes.
    pub(super) pool: SqlitePool,
    /// The objects as committed; changed here only together with a commit.
    pub(super) objects: Objects,
    /// The revision of the last committed write.
    pub(super) revision: u64,
    /// Watch events kept.
    pub(super) history: u64,
    pub(super) live: Live,
    /// The revision up to which every event is in the live channels (see
    /// [`super::Store::published_revision`]).
    pub(super) published: Arc<AtomicU64>,
    /// Writes per committed transaction.
    pub(super) batch_sizes: Histogram,
    /// How far back the history reaches per kind, raised as it is compacted.
    pub(super) reach: Arc<std::sync::Mutex<Reach>>,
}

type Staged = (
    oneshot::Sender<Result<Written, StoreError>>,
    Result<(Written, Option<WatchEvent>), StoreError>,
);

impl Writer {
    /// Writes batches until every sender is gone (the store was dropped).
    pub(super) async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        let mut batch = Vec::with_capacity(BATCH_MAX);
        while requests.recv_many(&mut batch, BATCH_MAX).await > 0 {
            self.write(&mut batch).await;
        }
    }

    /// Writes one batch (and empties it).
    async fn write(&mut self, batch: &mut Vec<Request>) {
        let start = self.revision;
        let mut tx = match self.pool.begin().await {
            Ok(tx) => tx,
            Err(e) => return fail(batch.drain(..).map(|r| r.reply), &db("start a write")(e)),
        };
        let mut staged: Vec<Staged> = Vec::with_capacity(batch.len());
        // This batch's writes, for the writes after them in it (None: removed).
        let mut written: HashMap<String, Option<Arc<Stored>>> = HashMap::new();
        let mut pending = batch.drain(..);
        while let Some(request) = pending.next() {
            let ctx = WriteContext {
                now: &request.now,
                uid: &request.uid,
                status_subresource: request.status_subresource,
                generation: request.generation,
            };
            let result = self
                .stage(
                    &mut tx,
                    &mut written,
                    request.resource,
                    request.namespace,
                    request.op,
                    &ctx,
                )
                .await;
            if let Err(e @ StoreError::Database { .. }) = result {
                // The transaction may be unusable: nothing of this batch is kept.
                drop(tx);
                self.revision = start;
                let cause = cause(&e);
                let _ = request.reply.send(Err(e));
                let aborted = staged
                    .into_iter()
                    .map(|(reply, _)| reply)
                    .chain(pending.map(|r| r.reply));
                return fail_with(aborted, &cause);
            }
            staged.push((request.reply, result));
        }
        // Readers wait for the commit and the cache to change together.
        let mut objects = self.objects.write().await;
        if let Err(e) = tx.commit().await {
            drop(objects);
            self.revision = start;
            let cause = cause(&db("commit a write")(e));
            for (reply, result) in staged {
                let _ = reply.send(match result {
                    Ok(_) => Err(aborted(&cause)),
                    Err(refused) => Err(refused),
                });
            }
            return;
        }
        for (key, stored) in written {
            match stored {
                Some(stored) => objects.insert(key, stored),
                None => objects.remove(&key),
            }
        }
        drop(objects);
        self.batch_sizes
            .observe(f64::from(u32::try_from(staged.len()).unwrap_or(u32::MAX)));
        self.publish(&mut staged);
        for (reply, result) in staged {
            // A requester that went away is fine: its write is committed.
            let _ = reply.send(result.map(|(written, _)| written));
        }
    }

    /// Sends the batch's events to live watchers, in revision order.
    fn publish(&self, staged: &mut [Staged]) {
        let live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (_, result) in staged {
            let Ok((_, event)) = result else { continue };
            let Some(event) = event.take() else { continue };
            // Nobody listening is fine.
            if let Some(sender) = live.get(&event.resource) {
                let _ = sender.send(event);
            }
        }
        // After the events: a reader of this revision finds each of them in its channel.
        self.published.fetch_max(self.revision, Ordering::Release);
    }

    /// Runs one write inside the batch's transaction.
    async fn stage(
        &mut self,
        conn: &mut SqliteConnection,
        written: &mut HashMap<String, Option<Arc<Stored>>>,
        resource: ResourceKey,
        namespace: String,
        op: Op,
        ctx: &WriteContext<'_>,
    ) -> Result<(Written, Option<WatchEvent>), StoreError> {
        let target = |name| Target {
            resource,
            namespace,
            name,
        };
        match op {
            Op::Create { name, object } => {
                self.put(conn, written, target(name), EventType::Added, object, None, false)
                    .await
            }
            Op::Update { name, object, sub } => {
                let (target, old) = self.stored(written, target(name)).await?;
                match prepare_update(&old.object, object, sub, ctx)? {
                    UpdateOutcome::Unchanged => Ok((unchanged(&old.object), None)),
                    UpdateOutcome::Write(new) => {
                        self.put(conn, written, target, EventType::Modified, new, Some(old), false)
                            .await
                    }
                    UpdateOutcome::Remove(last) => {
                        self.put(conn, written, target, EventType::Deleted, last, Some(old), true)
                            .await
                    }
                }
            }
            Op::Delete { name, preconditions } => {
                let (target, old) = self.stored(written, target(name)).await?;
                match prepare_delete(&old.object, &preconditions, ctx)? {
                    DeleteOutcome::AlreadyDeleting => Ok((unchanged(&old.object), None)),
                    DeleteOutcome::MarkDeleting(marked) => {
                        self.put(
                            conn,
                            written,
                            target,
                            EventType::Modified,
                            marked,
                            Some(old),
                            false,
                        )
                        .await
                    }
                    DeleteOutcome::Remove => {
                        let last = (*old.object).clone();
                        self.put(conn, written, target, EventType::Deleted, last, Some(old), true)
                            .await
                    }
                }
            }
        }
    }

    /// The stored object a write is about, as this batch left it or else as committed, or
    /// `NotFound`.
    async fn stored(
        &self,
        written: &HashMap<String, Option<Arc<Stored>>>,
        target: Target,
    ) -> Result<(Target, Old), StoreError> {
        let key = cache::key(&target.resource, &target.namespace, &target.name);
        let found = match written.get(&key) {
            Some(in_batch) => in_batch.clone(),
            None => self.objects.read().await.get(&key).cloned(),
        };
        match found {
            Some(stored) => Ok((
                target,
                Old {
                    object: stored.object.clone(),
                    body: stored.body.clone(),
                },
            )),
            None => Err(StoreError::NotFound {
                resource: target.resource,
                name: target.name,
            }),
        }
    }

    /// Stamps the next revision on `object`, stores it (or removes it, for a delete) and records
    /// the event (with `previous`, the object before the write), compacting the history now and
    /// then. The revision moves only when every statement succeeded.
    #[allow(clippy::too_many_arguments)]
    async fn put(
        &mut self,
        conn: &mut SqliteConnection,
        written: &mut HashMap<String, Option<Arc<Stored>>>,
        target: Target,
        event_type: EventType,
        mut object: Value,
        previous: Option<Old>,
        removed: bool,
    ) -> Result<(Written, Option<WatchEvent>), StoreError> {
        let Target {
            resource,
            namespace,
            name,
        } = target;
        let revision = self.revision + 1;
        let rev_db = i64::try_from(revision).unwrap_or(i64::MAX);
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), revision.to_string().into());
        }
        let body: Arc<str> = encode(&object)?.into();
        let column = resource.column();
        let stored = if event_type == EventType::Deleted {
            sqlx::query("DELETE FROM objects WHERE resource = ? AND namespace = ? AND name = ?")
                .bind(&column)
                .bind(&namespace)
                .bind(&name)
                .execute(&mut *conn)
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
                .bind(&column)
                .bind(&namespace)
                .bind(&name)
                .bind(rev_db)
                .bind(&*body)
                .execute(&mut *conn)
                .await
        };
        match stored {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(StoreError::AlreadyExists { resource, name });
            }
            other => other.map_err(db("write an object"))?,
        };
        let (previous, previous_body) = previous.map(|old| (old.object, old.body)).unzip();
        let previous_body = previous_body.as_deref();
        sqlx::query(
            "INSERT INTO events (revision, resource, namespace, name, type, body, prev_body) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(rev_db)
        .bind(&column)
        .bind(&namespace)
        .bind(&name)
        .bind(event_type.as_str())
        .bind(&*body)
        .bind(previous_body)
        .execute(&mut *conn)
        .await
        .map_err(db("record an event"))?;
        // Compacted every so many writes rather than on each: the history holds between
        // `history` and `history + COMPACT_EVERY` events.
        if revision.is_multiple_of(COMPACT_EVERY) {
            let keep_from = rev_db.saturating_sub(i64::try_from(self.history).unwrap_or(i64::MAX)) + 1;
            let gone: Vec<(String, i64)> = sqlx::query_as(
                "SELECT resource, MAX(revision) FROM events WHERE revision < ? GROUP BY resource",
            )
            .bind(keep_from)
            .fetch_all(&mut *conn)
            .await
            .map_err(db("compact the history"))?;
            // Recorded before the commit: a reader whose snapshot lacks these events must find
            // them gone. (A batch rolled back leaves the marks higher than needed: a watcher is
            // told to list again; none misses an event.)
            {
                let mut reach = self
                    .reach
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for (kind, revision) in gone {
                    reach.compacted(kind, u64::try_from(revision).unwrap_or(0));
                }
            }
            sqlx::query("DELETE FROM events WHERE revision < ?")
                .bind(keep_from)
                .execute(&mut *conn)
                .await
                .map_err(db("compact the history"))?;
        }
        self.revision = revision;
        let object_arc = Arc::new(object.clone());
        let key = cache::key(&resource, &namespace, &name);
        let kept = (event_type != EventType::Deleted).then(|| {
            Arc::new(Stored {
                object: object_arc.clone(),
                body: body.clone(),
            })
        });
        written.insert(key, kept);
        let event = WatchEvent {
            revision,
            resource,
            namespace,
            event_type,
            object: object_arc,
            body,
            previous,
        };
        Ok((Written { object, removed }, Some(event)))
    }
}

/// The object before a write: decoded, and its stored JSON (kept for the event's previous body,
/// so it is not encoded again). Shared with the cache.
struct Old {
    object: Arc<Value>,
    body: Arc<str>,
}

/// Which object a write is about.
struct Target {
    resource: ResourceKey,
    namespace: String,
    name: String,
}

fn unchanged(object: &Value) -> Written {
    Written {
        object: object.clone(),
        removed: false,
    }
}

fn encode(object: &Value) -> Result<String, StoreError> {
    serde_json::to_string(object).map_err(|source| StoreError::Json {
        action: "encode an object",
        source,
    })
}

/// What a database error says, with its source.
fn cause(error: &StoreError) -> String {
    match std::error::Error::source(error) {
        Some(source) => format!("{error}: {source}"),
        None => error.to_string(),
    }
}

fn aborted(cause: &str) -> StoreError {
    StoreError::Unavailable {
        reason: format!("a database error rolled back the batch of writes this one was in: {cause}"),
    }
}

/// Answers every reply with the same failure.
fn fail(replies: impl Iterator<Item = oneshot::Sender<Result<Written, StoreError>>>, error: &StoreError) {
    fail_with(replies, &cause(error));
}

fn fail_with(replies: impl Iterator<Item = oneshot::Sender<Result<Written, StoreError>>>, cause: &str) {
    for reply in replies {
        let _ = reply.send(Err(aborted(cause)));
    }
}
