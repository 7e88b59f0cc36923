//! Custom resources as upstream serves them, through the real kubectl and kube-rs: CEL rules'
//! reasons and the optional library refused up front, the `/scale` subresource, a deleted CRD
//! terminating behind its finalizer, multi-version CRDs stored at the storage version, and
//! server-side apply with managed fields.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kube::Api;
use kube::api::{DeleteParams, PostParams};
use ringrift_e2e::api::{client, poll_until, widget_crd};
use ringrift_e2e::kubectl::{kubectl, ok};
use ringrift_e2e::process::{ApiServerProcess, Scratch};
use serde_json::Value;

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
    let terminating = poll_until(|| {
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

/// A server with the widget CRD whose spec has a `set` list (`tags`) and a `map` list (`ports`,
/// keyed by `port`).
fn server_with_list_types(dir: &std::path::Path) -> ApiServerProcess {
    let server = ApiServerProcess::start(dir, &[]).unwrap();
    let crd = widget_crd("self.size >= 0", "").replace(
        "              size: {type: integer}",
        "              size: {type: integer}
              note: {type: string}
              tags: {type: array, x-kubernetes-list-type: set, items: {type: string}}
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [port]
                items: {type: object, required: [port], properties: {port: {type: integer}, name: {type: string}}}",
    );
    let file = dir.join("crd.yaml");
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
    server
}

#[test]
fn server_side_apply_tracks_owners_merges_lists_and_conflicts_until_forced() {
    let dir = Scratch::new("fidelity-ssa").unwrap();
    let server = server_with_list_types(&dir.0);
    let write = |name: &str, text: &str| {
        let file = dir.0.join(name);
        std::fs::write(&file, text).unwrap();
        file.to_str().unwrap().to_owned()
    };
    let widget = |spec: &str| {
        format!(
            "apiVersion: example.com/v1\nkind: Widget\nmetadata: {{name: w, namespace: default}}\nspec: {spec}\n"
        )
    };
    let apply = |manager: &str, spec: &str, extra: &[&str]| {
        let file = write(&format!("{manager}.yaml"), &widget(spec));
        let mut args = vec!["apply", "--server-side", "--field-manager", manager, "-f", &file];
        args.extend_from_slice(extra);
        kubectl(&server, &args)
    };
    let spec = || -> Value {
        serde_json::from_str::<Value>(&ok(&server, &["get", "widget", "w", "-o", "json"])).unwrap()["spec"]
            .clone()
    };

    let out = apply(
        "alice",
        "{size: 1, note: hi, tags: [a], ports: [{port: 80, name: http}]}",
        &[],
    );
    assert!(out.success, "{}", out.stderr);
    // Bob sets alice's field to another value: a conflict naming her and the field.
    let out = apply("bob", "{size: 2}", &[]);
    assert!(!out.success);
    assert!(
        out.stderr.contains("conflict with \"alice\"") && out.stderr.contains(".spec.size"),
        "{}",
        out.stderr
    );
    assert_eq!(spec()["size"], 1);
    // Forced, the field is bob's; his list items merge with alice's.
    let out = apply(
        "bob",
        "{size: 2, tags: [b], ports: [{port: 443, name: https}]}",
        &["--force-conflicts"],
    );
    assert!(out.success, "{}", out.stderr);
    assert_eq!(
        spec(),
        serde_json::json!({"size": 2, "note": "hi", "tags": ["a", "b"],
                           "ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]})
    );
    // Alice stops applying size, the note, her tag and her port: what only she managed goes;
    // size is bob's now and stays.
    let out = apply("alice", "{ports: []}", &[]);
    assert!(out.success, "{}", out.stderr);
    assert_eq!(
        serde_json::json!({"size": 2, "tags": ["b"], "ports": [{"port": 443, "name": "https"}]}),
        spec()
    );

    let managed: Value = serde_json::from_str(&ok(
        &server,
        &["get", "widget", "w", "-o", "json", "--show-managed-fields"],
    ))
    .unwrap();
    let managers: Vec<(&str, &str)> = managed["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["manager"].as_str().unwrap(), m["operation"].as_str().unwrap()))
        .collect();
    assert!(
        managers.contains(&("bob", "Apply")) && managers.contains(&("alice", "Apply")),
        "{managers:?}"
    );
    // An ordinary update (kubectl edit, label…) takes the fields it changes.
    ok(
        &server,
        &[
            "patch",
            "widget",
            "w",
            "--type=merge",
            "-p",
            r#"{"spec":{"size":3}}"#,
            "--field-manager",
            "editor",
        ],
    );
    let out = apply(
        "bob",
        "{size: 2, tags: [b], ports: [{port: 443, name: https}]}",
        &[],
    );
    assert!(
        !out.success && out.stderr.contains("conflict with \"editor\""),
        "{}",
        out.stderr
    );
}
