//! The digest of a pulled file computed while the pull runs: a blocking thread hashes the file
//! in order as far as its chunks are verified and written (reading them back from the page
//! cache), so the check of the whole adds little time after the last chunk arrives.

use std::os::unix::fs::FileExt as _;
use std::sync::Arc;
use std::sync::mpsc;

use sha2::{Digest as _, Sha256};

/// Hashes a file front to back as far as it is told.
#[derive(Debug)]
pub struct WholeHasher {
    tx: Option<mpsc::Sender<u64>>,
    sent: u64,
    handle: tokio::task::JoinHandle<std::io::Result<String>>,
}

impl WholeHasher {
    /// Starts hashing `file` (nothing yet).
    pub fn start(file: Arc<std::fs::File>) -> Self {
        let (tx, rx) = mpsc::channel::<u64>();
        let handle = tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1024 * 1024];
            let mut at = 0u64;
            for upto in rx {
                while at < upto {
                    let n = usize::try_from(upto - at).unwrap_or(buf.len()).min(buf.len());
                    file.read_exact_at(&mut buf[..n], at)?;
                    hasher.update(&buf[..n]);
                    at += n as u64;
                }
            }
            Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
        });
        Self {
            tx: Some(tx),
            sent: 0,
            handle,
        }
    }

    /// The file is final up to byte `upto`.
    pub fn advance(&mut self, upto: u64) {
        if upto > self.sent
            && let Some(tx) = &self.tx
        {
            self.sent = upto;
            let _ = tx.send(upto);
        }
    }

    /// The digest of the bytes up to the last [`Self::advance`]; `None` when they could not be
    /// read.
    pub async fn finish(mut self) -> Option<String> {
        self.tx = None;
        self.handle.await.ok().and_then(Result::ok)
    }
}

/// The byte where the verified prefix of a file ends: the end of the last chunk of the first
/// run of `done` chunks.
pub fn prefix_end(done: &[bool], range_end: impl Fn(usize) -> u64) -> u64 {
    match done.iter().position(|d| !d) {
        Some(0) => 0,
        Some(first_missing) => range_end(first_missing - 1),
        None if done.is_empty() => 0,
        None => range_end(done.len() - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_ends_at_the_first_missing_chunk() {
        let end = |i: usize| (i as u64 + 1) * 10;
        assert_eq!(prefix_end(&[], end), 0);
        assert_eq!(prefix_end(&[false, true], end), 0);
        assert_eq!(prefix_end(&[true, true, false, true], end), 20);
        assert_eq!(prefix_end(&[true, true, true], end), 30);
    }

    #[tokio::test]
    async fn hashing_in_steps_is_hashing_the_whole() {
        let path = std::env::temp_dir().join(format!("whole-{}", uuid::Uuid::new_v4().simple()));
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = Arc::new(std::fs::File::open(&path).unwrap());
        let mut h = WholeHasher::start(file);
        h.advance(1000);
        h.advance(500); // never backwards
        h.advance(2_000_000);
        h.advance(3_000_000);
        let digest = h.finish().await.unwrap();
        assert_eq!(digest, format!("sha256:{}", hex::encode(Sha256::digest(&data))));
        std::fs::remove_file(&path).unwrap();
    }
}
