//! Tests of the write semantics: metadata on create, preconditions, generation, the status
//! subresource, no-op updates, finalizers and deletion.

use serde_json::json;

use super::*;

const CTX: WriteContext<'static> = WriteContext {
    now: "2026-11-24T10:00:00Z",
    uid: "u-1",
    status_subresource: true,
    generation: true,
};

fn stored() -> Value {
    json!({
        "apiVersion": "ringrift.ai/v1alpha1", "kind": "SelfplayJob",
        "metadata": {"name": "a", "namespace": "default", "uid": "u-1", "resourceVersion": "7",
                     "generation": 3, "creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"x": "1"}},
        "spec": {"games": 10},
        "status": {"phase": "Running"}
    })
}

fn write(outcome: UpdateOutcome) -> Value {
    match outcome {
        UpdateOutcome::Write(v) => v,
        other => panic!("expected a write, got {other:?}"),
    }
}

#[test]
fn create_sets_server_owned_metadata_and_drops_status() {
    let obj = prepare_create(
        json!({"metadata": {"name": "a", "uid": "mine", "resourceVersion": "99", "deletionTimestamp": "x"},
               "spec": {}, "status": {"phase": "Succeeded"}}),
        &CTX,
    )
    .unwrap();
    assert_eq!(obj["metadata"]["uid"], "u-1");
    assert_eq!(obj["metadata"]["generation"], 1);
    assert_eq!(obj["metadata"]["creationTimestamp"], "2026-11-24T10:00:00Z");
    assert!(obj["metadata"].get("resourceVersion").is_none());
    assert!(obj["metadata"].get("deletionTimestamp").is_none());
    assert!(obj.get("status").is_none(), "status comes only through /status");
    let plain = prepare_create(
        json!({"metadata": {"name": "a"}, "data": {"k": "v"}}),
        &WriteContext {
            status_subresource: false,
            ..CTX
        },
    )
    .unwrap();
    assert_eq!(plain["data"]["k"], "v");
    assert!(matches!(
        prepare_create(json!({"spec": {}}), &CTX),
        Err(WriteError::BadRequest(_))
    ));
}

#[test]
fn stale_resource_version_conflicts() {
    let mut new = stored();
    new["metadata"]["resourceVersion"] = "6".into();
    new["spec"]["games"] = 20.into();
    let err = prepare_update(&stored(), new, Subresource::Main, &CTX).unwrap_err();
    assert!(matches!(err, WriteError::Conflict(m) if m.contains("has been modified")));
}

#[test]
fn no_resource_version_means_unconditional() {
    let mut new = stored();
    new["metadata"].as_object_mut().unwrap().remove("resourceVersion");
    new["spec"]["games"] = 20.into();
    assert_eq!(
        write(prepare_update(&stored(), new, Subresource::Main, &CTX).unwrap())["spec"]["games"],
        20
    );
}

#[test]
fn spec_changes_bump_generation_metadata_changes_do_not() {
    let mut spec_change = stored();
    spec_change["spec"]["games"] = 20.into();
    assert_eq!(
        write(prepare_update(&stored(), spec_change, Subresource::Main, &CTX).unwrap())["metadata"]["generation"],
        4
    );
    let mut label_change = stored();
    label_change["metadata"]["labels"]["x"] = "2".into();
    let out = write(prepare_update(&stored(), label_change, Subresource::Main, &CTX).unwrap());
    assert_eq!(out["metadata"]["generation"], 3);
    assert_eq!(out["metadata"]["labels"]["x"], "2");
}

#[test]
fn main_endpoint_ignores_status_and_server_owned_metadata() {
    let mut new = stored();
    new["status"]["phase"] = "Succeeded".into();
    new["metadata"]["uid"] = "u-1".into();
    new["metadata"]["generation"] = 100.into();
    new["metadata"]["creationTimestamp"] = "1999-01-01T00:00:00Z".into();
    assert_eq!(
        prepare_update(&stored(), new, Subresource::Main, &CTX).unwrap(),
        UpdateOutcome::Unchanged
    );
}

#[test]
fn status_endpoint_takes_only_status() {
    let mut new = stored();
    new["status"]["phase"] = "Succeeded".into();
    new["spec"]["games"] = 999.into();
    new["metadata"]["labels"]["x"] = "changed".into();
    let out = write(prepare_update(&stored(), new, Subresource::Status, &CTX).unwrap());
    assert_eq!(out["status"]["phase"], "Succeeded");
    assert_eq!(out["spec"]["games"], 10);
    assert_eq!(out["metadata"]["labels"]["x"], "1");
    assert_eq!(
        out["metadata"]["generation"], 3,
        "status writes never bump generation"
    );
}

#[test]
fn unchanged_writes_are_no_ops() {
    assert_eq!(
        prepare_update(&stored(), stored(), Subresource::Main, &CTX).unwrap(),
        UpdateOutcome::Unchanged
    );
    assert_eq!(
        prepare_update(&stored(), stored(), Subresource::Status, &CTX).unwrap(),
        UpdateOutcome::Unchanged
    );
}

#[test]
fn other_uid_conflicts() {
    let mut new = stored();
    new["metadata"]["uid"] = "someone-else".into();
    assert!(
        matches!(prepare_update(&stored(), new, Subresource::Main, &CTX), Err(WriteError::Conflict(m)) if m.contains("UID in precondition"))
    );
}

#[test]
fn delete_without_finalizers_removes() {
    assert_eq!(
        prepare_delete(&stored(), &Preconditions::default(), &CTX).unwrap(),
        DeleteOutcome::Remove
    );
    let stale = Preconditions {
        resource_version: Some("1".into()),
        uid: None,
    };
    assert!(matches!(
        prepare_delete(&stored(), &stale, &CTX),
        Err(WriteError::Conflict(_))
    ));
}

#[test]
fn finalizers_defer_deletion_until_the_last_is_removed() {
    let mut obj = stored();
    obj["metadata"]["finalizers"] = json!(["a.ringrift.ai/x", "b.ringrift.ai/y"]);
    let DeleteOutcome::MarkDeleting(marked) = prepare_delete(&obj, &Preconditions::default(), &CTX).unwrap()
    else {
        panic!("expected mark")
    };
    assert_eq!(marked["metadata"]["deletionTimestamp"], "2026-11-24T10:00:00Z");
    assert_eq!(
        prepare_delete(&marked, &Preconditions::default(), &CTX).unwrap(),
        DeleteOutcome::AlreadyDeleting
    );

    let mut one_left = marked.clone();
    one_left["metadata"]["finalizers"] = json!(["b.ringrift.ai/y"]);
    let out = write(prepare_update(&marked, one_left.clone(), Subresource::Main, &CTX).unwrap());
    assert_eq!(
        out["metadata"]["deletionTimestamp"], "2026-11-24T10:00:00Z",
        "a client cannot clear it"
    );

    let mut added = one_left.clone();
    added["metadata"]["finalizers"] = json!(["b.ringrift.ai/y", "c.ringrift.ai/z"]);
    assert!(matches!(
        prepare_update(&out, added, Subresource::Main, &CTX),
        Err(WriteError::Forbidden(_))
    ));

    let mut none_left = out.clone();
    none_left["metadata"]["finalizers"] = json!([]);
    assert!(matches!(
        prepare_update(&out, none_left, Subresource::Main, &CTX).unwrap(),
        UpdateOutcome::Remove(_)
    ));
}

#[test]
fn sameness_ignores_only_the_version_and_managed_times() {
    let a = json!({"kind": "K", "metadata": {"name": "x", "resourceVersion": "1",
                   "managedFields": [{"manager": "m", "time": "2026-12-05T10:00:00Z"}]}, "spec": {"n": 1}});
    let mut b = a.clone();
    b["metadata"]["resourceVersion"] = "2".into();
    b["metadata"]["managedFields"][0]["time"] = "2026-12-05T11:00:00Z".into();
    assert!(same_ignoring_version(&a, &b));
    assert!(same_ignoring_version(&b, &a));
    // Another manager, or other fields managed: a change worth a write.
    let mut shared = b.clone();
    shared["metadata"]["managedFields"] =
        json!([{"manager": "m", "time": "t"}, {"manager": "n", "time": "t"}]);
    assert!(!same_ignoring_version(&a, &shared));
    let mut labelled = a.clone();
    labelled["metadata"]["labels"] = json!({"l": "v"});
    assert!(!same_ignoring_version(&a, &labelled));
    assert!(!same_ignoring_version(&labelled, &a));
    let mut changed = a.clone();
    changed["spec"]["n"] = 2.into();
    assert!(!same_ignoring_version(&a, &changed));
    let mut extra = a.clone();
    extra["status"] = json!({});
    assert!(!same_ignoring_version(&a, &extra));
    assert!(!same_ignoring_version(&extra, &a));
    let bare = json!({"kind": "K", "metadata": null, "spec": {"n": 1}});
    assert!(!same_ignoring_version(&a, &bare));
}
