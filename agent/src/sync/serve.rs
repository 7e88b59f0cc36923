//! Serving artifacts to peers: the whole content of a held artifact, or the verified chunks of
//! one still being pulled (so a new model spreads like a swarm), with `Range`, `HEAD` and the
//! chunk manifest. Nothing unverified is ever served: a partial artifact serves only chunks
//! that checked out as they arrived, and a stored one is checked chunk by chunk before it is
//! sent, unless it was checked lately and is unchanged since ([`super::checked`]).

use std::convert::Infallible;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::Serialize;
use tokio::sync::mpsc;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Reply as _;

use super::checked::FileId;
use super::context::Context;
use super::manifest::Manifest;
use super::partial::Partial;
use super::range;
use crate::artifacts::hex_of;
use crate::rest::errors::ApiError;

/// Blocks a response's body holds queued for the HTTP stack.
pub const BODY_BLOCKS: usize = 4;

/// What `GET /v1/artifacts/{digest}/chunks` answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChunksReply {
    /// The manifest.
    #[serde(flatten)]
    pub manifest: Manifest,
    /// Whether the whole artifact is held.
    pub complete: bool,
    /// For a partial artifact: one character per chunk, `1` when held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub have: Option<String>,
    /// How often each chunk was sent lately, one digit per chunk (capped at 9), when any was:
    /// pullers ask this holder first for what it has sent least ([`super::sent`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent: Option<String>,
}

enum Source {
    Whole(PathBuf, Manifest),
    Partial(Arc<Partial>),
}

fn check_digest(digest: &str) -> Result<(), ApiError> {
    if hex_of(digest).is_none() {
        return Err(ApiError::invalid_path(format!(
            "{digest:?} is not a digest (sha256: and 64 lowercase hex digits)"
        )));
    }
    Ok(())
}

async fn locate(ctx: &Context, digest: &str) -> Result<Source, ApiError> {
    check_digest(digest)?;
    match ctx.content.manifest(&ctx.db, digest).await {
        Ok(Some(m)) => {
            if let Some(path) = ctx.content.path(digest) {
                return Ok(Source::Whole(path, m));
            }
        }
        Ok(None) => {}
        Err(e) => return Err(ApiError::internal(e.to_string())),
    }
    ctx.state
        .partials
        .get(digest)
        .map(Source::Partial)
        .ok_or_else(|| ApiError::not_found(format!("artifact {digest} is not held by this agent")))
}

/// `GET /v1/artifacts/{digest}/chunks`.
///
/// # Errors
/// [`ApiError`]: a malformed digest, an artifact not held.
pub async fn chunks(ctx: Arc<Context>, digest: String) -> Result<warp::reply::Response, ApiError> {
    let sent = ctx.state.sent.report(&digest, std::time::Instant::now());
    let reply = match locate(&ctx, &digest).await? {
        Source::Whole(_, manifest) => ChunksReply {
            manifest,
            complete: true,
            have: None,
            sent,
        },
        Source::Partial(p) => ChunksReply {
            manifest: p.manifest.clone(),
            complete: false,
            have: Some(p.have().iter().map(|h| if *h { '1' } else { '0' }).collect()),
            sent,
        },
    };
    Ok(warp::reply::json(&reply).into_response())
}

fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// `GET` and `HEAD /v1/artifacts/{digest}`, with an optional single `Range`.
///
/// # Errors
/// [`ApiError`]: a malformed digest or range, an artifact or range not held.
pub async fn content(
    ctx: Arc<Context>,
    digest: String,
    head: bool,
    range_header: Option<String>,
) -> Result<warp::reply::Response, ApiError> {
    let source = locate(&ctx, &digest).await?;
    let (path, manifest, partial) = match source {
        Source::Whole(path, m) => (path, m, None),
        Source::Partial(p) => (p.path.clone(), p.manifest.clone(), Some(p)),
    };
    let size = manifest.size_bytes;
    let asked = range::parse(range_header.as_deref(), size).map_err(|e| match e {
        range::RangeError::Unsatisfiable(..) => ApiError::range_not_satisfiable(e.to_string()),
        _ => ApiError::bad_request(e.to_string()),
    })?;
    let span = asked.clone().unwrap_or(0..size);
    if let Some(p) = &partial
        && !span.is_empty()
        && !p.covers(&span)
    {
        return Err(ApiError::range_not_satisfiable(format!(
            "bytes {}-{} of {digest} are not held yet (the artifact is still being pulled)",
            span.start,
            span.end - 1
        )));
    }
    let length = span.end - span.start;
    let mut response = if head {
        warp::reply().into_response()
    } else {
        let slot = ctx.state.serve_slots.clone().try_acquire_owned().map_err(|_| {
            ApiError::busy(format!(
                "every serving slot of this agent is taken; ask another holder of {digest} or retry shortly"
            ))
        })?;
        let file = std::fs::File::open(&path)
            .map_err(|e| ApiError::internal(format!("failed to open {digest}: {e}")))?;
        ctx.state.sent.record(
            &digest,
            super::sent::chunks_of(&span, manifest.chunk_size),
            manifest.len(),
            std::time::Instant::now(),
        );
        let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(BODY_BLOCKS);
        // Blocks given back are kept for the next read until the body is done with (the
        // thread below ends with its last blocks still queued).
        let serving = ctx.state.blocks.serving();
        let start = span.start;
        let checked = manifest.clone();
        let whole = partial.is_none();
        let sender = ctx.clone();
        let sending = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            // A partial artifact's chunks were checked on their way in by this agent; a stored
            // one is checked unless it was lately, unchanged since.
            let seen = whole.then(|| Seen::of(&sender, &checked.digest, &file));
            send_file(
                &file,
                &checked,
                start..start + length,
                &tx,
                &sender.metrics,
                &sender.state,
                seen.as_ref(),
            )
        });
        let ctx = ctx.clone();
        let bad = digest.clone();
        tokio::spawn(async move {
            if let Ok(Err(chunk)) = sending.await {
                corrupt(&ctx, &bad, chunk, whole).await;
            }
        });
        let body = tokio_stream::wrappers::ReceiverStream::new(rx).map(move |block| {
            let _ = &serving;
            block
        });
        warp::reply::stream(body).into_response()
    };
    let headers = response.headers_mut();
    headers.insert("content-length", header(&length.to_string()));
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert("accept-ranges", HeaderValue::from_static("bytes"));
    headers.insert("etag", header(&format!("\"{digest}\"")));
    headers.insert("x-ringrift-chunk-size", header(&manifest.chunk_size.to_string()));
    if asked.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        response.headers_mut().insert(
            "content-range",
            header(&format!(
                "bytes {}-{}/{size}",
                span.start,
                span.end.saturating_sub(1)
            )),
        );
    }
    Ok(response)
}

