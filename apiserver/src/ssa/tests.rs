use serde_json::json;

use super::*;

fn schema() -> Value {
    json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "games": {"type": "integer"},
            "note": {"type": "string"},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["port"],
                      "items": {"type": "object", "properties": {"port": {"type": "integer"}, "name": {"type": "string"}}}},
            "args": {"type": "array", "items": {"type": "string"}}
        }}
    }})
}

fn who(manager: &str, force: bool) -> Applier<'_> {
    Applier {
        manager,
        force,
        api_version: "example.com/v1",
        now: "2026-12-05T10:00:00Z",
        subresource: "",
    }
}

#[allow(clippy::needless_pass_by_value)] // called with json!() values
fn obj(spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "W", "metadata": {"name": "w", "namespace": "d"}, "spec": spec})
}

fn fields_of_manager(object: &Value, manager: &str) -> Vec<String> {
    managed_of(object)
        .into_iter()
        .find(|m| m.manager == manager)
        .map(|m| m.fields.leaves().iter().map(|p| fieldset::describe(p)).collect())
        .unwrap_or_default()
}

#[test]
fn an_apply_owns_its_fields_and_records_them() {
    let s = schema();
    let applied = apply(
        None,
        &obj(json!({"games": 5, "tags": ["a"], "ports": [{"port": 80, "name": "http"}]})),
        Some(&s),
        &who("alice", false),
    )
    .unwrap();
    assert_eq!(applied["spec"]["games"], 5);
    let entry = &applied["metadata"]["managedFields"][0];
    assert_eq!(
        (entry["manager"].as_str(), entry["operation"].as_str()),
        (Some("alice"), Some("Apply"))
    );
    assert_eq!(entry["fieldsType"], "FieldsV1");
    assert_eq!(
        entry["fieldsV1"],
        json!({"f:spec": {"f:games": {}, "f:tags": {"v:\"a\"": {}},
               "f:ports": {"k:{\"port\":80}": {".": {}, "f:name": {}, "f:port": {}}}}})
    );
}

#[test]
fn fields_no_longer_applied_are_removed_unless_someone_else_manages_them() {
    let s = schema();
    let first = apply(
        None,
        &obj(json!({"games": 5, "note": "x", "tags": ["a", "b"], "ports": [{"port": 80}, {"port": 81}]})),
        Some(&s),
        &who("alice", false),
    )
    .unwrap();
    // Bob applies the note too (same value: shared, no conflict) and one tag.
    let shared = apply(
        Some(&first),
        &obj(json!({"note": "x", "tags": ["b"]})),
        Some(&s),
        &who("bob", false),
    )
    .unwrap();
    // Alice stops applying note, tag b, port 81 and games stays.
    let second = apply(
        Some(&shared),
        &obj(json!({"games": 5, "tags": ["a"], "ports": [{"port": 80}]})),
        Some(&s),
        &who("alice", false),
    )
    .unwrap();
    assert_eq!(second["spec"]["note"], "x", "bob still manages note");
    assert_eq!(
        second["spec"]["tags"],
        json!(["a", "b"]),
        "bob still manages tag b"
    );
    assert_eq!(
        second["spec"]["ports"],
        json!([{"port": 80}]),
        "port 81 was only alice's"
    );
    let third = apply(
        Some(&second),
        &obj(json!({"tags": ["a"]})),
        Some(&s),
        &who("alice", false),
    )
    .unwrap();
    assert!(
        third["spec"].get("games").is_none(),
        "games was only alice's: {third}"
    );
    assert_eq!(
        fields_of_manager(&third, "bob"),
        [".spec.note", ".spec.tags[=\"b\"]"]
    );
}

