//! Pulling an artifact from its holders: the manifest from one holder, then chunks from all of
//! them at once, each hashed as it arrives and counted only when it checks out (see
//! [`super::receive`]), progress recorded so an interrupted pull resumes. The manifest's last
//! chunk state is the wanted digest, so when every chunk checks out the whole has that digest
//! ([`super::chain`]) and the file is renamed into the store without being read again. A holder
//! that serves bad bytes is dropped and penalized; one that dies mid-transfer leaves its chunks
//! to the others.

use std::collections::HashSet;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use ringrift_crds::common::Artifact;

use super::checked::FileId;
use super::client::{FetchError, Peer};
use super::context::Context;
use super::fetch;
use super::gate::Class;
use super::holder::{Holder, MAX_ROUNDS, PullError, local_io, peer};
use super::manifest::Manifest;
use crate::artifacts::{ArtifactError, kind_name};
use crate::store::TransferRow;

struct ActiveGuard<'a>(&'a Context);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.metrics.active_transfers.dec();
    }
}

/// Whether the content of `digest` is in the store.
pub async fn held(ctx: &Context, artifact: &Artifact) -> bool {
    let Some(path) = ctx.content.path(&artifact.digest) else {
        return false;
    };
    tokio::fs::metadata(&path)
        .await
        .is_ok_and(|m| m.len() == artifact.size_bytes)
}

/// Pulls `artifact` from `holders` (this agent excluded by the caller) unless it is held.
///
/// # Errors
/// [`PullError`]; progress made stays recorded, and the next pull resumes it.
#[tracing::instrument(name = "pull", skip_all, fields(digest = %artifact.digest, holders = holders.len()))]
pub async fn pull(
    ctx: &Context,
    artifact: &Artifact,
    holders: &[Holder],
    class: Class,
) -> Result<(), PullError> {
    let digest = artifact.digest.as_str();
    let lock = ctx.state.lock(digest);
    let _one_pull = lock.lock().await;
    if held(ctx, artifact).await {
        let _ = ctx.db.touch_artifact(digest).await;
        return Ok(());
    }
    ctx.metrics.active_transfers.inc();
    let _active = ActiveGuard(ctx);
    let started = Instant::now();
    let result = rounds(ctx, artifact, holders, class).await;
    let label = if result.is_ok() { "ok" } else { "failed" };
    ctx.metrics
        .transfers
        .get_or_create(&crate::metrics::ResultLabels { result: label.into() })
        .inc();
    ctx.state.partials.remove(digest);
    match &result {
        Ok(()) => tracing::info!(
            artifact = %artifact.name, %digest, bytes = artifact.size_bytes,
            secs = started.elapsed().as_secs_f64(), "artifact pulled"
        ),
        Err(e) => tracing::warn!(artifact = %artifact.name, %digest, error = %e, "pull failed"),
    }
    result
}

async fn rounds(
    ctx: &Context,
    artifact: &Artifact,
    holders: &[Holder],
    class: Class,
) -> Result<(), PullError> {
    let digest = artifact.digest.as_str();
    let peers: Vec<(Holder, Peer)> = holders
        .iter()
        .filter_map(|h| peer(ctx, h).map(|p| (h.clone(), p)))
        .collect();
    let mut distrusted: HashSet<String> = HashSet::new();
    for _ in 0..MAX_ROUNDS {
        let (manifest, source) = manifest(ctx, artifact, &peers, &distrusted, class).await?;
        let (path, file) = open_partial(ctx, &manifest).await?;
        let file = Arc::new(file);
        let recorded: Vec<bool> = ctx
            .db
            .transfer(digest)
            .await?
            .map(|r| r.done.chars().map(|c| c == '1').collect())
            .unwrap_or_default();
        let done = recheck(&manifest, &file, recorded, &path).await?;
        let partial = ctx
            .state
            .partials
            .insert(manifest.clone(), path.clone(), done.clone());
        let mut bad_data = Vec::new();
        let result = fetch::chunks(
            ctx,
            &manifest,
            &peers,
            &distrusted,
            class,
            &partial,
            &file,
            &done,
            &mut bad_data,
        )
        .await;
        ctx.state.partials.remove(digest);
        match result {
            Ok(()) => {
                let id = file
                    .metadata()
                    .map(|m| FileId::of(&m))
                    .map_err(local_io("read", &path))?;
                drop(file);
                let dest = ctx
                    .content
                    .admit(
                        &ctx.db,
                        &path,
                        &artifact.name,
                        kind_name(artifact.kind),
                        &manifest,
                    )
                    .await?;
                // Every chunk was checked on its way into this file: serving it needs no
                // second look while the file stays as written.
                ctx.content.checked_whole(digest, &dest, id, manifest.len()).await;
                return Ok(());
            }
            // Stalled after bytes failed the manifest's checks, from the manifest's own holder
            // or from two holders or more: the manifest is the likelier liar (its chunk states
            // do not match the true content). Start over with another holder's.
            Err(PullError::Stalled { .. })
                if source
                    .as_ref()
                    .is_some_and(|s| bad_data.contains(s) || bad_data.len() >= 2) =>
            {
                if let Some(s) = source {
                    tracing::warn!(%digest, holder = %s, "holders' bytes failed the manifest's checks; distrusting its holder");
                    ctx.state.penalize(&s);
                    distrusted.insert(s);
                }
                ctx.db.drop_transfer(digest).await?;
            }
            Err(e) => return Err(e),
        }
    }
    Err(PullError::NeverVerified(digest.to_owned()))
}

