//! Chunk manifests: an artifact is cut into fixed-size chunks, each with its own sha256, so a
//! puller verifies every chunk as it arrives (and knows which holder sent a bad one) before the
//! digest of the whole is checked.

use std::io::Read as _;
use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Chunk size of the artifacts this agent stores: big enough that a request's overhead is
/// small, small enough that a 256 MiB model spreads through a swarm in 64 pieces.
pub const CHUNK_SIZE: u64 = 4 * 1024 * 1024;

/// Largest chunk size accepted from a peer (a manifest is data from the network).
pub const MAX_CHUNK_SIZE: u64 = 64 * 1024 * 1024;

/// Hex length of one chunk digest.
const HEX: usize = 64;

/// The chunk layout and digests of one artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// `sha256:<hex>` of the whole content.
    pub digest: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Bytes per chunk (the last may be shorter).
    pub chunk_size: u64,
    /// Hex sha256 of every chunk, in order.
    pub chunks: Vec<String>,
}

/// Why a manifest cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The digest is not the one asked for.
    #[error("manifest is for {got}, not {wanted}")]
    OtherDigest {
        /// Asked for.
        wanted: String,
        /// Received.
        got: String,
    },
    /// Size differs from what the Task says.
    #[error("manifest says {got} bytes, the artifact has {wanted}")]
    OtherSize {
        /// Expected.
        wanted: u64,
        /// Received.
        got: u64,
    },
    /// Chunk size 0 or over [`MAX_CHUNK_SIZE`].
    #[error("chunk size {0} is not in 1..={MAX_CHUNK_SIZE}")]
    ChunkSize(u64),
    /// Number of chunk digests does not match size and chunk size.
    #[error("manifest lists {got} chunks, {wanted} expected")]
    ChunkCount {
        /// Expected.
        wanted: usize,
        /// Listed.
        got: usize,
    },
    /// A chunk digest that is not 64 lowercase hex digits.
    #[error("chunk {0} has a malformed digest")]
    BadChunkDigest(usize),
}

/// Number of chunks of `size` bytes cut in `chunk_size` pieces (an empty artifact has none).
pub fn chunk_count(size: u64, chunk_size: u64) -> usize {
    if chunk_size == 0 {
        return 0;
    }
    usize::try_from(size.div_ceil(chunk_size)).unwrap_or(usize::MAX)
}

