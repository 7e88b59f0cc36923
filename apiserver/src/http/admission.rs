//! Reading request bodies and admitting objects: content types, apiVersion/kind/namespace
//! checks, schema admission of custom resources, and the object an update would store.

use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderMap};
use serde_json::Value;

use super::meta::{meta_str, set_meta};
use super::query::Query;
use super::status::ApiError;
use super::target::Target;
use crate::registry::{Registry, crd_key};
use crate::schema::FieldError;
use crate::store::semantics::Subresource;

pub(crate) fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

pub(crate) fn decode(content_type: &str, body: &Bytes) -> Result<Value, ApiError> {
    let value: Value = match content_type {
        ""
        | "application/json"
        | "application/merge-patch+json"
        | "application/json-patch+json"
        | "application/strategic-merge-patch+json" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("failed to decode the request body as JSON: {e}")))?,
        "application/yaml" | "application/apply-patch+yaml" => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("failed to decode the request body: not UTF-8"))?;
            serde_saphyr::from_str(text).map_err(|e| {
                ApiError::bad_request(format!("failed to decode the request body as YAML: {e}"))
            })?
        }
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    Ok(value)
}

pub(crate) fn decode_object(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    let ct = content_type(headers);
    if !matches!(ct.as_str(), "" | "application/json" | "application/yaml") {
        return Err(ApiError::unsupported_media_type(&ct));
    }
    let value = decode(&ct, body)?;
    if !value.is_object() {
        return Err(ApiError::bad_request("the request body must be an object"));
    }
    Ok(value)
}

/// Checks apiVersion/kind and the namespace, and fills in what the URL implies.
pub(crate) fn check_identity(target: &Target, obj: &mut Value) -> Result<(), ApiError> {
    let t = &target.t;
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if api_version != t.api_version() {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            t.api_version()
        )));
    }
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if kind != t.kind {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            t.kind
        )));
    }
    if t.namespaced {
        match meta_str(obj, "namespace") {
            Some(ns) if !ns.is_empty() && ns != target.namespace => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            _ => set_meta(obj, "namespace", target.namespace.clone().into()),
        }
    } else if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("namespace");
    }
    Ok(())
}

/// Schema admission for custom resources (and CRD checks for CRDs). Returns warnings.
pub(crate) fn admit(
    target: &Target,
    obj: &mut Value,
    old: Option<&Value>,
    query: &Query,
) -> Result<Vec<String>, ApiError> {
    let t = &target.t;
    let name = meta_str(obj, "name").unwrap_or_default().to_owned();
    let invalid = |errors: &[FieldError]| ApiError::invalid(&t.kind, &t.group, &name, errors);
    let mut warnings = Vec::new();
    if let Some(validator) = &t.validator {
        let admission = validator.admit(obj, old);
        match query.get("fieldValidation").unwrap_or("Warn") {
            "Strict" if !admission.unknown_fields.is_empty() => {
                let listed: Vec<String> = admission
                    .unknown_fields
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    listed.join(", ")
                )));
            }
            "Ignore" => {}
            _ => warnings.extend(
                admission
                    .unknown_fields
                    .iter()
                    .map(|f| format!("unknown field \"{f}\"")),
            ),
        }
        if !admission.errors.is_empty() {
            return Err(invalid(&admission.errors));
        }
    }
    let builtin = super::builtin::admit(&t.group, &t.kind, obj, old);
    if !builtin.is_empty() {
        return Err(invalid(&builtin));
    }
    if target.key == crd_key() {
        Registry::default()
            .register_crd(obj)
            .map_err(|errors| invalid(&errors))?;
    }
    Ok(warnings)
}

/// The object an update through `sub` would store, for admission to see it whole: the request's
/// status on the stored object for `/status`, the stored status on the request otherwise.
pub(crate) fn candidate(target: &Target, old: &Value, new: Value) -> Value {
    match target.sub {
        Subresource::Status => {
            let mut merged = old.clone();
            merged["status"] = new.get("status").cloned().unwrap_or(Value::Null);
            if merged["status"].is_null()
                && let Some(map) = merged.as_object_mut()
            {
                map.remove("status");
            }
            set_meta(
                &mut merged,
                "resourceVersion",
                new.pointer("/metadata/resourceVersion")
                    .cloned()
                    .unwrap_or(Value::Null),
            );
            if merged
                .pointer("/metadata/resourceVersion")
                .is_some_and(Value::is_null)
                && let Some(meta) = merged.get_mut("metadata").and_then(Value::as_object_mut)
            {
                meta.remove("resourceVersion");
            }
            merged
        }
        Subresource::Main => {
            let mut merged = new;
            if target.t.status_subresource {
                match old.get("status") {
                    Some(status) => merged["status"] = status.clone(),
                    None => {
                        if let Some(map) = merged.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
            }
            merged
        }
    }
}
