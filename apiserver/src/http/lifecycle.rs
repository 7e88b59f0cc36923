//! What follows a write beyond storing it: a CRD that is written gets its kinds served and is
//! marked established; a removed CRD takes its kinds and objects with it; a removed owner's
//! dependents are garbage-collected (background propagation), and so is an object created with
//! owners that are all gone already (upstream's garbage collector deletes a dependent whose
//! owners it finds absent, whenever it was created).

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Value, json};

use super::meta::{meta_str, set_meta};
use super::state::{ApiServer, new_uid, now};
use super::status::error_chain;
use crate::registry::{ResourceType, crd_key, established_status};
use crate::store::semantics::WriteError;
use crate::store::semantics::{Preconditions, Subresource, WriteContext};
use crate::store::{ResourceKey, StoreError};

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
        generation: true,
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
    let background = server.background.clone();
    background.spawn(async move {
        if key == crd_key() {
            server.with_registry(|r| r.unregister_crd(&obj));
            let (group, plural) = crate::registry::crd_resource(&obj);
            remove_all(&server, &ResourceKey::new(group, plural)).await;
        }
        if let Some(uid) = meta_str(&obj, "uid") {
            collect_dependents(&server, uid, meta_str(&obj, "namespace").unwrap_or_default()).await;
        }
    });
}

/// After an object is created with owner references: in the background, when every owner is
/// absent (no object of that kind and name, or one with another uid), the new object is
/// garbage-collected as the dependent of a removed owner is. A client that acted on a stale
/// view (a controller creating a task for a job deleted a moment before) leaves nothing behind.
/// An owner of a kind not served here counts as present: it cannot be checked.
pub(crate) fn after_create(server: &Arc<ApiServer>, key: &ResourceKey, obj: &Value) {
    let refs = owner_refs(obj);
    if refs.is_empty() {
        return;
    }
    let server = Arc::clone(server);
    let (key, obj) = (key.clone(), obj.clone());
    let background = server.background.clone();
    background.spawn(async move {
        let namespace = meta_str(&obj, "namespace").unwrap_or_default();
        for r in &refs {
            if owner_present(&server, r, namespace).await {
                return;
            }
        }
        let name = meta_str(&obj, "name").unwrap_or_default();
        let (now, fresh) = (now(), new_uid());
        let ctx = metadata_write(&now, &fresh);
        // Only this object, as it was created (a newer one of the same name is left alone).
        let only = Preconditions {
            uid: meta_str(&obj, "uid").map(str::to_owned),
            ..Preconditions::default()
        };
        match server.store.delete(&key, namespace, name, &only, &ctx).await {
            Ok(d) if d.removed => {
                tracing::info!(%key, namespace, name, "collected an object created with every owner gone");
                after_removal(&server, &key, &d.object);
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(%key, name, error = error_chain(&e), "not collected"),
        }
    });
}

/// Whether the owner a reference names exists with its uid (or cannot be checked).
async fn owner_present(server: &ApiServer, reference: &Value, namespace: &str) -> bool {
    let text = |f: &str| reference.get(f).and_then(Value::as_str).unwrap_or_default();
    let (api_version, kind, name, uid) = (text("apiVersion"), text("kind"), text("name"), text("uid"));
    // By group and kind: any version of the owner's kind finds it, as upstream's mapper does.
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let found = server.with_registry(|r| {
        r.all()
            .find(|t| t.group == group && t.kind == kind)
            .map(|t| (t.key(), t.namespaced))
    });
    let Some((key, namespaced)) = found else {
        return true;
    };
    let scope = if namespaced { namespace } else { "" };
    // Shared, not copied: a job's status can be tens of kilobytes and every Task names one.
    server
        .store
        .get_shared(&key, scope, name)
        .await
        .is_some_and(|owner| meta_str(&owner, "uid") == Some(uid))
}

/// The finalizer that holds a CRD being deleted until its objects are gone, as upstream's.
pub(crate) const CRD_CLEANUP: &str = "customresourcecleanup.apiextensions.k8s.io";

/// A CRD was marked for deletion (its cleanup finalizer holds it): in the background, as
/// upstream's finalizer controller, mark it `Terminating`, refuse new objects of its kinds,
/// delete every object (each as a delete would: its own finalizers are honoured and waited
/// for), then stop serving the kinds and drop the finalizer, which removes the CRD (watchers see
/// it `DELETED`). Resumed after a restart.
pub(crate) fn terminate_crd(server: &Arc<ApiServer>, crd: &Value) {
    let holds = crd
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|v| v == CRD_CLEANUP));
    if !holds || meta_str(crd, "deletionTimestamp").is_none() {
        return;
    }
    let server = Arc::clone(server);
    let crd = crd.clone();
    let background = server.background.clone();
    background.spawn(async move {
        let name = meta_str(&crd, "name").unwrap_or_default().to_owned();
        if let Err(e) = cleanup_crd(&server, &crd).await {
            tracing::warn!(
                crd = name,
                error = e,
                "failed to finish deleting a CRD; retried at the next start"
            );
        }
    });
}

