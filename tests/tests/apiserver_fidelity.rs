//! What kubectl and kube-rs really send and expect, as kube-apiserver answers it: protobuf
//! bodies of built-in kinds, previews (`dryRun=All`) that never write, query parameters that are
//! either honoured or refused, DELETE answered with a `Status`, Secrets' `stringData`, and no
//! `metadata.generation` on ConfigMaps and Secrets.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use ringrift_e2e::kubectl::{kubectl, ok, with_crds};
use ringrift_e2e::process::{ApiServerProcess, Scratch};
use ringrift_e2e::repo_root;
use serde_json::Value;

fn json(server: &ApiServerProcess, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&ok(server, &all)).unwrap()
}

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
    let secret = json(&server, &["get", "secret", "s", "-n", "team"]);
    assert_eq!(secret["data"]["a"], "Yg==");
    assert_eq!(secret["type"], "Opaque", "type defaults to Opaque");
    let configmap = json(&server, &["get", "configmap", "c", "-n", "team"]);
    assert_eq!(configmap["data"]["k"], "v");
    for object in [&secret, &configmap] {
        assert!(
            object["metadata"].get("generation").is_none(),
            "no generation: {object}"
        );
    }
    let binding = json(&server, &["get", "rolebinding", "reads", "-n", "team"]);
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
    let live = json(&server, &["get", "selfplayjob", "connect4-selfplay-demo"]);
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

    let after = json(&server, &["get", "selfplayjob", "connect4-selfplay-demo"]);
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

