//! How far back the watch history reaches, kind by kind.
//!
//! The history is one table for every kind, compacted to its newest events, so a busy kind
//! (Tasks, written a thousand times a second) pushes out the events of a quiet one (Agents). A
//! watch resumes from the revision it last saw; it has missed something only if an event *of
//! its own kind* newer than that revision was compacted away, as kube-apiserver's watch cache,
//! which keeps a window per resource, decides. Judged on the whole history instead, a watcher
//! of a quiet kind whose bookmarks come less often than the history turns over was told its
//! revision was too old and had to list everything again, though it had missed nothing.
//!
//! What this cannot know, after a restart, of the compactions before it: every revision below
//! the oldest event kept then counts as gone for every kind.

use std::collections::HashMap;

/// The newest revision each kind has lost from the history.
#[derive(Debug, Default)]
pub struct Reach {
    /// Gone for every kind: what was compacted before this process kept count.
    before: u64,
    /// Gone per kind (by its storage column), since then.
    by_kind: HashMap<String, u64>,
}

impl Reach {
    /// A history that may have lost every event up to `before` (0: none).
    pub fn new(before: u64) -> Self {
        Self {
            before,
            by_kind: HashMap::new(),
        }
    }

    /// Records that the events of `kind` up to `revision` are gone.
    pub fn compacted(&mut self, kind: String, revision: u64) {
        let gone = self.by_kind.entry(kind).or_default();
        *gone = (*gone).max(revision);
    }

    /// The newest revision whose event of `kind` may be gone: a watch of that kind resumes
    /// from any revision at or above it without missing an event.
    pub fn gone(&self, kind: &str) -> u64 {
        self.by_kind.get(kind).copied().unwrap_or(0).max(self.before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_loses_only_what_was_compacted_of_it() {
        let mut reach = Reach::new(0);
        assert_eq!(reach.gone("tasks"), 0, "nothing compacted yet");
        reach.compacted("tasks".into(), 900);
        reach.compacted("agents".into(), 12);
        reach.compacted("tasks".into(), 640);
        assert_eq!(reach.gone("tasks"), 900, "the newest counts, whatever the order");
        assert_eq!(reach.gone("agents"), 12, "a quiet kind keeps its own window");
        assert_eq!(reach.gone("models"), 0, "a kind never compacted lost nothing");
    }

    #[test]
    fn what_was_compacted_before_counts_for_every_kind() {
        let mut reach = Reach::new(500);
        reach.compacted("tasks".into(), 900);
        reach.compacted("agents".into(), 12);
        assert_eq!(reach.gone("tasks"), 900);
        assert_eq!(reach.gone("agents"), 500);
        assert_eq!(reach.gone("models"), 500);
    }
}
