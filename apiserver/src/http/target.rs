//! What a request on a collection or an object addresses ([`Target`]), what a handler answers
//! ([`Reply`]), and what every handler shares: reading an object in the request's version,
//! selectors, and the store's update or its dry run (the whole write path is `write.rs`).

use std::sync::Arc;

use hyper::StatusCode;
use serde_json::Value;

use super::convert::from_storage;
use super::query::Query;
use super::selectors::{Selector, parse_fields, parse_labels};
use super::state::{ApiServer, now};
use super::status::ApiError;
use crate::registry::ResourceType;
use crate::store::ResourceKey;
use crate::store::semantics::Subresource;

/// The request, resolved against the registry.
pub(crate) struct Target {
    pub(crate) t: Arc<ResourceType>,
    pub(crate) key: ResourceKey,
    pub(crate) namespace: String,
    pub(crate) name: Option<String>,
    pub(crate) sub: Subresource,
    /// `dryRun=All`: everything a write does but store it.
    pub(crate) dry_run: bool,
    /// The request is on the object's `/scale` subresource.
    pub(crate) scale: bool,
    /// The field manager of a write: `fieldManager`, else the User-Agent's product (`kubectl`).
    pub(crate) manager: String,
    /// Whether the request named its field manager (`fieldManager`).
    pub(crate) manager_named: bool,
}

impl Target {
    /// The kind's schema, where its lists declare how they merge (custom resources).
    pub(crate) fn schema(&self) -> Option<&Value> {
        self.t.validator.as_ref().map(|v| v.schema())
    }

    /// Updates `name` in the store through `sub`, or with `dry_run` only decides what the
    /// update would store.
    pub(crate) async fn store_update(
        &self,
        server: &ApiServer,
        name: &str,
        obj: Value,
        sub: Subresource,
        ctx: &crate::store::semantics::WriteContext<'_>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let (key, ns) = (&self.key, &self.namespace);
        let written = if dry_run {
            server.store.update_dry_run(key, ns, name, obj, sub, ctx).await
        } else {
            server.store.update(key, ns, name, obj, sub, ctx).await
        };
        written.map_err(|e| ApiError::from_store(e, key, name))
    }

    /// The subresource a write goes through, as managed fields name it.
    pub(crate) fn subresource_name(&self) -> &'static str {
        match (self.sub, self.scale) {
            (_, true) => "scale",
            (Subresource::Status, _) => "status",
            (Subresource::Main, false) => "",
        }
    }

    /// Records a write that is not an apply: the fields it changes become its manager's. A
    /// write that names no `fieldManager` records nothing on an object without managed fields
    /// (upstream would name it after the User-Agent): the system's own high-rate writes (task
    /// creation and status) then carry no managed fields, which would double every object's
    /// size (docs/benchmarks.md).
    pub(crate) fn record_update(&self, old: Option<&Value>, new: &mut Value) {
        let managed = old.is_some_and(|o| o.pointer("/metadata/managedFields").is_some());
        if !self.manager_named && !managed {
            return;
        }
        crate::ssa::record_update(
            old,
            new,
            self.schema(),
            &self.manager,
            &now(),
            self.subresource_name(),
        );
    }
}

/// A handler's answer: status, body, and `Warning` headers.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
    pub(crate) warnings: Vec<String>,
}

impl Reply {
    pub(crate) fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
            warnings: Vec::new(),
        }
    }
}

/// An object as the request's version shows it (stored objects may be in another form:
/// `convert`).
pub(crate) async fn stored(
    server: &ApiServer,
    target: &Target,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    server
        .store
        .get(&target.key, &target.namespace, name)
        .await
        .map(|found| found.map(|obj| from_storage(&target.t, obj)))
        .map_err(|e| ApiError::from_store(e, &target.key, name))
}

/// The selectors of a list or watch.
pub(crate) fn selectors(t: &ResourceType, query: &Query) -> Result<(Selector, Selector), ApiError> {
    let labels =
        parse_labels(query.get("labelSelector").unwrap_or_default()).map_err(ApiError::bad_request)?;
    let mut allowed = vec!["metadata.name", "metadata.namespace"];
    allowed.extend(t.selectable_fields.iter().map(String::as_str));
    let fields = parse_fields(query.get("fieldSelector").unwrap_or_default(), &allowed)
        .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}
