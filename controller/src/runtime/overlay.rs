//! Read-your-writes: objects this replica wrote, kept until its watch cache has caught up, so
//! the next pass does not act on a stale copy (create a task twice, count capacity twice).

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use kube::Resource;

/// Numeric value of a resourceVersion (the embedded API server's and etcd's are integers).
fn version<K: Resource>(obj: &K) -> u64 {
    obj.meta()
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// How long a write is laid over the cache at most: a watch normally catches up in
/// milliseconds.
const KEEP: Duration = Duration::from_secs(30);

/// Objects written by this replica, by `namespace/name`, with when.
#[derive(Debug)]
pub struct Overlay<K> {
    written: HashMap<String, (K, Instant)>,
    /// How long an object the cache does not have is kept: the time for a created object to
    /// reach the cache. Zero for objects this replica never creates: absent means deleted.
    absent: Duration,
}

impl<K> Overlay<K> {
    /// An overlay for objects this replica creates (kept `absent` while the cache lacks them).
    pub fn for_created(absent: Duration) -> Self {
        Self {
            written: HashMap::new(),
            absent,
        }
    }

    /// An overlay for objects this replica only updates: one the cache lacks was deleted.
    pub fn for_updated() -> Self {
        Self::for_created(Duration::ZERO)
    }
}

/// `namespace/name` of an object.
pub fn key<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

impl<K: Resource + Clone> Overlay<K> {
    /// Remembers an object as the API returned it after a write.
    pub fn wrote(&mut self, obj: K) {
        self.written.insert(key(&obj), (obj, Instant::now()));
    }

    /// Forgets everything (leadership changed hands).
    pub fn clear(&mut self) {
        self.written.clear();
    }

    /// Number of writes the cache has not caught up with.
    pub fn len(&self) -> usize {
        self.written.len()
    }

    /// Whether the cache has caught up with every write.
    pub fn is_empty(&self) -> bool {
        self.written.is_empty()
    }

    /// The cache's objects with this replica's newer writes laid over them; writes the cache
    /// has caught up with are dropped.
    ///
    /// `T` is the object or a shared pointer to it (`Arc<K>`: the cache's copy, not a clone).
    pub fn merge<T: Borrow<K> + From<K>>(&mut self, cached: Vec<T>) -> Vec<T> {
        self.written.retain(|_, (_, at)| at.elapsed() < KEEP);
        if self.written.is_empty() {
            return cached;
        }
        let newest = cached.iter().map(|o| version(o.borrow())).max().unwrap_or(0);
        // A cache holds tens of thousands of objects and this replica a few hundred writes:
        // only an object whose name was written is looked up by its key.
        let names: HashSet<String> = self
            .written
            .values()
            .filter_map(|(o, _)| o.meta().name.clone())
            .collect();
        let mut seen: HashSet<String> = HashSet::new();
        let mut out = Vec::with_capacity(cached.len() + self.written.len());
        for obj in cached {
            if !names.contains(obj.borrow().meta().name.as_deref().unwrap_or_default()) {
                out.push(obj);
                continue;
            }
            let k = key(obj.borrow());
            match self.written.get(&k) {
                Some((mine, _)) if version(mine) > version(obj.borrow()) => out.push(T::from(mine.clone())),
                Some(_) => {
                    self.written.remove(&k);
                    out.push(obj);
                }
                None => out.push(obj),
            }
            seen.insert(k);
        }
        let absent = self.absent;
        // resourceVersions count every write to the store: a cache holding a version as new
        // as a write of mine has seen that write's event, so if the object is not there it was
        // deleted since (a task garbage-collected with its job), not created too recently.
        self.written
            .retain(|k, (mine, at)| seen.contains(k) || (at.elapsed() < absent && version(mine) > newest));
        out.extend(
            self.written
                .iter()
                .filter(|(k, _)| !seen.contains(*k))
                .map(|(_, (v, _))| T::from(v.clone())),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    use super::*;

    fn cm(name: &str, rv: u64) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                resource_version: Some(rv.to_string()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    fn versions(objs: &[ConfigMap]) -> Vec<(String, String)> {
        let mut v: Vec<_> = objs
            .iter()
            .map(|o| {
                (
                    o.metadata.name.clone().unwrap(),
                    o.metadata.resource_version.clone().unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn an_updated_object_the_cache_lost_was_deleted() {
        let mut overlay = Overlay::for_updated();
        overlay.wrote(cm("gone", 5));
        assert!(
            overlay
                .merge(vec![cm("other", 1)])
                .iter()
                .all(|o| o.metadata.name.as_deref() != Some("gone"))
        );
        assert!(overlay.is_empty());
    }

    #[test]
    fn a_created_object_the_cache_has_not_seen_is_kept_until_it_has_seen_later_writes() {
        let mut overlay = Overlay::for_created(Duration::from_secs(5));
        overlay.wrote(cm("task", 7));
        // The cache is behind (nothing newer than 6): the task is just not there yet.
        let merged = overlay.merge(vec![cm("other", 6)]);
        assert!(merged.iter().any(|o| o.metadata.name.as_deref() == Some("task")));
        // The cache holds version 9: it saw the task's write; absent, the task was deleted
        // (garbage-collected with its job) and must not come back as a live claim.
        let merged = overlay.merge(vec![cm("other", 9)]);
        assert!(merged.iter().all(|o| o.metadata.name.as_deref() != Some("task")));
        assert!(overlay.is_empty());
    }

    #[test]
    fn newer_writes_win_until_the_cache_catches_up() {
        let mut overlay = Overlay::for_created(Duration::from_secs(5));
        overlay.wrote(cm("a", 5));
        overlay.wrote(cm("new", 6));
        let merged = overlay.merge(vec![cm("a", 4), cm("b", 2)]);
        assert_eq!(
            versions(&merged),
            [
                ("a".into(), "5".into()),
                ("b".into(), "2".into()),
                ("new".into(), "6".into())
            ]
        );
        assert_eq!(overlay.len(), 2);
        let merged = overlay.merge(vec![cm("a", 7), cm("b", 2), cm("new", 6)]);
        assert_eq!(
            versions(&merged),
            [
                ("a".into(), "7".into()),
                ("b".into(), "2".into()),
                ("new".into(), "6".into())
            ]
        );
        assert!(overlay.is_empty(), "caught up");
    }
}
