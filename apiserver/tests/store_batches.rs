//! Group commit in the store: writes waiting together share a transaction, a refused write stays
//! its own, a database error fails its whole batch and leaves nothing of it behind.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::{CTX, TempDb, job, jobs, rv};
use ringrift_apiserver::store::semantics::{Subresource, WriteError};
use ringrift_apiserver::store::{Store, StoreError};

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
