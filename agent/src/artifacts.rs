//! The content-addressed artifact store in the data directory: files named by their sha256,
//! written by renaming into place only after the digest is known, indexed in SQLite.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ringrift_crds::common::{Artifact, ArtifactKind};

use crate::store::{ArtifactRow, Store};
use crate::sync::checked::{Checked, FileId, SETTLE};
use crate::sync::manifest::{self, CHUNK_SIZE, Manifest};

/// An artifact operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// File system trouble.
    #[error("failed to {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The index could not be written.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// An input this agent does not hold.
    #[error("input {name} ({digest}) is not held by this agent")]
    Missing {
        /// Artifact name.
        name: String,
        /// Its digest.
        digest: String,
    },
    /// A name that cannot be a file name.
    #[error("input name {0:?} is not a plain file name")]
    BadName(String),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError {
    let path = path.display().to_string();
    move |source| ArtifactError::Io { action, path, source }
}

/// Reads `file` once for its digest and chunk digests.
///
/// # Errors
/// [`ArtifactError::Io`] when it cannot be read.
pub async fn hash(file: &Path) -> Result<Manifest, ArtifactError> {
    let owned = file.to_owned();
    tokio::task::spawn_blocking(move || manifest::hash_file(&owned, CHUNK_SIZE))
        .await
        .map_err(|e| ArtifactError::Io {
            action: "hash",
            path: file.display().to_string(),
            source: std::io::Error::other(e),
        })?
        .map_err(io("hash", file))
}

/// The stored spelling of an artifact kind.
pub fn kind_name(kind: ArtifactKind) -> &'static str {
    match kind {
        ArtifactKind::Games => "games",
        ArtifactKind::Model => "model",
        ArtifactKind::Checkpoint => "checkpoint",
    }
}

