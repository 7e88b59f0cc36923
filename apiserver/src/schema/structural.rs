//! The structural-schema rules every `apiextensions.k8s.io/v1` CRD must satisfy, as documented
//! in "Specifying a structural schema" of the CustomResourceDefinition guide.

use serde_json::Value;

use super::field_error::{ErrorKind, FieldError, child, key};
use super::validate::validate;

const JUNCTORS: [&str; 4] = ["allOf", "anyOf", "oneOf", "not"];

/// Checks that `schema` (an `openAPIV3Schema`) is structural and that its defaults are valid.
/// `path` names the schema in errors, for example
/// `spec.versions[0].schema.openAPIV3Schema`. Returns every violation found.
pub fn check_structural(schema: &Value, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    check_node(schema, path, true, &mut errors);
    if let Some(metadata) = schema.get("properties").and_then(|p| p.get("metadata")) {
        check_metadata(
            metadata,
            &key(&child(path, "properties"), "metadata"),
            &mut errors,
        );
    }
    errors
}

fn has_flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool) == Some(true)
}

fn check_node(schema: &Value, path: &str, needs_type: bool, errors: &mut Vec<FieldError>) {
    let Some(node) = schema.as_object() else {
        errors.push(FieldError::new(
            path,
            ErrorKind::Invalid,
            Some(schema),
            "must be a schema object".into(),
        ));
        return;
    };
    if node.contains_key("$ref") {
        errors.push(FieldError::new(
            &child(path, "$ref"),
            ErrorKind::Forbidden,
            None,
            "$ref is not allowed".into(),
        ));
    }
    let ty = node.get("type").and_then(Value::as_str).unwrap_or("");
    let exempt = has_flag(schema, "x-kubernetes-int-or-string")
        || has_flag(schema, "x-kubernetes-preserve-unknown-fields");
    if needs_type && ty.is_empty() && !exempt {
        errors.push(FieldError::new(
            &child(path, "type"),
            ErrorKind::Required,
            None,
            "must not be empty for specified object fields".into(),
        ));
    }
    let properties = node.get("properties").and_then(Value::as_object);
    let additional = node.get("additionalProperties");
    if properties.is_some() && additional.is_some() {
        errors.push(FieldError::new(
            &child(path, "additionalProperties"),
            ErrorKind::Forbidden,
            None,
            "additionalProperties and properties are mutual exclusive".into(),
        ));
    }
    if additional.and_then(Value::as_bool) == Some(false) {
        errors.push(FieldError::new(
            &child(path, "additionalProperties"),
            ErrorKind::Forbidden,
            None,
            "must not be false; omit it to allow no extra fields".into(),
        ));
    }
    if let Some(properties) = properties {
        for (name, field) in properties {
            check_node(field, &key(&child(path, "properties"), name), true, errors);
        }
    }
    if let Some(additional) = additional.filter(|a| a.is_object()) {
        check_node(additional, &child(path, "additionalProperties"), true, errors);
    }
    if let Some(items) = node.get("items") {
        check_node(items, &child(path, "items"), true, errors);
    } else if ty == "array" {
        errors.push(FieldError::new(
            &child(path, "items"),
            ErrorKind::Required,
            None,
            "must be specified for arrays".into(),
        ));
    }
    check_list_type(schema, path, errors);
    for junctor in JUNCTORS {
        match node.get(junctor) {
            Some(Value::Array(branches)) => {
                for (i, branch) in branches.iter().enumerate() {
                    check_junctor_branch(schema, branch, &format!("{}[{i}]", child(path, junctor)), errors);
                }
            }
            Some(branch) => check_junctor_branch(schema, branch, &child(path, junctor), errors),
            None => {}
        }
    }
    if let Some(default) = node.get("default") {
        let mut default_errors = Vec::new();
        validate(schema, default, "", &mut default_errors);
        for e in default_errors {
            errors.push(FieldError::new(
                &child(path, "default"),
                ErrorKind::Invalid,
                None,
                e.to_string(),
            ));
        }
    }
}

/// Inside `allOf`/`anyOf`/`oneOf`/`not`: no `type`, `description`, `default`, `nullable` or
/// `additionalProperties`, and every field or item named there is also specified outside.
fn check_junctor_branch(outer: &Value, branch: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(node) = branch.as_object() else { return };
    let int_or_string = has_flag(outer, "x-kubernetes-int-or-string");
    for forbidden in [
        "type",
        "description",
        "default",
        "nullable",
        "additionalProperties",
    ] {
        if node.contains_key(forbidden) && !(forbidden == "type" && int_or_string) {
            errors.push(FieldError::new(
                &child(path, forbidden),
                ErrorKind::Forbidden,
                None,
                "must be empty to be structural".into(),
            ));
        }
    }
    if let Some(properties) = node.get("properties").and_then(Value::as_object) {
        let outer_props = outer.get("properties").and_then(Value::as_object);
        for (name, inner) in properties {
            let field_path = key(&child(path, "properties"), name);
            match outer_props.and_then(|p| p.get(name)) {
                Some(outer_field) => check_junctor_branch(outer_field, inner, &field_path, errors),
                None => errors.push(FieldError::new(
                    &field_path,
                    ErrorKind::Required,
                    None,
                    "must be specified outside of allOf, anyOf, oneOf and not too".into(),
                )),
            }
        }
    }
    if let Some(items) = node.get("items") {
        match outer.get("items") {
            Some(outer_items) => check_junctor_branch(outer_items, items, &child(path, "items"), errors),
            None => errors.push(FieldError::new(
                &child(path, "items"),
                ErrorKind::Required,
                None,
                "must be specified outside of allOf, anyOf, oneOf and not too".into(),
            )),
        }
    }
}

