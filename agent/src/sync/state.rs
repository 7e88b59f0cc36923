//! What the sync parts of an agent share: the bandwidth gate, the pulls in progress (served to
//! peers), the holders penalized for bad data, one lock per digest so an artifact is pulled
//! once however many tasks want it, and the gossip view (who holds what) pulls read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::gate::{Bucket, Gate};
use super::partial::Partials;
use crate::gossip::Member;
use crate::gossip::state::raw_digest;

/// How long a holder that served bad data is avoided.
pub const PENALTY: Duration = Duration::from_secs(600);

/// Responses with content an agent sends at once unless told otherwise: few enough that each
/// moves fast and a new artifact's chunks spread from its first holder to pullers that then
/// serve each other (a swarm), rather than every puller trickling from one holder.
pub const DEFAULT_SERVE_SLOTS: usize = 4;

/// The size of the blocks a response is read and sent in.
pub const SERVE_BLOCK: usize = 1024 * 1024;

/// Blocks for `slots` responses at once: each holds at most the blocks in its body's channel,
/// one in the HTTP stack and one being read.
fn serve_blocks(slots: usize) -> Arc<super::blocks::Blocks> {
    super::blocks::Blocks::new(SERVE_BLOCK, slots * (super::serve::BODY_BLOCKS + 2))
}

/// An agent name and its REST endpoint.
pub type Named = (String, String);

