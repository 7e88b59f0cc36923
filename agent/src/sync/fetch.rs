//! Fetching the missing chunks of one pull from every holder at once: each request a task of
//! its own, its bytes written and checked as they arrive ([`super::receive`]); holders asked
//! again what they have as the pull goes, pullers gossip names added (so pullers of one
//! artifact serve each other), busy holders left alone a moment, failing or lying ones dropped
//! ([`super::plan`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;

use super::client::{Conn, FetchError, Peer};
use super::gate::Class;
use super::manifest::Manifest;
use super::plan::{Ban, Outcome, Planner};
use super::pull::{Holder, PullError, local_io};
use super::receive::ChunkSink;
use super::serve::Partial;
use crate::node::Node;

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
pub(super) async fn chunks(
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
                // They are trusted by the fingerprints the API publishes: one not listed yet is
                // looked up for the next round.
                let (whole, pulling) = node.sync.holders_of(digest);
                let mut unpinned = false;
                for (name, endpoint) in whole.into_iter().chain(pulling) {
                    if name == node.name || distrusted.contains(&name) || known.iter().any(|(k, _)| *k == name) {
                        continue;
                    }
                    let fingerprint = node.sync.pins.cached(&name).and_then(|p| p.fingerprint);
                    if fingerprint.is_none() && !node.sync.plain_peers {
                        unpinned = true;
                        continue;
                    }
                    let holder = Holder { name: name.clone(), endpoint, fingerprint };
                    if let Some(peer) = super::pull::peer(node, &holder) {
                        known.push((name, peer));
                    }
                }
                if unpinned {
                    let (pins, client) = (node.sync.pins.clone(), node.client.clone());
                    tokio::spawn(async move { pins.refresh(&client).await });
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

fn bits(done: &[bool]) -> String {
    done.iter().map(|d| if *d { '1' } else { '0' }).collect()
}
