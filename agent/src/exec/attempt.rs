//! What the run of an attempt and its finish share: how it ended, its progress fields, and the
//! fenced write of its status.

use kube::Api;
use ringrift_crds::task::Task;
use serde_json::{Map, Value};

use super::RunHandle;
use super::classify::{Exit, Outcome, Stop};
use crate::node::Node;
use crate::status::{self, WriteError};

/// Now, as the status fields write it.
pub(super) fn now() -> String {
    jiff::Timestamp::now().to_string()
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
}

/// Writes fields of the attempt's status, fenced on its uid and attempt, and counts the result.
pub(super) async fn write(
    node: &Node,
    api: &Api<Task>,
    handle: &RunHandle,
    fields: &Map<String, Value>,
) -> Result<(), WriteError> {
    match status::write(api, &handle.name, &handle.uid, handle.attempt, fields).await {
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
pub(super) fn progress_fields(handle: &RunHandle) -> Map<String, Value> {
    let info = handle.info();
    let mut out = Map::new();
    if let Some(p) = &info.progress {
        out.insert("progressText".into(), Value::from(crate::progress::text(p)));
        out.insert("progress".into(), serde_json::to_value(p).unwrap_or(Value::Null));
    }
    if !info.metrics.is_empty() {
        out.insert(
            "metrics".into(),
            serde_json::to_value(&info.metrics).unwrap_or(Value::Null),
        );
    }
    out.insert("lastProgressTime".into(), Value::from(now()));
    out
}
