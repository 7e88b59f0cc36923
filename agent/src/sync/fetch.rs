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
use super::context::Context;
use super::gate::Class;
use super::holder::{Holder, PullError, local_io};
use super::manifest::Manifest;
use super::partial::Partial;
use super::plan::{Ban, Outcome, Planner};
use super::receive::ChunkSink;

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
/// is the pull's, with the chunks they have (`None`: all) and how often they sent each lately
/// (when they said).
type Asked = Vec<(String, Peer, Option<Vec<bool>>, Option<Vec<u8>>)>;

/// A round of asking: the answers, the connections to ask on next time (by peer), and the
/// peers that could not be reached (refused, cut, or silent past [`ASK_TIMEOUT`]).
#[derive(Default)]
struct Round {
    asked: Asked,
    kept: Vec<(String, Conn)>,
    unanswered: Vec<String>,
}

/// Asks `peers` at once what they have of `manifest`'s artifact, each within a second, on the
/// connection kept from the last round when there is one (a new TLS session every half second
/// to every peer was most of what a swarm on one machine spent besides the bytes). Returns the
/// answers and the connections to keep for the next round.
async fn ask(peers: Vec<(String, Peer, Option<Conn>)>, manifest: Arc<Manifest>) -> Round {
    let asks = peers.into_iter().map(|(name, peer, mut conn)| {
        let manifest = manifest.clone();
        async move {
            let (answer, reached) =
                match tokio::time::timeout(ASK_TIMEOUT, peer.chunks(&mut conn, &manifest.digest)).await {
                    Ok(Ok(c)) if c.manifest == *manifest => (Some((name.clone(), peer, c.have(), c.sent())), true),
                    Ok(Ok(_)) => {
                        tracing::warn!(holder = %name, digest = %manifest.digest, "holder's manifest differs; not asking it");
                        (None, true)
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(holder = %name, error = %e, "holder unavailable");
                        (None, false)
                    }
                    Err(_) => (None, false),
                };
            let kept = answer.as_ref().and(conn).map(|c| (name.clone(), c));
            (answer, kept, (!reached).then_some(name))
        }
    });
    let mut round = Round::default();
    for (answer, kept, unanswered) in futures_util::future::join_all(asks).await {
        round.asked.extend(answer);
        round.kept.extend(kept);
        round.unanswered.extend(unanswered);
    }
    round
}

