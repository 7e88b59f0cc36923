//! The content-addressed artifact store in the data directory: files named by their sha256,
//! written by renaming into place only after the digest is known, indexed in SQLite.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use ringrift_crds::common::{Artifact, ArtifactKind};
use sha2::{Digest as _, Sha256};

use crate::store::{ArtifactRow, Store};

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

/// `sha256:<hex>` and the size of a file.
///
/// # Errors
/// When the file cannot be read.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((format!("sha256:{}", hex::encode(hasher.finalize())), size))
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
}

impl ContentStore {
    /// A store rooted at `root`.
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// Where the content of `digest` lives (whether or not it is there).
    pub fn path(&self, digest: &str) -> Option<PathBuf> {
        hex_of(digest).map(|h| self.root.join("sha256").join(h))
    }

    /// Moves `file` into the store as an artifact and records it. A file with content already
    /// held is dropped (same bytes).
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
        let owned = file.to_owned();
        let (digest, size) = tokio::task::spawn_blocking(move || sha256_file(&owned))
            .await
            .map_err(|e| ArtifactError::Io {
                action: "hash",
                path: file.display().to_string(),
                source: std::io::Error::other(e),
            })?
            .map_err(io("hash", file))?;
        let dest = self
            .path(&digest)
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
        let kind_name = match kind {
            ArtifactKind::Games => "games",
            ArtifactKind::Model => "model",
            ArtifactKind::Checkpoint => "checkpoint",
        };
        db.put_artifact(&ArtifactRow {
            digest: digest.clone(),
            name: name.to_owned(),
            kind: kind_name.to_owned(),
            size_bytes: size,
            path: dest.display().to_string(),
            created_at: jiff::Timestamp::now().to_string(),
        })
        .await?;
        Ok(Artifact {
            name: name.to_owned(),
            kind,
            digest,
            size_bytes: size,
            holders: Vec::new(),
        })
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