/// `x-kubernetes-list-type: map` needs object items whose key fields are scalars that are
/// required or defaulted.
fn check_list_type(schema: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let list_type = schema.get("x-kubernetes-list-type").and_then(Value::as_str);
    let keys = schema.get("x-kubernetes-list-map-keys").and_then(Value::as_array);
    match (list_type, keys) {
        (Some("map"), Some(keys)) if !keys.is_empty() => {
            let items = schema.get("items").unwrap_or(&Value::Null);
            let required: Vec<&str> = items
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for k in keys.iter().filter_map(Value::as_str) {
                let field = items.get("properties").and_then(|p| p.get(k));
                let scalar = field
                    .and_then(|f| f.get("type"))
                    .and_then(Value::as_str)
                    .is_some_and(|t| matches!(t, "string" | "integer" | "number" | "boolean"));
                let defaulted = field.is_some_and(|f| f.get("default").is_some());
                if !scalar || !(required.contains(&k) || defaulted) {
                    errors.push(FieldError::new(
                        &child(path, "x-kubernetes-list-map-keys"),
                        ErrorKind::Invalid,
                        Some(&Value::String(k.to_owned())),
                        "a list-map key must be a scalar item field that is required or defaulted".into(),
                    ));
                }
            }
        }
        (Some("map"), _) => errors.push(FieldError::new(
            &child(path, "x-kubernetes-list-map-keys"),
            ErrorKind::Required,
            None,
            "must not be empty if x-kubernetes-list-type is map".into(),
        )),
        (Some("set" | "atomic") | None, Some(_)) => errors.push(FieldError::new(
            &child(path, "x-kubernetes-list-map-keys"),
            ErrorKind::Forbidden,
            None,
            "may only be set if x-kubernetes-list-type is map".into(),
        )),
        _ => {}
    }
}

/// At the root, `metadata` may only restrict `name` and `generateName`.
fn check_metadata(metadata: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(node) = metadata.as_object() else { return };
    for (k, v) in node {
        match k.as_str() {
            "type" | "description" => {}
            "properties" => {
                for name in v.as_object().into_iter().flat_map(|p| p.keys()) {
                    if name != "name" && name != "generateName" {
                        errors.push(FieldError::new(
                            &key(&child(path, "properties"), name),
                            ErrorKind::Forbidden,
                            None,
                            "must not be specified: only metadata.name and metadata.generateName may be restricted".into(),
                        ));
                    }
                }
            }
            other => errors.push(FieldError::new(
                &child(path, other),
                ErrorKind::Forbidden,
                None,
                "must not be specified: only metadata.name and metadata.generateName may be restricted"
                    .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn messages(schema: &Value) -> Vec<String> {
        check_structural(schema, "s")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_typed_tree_is_structural() {
        let s = json!({"type": "object", "properties": {
            "metadata": {"type": "object"},
            "spec": {"type": "object", "properties": {
                "a": {"type": "string", "default": "x"},
                "l": {"type": "array", "items": {"type": "integer"}},
                "m": {"type": "object", "additionalProperties": {"type": "string"}},
                "p": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "q": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]}
            }}
        }});
        assert_eq!(messages(&s), Vec::<String>::new());
    }

    #[test]
    fn untyped_fields_and_refs_are_not() {
        let s =
            json!({"type": "object", "properties": {"a": {"description": "no type"}, "b": {"$ref": "#/x"}}});
        let m = messages(&s);
        assert!(
            m.contains(
                &"s.properties[a].type: Required value: must not be empty for specified object fields"
                    .to_owned()
            ),
            "{m:?}"
        );
        assert!(
            m.iter().any(|e| e.starts_with("s.properties[b].$ref: Forbidden")),
            "{m:?}"
        );
    }

    #[test]
    fn junctors_may_not_carry_types_or_new_fields() {
        let s = json!({"type": "object", "properties": {"a": {"type": "string"}},
            "oneOf": [{"type": "object"}, {"properties": {"b": {"type": "string"}}}]});
        let m = messages(&s);
        assert!(
            m.iter().any(|e| e.starts_with("s.oneOf[0].type: Forbidden")),
            "{m:?}"
        );
        assert!(
            m.iter()
                .any(|e| e.starts_with("s.oneOf[1].properties[b]: Required value")),
            "{m:?}"
        );
    }

    #[test]
    fn properties_and_additional_properties_exclude_each_other() {
        let s = json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "string"}});
        assert_eq!(messages(&s).len(), 1);
    }

    #[test]
    fn metadata_may_only_restrict_name() {
        let s = json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 20}, "labels": {"type": "object"}
        }}}});
        let m = messages(&s);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].starts_with("s.properties[metadata].properties[labels]: Forbidden"));
    }

    #[test]
    fn defaults_must_validate() {
        let s =
            json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "default": 0}}});
        let m = messages(&s);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].contains("greater than or equal to 1"));
    }

    #[test]
    fn list_maps_need_required_scalar_keys() {
        let s = json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "properties": {"name": {"type": "string"}}}});
        assert_eq!(messages(&s).len(), 1);
        let ok = json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}});
        assert_eq!(messages(&ok), Vec::<String>::new());
    }
}
