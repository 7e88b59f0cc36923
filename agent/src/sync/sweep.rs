//! Retention on a running agent: every interval (a minute by default), when the data
//! directory's file system is past its high-water mark, drop what [`super::retention::choose`]
//! picks. What must stay is read from the API each round ([`Needed::from_objects`]: inputs of
//! unfinished Tasks, every `Model`'s weights, promoted or not, the games inside the window of
//! every `TrainingLoop` and unfinished `TrainingJob`, and the games of selfplay still running)
//! plus the pulls in progress; when the API cannot be read, nothing is dropped.

use std::sync::Arc;
use std::time::Duration;

use kube::Api;
use kube::api::ListParams;
use ringrift_crds::durability::Needed;
use ringrift_crds::model::Model;
use ringrift_crds::selfplay::SelfplayJob;
use ringrift_crds::task::Task;
use ringrift_crds::training::TrainingJob;
use ringrift_crds::training_loop::TrainingLoop;
use tokio_util::sync::CancellationToken;

use super::context::Context;
use super::retention::{Disk, Held, Marks, choose};

/// What must stay: the fleet's needs as the API's objects say them (the one definition the
/// controller uses too), and the pulls in progress here.
async fn keep(ctx: &Context) -> kube::Result<Needed> {
    let lp = ListParams::default();
    let client = &ctx.client;
    let tasks = Api::<Task>::all(client.clone()).list(&lp).await?.items;
    let models = Api::<Model>::all(client.clone()).list(&lp).await?.items;
    let selfplay = Api::<SelfplayJob>::all(client.clone()).list(&lp).await?.items;
    let loops = Api::<TrainingLoop>::all(client.clone()).list(&lp).await?.items;
    let training = Api::<TrainingJob>::all(client.clone()).list(&lp).await?.items;
    let mut needed = Needed::from_objects(&tasks, &models, &selfplay, &loops, &training);
    needed.inputs.extend(ctx.state.partials.digests());
    Ok(needed)
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
