//! The SQLite store: what it acknowledges it keeps, across reopen; concurrent writers see
//! conflicts, never silent overwrites; the watch history resumes or says it expired.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;

use ringrift_apiserver::store::semantics::{Preconditions, Subresource, WriteContext, WriteError};
use ringrift_apiserver::store::{EventType, ResourceKey, Store, StoreError};
use serde_json::{Value, json};

const CTX: WriteContext<'static> = WriteContext {
    now: "2026-11-24T10:00:00Z",
    uid: "uid-1",
    status_subresource: true,
};

fn jobs() -> ResourceKey {
    ResourceKey::new("ringrift.ai", "selfplayjobs")
}

fn job(name: &str, games: u64) -> Value {
    json!({"apiVersion": "ringrift.ai/v1alpha1", "kind": "SelfplayJob",
           "metadata": {"name": name, "namespace": "default"}, "spec": {"games": games}})
}

/// A database file in a fresh directory, removed on drop.
struct TempDb(PathBuf);

impl TempDb {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ringrift-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn path(&self) -> PathBuf {
        self.0.join("state.db")
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

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
async fn watch_history_resumes_in_order_and_expires_when_compacted() {
    let store = Store::in_memory(5).await.unwrap();
    let mut live = store.subscribe(&jobs());
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
async fn events_carry_the_previous_object_from_history_and_live() {
    let store = Store::in_memory(100).await.unwrap();
    let mut live = store.subscribe(&jobs());
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

/// The sum and count of a histogram, read from its Prometheus text.
fn totals(histogram: prometheus_client::metrics::histogram::Histogram) -> (String, u64) {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register("h", "h", histogram);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .trim()
            .to_owned()
    };
    (
        value("h_sum ").parse().unwrap(),
        value("h_count ").parse().unwrap(),
    )
}

/// Writes waiting together go into one transaction; a refused one (a taken name, a stale
/// resourceVersion) changes nothing for the others, and the revisions stay gapless.
#[tokio::test]
async fn writes_waiting_together_commit_together_and_refusals_stay_their_own() {
    let db = TempDb::new("batches");
    let store = Arc::new(Store::open(&db.path(), 10_000).await.unwrap());
    let mut live = store.subscribe(&jobs());
    store
        .create(&jobs(), "default", job("taken", 1), &CTX)
        .await
        .unwrap();
    // Spawned on this one thread, they all reach the writer's queue before it runs again.
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..300u64 {
        let store = Arc::clone(&store);
        writes.spawn(async move {
            let result = match i % 10 {
                0 => store.create(&jobs(), "default", job("taken", 2), &CTX).await,
                1 => {
                    let mut stale = job("taken", 3);
                    stale["metadata"]["resourceVersion"] = "999".into();
                    store
                        .update(&jobs(), "default", "taken", stale, Subresource::Main, &CTX)
                        .await
                }
                _ => {
                    store
                        .create(&jobs(), "default", job(&format!("j{i}"), i), &CTX)
                        .await
                }
            };
            (i, result)
        });
    }
    let mut revisions = Vec::new();
    while let Some(done) = writes.join_next().await {
        match done.unwrap() {
            (i, Err(StoreError::AlreadyExists { name, .. })) if i % 10 == 0 => assert_eq!(name, "taken"),
            (i, Err(StoreError::Write(WriteError::Conflict(_)))) if i % 10 == 1 => {}
            (i, Ok(obj)) if i % 10 > 1 => revisions.push(rv(&obj)),
            (i, other) => panic!("write {i}: {other:?}"),
        }
    }
    revisions.sort_unstable();
    assert_eq!(
        revisions,
        (2..=241).collect::<Vec<u64>>(),
        "one revision per stored write, no gaps"
    );
    let (requests, transactions) = totals(store.batch_sizes());
    assert_eq!(
        requests, "301.0",
        "every request was taken into a transaction once"
    );
    assert!(
        transactions < 10,
        "300 waiting writes took {transactions} transactions"
    );
    for expected in 1..=241 {
        assert_eq!(
            live.recv().await.unwrap().revision,
            expected,
            "events in revision order"
        );
    }
    drop(store);
    let reopened = Store::open(&db.path(), 10_000).await.unwrap();
    let (all, revision) = reopened.list(&jobs(), None).await.unwrap();
    assert_eq!((all.len(), revision), (241, 241));
    let taken = reopened.get(&jobs(), "default", "taken").await.unwrap().unwrap();
    assert_eq!(
        taken["spec"]["games"], 1,
        "neither the second create nor the stale update changed it"
    );
}

/// A database error in a batch fails every write of that batch, says so, and stores nothing of
/// it; the next write continues the revisions where they were.
#[tokio::test]
async fn a_database_error_fails_its_whole_batch_and_stores_nothing_of_it() {
    use sqlx::Connection as _;
    let db = TempDb::new("poison");
    let store = Arc::new(Store::open(&db.path(), 10_000).await.unwrap());
    store
        .create(&jobs(), "default", job("before", 1), &CTX)
        .await
        .unwrap();
    // A trigger that makes the database refuse one name, standing in for a full disk.
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.path().display()))
        .await
        .unwrap();
    sqlx::query(
        "CREATE TRIGGER poison BEFORE INSERT ON objects WHEN NEW.name = 'poison'
         BEGIN SELECT RAISE(ABORT, 'poisoned'); END",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let mut writes = tokio::task::JoinSet::new();
    for name in ["a", "poison", "b"] {
        let store = Arc::clone(&store);
        writes.spawn(async move { (name, store.create(&jobs(), "default", job(name, 1), &CTX).await) });
    }
    while let Some(done) = writes.join_next().await {
        match done.unwrap() {
            ("poison", Err(e @ StoreError::Database { .. })) => {
                let source = std::error::Error::source(&e).unwrap().to_string();
                assert!(source.contains("poisoned"), "{source}");
            }
            (_, Err(StoreError::Unavailable { reason })) => {
                assert!(
                    reason.contains("rolled back") && reason.contains("poisoned"),
                    "{reason}"
                );
            }
            (name, other) => panic!("{name}: {other:?}"),
        }
    }
    let (all, revision) = store.list(&jobs(), None).await.unwrap();
    assert_eq!((all.len(), revision), (1, 1), "nothing of the batch was stored");
    for name in ["a", "b", "poison"] {
        assert_eq!(
            store.get(&jobs(), "default", name).await.unwrap(),
            None,
            "{name}: reads do not see a rolled-back write"
        );
    }
    let after = store
        .create(&jobs(), "default", job("after", 1), &CTX)
        .await
        .unwrap();
    assert_eq!(rv(&after), 2, "the revision did not move for the failed batch");
}