/// The answers of a round of asking, once in (never, when none is under way).
async fn answered(refresh: &mut Option<tokio::task::JoinHandle<Round>>) -> Round {
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
#[allow(clippy::too_many_arguments)]
pub(super) async fn chunks(
    ctx: &Context,
    manifest: &Manifest,
    peers: &[(Holder, Peer)],
    distrusted: &HashSet<String>,
    class: Class,
    partial: &Arc<Partial>,
    file: &Arc<std::fs::File>,
    done: &[bool],
    bad_data: &mut Vec<String>,
) -> Result<(), PullError> {
    let planner = Planner::new(manifest.len(), done).offset(offset_of(&ctx.name, manifest.len()));
    if planner.is_done() {
        return Ok(());
    }
    // Every peer known by name (asked or not).
    let mut known: Vec<(String, Peer)> = peers
        .iter()
        .filter(|(h, _)| !distrusted.contains(&h.name))
        .map(|(h, p)| (h.name.clone(), p.clone()))
        .collect();
    let mut fetch = Fetch {
        ctx,
        manifest: Arc::new(manifest.clone()),
        class,
        partial,
        file,
        planner,
        usable: Vec::new(),
        idle: HashMap::new(),
        busy: HashMap::new(),
        last_progress: Instant::now(),
        last_record: Instant::now(),
        recording: None,
        tally: Tally::default(),
    };
    let began = Instant::now();
    let first: Vec<(String, Peer, Option<Conn>)> =
        known.iter().map(|(n, p)| (n.clone(), p.clone(), None)).collect();
    let round = ask(first, fetch.manifest.clone()).await;
    fetch.add(round.asked);
    // Connections kept for asking each peer again.
    let mut ask_conns: HashMap<String, Conn> = round.kept.into_iter().collect();
    let mut in_flight = FuturesUnordered::new();
    let mut refresh: Option<tokio::task::JoinHandle<Round>> = None;
    let mut next_refresh = tokio::time::Instant::now() + REFRESH;
    loop {
        fetch.start(&mut in_flight);
        fetch.tally.level(in_flight.len());
        if in_flight.is_empty() {
            if fetch.planner.is_done() {
                break;
            }
            fetch.tally.idle_since.get_or_insert_with(Instant::now);
            if fetch.stalled() {
                fetch.record().await;
                return Err(PullError::Stalled {
                    digest: manifest.digest.clone(),
                    remaining: fetch.planner.remaining(),
                    usable: fetch.planner.usable(),
                });
            }
        }
        let busy_until = fetch.busy.values().min().copied();
        tokio::select! {
            Some(next) = in_flight.next(), if !in_flight.is_empty() => {
                let Some(fetched) = next else {
                    return Err(local_io("receive", &partial.path)(std::io::Error::other(
                        "a chunk request ended abnormally",
                    )));
                };
                fetch.finished(fetched, bad_data)?;
            }
            round = answered(&mut refresh), if refresh.is_some() => {
                refresh = None;
                next_refresh = tokio::time::Instant::now() + REFRESH;
                fetch.unanswered(&round.unanswered);
                fetch.add(round.asked);
                ask_conns.extend(round.kept);
            }
            () = tokio::time::sleep_until(busy_until.unwrap_or(next_refresh)), if busy_until.is_some() => {}
            () = tokio::time::sleep_until(next_refresh), if refresh.is_none() => {
                join_gossiped(ctx, &manifest.digest, distrusted, &mut known);
                // Ask the partial holders, those not asked yet, and whole holders whose send
                // counts steer the plan (a whole holder stays whole).
                let ask_now: Vec<(String, Peer, Option<Conn>)> = known
                    .iter()
                    .filter(|(name, _)| !fetch.planner.settled(name))
                    .map(|(name, peer)| (name.clone(), peer.clone(), ask_conns.remove(name)))
                    .collect();
                refresh = Some(tokio::spawn(ask(ask_now, fetch.manifest.clone())));
            }
        }
    }
    fetch.record().await;
    let t = &fetch.tally;
    tracing::debug!(
        digest = %manifest.digest, secs = began.elapsed().as_secs_f64(), requests = t.requests,
        busy = t.busy, failed = t.failed, from_whole = t.from_whole, from_partial = t.from_partial,
        idle_secs = t.idle.as_secs_f64(), mean_in_flight = t.weighted / began.elapsed().as_secs_f64().max(1e-9),
        holders = fetch.usable.len(), "chunks fetched"
    );
    Ok(())
}

/// Adds to `known` the holders gossip names now (other pullers, new whole holders). They are
/// trusted by the fingerprints the API publishes: one not listed yet is looked up in the
/// background, for the next round.
fn join_gossiped(ctx: &Context, digest: &str, distrusted: &HashSet<String>, known: &mut Vec<(String, Peer)>) {
    let (whole, pulling) = ctx.state.holders_of(digest);
    let mut unpinned = false;
    for (name, endpoint) in whole.into_iter().chain(pulling) {
        if name == ctx.name || distrusted.contains(&name) || known.iter().any(|(k, _)| *k == name) {
            continue;
        }
        let fingerprint = ctx.state.pins.cached(&name).and_then(|p| p.fingerprint);
        if fingerprint.is_none() && !ctx.state.plain_peers {
            unpinned = true;
            continue;
        }
        let holder = Holder {
            name: name.clone(),
            endpoint,
            fingerprint,
        };
        if let Some(peer) = super::holder::peer(ctx, &holder) {
            known.push((name, peer));
        }
    }
    if unpinned {
        let (pins, client) = (ctx.state.pins.clone(), ctx.client.clone());
        tokio::spawn(async move { pins.refresh(&client).await });
    }
}

/// One pull's fetching between rounds: the plan, the holders it can use (by their planner
/// index), idle connections to reuse, holders that answered Busy (not asked again until the
/// time given), and when it last made and recorded progress.
struct Fetch<'a> {
    ctx: &'a Context,
    manifest: Arc<Manifest>,
    class: Class,
    partial: &'a Arc<Partial>,
    file: &'a Arc<std::fs::File>,
    planner: Planner,
    usable: Vec<(usize, Peer)>,
    idle: HashMap<usize, Vec<Conn>>,
    busy: HashMap<usize, tokio::time::Instant>,
    last_progress: Instant,
    last_record: Instant,
    /// The progress record being written in the background, if one is.
    recording: Option<tokio::task::JoinHandle<()>>,
    tally: Tally,
}

