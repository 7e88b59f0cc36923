//! Strategic merge patch for the built-in kinds, as `k8s.io/apimachinery/.../strategicpatch`
//! applies it: maps merge (`null` deletes), lists merge by their field's merge key (containers
//! by `name`, container ports by `containerPort`…) or as sets of primitives (`finalizers`), every
//! other list is replaced; the directives `$patch` (`replace`, `delete`, `merge`),
//! `$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>` and `$retainKeys` are honoured
//! and never stored. Custom resources have no patch strategies: the API server refuses this
//! patch type for them (415), as upstream.
//!
//! Pure: the patch strategies of the served kinds are a table here ([`list_strategy`]).

use serde_json::{Map, Value};

/// How a list field is patched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// Replaced whole (no patch strategy).
    Atomic,
    /// A set of primitives: the patch's items are added (`patchStrategy: merge` on `[]string`).
    Primitives,
    /// Objects merged by this key.
    MergeKey(&'static str),
}

/// The patch strategy of the list at `path` (field names from the object's root, list indices
/// left out) in an object of `kind`, as the upstream API types declare them
/// (`patchStrategy`/`patchMergeKey` tags) for the kinds served here.
pub fn list_strategy(kind: &str, path: &[&str]) -> ListStrategy {
    use ListStrategy::{Atomic, MergeKey, Primitives};
    let Some((&last, parents)) = path.split_last() else {
        return Atomic;
    };
    let parent = parents.last().copied().unwrap_or_default();
    match (parent, last) {
        ("metadata", "finalizers") => Primitives,
        ("metadata", "ownerReferences") => MergeKey("uid"),
        (_, "conditions") if parent == "status" => MergeKey("type"),
        // PodSpec and Container (Deployments and DaemonSets carry a pod template).
        ("containers" | "initContainers" | "ephemeralContainers", "ports") => MergeKey("containerPort"),
        (_, "containers" | "initContainers" | "ephemeralContainers" | "env")
        | ("spec", "volumes" | "imagePullSecrets" | "schedulingGates" | "resourceClaims")
        | ("resources", "claims") => MergeKey("name"),
        (_, "volumeMounts") => MergeKey("mountPath"),
        (_, "volumeDevices") => MergeKey("devicePath"),
        ("spec", "hostAliases") => MergeKey("ip"),
        ("spec", "topologySpreadConstraints") => MergeKey("topologyKey"),
        // Service ports merge by port; ServiceAccount secrets by name.
        ("spec", "ports") if kind == "Service" => MergeKey("port"),
        ("", "secrets") if kind == "ServiceAccount" => MergeKey("name"),
        _ => Atomic,
    }
}

/// Whether the map at `path` has the `retainKeys` strategy (a one-of whose old member goes when
/// the patch names another): a pod's volumes and a Deployment's or DaemonSet's update strategy.
fn retains_keys(kind: &str, path: &[&str]) -> bool {
    matches!(
        (kind, path),
        ("Deployment", ["spec", "strategy"]) | ("DaemonSet", ["spec", "updateStrategy"])
    ) || path.last() == Some(&"volumes")
}

const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVES: &str = "$deleteFromPrimitiveList/";

/// Applies `patch` to `target` (an object of `kind`).
///
/// # Errors
/// A message for a malformed patch: a directive with an unknown value, a list item without its
/// merge key, a `$retainKeys` that is not a list of strings.
pub fn apply(kind: &str, target: &mut Value, patch: &Value) -> Result<(), String> {
    let Value::Object(patch) = patch else {
        return Err("a strategic merge patch must be an object".into());
    };
    let mut at = Vec::new();
    merge_map(kind, &mut at, target, patch)
}

