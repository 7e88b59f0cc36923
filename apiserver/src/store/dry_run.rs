//! Dry runs (`dryRun=All`): what a create, update or delete would store, decided by the same
//! pure write semantics on the committed objects, with nothing written.

use std::sync::Arc;

use serde_json::Value;

use super::cache;
use super::rows::object_name;
use super::semantics::{
    DeleteOutcome, Preconditions, Subresource, UpdateOutcome, WriteContext, prepare_create, prepare_delete,
    prepare_update,
};
use super::sqlite::Store;
use super::types::{Deleted, ResourceKey, StoreError};

impl Store {
    /// What [`Store::create`] would store, without storing it (`dryRun=All`): the object as
    /// prepared, with no resourceVersion, as upstream answers a dry-run create.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] or [`StoreError::Write`], as the write would fail.
    pub async fn create_dry_run(
        &self,
        resource: &ResourceKey,
        namespace: &str,
        object: Value,
        ctx: &WriteContext<'_>,
    ) -> Result<Value, StoreError> {
        let object = prepare_create(object, ctx)?;
        let name = object_name(&object)?;
        let objects = self.objects.read().await;
        if objects.contains_key(&cache::key(resource, namespace, &name)) {
            return Err(StoreError::AlreadyExists {
                resource: resource.clone(),
                name,
            });
        }
        Ok(object)
    }

    /// What [`Store::update`] would store, without storing it: the stored object's
    /// resourceVersion stays on it.
    ///
    /// # Errors
    /// As [`Store::update`] would fail.
    pub async fn update_dry_run(
        &self,
        resource: &ResourceKey,
        namespace: &str,
        name: &str,
        object: Value,
        sub: Subresource,
        ctx: &WriteContext<'_>,
    ) -> Result<Value, StoreError> {
        let old = self.stored(resource, namespace, name).await?;
        Ok(match prepare_update(&old, object, sub, ctx)? {
            UpdateOutcome::Unchanged => (*old).clone(),
            UpdateOutcome::Write(new) | UpdateOutcome::Remove(new) => new,
        })
    }

    /// What [`Store::delete`] would do, without doing it.
    ///
    /// # Errors
    /// As [`Store::delete`] would fail.
    pub async fn delete_dry_run(
        &self,
        resource: &ResourceKey,
        namespace: &str,
        name: &str,
        preconditions: &Preconditions,
        ctx: &WriteContext<'_>,
    ) -> Result<Deleted, StoreError> {
        let old = self.stored(resource, namespace, name).await?;
        Ok(match prepare_delete(&old, preconditions, ctx)? {
            DeleteOutcome::Remove => Deleted {
                object: (*old).clone(),
                removed: true,
            },
            DeleteOutcome::AlreadyDeleting => Deleted {
                object: (*old).clone(),
                removed: false,
            },
            DeleteOutcome::MarkDeleting(marked) => Deleted {
                object: marked,
                removed: false,
            },
        })
    }

    /// The committed object, or `NotFound`.
    async fn stored(
        &self,
        resource: &ResourceKey,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<Value>, StoreError> {
        self.get_shared(resource, namespace, name)
            .await
            .ok_or_else(|| StoreError::NotFound {
                resource: resource.clone(),
                name: name.to_owned(),
            })
    }
}
