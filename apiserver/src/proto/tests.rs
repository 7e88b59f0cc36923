use serde_json::json;

use super::*;

/// What kubectl 1.37 sends for `kubectl create secret generic s --from-literal=a=b` (its
/// `-v=10` log): every string field written even when empty, and an empty creationTimestamp.
const KUBECTL_SECRET: &[u8] = &[
    0x6b, 0x38, 0x73, 0x00, 0x0a, 0x0c, 0x0a, 0x02, 0x76, 0x31, 0x12, 0x06, 0x53, 0x65, 0x63, 0x72, //
    0x65, 0x74, 0x12, 0x1d, 0x0a, 0x11, 0x0a, 0x01, 0x73, 0x12, 0x00, 0x1a, 0x00, 0x22, 0x00, 0x2a, //
    0x00, 0x32, 0x00, 0x38, 0x00, 0x42, 0x00, 0x12, 0x06, 0x0a, 0x01, 0x61, 0x12, 0x01, 0x62, 0x1a, //
    0x00, 0x1a, 0x00, 0x22, 0x00,
];

#[test]
fn reads_what_kubectl_sends() {
    assert_eq!(
        decode(KUBECTL_SECRET),
        Ok(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "Yg=="}}))
    );
}

#[test]
fn stored_objects_round_trip() {
    let objects = [
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": "team", "uid": "u-1", "resourceVersion": "42", "creationTimestamp": "2026-12-05T10:00:00Z",
                            "labels": {"b": "2", "a": "1"}, "finalizers": ["x"],
                            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "u-2", "controller": false}]},
               "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"},
               "data": {"k": "AAEC/w=="}, "type": "Opaque", "immutable": false}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "deletionGracePeriodSeconds": 0,
               "deletionTimestamp": "2026-12-05T10:00:01Z",
               "managedFields": [{"manager": "kubectl", "operation": "Apply", "fieldsType": "FieldsV1",
                                  "fieldsV1": {"f:data": {"f:a": {}}}, "time": "2026-12-05T10:00:00Z"}]},
               "data": {"a": "b"}, "binaryData": {"bin": "AA=="}}),
        json!({"apiVersion": "v1", "kind": "SecretList", "metadata": {"resourceVersion": "7", "continue": "c", "remainingItemCount": 0},
               "items": [{"metadata": {"name": "one"}}, {"metadata": {"name": "two"}, "type": "x"}]}),
        json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure", "message": "m",
               "reason": "Invalid", "code": 422,
               "details": {"name": "n", "kind": "secrets", "causes": [{"reason": "FieldValueInvalid", "field": "data"}]}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "r", "namespace": "ns"},
               "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}],
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"}}),
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "metadata": {},
               "spec": {"user": "u", "groups": ["g"], "extra": {"scopes": ["a", "b"]},
                        "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "default"}},
               "status": {"allowed": false, "reason": "no"}}),
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {"creationTimestamp": "2026-12-05T10:00:00.5Z"},
               "status": {"userInfo": {"username": "admin", "groups": ["system:masters", "system:authenticated"]}}}),
    ];
    for object in objects {
        let bytes = encode(&object).unwrap_or_else(|| panic!("not encoded: {object}"));
        assert_eq!(decode(&bytes).as_ref(), Ok(&object), "{object}");
    }
}

#[test]
fn delete_options_of_any_group_version() {
    let options = json!({"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground",
                         "dryRun": ["All"], "gracePeriodSeconds": 0, "preconditions": {"uid": "u"}});
    let bytes = encode(&options).unwrap_or_default();
    assert_eq!(decode(&bytes), Ok(options));
    let elsewhere = json!({"apiVersion": "apps/v1", "kind": "DeleteOptions", "orphanDependents": false});
    assert_eq!(decode(&encode(&elsewhere).unwrap_or_default()), Ok(elsewhere));
}

#[test]
fn custom_resources_and_unknown_kinds_stay_json() {
    assert_eq!(
        encode(&json!({"apiVersion": "ringrift.ai/v1alpha1", "kind": "SelfplayJob"})),
        None
    );
    assert_eq!(encode(&json!({"apiVersion": "apps/v1", "kind": "Secret"})), None);
    assert_eq!(encode(&json!({"kind": "Secret"})), None);
    // A field of the wrong JSON type cannot be written: the caller answers JSON instead.
    assert_eq!(
        encode(&json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": 5}})),
        None
    );
    let mut type_meta = Writer::default();
    type_meta.delimited(1, b"apps/v1");
    type_meta.delimited(2, b"Deployment");
    let mut envelope = Writer::default();
    envelope.delimited(1, &type_meta.bytes);
    envelope.delimited(2, b"\x0a\x00");
    let deployment = [&MAGIC[..], &envelope.bytes].concat();
    assert_eq!(
        decode(&deployment),
        Err(DecodeError::Unsupported {
            api_version: "apps/v1".into(),
            kind: "Deployment".into()
        })
    );
}

#[test]
fn malformed_bodies_are_errors() {
    for bad in [
        &b"{\"kind\":\"Secret\"}"[..],
        b"k8s",
        b"k8s\0\x0a\x50",
        &KUBECTL_SECRET[..KUBECTL_SECRET.len() - 8],
    ] {
        assert!(matches!(decode(bad), Err(DecodeError::Malformed(_))), "{bad:?}");
    }
    // A string field holding a number: a wrong wire type.
    let mut wrong = KUBECTL_SECRET.to_vec();
    wrong[22] = 0x08; // metadata.name (field 1) as a varint
    wrong[23] = 0x01;
    assert!(matches!(decode(&wrong), Err(DecodeError::Malformed(_))));
}

#[test]
fn every_served_kind_has_a_message() {
    let kinds: Vec<_> = served_kinds().collect();
    assert!(kinds.contains(&("v1", "Namespace")));
    assert!(kinds.contains(&("authorization.k8s.io/v1", "SelfSubjectAccessReview")));
    for (api_version, kind) in kinds {
        let version = if api_version == "*" { "v1" } else { api_version };
        let object = json!({"apiVersion": version, "kind": kind, "metadata": {}});
        assert!(encode(&object).is_some(), "{kind}");
    }
}