fn merge_map(
    kind: &str,
    at: &mut Vec<String>,
    target: &mut Value,
    patch: &Map<String, Value>,
) -> Result<(), String> {
    let here = at.join(".");
    match patch.get("$patch").map(|d| d.as_str()) {
        None | Some(Some("merge")) => {}
        Some(Some("replace")) => {
            *target = Value::Object(without_directives(patch));
            return Ok(());
        }
        Some(Some("delete")) => {
            *target = Value::Null;
            return Ok(());
        }
        Some(other) => return Err(format!("{here}: unknown $patch directive {other:?}")),
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else {
        return Ok(());
    };
    let retain = match patch.get("$retainKeys") {
        None => None,
        Some(Value::Array(keys)) => Some(
            keys.iter()
                .map(|k| {
                    k.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("{here}: $retainKeys must list strings"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err(format!("{here}: $retainKeys must be a list")),
    };
    let names: Vec<&str> = at.iter().map(String::as_str).collect();
    if retain.is_some() && !retains_keys(kind, &names) {
        return Err(format!("{here}: $retainKeys is not allowed here"));
    }
    for (key, value) in patch {
        if key.starts_with('$') {
            if key == "$patch"
                || key == "$retainKeys"
                || key.starts_with(SET_ORDER)
                || key.starts_with(DELETE_PRIMITIVES)
            {
                continue;
            }
            return Err(format!("{here}: unknown directive {key}"));
        }
        at.push(key.clone());
        let result = merge_field(kind, at, map, key, value);
        at.pop();
        result?;
    }
    // Directives on lists of this map, after their lists were merged.
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_PRIMITIVES) {
            let Value::Array(gone) = value else {
                return Err(format!("{here}: {key} must be a list"));
            };
            if let Some(Value::Array(items)) = map.get_mut(field) {
                items.retain(|item| !gone.contains(item));
            }
        }
        if let Some(field) = key.strip_prefix(SET_ORDER) {
            let Value::Array(order) = value else {
                return Err(format!("{here}: {key} must be a list"));
            };
            at.push(field.to_owned());
            let names: Vec<&str> = at.iter().map(String::as_str).collect();
            let strategy = list_strategy(kind, &names);
            at.pop();
            if let Some(Value::Array(items)) = map.get_mut(field) {
                reorder(items, order, strategy);
            }
        }
    }
    if let Some(retain) = retain {
        map.retain(|k, _| retain.contains(k));
    }
    Ok(())
}

fn merge_field(
    kind: &str,
    at: &mut Vec<String>,
    map: &mut Map<String, Value>,
    key: &str,
    value: &Value,
) -> Result<(), String> {
    match value {
        Value::Null => {
            map.remove(key);
        }
        Value::Object(patch) => {
            let slot = map.entry(key.to_owned()).or_insert(Value::Null);
            merge_map(kind, at, slot, patch)?;
            if slot.is_null() {
                map.remove(key);
            }
        }
        Value::Array(items) => {
            let names: Vec<&str> = at.iter().map(String::as_str).collect();
            let strategy = list_strategy(kind, &names);
            let slot = map.entry(key.to_owned()).or_insert(Value::Array(Vec::new()));
            merge_list(kind, at, slot, items, strategy)?;
        }
        other => {
            map.insert(key.to_owned(), other.clone());
        }
    }
    Ok(())
}

fn merge_list(
    kind: &str,
    at: &mut Vec<String>,
    target: &mut Value,
    items: &[Value],
    strategy: ListStrategy,
) -> Result<(), String> {
    let here = at.join(".");
    let replace = items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"));
    let clean: Vec<Value> = items
        .iter()
        .filter(|i| i.get("$patch").and_then(Value::as_str) != Some("replace"))
        .cloned()
        .collect();
    if replace || strategy == ListStrategy::Atomic || !target.is_array() {
        *target = Value::Array(
            clean
                .into_iter()
                .map(|i| match i {
                    Value::Object(m) => Value::Object(without_directives(&m)),
                    other => other,
                })
                .collect(),
        );
        return Ok(());
    }
    let Value::Array(existing) = target else {
        return Ok(());
    };
    match strategy {
        ListStrategy::Atomic => {}
        ListStrategy::Primitives => {
            for item in clean {
                if !existing.contains(&item) {
                    existing.push(item);
                }
            }
        }
        ListStrategy::MergeKey(merge_key) => {
            for item in &clean {
                let Value::Object(patch) = item else {
                    return Err(format!("{here}: items must be objects (merged by {merge_key})"));
                };
                let Some(id) = patch.get(merge_key) else {
                    return Err(format!(
                        "{here}: an item has no {merge_key}, the key this list merges by"
                    ));
                };
                let found = existing.iter().position(|e| e.get(merge_key) == Some(id));
                if patch.get("$patch").and_then(Value::as_str) == Some("delete") {
                    if let Some(i) = found {
                        existing.remove(i);
                    }
                    continue;
                }
                if let Some(i) = found {
                    merge_map(kind, at, &mut existing[i], patch)?;
                } else {
                    let mut fresh = Value::Object(Map::new());
                    merge_map(kind, at, &mut fresh, patch)?;
                    existing.push(fresh);
                }
            }
        }
    }
    Ok(())
}

/// Orders `items` as `order` lists them (by merge key, or the primitives themselves); items the
/// order does not name keep their relative order after those it does.
fn reorder(items: &mut [Value], order: &[Value], strategy: ListStrategy) {
    let id = |v: &Value| -> Option<Value> {
        match strategy {
            ListStrategy::MergeKey(key) => v.get(key).cloned(),
            _ => Some(v.clone()),
        }
    };
    let wanted: Vec<Value> = order.iter().filter_map(id).collect();
    let rank = |v: &Value| {
        id(v)
            .and_then(|i| wanted.iter().position(|w| *w == i))
            .unwrap_or(usize::MAX)
    };
    items.sort_by_key(rank);
}

fn without_directives(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests;
