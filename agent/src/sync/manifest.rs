//! Chunk manifests: an artifact is cut into fixed-size chunks, and the manifest records the
//! SHA-256 state at the end of each ([`super::chain`]), so a puller checks every chunk as it
//! arrives (and knows which holder sent a bad one), and a file whose chunks all check out has the
//! artifact's digest without being read again.

use std::io::Read as _;
use std::ops::Range;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::chain;

/// Chunk size of the artifacts this agent stores: big enough that a request's overhead is
/// small, small enough that a 256 MiB model spreads through a swarm in 64 pieces.
pub const CHUNK_SIZE: u64 = 4 * 1024 * 1024;

/// Largest chunk size accepted from a peer (a manifest is data from the network).
pub const MAX_CHUNK_SIZE: u64 = 64 * 1024 * 1024;

/// How this agent's manifests check chunks: the SHA-256 state at the end of each.
pub const CHUNK_CHECK: &str = "sha256-state";

/// Hex length of one chunk state.
const HEX: usize = 64;

/// The chunk layout and chunk states of one artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// `sha256:<hex>` of the whole content.
    pub digest: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Bytes per chunk (the last may be shorter), a multiple of 64.
    pub chunk_size: u64,
    /// How chunks are checked: [`CHUNK_CHECK`] (a peer of another version may differ).
    #[serde(default)]
    pub chunk_check: String,
    /// Per chunk, in order, the SHA-256 state (hex) after it: the last one is the hex of the
    /// digest.
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
    /// Chunks checked another way.
    #[error("manifest checks chunks by {0:?}, this agent by {CHUNK_CHECK:?} (a peer of another version?)")]
    OtherCheck(String),
    /// Chunk size 0, over [`MAX_CHUNK_SIZE`] or not a multiple of 64.
    #[error("chunk size {0} is not a multiple of 64 in 64..={MAX_CHUNK_SIZE}")]
    ChunkSize(u64),
    /// Number of chunk states does not match size and chunk size.
    #[error("manifest lists {got} chunks, {wanted} expected")]
    ChunkCount {
        /// Expected.
        wanted: usize,
        /// Listed.
        got: usize,
    },
    /// A chunk state that is not 64 lowercase hex digits.
    #[error("chunk {0} has a malformed state")]
    BadChunkDigest(usize),
    /// The chunk states do not end in the artifact's digest.
    #[error("the manifest's chunk states do not end in the artifact's digest")]
    ChainEnd,
}

/// Number of chunks of `size` bytes cut in `chunk_size` pieces (an empty artifact has none).
pub fn chunk_count(size: u64, chunk_size: u64) -> usize {
    if chunk_size == 0 {
        return 0;
    }
    usize::try_from(size.div_ceil(chunk_size)).unwrap_or(usize::MAX)
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
        if self.chunk_check != CHUNK_CHECK {
            return Err(ManifestError::OtherCheck(self.chunk_check.clone()));
        }
        if self.chunk_size == 0
            || self.chunk_size > MAX_CHUNK_SIZE
            || !self.chunk_size.is_multiple_of(chain::BLOCK)
        {
            return Err(ManifestError::ChunkSize(self.chunk_size));
        }
        let wanted = chunk_count(size, self.chunk_size);
        if self.chunks.len() != wanted {
            return Err(ManifestError::ChunkCount {
                wanted,
                got: self.chunks.len(),
            });
        }
        if let Some(bad) = self.chunks.iter().position(|c| chain::from_hex(c).is_none()) {
            return Err(ManifestError::BadChunkDigest(bad));
        }
        let end = match self.chunks.last() {
            Some(last) => last.clone(),
            None => hex::encode(chain::finish(chain::INITIAL, &[], 0)),
        };
        if Some(end.as_str()) != digest.strip_prefix("sha256:") {
            return Err(ManifestError::ChainEnd);
        }
        Ok(())
    }

    /// The SHA-256 state chunk `index` starts from: the initial state for the first, the
    /// state recorded for the chunk before it otherwise.
    pub fn start_of(&self, index: usize) -> Option<chain::State> {
        match index.checked_sub(1) {
            None => Some(chain::INITIAL),
            Some(before) => self.chunks.get(before).and_then(|h| chain::from_hex(h)),
        }
    }

    /// Whether chunk `index` ends where the manifest says: `state` is the state after the
    /// chunk's whole blocks and `tail` its remaining bytes (none but in the last chunk, whose
    /// padding is added and whose end is the digest).
    pub fn ends(&self, index: usize, state: chain::State, tail: &[u8]) -> bool {
        let Some(want) = self.chunks.get(index) else {
            return false;
        };
        if index + 1 == self.len() {
            hex::encode(chain::finish(state, tail, self.size_bytes)) == *want
        } else {
            tail.is_empty() && chain::to_hex(&state) == *want
        }
    }

    /// Whether `data` is chunk `index`: SHA-256 run over it from the state the chunk before
    /// ends with gives the state recorded for it (for the last chunk, with the padding, the
    /// digest).
    pub fn verify(&self, index: usize, data: &[u8]) -> bool {
        let range = self.range(index);
        let (Some(mut state), true) = (self.start_of(index), data.len() as u64 == range.end - range.start)
        else {
            return false;
        };
        let blocks = data.len() - data.len() % 64;
        let (body, tail) = data.split_at(blocks);
        chain::advance(&mut state, body) && self.ends(index, state, tail)
    }

    /// The chunk states as stored (concatenated hex).
    pub fn joined(&self) -> String {
        self.chunks.concat()
    }

    /// Splits stored chunk states (concatenated hex) back into a list.
    pub fn split(joined: &str) -> Vec<String> {
        joined
            .as_bytes()
            .chunks(HEX)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect()
    }
}

