//! Local state in SQLite (sqlx, embedded migrations): the tasks this agent started, the
//! artifacts it holds and the peers it knows. Written before anything irreversible happens, so
//! a restarted agent knows what it was doing.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, sqlite::SqliteRow};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A failed database operation.
#[derive(Debug, thiserror::Error)]
#[error("failed to {action}: {source}")]
pub struct StoreError {
    action: &'static str,
    #[source]
    source: sqlx::Error,
}

fn db(action: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError { action, source }
}

/// Where a started task stands locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum LocalState {
    /// Recorded; the process may or may not have been started.
    Starting,
    /// The process was started (pid known).
    Running,
    /// The process ended; the outcome is recorded but not yet in the Task status.
    Finished,
    /// The outcome is in the Task status (or the Task is gone): nothing left to do.
    Reported,
}

impl LocalState {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Reported => "reported",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "running" => Self::Running,
            "finished" => Self::Finished,
            "reported" => Self::Reported,
            _ => Self::Starting,
        }
    }
}

/// One started attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRow {
    /// The Task's uid.
    pub uid: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its attempt.
    pub attempt: u32,
    /// Local state.
    pub state: LocalState,
    /// The process group leader (the shim).
    pub pid: Option<u32>,
    /// Its start time, against pid reuse.
    pub pid_start: Option<u64>,
    /// The attempt's directory.
    pub dir: String,
    /// When it was recorded (RFC 3339).
    pub started_at: String,
    /// When it ended (RFC 3339).
    pub finished_at: Option<String>,
    /// The final status (JSON), once ended.
    pub outcome: Option<String>,
}

/// An artifact held in the data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArtifactRow {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Name (the file name given to workloads).
    pub name: String,
    /// `games`, `model` or `checkpoint`.
    pub kind: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Where the content is.
    pub path: String,
    /// When it was stored (RFC 3339).
    pub created_at: String,
    /// Bytes per chunk of its manifest (0: not computed yet).
    pub chunk_size: u64,
    /// Hex digests of its chunks, concatenated.
    #[serde(skip)]
    pub chunks: String,
    /// When a task last used it (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used: Option<String>,
}

/// A peer agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerRow {
    /// Agent name.
    pub name: String,
    /// Its REST endpoint.
    pub endpoint: String,
    /// When it was last heard of (RFC 3339).
    pub last_seen: String,
    /// Its gossip address (`host:port`), when it has one.
    pub gossip_addr: String,
}

/// The agent's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

