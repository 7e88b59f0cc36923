//! The SQLite store: what it acknowledges it keeps, across reopen; concurrent writers see
//! conflicts, never silent overwrites (the watch history: `store_history.rs`).

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{CTX, TempDb, job, jobs, rv};
use ringrift_apiserver::store::semantics::{Preconditions, Subresource, WriteContext, WriteError};
use ringrift_apiserver::store::{EventType, ResourceKey, Store, StoreError};
use serde_json::json;

#[tokio::test]
async fn create_get_list_and_one_global_revision() {
    let store = Store::in_memory(100).await.unwrap();
    let a = store.create(&jobs(), "default", job("a", 1), &CTX).await.unwrap();
    let plain = WriteContext {
        status_subresource: false,
        ..CTX
    };
    let ns = store
        .create(
            &ResourceKey::new("", "namespaces"),
            "",
            json!({"metadata": {"name": "team"}}),
            &plain,
        )
        .await
        .unwrap();
    let b = store.create(&jobs(), "team", job("b", 2), &CTX).await.unwrap();
    assert_eq!(
        (rv(&a), rv(&ns), rv(&b)),
        (1, 2, 3),
        "one revision counter across kinds"
    );
    assert_eq!(store.get(&jobs(), "default", "a").await.unwrap().unwrap(), a);
    assert!(store.get(&jobs(), "team", "a").await.unwrap().is_none());
    let (all, at) = store.list(&jobs(), None).await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(at, 3);
    let (team, _) = store.list(&jobs(), Some("team")).await.unwrap();
    assert_eq!(team, vec![b]);
    let dup = store
        .create(&jobs(), "default", job("a", 9), &CTX)
        .await
        .unwrap_err();
    assert!(matches!(dup, StoreError::AlreadyExists { .. }), "{dup}");
    assert_eq!(dup.to_string(), "selfplayjobs.ringrift.ai \"a\" already exists");
}