async fn cleanup_crd(server: &Arc<ApiServer>, crd: &Value) -> Result<(), String> {
    let name = meta_str(crd, "name").unwrap_or_default().to_owned();
    server.with_registry(|r| r.terminate_crd(crd));
    mark_terminating(server, crd).await;
    let (group, plural) = crate::registry::crd_resource(crd);
    delete_until_gone(server, &ResourceKey::new(group, plural)).await?;
    server.with_registry(|r| r.unregister_crd(crd));
    release_crd(server, &name).await?;
    tracing::info!(crd = name, "CRD deleted with its objects");
    Ok(())
}

/// The context of a write of metadata only (finalizers, owner references, a delete): the
/// generation stays as it is either way.
fn metadata_write<'a>(now: &'a str, uid: &'a str) -> WriteContext<'a> {
    WriteContext {
        now,
        uid,
        status_subresource: false,
        generation: false,
    }
}

fn system_write<'a>(now: &'a str, uid: &'a str, status_subresource: bool) -> WriteContext<'a> {
    WriteContext {
        now,
        uid,
        status_subresource,
        generation: true,
    }
}

/// Adds the `Terminating` condition to a CRD being deleted.
async fn mark_terminating(server: &ApiServer, crd: &Value) {
    let name = meta_str(crd, "name").unwrap_or_default();
    let mut conditions: Vec<Value> = crd
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if conditions.iter().any(|c| c["type"] == "Terminating") {
        return;
    }
    let (now, uid) = (now(), new_uid());
    conditions.push(
        json!({"type": "Terminating", "status": "True", "reason": "InstanceDeletionInProgress",
        "message": "CustomResource deletion is in progress", "lastTransitionTime": now}),
    );
    let mut marked = crd.clone();
    marked["status"]["conditions"] = Value::Array(conditions);
    let ctx = system_write(&now, &uid, true);
    if let Err(e) = server
        .store
        .update(&crd_key(), "", name, marked, Subresource::Status, &ctx)
        .await
    {
        tracing::info!(
            crd = name,
            error = error_chain(&e),
            "could not mark the CRD Terminating"
        );
    }
}

/// Deletes every object of a kind, as a delete request would (their finalizers honoured), and
/// waits until they are all gone.
async fn delete_until_gone(server: &Arc<ApiServer>, key: &ResourceKey) -> Result<(), String> {
    let mut changes = server.store.subscribe(key);
    loop {
        let (items, _) = server.store.list(key, None).await.map_err(|e| error_chain(&e))?;
        if items.is_empty() {
            return Ok(());
        }
        let (now, uid) = (now(), new_uid());
        let ctx = system_write(&now, &uid, false);
        for obj in items
            .iter()
            .filter(|o| meta_str(o, "deletionTimestamp").is_none())
        {
            let (ns, name) = (
                meta_str(obj, "namespace").unwrap_or_default(),
                meta_str(obj, "name").unwrap_or_default(),
            );
            match server
                .store
                .delete(key, ns, name, &Preconditions::default(), &ctx)
                .await
            {
                Ok(deleted) if deleted.removed => after_removal(server, key, &deleted.object),
                Ok(_) | Err(crate::store::StoreError::NotFound { .. }) => {}
                Err(e) => return Err(error_chain(&e)),
            }
        }
        // Objects held by their finalizers go when their controllers release them.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), changes.recv()).await;
    }
}

