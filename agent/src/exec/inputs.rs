//! A task's inputs: each one not held here is pulled from its holders (those the `Task` names,
//! then those gossip knows, whole holders before partial ones; holders penalized for bad data
//! last), all inputs at once, each in its priority class. While no holder answers, the holders
//! are looked up and asked again every second for half a minute.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use ringrift_crds::common::Artifact;
use ringrift_crds::task::Task;

use crate::node::Node;
use crate::sync::gate::class_of;
use crate::sync::holder::{Holder, PullError};
use crate::sync::pull;

/// How long a pull waits for some holder to answer before the task fails.
const HOLDER_PATIENCE: Duration = Duration::from_secs(30);
/// Time between tries while no holder answers.
const RETRY: Duration = Duration::from_secs(1);

/// The holders to pull `artifact` from, best first.
pub async fn holders(node: &Node, artifact: &Artifact) -> Vec<Holder> {
    let (whole, partial) = node.sync.state.holders_of(&artifact.digest);
    let mut names: Vec<String> = artifact.holders.clone();
    for (n, _) in whole.iter().chain(&partial) {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names.retain(|n| *n != node.name);
    // Penalized holders go last: asked only when nobody else can serve.
    names.sort_by_key(|n| node.sync.state.penalized(n));
    let mut out = Vec::new();
    for name in names {
        // Trusted by what its Agent status publishes (the API); reached where gossip says it
        // is now, or else where its Agent says.
        let pin = node.sync.state.pins.of(&node.client, &name).await;
        let endpoint = node
            .sync
            .state
            .endpoint(&name)
            .or_else(|| pin.as_ref().and_then(|p| p.endpoint.clone()));
        let fingerprint = pin.and_then(|p| p.fingerprint);
        if let Some(endpoint) = endpoint {
            out.push(Holder {
                name,
                endpoint,
                fingerprint,
            });
        } else {
            tracing::debug!(holder = %name, "no endpoint known for holder");
        }
    }
    out
}

/// Pulls every input of `task` not held here; the bytes of those pulled.
///
/// # Errors
/// The first pull that failed.
pub async fn fetch(node: &Node, task: &Task) -> Result<u64, PullError> {
    let pulls = task.spec.inputs.iter().map(|input| async move {
        if pull::held(&node.sync, input).await {
            let _ = node.db.touch_artifact(&input.digest).await;
            return Ok(0);
        }
        let started = Instant::now();
        loop {
            let from = holders(node, input).await;
            tracing::info!(
                task = %task.metadata.name.as_deref().unwrap_or(""),
                input = %input.name,
                holders = from.len(),
                bytes = input.size_bytes,
                "pulling an input"
            );
            match pull::pull(&node.sync, input, &from, class_of(task.spec.role, input.kind)).await {
                // No holder answered: one may be restarting, or gossip may name another soon
                // (a refusal of our credentials is final).
                Err(PullError::NoHolder { denied: false, .. }) if started.elapsed() < HOLDER_PATIENCE => {
                    tokio::time::sleep(RETRY).await;
                }
                done => return done.map(|()| input.size_bytes),
            }
        }
    });
    join_all(pulls)
        .await
        .into_iter()
        .try_fold(0u64, |sum, pulled| pulled.map(|b| sum.saturating_add(b)))
}
