//! Server-side apply with managed fields, as `sigs.k8s.io/structured-merge-diff` decides it:
//! every field belongs to the managers that set it (`metadata.managedFields`, `FieldsV1`); an
//! apply sets the fields of its configuration, takes them over from managers that set the same
//! values, fails with a conflict where another manager set a different value (unless forced,
//! which moves the field to the applier), and removes the fields the applier set last time and
//! no longer does when no one else manages them. Lists merge by their schema's `listType`
//! (`map` by `x-kubernetes-list-map-keys`, `set` by value, `atomic` whole); without a schema
//! (built-in kinds) every list is atomic. Updates by other means (PUT, merge and JSON patches)
//! give the fields they change to their manager. Pure.

mod fieldset;
mod managed;

#[cfg(test)]
mod tests;

use serde_json::{Map, Value, json};

pub use fieldset::{FieldSet, Path};
use managed::set_managed;
pub use managed::{Managed, managed_of};

/// The schema of a value (an `openAPIV3Schema` node), if the kind has one.
type Schema<'a> = Option<&'a Value>;

fn child_schema<'a>(schema: Schema<'a>, key: &str) -> Schema<'a> {
    let schema = schema?;
    schema
        .pointer(&format!(
            "/properties/{}",
            key.replace('~', "~0").replace('/', "~1")
        ))
        .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()))
}

fn items_schema(schema: Schema<'_>) -> Schema<'_> {
    schema?.get("items")
}

/// How a list merges.
#[derive(Debug, Clone, PartialEq)]
enum ListType {
    Atomic,
    Set,
    Map(Vec<String>),
}

fn list_type(schema: Schema<'_>) -> ListType {
    let Some(schema) = schema else {
        return ListType::Atomic;
    };
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => ListType::Set,
        Some("map") => ListType::Map(
            schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|keys| keys.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default(),
        ),
        _ => ListType::Atomic,
    }
}

fn atomic_map(schema: Schema<'_>) -> bool {
    schema
        .and_then(|s| s.get("x-kubernetes-map-type"))
        .and_then(Value::as_str)
        .is_some_and(|t| t == "atomic")
}

/// The key of a `listType: map` item: `{"name":"a"}` as `FieldsV1` writes it (`k:` + JSON).
fn item_key(item: &Value, keys: &[String]) -> Option<String> {
    let mut key = Map::new();
    for k in keys {
        key.insert(k.clone(), item.get(k)?.clone());
    }
    Some(format!("k:{}", Value::Object(key)))
}

/// The list types of `metadata`, as `ObjectMeta` declares them.
static META_SCHEMA: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
    json!({"properties": {
        "finalizers": {"x-kubernetes-list-type": "set"},
        "ownerReferences": {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["uid"]},
    }})
});

/// Metadata the server owns, and identity fields: never managed.
const UNMANAGED_META: [&str; 10] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The fields an object (or an apply configuration) sets, under `schema`.
pub fn fields_of(object: &Value, schema: Schema<'_>) -> FieldSet {
    let mut set = FieldSet::default();
    if let Value::Object(map) = object {
        for (key, value) in map {
            if key == "apiVersion" || key == "kind" {
                continue;
            }
            let child = if key == "metadata" {
                let mut meta = value.clone();
                if let Some(m) = meta.as_object_mut() {
                    for owned in UNMANAGED_META {
                        m.remove(owned);
                    }
                    if m.is_empty() {
                        continue;
                    }
                }
                value_fields(&meta, Some(&META_SCHEMA))
            } else {
                value_fields(value, child_schema(schema, key))
            };
            set.insert(format!("f:{key}"), child);
        }
    }
    set
}

fn value_fields(value: &Value, schema: Schema<'_>) -> FieldSet {
    match value {
        Value::Object(map) if !atomic_map(schema) => {
            let mut set = FieldSet::default();
            for (key, v) in map {
                set.insert(format!("f:{key}"), value_fields(v, child_schema(schema, key)));
            }
            set
        }
        Value::Array(items) => match list_type(schema) {
            ListType::Atomic => FieldSet::default(),
            ListType::Set => {
                let mut set = FieldSet::default();
                for item in items {
                    set.insert(format!("v:{item}"), FieldSet::default());
                }
                set
            }
            ListType::Map(keys) => {
                let mut set = FieldSet::default();
                let item_schema = items_schema(schema);
                for item in items {
                    if let Some(key) = item_key(item, &keys) {
                        let mut fields = value_fields(item, item_schema);
                        fields.insert(".".into(), FieldSet::default());
                        set.insert(key, fields);
                    }
                }
                set
            }
        },
        _ => FieldSet::default(),
    }
}