/// What one pull's requests came to, logged when it ends (how a swarm behaved).
#[derive(Debug, Default)]
struct Tally {
    requests: u32,
    busy: u32,
    failed: u32,
    from_whole: u32,
    from_partial: u32,
    /// Time with nothing in flight while chunks were missing.
    idle: Duration,
    idle_since: Option<Instant>,
    /// Requests in flight integrated over time (seconds), and the level since `at`.
    weighted: f64,
    at: Option<(Instant, usize)>,
}

impl Tally {
    /// Records that `n` requests are in flight from now on.
    #[allow(clippy::cast_precision_loss)]
    fn level(&mut self, n: usize) {
        let now = Instant::now();
        if let Some((at, level)) = self.at {
            self.weighted += now.duration_since(at).as_secs_f64() * level as f64;
        }
        self.at = Some((now, n));
    }
}

impl Fetch<'_> {
    /// Makes the holders of a round of asking usable, with what they have.
    fn add(&mut self, asked: Asked) {
        for (name, peer, have, sent) in asked {
            let i = self.planner.holder(&name, have);
            self.planner.sent(i, sent);
            if !self.usable.iter().any(|(u, _)| *u == i) {
                self.usable.push((i, peer));
            }
        }
    }

    /// Counts a failed ask of each holder in use that could not be reached, as a failed chunk
    /// request would: one that stays unreachable is dropped after [`super::plan::MAX_FAILURES`]
    /// in a row, even when the plan had nothing to ask it for in the meantime.
    fn unanswered(&mut self, names: &[String]) {
        for name in names {
            let Some(h) = self
                .usable
                .iter()
                .map(|(h, _)| *h)
                .find(|h| self.planner.name(*h) == name)
            else {
                continue;
            };
            if let Some(ban) = self.planner.unanswered(h) {
                dropped(self.ctx, name, &self.manifest.digest, ban);
            }
        }
    }

    /// Starts the requests the plan allows, one at a time to the holder this pull asks least
    /// at the moment (so every puller's requests, and the swarm's load, spread over all the
    /// holders, not the first few every puller lists alike): per holder not busy, up to
    /// [`PER_HOLDER`], and no more than the agent's request slots in all.
    fn start(&mut self, in_flight: &mut FuturesUnordered<Request>) {
        let now = tokio::time::Instant::now();
        self.busy.retain(|_, until| *until > now);
        let most = self.ctx.state.gate.slots();
        // Holders with nothing more for this pull until something changes.
        let mut spent: HashSet<usize> = HashSet::new();
        let rotation = offset_of(&self.ctx.name, self.usable.len());
        while in_flight.len() < most {
            let open = self.usable.iter().map(|(h, _)| *h).filter(|h| {
                !self.busy.contains_key(h) && !spent.contains(h) && self.planner.in_flight(*h) < PER_HOLDER
            });
            let Some(h) = self.planner.least_loaded(open, rotation) else {
                break;
            };
            let Some(c) = self.planner.next(h) else {
                spent.insert(h);
                continue;
            };
            let Some(peer) = self.usable.iter().find(|(u, _)| *u == h).map(|(_, p)| p.clone()) else {
                break;
            };
            let conn = self.idle.get_mut(&h).and_then(Vec::pop);
            in_flight.push(self.request(peer, h, c, conn));
            self.tally.requests += 1;
            if let Some(since) = self.tally.idle_since.take() {
                self.tally.idle += since.elapsed();
            }
        }
    }

    /// Chunk `c` from holder `h`, as a task of its own: its bytes checked and written as they
    /// arrive.
    fn request(&self, peer: Peer, h: usize, c: usize, mut conn: Option<Conn>) -> Request {
        let range = self.manifest.range(c);
        let gate = self.ctx.state.gate.clone();
        let metrics = self.ctx.metrics.clone();
        let (manifest, file, class) = (self.manifest.clone(), self.file.clone(), self.class);
        Request(tokio::spawn(async move {
            let _permit = gate.acquire(class).await;
            let mut sink = ChunkSink::new(&manifest, c, &file);
            let result = peer
                .range(&mut conn, &manifest.digest, range, &gate, |data| {
                    metrics.moved("in", class.as_str(), data.len() as u64);
                    sink.push(data)
                })
                .await;
            (h, c, conn, result.map(|()| sink.finish())) as Fetched
        }))
    }

    /// Counts a finished request: its connection kept, a busy holder left alone a moment, a
    /// verified chunk marked, a failing or lying holder dropped (into `bad_data` when it lied),
    /// progress recorded now and then. `Err` for this agent's own write error.
    fn finished(
        &mut self,
        (holder, chunk, conn, result): Fetched,
        bad_data: &mut Vec<String>,
    ) -> Result<(), PullError> {
        let outcome = outcome(self.ctx, &self.planner, holder, chunk, result)
            .map_err(|e| local_io("write", &self.partial.path)(e))?;
        if let Some(conn) = conn {
            self.idle.entry(holder).or_default().push(conn);
        }
        match outcome {
            Outcome::Busy => {
                self.tally.busy += 1;
                self.busy
                    .insert(holder, tokio::time::Instant::now() + BUSY_BACKOFF);
            }
            Outcome::Verified => {
                if self.planner.whole(holder) {
                    self.tally.from_whole += 1;
                } else {
                    self.tally.from_partial += 1;
                }
                self.partial.mark(chunk);
                self.last_progress = Instant::now();
            }
            Outcome::Transient | Outcome::Corrupt => self.tally.failed += 1,
        }
        if let Some(ban) = self.planner.finish(chunk, holder, outcome) {
            let name = self.planner.name(holder);
            dropped(self.ctx, name, &self.manifest.digest, ban);
            if ban == Ban::BadData {
                bad_data.push(name.to_owned());
            }
        }
        // Now and then, in the background (a commit waits for the disk; the pull goes on): at
        // most one at a time, a later one catching up what one skipped.
        if self.last_record.elapsed() > RECORD_EVERY
            && self
                .recording
                .as_ref()
                .is_none_or(tokio::task::JoinHandle::is_finished)
        {
            self.last_record = Instant::now();
            let (db, digest, done) = (
                self.ctx.db.clone(),
                self.manifest.digest.clone(),
                bits(&self.planner.done()),
            );
            self.recording = Some(tokio::spawn(async move {
                if let Err(e) = db.transfer_progress(&digest, &done).await {
                    tracing::warn!(%digest, error = %e, "could not record the pull's progress");
                }
            }));
        }
        Ok(())
    }

    /// Whether the pull should give up: no progress for [`STALL`], or chunks no usable holder
    /// can serve.
    fn stalled(&self) -> bool {
        self.last_progress.elapsed() > STALL
            || (self.planner.stuck() && self.usable.iter().all(|(h, _)| self.planner.ban(*h).is_some()))
    }

    /// Records the pull's progress, so a later try resumes from it.
    async fn record(&mut self) {
        if let Some(r) = self.recording.take() {
            let _ = r.await;
        }
        record(self.ctx, &self.manifest.digest, &self.planner).await;
    }
}