/// Reads `path` once and returns its manifest (the digest and the state after every chunk);
/// `chunk_size` must be a multiple of 64.
///
/// # Errors
/// When the file cannot be read, changes size while it is read, or `chunk_size` is not a
/// multiple of 64.
pub fn hash_file(path: &Path, chunk_size: u64) -> std::io::Result<Manifest> {
    if chunk_size == 0 || !chunk_size.is_multiple_of(chain::BLOCK) {
        return Err(std::io::Error::other(format!(
            "chunk size {chunk_size} is not a multiple of 64"
        )));
    }
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let count = chunk_count(size, chunk_size);
    let mut buf = vec![0u8; usize::try_from(chunk_size.min(size)).unwrap_or(0)];
    let mut state = chain::INITIAL;
    let mut chunks = Vec::with_capacity(count);
    let mut digest = chain::finish(chain::INITIAL, &[], 0);
    for index in 0..count {
        let start = chunk_size * index as u64;
        let len = usize::try_from(chunk_size.min(size - start)).unwrap_or(0);
        let data = &mut buf[..len];
        file.read_exact(data)?;
        if index + 1 == count {
            digest = chain::finish(state, data, size);
            chunks.push(hex::encode(digest));
        } else {
            chain::advance(&mut state, data);
            chunks.push(chain::to_hex(&state));
        }
    }
    if file.read(&mut [0u8; 1])? != 0 {
        return Err(std::io::Error::other("the file grew while it was read"));
    }
    Ok(Manifest {
        digest: format!("sha256:{}", hex::encode(digest)),
        size_bytes: size,
        chunk_size,
        chunk_check: CHUNK_CHECK.to_owned(),
        chunks,
    })
}