/// Drops the cleanup finalizer of a CRD whose objects are gone, which removes it.
async fn release_crd(server: &Arc<ApiServer>, name: &str) -> Result<(), String> {
    let current = server
        .store
        .get(&crd_key(), "", name)
        .await
        .map_err(|e| error_chain(&e))?
        .ok_or_else(|| "the CRD is gone".to_owned())?;
    let finalizers: Vec<Value> = current
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter(|v| *v != CRD_CLEANUP).cloned().collect())
        .unwrap_or_default();
    let mut released = current;
    set_meta(&mut released, "finalizers", Value::Array(finalizers));
    let (now, uid) = (now(), new_uid());
    let ctx = system_write(&now, &uid, true);
    let written = server
        .store
        .update(&crd_key(), "", name, released, Subresource::Main, &ctx)
        .await
        .map_err(|e| error_chain(&e))?;
    let gone = written
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if gone {
        after_removal(server, &crd_key(), &written);
    }
    Ok(())
}

async fn remove_all(server: &ApiServer, key: &ResourceKey) {
    let Ok((items, _)) = server.store.list(key, None).await else {
        return;
    };
    let (now, uid) = (now(), new_uid());
    let ctx = metadata_write(&now, &uid);
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

/// The finalizer that holds an owner until its dependents are deleted (foreground deletion).
pub(crate) const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer that holds an owner until its dependents are released (orphan deletion).
pub(crate) const ORPHAN: &str = "orphan";

fn owner_refs(obj: &Value) -> Vec<Value> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Every object that names `owner_uid` among its owners, of a kind served here: in the owner's
/// namespace (or cluster-scoped), or anywhere for a cluster-scoped owner. From the store's
/// owner index: a removed Task costs a lookup, not a read of every object.
async fn dependents(server: &ApiServer, owner_uid: &str, owner_namespace: &str) -> Vec<(ResourceKey, Value)> {
    let kinds: HashSet<ResourceKey> = server.registry().all().map(ResourceType::key).collect();
    let mut found = server.store.dependents(owner_uid).await;
    found.retain(|(key, o)| {
        let ns = meta_str(o, "namespace").unwrap_or_default();
        kinds.contains(key) && (owner_namespace.is_empty() || ns.is_empty() || ns == owner_namespace)
    });
    found
}

/// Drops `owner_uid` from a dependent's owner references.
async fn release(server: &ApiServer, key: &ResourceKey, obj: &Value, owner_uid: &str) {
    let remaining: Vec<Value> = owner_refs(obj)
        .into_iter()
        .filter(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid))
        .collect();
    let mut kept = obj.clone();
    if remaining.is_empty() {
        // As the API server serializes it: an empty list is no field at all.
        if let Some(meta) = kept.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("ownerReferences");
        }
    } else {
        set_meta(&mut kept, "ownerReferences", Value::Array(remaining));
    }
    let (ns, name) = (
        meta_str(obj, "namespace").unwrap_or_default(),
        meta_str(obj, "name").unwrap_or_default(),
    );
    let (now, uid) = (now(), new_uid());
    let ctx = metadata_write(&now, &uid);
    if let Err(e) = server
        .store
        .update(key, ns, name, kept, Subresource::Main, &ctx)
        .await
    {
        tracing::warn!(%key, name, error = error_chain(&e), "garbage collection failed to drop an owner reference");
    }
}

