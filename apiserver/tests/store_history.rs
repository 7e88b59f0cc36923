//! The store's watch history: resumed in commit order with each event's previous object, and
//! expired only when events of the watched kind were compacted away.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{CTX, TempDb, job, jobs, rv};
use ringrift_apiserver::store::semantics::{Preconditions, Subresource};
use ringrift_apiserver::store::{EventType, ResourceKey, Store, StoreError};

/// Job `a` created with 1 game, changed to 2, deleted: revisions 1, 2 and 3.
async fn create_change_delete(store: &Store) {
    let a = store.create(&jobs(), "default", job("a", 1), &CTX).await.unwrap();
    let mut changed = a.clone();
    changed["spec"]["games"] = 2.into();
    store
        .update(&jobs(), "default", "a", changed, Subresource::Main, &CTX)
        .await
        .unwrap();
    store
        .delete(&jobs(), "default", "a", &Preconditions::default(), &CTX)
        .await
        .unwrap();
}

#[tokio::test]
async fn watch_history_resumes_in_order_and_expires_when_compacted() {
    let store = Store::in_memory(5).await.unwrap();
    let mut live = store.subscribe(&jobs());
    create_change_delete(&store).await;

    let events = store.events_since(&jobs(), 0).await.unwrap();
    let kinds: Vec<(u64, EventType)> = events.iter().map(|e| (e.revision, e.event_type)).collect();
    assert_eq!(
        kinds,
        [
            (1, EventType::Added),
            (2, EventType::Modified),
            (3, EventType::Deleted)
        ]
    );
    assert_eq!(
        rv(&events[2].object),
        3,
        "a deletion is stamped with its own revision"
    );
    assert_eq!(store.events_since(&jobs(), 2).await.unwrap().len(), 1);
    for expected in [1, 2, 3] {
        assert_eq!(
            live.recv().await.unwrap().revision,
            expected,
            "live events in commit order"
        );
    }

    // The history is compacted every 32 writes: at revision 32 the newest 5 events (28..=32)
    // are kept, so resuming works from 27 on.
    for i in 0..29 {
        store
            .create(&jobs(), "default", job(&format!("n{i}"), 1), &CTX)
            .await
            .unwrap();
    }
    assert_eq!(store.revision().await.unwrap(), 32);
    assert_eq!(store.events_since(&jobs(), 27).await.unwrap().len(), 5);
    let err = store.events_since(&jobs(), 26).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Expired {
                requested: 26,
                oldest: 27
            }
        ),
        "{err}"
    );
    assert!(
        store.events_since(&jobs(), 32).await.unwrap().is_empty(),
        "up to date is not expired"
    );
}

#[tokio::test]
async fn a_quiet_kinds_watch_outlives_a_busy_kinds_history() {
    // One history for every kind, 5 events kept: the busy kind's writes push the quiet kind's
    // event out, yet a watcher of the quiet kind missed nothing of its own kind, as with
    // upstream's watch cache (a window per resource). Only its own kind's compaction, or a
    // restart, makes its version too old.
    let db = TempDb::new("reach");
    let gauntlets = ResourceKey::new("ringrift.ai", "gauntletjobs");
    let store = Store::open(&db.path(), 5).await.unwrap();
    let quiet = store
        .create(&gauntlets, "default", job("g", 1), &CTX)
        .await
        .unwrap();
    let seen = rv(&quiet);
    assert_eq!(seen, 1);
    for i in 0..63 {
        store
            .create(&jobs(), "default", job(&format!("n{i}"), 1), &CTX)
            .await
            .unwrap();
    }
    assert_eq!(
        store.revision().await.unwrap(),
        64,
        "compacted twice, at 32 and 64"
    );
    assert!(
        store.events_since(&gauntlets, seen).await.unwrap().is_empty(),
        "nothing of its kind since: not expired"
    );
    assert!(
        store.list_at(&gauntlets, None, seen).await.is_ok(),
        "a list at that version is whole too"
    );
    let busy = store.events_since(&jobs(), seen).await.unwrap_err();
    assert!(
        matches!(
            busy,
            StoreError::Expired {
                requested: 1,
                oldest: 59
            }
        ),
        "{busy}"
    );

    // A quiet kind's own write, then compacted away: now its old version is too old, and the
    // new one is not.
    let again = store
        .create(&gauntlets, "default", job("g2", 1), &CTX)
        .await
        .unwrap();
    let mut next = rv(&again);
    for i in 0..32 {
        let j = store
            .create(&jobs(), "default", job(&format!("m{i}"), 1), &CTX)
            .await
            .unwrap();
        next = next.max(rv(&j));
    }
    let e = store.events_since(&gauntlets, seen).await.unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::Expired {
                requested: 1,
                oldest: 65
            }
        ),
        "{e}"
    );
    assert!(
        store
            .events_since(&gauntlets, rv(&again))
            .await
            .unwrap()
            .is_empty()
    );
    drop(store);

    // Reopened, the store cannot know which kinds the compactions before it took: below the
    // oldest event kept, every kind's version is too old; above it, the history answers.
    let store = Store::open(&db.path(), 5).await.unwrap();
    let e = store.events_since(&gauntlets, rv(&again)).await.unwrap_err();
    assert!(matches!(e, StoreError::Expired { .. }), "{e}");
    assert_eq!(store.events_since(&jobs(), next - 2).await.unwrap().len(), 2);
}

#[tokio::test]
async fn events_carry_the_previous_object_from_history_and_live() {
    let store = Store::in_memory(100).await.unwrap();
    let mut live = store.subscribe(&jobs());
    create_change_delete(&store).await;
    let history = store.events_since(&jobs(), 0).await.unwrap();
    let previous_games: Vec<Option<u64>> = history
        .iter()
        .map(|e| e.previous.as_ref().and_then(|p| p["spec"]["games"].as_u64()))
        .collect();
    assert_eq!(previous_games, [None, Some(1), Some(2)]);
    for expected in [None, Some(1), Some(2)] {
        let event = live.recv().await.unwrap();
        assert_eq!(
            event.previous.as_ref().and_then(|p| p["spec"]["games"].as_u64()),
            expected
        );
    }
}
