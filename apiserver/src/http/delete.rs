//! Deletes: one object (with preconditions and a propagation policy) or a collection.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};

use super::handlers::{Reply, Target, selectors};
use super::meta::{meta_str, set_meta, write_context};
use super::server::{ApiServer, Query, new_uid, now};
use super::status::ApiError;
use crate::store::semantics::{Preconditions, Subresource, WriteContext};

pub(crate) async fn delete(
    server: &Arc<ApiServer>,
    target: &Target,
    name: &str,
    body: &Bytes,
) -> Result<Reply, ApiError> {
    let options: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("failed to decode DeleteOptions: {e}")))?
    };
    let preconditions = Preconditions {
        uid: options
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_owned),
        resource_version: options
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    let policy = options
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .unwrap_or("Background");
    let finalizer = match policy {
        "Background" => None,
        "Foreground" => Some(super::lifecycle::FOREGROUND),
        "Orphan" => Some(super::lifecycle::ORPHAN),
        other => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy {other:?} is not one of Background, Foreground, Orphan"
            )));
        }
    };
    let (now, uid) = (now(), new_uid());
    let ctx = write_context(&target.t, &now, &uid);
    let mut preconditions = preconditions;
    if let Some(finalizer) = finalizer {
        // Hold the object with the policy's finalizer; the garbage collector releases it.
        let mut held = server
            .store
            .get(&target.key, &target.namespace, name)
            .await
            .map_err(|e| ApiError::from_store(e, &target.key, name))?
            .ok_or_else(|| ApiError::not_found(&target.key, name))?;
        if meta_str(&held, "deletionTimestamp").is_none() {
            let mut finalizers = held
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if !finalizers.iter().any(|f| f.as_str() == Some(finalizer)) {
                finalizers.push(finalizer.into());
            }
            set_meta(&mut held, "finalizers", Value::Array(finalizers));
            if let Some(rv) = preconditions.resource_version.take() {
                set_meta(&mut held, "resourceVersion", rv.into());
            }
            let main = WriteContext {
                status_subresource: false,
                ..ctx.clone()
            };
            server
                .store
                .update(
                    &target.key,
                    &target.namespace,
                    name,
                    held,
                    Subresource::Main,
                    &main,
                )
                .await
                .map_err(|e| ApiError::from_store(e, &target.key, name))?;
        }
    }
    let deleted = server
        .store
        .delete(&target.key, &target.namespace, name, &preconditions, &ctx)
        .await
        .map_err(|e| ApiError::from_store(e, &target.key, name))?;
    if deleted.removed {
        super::lifecycle::after_removal(server, &target.key, &deleted.object);
    } else if finalizer.is_some() {
        super::lifecycle::propagate(server, &target.key, &deleted.object);
    }
    Ok(Reply::ok(deleted.object))
}

pub(crate) async fn delete_collection(
    server: &Arc<ApiServer>,
    target: &Target,
    query: &Query,
) -> Result<Reply, ApiError> {
    let (labels, fields) = selectors(&target.t, query)?;
    let namespace = (!target.namespace.is_empty()).then_some(target.namespace.as_str());
    let (items, _) = server
        .store
        .list(&target.key, namespace)
        .await
        .map_err(|e| ApiError::from_store(e, &target.key, ""))?;
    let mut deleted = Vec::new();
    for obj in items
        .into_iter()
        .filter(|o| labels.matches_labels(o) && fields.matches_fields(o))
    {
        let name = meta_str(&obj, "name").unwrap_or_default().to_owned();
        let ns = meta_str(&obj, "namespace").unwrap_or_default().to_owned();
        let one = Target {
            t: target.t.clone(),
            key: target.key.clone(),
            namespace: ns,
            name: Some(name.clone()),
            sub: Subresource::Main,
        };
        match delete(server, &one, &name, &Bytes::new()).await {
            Ok(reply) => deleted.push(reply.body),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Reply::ok(
        json!({"kind": format!("{}List", target.t.kind), "apiVersion": target.t.api_version(),
                        "metadata": {}, "items": deleted}),
    ))
}