#[cfg(test)]
mod tests {
    use sha2::{Digest as _, Sha256};

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

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| u8::try_from(i * 13 % 256).unwrap()).collect()
    }

    #[test]
    fn chunks_cover_the_file_exactly() {
        assert_eq!(chunk_count(0, 4), 0);
        assert_eq!(chunk_count(4, 4), 1);
        assert_eq!(chunk_count(5, 4), 2);
        assert_eq!(chunk_count(5, 0), 0);
        let data = bytes(150);
        let m = manifest_of(&data, 64);
        assert_eq!(m.size_bytes, 150);
        assert_eq!(m.len(), 3);
        assert_eq!((m.range(0), m.range(1), m.range(2)), (0..64, 64..128, 128..150));
        assert_eq!(m.digest, format!("sha256:{}", hex::encode(Sha256::digest(&data))));
        assert_eq!(
            m.chunks[2],
            hex::encode(Sha256::digest(&data)),
            "the last state is the digest"
        );
        for i in [2, 0, 1] {
            let r = m.range(i);
            let slice = &data[usize::try_from(r.start).unwrap()..usize::try_from(r.end).unwrap()];
            assert!(m.verify(i, slice), "chunk {i}, checked out of order");
        }
        m.check(&m.digest, 150).unwrap();
        assert_eq!(Manifest::split(&m.joined()), m.chunks);
    }

    #[test]
    fn one_chunk_and_whole_chunks_only() {
        for n in [1, 64, 128] {
            let data = bytes(n);
            let m = manifest_of(&data, 64);
            m.check(&m.digest, n as u64).unwrap();
            assert_eq!(
                m.digest,
                format!("sha256:{}", hex::encode(Sha256::digest(&data))),
                "{n}"
            );
            assert!((0..m.len()).all(|i| {
                let r = m.range(i);
                m.verify(
                    i,
                    &data[usize::try_from(r.start).unwrap()..usize::try_from(r.end).unwrap()],
                )
            }));
        }
        assert!(
            hash_file(Path::new("/nonexistent"), 100).is_err(),
            "not a multiple of 64"
        );
    }

    #[test]
    fn a_bad_chunk_is_caught() {
        let data = bytes(140);
        let m = manifest_of(&data, 64);
        assert!(m.verify(0, &data[0..64]));
        let mut bad = data[0..64].to_vec();
        bad[2] ^= 1;
        assert!(!m.verify(0, &bad), "flipped bit");
        assert!(!m.verify(0, &data[0..63]), "short");
        assert!(m.verify(2, &data[128..140]), "the short last chunk");
        assert!(
            !m.verify(1, &data[0..64]),
            "the right length, another chunk's bytes"
        );
        assert!(!m.verify(3, &data[0..1]), "no such chunk");
        // A state in the chain that is wrong fails both chunks that touch it.
        let mut lying = m.clone();
        lying.chunks[0] = chain::to_hex(&chain::INITIAL);
        assert!(!lying.verify(0, &data[0..64]));
        assert!(!lying.verify(1, &data[64..128]));
        assert!(lying.verify(2, &data[128..140]));
    }

    #[test]
    fn an_empty_file_has_no_chunks() {
        let m = manifest_of(b"", 64);
        assert!(m.is_empty());
        assert_eq!(
            m.digest,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        m.check(&m.digest, 0).unwrap();
        let mut other = m.clone();
        other.digest = format!("sha256:{}", "0".repeat(64));
        assert_eq!(other.check(&other.digest, 0), Err(ManifestError::ChainEnd));
    }

    #[test]
    fn malformed_manifests_are_refused_with_the_reason() {
        let m = manifest_of(&[1u8; 150], 64);
        let d = m.digest.clone();
        assert!(matches!(
            m.check("sha256:00", 150),
            Err(ManifestError::OtherDigest { .. })
        ));
        assert!(matches!(m.check(&d, 149), Err(ManifestError::OtherSize { .. })));
        let mut old = m.clone();
        old.chunk_check = String::new();
        assert_eq!(old.check(&d, 150), Err(ManifestError::OtherCheck(String::new())));
        let old: Manifest = serde_json::from_str(&format!(
            r#"{{"digest":"{d}","sizeBytes":150,"chunkSize":64,"chunks":[]}}"#
        ))
        .unwrap();
        assert!(
            matches!(old.check(&d, 150), Err(ManifestError::OtherCheck(_))),
            "a manifest of an older peer"
        );
        for size in [0, 100, MAX_CHUNK_SIZE + 64] {
            let mut odd = m.clone();
            odd.chunk_size = size;
            assert_eq!(odd.check(&d, 150), Err(ManifestError::ChunkSize(size)));
        }
        let mut short = m.clone();
        short.chunks.pop();
        assert_eq!(
            short.check(&d, 150),
            Err(ManifestError::ChunkCount { wanted: 3, got: 2 })
        );
        let mut upper = m.clone();
        upper.chunks[1] = upper.chunks[1].to_uppercase();
        assert_eq!(upper.check(&d, 150), Err(ManifestError::BadChunkDigest(1)));
        let mut end = m.clone();
        end.chunks[2] = end.chunks[1].clone();
        assert_eq!(end.check(&d, 150), Err(ManifestError::ChainEnd));
    }
}