/// What a stored file's chunks need before they are sent: a check, unless it was checked lately
/// and is unchanged since.
struct Seen<'a> {
    ctx: &'a Context,
    digest: &'a str,
    /// `None` when the file's metadata cannot be read (every chunk is checked).
    id: Option<FileId>,
    opened: SystemTime,
}

impl<'a> Seen<'a> {
    fn of(ctx: &'a Context, digest: &'a str, file: &std::fs::File) -> Self {
        Self {
            ctx,
            digest,
            id: file.metadata().ok().map(|m| FileId::of(&m)),
            opened: SystemTime::now(),
        }
    }

    fn checked(&self, index: usize) -> bool {
        self.id
            .is_some_and(|id| self.ctx.content.checked().is(self.digest, id, index))
    }

    fn record(&self, index: usize, count: usize) {
        if let Some(id) = self.id.filter(|id| id.settled(self.opened)) {
            self.ctx.content.checked().mark(self.digest, id, index, count);
        }
    }
}

/// Sends `range` of `file` onto `tx` (a blocking thread), chunk by chunk. A chunk of a stored
/// file (`seen`) is read whole and checked against the manifest before any of it is sent,
/// unless it was checked lately, so a holder never serves bytes that changed on its disk; a
/// partial file's chunks were checked as they arrived, and what needs no check is read block by
/// block into the state's reused blocks. Stops when the peer hangs up; returns the index of a
/// chunk that failed its check.
fn send_file(
    file: &std::fs::File,
    manifest: &Manifest,
    range: Range<u64>,
    tx: &mpsc::Sender<Result<Bytes, Infallible>>,
    metrics: &super::metrics::SyncMetrics,
    limit: &super::state::SyncState,
    seen: Option<&Seen<'_>>,
) -> Result<(), usize> {
    // Sends one block within the serving limit; false when the peer hung up.
    let send = |data: Bytes| {
        let wait = limit.serve_wait(data.len() as u64);
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        metrics.moved("out", "served", data.len() as u64);
        tx.blocking_send(Ok(data)).is_ok()
    };
    let block = limit.blocks.size();
    let chunk_size = manifest.chunk_size.max(1);
    let first = usize::try_from(range.start / chunk_size).unwrap_or(usize::MAX);
    let mut index = first;
    while index < manifest.len() {
        let chunk = manifest.range(index);
        if chunk.start >= range.end {
            break;
        }
        let part = range.start.max(chunk.start)..range.end.min(chunk.end);
        if let Some(s) = seen.filter(|s| !s.checked(index)) {
            let Some(buf) = read_at(file, chunk.clone()) else {
                return Ok(()); // the peer sees a short body and asks another holder
            };
            if !manifest.verify(index, &buf) {
                return Err(index);
            }
            s.record(index, manifest.len());
            let from = usize::try_from(part.start - chunk.start).unwrap_or(0);
            let to = usize::try_from(part.end - chunk.start).unwrap_or(0);
            let data = Bytes::from(buf).slice(from..to);
            for at in (0..data.len()).step_by(block) {
                if !send(data.slice(at..(at + block).min(data.len()))) {
                    return Ok(());
                }
            }
        } else {
            let mut at = part.start;
            while at < part.end {
                let end = (at + block as u64).min(part.end);
                let Some(data) = limit.blocks.read(file, at..end) else {
                    return Ok(());
                };
                if !send(data) {
                    return Ok(());
                }
                at = end;
            }
        }
        index += 1;
    }
    Ok(())
}

/// Bytes `range` of `file`, read into fresh memory without zeroing it first; `None` when they
/// cannot all be read.
fn read_at(mut file: &std::fs::File, range: Range<u64>) -> Option<Vec<u8>> {
    let len = usize::try_from(range.end - range.start).ok()?;
    let mut buf = Vec::with_capacity(len);
    file.seek(SeekFrom::Start(range.start)).ok()?;
    file.take(len as u64).read_to_end(&mut buf).ok()?;
    (buf.len() == len).then_some(buf)
}

/// A held artifact whose bytes no longer match: never served again. A whole artifact is
/// dropped from the index and deleted (a later pull fetches it again); a partial one has the
/// chunk unmarked.
async fn corrupt(ctx: &Context, digest: &str, chunk: usize, whole: bool) {
    ctx.metrics.verification_failures.inc();
    tracing::error!(%digest, chunk, "stored artifact failed its chunk check; no longer serving it");
    ctx.content.checked().forget(digest);
    if whole {
        let _ = ctx.db.remove_artifact(digest).await;
        if let Some(path) = ctx.content.path(digest) {
            let _ = tokio::fs::remove_file(path).await;
        }
    } else if let Some(p) = ctx.state.partials.get(digest) {
        p.unmark(chunk);
    }
}
