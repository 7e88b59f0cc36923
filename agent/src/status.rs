//! Task status writes: fenced (see [`crate::fence::writable`]) and with the resourceVersion
//! read as the precondition, retried on conflicts.

use kube::Api;
use kube::api::PostParams;
use ringrift_crds::task::Task;
use serde_json::{Map, Value};

/// How many conflicts a write rides out before giving up for now.
const CONFLICT_RETRIES: usize = 5;

/// A status write that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The Task no longer wants this attempt's status: nothing may be written.
    #[error("not writing the status of Task {name}: {why}")]
    NotCurrent {
        /// The Task.
        name: String,
        /// Why.
        why: String,
    },
    /// The API failed; the write can be tried again later.
    #[error("failed to write the status of Task {name}: {source}")]
    Api {
        /// The Task.
        name: String,
        /// The error.
        #[source]
        source: kube::Error,
    },
    /// The status would not serialize.
    #[error("failed to encode the status of Task {name}: {source}")]
    Encode {
        /// The Task.
        name: String,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
}

impl WriteError {
    /// A bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::NotCurrent { .. } => "not_current",
            Self::Api { .. } => "api",
            Self::Encode { .. } => "encode",
        }
    }
}

/// Sets `fields` (camelCase status fields) on the status of Task `name`, attempt `attempt`, uid
/// `uid`. Every other status field is kept.
///
/// # Errors
/// [`WriteError::NotCurrent`] when the write is fenced off; [`WriteError::Api`] otherwise.
pub async fn write(
    api: &Api<Task>,
    name: &str,
    uid: &str,
    attempt: u32,
    fields: &Map<String, Value>,
) -> Result<Task, WriteError> {
    let api_err = |source| WriteError::Api {
        name: name.to_owned(),
        source,
    };
    let mut conflicts = 0;
    loop {
        let Some(task) = api.get_opt(name).await.map_err(api_err)? else {
            return Err(WriteError::NotCurrent {
                name: name.to_owned(),
                why: "the Task was deleted".into(),
            });
        };
        crate::fence::writable(&task, uid).map_err(|why| WriteError::NotCurrent {
            name: name.to_owned(),
            why,
        })?;
        let mut object = serde_json::to_value(&task).map_err(|source| WriteError::Encode {
            name: name.to_owned(),
            source,
        })?;
        let status = object
            .as_object_mut()
            .map(|o| o.entry("status").or_insert_with(|| Value::Object(Map::new())));
        if let Some(Value::Object(status)) = status {
            // A status about an earlier attempt is not carried over.
            if status.get("attempt").and_then(Value::as_u64) != Some(u64::from(attempt)) {
                status.clear();
            }
            status.insert("attempt".into(), Value::from(attempt));
            for (k, v) in fields {
                if v.is_null() {
                    status.remove(k);
                } else {
                    status.insert(k.clone(), v.clone());
                }
            }
        }
        let body: Task = serde_json::from_value(object).map_err(|source| WriteError::Encode {
            name: name.to_owned(),
            source,
        })?;
        match api.replace_status(name, &PostParams::default(), &body).await {
            Ok(t) => return Ok(t),
            Err(kube::Error::Api(s)) if s.code == 409 && conflicts < CONFLICT_RETRIES => conflicts += 1,
            Err(e) => return Err(api_err(e)),
        }
    }
}
