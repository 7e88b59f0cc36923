use super::*;

#[tokio::test]
async fn an_attempt_is_recorded_once_and_walks_its_states() {
    let store = Store::in_memory().await.unwrap();
    assert!(store.begin("u1", "ns", "job-u0-0", 0, "/d/1").await.unwrap());
    assert!(
        !store.begin("u1", "ns", "job-u0-0", 0, "/d/1").await.unwrap(),
        "never twice"
    );
    let row = store.task("u1").await.unwrap().unwrap();
    assert_eq!((row.state, row.pid), (LocalState::Starting, None));

    store.running("u1", 42, 1234).await.unwrap();
    let row = store.task("u1").await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.pid, row.pid_start),
        (LocalState::Running, Some(42), Some(1234))
    );

    store.finished("u1", r#"{"phase":"Succeeded"}"#).await.unwrap();
    assert_eq!(store.unfinished().await.unwrap().len(), 1);
    store.reported("u1").await.unwrap();
    assert!(store.unfinished().await.unwrap().is_empty());
    assert!(store.seen("u1").await.unwrap());
    assert!(
        !store.begin("u1", "ns", "job-u0-0", 0, "/d/1").await.unwrap(),
        "not even after reporting"
    );
}

#[tokio::test]
async fn a_file_database_survives_reopening() {
    let dir = std::env::temp_dir().join(format!("agent-store-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("agent.db");
    {
        let store = Store::open(&path).await.unwrap();
        store.begin("u2", "ns", "t", 3, "/d").await.unwrap();
        store
            .put_artifact(&ArtifactRow {
                digest: "sha256:ab".into(),
                name: "g".into(),
                kind: "games".into(),
                size_bytes: 7,
                path: "/x".into(),
                created_at: "2026-01-01T00:00:00Z".into(),
                chunk_size: 0,
                chunks: String::new(),
                last_used: None,
            })
            .await
            .unwrap();
        store.close().await;
    }
    let store = Store::open(&path).await.unwrap();
    let rows = store.unfinished().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].attempt, rows[0].state), (3, LocalState::Starting));
    assert_eq!(store.artifacts().await.unwrap()[0].size_bytes, 7);
    assert!(store.peers().await.unwrap().is_empty());
    store.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}
