//! Validation of a value against an OpenAPI v3 schema node, with the rules and messages of the
//! Kubernetes API server for custom resources (`apiextensions-apiserver` validation, before CEL).

use std::collections::HashSet;

use serde_json::Value;

use super::field_error::{ErrorKind, FieldError, child, index, key, render_value};

/// The root fields of a custom resource that are the API server's business, not the schema's.
const SERVER_OWNED: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// A custom resource's root schema without the server-owned fields: what [`validate_resource`]
/// checks. Built once per schema.
#[derive(Debug, Clone)]
pub struct RootSchema {
    schema: Value,
    /// Whether the root has only `type`, `required` and properties to check (every real CRD):
    /// then the object is checked in place, not copied without its server-owned fields first.
    plain: bool,
}

impl RootSchema {
    /// The root of `schema` (an `openAPIV3Schema`).
    pub fn new(schema: &Value) -> Self {
        let mut root = schema.clone();
        if let Some(props) = root.get_mut("properties").and_then(Value::as_object_mut) {
            for name in SERVER_OWNED {
                props.remove(name);
            }
        }
        if let Some(required) = root.get_mut("required").and_then(Value::as_array_mut) {
            required.retain(|r| !r.as_str().is_some_and(|r| SERVER_OWNED.contains(&r)));
        }
        let whole_object_checks = [
            "enum",
            "allOf",
            "anyOf",
            "oneOf",
            "not",
            "maxProperties",
            "minProperties",
            "nullable",
            "x-kubernetes-int-or-string",
        ];
        let plain = whole_object_checks.iter().all(|k| root.get(k).is_none())
            && root.get("type").is_none_or(|t| t == "object");
        Self { schema: root, plain }
    }
}

/// Validates `value` against `root` and appends every problem to `errors`. At the root of a
/// custom resource, `metadata`, `apiVersion` and `kind` are the API server's business and are
/// skipped.
pub fn validate_resource(root: &RootSchema, value: &Value, errors: &mut Vec<FieldError>) {
    let Some(object) = value.as_object() else {
        errors.push(type_error("", value, "object"));
        return;
    };
    if root.plain {
        check_fields(&root.schema, object, &SERVER_OWNED, "", errors);
        return;
    }
    let mut rest = object.clone();
    rest.retain(|k, _| !SERVER_OWNED.contains(&k.as_str()));
    validate(&root.schema, &Value::Object(rest), "", errors);
}

/// Validates `value` at `path` against `schema`, appending problems to `errors`.
pub fn validate(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true)
            && let Some(ty) = schema.get("type").and_then(Value::as_str)
        {
            errors.push(type_error(path, value, ty));
        }
        return;
    }
    if !check_type(schema, value, path, errors) {
        return;
    }
    check_enum(schema, value, path, errors);
    check_junctors(schema, value, path, errors);
    match value {
        Value::Number(n) => check_number(schema, n, path, errors),
        Value::String(s) => check_string(schema, s, path, errors),
        Value::Array(items) => check_array(schema, items, path, errors),
        Value::Object(_) => check_object(schema, value, path, errors),
        Value::Bool(_) | Value::Null => {}
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "<root>" } else { path }
}

fn type_error(path: &str, value: &Value, expected: &str) -> FieldError {
    let actual = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    FieldError::new(
        path,
        ErrorKind::Invalid,
        Some(&Value::String(actual.to_owned())),
        format!(
            "{} in body must be of type {expected}: \"{actual}\"",
            display_path(path)
        ),
    )
}

/// Returns false when the type is wrong (nothing else is checked then).
fn check_type(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) -> bool {
    if schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        if is_integer(value) || value.is_string() {
            return true;
        }
        errors.push(type_error(path, value, "integer or string"));
        return false;
    }
    let Some(ty) = schema.get("type").and_then(Value::as_str) else {
        return true;
    };
    let ok = match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => is_integer(value),
        "number" => value.is_number(),
        _ => true,
    };
    if !ok {
        errors.push(type_error(path, value, ty));
    }
    ok
}

fn is_integer(value: &Value) -> bool {
    match value {
        Value::Number(n) => n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    }
}

fn check_enum(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(allowed) = schema.get("enum").and_then(Value::as_array) else {
        return;
    };
    if !allowed.contains(value) {
        let list: Vec<String> = allowed.iter().map(render_value).collect();
        errors.push(FieldError::new(
            path,
            ErrorKind::NotSupported,
            Some(value),
            format!("supported values: {}", list.join(", ")),
        ));
    }
}

fn check_junctors(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let passes = |s: &Value| {
        let mut scratch = Vec::new();
        validate(s, value, path, &mut scratch);
        scratch.is_empty()
    };
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            validate(s, value, path, errors);
        }
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array)
        && !any.iter().any(passes)
    {
        errors.push(invalid(path, value, "must validate at least one schema (anyOf)"));
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = one.iter().filter(|s| passes(s)).count();
        if matching != 1 {
            errors.push(invalid(
                path,
                value,
                "must validate one and only one schema (oneOf)",
            ));
        }
    }
    if let Some(not) = schema.get("not")
        && passes(not)
    {
        errors.push(invalid(path, value, "must not validate the schema (not)"));
    }
}

fn invalid(path: &str, value: &Value, what: &str) -> FieldError {
    FieldError::new(
        path,
        ErrorKind::Invalid,
        Some(value),
        format!("{} in body {what}", display_path(path)),
    )
}

