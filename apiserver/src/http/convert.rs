//! Between the version a request speaks and the form objects are stored in, as upstream
//! converts them: `events.k8s.io/v1` Events are core/v1 Events in storage (one resource, two
//! versions: `regarding` is `involvedObject`, `note` is `message`…), and a custom resource is
//! stored at its CRD's storage version, pruned against that version's schema (the CRDs here
//! convert with `strategy: None`: only `apiVersion` changes). Reads convert back.

use serde_json::{Map, Value};

use crate::registry::{Registry, ResourceType};
use crate::store::semantics::{Preconditions, WriteContext};
use crate::store::{ResourceKey, Store, StoreError};

/// `events.k8s.io/v1` field ↔ core/v1 field.
const EVENT_FIELDS: [(&str, &str); 14] = [
    ("regarding", "involvedObject"),
    ("related", "related"),
    ("note", "message"),
    ("reason", "reason"),
    ("type", "type"),
    ("action", "action"),
    ("reportingController", "reportingComponent"),
    ("reportingInstance", "reportingInstance"),
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn is_new_event(t: &ResourceType) -> bool {
    t.group == "events.k8s.io" && t.kind == "Event"
}

/// Renames an Event's fields: `forward` from `events.k8s.io/v1` to core/v1, else back.
fn rename_event(obj: Value, forward: bool, api_version: &str) -> Value {
    let Value::Object(mut from) = obj else {
        return obj;
    };
    let mut to = Map::new();
    to.insert("apiVersion".into(), api_version.into());
    to.insert("kind".into(), "Event".into());
    if let Some(metadata) = from.remove("metadata") {
        to.insert("metadata".into(), metadata);
    }
    for (new, old) in EVENT_FIELDS {
        let (source, target) = if forward { (new, old) } else { (old, new) };
        if let Some(value) = from.remove(source) {
            to.insert(target.to_owned(), value);
        }
    }
    Value::Object(to)
}

/// Moves `events.k8s.io` Events stored on their own (by versions before the one store) into
/// the core store, converted, keeping their uid and creation time.
pub(crate) async fn migrate_events(store: &Store) -> Result<(), StoreError> {
    let old_key = ResourceKey::new("events.k8s.io", "events");
    let (old, _) = store.list(&old_key, None).await?;
    for event in old {
        let meta = |f: &str| {
            event
                .pointer(&format!("/metadata/{f}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let (namespace, name, uid, created) = (
            meta("namespace"),
            meta("name"),
            meta("uid"),
            meta("creationTimestamp"),
        );
        let ctx = WriteContext {
            now: &created,
            uid: &uid,
            status_subresource: false,
            generation: false,
        };
        match store
            .create(
                &ResourceKey::new("", "events"),
                &namespace,
                rename_event(event.clone(), true, "v1"),
                &ctx,
            )
            .await
        {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
        store
            .delete(&old_key, &namespace, &name, &Preconditions::default(), &ctx)
            .await?;
    }
    Ok(())
}

/// Whether reading objects of `t` changes them (the watch re-encodes those).
pub(crate) fn converts(t: &ResourceType) -> bool {
    is_new_event(t) || (t.validator.is_some() && t.version != t.storage_version)
}

/// `obj`, as the request for `t` sent it (admitted already), in its stored form.
pub(crate) fn to_storage(registry: &Registry, t: &ResourceType, mut obj: Value) -> Value {
    if is_new_event(t) {
        return rename_event(obj, true, "v1");
    }
    if t.validator.is_none() || t.version == t.storage_version {
        return obj;
    }
    if let Some(storage) = registry.get(&t.group, &t.storage_version, &t.plural) {
        obj["apiVersion"] = storage.api_version().into();
        if let Some(validator) = &storage.validator {
            crate::schema::prune_and_default(validator.schema(), &mut obj);
        }
    }
    obj
}

/// A stored object as `t`'s version shows it.
pub(crate) fn from_storage(t: &ResourceType, mut obj: Value) -> Value {
    if is_new_event(t) {
        return rename_event(obj, false, &t.api_version());
    }
    if converts(t) && obj.is_object() {
        obj["apiVersion"] = t.api_version().into();
    }
    obj
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_event_of_either_version_is_one_stored_event() {
        let registry = Registry::default();
        let new = registry.get("events.k8s.io", "v1", "events").unwrap();
        let core = registry.get("", "v1", "events").unwrap();
        assert_eq!(new.key(), core.key(), "one store");
        let sent = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": "d"},
            "regarding": {"kind": "Task", "name": "t"}, "note": "started", "reason": "Started", "type": "Normal",
            "reportingController": "ringrift.ai/agent", "reportingInstance": "a1", "action": "Run",
            "eventTime": "2026-12-05T10:00:00.000000Z", "deprecatedCount": 2});
        let stored = to_storage(&registry, new, sent.clone());
        assert_eq!(
            stored,
            json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "d"},
                "involvedObject": {"kind": "Task", "name": "t"}, "message": "started", "reason": "Started", "type": "Normal",
                "reportingComponent": "ringrift.ai/agent", "reportingInstance": "a1", "action": "Run",
                "eventTime": "2026-12-05T10:00:00.000000Z", "count": 2})
        );
        assert_eq!(from_storage(new, stored.clone()), sent);
        assert_eq!(
            from_storage(core, stored.clone()),
            stored,
            "core/v1 reads it as stored"
        );
        assert!(converts(new) && !converts(core));
    }

    #[tokio::test]
    async fn events_stored_apart_before_are_moved_into_the_one_store() {
        let store = Store::in_memory(100).await.unwrap();
        let ctx = WriteContext {
            now: "2026-12-01T00:00:00Z",
            uid: "u-old",
            status_subresource: false,
            generation: false,
        };
        let old = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": "default"},
                         "note": "hello", "regarding": {"name": "x"}});
        store
            .create(&ResourceKey::new("events.k8s.io", "events"), "default", old, &ctx)
            .await
            .unwrap();
        let server = super::super::ApiServer::new(store, super::super::Options::default())
            .await
            .unwrap();
        let store = server.store();
        assert!(
            store
                .get(&ResourceKey::new("events.k8s.io", "events"), "default", "e")
                .await
                .unwrap()
                .is_none()
        );
        let moved = store
            .get(&ResourceKey::new("", "events"), "default", "e")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (
                moved["message"].as_str(),
                moved["involvedObject"]["name"].as_str()
            ),
            (Some("hello"), Some("x"))
        );
        assert_eq!(moved["metadata"]["uid"], "u-old", "the same event");
    }
}
