//! The object store behind the API server: write semantics decided by pure functions
//! ([`semantics`], [`names`]) and persisted in SQLite ([`Store`]).

pub mod names;
pub mod semantics;
mod sqlite;

pub use sqlite::{DEFAULT_HISTORY, Deleted, EventType, ResourceKey, Store, StoreError, WatchEvent};
