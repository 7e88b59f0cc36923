//! What the store takes and gives: resource keys, watch events, results and errors.

use std::sync::Arc;

use serde_json::Value;

use super::semantics::WriteError;

/// A kind of object as the API addresses it: group and plural resource name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    /// API group; empty for the core group (`v1`).
    pub group: String,
    /// Plural resource name, for example `selfplayjobs`.
    pub resource: String,
}

impl ResourceKey {
    /// The key of `resource` in `group`.
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.to_owned(),
            resource: resource.to_owned(),
        }
    }

    pub(crate) fn column(&self) -> String {
        format!("{}/{}", self.group, self.resource)
    }
}

impl std::fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            f.write_str(&self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// The kind of change a watch event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The object was created.
    Added,
    /// The object changed.
    Modified,
    /// The object was deleted; the event carries its last state.
    Deleted,
}

impl EventType {
    /// The name watch streams use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "ADDED" => Some(Self::Added),
            "MODIFIED" => Some(Self::Modified),
            "DELETED" => Some(Self::Deleted),
            _ => None,
        }
    }
}

/// One change, at one revision.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    /// The revision of the write (the object's resourceVersion).
    pub revision: u64,
    /// What kind of object.
    pub resource: ResourceKey,
    /// Its namespace; empty for cluster-scoped objects.
    pub namespace: String,
    /// Added, modified or deleted.
    pub event_type: EventType,
    /// The object after the change (its last state, for a delete). Shared: every watcher
    /// receives the same event.
    pub object: Arc<Value>,
    /// `object` as JSON, encoded once for every watcher.
    pub body: Arc<str>,
    /// The object before the change; none for an addition.
    pub previous: Option<Arc<Value>>,
}

/// A failed store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such object: HTTP 404.
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        /// What kind.
        resource: ResourceKey,
        /// Its name.
        name: String,
    },
    /// An object of that name exists: HTTP 409.
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        /// What kind.
        resource: ResourceKey,
        /// Its name.
        name: String,
    },
    /// The write semantics refused the write.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The requested revision is older than the kept history: HTTP 410.
    #[error("too old resource version: {requested} ({oldest})")]
    Expired {
        /// The revision asked for.
        requested: u64,
        /// The oldest revision that can still be resumed from.
        oldest: u64,
    },
    /// The requested revision is newer than the store's: HTTP 504, as upstream answers a
    /// resourceVersion it has not reached.
    #[error("Too large resource version: {requested}, current: {current}")]
    TooLarge {
        /// The revision asked for.
        requested: u64,
        /// The store's revision.
        current: u64,
    },
    /// The database failed.
    #[error("failed to {action}")]
    Database {
        /// What was being done.
        action: &'static str,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
    /// The write could not be attempted or was rolled back with others: nothing of it was
    /// stored. HTTP 500.
    #[error("failed to write: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
    /// A stored or given body is not valid JSON.
    #[error("failed to {action}")]
    Json {
        /// What was being done.
        action: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

impl StoreError {
    /// A stable, bounded label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::AlreadyExists { .. } => "already_exists",
            Self::Write(WriteError::Conflict(_)) => "conflict",
            Self::Write(WriteError::BadRequest(_)) => "bad_request",
            Self::Write(WriteError::Forbidden(_)) => "forbidden",
            Self::Expired { .. } => "expired",
            Self::TooLarge { .. } => "too_large",
            Self::Database { .. } | Self::Unavailable { .. } => "database",
            Self::Json { .. } => "json",
        }
    }
}

/// The result of a delete.
#[derive(Debug, Clone, PartialEq)]
pub struct Deleted {
    /// The object as deleted (or as marked for deletion).
    pub object: Value,
    /// Whether it is gone; false when finalizers keep it, marked with `deletionTimestamp`.
    pub removed: bool,
}
