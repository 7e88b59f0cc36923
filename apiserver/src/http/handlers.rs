//! Requests on collections and objects: routing them (reads are `reads.rs`, deletes
//! `delete.rs`), and create, update and patch.

use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::admission::{admit, candidate, check_identity, content_type, decode, decode_object};
use super::convert::{from_storage, to_storage};
use super::meta::{meta_str, set_meta, write_context};
use super::params::Verb;
use super::patch::{json_patch, merge_patch};
use super::query::Query;
use super::reply::{Body, error, json_response};
use super::route::ObjectPath;
use super::state::{ApiServer, new_uid, now};
use super::status::ApiError;
use super::target::{Reply, Target, stored};
use super::write::write_update;
use crate::auth::User;
use crate::store::ResourceKey;
use crate::store::names::{GENERATED_SUFFIX_LEN, check_name, generate_name};
use crate::store::semantics::Subresource;

/// How many times a patch without a resourceVersion is re-applied when a concurrent write
/// wins the race, as the Kubernetes API server does.
const PATCH_RETRIES: usize = 5;

/// The field manager of a request, as upstream picks it.
fn field_manager(query: &Query, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) {
        if manager.len() > 128 || manager.chars().any(char::is_control) {
            return Err(ApiError::bad_request(format!(
                "invalid query parameter fieldManager={manager:?}: must be at most 128 printable characters"
            )));
        }
        return Ok(manager.to_owned());
    }
    let agent = headers
        .get(hyper::header::USER_AGENT)
        .and_then(|a| a.to_str().ok())
        .unwrap_or_default();
    let product = agent.split('/').next().unwrap_or_default().trim();
    Ok(if product.is_empty() {
        "unknown".to_owned()
    } else {
        product.chars().take(128).collect()
    })
}

fn resolve(server: &ApiServer, path: ObjectPath) -> Result<Target, ApiError> {
    let registry = server.registry();
    let t = registry
        .shared(&path.group, &path.version, &path.resource)
        .cloned()
        .ok_or_else(ApiError::no_route)?;
    let namespace = match (t.namespaced, path.namespace) {
        (true, Some(ns)) => ns,
        (true, None) if path.name.is_none() => String::new(),
        (false, None) => String::new(),
        _ => return Err(ApiError::no_route()),
    };
    let scale = path.subresource.as_deref() == Some("scale");
    let sub = match path.subresource.as_deref() {
        None => Subresource::Main,
        Some("status") if t.status_subresource => Subresource::Status,
        Some("scale") if t.scale.is_some() && path.name.is_some() => Subresource::Main,
        Some(_) => return Err(ApiError::no_route()),
    };
    Ok(Target {
        key: t.key(),
        t,
        namespace,
        name: path.name,
        sub,
        dry_run: false,
        scale,
        manager: String::new(),
        manager_named: false,
    })
}

/// Answers a request on a collection or an object.
pub(crate) async fn object(
    server: &Arc<ApiServer>,
    user: &User,
    method: &Method,
    headers: &HeaderMap,
    path: ObjectPath,
    query: &Query,
    body: Bytes,
) -> Response<Body> {
    let mut target = match resolve(server, path) {
        Ok(target) => target,
        Err(e) => return error(&e),
    };
    let verb = match (method, target.name.is_some()) {
        (&Method::GET, false) if query.flag("watch") => Verb::Watch,
        (&Method::GET, false) => Verb::List,
        (&Method::GET, true) => Verb::Get,
        (&Method::POST, _) => Verb::Create,
        (&Method::PUT, _) => Verb::Update,
        (&Method::PATCH, _) => Verb::Patch,
        (&Method::DELETE, true) => Verb::Delete,
        (&Method::DELETE, false) => Verb::DeleteCollection,
        _ => return error(&ApiError::method_not_allowed()),
    };
    let apply = content_type(headers) == "application/apply-patch+yaml";
    target.dry_run = match super::params::check(query, verb, apply) {
        Ok(dry_run) => dry_run,
        Err(e) => return error(&e),
    };
    target.manager_named = query.get("fieldManager").is_some_and(|m| !m.is_empty());
    target.manager = match field_manager(query, headers) {
        Ok(manager) => manager,
        Err(e) => return error(&e),
    };
    let result = match (method, target.name.clone()) {
        (&Method::POST, None) if target.t.review => match decode_object(headers, &body) {
            Ok(review) => super::reviews::answer(server, user, &target, &review).await,
            Err(e) => Err(e),
        },
        _ if target.t.review => Err(ApiError::method_not_allowed()),
        (_, Some(name)) if target.scale => {
            super::scale::scale(server, &target, &name, method, headers, query, &body).await
        }
        (&Method::GET, None) if query.flag("watch") => {
            return super::watch::watch(server, &target.t, &target.namespace, query);
        }
        (&Method::GET, None) => super::reads::list(server, &target, query, headers).await,
        (&Method::GET, Some(name)) => super::reads::get(server, &target, &name, query, headers).await,
        (&Method::POST, None) => create(server, &target, headers, query, &body).await,
        (&Method::PUT, Some(name)) => update(server, &target, &name, headers, query, &body).await,
        (&Method::PATCH, Some(name)) => patch(server, &target, &name, headers, query, &body).await,
        (&Method::DELETE, Some(name)) => super::delete::delete(server, &target, &name, query, &body).await,
        (&Method::DELETE, None) => super::delete::delete_collection(server, &target, query).await,
        _ => Err(ApiError::method_not_allowed()),
    };
    match result {
        Ok(Reply {
            status,
            body,
            warnings,
        }) => {
            let mut response = json_response(status, &body);
            for w in warnings {
                if let Ok(value) = HeaderValue::from_str(&format!("299 - \"{}\"", w.replace('"', "'"))) {
                    response.headers_mut().append("warning", value);
                }
            }
            response
        }
        Err(e) => error(&e),
    }
}

