//! Patch formats: JSON merge patch (RFC 7386) and JSON patch (RFC 6902, `test` included),
//! through the `json-patch` crate (kube-runtime already builds it), with the one rule where the
//! Kubernetes API server's library differs: a `test` of a missing member against `null` passes.

use json_patch::{Patch, PatchErrorKind, PatchOperation};
use serde_json::Value;

/// Applies a JSON merge patch: objects merge key by key, `null` deletes, anything else
/// replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// Applies a JSON patch: a list of operations, all or nothing.
///
/// # Errors
/// A message naming the failed operation; `doc` is unchanged then.
pub fn json_patch(doc: &mut Value, operations: &Value) -> Result<(), String> {
    if !operations.is_array() {
        return Err("a JSON patch must be a list of operations".into());
    }
    let Patch(operations) =
        serde_json::from_value(operations.clone()).map_err(|e| format!("the patch is malformed: {e}"))?;
    let mut work = doc.clone();
    for (n, op) in operations.iter().enumerate() {
        // As the Kubernetes API server's JSON patch library: a missing member tests equal to
        // null (kube-rs' finalizer helper relies on this).
        if let PatchOperation::Test(test) = op
            && test.value.is_null()
            && work.pointer(test.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(&mut work, std::slice::from_ref(op)).map_err(|e| {
            let what = match e.kind {
                PatchErrorKind::TestFailed => {
                    format!("test failed: {:?} is not {}", e.path.as_str(), test_value(op))
                }
                other => format!("{other} ({:?})", e.path.as_str()),
            };
            format!("operation {n} ({}): {what}", op_name(op))
        })?;
    }
    *doc = work;
    Ok(())
}

fn op_name(op: &PatchOperation) -> &'static str {
    match op {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    }
}

fn test_value(op: &PatchOperation) -> String {
    match op {
        PatchOperation::Test(test) => test.value.to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_rfc7386_examples() {
        let mut doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut doc, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(doc, json!({"a": "z", "c": {"d": "e"}}));
        let mut doc = json!({"a": [1, 2]});
        merge_patch(&mut doc, &json!({"a": [3]}));
        assert_eq!(doc, json!({"a": [3]}), "lists are replaced");
        let mut doc = json!({"a": "x"});
        merge_patch(&mut doc, &json!({"a": {"b": "c"}}));
        assert_eq!(doc, json!({"a": {"b": "c"}}));
    }

    #[test]
    fn json_patch_operations() {
        let mut doc = json!({"spec": {"games": 10, "list": [1, 2]}, "metadata": {"labels": {"a/b": "x"}}});
        json_patch(
            &mut doc,
            &json!([
                {"op": "test", "path": "/spec/games", "value": 10},
                {"op": "replace", "path": "/spec/games", "value": 20},
                {"op": "add", "path": "/spec/list/-", "value": 3},
                {"op": "add", "path": "/spec/list/0", "value": 0},
                {"op": "remove", "path": "/metadata/labels/a~1b"},
                {"op": "copy", "from": "/spec/games", "path": "/spec/copy"},
                {"op": "move", "from": "/spec/copy", "path": "/spec/moved"}
            ]),
        )
        .unwrap();
        assert_eq!(
            doc,
            json!({"spec": {"games": 20, "list": [0, 1, 2, 3], "moved": 20}, "metadata": {"labels": {}}})
        );
    }

    #[test]
    fn a_missing_member_tests_equal_to_null() {
        let mut doc = json!({"metadata": {}});
        json_patch(
            &mut doc,
            &json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                    {"op": "add", "path": "/metadata/finalizers", "value": ["x"]}]),
        )
        .unwrap();
        assert_eq!(doc, json!({"metadata": {"finalizers": ["x"]}}));
        assert!(
            json_patch(
                &mut doc,
                &json!([{"op": "test", "path": "/metadata/other", "value": 1}])
            )
            .is_err()
        );
    }

    #[test]
    fn a_failed_test_changes_nothing() {
        let mut doc = json!({"spec": {"games": 10}});
        let err = json_patch(
            &mut doc,
            &json!([{"op": "replace", "path": "/spec/games", "value": 5}, {"op": "test", "path": "/spec/games", "value": 99}]),
        )
        .unwrap_err();
        assert!(err.starts_with("operation 1 (test): test failed"), "{err}");
        assert_eq!(doc, json!({"spec": {"games": 10}}));
    }

    #[test]
    fn bad_patches_are_errors_not_panics() {
        let mut doc = json!({"a": [1]});
        for patch in [
            json!({"op": "add"}),
            json!([{"op": "add", "path": "/x/y", "value": 1}]),
            json!([{"op": "remove", "path": "/a/5"}]),
            json!([{"op": "remove", "path": "/a/-"}]),
            json!([{"op": "replace", "path": "/nope", "value": 1}]),
            json!([{"op": "frobnicate", "path": "/a"}]),
            json!([{"op": "add", "path": "a", "value": 1}]),
            json!([{"op": "remove", "path": ""}]),
        ] {
            assert!(json_patch(&mut doc, &patch).is_err(), "{patch}");
        }
        assert_eq!(doc, json!({"a": [1]}));
    }
}
