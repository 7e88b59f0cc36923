//! Which chunks of stored artifacts this agent has checked lately, so a holder serving the same
//! artifact to many peers hashes it once, not once per peer.
//!
//! A record holds the file's identity (inode, size, modification time) when it was checked; a
//! file changed since then no longer matches and is checked again. A change in the same tick of
//! the file-system clock as the check would keep the time, so a file modified within
//! [`SETTLE`] of a check is not recorded (the "racily clean" rule of git's index). Records
//! last [`CHECKED_FOR`]; then the bytes are checked again, which catches a disk that rots under
//! unchanged metadata.

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt as _;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// How long a check counts.
pub const CHECKED_FOR: Duration = Duration::from_secs(3600);

/// A file modified this close to a check is not recorded as checked: more than one tick of the
/// kernel's coarse clock, which file times come from (a jiffy: 10 ms at the slowest `HZ`).
pub const SETTLE: Duration = Duration::from_millis(25);

/// What identifies a file's content without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    ino: u64,
    len: u64,
    mtime: Option<SystemTime>,
}

impl FileId {
    /// The identity of the file `meta` describes.
    pub fn of(meta: &Metadata) -> Self {
        Self {
            ino: meta.ino(),
            len: meta.len(),
            mtime: meta.modified().ok(),
        }
    }

    /// Whether the file was last modified more than [`SETTLE`] before `at`.
    pub fn settled(&self, at: SystemTime) -> bool {
        self.mtime
            .and_then(|m| m.checked_add(SETTLE))
            .is_some_and(|m| m < at)
    }
}

#[derive(Debug)]
struct Record {
    id: FileId,
    at: Instant,
    chunks: Vec<bool>,
}

/// The checked chunks of stored artifacts, by digest.
#[derive(Debug, Default)]
pub struct Checked {
    map: Mutex<HashMap<String, Record>>,
}

impl Checked {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records all `count` chunks of `digest` as checked, the file being `id`.
    pub fn all(&self, digest: &str, id: FileId, count: usize) {
        self.lock().insert(
            digest.to_owned(),
            Record {
                id,
                at: Instant::now(),
                chunks: vec![true; count],
            },
        );
    }

    /// Records chunk `index` of `digest` (of `count`) as checked, the file being `id`.
    pub fn mark(&self, digest: &str, id: FileId, index: usize, count: usize) {
        let mut map = self.lock();
        let fresh = map
            .get(digest)
            .is_none_or(|r| r.id != id || r.at.elapsed() > CHECKED_FOR);
        if fresh {
            map.insert(
                digest.to_owned(),
                Record {
                    id,
                    at: Instant::now(),
                    chunks: vec![false; count],
                },
            );
        }
        if let Some(c) = map.get_mut(digest).and_then(|r| r.chunks.get_mut(index)) {
            *c = true;
        }
    }

    /// Whether chunk `index` of `digest` was checked, within [`CHECKED_FOR`], in a file that
    /// is still `id`.
    pub fn is(&self, digest: &str, id: FileId, index: usize) -> bool {
        self.lock().get(digest).is_some_and(|r| {
            r.id == id && r.at.elapsed() <= CHECKED_FOR && r.chunks.get(index).copied().unwrap_or(false)
        })
    }

    /// Forgets `digest` (dropped, or found changed).
    pub fn forget(&self, digest: &str) {
        self.lock().remove(digest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &[u8]) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("checked-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, data).unwrap();
        path
    }

    fn id(path: &std::path::Path) -> FileId {
        FileId::of(&std::fs::metadata(path).unwrap())
    }

    #[test]
    fn a_changed_file_is_no_longer_checked() {
        let path = file(b"hello");
        let c = Checked::default();
        let before = id(&path);
        c.mark("d", before, 1, 3);
        assert!(c.is("d", before, 1));
        assert!(!c.is("d", before, 0), "only the chunk checked");
        assert!(!c.is("e", before, 1), "only the digest checked");
        // Same size, new bytes: the modification time moves (or the inode, when replaced).
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, b"jello").unwrap();
        assert!(!c.is("d", id(&path), 1));
        // Marking under the new identity starts over.
        c.mark("d", id(&path), 2, 3);
        assert!(!c.is("d", id(&path), 1));
        assert!(c.is("d", id(&path), 2));
        c.all("d", id(&path), 3);
        assert!((0..3).all(|i| c.is("d", id(&path), i)));
        c.forget("d");
        assert!(!c.is("d", id(&path), 0));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_file_just_modified_has_not_settled() {
        let path = file(b"x");
        let i = id(&path);
        let now = SystemTime::now();
        assert!(
            !i.settled(now - Duration::from_secs(1)),
            "modified after the check began"
        );
        assert!(i.settled(now + SETTLE + Duration::from_millis(100)));
        std::fs::remove_file(&path).unwrap();
    }
}