/// The value at a field path, if any.
pub fn value_at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut at = object;
    for element in path {
        at = step(at, element)?;
    }
    Some(at)
}

fn step<'a>(at: &'a Value, element: &str) -> Option<&'a Value> {
    if element == "." {
        return Some(at);
    }
    if let Some(field) = element.strip_prefix("f:") {
        return at.get(field);
    }
    let items = at.as_array()?;
    if let Some(key) = element.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(key).ok()?;
        return items
            .iter()
            .find(|item| key.iter().all(|(k, v)| item.get(k) == Some(v)));
    }
    if let Some(value) = element.strip_prefix("v:") {
        let value: Value = serde_json::from_str(value).ok()?;
        return items.iter().find(|item| **item == value);
    }
    None
}

/// Removes the field or list item at `path` (a `.` at the end removes the item holding it).
fn remove_at(object: &mut Value, path: &[String]) {
    let path: Vec<&String> = path.iter().filter(|e| *e != ".").collect();
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = object;
    for element in parents {
        let next = match (element.strip_prefix("f:"), at) {
            (Some(field), Value::Object(map)) => map.get_mut(field),
            (None, Value::Array(items)) => {
                let found = items
                    .iter()
                    .position(|item| step(&Value::Array(vec![item.clone()]), element).is_some());
                found.and_then(|i| items.get_mut(i))
            }
            _ => None,
        };
        let Some(next) = next else {
            return;
        };
        at = next;
    }
    match (last.strip_prefix("f:"), at) {
        (Some(field), Value::Object(map)) => {
            map.remove(field);
        }
        (None, Value::Array(items)) => {
            items.retain(|item| step(&Value::Array(vec![item.clone()]), last).is_none());
        }
        _ => {}
    }
}

/// Merges an apply configuration into the live object, `metadata` with its own list types.
fn merge_object(live: &mut Value, config: &Value, schema: Schema<'_>) {
    let (Value::Object(live), Value::Object(config)) = (live, config) else {
        return;
    };
    for (key, value) in config {
        let slot = live.entry(key.clone()).or_insert(Value::Null);
        let schema = if key == "metadata" {
            Some(&*META_SCHEMA)
        } else {
            child_schema(schema, key)
        };
        merge(slot, value, schema);
    }
}

/// Merges an apply configuration into the live object: maps key by key, `listType: map` items
/// by key, `set` items by value, everything else replaced.
fn merge(live: &mut Value, config: &Value, schema: Schema<'_>) {
    match (live, config) {
        (Value::Object(live), Value::Object(config)) if !atomic_map(schema) => {
            for (key, value) in config {
                let slot = live.entry(key.clone()).or_insert(Value::Null);
                merge(slot, value, child_schema(schema, key));
            }
        }
        (Value::Array(live), Value::Array(config)) => match list_type(schema) {
            ListType::Atomic => live.clone_from(config),
            ListType::Set => {
                for item in config {
                    if !live.contains(item) {
                        live.push(item.clone());
                    }
                }
            }
            ListType::Map(keys) => {
                for item in config {
                    let key = item_key(item, &keys);
                    let found = live
                        .iter_mut()
                        .find(|l| key.is_some() && item_key(l, &keys) == key);
                    match found {
                        Some(existing) => merge(existing, item, items_schema(schema)),
                        None => live.push(item.clone()),
                    }
                }
            }
        },
        (live, config) => *live = config.clone(),
    }
}

/// A field another manager set to a different value than an apply asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// That manager.
    pub manager: String,
    /// The field, as upstream prints it (`.spec.games`, `.spec.items[name="a"].size`).
    pub field: String,
}

