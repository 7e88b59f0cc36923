//! What a create, update or delete does to an object, decided without I/O: the metadata the
//! server owns, resourceVersion preconditions, generation bumps, the status subresource,
//! no-op writes, finalizers and `deletionTimestamp`. The store applies the decisions.

use serde_json::{Map, Value};

/// Which endpoint a write came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// The object itself: everything but `status` (when the kind has a status subresource).
    Main,
    /// `/status`: only `status`.
    Status,
}

/// A write the API refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// A precondition (resourceVersion or uid) does not hold: HTTP 409.
    #[error("{0}")]
    Conflict(String),
    /// The request is malformed: HTTP 400.
    #[error("{0}")]
    BadRequest(String),
    /// The change is not allowed: HTTP 422.
    #[error("{0}")]
    Forbidden(String),
}

/// Server-side facts of one write: passed in so these functions stay pure.
#[derive(Debug, Clone)]
pub struct WriteContext<'a> {
    /// Now, as RFC 3339 with seconds (`2026-11-24T10:00:00Z`).
    pub now: &'a str,
    /// A fresh uid, used on create.
    pub uid: &'a str,
    /// Whether the kind has a status subresource.
    pub status_subresource: bool,
    /// Whether the kind keeps `metadata.generation` (custom resources and kinds with a spec
    /// such as Deployments; not ConfigMaps, Secrets and the other core kinds, as upstream).
    pub generation: bool,
}

/// What an update does.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOutcome {
    /// Nothing changed: the stored object (and its resourceVersion) stays.
    Unchanged,
    /// Store this object under a new resourceVersion.
    Write(Value),
    /// The last finalizer of an object being deleted was removed: delete it for good.
    Remove(Value),
}

/// What a delete does.
#[derive(Debug, Clone, PartialEq)]
pub enum DeleteOutcome {
    /// No finalizers: remove the object now.
    Remove,
    /// Finalizers pending: store this object, marked with `deletionTimestamp`.
    MarkDeleting(Value),
    /// Already marked for deletion: nothing changes.
    AlreadyDeleting,
}

/// Preconditions a delete may carry (`DeleteOptions.preconditions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    /// The object's uid must be this.
    pub uid: Option<String>,
    /// The object's resourceVersion must be this.
    pub resource_version: Option<String>,
}

fn metadata(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

fn metadata_mut(obj: &mut Value) -> Result<&mut Map<String, Value>, WriteError> {
    obj.get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| WriteError::BadRequest("metadata must be an object".into()))
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    metadata(obj).and_then(|m| m.get(field)).and_then(Value::as_str)
}