#[tokio::test]
async fn acknowledged_writes_survive_reopen_and_revisions_continue() {
    let db = TempDb::new("reopen");
    let last = {
        let store = Store::open(&db.path(), 100).await.unwrap();
        for i in 0..20 {
            store
                .create(&jobs(), "default", job(&format!("j{i}"), i), &CTX)
                .await
                .unwrap();
        }
        let mut j3 = store.get(&jobs(), "default", "j3").await.unwrap().unwrap();
        j3["spec"]["games"] = 333.into();
        let j3 = store
            .update(&jobs(), "default", "j3", j3, Subresource::Main, &CTX)
            .await
            .unwrap();
        store
            .delete(&jobs(), "default", "j4", &Preconditions::default(), &CTX)
            .await
            .unwrap();
        rv(&j3) + 1
    };
    let store = Store::open(&db.path(), 100).await.unwrap();
    assert_eq!(store.revision().await.unwrap(), last);
    let (objects, _) = store.list(&jobs(), None).await.unwrap();
    assert_eq!(objects.len(), 19);
    assert_eq!(
        store.get(&jobs(), "default", "j3").await.unwrap().unwrap()["spec"]["games"],
        333
    );
    assert!(store.get(&jobs(), "default", "j4").await.unwrap().is_none());
    let next = store
        .create(&jobs(), "default", job("after", 1), &CTX)
        .await
        .unwrap();
    assert_eq!(rv(&next), last + 1);
    let history = store.events_since(&jobs(), 0).await.unwrap();
    assert_eq!(history.len() as u64, last + 1, "the history persisted too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_read_modify_write_loses_nothing() {
    let db = TempDb::new("concurrent");
    let store = Arc::new(Store::open(&db.path(), 10_000).await.unwrap());
    store
        .create(&jobs(), "default", job("counter", 0), &CTX)
        .await
        .unwrap();
    let (writers, increments) = (8u64, 25u64);
    // Every writer reads the same version before any writes it, so the first round must conflict.
    let first_round = Arc::new(tokio::sync::Barrier::new(usize::try_from(writers).unwrap()));
    let mut handles = Vec::new();
    for _ in 0..writers {
        let store = Arc::clone(&store);
        let first_round = Arc::clone(&first_round);
        handles.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            let mut first = true;
            for _ in 0..increments {
                loop {
                    let mut obj = store.get(&jobs(), "default", "counter").await.unwrap().unwrap();
                    if std::mem::take(&mut first) {
                        first_round.wait().await;
                    }
                    tokio::task::yield_now().await;
                    obj["spec"]["games"] = (obj["spec"]["games"].as_u64().unwrap() + 1).into();
                    match store
                        .update(&jobs(), "default", "counter", obj, Subresource::Main, &CTX)
                        .await
                    {
                        Ok(_) => break,
                        Err(StoreError::Write(WriteError::Conflict(_))) => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for h in handles {
        conflicts += h.await.unwrap();
    }
    let counter = store.get(&jobs(), "default", "counter").await.unwrap().unwrap();
    assert_eq!(
        counter["spec"]["games"],
        writers * increments,
        "every acknowledged increment is there"
    );
    assert_eq!(counter["metadata"]["generation"], 1 + writers * increments);
    assert!(
        conflicts >= writers - 1,
        "all but one first-round writer met a stale resourceVersion"
    );
}

#[tokio::test]
async fn no_op_updates_keep_the_revision_and_emit_nothing() {
    let store = Store::in_memory(100).await.unwrap();
    let a = store.create(&jobs(), "default", job("a", 1), &CTX).await.unwrap();
    let same = store
        .update(&jobs(), "default", "a", a.clone(), Subresource::Main, &CTX)
        .await
        .unwrap();
    assert_eq!(rv(&same), rv(&a));
    assert_eq!(store.revision().await.unwrap(), rv(&a));
    assert_eq!(store.events_since(&jobs(), 0).await.unwrap().len(), 1);
}

#[tokio::test]
async fn status_goes_through_its_own_endpoint() {
    let store = Store::in_memory(100).await.unwrap();
    let a = store.create(&jobs(), "default", job("a", 1), &CTX).await.unwrap();
    let mut with_status = a.clone();
    with_status["status"] = json!({"phase": "Running"});
    let ignored = store
        .update(
            &jobs(),
            "default",
            "a",
            with_status.clone(),
            Subresource::Main,
            &CTX,
        )
        .await
        .unwrap();
    assert!(ignored.get("status").is_none());
    let written = store
        .update(&jobs(), "default", "a", with_status, Subresource::Status, &CTX)
        .await
        .unwrap();
    assert_eq!(written["status"]["phase"], "Running");
    assert_eq!(written["metadata"]["generation"], 1);
}

#[tokio::test]
async fn finalizers_hold_an_object_until_removed() {
    let store = Store::in_memory(100).await.unwrap();
    let mut obj = job("f", 1);
    obj["metadata"]["finalizers"] = json!(["ringrift.ai/cleanup"]);
    store.create(&jobs(), "default", obj, &CTX).await.unwrap();
    let marked = store
        .delete(&jobs(), "default", "f", &Preconditions::default(), &CTX)
        .await
        .unwrap();
    assert!(!marked.removed);
    assert_eq!(
        marked.object["metadata"]["deletionTimestamp"],
        "2026-11-24T10:00:00Z"
    );
    let mut cleared = marked.object.clone();
    cleared["metadata"]["finalizers"] = json!([]);
    store
        .update(&jobs(), "default", "f", cleared, Subresource::Main, &CTX)
        .await
        .unwrap();
    assert!(store.get(&jobs(), "default", "f").await.unwrap().is_none());
    let last = store.events_since(&jobs(), 0).await.unwrap().pop().unwrap();
    assert_eq!(last.event_type, EventType::Deleted);
}

#[tokio::test]
async fn missing_objects_and_stale_deletes_are_refused() {
    let store = Store::in_memory(100).await.unwrap();
    let err = store
        .update(
            &jobs(),
            "default",
            "nope",
            job("nope", 1),
            Subresource::Main,
            &CTX,
        )
        .await
        .unwrap_err();
    assert_eq!(err.category(), "not_found");
    store.create(&jobs(), "default", job("a", 1), &CTX).await.unwrap();
    let stale = Preconditions {
        resource_version: Some("999".into()),
        uid: None,
    };
    let err = store
        .delete(&jobs(), "default", "a", &stale, &CTX)
        .await
        .unwrap_err();
    assert_eq!(err.category(), "conflict");
    assert!(
        store.get(&jobs(), "default", "a").await.unwrap().is_some(),
        "nothing changed"
    );
}

#[tokio::test]
async fn every_write_is_fsynced_before_it_is_acknowledged() {
    let db = TempDb::new("durability");
    let store = Arc::new(Store::open(&db.path(), 100).await.unwrap());
    assert_eq!(store.write_durability().await.unwrap(), ("wal".to_owned(), 2));
    // Still so after a burst of concurrent writes (group commits) on the writer's connection.
    let writes: Vec<_> = (0..50)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .create(&jobs(), "default", job(&format!("d{i}"), i), &CTX)
                    .await
            })
        })
        .collect();
    for write in writes {
        write.await.unwrap().unwrap();
    }
    assert_eq!(store.write_durability().await.unwrap(), ("wal".to_owned(), 2));
}

#[tokio::test]
async fn dry_runs_store_nothing_and_move_no_revision() {
    let store = Store::in_memory(100).await.unwrap();
    let a = store.create(&jobs(), "default", job("a", 1), &CTX).await.unwrap();
    let mut events = store.subscribe(&jobs());
    let before = store.revision().await.unwrap();

    let would = store
        .create_dry_run(&jobs(), "default", job("b", 2), &CTX)
        .await
        .unwrap();
    assert_eq!(would["metadata"]["uid"], "uid-1");
    assert!(would["metadata"].get("resourceVersion").is_none());
    assert!(store.get(&jobs(), "default", "b").await.unwrap().is_none());
    assert!(matches!(
        store.create_dry_run(&jobs(), "default", job("a", 2), &CTX).await,
        Err(StoreError::AlreadyExists { .. })
    ));

    let mut changed = a.clone();
    changed["spec"]["games"] = json!(2005);
    let would = store
        .update_dry_run(&jobs(), "default", "a", changed, Subresource::Main, &CTX)
        .await
        .unwrap();
    assert_eq!(
        (
            would["spec"]["games"].clone(),
            would["metadata"]["generation"].clone()
        ),
        (json!(2005), json!(2))
    );
    assert_eq!(
        rv(&would),
        rv(&a),
        "a dry-run update keeps the stored resourceVersion"
    );
    let mut stale = a.clone();
    stale["metadata"]["resourceVersion"] = json!("999");
    assert!(matches!(
        store
            .update_dry_run(&jobs(), "default", "a", stale, Subresource::Main, &CTX)
            .await,
        Err(StoreError::Write(WriteError::Conflict(_)))
    ));

    let gone = store
        .delete_dry_run(&jobs(), "default", "a", &Preconditions::default(), &CTX)
        .await
        .unwrap();
    assert!(gone.removed);

    assert_eq!(store.get(&jobs(), "default", "a").await.unwrap().unwrap(), a);
    assert_eq!(store.revision().await.unwrap(), before);
    assert!(events.try_recv().is_err(), "a dry run sends no watch event");
}

#[tokio::test]
async fn a_backup_taken_while_writing_restores_exactly_and_revisions_continue_above_everything() {
    let db = TempDb::new("backup");
    let snapshot = db.path().with_extension("backup");
    let _ = std::fs::remove_file(&snapshot);
    let (backed_up_at, served) = {
        let store = Store::open(&db.path(), 100).await.unwrap();
        for i in 0..5 {
            store
                .create(&jobs(), "default", job(&format!("before-{i}"), i), &CTX)
                .await
                .unwrap();
        }
        // Online: the store is open and keeps writing.
        let at = ringrift_apiserver::store::backup::backup(&db.path(), &snapshot)
            .await
            .unwrap();
        assert_eq!(at, 5, "the snapshot is at the revision of its last write");
        for i in 0..3 {
            store
                .create(&jobs(), "default", job(&format!("after-{i}"), i), &CTX)
                .await
                .unwrap();
        }
        (at, store.revision().await.unwrap())
    };
    assert_eq!(served, 8);
    let restored = ringrift_apiserver::store::backup::restore(&db.path(), &snapshot)
        .await
        .unwrap();
    assert_eq!(
        (restored.backup_revision, restored.replaced_revision),
        (backed_up_at, served)
    );
    assert!(restored.continues_at > served);
    assert!(
        restored.kept.as_ref().is_some_and(|k| k.exists()),
        "the replaced database is kept"
    );
    let store = Store::open(&db.path(), 100).await.unwrap();
    let (objects, _) = store.list(&jobs(), None).await.unwrap();
    let names: Vec<&str> = objects
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["before-0", "before-1", "before-2", "before-3", "before-4"],
        "exactly the backed-up state"
    );
    // Every version served before is too old to watch from; new writes are above all of them.
    for seen in [1, backed_up_at, served] {
        let e = store.events_since(&jobs(), seen).await.unwrap_err();
        assert!(matches!(e, StoreError::Expired { .. }), "watch from {seen}: {e}");
    }
    let next = store
        .create(&jobs(), "default", job("new", 1), &CTX)
        .await
        .unwrap();
    assert!(rv(&next) > served, "{} after serving {served}", rv(&next));
    // A file that is not a store is refused before anything is replaced.
    std::fs::write(&snapshot, b"not a database").unwrap();
    drop(store);
    assert!(
        ringrift_apiserver::store::backup::restore(&db.path(), &snapshot)
            .await
            .is_err()
    );
    assert!(
        Store::open(&db.path(), 100)
            .await
            .unwrap()
            .get(&jobs(), "default", "new")
            .await
            .unwrap()
            .is_some()
    );
    let _ = std::fs::remove_file(&snapshot);
    if let Some(k) = restored.kept {
        let _ = std::fs::remove_file(k);
    }
}
