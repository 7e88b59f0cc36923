//! Pruning and defaulting, in the order the Kubernetes API server applies them to custom
//! resources before validation: unknown fields are dropped (and reported), `null` is dropped
//! where the schema does not allow it, and missing fields with a `default` get it.

use serde_json::{Map, Value};

use super::field_error::{child, index, key};

/// Prunes and defaults `value` in place against `schema` (an OpenAPI v3 schema node) and returns
/// the paths of the unknown fields it dropped.
///
/// At the root of a custom resource, `apiVersion`, `kind` and `metadata` are left alone: the API
/// server owns them.
pub fn prune_and_default(schema: &Value, value: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    if let Value::Object(object) = value {
        walk_object(schema, object, "", true, &mut unknown);
    }
    unknown
}

fn preserves_unknown(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

fn walk(schema: &Value, value: &mut Value, path: &str, unknown: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            let embedded = schema
                .get("x-kubernetes-embedded-resource")
                .and_then(Value::as_bool)
                == Some(true);
            walk_object(schema, object, path, embedded, unknown);
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item_schema, item, &index(path, i), unknown);
                }
            }
        }
        _ => {}
    }
}

/// `embedded`: the object is a whole resource (the root, or `x-kubernetes-embedded-resource`),
/// whose `apiVersion`, `kind` and `metadata` are not the schema's business.
fn walk_object(
    schema: &Value,
    object: &mut Map<String, Value>,
    path: &str,
    embedded: bool,
    unknown: &mut Vec<String>,
) {
    let owned_by_server = |name: &str| embedded && matches!(name, "apiVersion" | "kind" | "metadata");
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        let preserve = preserves_unknown(schema);
        object.retain(|name, _| {
            let known = properties.contains_key(name) || preserve || owned_by_server(name);
            if !known {
                unknown.push(child(path, name));
            }
            known
        });
        for (name, field) in object.iter_mut() {
            if owned_by_server(name) {
                continue;
            }
            if let Some(field_schema) = properties.get(name) {
                walk(field_schema, field, &child(path, name), unknown);
            }
        }
    } else if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        for (name, field) in object.iter_mut() {
            walk(additional, field, &key(path, name), unknown);
        }
    } else if !preserves_unknown(schema) && schema.get("type").and_then(Value::as_str) == Some("object") {
        // An object with neither properties nor additionalProperties keeps nothing.
        object.retain(|name, _| {
            let keep = owned_by_server(name);
            if !keep {
                unknown.push(child(path, name));
            }
            keep
        });
    }
    drop_nulls_and_default(schema, object, path, unknown);
}

/// Drops `null` where the field's schema is not `nullable`, then fills in defaults for missing
/// fields (a default is itself pruned and defaulted, as the API server does).
fn drop_nulls_and_default(
    schema: &Value,
    object: &mut Map<String, Value>,
    path: &str,
    unknown: &mut Vec<String>,
) {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    object.retain(|name, field| {
        !(field.is_null()
            && properties
                .get(name)
                .is_some_and(|s| s.get("nullable").and_then(Value::as_bool) != Some(true)))
    });
    for (name, field_schema) in properties {
        if object.contains_key(name) {
            continue;
        }
        if let Some(default) = field_schema.get("default") {
            let mut default = default.clone();
            walk(field_schema, &mut default, &child(path, name), unknown);
            object.insert(name.clone(), default);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "players": {"type": "integer", "default": 2},
                        "resources": {
                            "type": "object",
                            "default": {},
                            "properties": {"cpu": {"type": "integer", "default": 1000}}
                        },
                        "note": {"type": "string", "nullable": true},
                        "name": {"type": "string"},
                        "options": {"type": "object", "additionalProperties": {"type": "string"}},
                        "params": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "list": {"type": "array", "items": {
                            "type": "object", "properties": {"a": {"type": "string"}}
                        }}
                    }
                }
            }
        })
    }

    #[test]
    fn unknown_fields_are_dropped_and_reported_with_their_path() {
        let mut obj = json!({
            "apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n", "labels": {"a": "b"}},
            "extra": 1,
            "spec": {"bogus": true, "list": [{"a": "x", "b": "y"}], "params": {"free": {"x": 1}}}
        });
        let unknown = prune_and_default(&schema(), &mut obj);
        assert_eq!(unknown, vec!["extra", "spec.bogus", "spec.list[0].b"]);
        assert_eq!(obj["metadata"]["labels"]["a"], "b", "metadata is not pruned");
        assert_eq!(
            obj["spec"]["params"]["free"]["x"], 1,
            "preserve-unknown-fields keeps"
        );
        assert!(obj.get("extra").is_none());
        assert!(obj["spec"]["list"][0].get("b").is_none());
    }

    #[test]
    fn defaults_fill_missing_fields_recursively() {
        let mut obj = json!({"spec": {"name": "x"}});
        prune_and_default(&schema(), &mut obj);
        assert_eq!(obj["spec"]["players"], 2);
        assert_eq!(
            obj["spec"]["resources"]["cpu"], 1000,
            "a defaulted object is defaulted too"
        );
    }

    #[test]
    fn present_fields_keep_their_value() {
        let mut obj = json!({"spec": {"players": 4, "resources": {"cpu": 10}}});
        prune_and_default(&schema(), &mut obj);
        assert_eq!(obj["spec"]["players"], 4);
        assert_eq!(obj["spec"]["resources"]["cpu"], 10);
    }

    #[test]
    fn null_is_dropped_unless_nullable_and_then_defaulted() {
        let mut obj = json!({"spec": {"players": null, "note": null, "name": null}});
        prune_and_default(&schema(), &mut obj);
        assert_eq!(obj["spec"]["players"], 2, "null dropped, then defaulted");
        assert!(
            obj["spec"]["note"].is_null() && obj["spec"].get("note").is_some(),
            "nullable keeps null"
        );
        assert!(
            obj["spec"].get("name").is_none(),
            "null without default is dropped"
        );
    }
}
