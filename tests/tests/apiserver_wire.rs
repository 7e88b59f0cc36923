//! What kubectl, helm and kube-rs really send and expect, as kube-apiserver answers it: protobuf
//! bodies of built-in kinds, previews (`dryRun=All`) that never write, query parameters that are
//! either honoured or refused, DELETE answered with a `Status`, Secrets' `stringData`, no
//! `metadata.generation` on ConfigMaps and Secrets, aggregated discovery, consistent pagination,
//! and one Event store behind both Event versions. (Access reviews: `apiserver_access.rs`; CRD
//! behaviour and server-side apply: `apiserver_crds.rs`; helm: `apiserver_helm.rs`.)

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use ringrift_e2e::api::{client, ok_json};
use ringrift_e2e::kubectl::{kubectl, ok, with_crds};
use ringrift_e2e::process::{ApiServerProcess, Scratch};
use ringrift_e2e::repo_root;
use serde_json::Value;

/// The server's current revision: every write moves it.
fn revision(server: &ApiServerProcess) -> String {
    let list: Value = serde_json::from_str(&ok(server, &["get", "--raw", "/api/v1/namespaces"])).unwrap();
    list["metadata"]["resourceVersion"].as_str().unwrap().to_owned()
}

#[test]
fn kubectl_creates_built_in_kinds_through_protobuf() {
    let dir = Scratch::new("fidelity-protobuf").unwrap();
    let server = ApiServerProcess::start(&dir.0, &[]).unwrap();
    // kubectl 1.37 sends these as application/vnd.kubernetes.protobuf and asks for protobuf
    // answers first.
    for args in [
        &["create", "namespace", "team"][..],
        &[
            "create",
            "secret",
            "generic",
            "s",
            "--from-literal=a=b",
            "-n",
            "team",
        ],
        &["create", "configmap", "c", "--from-literal=k=v", "-n", "team"],
        &["create", "serviceaccount", "robot", "-n", "team"],
        &[
            "create",
            "role",
            "reader",
            "--verb=get,list",
            "--resource=secrets",
            "-n",
            "team",
        ],
        &[
            "create",
            "rolebinding",
            "reads",
            "--role=reader",
            "--serviceaccount=team:robot",
            "-n",
            "team",
        ],
        &[
            "create",
            "clusterrole",
            "viewer",
            "--verb=get",
            "--resource=namespaces",
        ],
    ] {
        ok(&server, args);
    }
    let secret = ok_json(&server, &["get", "secret", "s", "-n", "team"]);
    assert_eq!(secret["data"]["a"], "Yg==");
    assert_eq!(secret["type"], "Opaque", "type defaults to Opaque");
    let configmap = ok_json(&server, &["get", "configmap", "c", "-n", "team"]);
    assert_eq!(configmap["data"]["k"], "v");
    for object in [&secret, &configmap] {
        assert!(
            object["metadata"].get("generation").is_none(),
            "no generation: {object}"
        );
    }
    let binding = ok_json(&server, &["get", "rolebinding", "reads", "-n", "team"]);
    assert_eq!(binding["subjects"][0]["name"], "robot");
    assert_eq!(binding["roleRef"]["name"], "reader");
    // Deletes send DeleteOptions as protobuf too.
    ok(&server, &["delete", "secret", "s", "-n", "team"]);
    ok(&server, &["delete", "namespace", "team"]);
    // A kind this server does not read as protobuf says so, naming it.
    let refused = kubectl(&server, &["create", "deployment", "d", "--image=x"]);
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("Deployment") && refused.stderr.contains("application/json"),
        "{}",
        refused.stderr
    );
}

