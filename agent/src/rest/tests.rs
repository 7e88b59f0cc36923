use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ringrift_crds::task::Role;
use tokio::sync::watch;

use super::openapi::{ROUTES, document, route_id};
use super::{Rest, authorized, routes};
use crate::artifacts::ContentStore;
use crate::detect::simulate::SimulatedSource;
use crate::detect::{GpuSource as _, Host, Inventory};
use crate::exec::classify::Stop;
use crate::exec::{RunHandle, Runs};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::store::Store;

const TOKEN: &str = "s3cret-token";
const PEER_TOKEN: &str = "peer-token";
const METRICS_TOKEN: &str = "metrics-token";
/// sha256 of the artifact every test agent holds: `hello`.
const HELLO: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
/// sha256 of `world`, which no test agent holds until it is pushed.
const WORLD: &str = "sha256:486ea46224d1bb4fb680f34f7c9ad96a8f24ec88be73ea8e5a6c65260e9cb8a7";

async fn rest(ready: bool) -> (Arc<Rest>, watch::Sender<bool>) {
    let dir = std::env::temp_dir().join(format!(
        "rest-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let mut source = SimulatedSource::new("2xA100-40GB".parse().unwrap(), "n1");
    let inventory = Inventory {
        gpus: source.sample().unwrap(),
        simulated: true,
        host: Host {
            disk_free_mib: 10_000,
            ..Host::default()
        },
        ..Inventory::default()
    };
    let (db, content, metrics) = (
        Store::in_memory().await.unwrap(),
        ContentStore::new(dir.join("artifacts")),
        Metrics::default(),
    );
    let inventory = watch::channel(inventory).1;
    let sync = Arc::new(crate::sync::Context {
        name: "n1".into(),
        client: client.clone(),
        db: db.clone(),
        content: content.clone(),
        state: Arc::new(crate::sync::state::SyncState::new(4, 0, PEER_TOKEN.into())),
        metrics: metrics.sync.clone(),
        trust: metrics.trust.clone(),
        inventory: inventory.clone(),
    });
    let node = Arc::new(Node {
        name: "n1".into(),
        client,
        db,
        content,
        data_dir: dir.clone(),
        exe: PathBuf::from("/bin/true"),
        grace: Duration::from_secs(1),
        progress_interval: Duration::from_secs(1),
        inventory,
        runs: Runs::default(),
        metrics,
        version: "test".into(),
        sync,
    });
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("hello"), b"hello").unwrap();
    node.content
        .ingest(
            &node.db,
            &dir.join("hello"),
            "hello",
            ringrift_crds::common::ArtifactKind::Games,
        )
        .await
        .unwrap();
    for (name, done) in [("running", false), ("finished", true)] {
        let run = Arc::new(RunHandle::new(
            &format!("uid-{name}"),
            "ns",
            name,
            0,
            Role::Selfplay,
            vec![],
            dir.join(name),
        ));
        for i in 0..5 {
            run.log.push(format!("{name} line {i}"));
        }
        if done {
            run.mark_done();
        }
        node.runs.insert(run);
    }
    let (ready_tx, ready_rx) = watch::channel(ready);
    let rest = Arc::new(Rest {
        node,
        token: TOKEN.into(),
        peer_token: Some(PEER_TOKEN.into()),
        metrics_token: Some(METRICS_TOKEN.into()),
        ready: ready_rx,
    });
    (rest, ready_tx)
}

async fn call(rest: &Arc<Rest>, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, String) {
    let mut request = warp::test::request()
        .method(&method.to_uppercase())
        .path(path)
        .body(body);
    if let Some(t) = token {
        request = request.header("authorization", format!("Bearer {t}"));
    }
    let response = request.reply(&routes(rest.clone())).await;
    (
        response.status().as_u16(),
        String::from_utf8_lossy(response.body()).into_owned(),
    )
}

fn concrete(path: &str) -> String {
    path.replace("{namespace}", "ns")
        .replace("{name}", "running")
        .replace("{digest}", HELLO)
}

#[test]
fn tokens_are_compared_exactly() {
    assert!(authorized(Some("Bearer abc"), "abc"));
    assert!(!authorized(Some("Bearer abd"), "abc"));
    assert!(!authorized(Some("Bearer ab"), "abc"));
    assert!(!authorized(Some("Basic abc"), "abc"));
    assert!(!authorized(None, "abc"));
    assert!(!authorized(Some("Bearer "), ""), "an empty token never matches");
}

#[tokio::test]
async fn every_documented_route_is_served_with_the_token() {
    let (rest, _ready) = rest(true).await;
    for route in ROUTES {
        let path = concrete(route.path);
        let (target, body): (String, &[u8]) = match route.method {
            "post" => (path.clone(), b"{}"),
            "put" => (
                format!("{}?name=world&kind=games", path.replace(HELLO, WORLD)),
                b"world",
            ),
            _ => (path.clone(), b""),
        };
        let (code, text) = call(&rest, route.method, &target, Some(TOKEN), body).await;
        assert_eq!(code, route.ok, "{} {target}: {text}", route.method);
        assert_eq!(route_id(route.method, &path), route.id);
    }
}

#[tokio::test]
async fn only_health_is_open_without_the_token() {
    let (rest, _ready) = rest(true).await;
    for route in ROUTES {
        let path = concrete(route.path);
        for token in [None, Some("wrong")] {
            let (code, text) = call(&rest, route.method, &path, token, b"").await;
            if route.auth {
                assert_eq!(code, 401, "{} {path} with {token:?}: {text}", route.method);
                assert!(text.contains(r#""code":"Unauthorized""#), "{text}");
            } else {
                assert_eq!(code, 200, "{path}");
            }
        }
    }
    let response = warp::test::request()
        .path("/v1/node")
        .reply(&routes(rest.clone()))
        .await;
    assert_eq!(
        response.headers()["www-authenticate"],
        "Bearer realm=\"ringrift-agent\""
    );
    // A refused cancel stopped nothing.
    assert!(!rest.node.runs.by_name("ns", "running").unwrap().is_done());
    assert!(
        rest.node
            .runs
            .by_name("ns", "running")
            .unwrap()
            .stop_requests()
            .borrow()
            .is_none()
    );
}

#[tokio::test]
async fn readiness_follows_the_flag() {
    let (rest, ready) = rest(false).await;
    let (code, text) = call(&rest, "GET", "/readyz", None, b"").await;
    assert_eq!(code, 503);
    assert!(text.contains(r#""code":"NotReady""#));
    ready.send_replace(true);
    assert_eq!(call(&rest, "GET", "/readyz", None, b"").await.0, 200);
}

#[tokio::test]
async fn unknown_routes_methods_and_names_get_json_errors() {
    let (rest, _ready) = rest(true).await;
    let cases: &[(&str, &str, u16, &str)] = &[
        ("GET", "/nope", 404, "NotFound"),
        ("GET", "/v1/tasks/ns/missing", 404, "NotFound"),
        ("DELETE", "/v1/tasks", 405, "MethodNotAllowed"),
        ("GET", "/v1/tasks/Bad_NS/x", 400, "InvalidPath"),
        ("GET", "/v1/tasks/ns/-x-", 400, "InvalidPath"),
        ("GET", "/v1/tasks/ns/running/logs?tail=abc", 400, "BadRequest"),
        ("GET", "/v1/tasks/ns/running/logs?bogus=1", 400, "BadRequest"),
        ("GET", "/v1/tasks/ns/running/logs?tail=100001", 400, "BadRequest"),
    ];
    for (method, path, status, code) in cases {
        let (got, text) = call(&rest, method, path, Some(TOKEN), b"").await;
        assert_eq!(got, *status, "{method} {path}: {text}");
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["code"], *code, "{method} {path}: {text}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
}

#[tokio::test]
async fn logs_return_the_tail() {
    let (rest, _ready) = rest(true).await;
    let (code, text) = call(&rest, "GET", "/v1/tasks/ns/running/logs?tail=2", Some(TOKEN), b"").await;
    assert_eq!(code, 200);
    assert_eq!(text, "running line 3\nrunning line 4\n");
    let (code, text) = call(
        &rest,
        "GET",
        "/v1/tasks/ns/finished/logs?follow=true",
        Some(TOKEN),
        b"",
    )
    .await;
    assert_eq!(code, 200, "following a finished task returns its tail");
    assert!(text.ends_with("finished line 4\n"));
}

#[tokio::test]
async fn cancel_validates_its_body_and_refuses_finished_tasks() {
    let (rest, _ready) = rest(true).await;
    let path = "/v1/tasks/ns/running/cancel";
    for (body, status) in [
        (b"{not json".to_vec(), 400),
        (br#"{"reason": 5}"#.to_vec(), 400),
        (br#"{"other": "x"}"#.to_vec(), 400),
        (
            format!(r#"{{"reason": "{}"}}"#, "x".repeat(300)).into_bytes(),
            400,
        ),
        (vec![b' '; 5000], 413),
    ] {
        let (code, text) = call(&rest, "POST", path, Some(TOKEN), &body).await;
        assert_eq!(code, status, "{text}");
    }
    let run = rest.node.runs.by_name("ns", "running").unwrap();
    assert!(
        run.stop_requests().borrow().is_none(),
        "refused requests stop nothing"
    );

    let (code, text) = call(&rest, "POST", path, Some(TOKEN), br#"{"reason": "operator"}"#).await;
    assert_eq!(code, 202, "{text}");
    assert_eq!(*run.stop_requests().borrow(), Some(Stop::Cancelled));

    let (code, text) = call(&rest, "POST", "/v1/tasks/ns/finished/cancel", Some(TOKEN), b"").await;
    assert_eq!(code, 409, "{text}");
    assert!(text.contains(r#""code":"Conflict""#));
}

#[tokio::test]
async fn node_and_tasks_describe_the_agent() {
    let (rest, _ready) = rest(true).await;
    let (_, text) = call(&rest, "GET", "/v1/node", Some(TOKEN), b"").await;
    let node: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(node["name"], "n1");
    assert_eq!(node["gpus"].as_array().unwrap().len(), 2);
    assert_eq!(node["gpus"][1]["uuid"], "GPU-sim-n1-1");
    assert_eq!(node["runningTasks"], 1);
    let (_, text) = call(&rest, "GET", "/v1/tasks", Some(TOKEN), b"").await;
    let tasks: serde_json::Value = serde_json::from_str(&text).unwrap();
    let names: Vec<&str> = tasks["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["finished", "running"]);
}

#[test]
fn the_committed_openapi_description_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/agent-openapi.json");
    let generated = format!("{}\n", serde_json::to_string_pretty(&document()).unwrap());
    if std::env::var_os("RINGRIFT_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/agent-openapi.json is out of date; regenerate it with \
         `RINGRIFT_UPDATE_OPENAPI=1 cargo test -p ringrift-agent openapi`"
    );
}

async fn get(
    rest: &Arc<Rest>,
    method: &str,
    path: &str,
    range: Option<&str>,
) -> warp::http::Response<bytes::Bytes> {
    let mut request = warp::test::request()
        .method(method)
        .path(path)
        .header("authorization", format!("Bearer {PEER_TOKEN}"));
    if let Some(r) = range {
        request = request.header("range", r);
    }
    request.reply(&routes(rest.clone())).await
}

#[tokio::test]
async fn the_peer_and_metrics_tokens_open_their_routes_only() {
    let (rest, _ready) = rest(true).await;
    let artifact = format!("/v1/artifacts/{HELLO}");
    let chunks = format!("/v1/artifacts/{HELLO}/chunks");
    for (token, path, want) in [
        (PEER_TOKEN, artifact.as_str(), 200),
        (PEER_TOKEN, chunks.as_str(), 200),
        (PEER_TOKEN, "/v1/tasks", 401),
        (PEER_TOKEN, "/metrics", 401),
        (PEER_TOKEN, "/v1/tasks/ns/running/cancel", 401),
        (METRICS_TOKEN, "/metrics", 200),
        (METRICS_TOKEN, "/v1/node", 401),
        (METRICS_TOKEN, artifact.as_str(), 401),
        (TOKEN, "/metrics", 200),
        (TOKEN, artifact.as_str(), 200),
    ] {
        let method = if path.ends_with("/cancel") { "post" } else { "get" };
        let (code, body) = call(&rest, method, path, Some(token), b"").await;
        assert_eq!(code, want, "{token} on {path}: {body}");
    }
}

#[tokio::test]
async fn artifacts_are_served_whole_by_range_and_by_head() {
    let (rest, _ready) = rest(true).await;
    let path = format!("/v1/artifacts/{HELLO}");
    let whole = get(&rest, "GET", &path, None).await;
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.body().as_ref(), b"hello");
    assert_eq!(whole.headers()["accept-ranges"], "bytes");

    let part = get(&rest, "GET", &path, Some("bytes=1-3")).await;
    assert_eq!(part.status(), 206);
    assert_eq!(part.body().as_ref(), b"ell");
    assert_eq!(part.headers()["content-range"], "bytes 1-3/5");

    let head = get(&rest, "HEAD", &path, None).await;
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "5");
    assert!(head.body().is_empty());

    for (range, code) in [("bytes=5-", 416), ("bytes=0-1,3-4", 400), ("lines=1", 400)] {
        let r = get(&rest, "GET", &path, Some(range)).await;
        assert_eq!(r.status(), code, "{range}");
    }
    let bad = get(&rest, "GET", "/v1/artifacts/sha256:XYZ", None).await;
    assert_eq!(bad.status(), 400);
    assert!(String::from_utf8_lossy(bad.body()).contains("InvalidPath"));
    let missing = get(
        &rest,
        "GET",
        &format!("/v1/artifacts/sha256:{}", "0".repeat(64)),
        None,
    )
    .await;
    assert_eq!(missing.status(), 404);

    let chunks = get(&rest, "GET", &format!("{path}/chunks"), None).await;
    let m: serde_json::Value = serde_json::from_slice(chunks.body()).unwrap();
    assert_eq!(m["digest"], HELLO);
    assert_eq!(m["sizeBytes"], 5);
    assert_eq!(m["complete"], true);
    assert_eq!(m["chunks"][0], HELLO.trim_start_matches("sha256:"));
}

#[tokio::test]
async fn with_every_serving_slot_taken_a_peer_is_told_busy() {
    let (rest, _ready) = rest(true).await;
    let path = format!("/v1/artifacts/{HELLO}");
    let slots = rest.node.sync.state.serve_slots.clone();
    let taken = slots
        .clone()
        .acquire_many_owned(u32::try_from(crate::sync::state::DEFAULT_SERVE_SLOTS).unwrap())
        .await
        .unwrap();
    let r = get(&rest, "GET", &path, None).await;
    assert_eq!(r.status(), 503);
    assert!(String::from_utf8_lossy(r.body()).contains("\"Busy\""));
    assert_eq!(
        get(&rest, "HEAD", &path, None).await.status(),
        200,
        "HEAD sends no content"
    );
    drop(taken);
    let r = get(&rest, "GET", &path, None).await;
    assert_eq!(r.body().as_ref(), b"hello");
    // The slot is given back once the response is sent.
    let start = std::time::Instant::now();
    while slots.available_permits() < crate::sync::state::DEFAULT_SERVE_SLOTS {
        assert!(start.elapsed() < Duration::from_secs(5), "slot given back");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_partial_artifact_serves_only_its_verified_chunks() {
    let (rest, _ready) = rest(true).await;
    let data: Vec<u8> = (0..150u8).collect();
    let file = rest.node.data_dir.join("partial-file");
    std::fs::write(&file, &data).unwrap();
    let manifest = crate::sync::manifest::hash_file(&file, 64).unwrap();
    let digest = manifest.digest.clone();
    let partial = rest
        .node
        .sync
        .state
        .partials
        .insert(manifest, file, vec![true, false, false]);
    let path = format!("/v1/artifacts/{digest}");
    assert_eq!(
        get(&rest, "GET", &path, Some("bytes=0-3")).await.body().as_ref(),
        &data[0..4]
    );
    assert_eq!(
        get(&rest, "GET", &path, Some("bytes=60-70")).await.status(),
        416,
        "spans a chunk not held"
    );
    assert_eq!(
        get(&rest, "GET", &path, None).await.status(),
        416,
        "not whole yet"
    );
    let chunks = get(&rest, "GET", &format!("{path}/chunks"), None).await;
    let m: serde_json::Value = serde_json::from_slice(chunks.body()).unwrap();
    assert_eq!(
        (m["complete"].as_bool(), m["have"].as_str()),
        (Some(false), Some("100"))
    );
    partial.mark(1);
    assert_eq!(
        get(&rest, "GET", &path, Some("bytes=60-70"))
            .await
            .body()
            .as_ref(),
        &data[60..71]
    );
    rest.node.sync.state.partials.remove(&digest);
    assert_eq!(get(&rest, "GET", &path, Some("bytes=0-3")).await.status(), 404);
}

#[tokio::test]
async fn a_stored_artifact_that_changed_on_disk_is_never_served_and_is_dropped() {
    let (rest, _ready) = rest(true).await;
    let path = rest.node.content.path(HELLO).unwrap();
    // Served once, checked, and recorded as checked (the file had settled)...
    tokio::time::sleep(crate::sync::checked::SETTLE * 2).await;
    let r = get(&rest, "GET", &format!("/v1/artifacts/{HELLO}"), None).await;
    assert_eq!(r.body().as_ref(), b"hello");
    let id = crate::sync::checked::FileId::of(&std::fs::metadata(&path).unwrap());
    assert!(rest.node.content.checked().is(HELLO, id, 0));
    // ...then changed on disk (a later modification time): checked again, and refused.
    tokio::time::sleep(Duration::from_millis(20)).await;
    std::fs::write(&path, b"jello").unwrap();
    let r = get(&rest, "GET", &format!("/v1/artifacts/{HELLO}"), None).await;
    assert!(r.body().is_empty(), "not one corrupt byte served: {:?}", r.body());
    let start = std::time::Instant::now();
    while rest.node.db.artifact(HELLO).await.unwrap().is_some() {
        assert!(start.elapsed() < Duration::from_secs(5), "dropped from the index");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!path.exists(), "deleted");
    assert_eq!(rest.node.metrics.sync.verification_failures.get(), 1);
    assert_eq!(
        get(&rest, "GET", &format!("/v1/artifacts/{HELLO}"), None)
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn a_pushed_copy_is_kept_only_when_it_is_what_it_claims() {
    let (rest, _ready) = rest(true).await;
    let put = |digest: &str, query: &str| format!("/v1/artifacts/{digest}{query}");
    let query = "?name=world.jsonl&kind=games";
    // Other bytes than the digest names: refused, nothing kept.
    let (code, text) = call(&rest, "put", &put(WORLD, query), Some(PEER_TOKEN), b"wor1d").await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("not sha256:486e"), "{text}");
    let (code, _) = call(
        &rest,
        "get",
        &format!("/v1/artifacts/{WORLD}"),
        Some(PEER_TOKEN),
        b"",
    )
    .await;
    assert_eq!(code, 404);
    // A bad kind or name, or no peer token: refused.
    let (code, text) = call(
        &rest,
        "put",
        &put(WORLD, "?name=w&kind=pictures"),
        Some(PEER_TOKEN),
        b"world",
    )
    .await;
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("kind \\\"pictures\\\""), "{text}");
    let (code, _) = call(
        &rest,
        "put",
        &put(WORLD, "?name=..&kind=games"),
        Some(PEER_TOKEN),
        b"world",
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = call(&rest, "put", &put(WORLD, query), Some("wrong"), b"world").await;
    assert_eq!(code, 401);
    // The real bytes: taken, listed, and served to peers from then on; pushed again: held.
    let (code, text) = call(&rest, "put", &put(WORLD, query), Some(PEER_TOKEN), b"world").await;
    assert_eq!(code, 201, "{text}");
    let (code, text) = call(
        &rest,
        "get",
        &format!("/v1/artifacts/{WORLD}"),
        Some(PEER_TOKEN),
        b"",
    )
    .await;
    assert_eq!((code, text.as_str()), (200, "world"));
    let (_, list) = call(&rest, "get", "/v1/artifacts", Some(TOKEN), b"").await;
    assert!(list.contains("world.jsonl"), "{list}");
    let (code, _) = call(&rest, "put", &put(WORLD, query), Some(PEER_TOKEN), b"world").await;
    assert_eq!(code, 200);
}
