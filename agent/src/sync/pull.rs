//! Pulling an artifact from its holders: the manifest from one holder, then chunks from all of
//! them at once, each hashed as it arrives and counted only when it checks out (see
//! [`super::receive`]), progress recorded so an interrupted pull resumes. The manifest's last
//! chunk state is the wanted digest, so when every chunk checks out the whole has that digest
//! ([`super::chain`]) and the file is renamed into the store without being read again. A holder
//! that serves bad bytes is dropped and penalized; one that dies mid-transfer leaves its chunks
//! to the others.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use ringrift_crds::common::Artifact;

use super::checked::FileId;
use super::client::{Conn, FetchError, Peer};
use super::gate::Class;
use super::manifest::Manifest;
use super::plan::{Ban, Outcome, Planner};
use super::receive::ChunkSink;
use super::serve::Partial;
use crate::artifacts::{ArtifactError, kind_name};
use crate::node::Node;
use crate::store::TransferRow;

/// Concurrent requests to one holder.
const PER_HOLDER: usize = 3;
/// A pull that makes no progress this long gives up (its progress stays for the next try).
const STALL: Duration = Duration::from_secs(60);
/// Least time between progress records.
const RECORD_EVERY: Duration = Duration::from_millis(500);
/// How often holders are asked again what they have, and gossip for new holders.
const REFRESH: Duration = Duration::from_millis(500);
/// How long a holder that answered Busy is left alone.
const BUSY_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait for a holder's answer to what it has.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);
/// Manifests tried before a pull gives up.
const MAX_ROUNDS: usize = 4;

/// A holder to pull from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Agent name.
    pub name: String,
    /// REST endpoint.
    pub endpoint: String,
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// No holder answered with a valid manifest.
    #[error("no holder of {digest} could serve it (asked: {asked}); last error: {last}")]
    NoHolder {
        /// The artifact.
        digest: String,
        /// Holders asked.
        asked: String,
        /// The last error.
        last: String,
        /// Every holder asked refused this agent's credentials (asking again will not help).
        denied: bool,
    },
    /// No progress for a minute.
    #[error("pull of {digest} stalled with {remaining} chunks missing; holders left: {usable}")]
    Stalled {
        /// The artifact.
        digest: String,
        /// Chunks missing.
        remaining: usize,
        /// Holders still usable.
        usable: usize,
    },
    /// Every manifest tried was refuted by the bytes.
    #[error("{0} did not verify after {MAX_ROUNDS} rounds")]
    NeverVerified(String),
    /// Local trouble.
    #[error(transparent)]
    Local(#[from] ArtifactError),
}

impl From<crate::store::StoreError> for PullError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Local(ArtifactError::Store(e))
    }
}

fn local_io(action: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> PullError {
    let path = path.display().to_string();
    move |source| PullError::Local(ArtifactError::Io { action, path, source })
}

struct ActiveGuard<'a>(&'a Node);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.metrics.sync.active_transfers.dec();
    }
}