/// How a finished chunk request counts; `Err` for this agent's own write error.
fn outcome(
    ctx: &Context,
    planner: &Planner,
    holder: usize,
    chunk: usize,
    result: Result<bool, FetchError>,
) -> Result<Outcome, std::io::Error> {
    Ok(match result {
        Ok(true) => Outcome::Verified,
        Ok(false) => {
            ctx.metrics.verification_failures.inc();
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
fn dropped(ctx: &Context, name: &str, digest: &str, ban: Ban) {
    let reason = match ban {
        Ban::BadData => {
            ctx.state.penalize(name);
            "bad_data"
        }
        Ban::Unreachable => "unreachable",
    };
    tracing::warn!(holder = %name, %digest, reason, "holder dropped from the pull");
    ctx.metrics
        .holders_dropped
        .get_or_create(&super::metrics::ReasonLabels {
            reason: reason.into(),
        })
        .inc();
}

async fn record(ctx: &Context, digest: &str, planner: &Planner) {
    if let Err(e) = ctx.db.transfer_progress(digest, &bits(&planner.done())).await {
        tracing::warn!(%digest, error = %e, "could not record the pull's progress");
    }
}

fn bits(done: &[bool]) -> String {
    done.iter().map(|d| if *d { '1' } else { '0' }).collect()
}
