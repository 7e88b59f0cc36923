//! Retention (pure): which artifacts to drop when the data directory's file system passes its
//! high-water mark. Never dropped: what a running or pending task needs, what a transfer is
//! writing, and promoted models. Droppable: games outside every training window ([`in_windows`])
//! and model
//! weights or checkpoints that nothing references any more (superseded), least recently used
//! first, until usage is back under the low-water mark.

use std::collections::HashSet;

use ringrift_crds::training::window_parts;

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

/// What must stay.
#[derive(Debug, Clone, Default)]
pub struct Keep {
    /// Inputs of running or pending tasks (of this agent or any other that may pull from it).
    pub needed: HashSet<String>,
    /// Promoted models, and the current best of every loop.
    pub promoted: HashSet<String>,
    /// Games inside some training window (the newest games of a dataset a training job or loop
    /// reads).
    pub in_window: HashSet<String>,
    /// Models and checkpoints still referenced (by a `Model` object not yet superseded).
    pub referenced: HashSet<String>,
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

/// The games one selfplay job recorded into a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Namespace of the job.
    pub namespace: String,
    /// The dataset it writes.
    pub dataset: String,
    /// When it finished (the Unix epoch when its job has no completion time, as the controller
    /// counts it); `None` while it runs.
    pub finished: Option<jiff::Timestamp>,
    /// Games in it.
    pub games: u64,
    /// Its game files.
    pub digests: Vec<String>,
}

/// A reader of datasets: a `TrainingLoop`'s training, or a `TrainingJob` not finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Namespace of the reader.
    pub namespace: String,
    /// The datasets it reads.
    pub datasets: Vec<String>,
    /// The newest this many games; `None` when the window is not counted in games (all kept).
    pub games: Option<u64>,
}

/// The game files inside some window: for each reader, the newest finished parts of its
/// datasets until they hold its window (as the controller picks a training job's inputs), and
/// every part still being written (it will be the newest).
pub fn in_windows(parts: &[Part], windows: &[Window]) -> HashSet<String> {
    let mut keep: HashSet<String> = parts
        .iter()
        .filter(|p| p.finished.is_none())
        .flat_map(|p| p.digests.iter().cloned())
        .collect();
    for w in windows {
        let read: Vec<&Part> = parts
            .iter()
            .filter(|p| p.finished.is_some() && p.namespace == w.namespace && w.datasets.contains(&p.dataset))
            .collect();
        for p in window_parts(w.games, read, |p| p.finished, |p| p.games) {
            keep.extend(p.digests.iter().cloned());
        }
    }
    keep
}

/// Whether `held` may be dropped under `keep`.
pub fn droppable(held: &Held, keep: &Keep) -> bool {
    if keep.needed.contains(&held.digest) || keep.promoted.contains(&held.digest) {
        return false;
    }
    match held.kind.as_str() {
        "games" => !keep.in_window.contains(&held.digest),
        // Model weights and checkpoints: superseded once nothing references them.
        _ => !keep.referenced.contains(&held.digest),
    }
}

/// The digests to drop, in order: nothing while usage is at or under the high-water mark;
/// otherwise droppable artifacts, least recently used first, until usage would be at or under
/// the low-water mark (or nothing droppable is left).
#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss
)] // fractions of a disk size
pub fn choose(held: &[Held], keep: &Keep, disk: Disk, marks: Marks) -> Vec<String> {
    if disk.total == 0 || (disk.used as f64) <= marks.high * disk.total as f64 {
        return Vec::new();
    }
    let target = (marks.low * disk.total as f64).max(0.0) as u64;
    let mut candidates: Vec<&Held> = held.iter().filter(|h| droppable(h, keep)).collect();
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

    fn part(ns: &str, dataset: &str, finished: Option<&str>, games: u64, digest: &str) -> Part {
        Part {
            namespace: ns.into(),
            dataset: dataset.into(),
            finished: finished.map(|f| f.parse().unwrap()),
            games,
            digests: vec![digest.into()],
        }
    }

    #[test]
    fn windows_hold_the_newest_games_of_the_datasets_they_read() {
        let parts = vec![
            part("ns", "c4", Some("2026-01-01T00:00:00Z"), 100, "oldest"),
            part("ns", "c4", Some("2026-01-03T00:00:00Z"), 100, "newer"),
            part("ns", "c4", Some("2026-01-02T00:00:00Z"), 100, "older"),
            part("ns", "c4", None, 0, "running"),
            part("ns", "other", Some("2026-01-05T00:00:00Z"), 100, "unread"),
            part(
                "elsewhere",
                "c4",
                Some("2026-01-05T00:00:00Z"),
                100,
                "other-namespace",
            ),
        ];
        let window = |games| Window {
            namespace: "ns".into(),
            datasets: vec!["c4".into()],
            games,
        };
        // 150 games: the newest part (100) is not enough, the next one completes the window.
        assert_eq!(
            in_windows(&parts, &[window(Some(150))]),
            set(&["running", "newer", "older"])
        );
        assert_eq!(
            in_windows(&parts, &[window(Some(100))]),
            set(&["running", "newer"])
        );
        assert_eq!(
            in_windows(&parts, &[window(None)]),
            set(&["running", "newer", "older", "oldest"]),
            "a window not counted in games keeps the dataset"
        );
        // No reader: only what is being written stays.
        assert_eq!(in_windows(&parts, &[]), set(&["running"]));
        // Two readers: the union.
        let other = Window {
            namespace: "ns".into(),
            datasets: vec!["other".into()],
            games: Some(1),
        };
        assert_eq!(
            in_windows(&parts, &[window(Some(1)), other]),
            set(&["running", "newer", "unread"])
        );
    }

    #[test]
    fn parts_are_ordered_by_time_as_the_controller_orders_them() {
        // As text, "…00.5Z" sorts before "…00Z"; in time it is later, and it is what the
        // controller's training reads.
        let parts = vec![
            part("ns", "c4", Some("2026-01-01T00:00:00Z"), 100, "earlier"),
            part("ns", "c4", Some("2026-01-01T00:00:00.5Z"), 100, "later"),
        ];
        let window = Window {
            namespace: "ns".into(),
            datasets: vec!["c4".into()],
            games: Some(100),
        };
        assert_eq!(in_windows(&parts, &[window]), set(&["later"]));
    }

    #[test]
    fn nothing_is_dropped_under_the_high_water_mark() {
        let h = vec![held("a", "games", 100, "2026-01-01T00:00:00Z")];
        let disk = Disk {
            total: 1000,
            used: 850,
        };
        assert!(choose(&h, &Keep::default(), disk, Marks::default()).is_empty());
        assert!(choose(&h, &Keep::default(), Disk { total: 0, used: 0 }, Marks::default()).is_empty());
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
            choose(&h, &Keep::default(), FULL, Marks::default()),
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
        let keep = Keep {
            needed: set(&["needed"]),
            promoted: set(&["best"]),
            in_window: set(&["window"]),
            referenced: set(&["ref"]),
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
