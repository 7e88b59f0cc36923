//! The blocks a holder reads its artifacts into to serve them, reused while it serves.
//!
//! Reading each block into fresh memory made the kernel fault in every page of it (on a
//! virtual machine, several times the cost of the copy): in a swarm every puller serves, and
//! page faults in `read` were most of the spread's page faults and a few percent of its CPU. A
//! block sent is given back when the response's body has let go of it, and kept for the next
//! read while any response is being served; when the last one ends every kept block is freed,
//! so an agent that serves nothing holds none.

use std::ops::Range;
use std::os::unix::fs::FileExt as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

/// Reusable blocks of one size.
#[derive(Debug)]
pub struct Blocks {
    size: usize,
    keep: usize,
    pool: Mutex<Pool>,
}

#[derive(Debug, Default)]
struct Pool {
    free: Vec<Vec<u8>>,
    /// Responses being served ([`Serving`]).
    active: usize,
}

impl Blocks {
    /// Blocks of `size` bytes, at most `keep` of them kept between reads.
    pub fn new(size: usize, keep: usize) -> Arc<Self> {
        Arc::new(Self {
            size: size.max(1),
            keep,
            pool: Mutex::default(),
        })
    }

    /// The size of a block: the most one [`Blocks::read`] reads.
    pub fn size(&self) -> usize {
        self.size
    }

    fn lock(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks a response as being served until the guard drops: blocks given back meanwhile are
    /// kept.
    pub fn serving(self: &Arc<Self>) -> Serving {
        self.lock().active += 1;
        Serving(self.clone())
    }

    /// Bytes `range` of `file` (at most [`Blocks::size`] of them) in a block that comes back
    /// here when the last `Bytes` of it is dropped; `None` when they cannot all be read.
    pub fn read(self: &Arc<Self>, file: &std::fs::File, range: Range<u64>) -> Option<Bytes> {
        let len = usize::try_from(range.end.checked_sub(range.start)?).ok()?;
        if len > self.size {
            return None;
        }
        let mut block = self.lock().free.pop().unwrap_or_else(|| vec![0; self.size]);
        if file.read_exact_at(&mut block[..len], range.start).is_err() {
            self.give_back(block);
            return None;
        }
        Some(Bytes::from_owner(Lent {
            block,
            len,
            home: self.clone(),
        }))
    }

    fn give_back(&self, block: Vec<u8>) {
        let mut pool = self.lock();
        if pool.active > 0 && pool.free.len() < self.keep {
            pool.free.push(block);
        }
    }

    /// Blocks kept now.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.lock().free.len()
    }
}

/// A response being served (see [`Blocks::serving`]).
#[derive(Debug)]
pub struct Serving(Arc<Blocks>);

impl Drop for Serving {
    fn drop(&mut self) {
        let mut pool = self.0.lock();
        pool.active -= 1;
        if pool.active == 0 {
            pool.free = Vec::new();
        }
    }
}

/// A block lent to a response's body.
struct Lent {
    block: Vec<u8>,
    len: usize,
    home: Arc<Blocks>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.block[..self.len]
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        self.home.give_back(std::mem::take(&mut self.block));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file holding `bytes`, already unlinked.
    fn file(bytes: &[u8]) -> std::fs::File {
        let path = std::env::temp_dir().join(format!("blocks-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, bytes).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    #[test]
    fn a_block_holds_exactly_the_range_asked_for() {
        let data: Vec<u8> = (0..=255).collect();
        let f = file(&data);
        let blocks = Blocks::new(64, 2);
        let _serving = blocks.serving();
        assert_eq!(&blocks.read(&f, 10..74).unwrap()[..], &data[10..74]);
        assert_eq!(&blocks.read(&f, 250..256).unwrap()[..], &data[250..256]);
        assert!(blocks.read(&f, 0..65).is_none(), "more than a block");
        assert!(blocks.read(&f, 250..257).is_none(), "past the end of the file");
        assert_eq!(blocks.kept(), 1, "a failed read gives its block back");
    }

    #[test]
    fn a_block_is_reused_while_a_response_is_served() {
        let f = file(&[7; 100]);
        let blocks = Blocks::new(32, 4);
        let serving = blocks.serving();
        let first = blocks.read(&f, 0..32).unwrap();
        let at = first.as_ptr();
        let held = first.slice(8..16);
        drop(first);
        assert_eq!(blocks.kept(), 0, "a slice still holds the block");
        drop(held);
        assert_eq!(blocks.kept(), 1);
        let again = blocks.read(&f, 32..40).unwrap();
        assert_eq!(again.as_ptr(), at, "the same memory, not a fresh block");
        assert_eq!(&again[..], &[7; 8]);
        drop(again);
        drop(serving);
        assert_eq!(blocks.kept(), 0, "nothing kept once nothing is served");
    }

    #[test]
    fn no_more_than_keep_are_kept_and_none_after_the_last_response() {
        let f = file(&[1; 100]);
        let blocks = Blocks::new(10, 2);
        let one = blocks.serving();
        let two = blocks.serving();
        let read: Vec<Bytes> = (0..5)
            .map(|i| blocks.read(&f, i * 10..i * 10 + 10).unwrap())
            .collect();
        drop(read);
        assert_eq!(blocks.kept(), 2);
        drop(one);
        assert_eq!(blocks.kept(), 2, "another response is still served");
        let late = blocks.read(&f, 0..10).unwrap();
        drop(two);
        assert_eq!(blocks.kept(), 0);
        drop(late);
        assert_eq!(
            blocks.kept(),
            0,
            "a block sent after the last response ended is freed"
        );
    }
}
