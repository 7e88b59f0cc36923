//! A kind's objects as they were at an earlier revision, for lists continued from a first page
//! (`continue`) and lists at an exact `resourceVersion`: the objects as stored now, with the
//! writes after that revision undone from the watch history, newest first. Pure.

use std::collections::BTreeMap;

use serde_json::Value;

use super::types::EventType;

/// One write after the revision asked for, as the history keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The object's namespace and name.
    pub key: (String, String),
    /// What the write did.
    pub event_type: EventType,
    /// The object before the write (none for an addition).
    pub previous: Option<Value>,
}

/// Undoes `changes` (oldest first, every write after the wanted revision) on `objects` (keyed
/// by namespace and name, as stored now).
pub fn rewind(
    mut objects: BTreeMap<(String, String), Value>,
    changes: Vec<Change>,
) -> BTreeMap<(String, String), Value> {
    for change in changes.into_iter().rev() {
        match (change.event_type, change.previous) {
            (EventType::Added, _) | (_, None) => {
                objects.remove(&change.key);
            }
            (EventType::Modified | EventType::Deleted, Some(previous)) => {
                objects.insert(change.key, previous);
            }
        }
    }
    objects
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn key(name: &str) -> (String, String) {
        ("default".into(), name.into())
    }

    #[test]
    fn additions_changes_and_deletions_are_undone_newest_first() {
        // At the wanted revision: a (v1), b (v1). Then: a → v2, c added, b deleted, a → v3.
        let now: BTreeMap<_, _> = [(key("a"), json!({"v": 3})), (key("c"), json!({"v": 1}))].into();
        let changes = vec![
            Change {
                key: key("a"),
                event_type: EventType::Modified,
                previous: Some(json!({"v": 1})),
            },
            Change {
                key: key("c"),
                event_type: EventType::Added,
                previous: None,
            },
            Change {
                key: key("b"),
                event_type: EventType::Deleted,
                previous: Some(json!({"v": 1})),
            },
            Change {
                key: key("a"),
                event_type: EventType::Modified,
                previous: Some(json!({"v": 2})),
            },
        ];
        let then = rewind(now, changes);
        assert_eq!(
            then,
            [(key("a"), json!({"v": 1})), (key("b"), json!({"v": 1}))].into()
        );
    }

    #[test]
    fn an_object_added_and_deleted_after_the_revision_is_not_there() {
        let changes = vec![
            Change {
                key: key("t"),
                event_type: EventType::Added,
                previous: None,
            },
            Change {
                key: key("t"),
                event_type: EventType::Deleted,
                previous: Some(json!({"v": 1})),
            },
        ];
        assert!(rewind(BTreeMap::new(), changes).is_empty());
    }
}
