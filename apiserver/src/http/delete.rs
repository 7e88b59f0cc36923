//! Deletes: one object (with preconditions and a propagation policy) or a collection.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};

use super::convert::from_storage;
use super::meta::{meta_str, set_meta, write_context};
use super::query::Query;
use super::state::{ApiServer, new_uid, now};
use super::status::ApiError;
use super::target::{Reply, Target, selectors};
use crate::store::semantics::{DeleteOutcome, Preconditions, Subresource, WriteContext};

/// `DeleteOptions` as the query and the body give them (the body wins), checked.
#[derive(Debug, Default)]
struct Options {
    preconditions: Preconditions,
    /// The propagation policy's finalizer; none for background deletion.
    finalizer: Option<&'static str>,
    dry_run: bool,
}

fn options(query: &Query, body: &Bytes) -> Result<Options, ApiError> {
    let mut options = json!({});
    for (name, value) in query.pairs() {
        options[name] = match name {
            "gracePeriodSeconds" => value.parse::<i64>().unwrap_or_default().into(),
            "orphanDependents" => matches!(value, "true" | "1" | "True").into(),
            "dryRun" => json!([value]),
            _ => value.into(),
        };
    }
    if !body.is_empty() {
        let given: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("failed to decode DeleteOptions: {e}")))?;
        let Value::Object(given) = given else {
            return Err(ApiError::bad_request("DeleteOptions must be an object"));
        };
        for (name, value) in given {
            options[name] = value;
        }
    }
    let text = |pointer: &str| {
        options
            .pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let dry_run = match options.get("dryRun") {
        None | Some(Value::Null) => false,
        Some(Value::Array(values)) if values.iter().all(|v| v == "All") => !values.is_empty(),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "DeleteOptions.dryRun: Unsupported value: {other}: supported values: \"All\""
            )));
        }
    };
    let orphan = options.get("orphanDependents").and_then(Value::as_bool);
    let policy = match (text("/propagationPolicy"), orphan) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "DeleteOptions: orphanDependents and propagationPolicy cannot be both set",
            ));
        }
        (Some(policy), None) => policy,
        (None, Some(true)) => "Orphan".to_owned(),
        (None, Some(false) | None) => "Background".to_owned(),
    };
    let finalizer = match policy.as_str() {
        "Background" => None,
        "Foreground" => Some(super::lifecycle::FOREGROUND),
        "Orphan" => Some(super::lifecycle::ORPHAN),
        other => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy {other:?} is not one of Background, Foreground, Orphan"
            )));
        }
    };
    Ok(Options {
        preconditions: Preconditions {
            uid: text("/preconditions/uid"),
            resource_version: text("/preconditions/resourceVersion"),
        },
        finalizer,
        dry_run,
    })
}

/// What a delete that removed the object answers, as upstream for every kind it serves here:
/// a `Status` naming the object, not the object (only kinds such as Pods return the object).
fn success(target: &Target, object: &Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": meta_str(object, "name").unwrap_or_default(),
            "group": target.t.group,
            "kind": target.t.plural,
            "uid": meta_str(object, "uid").unwrap_or_default(),
        },
    })
}

pub(crate) async fn delete(
    server: &Arc<ApiServer>,
    target: &Target,
    name: &str,
    query: &Query,
    body: &Bytes,
) -> Result<Reply, ApiError> {
    let Options {
        mut preconditions,
        finalizer,
        dry_run,
    } = options(query, body)?;
    let dry_run = dry_run || target.dry_run;
    let (now, uid) = (now(), new_uid());
    let ctx = write_context(&target.t, &now, &uid);
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
            // A dry run holds nothing: the delete is judged on the object as it would be.
            let held = target
                .store_update(server, name, held, Subresource::Main, &main, dry_run)
                .await?;
            if dry_run {
                let deleted = crate::store::semantics::prepare_delete(&held, &preconditions, &ctx)
                    .map_err(|e| ApiError::from_store(e.into(), &target.key, name))?;
                return Ok(Reply::ok(match deleted {
                    DeleteOutcome::MarkDeleting(marked) => from_storage(&target.t, marked),
                    DeleteOutcome::AlreadyDeleting => from_storage(&target.t, held),
                    DeleteOutcome::Remove => success(target, &held),
                }));
            }
        }
    }
    if dry_run {
        let would = server
            .store
            .delete_dry_run(&target.key, &target.namespace, name, &preconditions, &ctx)
            .await
            .map_err(|e| ApiError::from_store(e, &target.key, name))?;
        return Ok(Reply::ok(if would.removed {
            success(target, &would.object)
        } else {
            from_storage(&target.t, would.object)
        }));
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
    if !deleted.removed && target.key == crate::registry::crd_key() {
        super::lifecycle::terminate_crd(server, &deleted.object);
    }
    Ok(Reply::ok(if deleted.removed {
        success(target, &deleted.object)
    } else {
        from_storage(&target.t, deleted.object)
    }))
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
            dry_run: target.dry_run,
            scale: false,
            manager: target.manager.clone(),
            manager_named: target.manager_named,
        };
        match delete(server, &one, &name, query, &Bytes::new()).await {
            // Upstream lists the objects deleted (as they were), not one Status each.
            Ok(_) => deleted.push(from_storage(&target.t, obj)),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Reply::ok(
        json!({"kind": format!("{}List", target.t.kind), "apiVersion": target.t.api_version(),
                        "metadata": {}, "items": deleted}),
    ))
}