/// Whether the content of `digest` is in the store.
pub async fn held(node: &Node, artifact: &Artifact) -> bool {
    let Some(path) = node.content.path(&artifact.digest) else {
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
pub async fn pull(
    node: &Node,
    artifact: &Artifact,
    holders: &[Holder],
    class: Class,
) -> Result<(), PullError> {
    let digest = artifact.digest.as_str();
    let lock = node.sync.lock(digest);
    let _one_pull = lock.lock().await;
    if held(node, artifact).await {
        let _ = node.db.touch_artifact(digest).await;
        return Ok(());
    }
    node.metrics.sync.active_transfers.inc();
    let _active = ActiveGuard(node);
    let started = Instant::now();
    let result = rounds(node, artifact, holders, class).await;
    let label = if result.is_ok() { "ok" } else { "failed" };
    node.metrics
        .sync
        .transfers
        .get_or_create(&crate::metrics::ResultLabels { result: label.into() })
        .inc();
    node.sync.partials.remove(digest);
    match &result {
        Ok(()) => tracing::info!(
            artifact = %artifact.name, %digest, bytes = artifact.size_bytes,
            secs = started.elapsed().as_secs_f64(), "artifact pulled"
        ),
        Err(e) => tracing::warn!(artifact = %artifact.name, %digest, error = %e, "pull failed"),
    }
    result
}

async fn rounds(node: &Node, artifact: &Artifact, holders: &[Holder], class: Class) -> Result<(), PullError> {
    let digest = artifact.digest.as_str();
    let peers: Vec<(Holder, Peer)> = holders
        .iter()
        .filter_map(|h| {
            Peer::new(&h.endpoint, &node.sync.fetch_token)
                .ok()
                .map(|p| (h.clone(), p))
        })
        .collect();
    let mut distrusted: HashSet<String> = HashSet::new();
    for _ in 0..MAX_ROUNDS {
        let (manifest, source) = manifest(node, artifact, &peers, &distrusted, class).await?;
        let (path, file) = open_partial(node, &manifest).await?;
        let file = Arc::new(file);
        let recorded: Vec<bool> = node
            .db
            .transfer(digest)
            .await?
            .map(|r| r.done.chars().map(|c| c == '1').collect())
            .unwrap_or_default();
        let done = recheck(&manifest, &file, recorded, &path).await?;
        let partial = node
            .sync
            .partials
            .insert(manifest.clone(), path.clone(), done.clone());
        let mut bad_data = Vec::new();
        let result = chunks(
            node,
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
        node.sync.partials.remove(digest);
        match result {
            Ok(()) => {
                let id = file
                    .metadata()
                    .map(|m| FileId::of(&m))
                    .map_err(local_io("read", &path))?;
                drop(file);
                let dest = node
                    .content
                    .admit(
                        &node.db,
                        &path,
                        &artifact.name,
                        kind_name(artifact.kind),
                        &manifest,
                    )
                    .await?;
                // Every chunk was checked on its way into this file: serving it needs no
                // second look while the file stays as written.
                node.content
                    .checked_whole(digest, &dest, id, manifest.len())
                    .await;
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
                    node.sync.penalize(&s);
                    distrusted.insert(s);
                }
                node.db.drop_transfer(digest).await?;
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
async fn open_partial(node: &Node, manifest: &Manifest) -> Result<(PathBuf, std::fs::File), PullError> {
    let path = node
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

fn bits(done: &[bool]) -> String {
    done.iter().map(|d| if *d { '1' } else { '0' }).collect()
}

/// The manifest to pull by: the one recorded (a resumed pull) or the first valid one a trusted
/// holder gives. Returns the holder it came from.
async fn manifest(
    node: &Node,
    artifact: &Artifact,
    peers: &[(Holder, Peer)],
    distrusted: &HashSet<String>,
    class: Class,
) -> Result<(Manifest, Option<String>), PullError> {
    let digest = artifact.digest.as_str();
    if let Some(t) = node.db.transfer(digest).await? {
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
        node.db.drop_transfer(digest).await?;
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
                    node.db
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

/// How one chunk request ended: holder, chunk, the connection to reuse, and whether the bytes
/// checked out.
type Fetched = (usize, usize, Option<Conn>, Result<bool, FetchError>);

/// A chunk request running as a task of its own (so chunks are hashed on every core), stopped
/// when the pull stops.
struct Request(tokio::task::JoinHandle<Fetched>);

impl std::future::Future for Request {
    type Output = Option<Fetched>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(Result::ok)
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a round of asking holders what they have found: holders (name, peer) whose manifest
/// is the pull's, with the chunks they have (`None`: all).
type Asked = Vec<(String, Peer, Option<Vec<bool>>)>;

/// Asks `peers` at once what they have of `manifest`'s artifact, each within a second.
async fn ask(peers: Vec<(String, Peer)>, manifest: Arc<Manifest>) -> Asked {
    let asks = peers.into_iter().map(|(name, peer)| {
        let manifest = manifest.clone();
        async move {
            let mut conn = None;
            match tokio::time::timeout(ASK_TIMEOUT, peer.chunks(&mut conn, &manifest.digest)).await {
                Ok(Ok(c)) if c.manifest == *manifest => Some((name, peer, c.have())),
                Ok(Ok(_)) => {
                    tracing::warn!(holder = %name, digest = %manifest.digest, "holder's manifest differs; not asking it");
                    None
                }
                Ok(Err(e)) => {
                    tracing::debug!(holder = %name, error = %e, "holder unavailable");
                    None
                }
                Err(_) => None,
            }
        }
    });
    futures_util::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The answers of a round of asking, once in (never, when none is under way).
async fn answered(refresh: &mut Option<tokio::task::JoinHandle<Asked>>) -> Asked {
    match refresh {
        Some(r) => r.await.unwrap_or_default(),
        None => std::future::pending().await,
    }
}

/// A number from a name, to turn this puller's starting points by (see [`Planner::offset`]).
fn offset_of(name: &str, count: usize) -> usize {
    let sum = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    usize::try_from(sum % count.max(1) as u64).unwrap_or(0)
}

/// Fetches every missing chunk into `file`: `PER_HOLDER` requests per holder and no more than
/// the agent's request slots at a time. Every [`REFRESH`] the holders are asked again what they
/// have, and holders gossip has learnt of since are added (pullers of the same artifact serve
/// each other the chunks they have). Adds to `bad_data` the holders that served bytes that did
/// not check out.
#[allow(clippy::too_many_arguments, clippy::too_many_lines)]
async fn chunks(
    node: &Node,
    manifest: &Manifest,
    peers: &[(Holder, Peer)],
    distrusted: &HashSet<String>,
    class: Class,
    partial: &Arc<Partial>,
    file: &Arc<std::fs::File>,
    done: &[bool],
    bad_data: &mut Vec<String>,
) -> Result<(), PullError> {
    let digest = manifest.digest.as_str();
    let mut planner = Planner::new(manifest.len(), done).offset(offset_of(&node.name, manifest.len()));
    if planner.is_done() {
        return Ok(());
    }
    let shared = Arc::new(manifest.clone());
    // Holders by their planner index; every peer known by name (asked or not).
    let mut usable: Vec<(usize, Peer)> = Vec::new();
    let mut known: Vec<(String, Peer)> = peers
        .iter()
        .filter(|(h, _)| !distrusted.contains(&h.name))
        .map(|(h, p)| (h.name.clone(), p.clone()))
        .collect();
    let add = |planner: &mut Planner, usable: &mut Vec<(usize, Peer)>, asked: Asked| {
        for (name, peer, have) in asked {
            let i = planner.holder(&name, have);
            if !usable.iter().any(|(u, _)| *u == i) {
                usable.push((i, peer));
            }
        }
    };
    add(
        &mut planner,
        &mut usable,
        ask(known.clone(), shared.clone()).await,
    );
    let most = node.sync.gate.slots();
    let mut idle: HashMap<usize, Vec<Conn>> = HashMap::new();
    let mut in_flight = FuturesUnordered::new();
    let mut refresh: Option<tokio::task::JoinHandle<Asked>> = None;
    // Holders that answered Busy, not asked again until the time given.
    let mut busy: HashMap<usize, tokio::time::Instant> = HashMap::new();
    let mut next_refresh = tokio::time::Instant::now() + REFRESH;
    let mut last_progress = Instant::now();
    let mut last_record = Instant::now();
    loop {
        let now = tokio::time::Instant::now();
        busy.retain(|_, until| *until > now);
        for (h, peer) in &usable {
            let h = *h;
            while !busy.contains_key(&h)
                && in_flight.len() < most
                && planner.in_flight(h) < PER_HOLDER
                && let Some(c) = planner.next(h)
            {
                let mut conn = idle.get_mut(&h).and_then(Vec::pop);
                let range = manifest.range(c);
                let gate = node.sync.gate.clone();
                let metrics = node.metrics.sync.clone();
                let (peer, manifest, file) = (peer.clone(), shared.clone(), file.clone());
                in_flight.push(Request(tokio::spawn(async move {
                    let _permit = gate.acquire(class).await;
                    let mut sink = ChunkSink::new(&manifest, c, &file);
                    let result = peer
                        .range(&mut conn, &manifest.digest, range, &gate, |data| {
                            metrics.moved("in", class.as_str(), data.len() as u64);
                            sink.push(data)
                        })
                        .await;
                    (h, c, conn, result.map(|()| sink.finish())) as Fetched
                })));
            }
        }
        if in_flight.is_empty() {
            if planner.is_done() {
                break;
            }
            if last_progress.elapsed() > STALL
                || (planner.stuck() && usable.iter().all(|(h, _)| planner.ban(*h).is_some()))
            {
                record(node, digest, &planner).await;
                return Err(PullError::Stalled {
                    digest: digest.to_owned(),
                    remaining: planner.remaining(),
                    usable: planner.usable(),
                });
            }
        }
        tokio::select! {
            Some(next) = in_flight.next(), if !in_flight.is_empty() => {
                let Some((holder, chunk, conn, result)) = next else {
                    return Err(local_io("receive", &partial.path)(std::io::Error::other(
                        "a chunk request ended abnormally",
                    )));
                };
                let outcome = outcome(node, &planner, holder, chunk, result)
                    .map_err(|e| local_io("write", &partial.path)(e))?;
                if let Some(conn) = conn {
                    idle.entry(holder).or_default().push(conn);
                }
                if outcome == Outcome::Busy {
                    busy.insert(holder, tokio::time::Instant::now() + BUSY_BACKOFF);
                }
                if outcome == Outcome::Verified {
                    partial.mark(chunk);
                    last_progress = Instant::now();
                }
                if let Some(ban) = planner.finish(chunk, holder, outcome) {
                    dropped(node, planner.name(holder), digest, ban);
                    if ban == Ban::BadData {
                        bad_data.push(planner.name(holder).to_owned());
                    }
                }
                if last_record.elapsed() > RECORD_EVERY {
                    last_record = Instant::now();
                    record(node, digest, &planner).await;
                }
            }
            asked = answered(&mut refresh), if refresh.is_some() => {
                refresh = None;
                next_refresh = tokio::time::Instant::now() + REFRESH;
                add(&mut planner, &mut usable, asked);
            }
            () = tokio::time::sleep_until(busy.values().min().copied().unwrap_or(next_refresh)), if !busy.is_empty() => {}
            () = tokio::time::sleep_until(next_refresh), if refresh.is_none() => {
                // Holders gossip names now (other pullers, new whole holders) join the known.
                let (whole, pulling) = node.sync.holders_of(digest);
                for (name, endpoint) in whole.into_iter().chain(pulling) {
                    if name != node.name
                        && !distrusted.contains(&name)
                        && !known.iter().any(|(k, _)| *k == name)
                        && let Ok(peer) = Peer::new(&endpoint, &node.sync.fetch_token)
                    {
                        known.push((name, peer));
                    }
                }
                // Ask the partial holders and those not asked yet (a whole holder stays whole).
                let ask_now: Vec<(String, Peer)> = known
                    .iter()
                    .filter(|(name, _)| planner.has_all(name) != Some(true))
                    .cloned()
                    .collect();
                refresh = Some(tokio::spawn(ask(ask_now, shared.clone())));
            }
        }
    }
    record(node, digest, &planner).await;
    Ok(())
}

/// How a finished chunk request counts; `Err` for this agent's own write error.
fn outcome(
    node: &Node,
    planner: &Planner,
    holder: usize,
    chunk: usize,
    result: Result<bool, FetchError>,
) -> Result<Outcome, std::io::Error> {
    Ok(match result {
        Ok(true) => Outcome::Verified,
        Ok(false) => {
            node.metrics.sync.verification_failures.inc();
            tracing::warn!(holder = planner.name(holder), chunk, "chunk failed verification");
            Outcome::Corrupt
        }
        Err(FetchError::Local(error)) => return Err(error),
        // A partial holder asked for a chunk it no longer claims: not its fault.
        Err(FetchError::Status(_, 416, _)) => Outcome::Transient,
        Err(FetchError::Status(_, 503, body)) if body.contains("\"Busy\"") => Outcome::Busy,
        Err(e) => {
            tracing::debug!(holder = planner.name(holder), chunk, error = %e, "chunk request failed");
            Outcome::Transient
        }
    })
}

/// Logs and counts a holder dropped from a pull (and penalizes one that served bad data).
fn dropped(node: &Node, name: &str, digest: &str, ban: Ban) {
    let reason = match ban {
        Ban::BadData => {
            node.sync.penalize(name);
            "bad_data"
        }
        Ban::Unreachable => "unreachable",
    };
    tracing::warn!(holder = %name, %digest, reason, "holder dropped from the pull");
    node.metrics
        .sync
        .holders_dropped
        .get_or_create(&super::metrics::ReasonLabels {
            reason: reason.into(),
        })
        .inc();
}

async fn record(node: &Node, digest: &str, planner: &Planner) {
    if let Err(e) = node.db.transfer_progress(digest, &bits(&planner.done())).await {
        tracing::warn!(%digest, error = %e, "could not record the pull's progress");
    }
}
