//! The end of an attempt: outputs into the content store, `result.json`, the final status
//! recorded locally and then written (fenced), or kept for a later try.

use kube::Api;
use ringrift_crds::common::{Artifact, ArtifactKind};
use ringrift_crds::task::{FailureClass, Role, StatusUpdate, Task, TaskPhase};
use serde_json::Value;

use super::RunHandle;
use super::attempt::{Ended, now, progress_update, write};
use super::classify::{Exit, Outcome, Reason, Stop, classify};
use crate::metrics::{PhaseLabels, TaskLabels};
use crate::node::Node;
use crate::status::WriteError;

/// Largest `result.json` accepted.
const MAX_RESULT: u64 = 1024 * 1024;
/// Most output files collected.
const MAX_OUTPUTS: usize = 256;

fn output_kind(role: Role, file: &str) -> ArtifactKind {
    match role {
        Role::Training
            if std::path::Path::new(file)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("ckpt")) =>
        {
            ArtifactKind::Checkpoint
        }
        Role::Training => ArtifactKind::Model,
        // A copy runs no process and collects nothing: its outputs are its inputs.
        Role::Selfplay | Role::Gauntlet | Role::Copy => ArtifactKind::Games,
    }
}

/// Moves the output files into the artifact store. `result.json` is read, not stored.
async fn collect(node: &Node, handle: &RunHandle) -> Result<(Vec<Artifact>, Option<Value>), Outcome> {
    let fail = |class, reason, message: String| Outcome {
        phase: TaskPhase::Failed,
        failure_class: Some(class),
        reason,
        message,
    };
    let out_dir = handle.dir.join("output");
    let mut files = Vec::new();
    let mut entries = tokio::fs::read_dir(&out_dir).await.map_err(|e| {
        fail(
            FailureClass::AgentError,
            Reason::OutputsFailed,
            format!("failed to read the output directory: {e}"),
        )
    })?;
    while let Ok(Some(entry)) = entries.next_entry().await {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.')
            || name == "result.json"
            || !entry.file_type().await.is_ok_and(|t| t.is_file())
        {
            continue;
        }
        files.push(name);
    }
    files.sort();
    if files.len() > MAX_OUTPUTS {
        return Err(fail(
            FailureClass::UserError,
            Reason::TooManyOutputs,
            format!("{} output files; at most {MAX_OUTPUTS}", files.len()),
        ));
    }
    let mut outputs = Vec::new();
    for name in files {
        let mut artifact = node
            .content
            .ingest(
                &node.db,
                &out_dir.join(&name),
                &name,
                output_kind(handle.role, &name),
            )
            .await
            .map_err(|e| fail(FailureClass::AgentError, Reason::OutputsFailed, e.to_string()))?;
        artifact.holders = vec![node.name.clone()];
        outputs.push(artifact);
    }
    let result_path = out_dir.join("result.json");
    let result = match tokio::fs::metadata(&result_path).await {
        Err(_) => None,
        Ok(m) if m.len() > MAX_RESULT => {
            return Err(fail(
                FailureClass::UserError,
                Reason::InvalidResult,
                format!("result.json is {} bytes; at most {MAX_RESULT}", m.len()),
            ));
        }
        Ok(_) => {
            let bytes = tokio::fs::read(&result_path).await.unwrap_or_default();
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(v @ Value::Object(_)) => Some(v),
                Ok(_) => {
                    return Err(fail(
                        FailureClass::UserError,
                        Reason::InvalidResult,
                        "result.json is not a JSON object".into(),
                    ));
                }
                Err(e) => {
                    return Err(fail(
                        FailureClass::UserError,
                        Reason::InvalidResult,
                        format!("result.json is not JSON: {e}"),
                    ));
                }
            }
        }
    };
    Ok((outputs, result))
}

/// How long outputs wait for a reachable agent to take them before the attempt fails.
const REPLICATE_PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);
/// Time between tries.
const REPLICATE_RETRY: std::time::Duration = std::time::Duration::from_secs(3);

/// Before the attempt counts as Succeeded, each output is pushed to other agents until it has
/// `replicas` copies (`sync::replicate`): fewer when fewer agents can take one, which is a
/// shortfall (logged and counted), never a failure. When peers cannot reach this agent, its
/// own copy does not count and at least one must land elsewhere: tried again for a while when
/// no agent takes them, then the attempt fails as the agent's error (the controller runs it
/// again, elsewhere if it can). When no other agent is reachable at all, there is nowhere to
/// push and nobody a copy would serve: the outputs stay here, with a warning.
async fn replicate(node: &Node, outputs: &mut [Artifact], replicas: u32) -> Result<(), Outcome> {
    let deadline = tokio::time::Instant::now() + REPLICATE_PATIENCE;
    loop {
        match crate::sync::replicate::replicate(&node.sync, outputs, replicas).await {
            Ok(()) => return Ok(()),
            // Nobody else is reachable (or the only agent is this one): nobody could pull from
            // a copy either, and agents on this box still can read them here.
            Err(e @ crate::sync::replicate::ReplicateError::NoTarget) => {
                tracing::warn!(error = %e, "outputs held only by this agent");
                return Ok(());
            }
            Err(e) if tokio::time::Instant::now() + REPLICATE_RETRY < deadline => {
                tracing::warn!(error = %e, "outputs not replicated yet; trying again");
                tokio::time::sleep(REPLICATE_RETRY).await;
            }
            Err(e) => {
                return Err(Outcome {
                    phase: TaskPhase::Failed,
                    failure_class: Some(FailureClass::AgentError),
                    reason: Reason::OutputsFailed,
                    message: format!("outputs not available to peers: {e}"),
                });
            }
        }
    }
}

