//! What follows a write beyond storing it: a CRD that is written gets its kinds served and is
//! marked established; a removed CRD takes its kinds and objects with it; a removed owner's
//! dependents are garbage-collected (background propagation).

use std::sync::Arc;

use serde_json::{Value, json};

use super::server::{ApiServer, new_uid, now};
use super::status::error_chain;
use crate::registry::{crd_key, established_status};
use crate::store::ResourceKey;
use crate::store::semantics::{Preconditions, Subresource, WriteContext};

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
}

fn set_meta(obj: &mut Value, field: &str, value: Value) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(field.to_owned(), value);
    }
}

/// After a CRD is written: serve its kinds and mark it established.
pub(crate) async fn after_write(server: &ApiServer, key: &ResourceKey, obj: Value) -> Value {
    if *key != crd_key() || meta_str(&obj, "deletionTimestamp").is_some() {
        return obj;
    }
    let registered = server.with_registry(|r| r.register_crd(&obj));
    if let Err(errors) = registered {
        tracing::warn!(errors = ?errors, "stored CRD could not be registered");
        return obj;
    }
    let name = meta_str(&obj, "name").unwrap_or_default().to_owned();
    let mut with_status = obj.clone();
    let status = established_status(&obj, &now());
    if obj.get("status").and_then(|s| s.get("acceptedNames")) == status.get("acceptedNames")
        && obj.pointer("/status/conditions/1/status") == Some(&json!("True"))
    {
        return obj;
    }
    with_status["status"] = status;
    let (now, uid) = (now(), new_uid());
    let ctx = WriteContext {
        now: &now,
        uid: &uid,
        status_subresource: true,
    };
    match server
        .store
        .update(&crd_key(), "", &name, with_status, Subresource::Status, &ctx)
        .await
    {
        Ok(established) => established,
        Err(e) => {
            tracing::warn!(
                crd = name,
                error = error_chain(&e),
                "failed to mark CRD established"
            );
            obj
        }
    }
}

/// After an object is removed: a removed CRD takes its kinds and objects with it, and objects
/// owned by the removed one are garbage-collected (background propagation).
pub(crate) fn after_removal(server: &Arc<ApiServer>, key: &ResourceKey, obj: &Value) {
    let server = Arc::clone(server);
    let (key, obj) = (key.clone(), obj.clone());
    tokio::spawn(async move {
        if key == crd_key() {
            server.with_registry(|r| r.unregister_crd(&obj));
            let group = obj
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let plural = obj
                .pointer("/spec/names/plural")
                .and_then(Value::as_str)
                .unwrap_or_default();
            remove_all(&server, &ResourceKey::new(group, plural)).await;
        }
        if let Some(uid) = meta_str(&obj, "uid") {
            collect_dependents(&server, uid, meta_str(&obj, "namespace").unwrap_or_default()).await;
        }
    });
}

async fn remove_all(server: &ApiServer, key: &ResourceKey) {
    let Ok((items, _)) = server.store.list(key, None).await else {
        return;
    };
    let (now, uid) = (now(), new_uid());
    let ctx = WriteContext {
        now: &now,
        uid: &uid,
        status_subresource: false,
    };
    for obj in items {
        let (ns, name) = (
            meta_str(&obj, "namespace").unwrap_or_default(),
            meta_str(&obj, "name").unwrap_or_default(),
        );
        // Finalizers cannot hold objects whose kind is gone: drop them, then delete.
        let mut cleared = obj.clone();
        set_meta(&mut cleared, "finalizers", json!([]));
        let _ = server
            .store
            .update(key, ns, name, cleared, Subresource::Main, &ctx)
            .await;
        let _ = server
            .store
            .delete(key, ns, name, &Preconditions::default(), &ctx)
            .await;
    }
}

/// Deletes the objects whose only owner was `owner_uid`, and drops it from the owner
/// references of the rest; their removal cascades the same way.
async fn collect_dependents(server: &Arc<ApiServer>, owner_uid: &str, owner_namespace: &str) {
    let mut owners = vec![(owner_uid.to_owned(), owner_namespace.to_owned())];
    let keys: Vec<(ResourceKey, bool)> = {
        let registry = server.registry();
        let mut keys: Vec<(ResourceKey, bool)> = registry.all().map(|t| (t.key(), t.namespaced)).collect();
        keys.dedup();
        keys
    };
    while let Some((uid, namespace)) = owners.pop() {
        for (key, namespaced) in &keys {
            let scope = (*namespaced && !namespace.is_empty()).then_some(namespace.as_str());
            let Ok((items, _)) = server.store.list(key, scope).await else {
                continue;
            };
            for obj in items {
                let refs = obj
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if !refs
                    .iter()
                    .any(|r| r.get("uid").and_then(Value::as_str) == Some(&uid))
                {
                    continue;
                }
                let remaining: Vec<Value> = refs
                    .into_iter()
                    .filter(|r| r.get("uid").and_then(Value::as_str) != Some(&uid))
                    .collect();
                let (ns, name) = (
                    meta_str(&obj, "namespace").unwrap_or_default().to_owned(),
                    meta_str(&obj, "name").unwrap_or_default().to_owned(),
                );
                let (now, fresh) = (now(), new_uid());
                let ctx = WriteContext {
                    now: &now,
                    uid: &fresh,
                    status_subresource: false,
                };
                if remaining.is_empty() {
                    match server
                        .store
                        .delete(key, &ns, &name, &Preconditions::default(), &ctx)
                        .await
                    {
                        Ok(d) if d.removed => {
                            if let Some(dep_uid) = meta_str(&d.object, "uid") {
                                owners.push((dep_uid.to_owned(), ns.clone()));
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(%key, name, error = error_chain(&e), "garbage collection failed to delete a dependent");
                        }
                    }
                } else {
                    let mut kept = obj.clone();
                    set_meta(&mut kept, "ownerReferences", Value::Array(remaining));
                    if let Err(e) = server
                        .store
                        .update(key, &ns, &name, kept, Subresource::Main, &ctx)
                        .await
                    {
                        tracing::warn!(%key, name, error = error_chain(&e), "garbage collection failed to drop an owner reference");
                    }
                }
            }
        }
    }
}