fn task_row(row: &SqliteRow) -> TaskRow {
    TaskRow {
        uid: row.get("uid"),
        namespace: row.get("namespace"),
        name: row.get("name"),
        attempt: u32::try_from(row.get::<i64, _>("attempt")).unwrap_or(0),
        state: LocalState::parse(row.get("state")),
        pid: row
            .get::<Option<i64>, _>("pid")
            .and_then(|p| u32::try_from(p).ok()),
        pid_start: row
            .get::<Option<i64>, _>("pid_start")
            .and_then(|p| u64::try_from(p).ok()),
        dir: row.get("dir"),
        started_at: row.get("started_at"),
        finished_at: row.get("finished_at"),
        outcome: row.get("outcome"),
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    ///
    /// # Errors
    /// [`StoreError`] when the file cannot be opened or migrated.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // Full: a start recorded is on disk before the process is spawned.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(db("open the agent database"))?;
        Self::migrate(pool).await
    }

    /// A database in memory, for tests.
    ///
    /// # Errors
    /// [`StoreError`] when SQLite cannot start.
    pub async fn in_memory() -> Result<Self, StoreError> {
        let options =
            SqliteConnectOptions::from_str("sqlite::memory:").map_err(db("configure the database"))?;
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(db("open the database"))?;
        Self::migrate(pool).await
    }

    async fn migrate(pool: SqlitePool) -> Result<Self, StoreError> {
        MIGRATOR.run(&pool).await.map_err(|e| StoreError {
            action: "migrate the agent database",
            source: e.into(),
        })?;
        Ok(Self { pool })
    }

    /// Closes the pool, flushing everything.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Records that an attempt is about to start. Returns `false` (and changes nothing) when
    /// this uid was ever recorded before: the attempt must not start again.
    ///
    /// # Errors
    /// [`StoreError`] when the write fails (the task must not start then either).
    pub async fn begin(
        &self,
        uid: &str,
        namespace: &str,
        name: &str,
        attempt: u32,
        dir: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT OR IGNORE INTO tasks (uid, namespace, name, attempt, state, dir, started_at) VALUES (?, ?, ?, ?, 'starting', ?, ?)",
        )
        .bind(uid)
        .bind(namespace)
        .bind(name)
        .bind(i64::from(attempt))
        .bind(dir)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(db("record a task start"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the process of a started attempt.
    ///
    /// # Errors
    /// [`StoreError`] when the write fails.
    pub async fn running(&self, uid: &str, pid: u32, pid_start: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE tasks SET state = 'running', pid = ?, pid_start = ? WHERE uid = ?")
            .bind(i64::from(pid))
            .bind(i64::try_from(pid_start).unwrap_or(i64::MAX))
            .bind(uid)
            .execute(&self.pool)
            .await
            .map_err(db("record a task's process"))?;
        Ok(())
    }

    /// Records how an attempt ended (the status to write).
    ///
    /// # Errors
    /// [`StoreError`] when the write fails.
    pub async fn finished(&self, uid: &str, outcome: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE tasks SET state = 'finished', finished_at = ?, outcome = ? WHERE uid = ?")
            .bind(now())
            .bind(outcome)
            .bind(uid)
            .execute(&self.pool)
            .await
            .map_err(db("record a task's end"))?;
        Ok(())
    }

    /// Records that nothing is left to do for an attempt.
    ///
    /// # Errors
    /// [`StoreError`] when the write fails.
    pub async fn reported(&self, uid: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE tasks SET state = 'reported', finished_at = COALESCE(finished_at, ?) WHERE uid = ?",
        )
        .bind(now())
        .bind(uid)
        .execute(&self.pool)
        .await
        .map_err(db("record a task as reported"))?;
        Ok(())
    }

    /// Every attempt not yet reported.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub async fn unfinished(&self) -> Result<Vec<TaskRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM tasks WHERE state != 'reported' ORDER BY started_at")
            .fetch_all(&self.pool)
            .await
            .map_err(db("list unfinished tasks"))?;
        Ok(rows.iter().map(task_row).collect())
    }

    /// One attempt by uid.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub async fn task(&self, uid: &str) -> Result<Option<TaskRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM tasks WHERE uid = ?")
            .bind(uid)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("read a task"))?;
        Ok(row.as_ref().map(task_row))
    }

    /// Whether this uid was ever started here.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub async fn seen(&self, uid: &str) -> Result<bool, StoreError> {
        Ok(self.task(uid).await?.is_some())
    }

    /// Records a peer met through gossip.
    ///
    /// # Errors
    /// [`StoreError`] when the write fails.
    pub async fn put_peer(&self, name: &str, endpoint: &str, gossip_addr: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT OR REPLACE INTO peers (name, endpoint, last_seen, gossip_addr) VALUES (?, ?, ?, ?)",
        )
        .bind(name)
        .bind(endpoint)
        .bind(now())
        .bind(gossip_addr)
        .execute(&self.pool)
        .await
        .map_err(db("record a peer"))?;
        Ok(())
    }

    /// Every known peer.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub async fn peers(&self) -> Result<Vec<PeerRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM peers ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(db("list peers"))?;
        Ok(rows
            .iter()
            .map(|r| PeerRow {
                name: r.get("name"),
                endpoint: r.get("endpoint"),
                last_seen: r.get("last_seen"),
                gossip_addr: r.get("gossip_addr"),
            })
            .collect())
    }
}

mod artifacts;
#[cfg(test)]
mod tests;

pub use artifacts::TransferRow;
