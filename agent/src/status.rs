//! Task status writes: fenced (see [`crate::fence::writable`]) and with the resourceVersion
//! read as the precondition, retried on conflicts.

use kube::Api;
use kube::api::PostParams;
use ringrift_crds::task::{StatusUpdate, Task, TaskStatus};

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
}

impl WriteError {
    /// A bounded label for metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::NotCurrent { .. } => "not_current",
            Self::Api { .. } => "api",
        }
    }
}

/// Sets the fields of `update` on the status of Task `name`, attempt `attempt`, uid `uid`.
/// Every other status field is kept.
///
/// # Errors
/// [`WriteError::NotCurrent`] when the write is fenced off; [`WriteError::Api`] otherwise.
pub async fn write(
    api: &Api<Task>,
    name: &str,
    uid: &str,
    attempt: u32,
    update: &StatusUpdate,
) -> Result<Task, WriteError> {
    let api_err = |source| WriteError::Api {
        name: name.to_owned(),
        source,
    };
    let mut conflicts = 0;
    loop {
        let Some(mut task) = api.get_opt(name).await.map_err(api_err)? else {
            return Err(WriteError::NotCurrent {
                name: name.to_owned(),
                why: "the Task was deleted".into(),
            });
        };
        crate::fence::writable(&task, uid).map_err(|why| WriteError::NotCurrent {
            name: name.to_owned(),
            why,
        })?;
        let mut status = task.status.take().unwrap_or_default();
        // A status about an earlier attempt is not carried over.
        if status.attempt != Some(attempt) {
            status = TaskStatus::default();
        }
        status.attempt = Some(attempt);
        update.apply(&mut status);
        task.status = Some(status);
        match api.replace_status(name, &PostParams::default(), &task).await {
            Ok(t) => return Ok(t),
            Err(kube::Error::Api(s)) if s.code == 409 && conflicts < CONFLICT_RETRIES => conflicts += 1,
            Err(e) => return Err(api_err(e)),
        }
    }
}
