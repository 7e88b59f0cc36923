//! Requests on collections and objects: get, list, create, update, patch, delete.

use std::sync::Arc;

use bytes::Bytes;
use hyper::header::{ACCEPT, HeaderMap, HeaderValue};
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
use super::target::{Reply, Target, selectors, stored};
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
        (&Method::GET, None) => list(server, &target, query, headers).await,
        (&Method::GET, Some(name)) => get(server, &target, &name, query, headers).await,
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

/// Whether the client asked for a server-side `Table` (kubectl does).
fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

async fn get(
    server: &ApiServer,
    target: &Target,
    name: &str,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Reply, ApiError> {
    // A single object is read as now, once the store has reached any resourceVersion named.
    reached(server, query).await?;
    match stored(server, target, name).await? {
        Some(obj) if wants_table(headers) => {
            let metadata = json!({"resourceVersion": meta_str(&obj, "resourceVersion").unwrap_or_default()});
            Ok(Reply::ok(super::table::table(&target.t, &[obj], &metadata)))
        }
        Some(obj) => Ok(Reply::ok(obj)),
        None => Err(ApiError::not_found(&target.key, name)),
    }
}

fn list_key(obj: &Value) -> String {
    format!(
        "{}/{}",
        meta_str(obj, "namespace").unwrap_or_default(),
        meta_str(obj, "name").unwrap_or_default()
    )
}

/// A `continue` token: the revision of the list's first page and the key of the last object
/// given, base64 JSON as upstream's (`{"v":"meta.k8s.io/v1","rv":…,"start":…}`).
fn continue_token(revision: u64, last: &str) -> String {
    use base64::Engine as _;
    let token = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": last});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn parse_continue(token: &str) -> Result<(u64, String), ApiError> {
    use base64::Engine as _;
    let invalid = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    match (value["v"].as_str(), value["rv"].as_u64(), value["start"].as_str()) {
        (Some("meta.k8s.io/v1"), Some(rv), Some(start)) if rv > 0 => Ok((rv, start.to_owned())),
        _ => Err(invalid()),
    }
}

/// The revision a read must see, from `resourceVersion` and `resourceVersionMatch`: None for the
/// current state (unset, `0`, or a revision reached, `NotOlderThan`), or an exact revision.
fn read_revision(query: &Query) -> Result<Option<u64>, ApiError> {
    let Some(rv) = query
        .get("resourceVersion")
        .filter(|rv| !rv.is_empty() && *rv != "0")
    else {
        return Ok(None);
    };
    let revision = rv
        .parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version {rv:?}: must be an integer")))?;
    Ok(match query.get("resourceVersionMatch") {
        Some("Exact") => Some(revision),
        _ => None,
    })
}

/// Refuses a read at a revision the store has not reached (`resourceVersion` newer than now).
async fn reached(server: &ApiServer, query: &Query) -> Result<(), ApiError> {
    let Some(rv) = query.get("resourceVersion").and_then(|rv| rv.parse::<u64>().ok()) else {
        return Ok(());
    };
    let current = server
        .store
        .revision()
        .await
        .map_err(|e| ApiError::from_store(e, &ResourceKey::new("", ""), ""))?;
    if rv > current {
        return Err(ApiError::from_store(
            crate::store::StoreError::TooLarge {
                requested: rv,
                current,
            },
            &ResourceKey::new("", ""),
            "",
        ));
    }
    Ok(())
}

async fn list(
    server: &ApiServer,
    target: &Target,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Reply, ApiError> {
    let (labels, fields) = selectors(&target.t, query)?;
    let namespace = (!target.namespace.is_empty()).then_some(target.namespace.as_str());
    let continued = query
        .get("continue")
        .filter(|c| !c.is_empty())
        .map(parse_continue)
        .transpose()?;
    let exact = match &continued {
        Some((revision, _)) => {
            if query.get("resourceVersion").is_some_and(|rv| !rv.is_empty()) {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            Some(*revision)
        }
        None => read_revision(query)?,
    };
    // A continued list reads the snapshot of its first page, as upstream; once the history no
    // longer reaches it, 410 Expired.
    let (items, revision) = if let Some(revision) = exact {
        let items = server
            .store
            .list_at(&target.key, namespace, revision)
            .await
            .map_err(|e| match e {
                crate::store::StoreError::Expired { .. } if continued.is_some() => ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ),
                e => ApiError::from_store(e, &target.key, ""),
            })?;
        (items, revision)
    } else {
        reached(server, query).await?;
        server
            .store
            .list(&target.key, namespace)
            .await
            .map_err(|e| ApiError::from_store(e, &target.key, ""))?
    };
    let start = continued.as_ref().map(|(_, start)| start.as_str());
    let mut items: Vec<Value> = items
        .into_iter()
        .map(|o| from_storage(&target.t, o))
        .filter(|o| labels.matches_labels(o) && fields.matches_fields(o))
        .filter(|o| start.is_none_or(|c| list_key(o).as_str() > c))
        .collect();
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    if let Some(limit) = limit.filter(|l| items.len() > *l) {
        let remaining = items.len() - limit;
        items.truncate(limit);
        if let Some(last) = items.last() {
            metadata["continue"] = continue_token(revision, &list_key(last)).into();
        }
        metadata["remainingItemCount"] = remaining.into();
    }
    if wants_table(headers) {
        return Ok(Reply::ok(super::table::table(&target.t, &items, &metadata)));
    }
    Ok(Reply::ok(json!({
        "kind": format!("{}List", target.t.kind),
        "apiVersion": target.t.api_version(),
        "metadata": metadata,
        "items": items,
    })))
}

async fn create(
    server: &ApiServer,
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
    server: &ApiServer,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_bad_ones_are_refused() {
        let token = continue_token(42, "default/job-7");
        assert_eq!(
            parse_continue(&token).ok(),
            Some((42, "default/job-7".to_owned()))
        );
        for bad in ["", "not base64!", "e30=", &continue_token(0, "x")] {
            let Err(e) = parse_continue(bad) else {
                panic!("{bad:?} was taken");
            };
            assert!(e.message.contains("continue key is not valid"), "{}", e.message);
        }
    }

    #[test]
    fn exact_reads_only_with_exact_match() {
        let q = |raw: &str| Query::parse(Some(raw));
        assert_eq!(read_revision(&q("")).ok(), Some(None));
        assert_eq!(
            read_revision(&q("resourceVersion=0&resourceVersionMatch=Exact")).ok(),
            Some(None)
        );
        assert_eq!(read_revision(&q("resourceVersion=5")).ok(), Some(None));
        assert_eq!(
            read_revision(&q("resourceVersion=5&resourceVersionMatch=NotOlderThan")).ok(),
            Some(None)
        );
        assert_eq!(
            read_revision(&q("resourceVersion=5&resourceVersionMatch=Exact")).ok(),
            Some(Some(5))
        );
        assert!(read_revision(&q("resourceVersion=abc")).is_err());
    }
}
