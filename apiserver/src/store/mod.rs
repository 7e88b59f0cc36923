//! The object store behind the API server: write semantics decided by pure functions
//! ([`semantics`], [`names`]) and persisted in SQLite ([`Store`]).

pub mod backup;
mod cache;
mod dry_run;
pub mod names;
mod reach;
mod rows;
pub mod semantics;
pub mod snapshot;
mod sqlite;
mod types;
mod writer;

pub use sqlite::{DEFAULT_HISTORY, Store};
pub use types::{Deleted, EventType, ResourceKey, StoreError, WatchEvent};
