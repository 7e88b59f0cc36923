//! What the API server does to built-in kinds on every write, as their upstream strategies do.
//! Today: a Secret's `stringData` is merged into `data` (base64) and never stored, its `type`
//! defaults to `Opaque` and cannot change.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use crate::schema::{ErrorKind, FieldError};

fn invalid(path: &str, value: &Value, detail: &str) -> FieldError {
    FieldError::new(path, ErrorKind::Invalid, Some(value), detail.to_owned())
}

/// Normalizes `obj` (as it would be stored) of `kind` in `group`; `old` on updates. Returns the
/// field errors that make it invalid.
pub(crate) fn admit(group: &str, kind: &str, obj: &mut Value, old: Option<&Value>) -> Vec<FieldError> {
    match (group, kind) {
        ("", "Secret") => secret(obj, old),
        ("apiextensions.k8s.io", "CustomResourceDefinition") if old.is_none() => {
            crd_finalizer(obj);
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// A new CRD gets the finalizer that holds it, once deleted, until its objects are gone.
fn crd_finalizer(obj: &mut Value) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let finalizers = meta
        .entry("finalizers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(list) = finalizers
        && !list.iter().any(|f| f == super::lifecycle::CRD_CLEANUP)
    {
        list.push(super::lifecycle::CRD_CLEANUP.into());
    }
}

fn secret(obj: &mut Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(map) = obj.as_object_mut() else {
        return errors;
    };
    match map.remove("stringData") {
        None | Some(Value::Null) => {}
        Some(Value::Object(strings)) => {
            let data = map.entry("data").or_insert_with(|| Value::Object(Map::new()));
            if data.is_null() {
                *data = Value::Object(Map::new());
            }
            if let Value::Object(data) = data {
                for (key, value) in strings {
                    match value {
                        Value::String(text) => {
                            data.insert(key, STANDARD.encode(text).into());
                        }
                        other => {
                            errors.push(invalid(&format!("stringData[{key}]"), &other, "must be a string"));
                        }
                    }
                }
            }
        }
        Some(other) => errors.push(invalid("stringData", &other, "must be an object")),
    }
    if map.get("type").and_then(Value::as_str).is_none_or(str::is_empty) {
        map.insert("type".into(), "Opaque".into());
    }
    if let Some(old) = old {
        let before = old.get("type").and_then(Value::as_str).unwrap_or("Opaque");
        if map.get("type").and_then(Value::as_str) != Some(before) {
            let now = map.get("type").cloned().unwrap_or_default();
            errors.push(invalid("type", &now, "field is immutable"));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn string_data_is_merged_into_data_and_never_kept() {
        let mut secret = json!({"kind": "Secret", "data": {"a": "eA==", "b": "eA=="}, "stringData": {"b": "two", "c": "three"}});
        assert!(admit("", "Secret", &mut secret, None).is_empty());
        assert_eq!(
            secret,
            json!({"kind": "Secret", "data": {"a": "eA==", "b": "dHdv", "c": "dGhyZWU="}, "type": "Opaque"})
        );
        let mut only_strings = json!({"stringData": {"k": ""}, "type": "kubernetes.io/tls"});
        assert!(admit("", "Secret", &mut only_strings, None).is_empty());
        assert_eq!(
            only_strings,
            json!({"data": {"k": ""}, "type": "kubernetes.io/tls"})
        );
    }

    #[test]
    fn bad_string_data_and_a_changed_type_are_invalid() {
        let mut secret = json!({"stringData": {"k": 5}});
        let errors = admit("", "Secret", &mut secret, None);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "stringData[k]");
        let old = json!({"type": "Opaque"});
        let mut changed = json!({"type": "kubernetes.io/tls"});
        let errors = admit("", "Secret", &mut changed, Some(&old));
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].to_string().contains("field is immutable"),
            "{}",
            errors[0]
        );
        // An update that leaves type out keeps the default, which is what was stored.
        assert!(admit("", "Secret", &mut json!({}), Some(&old)).is_empty());
    }

    #[test]
    fn other_kinds_are_left_alone() {
        let mut cm = json!({"stringData": {"k": "v"}});
        assert!(admit("", "ConfigMap", &mut cm, None).is_empty());
        assert_eq!(cm, json!({"stringData": {"k": "v"}}));
    }
}
