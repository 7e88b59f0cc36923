//! Small helpers on an object's metadata, shared by the handlers and the garbage collector.

use serde_json::{Value, json};

use crate::registry::ResourceType;
use crate::store::semantics::WriteContext;

/// A string field of `metadata`.
pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
}

/// Sets a field of `metadata`, creating `metadata` if needed.
pub(crate) fn set_meta(obj: &mut Value, field: &str, value: Value) {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"][field] = value;
}

/// The write context of a kind.
pub(crate) fn write_context<'a>(t: &ResourceType, now: &'a str, uid: &'a str) -> WriteContext<'a> {
    WriteContext {
        now,
        uid,
        status_subresource: t.status_subresource,
        generation: t.generation,
    }
}