#[test]
fn previews_never_write() {
    let (dir, server) = with_crds("fidelity-dry-run");
    let job = repo_root().join("examples/selfplay-job.yaml");
    let job = job.to_str().unwrap();
    ok(&server, &["apply", "-f", job]);
    let live = ok_json(&server, &["get", "selfplayjob", "connect4-selfplay-demo"]);
    let games = live["spec"]["games"].as_i64().unwrap();
    let before = revision(&server);

    // kubectl diff of a changed spec shows the change (exit 1) and changes nothing.
    let changed = dir.0.join("changed.yaml");
    let text = std::fs::read_to_string(job).unwrap();
    let edited = text.replace(&format!("games: {games}"), &format!("games: {}", games + 5));
    assert_ne!(text, edited, "the example sets spec.games");
    std::fs::write(&changed, edited).unwrap();
    let diff = kubectl(&server, &["diff", "-f", changed.to_str().unwrap()]);
    assert!(
        !diff.success && diff.stdout.contains(&format!("games: {}", games + 5)),
        "{}{}",
        diff.stdout,
        diff.stderr
    );

    // Server-side dry runs of apply, create, delete and a patch.
    let apply = ok(
        &server,
        &["apply", "--dry-run=server", "-f", changed.to_str().unwrap()],
    );
    assert!(apply.contains("(server dry run)"), "{apply}");
    ok(&server, &["create", "namespace", "preview", "--dry-run=server"]);
    ok(
        &server,
        &[
            "delete",
            "selfplayjob",
            "connect4-selfplay-demo",
            "--dry-run=server",
        ],
    );
    ok(
        &server,
        &[
            "label",
            "selfplayjob",
            "connect4-selfplay-demo",
            "seen=yes",
            "--dry-run=server",
        ],
    );
    let wrong = kubectl(&server, &["create", "namespace", "Not_Valid", "--dry-run=server"]);
    assert!(
        !wrong.success && wrong.stderr.contains("metadata.name"),
        "a dry run validates: {}",
        wrong.stderr
    );

    let after = ok_json(&server, &["get", "selfplayjob", "connect4-selfplay-demo"]);
    assert_eq!(after, live, "the live object is as it was");
    assert_eq!(revision(&server), before, "no write happened");
    assert!(!kubectl(&server, &["get", "namespace", "preview"]).success);
}

