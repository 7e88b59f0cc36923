//! What the run of an attempt and its finish share: how it ended, its progress fields, and the
//! fenced write of its status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Api;
use ringrift_crds::task::{StatusUpdate, Task};

use super::RunHandle;
use super::classify::{Exit, Outcome, Stop};
use crate::node::Node;
use crate::status::{self, WriteError};

/// Now, as the status fields write it.
pub(super) fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// How an attempt's process ended: it exited (maybe stopped by the agent), or it never ran and
/// the outcome is known already.
pub(super) enum Ended {
    Exited {
        exit: Exit,
        stop: Option<Stop>,
        gpu_fault: bool,
    },
    Outcome(Outcome),
    /// A copy task's inputs are held and verified here: these are its outputs (and the bytes
    /// pulled for them).
    Copied(Vec<ringrift_crds::common::Artifact>, u64),
}

/// Writes fields of the attempt's status, fenced on its uid and attempt, and counts the result.
pub(super) async fn write(
    node: &Node,
    api: &Api<Task>,
    handle: &RunHandle,
    update: &StatusUpdate,
) -> Result<(), WriteError> {
    match status::write(api, &handle.name, &handle.uid, handle.attempt, update).await {
        Ok(_) => {
            node.metrics.status_write("ok");
            Ok(())
        }
        Err(e) => {
            node.metrics.status_write(e.category());
            Err(e)
        }
    }
}

/// The status fields of the attempt's progress and metrics so far.
pub(super) fn progress_update(handle: &RunHandle) -> StatusUpdate {
    let info = handle.info();
    StatusUpdate {
        progress_text: info.progress.as_ref().map(crate::progress::text),
        progress: info.progress.clone(),
        metrics: (!info.metrics.is_empty()).then(|| info.metrics.clone()),
        checkpoint: info.checkpoint.clone(),
        last_progress_time: Some(now()),
        ..StatusUpdate::default()
    }
}
