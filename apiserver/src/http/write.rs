//! An update written through admission, version conversion and the store (or its dry run), and
//! what follows it: the handlers' and `/scale`'s one way to write an object they changed.

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::Value;

use super::admission::admit;
use super::convert::{from_storage, to_storage};
use super::meta::{meta_str, write_context};
use super::query::Query;
use super::state::{ApiServer, new_uid, now};
use super::status::ApiError;
use super::target::{Reply, Target};

/// Writes `obj` (the object an update through `target` would store) over `old`.
///
/// # Errors
/// Admission's refusals and the store's.
pub(crate) async fn write_update(
    server: &Arc<ApiServer>,
    target: &Target,
    name: &str,
    old: &Value,
    mut obj: Value,
    query: &Query,
) -> Result<Reply, ApiError> {
    let warnings = admit(target, &mut obj, Some(old), query)?;
    let obj = to_storage(&server.registry(), &target.t, obj);
    let (now, uid) = (now(), new_uid());
    let ctx = write_context(&target.t, &now, &uid);
    let written = target
        .store_update(server, name, obj, target.sub, &ctx, target.dry_run)
        .await?;
    if target.dry_run {
        return Ok(Reply {
            status: StatusCode::OK,
            body: from_storage(&target.t, written),
            warnings,
        });
    }
    // An update that drops the last finalizer of an object being deleted removes it.
    let removed = meta_str(&written, "deletionTimestamp").is_some()
        && written
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
    if removed {
        super::lifecycle::after_removal(server, &target.key, &written);
    }
    let written = super::lifecycle::after_write(server, &target.key, written).await;
    Ok(Reply {
        status: StatusCode::OK,
        body: from_storage(&target.t, written),
        warnings,
    })
}