fn is_hex(s: &str) -> bool {
    s.len() == HEX
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl Manifest {
    /// Byte range of chunk `index`.
    pub fn range(&self, index: usize) -> Range<u64> {
        let start = self.chunk_size.saturating_mul(index as u64).min(self.size_bytes);
        let end = start.saturating_add(self.chunk_size).min(self.size_bytes);
        start..end
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Whether the artifact is empty.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Checks a manifest received for `digest` of `size` bytes.
    ///
    /// # Errors
    /// [`ManifestError`] naming what is wrong.
    pub fn check(&self, digest: &str, size: u64) -> Result<(), ManifestError> {
        if self.digest != digest {
            return Err(ManifestError::OtherDigest {
                wanted: digest.to_owned(),
                got: self.digest.clone(),
            });
        }
        if self.size_bytes != size {
            return Err(ManifestError::OtherSize {
                wanted: size,
                got: self.size_bytes,
            });
        }
        if self.chunk_size == 0 || self.chunk_size > MAX_CHUNK_SIZE {
            return Err(ManifestError::ChunkSize(self.chunk_size));
        }
        let wanted = chunk_count(size, self.chunk_size);
        if self.chunks.len() != wanted {
            return Err(ManifestError::ChunkCount {
                wanted,
                got: self.chunks.len(),
            });
        }
        if let Some(bad) = self.chunks.iter().position(|c| !is_hex(c)) {
            return Err(ManifestError::BadChunkDigest(bad));
        }
        Ok(())
    }

    /// Whether `data` is chunk `index`.
    pub fn verify(&self, index: usize, data: &[u8]) -> bool {
        let Some(want) = self.chunks.get(index) else {
            return false;
        };
        data.len() as u64 == self.range(index).end - self.range(index).start
            && hex::encode(Sha256::digest(data)) == *want
    }

    /// The chunk digests as stored (concatenated hex).
    pub fn joined(&self) -> String {
        self.chunks.concat()
    }

    /// Splits stored chunk digests (concatenated hex) back into a list.
    pub fn split(joined: &str) -> Vec<String> {
        joined
            .as_bytes()
            .chunks(HEX)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect()
    }
}

/// Reads `path` once and returns its manifest (the digest of the whole and of every chunk).
///
/// # Errors
/// When the file cannot be read.
pub fn hash_file(path: &Path, chunk_size: u64) -> std::io::Result<Manifest> {
    let mut file = std::fs::File::open(path)?;
    let mut whole = Sha256::new();
    let mut chunk = Sha256::new();
    let mut in_chunk = 0u64;
    let mut chunks = Vec::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let mut data = &buf[..n];
        while !data.is_empty() {
            let room = usize::try_from(chunk_size - in_chunk).unwrap_or(usize::MAX);
            let take = room.min(data.len());
            chunk.update(&data[..take]);
            whole.update(&data[..take]);
            in_chunk += take as u64;
            size += take as u64;
            data = &data[take..];
            if in_chunk == chunk_size {
                chunks.push(hex::encode(chunk.finalize_reset()));
                in_chunk = 0;
            }
        }
    }
    if in_chunk > 0 {
        chunks.push(hex::encode(chunk.finalize()));
    }
    Ok(Manifest {
        digest: format!("sha256:{}", hex::encode(whole.finalize())),
        size_bytes: size,
        chunk_size,
        chunks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_of(data: &[u8], chunk: u64) -> Manifest {
        let path = std::env::temp_dir().join(format!(
            "manifest-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::write(&path, data).unwrap();
        let m = hash_file(&path, chunk).unwrap();
        std::fs::remove_file(&path).unwrap();
        m
    }

    #[test]
    fn chunks_cover_the_file_exactly() {
        assert_eq!(chunk_count(0, 4), 0);
        assert_eq!(chunk_count(4, 4), 1);
        assert_eq!(chunk_count(5, 4), 2);
        assert_eq!(chunk_count(5, 0), 0);
        let data: Vec<u8> = (0..10u8).collect();
        let m = manifest_of(&data, 4);
        assert_eq!(m.size_bytes, 10);
        assert_eq!(m.len(), 3);
        assert_eq!((m.range(0), m.range(1), m.range(2)), (0..4, 4..8, 8..10));
        assert_eq!(m.digest, format!("sha256:{}", hex::encode(Sha256::digest(&data))));
        for i in 0..3 {
            let r = m.range(i);
            let slice = &data[usize::try_from(r.start).unwrap()..usize::try_from(r.end).unwrap()];
            assert!(m.verify(i, slice), "chunk {i}");
        }
        m.check(&m.digest, 10).unwrap();
        assert_eq!(Manifest::split(&m.joined()), m.chunks);
    }

    #[test]
    fn a_bad_chunk_is_caught() {
        let data = vec![7u8; 9];
        let m = manifest_of(&data, 4);
        assert!(m.verify(0, &data[0..4]));
        let mut bad = data[0..4].to_vec();
        bad[2] ^= 1;
        assert!(!m.verify(0, &bad), "flipped bit");
        assert!(!m.verify(0, &data[0..3]), "short");
        assert!(m.verify(2, &data[8..9]), "the short last chunk");
        assert!(!m.verify(3, &data[0..1]), "no such chunk");
    }

    #[test]
    fn an_empty_file_has_no_chunks() {
        let m = manifest_of(b"", 4);
        assert!(m.is_empty());
        assert_eq!(
            m.digest,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        m.check(&m.digest, 0).unwrap();
    }

    #[test]
    fn malformed_manifests_are_refused_with_the_reason() {
        let m = manifest_of(&[1u8; 9], 4);
        let d = m.digest.clone();
        assert!(matches!(
            m.check("sha256:00", 9),
            Err(ManifestError::OtherDigest { .. })
        ));
        assert!(matches!(m.check(&d, 8), Err(ManifestError::OtherSize { .. })));
        let mut zero = m.clone();
        zero.chunk_size = 0;
        assert_eq!(zero.check(&d, 9), Err(ManifestError::ChunkSize(0)));
        let mut huge = m.clone();
        huge.chunk_size = MAX_CHUNK_SIZE + 1;
        assert!(matches!(huge.check(&d, 9), Err(ManifestError::ChunkSize(_))));
        let mut short = m.clone();
        short.chunks.pop();
        assert_eq!(
            short.check(&d, 9),
            Err(ManifestError::ChunkCount { wanted: 3, got: 2 })
        );
        let mut upper = m.clone();
        upper.chunks[1] = upper.chunks[1].to_uppercase();
        assert_eq!(upper.check(&d, 9), Err(ManifestError::BadChunkDigest(1)));
    }
}