async fn client(server: &ApiServerProcess) -> Client {
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
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

/// A server under RBAC where bob (token `bob-token`) may get and list Secrets in `default` and
/// read `/metrics`; and the `--kubeconfig` argument that makes kubectl bob.
fn server_with_bob(dir: &std::path::Path) -> (ApiServerProcess, String) {
    let tokens = dir.join("tokens.csv");
    std::fs::write(&tokens, "bob-token,bob,u-bob\n").unwrap();
    let server = ApiServerProcess::start(
        dir,
        &[
            "--authorization-mode",
            "RBAC",
            "--token-auth-file",
            tokens.to_str().unwrap(),
        ],
    )
    .unwrap();
    ok(
        &server,
        &[
            "create",
            "role",
            "reader",
            "--verb=get,list",
            "--resource=secrets",
            "-n",
            "default",
        ],
    );
    ok(
        &server,
        &[
            "create",
            "rolebinding",
            "reads",
            "--role=reader",
            "--user=bob",
            "-n",
            "default",
        ],
    );
    ok(
        &server,
        &[
            "create",
            "clusterrole",
            "metrics",
            "--verb=get",
            "--non-resource-url=/metrics",
        ],
    );
    ok(
        &server,
        &[
            "create",
            "clusterrolebinding",
            "metrics",
            "--clusterrole=metrics",
            "--user=bob",
        ],
    );
    // Bob's own kubeconfig: the server's CA and his token, no client certificate.
    let admin: Value =
        serde_json::from_str(&ok(&server, &["config", "view", "--raw", "-o", "json"])).unwrap();
    let bob_config = dir.join("bob.kubeconfig");
    let bob = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "bob",
        "clusters": [{"name": "c", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": "bob", "user": {"token": "bob-token"}}],
        "contexts": [{"name": "bob", "context": {"cluster": "c", "user": "bob"}}],
    });
    std::fs::write(&bob_config, bob.to_string()).unwrap();
    let as_bob = format!("--kubeconfig={}", bob_config.display());

    (server, as_bob)
}

#[test]
fn kubectl_auth_reviews_answer_from_rbac() {
    let dir = Scratch::new("fidelity-auth").unwrap();
    let (server, as_bob) = server_with_bob(&dir.0);
    // The administrator (system:masters) may do anything.
    assert_eq!(
        ok(&server, &["auth", "can-i", "create", "selfplayjobs.ringrift.ai"]).trim(),
        "yes"
    );
    let whoami = ok(&server, &["auth", "whoami"]);
    assert!(
        whoami.contains("admin") && whoami.contains("system:masters"),
        "{whoami}"
    );

    // Bob, through impersonation (the administrator may impersonate anyone) and through his
    // own token: the same RBAC code answers as it decides his requests.
    for (args, expected) in [
        (&["auth", "can-i", "get", "secrets", "-n", "default"][..], "yes"),
        (&["auth", "can-i", "list", "secrets", "-n", "default"], "yes"),
        (&["auth", "can-i", "create", "secrets", "-n", "default"], "no"),
        (&["auth", "can-i", "get", "secrets", "-n", "kube-system"], "no"),
        (&["auth", "can-i", "get", "/metrics"], "yes"),
        (&["auth", "can-i", "get", "/healthz/etcd"], "no"),
    ] {
        let mut impersonated = args.to_vec();
        impersonated.push("--as=bob");
        let out = kubectl(&server, &impersonated);
        assert_eq!(out.stdout.trim(), expected, "{impersonated:?}: {}", out.stderr);
        let mut own = args.to_vec();
        own.push(&as_bob);
        let out = kubectl(&server, &own);
        assert_eq!(
            out.stdout.trim(),
            expected,
            "{own:?} with bob's token: {}",
            out.stderr
        );
    }
    // What can-i says is what happens.
    assert!(kubectl(&server, &["get", "secrets", "-n", "default", "--as=bob"]).success);
    let refused = kubectl(&server, &["get", "secrets", "-n", "kube-system", "--as=bob"]);
    assert!(
        !refused.success && refused.stderr.contains("User \"bob\" cannot list"),
        "{}",
        refused.stderr
    );

    let list = ok(&server, &["auth", "can-i", "--list", "-n", "default", "--as=bob"]);
    let secrets_row = list
        .lines()
        .find(|l| l.starts_with("secrets "))
        .unwrap_or_default();
    assert!(secrets_row.contains("[get list]"), "{list}");
    assert!(list.contains("/metrics"), "{list}");
    let whoami = ok(&server, &["auth", "whoami", "--as=bob", "--as-group=devs"]);
    assert!(whoami.contains("bob") && whoami.contains("devs"), "{whoami}");

    // Bob may not impersonate anyone; that is refused, not ignored.
    let out = kubectl(
        &server,
        &["auth", "can-i", "get", "secrets", "--as=alice", &as_bob],
    );
    assert!(
        !out.success && out.stderr.contains("cannot impersonate"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_rs_asks_about_another_user_with_a_subject_access_review() {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let dir = Scratch::new("fidelity-sar").unwrap();
    let server = ApiServerProcess::start(&dir.0, &["--authorization-mode", "RBAC"]).unwrap();
    ok(
        &server,
        &[
            "create",
            "clusterrole",
            "ns-reader",
            "--verb=get",
            "--resource=namespaces",
        ],
    );
    ok(
        &server,
        &[
            "create",
            "clusterrolebinding",
            "ns-readers",
            "--clusterrole=ns-reader",
            "--group=readers",
        ],
    );
    let reviews: Api<SubjectAccessReview> = Api::all(client(&server).await);
    let ask = |groups: Vec<String>| SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some("carol".into()),
            groups: Some(groups),
            resource_attributes: Some(ResourceAttributes {
                verb: Some("get".into()),
                resource: Some("namespaces".into()),
                name: Some("default".into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = reviews
        .create(&PostParams::default(), &ask(vec!["readers".into()]))
        .await
        .unwrap();
    assert!(answer.status.unwrap().allowed);
    let answer = reviews
        .create(&PostParams::default(), &ask(vec!["writers".into()]))
        .await
        .unwrap();
    assert!(!answer.status.unwrap().allowed);
}

/// A CRD `widgets.example.com` whose `spec` has the CEL rule `rule` (with `extra` fields on it).
fn widget_crd(rule: &str, extra: &str) -> String {
    format!(
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: widgets.example.com}}
spec:
  group: example.com
  scope: Namespaced
  names: {{plural: widgets, singular: widget, kind: Widget}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {{type: integer}}
            x-kubernetes-validations:
            - rule: "{rule}"
              message: size is capped{extra}
"#
    )
}

#[test]
fn cel_rules_report_their_reason_and_optionals_are_refused_up_front() {
    let dir = Scratch::new("fidelity-cel").unwrap();
    let server = ApiServerProcess::start(&dir.0, &[]).unwrap();
    let apply = |name: &str, text: &str| {
        let file = dir.0.join(name);
        std::fs::write(&file, text).unwrap();
        kubectl(&server, &["apply", "-f", file.to_str().unwrap()])
    };
    // The optional library: refused when the CRD is created, naming the rule and the function.
    let refused = apply("optional.yaml", &widget_crd("self.?size.orValue(0) <= 3", ""));
    assert!(!refused.success, "accepted: {}", refused.stdout);
    assert!(
        refused.stderr.contains("x-kubernetes-validations[0].rule") && refused.stderr.contains(".?"),
        "{}",
        refused.stderr
    );
    let refused = apply(
        "old-self.yaml",
        &widget_crd(
            "oldSelf.optMap(o, o.size <= self.size).orValue(true)",
            "\n              optionalOldSelf: true",
        ),
    );
    assert!(
        !refused.success && refused.stderr.contains("optionalOldSelf"),
        "{}",
        refused.stderr
    );
    assert!(!kubectl(&server, &["get", "crd", "widgets.example.com"]).success);

    // A rule's reason is the cause's reason.
    let crd = apply(
        "reason.yaml",
        &widget_crd("self.size <= 3", "\n              reason: FieldValueForbidden"),
    );
    assert!(crd.success, "{}", crd.stderr);
    ok(
        &server,
        &[
            "wait",
            "--for=condition=Established",
            "crd/widgets.example.com",
            "--timeout=30s",
        ],
    );
    let widget = apply(
        "widget.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: default}\nspec: {size: 5}\n",
    );
    assert!(!widget.success);
    assert!(
        widget.stderr.contains("spec: Forbidden: size is capped"),
        "{}",
        widget.stderr
    );
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

#[test]
fn kubectl_scales_a_custom_resource_through_its_scale_subresource() {
    let dir = Scratch::new("fidelity-scale").unwrap();
    let server = ApiServerProcess::start(&dir.0, &[]).unwrap();
    let crd = widget_crd("self.size >= 0", "").replace(
        "    schema:",
        "    subresources:\n      status: {}\n      scale: {specReplicasPath: .spec.size, statusReplicasPath: .status.ready, labelSelectorPath: .status.selector}\n    schema:",
    );
    let crd = crd.replace(
        "              size: {type: integer}",
        "              size: {type: integer}\n          status:\n            type: object\n            properties:\n              ready: {type: integer}\n              selector: {type: string}",
    );
    let file = dir.0.join("crd.yaml");
    std::fs::write(&file, crd).unwrap();
    ok(&server, &["apply", "-f", file.to_str().unwrap()]);
    ok(
        &server,
        &[
            "wait",
            "--for=condition=Established",
            "crd/widgets.example.com",
            "--timeout=30s",
        ],
    );
    let widget = dir.0.join("w.yaml");
    std::fs::write(&widget, "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w, namespace: default}\nspec: {size: 1}\n").unwrap();
    ok(&server, &["apply", "-f", widget.to_str().unwrap()]);

    ok(&server, &["scale", "widget", "w", "--replicas=3"]);
    assert_eq!(
        ok(&server, &["get", "widget", "w", "-o", "jsonpath={.spec.size}"]),
        "3"
    );
    let scale: Value = serde_json::from_str(&ok(
        &server,
        &[
            "get",
            "--raw",
            "/apis/example.com/v1/namespaces/default/widgets/w/scale",
        ],
    ))
    .unwrap();
    assert_eq!(
        (scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()),
        (Some("Scale"), Some(3))
    );
    // A stale resourceVersion precondition and a negative count are refused; a dry run writes
    // nothing.
    let outdated = kubectl(
        &server,
        &["scale", "widget", "w", "--replicas=4", "--resource-version=1"],
    );
    assert!(
        !outdated.success && outdated.stderr.contains("resource version"),
        "{}",
        outdated.stderr
    );
    let raw = dir.0.join("scale.json");
    let path = "/apis/example.com/v1/namespaces/default/widgets/w/scale";
    let mut stale_scale = scale.clone();
    stale_scale["metadata"]["resourceVersion"] = "1".into();
    stale_scale["spec"]["replicas"] = 4.into();
    std::fs::write(&raw, stale_scale.to_string()).unwrap();
    let refused = kubectl(&server, &["replace", "--raw", path, "-f", raw.to_str().unwrap()]);
    assert!(
        !refused.success && refused.stderr.contains("has been modified"),
        "{}",
        refused.stderr
    );
    let negative = kubectl(&server, &["scale", "widget", "w", "--replicas=-1"]);
    assert!(!negative.success, "{}", negative.stdout);
    ok(
        &server,
        &["scale", "widget", "w", "--replicas=9", "--dry-run=server"],
    );
    assert_eq!(
        ok(&server, &["get", "widget", "w", "-o", "jsonpath={.spec.size}"]),
        "3"
    );
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
async fn a_deleted_crd_terminates_behind_its_finalizer_until_its_objects_are_gone() {
    use futures_util::StreamExt;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{DynamicObject, ListParams, Patch, PatchParams, WatchEvent, WatchParams};
    use kube::discovery::ApiResource;
    let dir = Scratch::new("fidelity-crd-delete").unwrap();
    let server = ApiServerProcess::start(&dir.0, &[]).unwrap();
    let file = dir.0.join("crd.yaml");
    std::fs::write(&file, widget_crd("self.size >= 0", "")).unwrap();
    ok(&server, &["apply", "-f", file.to_str().unwrap()]);
    ok(
        &server,
        &[
            "wait",
            "--for=condition=Established",
            "crd/widgets.example.com",
            "--timeout=30s",
        ],
    );
    let widget = dir.0.join("w.yaml");
    std::fs::write(
        &widget,
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: held, namespace: default, finalizers: [example.com/hold]}\nspec: {size: 1}\n",
    )
    .unwrap();
    ok(&server, &["apply", "-f", widget.to_str().unwrap()]);

    let client = client(&server).await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.get("widgets.example.com").await.unwrap();
    assert_eq!(
        crd.metadata.finalizers.as_deref(),
        Some(&["customresourcecleanup.apiextensions.k8s.io".to_owned()][..])
    );
    let answer = crds
        .delete("widgets.example.com", &DeleteParams::default())
        .await
        .unwrap();
    assert!(answer.left().unwrap().metadata.deletion_timestamp.is_some());

    // Terminating while its object is held; no new objects.
    let terminating = until(|| {
        let crd =
            serde_json::from_str::<Value>(&ok(&server, &["get", "crd", "widgets.example.com", "-o", "json"]))
                .ok()?;
        let condition = crd["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Terminating")?
            .clone();
        Some(condition)
    });
    assert_eq!(terminating["status"], "True");
    let resource = ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);
    let held = widgets.get("held").await.unwrap();
    assert!(
        held.metadata.deletion_timestamp.is_some(),
        "its object is being deleted"
    );
    let mut another = DynamicObject::new("another", &resource);
    another.data = serde_json::json!({"spec": {"size": 1}});
    match widgets.create(&PostParams::default(), &another).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 405, "{status:?}"),
        other => panic!("created while terminating: {other:?}"),
    }

    // A watcher that starts now sees the CRD go once its object's finalizer is removed.
    let rv = crds
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut events = crds
        .watch(&WatchParams::default().timeout(30), &rv)
        .await
        .unwrap()
        .boxed();
    let release = serde_json::json!({"metadata": {"finalizers": null}});
    widgets
        .patch("held", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .unwrap();
    let deleted = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(event) = events.next().await {
            if let Ok(WatchEvent::Deleted(crd)) = event {
                return crd;
            }
        }
        panic!("the watch ended without DELETED");
    })
    .await
    .unwrap();
    assert_eq!(deleted.metadata.name.as_deref(), Some("widgets.example.com"));
    assert!(crds.get_opt("widgets.example.com").await.unwrap().is_none());
}

/// Polls `f` until it returns Some, for up to 30 seconds.
fn until<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(value) = f() {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "condition not reached in 30 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
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

#[test]
fn a_multi_version_crd_stores_at_its_storage_version_pruned_by_its_schema() {
    let dir = Scratch::new("fidelity-versions").unwrap();
    let server = ApiServerProcess::start(&dir.0, &[]).unwrap();
    let crd = r"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: gadgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, properties: {spec: {type: object, properties: {size: {type: integer}}}}}}
  - name: v2
    served: true
    storage: false
    schema: {openAPIV3Schema: {type: object, properties: {spec: {type: object, properties: {size: {type: integer}, colour: {type: string}}}}}}
";
    let file = dir.0.join("crd.yaml");
    std::fs::write(&file, crd).unwrap();
    ok(&server, &["apply", "-f", file.to_str().unwrap()]);
    ok(
        &server,
        &[
            "wait",
            "--for=condition=Established",
            "crd/gadgets.example.com",
            "--timeout=30s",
        ],
    );
    let gadget = dir.0.join("g.yaml");
    std::fs::write(
        &gadget,
        "apiVersion: example.com/v2\nkind: Gadget\nmetadata: {name: g, namespace: default}\nspec: {size: 2, colour: red}\n",
    )
    .unwrap();
    let created = ok(&server, &["create", "-f", gadget.to_str().unwrap(), "-o", "json"]);
    let created: Value = serde_json::from_str(&created).unwrap();
    assert_eq!(
        created["apiVersion"], "example.com/v2",
        "answered in the version asked"
    );
    assert_eq!(
        created["spec"],
        serde_json::json!({"size": 2}),
        "pruned against the storage version's schema"
    );
    let v1: Value = serde_json::from_str(&ok(
        &server,
        &[
            "get",
            "--raw",
            "/apis/example.com/v1/namespaces/default/gadgets/g",
        ],
    ))
    .unwrap();
    assert_eq!(v1["apiVersion"], "example.com/v1");
    assert_eq!(v1["spec"], serde_json::json!({"size": 2}));
    let v2: Value = serde_json::from_str(&ok(
        &server,
        &["get", "--raw", "/apis/example.com/v2/namespaces/default/gadgets"],
    ))
    .unwrap();
    assert_eq!(v2["items"][0]["apiVersion"], "example.com/v2");
}
