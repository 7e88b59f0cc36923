//! Receiving one chunk: its bytes are written into the pull's file as they arrive and hashed on
//! the way (from the state the manifest says the chunk starts from), so a chunk is read from
//! the network once, copied once and hashed once. Bytes land in the file before they are
//! checked, but a chunk counts as held, and is served, only after [`ChunkSink::finish`] says its
//! bytes are the manifest's.

use std::os::unix::fs::FileExt as _;

use super::chain;
use super::manifest::Manifest;

/// One chunk being received into a file.
#[derive(Debug)]
pub struct ChunkSink<'a> {
    manifest: &'a Manifest,
    index: usize,
    file: &'a std::fs::File,
    /// Where the next byte goes.
    at: u64,
    end: u64,
    /// `None` when the manifest has no state for the chunk to start from.
    state: Option<chain::State>,
    carry: [u8; 64],
    carried: usize,
}

impl<'a> ChunkSink<'a> {
    /// Receives chunk `index` of `manifest` into `file`.
    pub fn new(manifest: &'a Manifest, index: usize, file: &'a std::fs::File) -> Self {
        let range = manifest.range(index);
        Self {
            manifest,
            index,
            file,
            at: range.start,
            end: range.end,
            state: manifest.start_of(index),
            carry: [0; 64],
            carried: 0,
        }
    }

    /// Writes and hashes the next bytes of the chunk.
    ///
    /// # Errors
    /// The file's write error; more bytes than the chunk has is [`std::io::ErrorKind::InvalidData`].
    pub fn push(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        if self.at + data.len() as u64 > self.end {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "more bytes than the chunk has",
            ));
        }
        self.file.write_all_at(data, self.at)?;
        self.at += data.len() as u64;
        let Some(state) = self.state.as_mut() else {
            return Ok(());
        };
        if self.carried > 0 {
            let take = (64 - self.carried).min(data.len());
            self.carry[self.carried..self.carried + take].copy_from_slice(&data[..take]);
            self.carried += take;
            data = &data[take..];
            if self.carried < 64 {
                return Ok(());
            }
            chain::advance(state, &self.carry);
            self.carried = 0;
        }
        let blocks = data.len() - data.len() % 64;
        chain::advance(state, &data[..blocks]);
        let rest = &data[blocks..];
        self.carry[..rest.len()].copy_from_slice(rest);
        self.carried = rest.len();
        Ok(())
    }

    /// Whether the whole chunk arrived and is the manifest's.
    pub fn finish(&self) -> bool {
        self.at == self.end
            && self
                .state
                .is_some_and(|s| self.manifest.ends(self.index, s, &self.carry[..self.carried]))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt as _;

    use super::*;
    use crate::sync::manifest::hash_file;

    fn setup(n: usize) -> (Vec<u8>, Manifest, std::path::PathBuf) {
        let data: Vec<u8> = (0..n).map(|i| u8::try_from(i * 31 % 256).unwrap()).collect();
        let path = std::env::temp_dir().join(format!("receive-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, &data).unwrap();
        let m = hash_file(&path, 256).unwrap();
        std::fs::write(&path, vec![0u8; n]).unwrap();
        (data, m, path)
    }

    #[test]
    fn pieces_of_any_size_are_written_and_verified() {
        let (data, m, path) = setup(256 * 3 + 100);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        for (index, pieces) in [
            (1, vec![1, 63, 64, 100, 28]),
            (3, vec![7, 93]),
            (0, vec![256]),
            (2, vec![200, 56]),
        ] {
            let r = m.range(index);
            let mut at = usize::try_from(r.start).unwrap();
            let mut sink = ChunkSink::new(&m, index, &file);
            for p in pieces {
                sink.push(&data[at..at + p]).unwrap();
                at += p;
            }
            assert!(sink.finish(), "chunk {index}");
        }
        let mut back = vec![0u8; data.len()];
        file.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(back, data);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn bad_short_or_long_chunks_fail() {
        let (data, m, path) = setup(600);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut bad = data[256..512].to_vec();
        bad[9] ^= 0x40;
        let mut sink = ChunkSink::new(&m, 1, &file);
        sink.push(&bad).unwrap();
        assert!(!sink.finish(), "a flipped bit");
        let mut short = ChunkSink::new(&m, 1, &file);
        short.push(&data[256..500]).unwrap();
        assert!(!short.finish(), "short");
        let mut long = ChunkSink::new(&m, 2, &file);
        assert!(long.push(&data[256..600]).is_err(), "longer than the chunk");
        let none = ChunkSink::new(&m, 7, &file);
        assert!(!none.finish(), "no such chunk");
        std::fs::remove_file(&path).unwrap();
    }
}
