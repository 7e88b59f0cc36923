//! Sets of field paths in the `FieldsV1` form: a tree whose keys are path elements (`f:name`
//! for a field, `k:{"name":"a"}` for a `listType: map` item, `v:"x"` for a `set` item, `.` for
//! an item itself); an empty node is a leaf, a field set whole.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A field path: its elements from the root.
pub type Path = Vec<String>;

/// A set of field paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(BTreeMap<String, FieldSet>);

impl FieldSet {
    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds a child node.
    pub(super) fn insert(&mut self, element: String, child: Self) {
        self.0.insert(element, child);
    }

    /// Adds a path (as a leaf).
    pub fn add(&mut self, path: &[String]) {
        let mut at = self;
        for element in path {
            at = at.0.entry(element.clone()).or_default();
        }
    }

    /// Every leaf path.
    pub fn leaves(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Path, out: &mut Vec<Path>) {
        for (element, child) in &self.0 {
            prefix.push(element.clone());
            if child.is_empty() {
                out.push(prefix.clone());
            } else {
                child.collect(prefix, out);
            }
            prefix.pop();
        }
    }

    fn node(&self, path: &[String]) -> Option<&Self> {
        let mut at = self;
        for element in path {
            at = at.0.get(element)?;
        }
        Some(at)
    }

    /// Whether `path` is a leaf of the set.
    pub fn contains(&self, path: &[String]) -> bool {
        !path.is_empty() && self.node(path).is_some_and(Self::is_empty)
    }

    /// Whether the set manages `path` or anything under it. Membership is by path, as upstream
    /// decides it: owning an empty list (`f:ports`) is not owning its former items.
    pub fn covers(&self, path: &[String]) -> bool {
        self.node(path).is_some()
    }

    /// Removes a leaf path, and the nodes it leaves empty.
    pub fn remove(&mut self, path: &[String]) {
        fn go(set: &mut FieldSet, path: &[String]) -> bool {
            let Some((first, rest)) = path.split_first() else {
                return false;
            };
            if rest.is_empty() {
                if set.0.get(first).is_some_and(FieldSet::is_empty) {
                    set.0.remove(first);
                }
            } else if let Some(child) = set.0.get_mut(first)
                && go(child, rest)
            {
                set.0.remove(first);
            }
            set.0.is_empty()
        }
        go(self, path);
    }

    /// As `FieldsV1` JSON.
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect::<Map<_, _>>(),
        )
    }

    /// From `FieldsV1` JSON (anything else reads as empty).
    pub fn from_json(value: &Value) -> Self {
        Self(
            value
                .as_object()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), Self::from_json(v))).collect())
                .unwrap_or_default(),
        )
    }
}

/// A path as upstream prints it in a conflict: `.spec.games`, `.spec.ports[port=80].name`,
/// `.spec.tags[="a"]`.
pub fn describe(path: &[String]) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(field) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(field);
        } else if let Some(key) = element.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push('[');
            out.push_str(&parts.join(","));
            out.push(']');
        } else if let Some(value) = element.strip_prefix("v:") {
            out.push_str("[=");
            out.push_str(value);
            out.push(']');
        }
    }
    out
}