/// The recorded chunks of a resumed pull, checked again from the file: a chunk recorded before
/// a crash may not have reached the disk. Returns the chunks that check out.
async fn recheck(
    manifest: &Manifest,
    file: &Arc<std::fs::File>,
    recorded: Vec<bool>,
    path: &std::path::Path,
) -> Result<Vec<bool>, PullError> {
    if !recorded.iter().any(|d| *d) {
        return Ok(recorded);
    }
    let (manifest, file) = (manifest.clone(), file.clone());
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::new();
        let mut done = recorded;
        for (index, d) in done.iter_mut().enumerate().filter(|(_, d)| **d) {
            let range = manifest.range(index);
            buf.resize(usize::try_from(range.end - range.start).unwrap_or(0), 0);
            file.read_exact_at(&mut buf, range.start)?;
            *d = manifest.verify(index, &buf);
            if !*d {
                tracing::warn!(digest = %manifest.digest, chunk = index, "a chunk recorded as pulled did not check out; fetching it again");
            }
        }
        Ok(done)
    })
    .await
    .map_err(|e| std::io::Error::other(e.to_string()))
    .and_then(|r| r)
    .map_err(local_io("read", path))
}

/// The file a pull writes into, sized to the artifact (kept as it is when resuming).
async fn open_partial(ctx: &Context, manifest: &Manifest) -> Result<(PathBuf, std::fs::File), PullError> {
    let path = ctx
        .content
        .partial_path(&manifest.digest)
        .ok_or_else(|| ArtifactError::BadName(manifest.digest.clone()))?;
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(local_io("create", dir))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .read(true)
        .open(&path)
        .map_err(local_io("open", &path))?;
    file.set_len(manifest.size_bytes)
        .map_err(local_io("size", &path))?;
    Ok((path, file))
}

/// The manifest to pull by: the one recorded (a resumed pull) or the first valid one a trusted
/// holder gives. Returns the holder it came from.
async fn manifest(
    ctx: &Context,
    artifact: &Artifact,
    peers: &[(Holder, Peer)],
    distrusted: &HashSet<String>,
    class: Class,
) -> Result<(Manifest, Option<String>), PullError> {
    let digest = artifact.digest.as_str();
    if let Some(t) = ctx.db.transfer(digest).await? {
        let m = Manifest {
            digest: t.digest.clone(),
            size_bytes: t.size_bytes,
            chunk_size: t.chunk_size,
            chunk_check: crate::sync::manifest::CHUNK_CHECK.to_owned(),
            chunks: Manifest::split(&t.chunks),
        };
        if m.check(digest, artifact.size_bytes).is_ok() {
            tracing::info!(%digest, done = t.done.matches('1').count(), of = m.len(), "resuming a pull");
            return Ok((m, None));
        }
        ctx.db.drop_transfer(digest).await?;
    }
    let mut last = String::from("no holder known");
    let mut asked = Vec::new();
    let mut denied = 0usize;
    for (h, peer) in peers.iter().filter(|(h, _)| !distrusted.contains(&h.name)) {
        asked.push(h.name.clone());
        let mut conn = None;
        match peer.chunks(&mut conn, digest).await {
            Ok(c) => match c.manifest.check(digest, artifact.size_bytes) {
                Ok(()) => {
                    ctx.db
                        .begin_transfer(&TransferRow {
                            digest: digest.to_owned(),
                            name: artifact.name.clone(),
                            kind: kind_name(artifact.kind).to_owned(),
                            size_bytes: c.manifest.size_bytes,
                            chunk_size: c.manifest.chunk_size,
                            chunks: c.manifest.joined(),
                            done: "0".repeat(c.manifest.len()),
                            class: class.as_str().to_owned(),
                        })
                        .await?;
                    return Ok((c.manifest, Some(h.name.clone())));
                }
                Err(e) => last = format!("{}: {e}", h.name),
            },
            Err(e) => {
                if matches!(e, FetchError::Status(_, 401 | 403, _)) {
                    denied += 1;
                }
                last = e.to_string();
            }
        }
    }
    Err(PullError::NoHolder {
        digest: digest.to_owned(),
        asked: if asked.is_empty() {
            "none".into()
        } else {
            asked.join(", ")
        },
        last,
        denied: !asked.is_empty() && denied == asked.len(),
    })
}
