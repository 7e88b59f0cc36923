//! The `/scale` subresource of custom resources whose CRD declares one: an `autoscaling/v1`
//! `Scale` read from the object (`spec.replicas`, `status.replicas` and `status.selector` at the
//! CRD's paths), and updates and patches of it written back into the object's replicas, through
//! the same admission, preconditions and dry run as any update (`kubectl scale`).

use std::sync::Arc;

use bytes::Bytes;
use hyper::Method;
use hyper::header::HeaderMap;
use serde_json::{Value, json};

use super::admission::{candidate, content_type, decode};
use super::meta::set_meta;
use super::query::Query;
use super::state::ApiServer;
use super::status::ApiError;
use super::target::{Reply, Target};
use super::write::write_update;
use crate::registry::ScalePaths;

/// The `Scale` of `object`.
fn scale_of(object: &Value, paths: &ScalePaths) -> Value {
    let mut metadata = json!({});
    for field in ["name", "namespace", "uid", "resourceVersion", "creationTimestamp"] {
        if let Some(value) = object.pointer(&format!("/metadata/{field}")) {
            metadata[field] = value.clone();
        }
    }
    let mut status =
        json!({"replicas": object.pointer(&paths.status_replicas).cloned().unwrap_or_else(|| 0.into())});
    if let Some(selector) = paths.label_selector.as_ref().and_then(|p| object.pointer(p)) {
        status["selector"] = selector.clone();
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": object.pointer(&paths.spec_replicas).cloned().unwrap_or_else(|| 0.into())},
        "status": status,
    })
}

/// Sets the value at a JSON pointer, creating the objects on the way.
fn set_pointer(object: &mut Value, pointer: &str, value: Value) {
    let mut at = object;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        if !at.is_object() {
            *at = json!({});
        }
        let Some(map) = at.as_object_mut() else { return };
        if i + 1 == parts.len() {
            map.insert((*part).to_owned(), value);
            return;
        }
        at = map.entry((*part).to_owned()).or_insert_with(|| json!({}));
    }
}

/// Answers GET, PUT and PATCH on `…/{name}/scale`.
pub(crate) async fn scale(
    server: &Arc<ApiServer>,
    target: &Target,
    name: &str,
    method: &Method,
    headers: &HeaderMap,
    query: &Query,
    body: &Bytes,
) -> Result<Reply, ApiError> {
    let Some(paths) = target.t.scale.clone() else {
        return Err(ApiError::no_route());
    };
    let old = super::target::stored(server, target, name)
        .await?
        .ok_or_else(|| ApiError::not_found(&target.key, name))?;
    let current = scale_of(&old, &paths);
    let wanted = match *method {
        Method::GET => return Ok(Reply::ok(current)),
        Method::PUT => {
            let ct = content_type(headers);
            decode(&ct, body)?
        }
        Method::PATCH => {
            let ct = content_type(headers);
            let patch = decode(&ct, body)?;
            let mut patched = current.clone();
            match ct.as_str() {
                "application/json-patch+json" => super::patch::json_patch(&mut patched, &patch)
                    .map_err(|e| ApiError::bad_request(format!("the patch could not be applied: {e}")))?,
                // Scale has no lists: a strategic merge patch is a merge patch.
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                    super::patch::merge_patch(&mut patched, &patch);
                }
                other => return Err(ApiError::unsupported_media_type(other)),
            }
            patched
        }
        _ => return Err(ApiError::method_not_allowed()),
    };
    let replicas = wanted.pointer("/spec/replicas").cloned().unwrap_or(Value::Null);
    if !replicas
        .as_i64()
        .is_some_and(|r| (0..=i64::from(i32::MAX)).contains(&r))
    {
        return Err(ApiError {
            code: 422,
            reason: "Invalid",
            message: format!(
                "Scale.autoscaling \"{name}\" is invalid: spec.replicas: Invalid value: {replicas}: must be a non-negative integer"
            ),
            details: None,
        });
    }
    let mut obj = old.clone();
    set_pointer(&mut obj, &paths.spec_replicas, replicas);
    // A Scale's resourceVersion is the object's: a precondition on it holds for both.
    match wanted
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        Some(rv) if !rv.is_empty() => set_meta(&mut obj, "resourceVersion", rv.into()),
        _ => {
            if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("resourceVersion");
            }
        }
    }
    let main = Target {
        t: target.t.clone(),
        key: target.key.clone(),
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        sub: crate::store::semantics::Subresource::Main,
        dry_run: target.dry_run,
        scale: false,
        manager: target.manager.clone(),
        manager_named: target.manager_named,
    };
    let mut obj = candidate(&main, &old, obj);
    target.record_update(Some(&old), &mut obj);
    let written = write_update(server, &main, name, &old, obj, query).await?;
    Ok(Reply {
        body: scale_of(&written.body, &paths),
        ..written
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scale_reads_the_crd_paths_and_writes_them_back() {
        let paths = ScalePaths {
            spec_replicas: "/spec/workers".into(),
            status_replicas: "/status/running".into(),
            label_selector: Some("/status/selector".into()),
        };
        let object = json!({"metadata": {"name": "j", "namespace": "d", "resourceVersion": "7", "labels": {"x": "y"}},
                            "spec": {"workers": 3}, "status": {"running": 2, "selector": "app=j"}});
        let scale = scale_of(&object, &paths);
        assert_eq!(
            scale,
            json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                   "metadata": {"name": "j", "namespace": "d", "resourceVersion": "7"},
                   "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=j"}})
        );
        let mut empty = json!({"metadata": {}});
        assert_eq!(scale_of(&empty, &paths)["spec"]["replicas"], 0);
        set_pointer(&mut empty, "/spec/workers", 5.into());
        assert_eq!(empty["spec"]["workers"], 5);
    }
}
