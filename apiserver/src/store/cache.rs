//! The objects as committed, in memory: `get` and the writer's reads of the object a write is
//! about, without a SQLite query or JSON parsing (the Kubernetes API server serves reads from
//! its watch cache the same way). SQLite stays the truth: the cache is filled from it on open
//! and changed by the writer only together with a commit, under the cache's write lock, so a
//! read never sees a write before it is committed nor misses one that was acknowledged.
//!
//! Beside the objects it keeps who owns whom — for each owner uid, the objects that name it in
//! `metadata.ownerReferences` — so the garbage collector finds a removed owner's dependents
//! without reading every object of every kind (upstream's collector keeps the same graph from
//! its informers).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;
use sqlx::{Row, SqlitePool};
use tokio::sync::RwLock;

use super::rows::{db, parse};
use super::types::{ResourceKey, StoreError};

/// One object as stored: decoded, and its JSON.
#[derive(Debug)]
pub(super) struct Stored {
    pub(super) object: Arc<Value>,
    pub(super) body: Arc<str>,
}

/// Every stored object by [`key`], and the dependents of each owner.
#[derive(Debug, Default)]
pub(super) struct Cache {
    objects: HashMap<String, Arc<Stored>>,
    /// Owner uid → the keys of the objects whose owner references name it.
    dependents: HashMap<String, HashSet<String>>,
}

/// The cache, shared by the store's readers and its writer.
pub(super) type Objects = Arc<RwLock<Cache>>;

/// The cache key of an object.
pub(super) fn key(resource: &ResourceKey, namespace: &str, name: &str) -> String {
    // Names and namespaces are DNS labels or subdomains: no newline in them.
    format!("{}/{}\n{namespace}\n{name}", resource.group, resource.resource)
}

/// The kind a [`key`] was made with.
fn kind_of(key: &str) -> Option<ResourceKey> {
    let (column, _) = key.split_once('\n')?;
    let (group, resource) = column.split_once('/')?;
    Some(ResourceKey::new(group, resource))
}

/// The owner uids an object's `metadata.ownerReferences` name.
fn owners(object: &Value) -> impl Iterator<Item = &str> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("uid").and_then(Value::as_str))
}

impl Cache {
    /// The object stored under `key`.
    pub(super) fn get(&self, key: &str) -> Option<&Arc<Stored>> {
        self.objects.get(key)
    }

    /// Whether an object is stored under `key`.
    pub(super) fn contains_key(&self, key: &str) -> bool {
        self.objects.contains_key(key)
    }

    /// Stores (or replaces) the object under `key`.
    pub(super) fn insert(&mut self, key: String, stored: Arc<Stored>) {
        let new: HashSet<&str> = owners(&stored.object).collect();
        if let Some(old) = self.objects.get(&key) {
            let gone: Vec<String> = owners(&old.object)
                .filter(|uid| !new.contains(uid))
                .map(str::to_owned)
                .collect();
            for uid in gone {
                self.unlink(&uid, &key);
            }
        }
        for uid in new {
            self.dependents
                .entry(uid.to_owned())
                .or_default()
                .insert(key.clone());
        }
        self.objects.insert(key, stored);
    }

    /// Removes the object under `key`, if any.
    pub(super) fn remove(&mut self, key: &str) {
        if let Some(old) = self.objects.remove(key) {
            for uid in owners(&old.object) {
                self.unlink(uid, key);
            }
        }
    }

    fn unlink(&mut self, uid: &str, key: &str) {
        if let Some(keys) = self.dependents.get_mut(uid) {
            keys.remove(key);
            if keys.is_empty() {
                self.dependents.remove(uid);
            }
        }
    }

    /// The objects whose owner references name `owner_uid`, each with its kind, sorted by
    /// kind, namespace and name.
    pub(super) fn dependents_of(&self, owner_uid: &str) -> Vec<(ResourceKey, Arc<Value>)> {
        let Some(keys) = self.dependents.get(owner_uid) else {
            return Vec::new();
        };
        let mut keys: Vec<&String> = keys.iter().collect();
        keys.sort();
        keys.into_iter()
            .filter_map(|k| Some((kind_of(k)?, Arc::clone(&self.objects.get(k)?.object))))
            .collect()
    }
}

/// Reads every stored object.
///
/// # Errors
/// [`StoreError::Database`] or [`StoreError::Json`].
pub(super) async fn load_all(pool: &SqlitePool) -> Result<Cache, StoreError> {
    let rows = sqlx::query("SELECT resource, namespace, name, body FROM objects")
        .fetch_all(pool)
        .await
        .map_err(db("read the objects"))?;
    let mut cache = Cache::default();
    for row in &rows {
        let body: String = row.get(3);
        let key = format!(
            "{}\n{}\n{}",
            row.get::<String, _>(0),
            row.get::<String, _>(1),
            row.get::<String, _>(2)
        );
        let stored = Stored {
            object: Arc::new(parse(&body)?),
            body: body.into(),
        };
        cache.insert(key, Arc::new(stored));
    }
    Ok(cache)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stored(owners: &[&str]) -> Arc<Stored> {
        let refs: Vec<Value> = owners.iter().map(|u| json!({"uid": u})).collect();
        let object = json!({"metadata": {"ownerReferences": refs}});
        Arc::new(Stored {
            body: object.to_string().into(),
            object: Arc::new(object),
        })
    }

    fn names(found: &[(ResourceKey, Arc<Value>)]) -> Vec<String> {
        found.iter().map(|(k, _)| k.to_string()).collect()
    }

    #[test]
    fn a_key_gives_back_its_kind() {
        let tasks = ResourceKey::new("ringrift.ai", "tasks");
        assert_eq!(kind_of(&key(&tasks, "default", "a-b.c")), Some(tasks));
        let maps = ResourceKey::new("", "configmaps");
        assert_eq!(kind_of(&key(&maps, "", "x")), Some(maps));
    }

    #[test]
    fn dependents_follow_every_write_of_their_owner_references() {
        let tasks = ResourceKey::new("ringrift.ai", "tasks");
        let maps = ResourceKey::new("", "configmaps");
        let mut cache = Cache::default();
        cache.insert(key(&tasks, "ns", "t1"), stored(&["job"]));
        cache.insert(key(&maps, "ns", "m1"), stored(&["job", "other"]));
        cache.insert(key(&tasks, "ns", "t2"), stored(&[]));
        assert_eq!(
            names(&cache.dependents_of("job")),
            ["configmaps", "tasks.ringrift.ai"]
        );
        assert_eq!(cache.dependents_of("other").len(), 1);
        assert!(cache.dependents_of("nobody").is_empty());

        // An owner dropped from the references, another added.
        cache.insert(key(&tasks, "ns", "t1"), stored(&["other"]));
        assert_eq!(names(&cache.dependents_of("job")), ["configmaps"]);
        assert_eq!(cache.dependents_of("other").len(), 2);
        // A replaced object with the same owners is listed once.
        cache.insert(key(&maps, "ns", "m1"), stored(&["job", "other"]));
        assert_eq!(cache.dependents_of("other").len(), 2);

        // Removal unlinks; an owner without dependents leaves no entry behind.
        cache.remove(&key(&maps, "ns", "m1"));
        assert!(cache.dependents_of("job").is_empty());
        assert!(!cache.dependents.contains_key("job"));
        cache.remove(&key(&tasks, "ns", "t1"));
        assert!(cache.dependents.is_empty());
        assert!(cache.contains_key(&key(&tasks, "ns", "t2")));
    }
}