#[test]
fn query_parameters_are_honoured_or_refused_by_name() {
    let dir = Scratch::new("fidelity-params").unwrap();
    let server = ApiServerProcess::start(&dir.0, &[]).unwrap();
    for (path, named) in [
        ("/api/v1/namespaces?bogus=1", "bogus"),
        ("/api/v1/namespaces?limit=ten", "limit"),
        ("/api/v1/namespaces/default?labelSelector=a", "labelSelector"),
        (
            "/api/v1/namespaces?resourceVersionMatch=Exact",
            "resourceVersionMatch",
        ),
    ] {
        let out = kubectl(&server, &["get", "--raw", path]);
        assert!(!out.success, "{path} was served");
        assert!(out.stderr.contains(named), "{path}: {}", out.stderr);
    }
    let out = kubectl(
        &server,
        &["create", "namespace", "x", "--dry-run=client", "-o", "name"],
    );
    assert!(out.success, "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_rs_sees_secrets_deletes_and_generations_as_upstream() {
    let dir = Scratch::new("fidelity-kube").unwrap();
    let server = ApiServerProcess::start(&dir.0, &[]).unwrap();
    let client = client(&server).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "creds"},
        "data": {"kept": "a2VwdA=="},
        "stringData": {"password": "hunter2"},
    }))
    .unwrap();
    let created = secrets.create(&PostParams::default(), &secret).await.unwrap();
    let data = created.data.clone().unwrap();
    assert_eq!(data["password"], ByteString(b"hunter2".to_vec()));
    assert_eq!(data["kept"], ByteString(b"kept".to_vec()));
    assert_eq!(created.string_data, None, "stringData is never returned");
    assert_eq!(created.type_.as_deref(), Some("Opaque"));
    assert_eq!(created.metadata.generation, None);
    let read = secrets.get("creds").await.unwrap();
    assert_eq!(read.string_data, None);
    assert_eq!(read.data, created.data);

    // A dry-run create answers the object it would store and stores nothing.
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("settings".into());
    let preview = configmaps
        .create(
            &PostParams {
                dry_run: true,
                ..PostParams::default()
            },
            &cm,
        )
        .await
        .unwrap();
    assert!(preview.metadata.uid.is_some() && preview.metadata.resource_version.is_none());
    assert!(configmaps.get_opt("settings").await.unwrap().is_none());
    let stored = configmaps.create(&PostParams::default(), &cm).await.unwrap();
    assert_eq!(stored.metadata.generation, None);

    // A delete that removes the object at once answers a Status: kube-rs reads Right.
    let answer = secrets.delete("creds", &DeleteParams::default()).await.unwrap();
    let status = answer.right().expect("a Status for an object deleted at once");
    let details = status.details.unwrap();
    assert_eq!(
        (details.name.as_str(), details.kind.as_str()),
        ("creds", "secrets")
    );
    assert!(secrets.get_opt("creds").await.unwrap().is_none());
    // An object held by a finalizer is answered as it now is: Left, marked for deletion.
    let mut held = ConfigMap::default();
    held.metadata.name = Some("held".into());
    held.metadata.finalizers = Some(vec!["example.com/keep".into()]);
    configmaps.create(&PostParams::default(), &held).await.unwrap();
    let answer = configmaps.delete("held", &DeleteParams::default()).await.unwrap();
    let marked = answer.left().expect("the object, still there");
    assert!(marked.metadata.deletion_timestamp.is_some());
    // A dry-run delete answers as the delete would and deletes nothing.
    let answer = configmaps
        .delete(
            "settings",
            &DeleteParams {
                dry_run: true,
                ..DeleteParams::default()
            },
        )
        .await
        .unwrap();
    assert!(answer.is_right());
    assert!(configmaps.get_opt("settings").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_rs_aggregated_discovery_finds_every_kind_and_the_legacy_documents_remain() {
    use kube::discovery::{Discovery, Scope};
    let (_dir, server) = with_crds("fidelity-discovery");
    let client = client(&server).await;
    let aggregated = Discovery::new(client.clone()).run_aggregated().await.unwrap();
    let legacy = Discovery::new(client).run().await.unwrap();
    for discovery in [&aggregated, &legacy] {
        let groups: Vec<String> = discovery.groups().map(|g| g.name().to_owned()).collect();
        for group in [
            "",
            "ringrift.ai",
            "apps",
            "rbac.authorization.k8s.io",
            "authorization.k8s.io",
        ] {
            assert!(groups.iter().any(|g| g == group), "{group} in {groups:?}");
        }
        let ringrift = discovery.get("ringrift.ai").unwrap();
        let (job, caps) = ringrift
            .recommended_resources()
            .into_iter()
            .find(|(r, _)| r.kind == "SelfplayJob")
            .unwrap();
        assert_eq!(
            (job.plural.as_str(), job.version.as_str()),
            ("selfplayjobs", "v1alpha1")
        );
        assert_eq!(caps.scope, Scope::Namespaced);
        assert!(
            caps.subresources
                .iter()
                .any(|(s, _)| s.plural == "selfplayjobs/status" || s.plural == "status"),
            "{caps:?}"
        );
        let core = discovery.get("").unwrap();
        assert!(
            core.recommended_resources()
                .iter()
                .any(|(r, c)| r.kind == "Namespace" && c.scope == Scope::Cluster)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_continued_list_reads_its_first_pages_snapshot_or_expires() {
    use kube::api::ListParams;
    let dir = Scratch::new("fidelity-pages").unwrap();
    // A short watch history, so a few dozen writes compact the snapshot away.
    let server = ApiServerProcess::start(&dir.0, &["--watch-history", "1"]).unwrap();
    let configmaps: Api<ConfigMap> = Api::namespaced(client(&server).await, "default");
    let make = |name: &str| {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.into());
        cm
    };
    for name in ["a", "b", "c", "d", "e"] {
        configmaps
            .create(&PostParams::default(), &make(name))
            .await
            .unwrap();
    }
    let first = configmaps.list(&ListParams::default().limit(2)).await.unwrap();
    let names = |list: &kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        list.items
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect()
    };
    assert_eq!(names(&first), ["a", "b"]);
    let token = first.metadata.continue_.clone().unwrap();

    // Writes after the first page: the rest of the list is still the first page's snapshot.
    configmaps.delete("c", &DeleteParams::default()).await.unwrap();
    configmaps
        .create(&PostParams::default(), &make("bb"))
        .await
        .unwrap();
    let mut changed = configmaps.get("d").await.unwrap();
    changed.data = Some([("k".to_owned(), "v".to_owned())].into());
    configmaps
        .replace("d", &PostParams::default(), &changed)
        .await
        .unwrap();

    let rest = configmaps
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(&rest), ["c", "d"]);
    assert_eq!(rest.items[1].data, None, "d as it was");
    assert_eq!(rest.metadata.resource_version, first.metadata.resource_version);
    let last = configmaps
        .list(&ListParams::default().continue_token(rest.metadata.continue_.as_deref().unwrap()))
        .await
        .unwrap();
    assert_eq!(names(&last), ["e"]);
    assert!(last.metadata.continue_.is_none());
    // A fresh list sees the writes.
    let now = configmaps.list(&ListParams::default()).await.unwrap();
    assert_eq!(names(&now), ["a", "b", "bb", "d", "e"]);

    // Once the history no longer reaches the snapshot: 410 Expired, as upstream.
    for i in 0..40 {
        configmaps
            .create(&PostParams::default(), &make(&format!("x{i}")))
            .await
            .unwrap();
    }
    match configmaps
        .list(&ListParams::default().continue_token(&token))
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!((status.code, status.reason.as_str()), (410, "Expired")),
        other => panic!("a compacted snapshot was served: {other:?}"),
    }
    // A revision the store has not reached: 504 Too large resource version (through kubectl:
    // kube-rs retries a 504 with backoff for minutes, as it should for a transient one).
    let ahead = kubectl(
        &server,
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/default/configmaps?resourceVersion=999999",
        ],
    );
    assert!(
        !ahead.success && ahead.stderr.contains("Too large resource version"),
        "{}",
        ahead.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn both_event_versions_are_one_store() {
    use k8s_openapi::api::core::v1::{Event as CoreEvent, ObjectReference};
    use k8s_openapi::api::events::v1::Event;
    use kube::api::ListParams;
    let dir = Scratch::new("fidelity-events").unwrap();
    let server = ApiServerProcess::start(&dir.0, &[]).unwrap();
    let client = client(&server).await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let core: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    // As kube-runtime's recorder writes them: events.k8s.io/v1.
    let recorded: Event = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "job.1", "namespace": "default"},
        "regarding": {"kind": "SelfplayJob", "name": "job", "namespace": "default", "apiVersion": "ringrift.ai/v1alpha1"},
        "note": "3 tasks started", "reason": "Started", "type": "Normal", "action": "Dispatch",
        "reportingController": "ringrift.ai/controller", "reportingInstance": "c-1",
        "eventTime": "2026-12-05T10:00:00.000000Z",
    }))
    .unwrap();
    events.create(&PostParams::default(), &recorded).await.unwrap();
    let seen = core.get("job.1").await.unwrap();
    assert_eq!(seen.message.as_deref(), Some("3 tasks started"));
    assert_eq!(seen.involved_object.name.as_deref(), Some("job"));
    assert_eq!(
        seen.reporting_component.as_deref(),
        Some("ringrift.ai/controller")
    );
    let described = ok(
        &server,
        &[
            "get",
            "events",
            "-n",
            "default",
            "--field-selector",
            "involvedObject.name=job",
            "-o",
            "name",
        ],
    );
    assert!(
        described.contains("job.1"),
        "kubectl get events shows it: {described}"
    );

    // And a core/v1 Event through events.k8s.io/v1, with its field selectors.
    let mut old = CoreEvent::default();
    old.metadata.name = Some("task.1".into());
    old.involved_object = ObjectReference {
        kind: Some("Task".into()),
        name: Some("t".into()),
        ..ObjectReference::default()
    };
    old.message = Some("lost".into());
    old.reason = Some("Lost".into());
    old.count = Some(3);
    core.create(&PostParams::default(), &old).await.unwrap();
    let new = events.get("task.1").await.unwrap();
    assert_eq!(
        (new.note.as_deref(), new.deprecated_count),
        (Some("lost"), Some(3))
    );
    assert_eq!(new.regarding.unwrap().name.as_deref(), Some("t"));
    let selected = events
        .list(&ListParams::default().fields("regarding.name=t"))
        .await
        .unwrap();
    assert_eq!(selected.items.len(), 1);
    assert_eq!(core.list(&ListParams::default()).await.unwrap().items.len(), 2);
}