/// The hex part of a well-formed `sha256:` digest.
pub fn hex_of(digest: &str) -> Option<&str> {
    digest.strip_prefix("sha256:").filter(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

/// Whether `name` is a plain file name (no directories, not `.` or `..`).
pub fn plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0']) && name.len() <= 255
}

/// The store under `<data-dir>/artifacts`.
#[derive(Debug, Clone)]
pub struct ContentStore {
    root: PathBuf,
    checked: Arc<Checked>,
}

impl ContentStore {
    /// A store rooted at `root`.
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            checked: Arc::default(),
        }
    }

    /// The chunks of stored artifacts checked lately (so serving does not hash them again).
    pub fn checked(&self) -> &Checked {
        &self.checked
    }

    /// Records every chunk of `digest`, stored at `path`, as checked, when the file is still
    /// `id` (what it was when it was checked).
    pub async fn checked_whole(&self, digest: &str, path: &Path, id: FileId, count: usize) {
        if let Ok(meta) = tokio::fs::metadata(path).await
            && FileId::of(&meta) == id
        {
            self.checked.all(digest, id, count);
        }
    }

    /// Where the content of `digest` lives (whether or not it is there).
    pub fn path(&self, digest: &str) -> Option<PathBuf> {
        hex_of(digest).map(|h| self.root.join("sha256").join(h))
    }

    /// Where a transfer of `digest` writes until the whole checks out.
    pub fn partial_path(&self, digest: &str) -> Option<PathBuf> {
        hex_of(digest).map(|h| self.root.join("partial").join(h))
    }

    /// Moves `file` into the store as an artifact and records it with its chunk manifest. A
    /// file with content already held is dropped (same bytes).
    ///
    /// # Errors
    /// [`ArtifactError`].
    pub async fn ingest(
        &self,
        db: &Store,
        file: &Path,
        name: &str,
        kind: ArtifactKind,
    ) -> Result<Artifact, ArtifactError> {
        let mut before = tokio::fs::metadata(file).await.map_err(io("read", file))?;
        if !FileId::of(&before).settled(std::time::SystemTime::now()) {
            // Written a moment ago: wait out the file-system clock's tick, so the check below
            // can be recorded (and the first peer served needs no second hash).
            tokio::time::sleep(SETTLE).await;
            before = tokio::fs::metadata(file).await.map_err(io("read", file))?;
        }
        let hashed_at = std::time::SystemTime::now();
        let manifest = hash(file).await?;
        let dest = self.admit(db, file, name, kind_name(kind), &manifest).await?;
        let id = FileId::of(&before);
        if id.settled(hashed_at) {
            self.checked_whole(&manifest.digest, &dest, id, manifest.len())
                .await;
        }
        Ok(Artifact {
            name: name.to_owned(),
            kind,
            digest: manifest.digest,
            size_bytes: manifest.size_bytes,
            holders: Vec::new(),
        })
    }

    /// Renames `file`, whose manifest is `manifest` (already checked), into the store and
    /// records it.
    ///
    /// # Errors
    /// [`ArtifactError`].
    pub async fn admit(
        &self,
        db: &Store,
        file: &Path,
        name: &str,
        kind: &str,
        manifest: &Manifest,
    ) -> Result<PathBuf, ArtifactError> {
        let digest = &manifest.digest;
        let dest = self
            .path(digest)
            .ok_or_else(|| ArtifactError::BadName(digest.clone()))?;
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(io("create", parent))?;
        }
        if tokio::fs::try_exists(&dest).await.unwrap_or(false) {
            tokio::fs::remove_file(file).await.map_err(io("remove", file))?;
        } else {
            tokio::fs::rename(file, &dest)
                .await
                .map_err(io("move into the store", file))?;
        }
        db.put_artifact(&ArtifactRow {
            digest: digest.clone(),
            name: name.to_owned(),
            kind: kind.to_owned(),
            size_bytes: manifest.size_bytes,
            path: dest.display().to_string(),
            created_at: jiff::Timestamp::now().to_string(),
            chunk_size: manifest.chunk_size,
            chunks: manifest.joined(),
            last_used: None,
        })
        .await?;
        Ok(dest)
    }

    /// The manifest of a held artifact: recorded at ingest, or computed now (and recorded) for
    /// one indexed before manifests existed. `None` when it is not held.
    ///
    /// # Errors
    /// [`ArtifactError`] when the file or the index cannot be read.
    pub async fn manifest(&self, db: &Store, digest: &str) -> Result<Option<Manifest>, ArtifactError> {
        let Some(row) = db.artifact(digest).await? else {
            return Ok(None);
        };
        if row.chunk_size > 0 {
            return Ok(Some(Manifest {
                digest: row.digest,
                size_bytes: row.size_bytes,
                chunk_size: row.chunk_size,
                chunk_check: crate::sync::manifest::CHUNK_CHECK.to_owned(),
                chunks: Manifest::split(&row.chunks),
            }));
        }
        let path = PathBuf::from(&row.path);
        let computed = hash(&path).await?;
        if computed.digest != row.digest {
            return Err(ArtifactError::Io {
                action: "verify",
                path: row.path,
                source: std::io::Error::other("the stored content no longer matches its digest"),
            });
        }
        db.set_chunks(digest, computed.chunk_size, &computed.joined())
            .await?;
        Ok(Some(computed))
    }

    /// Makes an input artifact available as `dir/<name>` (a hard link to the stored content,
    /// or a copy across file systems).
    ///
    /// # Errors
    /// [`ArtifactError::Missing`] when it is not held here.
    pub async fn materialize(&self, artifact: &Artifact, dir: &Path) -> Result<(), ArtifactError> {
        if !plain_name(&artifact.name) {
            return Err(ArtifactError::BadName(artifact.name.clone()));
        }
        let missing = || ArtifactError::Missing {
            name: artifact.name.clone(),
            digest: artifact.digest.clone(),
        };
        let source = self.path(&artifact.digest).ok_or_else(missing)?;
        let held = tokio::fs::metadata(&source).await.map_err(|_| missing())?;
        if held.len() != artifact.size_bytes {
            return Err(missing());
        }
        let dest = dir.join(&artifact.name);
        let _ = tokio::fs::remove_file(&dest).await;
        if tokio::fs::hard_link(&source, &dest).await.is_err() {
            tokio::fs::copy(&source, &dest).await.map_err(io("copy", &dest))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_and_names() {
        let hex = "a".repeat(64);
        assert_eq!(hex_of(&format!("sha256:{hex}")), Some(hex.as_str()));
        assert_eq!(hex_of(&format!("sha256:{}", "A".repeat(64))), None);
        assert_eq!(hex_of("sha256:abc"), None);
        assert_eq!(hex_of(&format!("md5:{hex}")), None);
        assert!(plain_name("games.bin"));
        for bad in ["", ".", "..", "a/b", "../x"] {
            assert!(!plain_name(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn ingest_then_materialize() {
        let dir = std::env::temp_dir().join(format!("artifacts-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("out")).unwrap();
        std::fs::create_dir_all(dir.join("in")).unwrap();
        let db = Store::in_memory().await.unwrap();
        let store = ContentStore::new(dir.join("artifacts"));
        std::fs::write(dir.join("out/g"), b"hello").unwrap();
        let a = store
            .ingest(&db, &dir.join("out/g"), "g", ArtifactKind::Games)
            .await
            .unwrap();
        assert_eq!(
            a.digest,
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(a.size_bytes, 5);
        assert!(!dir.join("out/g").exists());
        assert_eq!(db.artifacts().await.unwrap()[0].digest, a.digest);

        store.materialize(&a, &dir.join("in")).await.unwrap();
        assert_eq!(std::fs::read(dir.join("in/g")).unwrap(), b"hello");

        let mut other = a.clone();
        other.digest = format!("sha256:{}", "0".repeat(64));
        assert!(matches!(
            store.materialize(&other, &dir.join("in")).await,
            Err(ArtifactError::Missing { .. })
        ));
        let mut evil = a.clone();
        evil.name = "../escape".into();
        assert!(matches!(
            store.materialize(&evil, &dir.join("in")).await,
            Err(ArtifactError::BadName(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