/// Bytes of `outputs` pushed to other agents: each output's size once per holder besides
/// `this`.
fn pushed(outputs: &[Artifact], this: &str) -> u64 {
    outputs
        .iter()
        .map(|a| {
            let others = a.holders.iter().filter(|h| *h != this).count();
            a.size_bytes
                .saturating_mul(u64::try_from(others).unwrap_or(u64::MAX))
        })
        .fold(0, u64::saturating_add)
}

pub(super) async fn conclude(node: &Node, api: &Api<Task>, handle: &RunHandle, ended: Ended) {
    // The process is gone: a task that follows this one on its GPUs may start.
    node.runs.exited(handle);
    let mut copied = None;
    let (mut outcome, exit, stop) = match ended {
        Ended::Exited {
            exit,
            stop,
            gpu_fault,
        } => {
            let tail = handle.log.tail(50);
            (classify(&exit, stop, gpu_fault, &tail), Some(exit), stop)
        }
        Ended::Outcome(o) => (o, None, None),
        Ended::Copied(outputs, fetched) => {
            copied = Some((outputs, fetched));
            let done = Outcome {
                phase: TaskPhase::Succeeded,
                failure_class: None,
                reason: Reason::Completed,
                message: format!("a copy of its inputs is held on {}", node.name),
            };
            (done, None, None)
        }
    };
    let mut status = StatusUpdate {
        last_progress_time: None,
        ..progress_update(handle)
    };
    if let Some((outputs, fetched)) = copied {
        status.outputs = Some(outputs);
        status.bytes_fetched = Some(fetched);
    } else if outcome.phase == TaskPhase::Succeeded {
        match collect(node, handle).await {
            Ok((mut outputs, result)) => match replicate(node, &mut outputs, handle.replicas).await {
                Ok(()) => {
                    status.bytes_pushed = Some(pushed(&outputs, &node.name));
                    status.outputs = Some(outputs);
                    status.result = result;
                }
                Err(failed) => outcome = failed,
            },
            Err(failed) => outcome = failed,
        }
    }
    status.phase = Some(outcome.phase);
    status.reason = Some(outcome.reason.to_string());
    status.message = Some(outcome.message.clone());
    status.completion_time = Some(now());
    status.failure_class = outcome.failure_class;
    match exit {
        Some(Exit::Code(c)) => status.exit_code = Some(c),
        Some(Exit::Signal(s)) => status.signal = Some(s),
        _ => {}
    }
    let recorded = serde_json::to_string(&status).unwrap_or_default();
    if let Err(e) = node.db.finished(&handle.uid, &recorded).await {
        tracing::error!(task = %handle.name, error = %e, "failed to record the task's end");
    }
    node.metrics.task_gpu_memory.remove(&TaskLabels {
        namespace: handle.namespace.clone(),
        task: handle.name.clone(),
    });
    node.metrics
        .tasks_finished
        .get_or_create(&PhaseLabels {
            phase: format!("{:?}", outcome.phase),
        })
        .inc();
    handle.update(|i| {
        i.phase = outcome.phase;
        i.finished_at = Some(now().0.to_string());
        i.exit_code = match exit {
            Some(Exit::Code(c)) => Some(c),
            _ => None,
        };
        i.reason = Some(outcome.reason.to_string());
        i.message = Some(outcome.message.clone());
    });
    tracing::info!(task = %handle.name, attempt = handle.attempt, phase = ?outcome.phase, reason = %outcome.reason, message = %outcome.message, "task finished");
    if stop == Some(Stop::Superseded) {
        let _ = node.db.reported(&handle.uid).await;
    } else {
        report(node, api, handle, &status).await;
    }
    handle.mark_done();
}

/// Writes a final status; on success (or when the Task no longer wants it) nothing is left to
/// do. On an API error the outcome stays recorded and is written later.
pub(super) async fn report(node: &Node, api: &Api<Task>, handle: &RunHandle, status: &StatusUpdate) {
    match write(node, api, handle, status).await {
        Ok(()) => {
            let _ = node.db.reported(&handle.uid).await;
        }
        Err(WriteError::NotCurrent { why, .. }) => {
            tracing::info!(task = %handle.name, why, "final status not written");
            let _ = node.db.reported(&handle.uid).await;
        }
        Err(e) => tracing::warn!(task = %handle.name, error = %e, "final status not written yet; will retry"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_bytes_count_each_copy_on_another_agent() {
        let output = |size, holders: &[&str]| Artifact {
            name: "x".into(),
            kind: ArtifactKind::Games,
            digest: String::new(),
            size_bytes: size,
            holders: holders.iter().map(|h| (*h).to_owned()).collect(),
        };
        let outputs = [
            output(10, &["me", "a", "b"]),
            output(7, &["me"]),
            output(5, &["a"]),
        ];
        assert_eq!(pushed(&outputs, "me"), 10 * 2 + 5);
        assert_eq!(pushed(&[], "me"), 0);
    }
}
