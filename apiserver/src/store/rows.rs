//! Row helpers of the SQLite store: decoding bodies, names, and the revision.

use serde_json::Value;
use sqlx::{Row, Sqlite};

use super::semantics::WriteError;
use super::types::StoreError;

/// Maps a database error, saying what was being done.
pub(super) fn db(action: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Database { action, source }
}

pub(super) fn parse(body: &str) -> Result<Value, StoreError> {
    serde_json::from_str(body).map_err(|source| StoreError::Json {
        action: "decode a stored object",
        source,
    })
}

pub(super) fn object_name(object: &Value) -> Result<String, StoreError> {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| WriteError::BadRequest("metadata.name is required".into()).into())
}

pub(super) async fn current_revision<'e>(
    executor: impl sqlx::Executor<'e, Database = Sqlite>,
) -> Result<u64, StoreError> {
    let row = sqlx::query("SELECT current FROM revision WHERE id = 0")
        .fetch_one(executor)
        .await
        .map_err(db("read the revision"))?;
    Ok(u64::try_from(row.get::<i64, _>(0)).unwrap_or(0))
}