/// Who applies, and how.
#[derive(Debug, Clone)]
pub struct Applier<'a> {
    /// The field manager.
    pub manager: &'a str,
    /// `--force-conflicts`: take conflicting fields over instead of failing.
    pub force: bool,
    /// The apiVersion applied in.
    pub api_version: &'a str,
    /// Now, RFC 3339.
    pub now: &'a str,
    /// `status` when applied through that subresource.
    pub subresource: &'a str,
}

/// Applies `config` to `live` (the stored object; none to create) under `schema`: the object to
/// store, with its managed fields.
///
/// # Errors
/// The conflicts, when not forced.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    schema: Schema<'_>,
    who: &Applier<'_>,
) -> Result<Value, Vec<Conflict>> {
    let mut managed = live.map(managed_of).unwrap_or_default();
    let me = Managed {
        manager: who.manager.to_owned(),
        operation: "Apply".into(),
        api_version: who.api_version.to_owned(),
        time: who.now.to_owned(),
        subresource: who.subresource.to_owned(),
        fields: fields_of(config, schema),
    };
    let mut result = live.cloned().unwrap_or_else(|| json!({}));
    // Conflicts: a field another manager set, to a value other than the one applied.
    let mut conflicts = Vec::new();
    for other in managed.iter().filter(|m| !m.same_owner(&me)) {
        for path in me.fields.leaves() {
            if other.fields.contains(&path) && value_at(&result, &path) != value_at(config, &path) {
                conflicts.push(Conflict {
                    manager: other.manager.clone(),
                    field: fieldset::describe(&path),
                });
            }
        }
    }
    if !conflicts.is_empty() && !who.force {
        return Err(conflicts);
    }
    let before = managed
        .iter()
        .find(|m| m.same_owner(&me))
        .map(|m| m.fields.clone())
        .unwrap_or_default();
    merge_object(&mut result, config, schema);
    // Forced: the conflicting fields become the applier's alone.
    if who.force {
        for other in managed.iter_mut().filter(|m| !m.same_owner(&me)) {
            for path in me.fields.leaves() {
                if other.fields.contains(&path)
                    && value_at(live.unwrap_or(&Value::Null), &path) != value_at(config, &path)
                {
                    other.fields.remove(&path);
                }
            }
        }
    }
    // What the applier stopped applying goes, unless someone else manages it.
    for path in before.leaves() {
        // A list item (`…/k:{…}/.`) stays while anyone manages anything in it.
        let probe = match path.split_last() {
            Some((last, item)) if last == "." => item,
            _ => &path[..],
        };
        let kept = me.fields.covers(probe)
            || managed
                .iter()
                .filter(|m| !m.same_owner(&me))
                .any(|m| m.fields.covers(probe));
        if !kept {
            remove_at(&mut result, &path);
        }
    }
    managed.retain(|m| !m.same_owner(&me));
    managed.push(me);
    set_managed(&mut result, &managed);
    Ok(result)
}

/// Records an update (not an apply) by `manager`: the fields whose values it changed (or
/// removed) become its own and no one else's.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    schema: Schema<'_>,
    manager: &str,
    now: &str,
    subresource: &str,
) {
    let mut entries = old.map(managed_of).unwrap_or_default();
    let after = fields_of(new, schema);
    let before = old.map(|o| fields_of(o, schema)).unwrap_or_default();
    let changed: Vec<Path> = after
        .leaves()
        .into_iter()
        .filter(|p| old.and_then(|o| value_at(o, p)) != value_at(new, p))
        .collect();
    let removed: Vec<Path> = before
        .leaves()
        .into_iter()
        .filter(|p| !after.contains(p))
        .collect();
    if changed.is_empty() && removed.is_empty() {
        // Nothing of its own: the managed fields stay as they were.
        set_managed(new, &entries);
        return;
    }
    for entry in &mut entries {
        for path in changed.iter().chain(&removed) {
            entry.fields.remove(path);
        }
    }
    let api_version = new
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let mine = Managed {
        manager: manager.to_owned(),
        operation: "Update".into(),
        api_version,
        time: now.to_owned(),
        subresource: subresource.to_owned(),
        fields: FieldSet::default(),
    };
    let mut fields = entries
        .iter()
        .position(|m| m.same_owner(&mine))
        .map(|i| entries.remove(i).fields)
        .unwrap_or_default();
    for path in &changed {
        fields.add(path);
    }
    entries.push(Managed { fields, ..mine });
    set_managed(new, &entries);
}