/// The object's finalizers.
pub fn finalizers(obj: &Value) -> Vec<&str> {
    metadata(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Prepares a new object: sets the metadata the server owns (uid, creationTimestamp,
/// generation 1 where the kind keeps one), clears what a client may not set on create, and drops `status` when the kind
/// has a status subresource. The store sets `resourceVersion`.
///
/// # Errors
/// [`WriteError::BadRequest`] when `metadata` is missing or not an object.
pub fn prepare_create(mut obj: Value, ctx: &WriteContext<'_>) -> Result<Value, WriteError> {
    if !obj.is_object() {
        return Err(WriteError::BadRequest("the object must be a JSON object".into()));
    }
    let meta = metadata_mut(&mut obj)?;
    meta.insert("uid".into(), ctx.uid.into());
    meta.insert("creationTimestamp".into(), ctx.now.into());
    if ctx.generation {
        meta.insert("generation".into(), 1.into());
    } else {
        meta.remove("generation");
    }
    for owned in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        meta.remove(owned);
    }
    if ctx.status_subresource
        && let Some(map) = obj.as_object_mut()
    {
        map.remove("status");
    }
    Ok(obj)
}

/// Everything but `metadata` and `status`: what bumps `generation` when it changes.
fn spec_part(obj: &Value) -> Map<String, Value> {
    obj.as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| *k != "metadata" && *k != "status")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks a write's resourceVersion and uid preconditions against the stored object.
fn check_preconditions(old: &Value, rv: Option<&str>, uid: Option<&str>) -> Result<(), WriteError> {
    if let Some(rv) = rv.filter(|rv| !rv.is_empty())
        && Some(rv) != meta_str(old, "resourceVersion")
    {
        return Err(WriteError::Conflict(
            "the object has been modified; please apply your changes to the latest version and try again"
                .into(),
        ));
    }
    if let Some(uid) = uid.filter(|u| !u.is_empty())
        && Some(uid) != meta_str(old, "uid")
    {
        return Err(WriteError::Conflict(format!(
            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
            meta_str(old, "uid").unwrap_or_default()
        )));
    }
    Ok(())
}

/// Decides an update of `old` (as stored) to `new` (as sent) through `sub`.
///
/// # Errors
/// [`WriteError::Conflict`] on a stale resourceVersion or another uid,
/// [`WriteError::BadRequest`] on a malformed object, [`WriteError::Forbidden`] when a finalizer
/// is added to an object being deleted.
pub fn prepare_update(
    old: &Value,
    new: Value,
    sub: Subresource,
    ctx: &WriteContext<'_>,
) -> Result<UpdateOutcome, WriteError> {
    if !new.is_object() {
        return Err(WriteError::BadRequest("the object must be a JSON object".into()));
    }
    check_preconditions(old, meta_str(&new, "resourceVersion"), meta_str(&new, "uid"))?;
    let mut result = match sub {
        Subresource::Status => {
            let mut result = old.clone();
            if let Some(map) = result.as_object_mut() {
                match new.get("status") {
                    Some(status) => map.insert("status".into(), status.clone()),
                    None => map.remove("status"),
                };
            }
            result
        }
        Subresource::Main => {
            let mut result = new;
            if ctx.status_subresource
                && let Some(map) = result.as_object_mut()
            {
                match old.get("status") {
                    Some(status) => map.insert("status".into(), status.clone()),
                    None => map.remove("status"),
                };
            }
            let old_meta = metadata(old).cloned().unwrap_or_default();
            let meta = metadata_mut(&mut result)?;
            for owned in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old_meta.get(owned) {
                    Some(v) => meta.insert(owned.into(), v.clone()),
                    None => meta.remove(owned),
                };
            }
            result
        }
    };
    if meta_str(old, "deletionTimestamp").is_some() {
        let before = finalizers(old);
        if let Some(added) = finalizers(&result).into_iter().find(|f| !before.contains(f)) {
            return Err(WriteError::Forbidden(format!(
                "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers [\"{added}\"]"
            )));
        }
    }
    if ctx.generation && sub == Subresource::Main && spec_part(&result) != spec_part(old) {
        let generation = metadata(old)
            .and_then(|m| m.get("generation"))
            .and_then(Value::as_i64)
            .unwrap_or(0);
        metadata_mut(&mut result)?.insert("generation".into(), (generation + 1).into());
    }
    if meta_str(&result, "deletionTimestamp").is_some() && finalizers(&result).is_empty() {
        return Ok(UpdateOutcome::Remove(result));
    }
    if same_ignoring_version(old, &result) {
        return Ok(UpdateOutcome::Unchanged);
    }
    Ok(UpdateOutcome::Write(result))
}

/// Equal but for `resourceVersion`, which a write stamps anew, and the times of
/// `managedFields` entries (an apply that changes nothing is no write; one that changes who
/// manages a field is).
#[allow(clippy::many_single_char_names)] // two objects compared level by level
fn same_ignoring_version(a: &Value, b: &Value) -> bool {
    // Compared in place: this runs in the store's one writer for every update.
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let same_managed = |x: &Value, y: &Value| match (x.as_array(), y.as_array()) {
        (Some(x), Some(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(e, f)| match (e.as_object(), f.as_object()) {
                        (Some(e), Some(f)) => {
                            let kept = |m: &Map<String, Value>| m.keys().filter(|k| *k != "time").count();
                            kept(e) == kept(f)
                                && e.iter()
                                    .filter(|(k, _)| *k != "time")
                                    .all(|(k, v)| f.get(k) == Some(v))
                        }
                        _ => e == f,
                    })
        }
        _ => x == y,
    };
    let same_metadata = |x: &Value, y: &Value| match (x.as_object(), y.as_object()) {
        (Some(x), Some(y)) => {
            let kept = |m: &'_ Map<String, Value>| m.keys().filter(|k| *k != "resourceVersion").count();
            kept(x) == kept(y)
                && x.iter()
                    .filter(|(k, _)| *k != "resourceVersion")
                    .all(|(k, v)| match y.get(k) {
                        Some(w) if k == "managedFields" => same_managed(v, w),
                        other => other == Some(v),
                    })
        }
        _ => x == y,
    };
    a.len() == b.len()
        && a.iter().all(|(k, v)| match b.get(k) {
            None => false,
            Some(w) if k == "metadata" => same_metadata(v, w),
            Some(w) => v == w,
        })
}

/// Decides a delete of `old`.
///
/// # Errors
/// [`WriteError::Conflict`] when a precondition does not hold.
pub fn prepare_delete(
    old: &Value,
    pre: &Preconditions,
    ctx: &WriteContext<'_>,
) -> Result<DeleteOutcome, WriteError> {
    check_preconditions(old, pre.resource_version.as_deref(), pre.uid.as_deref())?;
    if finalizers(old).is_empty() {
        return Ok(DeleteOutcome::Remove);
    }
    if meta_str(old, "deletionTimestamp").is_some() {
        return Ok(DeleteOutcome::AlreadyDeleting);
    }
    let mut marked = old.clone();
    let meta = metadata_mut(&mut marked)?;
    meta.insert("deletionTimestamp".into(), ctx.now.into());
    meta.insert("deletionGracePeriodSeconds".into(), 0.into());
    Ok(DeleteOutcome::MarkDeleting(marked))
}

#[cfg(test)]
mod tests;