/// Deletes the objects whose only owner was `owner_uid`, and drops it from the owner
/// references of the rest; their removal cascades the same way.
async fn collect_dependents(server: &Arc<ApiServer>, owner_uid: &str, owner_namespace: &str) {
    let mut owners = vec![(owner_uid.to_owned(), owner_namespace.to_owned())];
    while let Some((uid, namespace)) = owners.pop() {
        for (key, obj) in dependents(server, &uid, &namespace).await {
            if owner_refs(&obj).len() > 1 {
                release(server, &key, &obj, &uid).await;
                continue;
            }
            let (ns, name) = (
                meta_str(&obj, "namespace").unwrap_or_default(),
                meta_str(&obj, "name").unwrap_or_default(),
            );
            let (now, fresh) = (now(), new_uid());
            let ctx = metadata_write(&now, &fresh);
            // Only the dependent that was found, as upstream's collector deletes with a uid
            // precondition: a newer object of the same name is not this owner's.
            let only = Preconditions {
                uid: meta_str(&obj, "uid").map(str::to_owned),
                ..Preconditions::default()
            };
            match server.store.delete(&key, ns, name, &only, &ctx).await {
                Ok(d) if d.removed => {
                    if let Some(dep_uid) = meta_str(&d.object, "uid") {
                        owners.push((dep_uid.to_owned(), ns.to_owned()));
                    }
                }
                Ok(_) => {}
                // Deleted meanwhile by someone else, or replaced by a newer object: done.
                Err(e @ (StoreError::NotFound { .. } | StoreError::Write(WriteError::Conflict(_)))) => {
                    tracing::debug!(%key, name, error = error_chain(&e), "dependent already gone");
                }
                Err(e) => {
                    tracing::warn!(%key, name, error = error_chain(&e), "garbage collection failed to delete a dependent");
                }
            }
        }
    }
}

/// Removes `finalizer` from the stored object; if that was the last, the object goes.
async fn drop_finalizer(
    server: &Arc<ApiServer>,
    key: &ResourceKey,
    namespace: &str,
    name: &str,
    finalizer: &str,
) {
    let Ok(Some(mut obj)) = server.store.get(key, namespace, name).await else {
        return;
    };
    let kept: Vec<Value> = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter(|v| v.as_str() != Some(finalizer))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    set_meta(&mut obj, "finalizers", Value::Array(kept));
    let (now, uid) = (now(), new_uid());
    let ctx = metadata_write(&now, &uid);
    match server
        .store
        .update(key, namespace, name, obj, Subresource::Main, &ctx)
        .await
    {
        Ok(written) => {
            let gone = written
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
            if gone {
                after_removal(server, key, &written);
            }
        }
        Err(e) => {
            tracing::warn!(%key, name, error = error_chain(&e), "failed to remove the {finalizer} finalizer");
        }
    }
}

/// Carries out the propagation policy of an owner marked for deletion with the `orphan` or
/// `foregroundDeletion` finalizer: release or delete its dependents, then drop the finalizer.
pub(crate) fn propagate(server: &Arc<ApiServer>, key: &ResourceKey, obj: &Value) {
    let server = Arc::clone(server);
    let key = key.clone();
    let finalizers: Vec<String> = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let (uid, ns, name) = (
        meta_str(obj, "uid").unwrap_or_default().to_owned(),
        meta_str(obj, "namespace").unwrap_or_default().to_owned(),
        meta_str(obj, "name").unwrap_or_default().to_owned(),
    );
    let background = server.background.clone();
    background.spawn(async move {
        if finalizers.iter().any(|f| f == ORPHAN) {
            for (dep_key, dep) in dependents(&server, &uid, &ns).await {
                release(&server, &dep_key, &dep, &uid).await;
            }
            drop_finalizer(&server, &key, &ns, &name, ORPHAN).await;
        }
        if finalizers.iter().any(|f| f == FOREGROUND) {
            // Dependents with finalizers of their own go when their controllers let them.
            loop {
                collect_dependents(&server, &uid, &ns).await;
                if dependents(&server, &uid, &ns).await.is_empty() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            drop_finalizer(&server, &key, &ns, &name, FOREGROUND).await;
        }
    });
}

/// After a restart: resumes the propagation of owners that were being deleted.
pub(crate) async fn resume(server: &Arc<ApiServer>) {
    if let Ok((crds, _)) = server.store.list(&crd_key(), None).await {
        for crd in crds.iter().filter(|c| meta_str(c, "deletionTimestamp").is_some()) {
            terminate_crd(server, crd);
        }
    }
    let mut keys: Vec<ResourceKey> = server
        .registry()
        .all()
        .map(crate::registry::ResourceType::key)
        .collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let Ok((items, _)) = server.store.list(&key, None).await else {
            continue;
        };
        for obj in items
            .iter()
            .filter(|o| meta_str(o, "deletionTimestamp").is_some())
        {
            let held = obj
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| {
                    f.iter()
                        .any(|v| v.as_str() == Some(FOREGROUND) || v.as_str() == Some(ORPHAN))
                });
            if held {
                propagate(server, &key, obj);
            }
        }
    }
}
