use serde_json::json;

use super::*;

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "finalizers": ["a"], "labels": {"app": "x", "tier": "web"}},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {"spec": {
                "containers": [
                    {"name": "main", "image": "x:1", "args": ["--a"],
                     "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 9090, "name": "metrics"}],
                     "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                     "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}]},
                    {"name": "sidecar", "image": "s:1"}
                ],
                "volumes": [{"name": "cfg", "configMap": {"name": "c"}}],
                "tolerations": [{"key": "gpu", "operator": "Exists"}]
            }}
        }
    })
}

#[test]
fn what_helm_upgrade_sends_keeps_the_rest_of_each_container() {
    // A three-way patch as helm computes it for a new image tag and log level.
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "main"}, {"name": "sidecar"}],
        "containers": [{"name": "main", "image": "x:2", "args": ["--a", "--debug"]}]
    }}}});
    let mut d = deployment();
    apply("Deployment", &mut d, &patch).unwrap();
    let main = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(main["image"], "x:2");
    assert_eq!(
        main["args"],
        json!(["--a", "--debug"]),
        "args are atomic: replaced"
    );
    assert_eq!(
        main["ports"].as_array().unwrap().len(),
        2,
        "untouched fields stay"
    );
    assert_eq!(main["env"][1]["value"], "2");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][1]["name"], "sidecar");
    assert!(!d.to_string().contains('$'), "no directive is stored: {d}");
}

#[test]
fn items_merge_by_key_are_added_deleted_and_ordered() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "main",
         "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}, {"name": "A", "$patch": "delete"}],
         "ports": [{"containerPort": 9090, "$patch": "delete"}],
         "$setElementOrder/env": [{"name": "C"}, {"name": "B"}]},
        {"name": "new", "image": "n:1"}
    ]}}}});
    let mut d = deployment();
    apply("Deployment", &mut d, &patch).unwrap();
    let containers = &d["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().unwrap().len(), 3);
    assert_eq!(containers[2], json!({"name": "new", "image": "n:1"}));
    assert_eq!(
        containers[0]["env"],
        json!([{"name": "C", "value": "3"}, {"name": "B", "value": "two"}])
    );
    assert_eq!(
        containers[0]["ports"],
        json!([{"containerPort": 80, "name": "http"}])
    );
}

#[test]
fn primitives_maps_replace_and_retain_keys() {
    let patch = json!({
        "metadata": {"finalizers": ["b", "a"], "$deleteFromPrimitiveList/finalizers": ["a"],
                     "labels": {"tier": null, "new": "y"}},
        "spec": {
            "strategy": {"$retainKeys": ["type"], "type": "Recreate"},
            "template": {"spec": {
                "tolerations": [{"key": "other", "operator": "Exists"}],
                "volumes": [{"name": "cfg", "$retainKeys": ["name", "secret"], "secret": {"secretName": "s"}}]
            }}
        }
    });
    let mut d = deployment();
    apply("Deployment", &mut d, &patch).unwrap();
    assert_eq!(d["metadata"]["finalizers"], json!(["b"]));
    assert_eq!(d["metadata"]["labels"], json!({"app": "x", "new": "y"}));
    assert_eq!(
        d["spec"]["strategy"],
        json!({"type": "Recreate"}),
        "rollingUpdate went with $retainKeys"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["tolerations"],
        json!([{"key": "other", "operator": "Exists"}]),
        "lists without a strategy are replaced"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "cfg", "secret": {"secretName": "s"}}])
    );

    let mut d = deployment();
    let replace = json!({"spec": {"template": {"spec": {"containers": [{"$patch": "replace"}, {"name": "only", "image": "o"}]}}},
                         "metadata": {"labels": {"$patch": "replace", "just": "this"}}});
    apply("Deployment", &mut d, &replace).unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"],
        json!([{"name": "only", "image": "o"}])
    );
    assert_eq!(d["metadata"]["labels"], json!({"just": "this"}));
    let mut d = deployment();
    apply(
        "Deployment",
        &mut d,
        &json!({"spec": {"strategy": {"$patch": "delete"}}}),
    )
    .unwrap();
    assert!(d["spec"].get("strategy").is_none());
}

#[test]
fn other_kinds_use_their_own_keys() {
    let mut svc =
        json!({"kind": "Service", "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
    apply(
        "Service",
        &mut svc,
        &json!({"spec": {"ports": [{"port": 80, "targetPort": 9000}]}}),
    )
    .unwrap();
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"port": 80, "targetPort": 9000}, {"port": 443}])
    );
    let mut cm = json!({"data": {"a": "1", "b": "2"}});
    apply("ConfigMap", &mut cm, &json!({"data": {"a": null, "c": "3"}})).unwrap();
    assert_eq!(cm, json!({"data": {"b": "2", "c": "3"}}));
    // RBAC rules have no strategy: replaced whole.
    let mut role = json!({"rules": [{"verbs": ["get"]}]});
    apply("Role", &mut role, &json!({"rules": [{"verbs": ["list"]}]})).unwrap();
    assert_eq!(role["rules"], json!([{"verbs": ["list"]}]));
}

#[test]
fn malformed_patches_are_refused_naming_the_place() {
    for (patch, words) in [
        (json!([1]), "must be an object"),
        (json!({"metadata": {"$patch": "explode"}}), "unknown $patch"),
        (
            json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
            "has no name",
        ),
        (
            json!({"spec": {"template": {"spec": {"containers": ["x"]}}}}),
            "must be objects",
        ),
        (json!({"metadata": {"$retainKeys": ["name"]}}), "not allowed here"),
        (json!({"$frobnicate": 1}), "unknown directive"),
    ] {
        let mut d = deployment();
        let error = apply("Deployment", &mut d, &patch).unwrap_err();
        assert!(error.contains(words), "{patch}: {error}");
    }
}