#[test]
fn a_different_value_conflicts_unless_forced() {
    let s = schema();
    let first = apply(
        None,
        &obj(json!({"games": 5, "args": ["--x"]})),
        Some(&s),
        &who("alice", false),
    )
    .unwrap();
    let conflicts = apply(
        Some(&first),
        &obj(json!({"games": 6, "args": ["--x"]})),
        Some(&s),
        &who("bob", false),
    )
    .unwrap_err();
    assert_eq!(
        conflicts,
        [Conflict {
            manager: "alice".into(),
            field: ".spec.games".into()
        }]
    );
    let forced = apply(
        Some(&first),
        &obj(json!({"games": 6})),
        Some(&s),
        &who("bob", true),
    )
    .unwrap();
    assert_eq!(forced["spec"]["games"], 6);
    assert_eq!(fields_of_manager(&forced, "bob"), [".spec.games"]);
    assert_eq!(
        fields_of_manager(&forced, "alice"),
        [".spec.args"],
        "alice lost games only"
    );
    // Alice re-applying her old value now conflicts with bob.
    let back = apply(
        Some(&forced),
        &obj(json!({"games": 5, "args": ["--x"]})),
        Some(&s),
        &who("alice", false),
    )
    .unwrap_err();
    assert_eq!(back[0].manager, "bob");
}

#[test]
fn map_list_items_merge_by_key_and_atomic_lists_replace() {
    let s = schema();
    let first = apply(
        None,
        &obj(json!({"ports": [{"port": 80, "name": "http"}], "args": ["a", "b"]})),
        Some(&s),
        &who("alice", false),
    )
    .unwrap();
    let second = apply(
        Some(&first),
        &obj(json!({"ports": [{"port": 443, "name": "https"}]})),
        Some(&s),
        &who("bob", false),
    )
    .unwrap();
    assert_eq!(
        second["spec"]["ports"],
        json!([{"port": 80, "name": "http"}, {"port": 443, "name": "https"}])
    );
    let third = apply(
        Some(&second),
        &obj(json!({"ports": [{"port": 80, "name": "http"}], "args": ["c"]})),
        Some(&s),
        &who("alice", false),
    )
    .unwrap();
    assert_eq!(third["spec"]["args"], json!(["c"]), "atomic: replaced whole");
    // Without a schema (built-in kinds) every list is atomic.
    let plain = apply(
        Some(&first),
        &obj(json!({"ports": [{"port": 9}]})),
        None,
        &who("alice", false),
    )
    .unwrap();
    assert_eq!(plain["spec"]["ports"], json!([{"port": 9}]));
}

#[test]
fn updates_take_the_fields_they_change() {
    let s = schema();
    let applied = apply(
        None,
        &obj(json!({"games": 5, "note": "x"})),
        Some(&s),
        &who("alice", false),
    )
    .unwrap();
    let mut edited = applied.clone();
    edited["spec"]["games"] = json!(7);
    record_update(
        Some(&applied),
        &mut edited,
        Some(&s),
        "kubectl-edit",
        "2026-12-05T11:00:00Z",
        "",
    );
    assert_eq!(fields_of_manager(&edited, "kubectl-edit"), [".spec.games"]);
    assert_eq!(fields_of_manager(&edited, "alice"), [".spec.note"]);
    // Alice applying games again conflicts with the editor.
    let conflicts = apply(
        Some(&edited),
        &obj(json!({"games": 5, "note": "x"})),
        Some(&s),
        &who("alice", false),
    )
    .unwrap_err();
    assert_eq!(conflicts[0].manager, "kubectl-edit");
    // An update that changes nothing managed leaves the entries alone.
    let mut same = edited.clone();
    record_update(
        Some(&edited),
        &mut same,
        Some(&s),
        "other",
        "2026-12-05T12:00:00Z",
        "",
    );
    assert_eq!(managed_of(&same), managed_of(&edited));
}

#[test]
fn metadata_identity_is_never_managed_and_labels_are() {
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "d", "labels": {"app": "x"}, "finalizers": ["f"]}, "data": {"k": "v"}});
    let set = fields_of(&config, None);
    let described: Vec<String> = set.leaves().iter().map(|p| fieldset::describe(p)).collect();
    assert_eq!(
        described,
        [".data.k", ".metadata.finalizers[=\"f\"]", ".metadata.labels.app"]
    );
}
