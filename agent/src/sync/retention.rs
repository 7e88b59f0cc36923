//! Retention (pure): which artifacts to drop when the data directory's file system passes its
//! high-water mark. Never dropped: what the fleet still needs, as the controller reads it too
//! ([`Needed`]: inputs of unfinished tasks, promoted models, every `Model`'s weights, games
//! inside a training window), and what a transfer here is writing. So retention never takes a
//! needed artifact below its copies: it takes none of its copies at all. Droppable: the rest,
//! least recently used first, until usage is back under the low-water mark.

use ringrift_crds::durability::Needed;

/// One held artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// `sha256:<hex>`.
    pub digest: String,
    /// `games`, `model` or `checkpoint`.
    pub kind: String,
    /// Bytes on disk.
    pub size_bytes: u64,
    /// When it was last used or stored (RFC 3339; they sort as text).
    pub last_used: String,
}

/// The file system's state, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disk {
    /// Size of the file system.
    pub total: u64,
    /// Bytes in use.
    pub used: u64,
}

/// The marks, as fractions of the file system.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Marks {
    /// Start dropping above this.
    pub high: f64,
    /// Stop once under this.
    pub low: f64,
}

impl Default for Marks {
    fn default() -> Self {
        Self {
            high: 0.85,
            low: 0.75,
        }
    }
}

/// Whether `held` may be dropped: whether the fleet no longer needs it.
pub fn droppable(held: &Held, needed: &Needed) -> bool {
    !needed.keeps(&held.digest, held.kind == "games")
}

/// The digests to drop, in order: nothing while usage is at or under the high-water mark;
/// otherwise droppable artifacts, least recently used first, until usage would be at or under
/// the low-water mark (or nothing droppable is left).
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)] // fractions of a disk size
pub fn choose(held: &[Held], needed: &Needed, disk: Disk, marks: Marks) -> Vec<String> {
    if disk.total == 0 || (disk.used as f64) <= marks.high * disk.total as f64 {
        return Vec::new();
    }
    let target = (marks.low * disk.total as f64).max(0.0) as u64;
    let mut candidates: Vec<&Held> = held.iter().filter(|h| droppable(h, needed)).collect();
    candidates.sort_by(|a, b| a.last_used.cmp(&b.last_used).then(a.digest.cmp(&b.digest)));
    let mut used = disk.used;
    let mut out = Vec::new();
    for h in candidates {
        if used <= target {
            break;
        }
        used = used.saturating_sub(h.size_bytes);
        out.push(h.digest.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn held(d: &str, kind: &str, size: u64, used: &str) -> Held {
        Held {
            digest: d.into(),
            kind: kind.into(),
            size_bytes: size,
            last_used: used.into(),
        }
    }

    fn set(items: &[&str]) -> HashSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    const FULL: Disk = Disk {
        total: 1000,
        used: 900,
    };

    #[test]
    fn nothing_is_dropped_under_the_high_water_mark() {
        let h = vec![held("a", "games", 100, "2026-01-01T00:00:00Z")];
        let disk = Disk {
            total: 1000,
            used: 850,
        };
        assert!(choose(&h, &Needed::default(), disk, Marks::default()).is_empty());
        assert!(
            choose(
                &h,
                &Needed::default(),
                Disk { total: 0, used: 0 },
                Marks::default()
            )
            .is_empty()
        );
    }

    #[test]
    fn oldest_droppable_first_until_under_the_low_water_mark() {
        let h = vec![
            held("new", "games", 100, "2026-01-03T00:00:00Z"),
            held("old", "games", 100, "2026-01-01T00:00:00Z"),
            held("mid", "games", 100, "2026-01-02T00:00:00Z"),
        ];
        // 900 used, low mark 750: two drops of 100 reach 700.
        assert_eq!(
            choose(&h, &Needed::default(), FULL, Marks::default()),
            ["old", "mid"]
        );
    }

    #[test]
    fn needed_promoted_windowed_and_referenced_stay() {
        let h = vec![
            held("needed", "games", 300, "2026-01-01T00:00:00Z"),
            held("best", "model", 300, "2026-01-01T00:00:01Z"),
            held("window", "games", 300, "2026-01-01T00:00:02Z"),
            held("ref", "checkpoint", 300, "2026-01-01T00:00:03Z"),
            held("stale-model", "model", 10, "2026-01-01T00:00:04Z"),
            held("stale-games", "games", 10, "2026-01-01T00:00:05Z"),
        ];
        let keep = Needed {
            inputs: set(&["needed"]),
            promoted: set(&["best"]),
            in_window: set(&["window"]),
            models: set(&["ref"]),
            checkpoints: set(&[]),
        };
        assert_eq!(
            choose(&h, &keep, FULL, Marks::default()),
            ["stale-model", "stale-games"],
            "all that may go goes, even if usage stays high"
        );
        // A needed model is kept even when referenced nowhere; games needed though outside windows too.
        assert!(!droppable(&held("needed", "model", 1, ""), &keep));
        assert!(!droppable(&held("best", "games", 1, ""), &keep));
        assert!(
            droppable(&held("window", "model", 1, ""), &keep),
            "windows hold games only"
        );
    }
}