fn check_number(schema: &Value, n: &serde_json::Number, path: &str, errors: &mut Vec<FieldError>) {
    let Some(v) = n.as_f64() else { return };
    // Built only for a message: most numbers pass.
    let invalid = |what: &str| invalid(path, &Value::Number(n.clone()), what);
    let exclusive = |name: &str| schema.get(name).and_then(Value::as_bool) == Some(true);
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        if exclusive("exclusiveMaximum") && v >= max {
            errors.push(invalid(&format!("should be less than {}", number(max))));
        } else if v > max {
            errors.push(invalid(&format!(
                "should be less than or equal to {}",
                number(max)
            )));
        }
    }
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        if exclusive("exclusiveMinimum") && v <= min {
            errors.push(invalid(&format!("should be greater than {}", number(min))));
        } else if v < min {
            errors.push(invalid(&format!(
                "should be greater than or equal to {}",
                number(min)
            )));
        }
    }
    if let Some(m) = schema.get("multipleOf").and_then(Value::as_f64)
        && m > 0.0
        && (v / m).fract().abs() > f64::EPSILON
    {
        errors.push(invalid(&format!("should be a multiple of {}", number(m))));
    }
}

/// Formats a bound without a trailing `.0` for whole numbers, as the API server does.
fn number(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{f:.0}")
    } else {
        f.to_string()
    }
}

fn check_string(schema: &Value, s: &str, path: &str, errors: &mut Vec<FieldError>) {
    // Built only for a message: most strings pass.
    let value = || Value::String(s.to_owned());
    let len = s.chars().count();
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && len as u64 > max
    {
        errors.push(FieldError::new(
            path,
            ErrorKind::TooLong,
            None,
            format!("may not be more than {max} bytes"),
        ));
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && (len as u64) < min
    {
        errors.push(invalid(
            path,
            &value(),
            &format!("should be at least {min} chars long"),
        ));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match super::pattern::compiled(pattern) {
            Ok(re) if re.is_match(s) => {}
            Ok(_) => errors.push(invalid(path, &value(), &format!("should match '{pattern}'"))),
            Err(_) => errors.push(invalid(
                path,
                &value(),
                &format!("has an invalid pattern '{pattern}'"),
            )),
        }
    }
}

fn check_array(schema: &Value, items: &[Value], path: &str, errors: &mut Vec<FieldError>) {
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && items.len() as u64 > max
    {
        errors.push(FieldError::new(
            path,
            ErrorKind::TooMany,
            Some(&Value::from(items.len())),
            format!("must have at most {max} items"),
        ));
    }
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && (items.len() as u64) < min
    {
        errors.push(FieldError::new(
            path,
            ErrorKind::Invalid,
            Some(&Value::from(items.len())),
            format!("{} in body should have at least {min} items", display_path(path)),
        ));
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            validate(item_schema, item, &index(path, i), errors);
        }
    }
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => check_unique(items, path, errors, |item| Some(item.clone())),
        Some("map") => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            check_unique(items, path, errors, |item| {
                let tuple: Vec<Value> = keys
                    .iter()
                    .map(|k| item.get(k).cloned().unwrap_or(Value::Null))
                    .collect();
                Some(Value::Array(tuple))
            });
        }
        _ => {}
    }
    if schema.get("uniqueItems").and_then(Value::as_bool) == Some(true) {
        check_unique(items, path, errors, |item| Some(item.clone()));
    }
}

fn check_unique(
    items: &[Value],
    path: &str,
    errors: &mut Vec<FieldError>,
    identity: impl Fn(&Value) -> Option<Value>,
) {
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        if let Some(id) = identity(item)
            && !seen.insert(id.to_string())
        {
            let shown = match &id {
                Value::Array(parts) if parts.len() == 1 => parts[0].clone(),
                other => other.clone(),
            };
            errors.push(FieldError::new(
                &index(path, i),
                ErrorKind::Duplicate,
                Some(&shown),
                String::new(),
            ));
        }
    }
}

fn check_object(schema: &Value, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(object) = value.as_object() else { return };
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && object.len() as u64 > max
    {
        errors.push(FieldError::new(
            path,
            ErrorKind::TooMany,
            Some(&Value::from(object.len())),
            format!("must have at most {max} items"),
        ));
    }
    if let Some(min) = schema.get("minProperties").and_then(Value::as_u64)
        && (object.len() as u64) < min
    {
        errors.push(invalid(
            path,
            value,
            &format!("should have at least {min} properties"),
        ));
    }
    check_fields(schema, object, &[], path, errors);
}

/// Checks `required` and each field of `object` but those named in `skip`.
fn check_fields(
    schema: &Value,
    object: &serde_json::Map<String, Value>,
    skip: &[&str],
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !object.contains_key(name) {
                errors.push(FieldError::new(
                    &child(path, name),
                    ErrorKind::Required,
                    None,
                    String::new(),
                ));
            }
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    for (name, field) in object {
        if skip.contains(&name.as_str()) {
            continue;
        }
        if let Some(field_schema) = properties.and_then(|p| p.get(name)) {
            validate(field_schema, field, &child(path, name), errors);
        } else if let Some(additional) = additional.filter(|a| a.is_object()) {
            validate(additional, field, &key(path, name), errors);
        }
    }
}

#[cfg(test)]
mod tests;
