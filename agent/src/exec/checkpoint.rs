//! Checkpoints a training process announces (`@ringrift {"checkpoint": "checkpoints/x.ckpt"}`):
//! moved into the content store as `checkpoint-<task>.ckpt` when announced, pushed to other
//! agents as outputs are (the task's `replicas`), and recorded as the attempt's newest
//! checkpoint in its status, whatever becomes of the attempt: the next attempt of the unit
//! resumes from it. A checkpoint that cannot be kept is logged; the run goes on.

use ringrift_crds::common::ArtifactKind;

use super::RunHandle;
use crate::node::Node;

/// Keeps the checkpoint announced since the last call, if any; whether one was kept.
pub(super) async fn keep(node: &Node, handle: &RunHandle) -> bool {
    let mut announced = None;
    handle.update(|i| announced = i.checkpoint_announced.take());
    let Some(relative) = announced else {
        return false;
    };
    if !crate::progress::checkpoint_path_ok(&relative) {
        return false;
    }
    let path = handle.dir.join("output").join(&relative);
    let name = format!("checkpoint-{}.ckpt", handle.name);
    let mut artifact = match node
        .content
        .ingest(&node.db, &path, &name, ArtifactKind::Checkpoint)
        .await
    {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(task = %handle.name, checkpoint = relative, error = %e, "checkpoint not kept");
            return false;
        }
    };
    artifact.holders = vec![node.name.clone()];
    if handle.replicas > 1
        && let Err(e) = crate::sync::replicate::replicate(
            &node.sync,
            std::slice::from_mut(&mut artifact),
            handle.replicas,
        )
        .await
    {
        tracing::warn!(task = %handle.name, error = %e, "checkpoint held only by this agent for now");
    }
    tracing::info!(
        task = %handle.name,
        checkpoint = relative,
        digest = artifact.digest,
        holders = artifact.holders.join(","),
        "checkpoint kept"
    );
    handle.update(|i| i.checkpoint = Some(artifact));
    true
}
