//! Retention on a running agent: every interval (a minute by default), when the data directory's file system is past
//! its high-water mark, drop what [`super::retention::choose`] picks. What must stay is read
//! from the API each round (inputs of unfinished Tasks, every `Model`'s weights, promoted or
//! not, the games inside the window of every `TrainingLoop` and unfinished `TrainingJob`, and
//! the games of selfplay still running) plus the pulls in progress; when the API cannot be
//! read, nothing is dropped.

use std::sync::Arc;
use std::time::Duration;

use kube::Api;
use kube::api::ListParams;
use ringrift_crds::common::JobPhase;
use ringrift_crds::model::Model;
use ringrift_crds::selfplay::SelfplayJob;
use ringrift_crds::task::{Task, TaskPhase};
use ringrift_crds::training::TrainingJob;
use ringrift_crds::training_loop::TrainingLoop;
use tokio_util::sync::CancellationToken;

use super::context::Context;
use super::retention::{Disk, Held, Keep, Marks, Part, Window, choose, in_windows};

async fn keep(ctx: &Context) -> kube::Result<Keep> {
    let lp = ListParams::default();
    let mut keep = Keep::default();
    for t in Api::<Task>::all(ctx.client.clone()).list(&lp).await?.items {
        let finished = t.status.as_ref().is_some_and(|s| {
            matches!(
                s.phase,
                TaskPhase::Succeeded | TaskPhase::Failed | TaskPhase::Cancelled | TaskPhase::Lost
            )
        });
        if !finished {
            keep.needed.extend(t.spec.inputs.iter().map(|a| a.digest.clone()));
        }
    }
    for m in Api::<Model>::all(ctx.client.clone()).list(&lp).await?.items {
        if m.status.as_ref().is_some_and(|s| s.promoted) {
            keep.promoted.insert(m.spec.digest.clone());
        }
        keep.referenced.insert(m.spec.digest);
    }
    let mut parts = Vec::new();
    for j in Api::<SelfplayJob>::all(ctx.client.clone()).list(&lp).await?.items {
        let Some(s) = j.status else { continue };
        // A failed job's games are in no dataset a training reads (as the controller sees it).
        if s.phase == JobPhase::Failed {
            continue;
        }
        let finished = s.phase == JobPhase::Succeeded;
        parts.push(Part {
            namespace: j.metadata.namespace.unwrap_or_default(),
            dataset: j.spec.output.dataset,
            finished: finished.then(|| s.completion_time.map_or(jiff::Timestamp::UNIX_EPOCH, |t| t.0)),
            games: s.games_done,
            digests: s.outputs.into_iter().map(|a| a.digest).collect(),
        });
    }
    let mut windows = Vec::new();
    for l in Api::<TrainingLoop>::all(ctx.client.clone())
        .list(&lp)
        .await?
        .items
    {
        windows.push(Window {
            datasets: vec![l.metadata.name.unwrap_or_default()],
            namespace: l.metadata.namespace.unwrap_or_default(),
            games: l.spec.training.window.games,
        });
    }
    for t in Api::<TrainingJob>::all(ctx.client.clone()).list(&lp).await?.items {
        let done = t
            .status
            .as_ref()
            .is_some_and(|s| matches!(s.phase, JobPhase::Succeeded | JobPhase::Failed));
        if !done {
            windows.push(Window {
                namespace: t.metadata.namespace.unwrap_or_default(),
                datasets: t.spec.datasets,
                games: t.spec.settings.window.games,
            });
        }
    }
    keep.in_window = in_windows(&parts, &windows);
    keep.needed.extend(ctx.state.partials.digests());
    Ok(keep)
}

/// One round: returns the digests dropped.
pub async fn round(ctx: &Context, marks: Marks) -> Vec<String> {
    ctx.metrics.retention_rounds.inc();
    let host = ctx.inventory.borrow().host;
    let disk = Disk {
        total: host.disk_mib.saturating_mul(1024 * 1024),
        used: host
            .disk_mib
            .saturating_sub(host.disk_free_mib)
            .saturating_mul(1024 * 1024),
    };
    if !past(disk, marks) {
        return Vec::new();
    }
    let keep = match keep(ctx).await {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "disk past its high-water mark, but the API cannot say what is needed; dropping nothing");
            return Vec::new();
        }
    };
    let held: Vec<Held> = ctx
        .db
        .artifacts()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|a| Held {
            last_used: a.last_used.unwrap_or(a.created_at),
            digest: a.digest,
            kind: a.kind,
            size_bytes: a.size_bytes,
        })
        .collect();
    let drop = choose(&held, &keep, disk, marks);
    for digest in &drop {
        if let Err(e) = ctx.db.remove_artifact(digest).await {
            tracing::warn!(%digest, error = %e, "cannot forget an artifact");
            continue;
        }
        ctx.content.checked().forget(digest);
        if let Some(path) = ctx.content.path(digest) {
            let _ = tokio::fs::remove_file(path).await;
        }
        ctx.metrics.retention_dropped.inc();
        tracing::info!(%digest, "retention dropped an artifact");
    }
    drop
}

#[allow(clippy::cast_precision_loss)]
fn past(disk: Disk, marks: Marks) -> bool {
    disk.total > 0 && disk.used as f64 > marks.high * disk.total as f64
}

/// Runs rounds until `stop`.
pub async fn run(ctx: Arc<Context>, marks: Marks, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        round(&ctx, marks).await;
    }
}