async fn create(
    server: &Arc<ApiServer>,
    target: &Target,
    headers: &HeaderMap,
    query: &Query,
    body: &Bytes,
) -> Result<Reply, ApiError> {
    let mut obj = decode_object(headers, body)?;
    check_identity(target, &mut obj)?;
    target.record_update(None, &mut obj);
    create_object(server, target, obj, query).await
}

async fn create_object(
    server: &Arc<ApiServer>,
    target: &Target,
    mut obj: Value,
    query: &Query,
) -> Result<Reply, ApiError> {
    let t = &target.t;
    if meta_str(&obj, "name").unwrap_or_default().is_empty()
        && let Some(prefix) = meta_str(&obj, "generateName").map(str::to_owned)
    {
        let random = *uuid::Uuid::new_v4().as_bytes();
        let mut suffix = [0u8; GENERATED_SUFFIX_LEN];
        suffix.copy_from_slice(&random[..GENERATED_SUFFIX_LEN]);
        set_meta(&mut obj, "name", generate_name(&prefix, suffix).into());
    }
    let name = meta_str(&obj, "name").unwrap_or_default().to_owned();
    if t.terminating {
        return Err(ApiError {
            code: 405,
            reason: "MethodNotAllowed",
            message: format!(
                "create not allowed while custom resource definition is terminating ({}.{})",
                t.plural, t.group
            ),
            details: None,
        });
    }
    let name_errors = check_name(&name, t.name_rule(), "metadata.name");
    if !name_errors.is_empty() {
        return Err(ApiError::invalid(&t.kind, &t.group, &name, &name_errors));
    }
    if t.namespaced {
        let namespaces = ResourceKey::new("", "namespaces");
        match server.store.get(&namespaces, "", &target.namespace).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(ApiError::not_found(&namespaces, &target.namespace)),
            Err(e) => return Err(ApiError::from_store(e, &namespaces, &target.namespace)),
        }
    }
    let warnings = admit(target, &mut obj, None, query)?;
    let obj = to_storage(&server.registry(), t, obj);
    let (now, uid) = (now(), new_uid());
    let ctx = write_context(t, &now, &uid);
    let created = if target.dry_run {
        server
            .store
            .create_dry_run(&target.key, &target.namespace, obj, &ctx)
            .await
            .map_err(|e| ApiError::from_store(e, &target.key, &name))?
    } else {
        let created = server
            .store
            .create(&target.key, &target.namespace, obj, &ctx)
            .await
            .map_err(|e| ApiError::from_store(e, &target.key, &name))?;
        super::lifecycle::after_create(server, &target.key, &created);
        super::lifecycle::after_write(server, &target.key, created).await
    };
    Ok(Reply {
        status: StatusCode::CREATED,
        body: from_storage(t, created),
        warnings,
    })
}

async fn update(
    server: &Arc<ApiServer>,
    target: &Target,
    name: &str,
    headers: &HeaderMap,
    query: &Query,
    body: &Bytes,
) -> Result<Reply, ApiError> {
    let mut obj = decode_object(headers, body)?;
    check_identity(target, &mut obj)?;
    let given = meta_str(&obj, "name").unwrap_or_default();
    if given != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        )));
    }
    let old = stored(server, target, name)
        .await?
        .ok_or_else(|| ApiError::not_found(&target.key, name))?;
    let mut obj = candidate(target, &old, obj);
    target.record_update(Some(&old), &mut obj);
    write_update(server, target, name, &old, obj, query).await
}

