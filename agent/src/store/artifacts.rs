//! The artifact index and the transfers in progress.

use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use super::{ArtifactRow, Store, StoreError, db, now};

/// A pull in progress: its manifest and which chunks are verified and written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRow {
    /// `sha256:<hex>` of the whole artifact.
    pub digest: String,
    /// Artifact name.
    pub name: String,
    /// `games`, `model` or `checkpoint`.
    pub kind: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Bytes per chunk.
    pub chunk_size: u64,
    /// Hex chunk digests, concatenated.
    pub chunks: String,
    /// One character per chunk: `1` verified and written.
    pub done: String,
    /// Priority class.
    pub class: String,
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_of(row: &SqliteRow, col: &str) -> u64 {
    u64::try_from(row.get::<i64, _>(col)).unwrap_or(0)
}

fn artifact_row(r: &SqliteRow) -> ArtifactRow {
    ArtifactRow {
        digest: r.get("digest"),
        name: r.get("name"),
        kind: r.get("kind"),
        size_bytes: u64_of(r, "size_bytes"),
        path: r.get("path"),
        created_at: r.get("created_at"),
        chunk_size: u64_of(r, "chunk_size"),
        chunks: r.get("chunks"),
        last_used: r.get("last_used"),
    }
}

impl Store {
    /// Records an artifact (replacing a row with the same digest) and forgets its transfer, in
    /// one transaction.
    ///
    /// # Errors
    /// [`StoreError`] when the write fails.
    pub async fn put_artifact(&self, a: &ArtifactRow) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db("record an artifact"))?;
        sqlx::query(
            "INSERT OR REPLACE INTO artifacts (digest, name, kind, size_bytes, path, created_at, chunk_size, chunks, last_used) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&a.digest)
        .bind(&a.name)
        .bind(&a.kind)
        .bind(i64_of(a.size_bytes))
        .bind(&a.path)
        .bind(&a.created_at)
        .bind(i64_of(a.chunk_size))
        .bind(&a.chunks)
        .bind(&a.last_used)
        .execute(&mut *tx)
        .await
        .map_err(db("record an artifact"))?;
        sqlx::query("DELETE FROM transfers WHERE digest = ?")
            .bind(&a.digest)
            .execute(&mut *tx)
            .await
            .map_err(db("record an artifact"))?;
        tx.commit().await.map_err(db("record an artifact"))?;
        Ok(())
    }

    /// Every artifact held, newest first.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub async fn artifacts(&self) -> Result<Vec<ArtifactRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM artifacts ORDER BY created_at DESC, digest")
            .fetch_all(&self.pool)
            .await
            .map_err(db("list artifacts"))?;
        Ok(rows.iter().map(artifact_row).collect())
    }

    /// One artifact by digest.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub async fn artifact(&self, digest: &str) -> Result<Option<ArtifactRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM artifacts WHERE digest = ?")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("read an artifact"))?;
        Ok(row.as_ref().map(artifact_row))
    }

    /// Stores the manifest computed for an artifact indexed without one.
    ///
    /// # Errors
    /// [`StoreError`] when the write fails.
    pub async fn set_chunks(&self, digest: &str, chunk_size: u64, chunks: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE artifacts SET chunk_size = ?, chunks = ? WHERE digest = ?")
            .bind(i64_of(chunk_size))
            .bind(chunks)
            .bind(digest)
            .execute(&self.pool)
            .await
            .map_err(db("record an artifact's chunks"))?;
        Ok(())
    }

    /// Marks an artifact used now (retention drops the least recently used first).
    ///
    /// # Errors
    /// [`StoreError`] when the write fails.
    pub async fn touch_artifact(&self, digest: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE artifacts SET last_used = ? WHERE digest = ?")
            .bind(now())
            .bind(digest)
            .execute(&self.pool)
            .await
            .map_err(db("mark an artifact used"))?;
        Ok(())
    }

    /// Forgets an artifact (its file is removed by the caller, after this).
    ///
    /// # Errors
    /// [`StoreError`] when the write fails.
    pub async fn remove_artifact(&self, digest: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM artifacts WHERE digest = ?")
            .bind(digest)
            .execute(&self.pool)
            .await
            .map_err(db("forget an artifact"))?;
        Ok(())
    }

    /// Records a transfer starting (or keeps the one recorded, to resume it). Returns the row
    /// in force.
    ///
    /// # Errors
    /// [`StoreError`] when the write fails.
    pub async fn begin_transfer(&self, t: &TransferRow) -> Result<TransferRow, StoreError> {
        sqlx::query(
            "INSERT OR IGNORE INTO transfers (digest, name, kind, size_bytes, chunk_size, chunks, done, class, started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.digest)
        .bind(&t.name)
        .bind(&t.kind)
        .bind(i64_of(t.size_bytes))
        .bind(i64_of(t.chunk_size))
        .bind(&t.chunks)
        .bind(&t.done)
        .bind(&t.class)
        .bind(now())
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(db("record a transfer"))?;
        Ok(self.transfer(&t.digest).await?.unwrap_or_else(|| t.clone()))
    }

    /// One transfer by digest.
    ///
    /// # Errors
    /// [`StoreError`] when the read fails.
    pub async fn transfer(&self, digest: &str) -> Result<Option<TransferRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM transfers WHERE digest = ?")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("read a transfer"))?;
        Ok(row.map(|r| TransferRow {
            digest: r.get("digest"),
            name: r.get("name"),
            kind: r.get("kind"),
            size_bytes: u64_of(&r, "size_bytes"),
            chunk_size: u64_of(&r, "chunk_size"),
            chunks: r.get("chunks"),
            done: r.get("done"),
            class: r.get("class"),
        }))
    }

    /// Records which chunks of a transfer are verified and written.
    ///
    /// # Errors
    /// [`StoreError`] when the write fails.
    pub async fn transfer_progress(&self, digest: &str, done: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE transfers SET done = ?, updated_at = ? WHERE digest = ?")
            .bind(done)
            .bind(now())
            .bind(digest)
            .execute(&self.pool)
            .await
            .map_err(db("record a transfer's progress"))?;
        Ok(())
    }

    /// Forgets a transfer (abandoned, or its manifest turned out wrong).
    ///
    /// # Errors
    /// [`StoreError`] when the write fails.
    pub async fn drop_transfer(&self, digest: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM transfers WHERE digest = ?")
            .bind(digest)
            .execute(&self.pool)
            .await
            .map_err(db("forget a transfer"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_transfer_resumes_and_ends_when_the_artifact_is_stored() {
        let store = Store::in_memory().await.unwrap();
        let t = TransferRow {
            digest: "sha256:x".into(),
            name: "m".into(),
            kind: "model".into(),
            size_bytes: 10,
            chunk_size: 4,
            chunks: "abc".into(),
            done: "000".into(),
            class: "model".into(),
        };
        assert_eq!(store.begin_transfer(&t).await.unwrap(), t);
        store.transfer_progress("sha256:x", "101").await.unwrap();
        let again = store.begin_transfer(&t).await.unwrap();
        assert_eq!(again.done, "101", "the recorded progress wins over a new start");
        assert!(store.transfer("sha256:x").await.unwrap().is_some());
        store
            .put_artifact(&ArtifactRow {
                digest: "sha256:x".into(),
                name: "m".into(),
                kind: "model".into(),
                size_bytes: 10,
                path: "/p".into(),
                created_at: now(),
                chunk_size: 4,
                chunks: "abc".into(),
                last_used: None,
            })
            .await
            .unwrap();
        assert!(store.transfer("sha256:x").await.unwrap().is_none());
        store.touch_artifact("sha256:x").await.unwrap();
        let a = store.artifact("sha256:x").await.unwrap().unwrap();
        assert!(a.last_used.is_some());
        assert_eq!((a.chunk_size, a.chunks.as_str()), (4, "abc"));
        store.remove_artifact("sha256:x").await.unwrap();
        assert!(store.artifacts().await.unwrap().is_empty());
    }
}
