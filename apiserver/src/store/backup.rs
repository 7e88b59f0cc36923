//! Online backups of the store and starting from one, as `etcdctl snapshot save` and
//! `etcdutl snapshot restore` do for etcd.
//!
//! A backup is SQLite's `VACUUM INTO` from a read connection of its own: one consistent
//! snapshot of the database (WAL mode lets it read while the server writes), compacted, in a
//! new file. A restore puts that file in place of the database and moves the revision counter
//! above every resourceVersion the replaced database ever served, and empties the watch
//! history: every client holding a newer version sees its next watch answered 410 Gone and
//! relists, and its next write with an old precondition a 409 — nobody silently acts on
//! state that no longer exists.

use std::path::{Path, PathBuf};

use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use super::StoreError;
use super::rows::db;

async fn connect(path: &Path, read_only: bool) -> Result<SqliteConnection, StoreError> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(read_only)
        .busy_timeout(std::time::Duration::from_secs(10));
    SqliteConnection::connect_with(&options)
        .await
        .map_err(db("open the database"))
}

async fn current_revision(conn: &mut SqliteConnection) -> Result<u64, StoreError> {
    let current: i64 = sqlx::query_scalar("SELECT current FROM revision WHERE id = 0")
        .fetch_one(&mut *conn)
        .await
        .map_err(db("read the revision"))?;
    Ok(u64::try_from(current).unwrap_or(0))
}

/// Writes a consistent snapshot of the database at `database` to `to` (which must not exist),
/// while the server may be writing. Returns the revision the snapshot is at.
///
/// # Errors
/// [`StoreError::Database`] when either file cannot be used.
pub async fn backup(database: &Path, to: &Path) -> Result<u64, StoreError> {
    let mut conn = connect(database, true).await?;
    sqlx::query("VACUUM INTO ?")
        .bind(to.to_string_lossy().into_owned())
        .execute(&mut conn)
        .await
        .map_err(db("write the backup"))?;
    conn.close().await.map_err(db("close the database"))?;
    let mut copy = connect(to, true).await?;
    current_revision(&mut copy).await
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The revision the backup was at.
    pub backup_revision: u64,
    /// The highest revision the replaced database had served (0 without one).
    pub replaced_revision: u64,
    /// The revision the store continues from: above both.
    pub continues_at: u64,
    /// Where the replaced database was moved, if there was one.
    pub kept: Option<PathBuf>,
}

/// Puts the backup `from` in place of the database at `database` (the server must not be
/// running on it), keeping the replaced one as `<database>.before-restore-<unix time>`, and
/// continues the revision above everything either served, with an empty watch history.
///
/// # Errors
/// [`StoreError::Database`] when the backup is not a store database or a file cannot be moved.
pub async fn restore(database: &Path, from: &Path) -> Result<Restored, StoreError> {
    let io = |action: &'static str| {
        move |e: std::io::Error| StoreError::Database {
            action,
            source: sqlx::Error::Io(e),
        }
    };
    // The backup must read as a store before anything is replaced.
    let backup_revision = current_revision(&mut connect(from, true).await?).await?;
    let (replaced_revision, kept) = if database.exists() {
        let replaced = current_revision(&mut connect(database, false).await?).await?;
        let kept = PathBuf::from(format!(
            "{}.before-restore-{}",
            database.display(),
            jiff::Timestamp::now().as_second()
        ));
        std::fs::rename(database, &kept).map_err(io("keep the replaced database"))?;
        for suffix in ["-wal", "-shm"] {
            let side = PathBuf::from(format!("{}{suffix}", database.display()));
            if side.exists() {
                let _ = std::fs::rename(&side, format!("{}{suffix}", kept.display()));
            }
        }
        (replaced, Some(kept))
    } else {
        (0, None)
    };
    std::fs::copy(from, database).map_err(io("copy the backup into place"))?;
    let continues_at = backup_revision.max(replaced_revision) + 1;
    let mut conn = connect(database, false).await?;
    let mut tx = conn.begin().await.map_err(db("begin the restore"))?;
    sqlx::query("DELETE FROM events")
        .execute(&mut *tx)
        .await
        .map_err(db("empty the watch history"))?;
    sqlx::query("UPDATE revision SET current = ? WHERE id = 0")
        .bind(i64::try_from(continues_at).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await
        .map_err(db("continue the revision"))?;
    tx.commit().await.map_err(db("commit the restore"))?;
    conn.close().await.map_err(db("close the database"))?;
    Ok(Restored {
        backup_revision,
        replaced_revision,
        continues_at,
        kept,
    })
}
