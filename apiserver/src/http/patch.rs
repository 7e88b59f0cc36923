//! Patch formats: JSON merge patch (RFC 7386) and JSON patch (RFC 6902, `test` included).

use serde_json::Value;

/// Applies a JSON merge patch: objects merge key by key, `null` deletes, anything else
/// replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(map) = target {
        for (key, value) in patch {
            if value.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// Decodes one JSON pointer token (`~1` is `/`, `~0` is `~`).
fn token(s: &str) -> String {
    s.replace("~1", "/").replace("~0", "~")
}

/// Splits a pointer into its parent pointer and last token.
fn split(pointer: &str) -> Result<(&str, String), String> {
    if pointer.is_empty() {
        return Err("the root cannot be the target of this operation".into());
    }
    if !pointer.starts_with('/') {
        return Err(format!("invalid JSON pointer {pointer:?}: must start with /"));
    }
    let (parent, last) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    Ok((parent, token(last)))
}

fn index(len: usize, last: &str, allow_end: bool) -> Result<usize, String> {
    if allow_end && last == "-" {
        return Ok(len);
    }
    let i: usize = last
        .parse()
        .map_err(|_| format!("invalid array index {last:?}"))?;
    let max = if allow_end { len } else { len.saturating_sub(1) };
    if (allow_end && i > len) || (!allow_end && (len == 0 || i > max)) {
        return Err(format!("array index {i} out of bounds"));
    }
    Ok(i)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(last, value);
            Ok(())
        }
        Some(Value::Array(items)) => {
            let i = index(items.len(), &last, true)?;
            items.insert(i, value);
            Ok(())
        }
        _ => Err(format!("the parent of {path:?} does not exist")),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(map)) => map
            .remove(&last)
            .ok_or_else(|| format!("{path:?} does not exist")),
        Some(Value::Array(items)) => {
            let i = index(items.len(), &last, false)?;
            Ok(items.remove(i))
        }
        _ => Err(format!("{path:?} does not exist")),
    }
}

fn get(doc: &Value, path: &str) -> Result<Value, String> {
    doc.pointer(path)
        .cloned()
        .ok_or_else(|| format!("{path:?} does not exist"))
}

/// Applies a JSON patch: a list of operations, all or nothing.
///
/// # Errors
/// A message naming the failed operation; `doc` is unchanged then.
pub fn json_patch(doc: &mut Value, operations: &Value) -> Result<(), String> {
    let ops = operations
        .as_array()
        .ok_or("a JSON patch must be a list of operations")?;
    let mut work = doc.clone();
    for (n, op) in ops.iter().enumerate() {
        let field = |name: &str| {
            op.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| format!("operation {n}: missing {name:?}"))
        };
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("operation {n}: missing \"value\""))
        };
        let path = field("path")?;
        let result = match field("op")? {
            "add" => add(&mut work, path, value()?),
            "remove" => remove(&mut work, path).map(drop),
            "replace" => remove(&mut work, path).and_then(|_| add(&mut work, path, value()?)),
            "move" => {
                let from = field("from")?;
                remove(&mut work, from).and_then(|moved| add(&mut work, path, moved))
            }
            "copy" => get(&work, field("from")?).and_then(|copied| add(&mut work, path, copied)),
            "test" => {
                // As the Kubernetes API server's JSON patch library: a missing member tests
                // equal to null (kube-rs' finalizer helper relies on this).
                let expected = value()?;
                let actual = work.pointer(path).unwrap_or(&Value::Null);
                if *actual == expected {
                    Ok(())
                } else {
                    Err(format!("test failed: {path:?} is not {expected}"))
                }
            }
            other => Err(format!("unknown op {other:?}")),
        };
        result.map_err(|e| format!("operation {n} ({}): {e}", field("op").unwrap_or("?")))?;
    }
    *doc = work;
    Ok(())
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
