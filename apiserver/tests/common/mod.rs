//! Helpers shared by the store tests: a write context, a kind, an object, a temporary database.

use std::path::PathBuf;

use ringrift_apiserver::store::ResourceKey;
use ringrift_apiserver::store::semantics::WriteContext;
use serde_json::{Value, json};

pub const CTX: WriteContext<'static> = WriteContext {
    now: "2026-11-24T10:00:00Z",
    uid: "uid-1",
    status_subresource: true,
    generation: true,
};

pub fn jobs() -> ResourceKey {
    ResourceKey::new("ringrift.ai", "selfplayjobs")
}

pub fn job(name: &str, games: u64) -> Value {
    json!({"apiVersion": "ringrift.ai/v1alpha1", "kind": "SelfplayJob",
           "metadata": {"name": name, "namespace": "default"}, "spec": {"games": games}})
}

/// A database file in a fresh directory, removed on drop.
pub struct TempDb(PathBuf);

impl TempDb {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("ringrift-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    pub fn path(&self) -> PathBuf {
        self.0.join("state.db")
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}