/// Shared sync state.
#[derive(Debug)]
pub struct SyncState {
    /// Request slots by priority and the bandwidth limit.
    pub gate: Arc<Gate>,
    /// Bearer token presented to peers.
    pub fetch_token: String,
    /// The peers' certificate fingerprints, from the API.
    pub pins: Arc<super::pins::Pins>,
    /// Whether peers advertising plain HTTP are fetched from (insecure benchmark mode).
    pub plain_peers: bool,
    /// Pulls in progress.
    pub partials: Partials,
    /// The bandwidth limit of serving peers.
    serving: Mutex<Bucket>,
    /// Responses with content being sent at once (the rest are told to ask elsewhere).
    pub serve_slots: Arc<tokio::sync::Semaphore>,
    /// The blocks responses are read into, reused while serving.
    pub blocks: Arc<super::blocks::Blocks>,
    /// What was sent of each artifact lately, chunk by chunk (reported to pullers).
    pub sent: super::sent::Sent,
    view: Mutex<(Vec<Member>, Vec<String>)>,
    penalties: Mutex<HashMap<String, Instant>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl SyncState {
    /// Sync state with `slots` concurrent chunk requests, `rate` bytes per second (0:
    /// unlimited), and `fetch_token` for peers.
    pub fn new(slots: usize, rate: u64, fetch_token: String) -> Self {
        Self {
            gate: Gate::new(slots, rate),
            fetch_token,
            pins: Arc::default(),
            plain_peers: false,
            partials: Partials::default(),
            serving: Mutex::new(Bucket::new(0, Instant::now())),
            serve_slots: Arc::new(tokio::sync::Semaphore::new(DEFAULT_SERVE_SLOTS)),
            blocks: serve_blocks(DEFAULT_SERVE_SLOTS),
            sent: super::sent::Sent::default(),
            view: Mutex::default(),
            penalties: Mutex::default(),
            locks: Mutex::default(),
        }
    }

    /// Fetches from peers that advertise plain HTTP (only in the insecure benchmark mode, where
    /// this agent serves plain HTTP too).
    #[must_use]
    pub fn with_plain_peers(mut self, plain: bool) -> Self {
        self.plain_peers = plain;
        self
    }

    /// Limits serving peers to `rate` bytes per second (0: none).
    #[must_use]
    pub fn with_serve_rate(self, rate: u64) -> Self {
        Self {
            serving: Mutex::new(Bucket::new(rate, Instant::now())),
            ..self
        }
    }

    /// Serves at most `slots` responses with content at once.
    #[must_use]
    pub fn with_serve_slots(self, slots: usize) -> Self {
        Self {
            serve_slots: Arc::new(tokio::sync::Semaphore::new(slots.max(1))),
            blocks: serve_blocks(slots.max(1)),
            ..self
        }
    }

    /// How long to wait before serving `bytes` more (within the serving limit).
    pub fn serve_wait(&self, bytes: u64) -> Duration {
        self.serving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take(bytes, Instant::now())
    }

    /// Records the gossip view: live members and members seen dead.
    pub fn set_view(&self, members: Vec<Member>, dead: Vec<String>) {
        *self
            .view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (members, dead);
    }

    /// The gossip view: live members (this agent included) and members seen dead.
    pub fn view(&self) -> (Vec<Member>, Vec<String>) {
        self.view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Avoids `holder` for [`PENALTY`].
    pub fn penalize(&self, holder: &str) {
        self.penalties
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(holder.to_owned(), Instant::now() + PENALTY);
    }

    /// Whether `holder` is being avoided.
    pub fn penalized(&self, holder: &str) -> bool {
        let mut p = self
            .penalties
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        p.retain(|_, until| *until > now);
        p.contains_key(holder)
    }

    /// The lock of one digest: held for the whole pull.
    pub fn lock(&self, digest: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget locks nobody holds, so the map stays small.
        locks.retain(|_, l| Arc::strong_count(l) > 1);
        locks.entry(digest.to_owned()).or_default().clone()
    }

    /// The members gossip says hold `digest` whole, then those pulling it, with their endpoints.
    pub fn holders_of(&self, digest: &str) -> (Vec<Named>, Vec<Named>) {
        let Some(raw) = raw_digest(digest) else {
            return (Vec::new(), Vec::new());
        };
        let view = self
            .view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut whole = Vec::new();
        let mut partial = Vec::new();
        for m in &view.0 {
            let Some(s) = &m.state else { continue };
            let named = (m.name.clone(), s.endpoint.clone());
            if s.artifacts.contains(&raw) {
                whole.push(named);
            } else if s.fetching.contains(&raw) {
                partial.push(named);
            }
        }
        whole.sort();
        partial.sort();
        (whole, partial)
    }

    /// A live member's REST endpoint, from gossip.
    pub fn endpoint(&self, name: &str) -> Option<String> {
        let view = self
            .view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        view.0
            .iter()
            .find(|m| m.name == name)
            .and_then(|m| m.state.as_ref())
            .map(|s| s.endpoint.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::state::AgentState;

    #[test]
    fn serving_is_limited_only_when_asked() {
        let free = SyncState::new(4, 0, "t".into());
        assert_eq!(free.serve_wait(1 << 30), Duration::ZERO);
        let limited = SyncState::new(4, 0, "t".into()).with_serve_rate(1024 * 1024);
        // A quarter second of credit, then the rate.
        assert_eq!(limited.serve_wait(256 * 1024), Duration::ZERO);
        let wait = limited.serve_wait(1024 * 1024);
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
    }

    #[test]
    fn penalties_and_holders() {
        let s = SyncState::new(4, 0, "t".into());
        s.penalize("bad");
        assert!(s.penalized("bad"));
        assert!(!s.penalized("good"));
        let d = format!("sha256:{}", "ab".repeat(32));
        let member = |name: &str, held: bool| Member {
            name: name.into(),
            gossip_address: "127.0.0.1:1".into(),
            status: "alive",
            state: Some(AgentState {
                endpoint: format!("http://{name}:1"),
                artifacts: if held {
                    vec![raw_digest(&d).unwrap()]
                } else {
                    vec![]
                },
                fetching: if held {
                    vec![]
                } else {
                    vec![raw_digest(&d).unwrap()]
                },
                ..AgentState::default()
            }),
        };
        let quiet = Member {
            name: "quiet".into(),
            gossip_address: "127.0.0.1:2".into(),
            status: "alive",
            state: None,
        };
        s.set_view(vec![member("b", true), member("a", false), quiet], vec![]);
        let (whole, partial) = s.holders_of(&d);
        assert_eq!(whole, [("b".to_owned(), "http://b:1".to_owned())]);
        assert_eq!(partial, [("a".to_owned(), "http://a:1".to_owned())]);
        assert_eq!(s.endpoint("a").as_deref(), Some("http://a:1"));
        assert_eq!(s.endpoint("quiet"), None, "no state heard yet");
        assert_eq!(s.holders_of("not a digest"), (vec![], vec![]));
        let l1 = s.lock("d");
        let l2 = s.lock("d");
        assert!(Arc::ptr_eq(&l1, &l2), "one lock per digest");
    }
}