/// A server-side apply of `config` over `old` (none: it creates): the object to write, or 409
/// naming each conflict as upstream words it.
fn server_side_apply(
    target: &Target,
    old: Option<&Value>,
    config: &Value,
    query: &Query,
) -> Result<Value, ApiError> {
    let (now, api_version) = (now(), target.t.api_version());
    let who = crate::ssa::Applier {
        manager: &target.manager,
        force: query.flag("force"),
        api_version: &api_version,
        now: &now,
        subresource: target.subresource_name(),
    };
    crate::ssa::apply(old, config, target.schema(), &who).map_err(|conflicts| {
        let count = conflicts.len();
        let listed: Vec<String> = conflicts
            .iter()
            .map(|c| format!("conflict with \"{}\" using {api_version}: {}", c.manager, c.field))
            .collect();
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|c| {
                json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{}\" using {api_version}", c.manager),
                       "field": c.field})
            })
            .collect();
        ApiError {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Apply failed with {count} conflict{}: {}",
                if count == 1 { "" } else { "s" },
                listed.join("\n")
            ),
            details: Some(json!({"name": meta_str(config, "name").unwrap_or_default(), "group": target.t.group,
                                 "kind": target.t.plural, "causes": causes})),
        }
    })
}

async fn patch(
    server: &Arc<ApiServer>,
    target: &Target,
    name: &str,
    headers: &HeaderMap,
    query: &Query,
    body: &Bytes,
) -> Result<Reply, ApiError> {
    let ct = content_type(headers);
    let patch = decode(&ct, body)?;
    let apply = ct == "application/apply-patch+yaml";
    if apply && query.get("fieldManager").is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(
            "PATCH with application/apply-patch+yaml requires fieldManager to be set",
        ));
    }
    let pinned = patch.pointer("/metadata/resourceVersion").is_some();
    for _ in 0..PATCH_RETRIES {
        let Some(old) = stored(server, target, name).await? else {
            if apply && target.sub == Subresource::Main {
                let mut obj = patch.clone();
                check_identity(target, &mut obj)?;
                match meta_str(&obj, "name") {
                    None | Some("") => set_meta(&mut obj, "name", name.into()),
                    Some(given) if given != name => {
                        return Err(ApiError::bad_request(format!(
                            "the name of the object ({given}) does not match the name on the URL ({name})"
                        )));
                    }
                    Some(_) => {}
                }
                let obj = server_side_apply(target, None, &obj, query)?;
                return create_object(server, target, obj, query).await;
            }
            return Err(ApiError::not_found(&target.key, name));
        };
        let mut patched = old.clone();
        match ct.as_str() {
            "application/json-patch+json" => json_patch(&mut patched, &patch).map_err(|e| ApiError {
                code: 422,
                reason: "Invalid",
                message: format!("the patch could not be applied: {e}"),
                details: None,
            })?,
            "application/strategic-merge-patch+json" => {
                if target.t.validator.is_some() {
                    // Custom resources declare no patch strategies; upstream refuses too.
                    return Err(ApiError {
                        code: 415,
                        reason: "UnsupportedMediaType",
                        message: format!(
                            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {ct:?})"
                        ),
                        details: None,
                    });
                }
                super::strategic::apply(&target.t.kind, &mut patched, &patch).map_err(|e| {
                    ApiError::bad_request(format!("the strategic merge patch could not be applied: {e}"))
                })?;
            }
            "application/merge-patch+json" => {
                if !patch.is_object() {
                    return Err(ApiError::bad_request("a merge patch must be an object"));
                }
                merge_patch(&mut patched, &patch);
            }
            "application/apply-patch+yaml" => {
                let mut config = patch.clone();
                check_identity(target, &mut config)?;
                patched = server_side_apply(target, Some(&old), &config, query)?;
            }
            other => return Err(ApiError::unsupported_media_type(other)),
        }
        if meta_str(&patched, "name") != Some(name) {
            return Err(ApiError::bad_request("a patch may not change metadata.name"));
        }
        check_identity(target, &mut patched)?;
        let mut patched = candidate(target, &old, patched);
        if !apply {
            target.record_update(Some(&old), &mut patched);
        }
        match write_update(server, target, name, &old, patched, query).await {
            Err(e) if e.reason == "Conflict" && !pinned => {}
            other => return other,
        }
    }
    Err(ApiError::conflict(
        &target.key,
        name,
        "the object kept changing while the patch was applied; try again",
    ))
}
