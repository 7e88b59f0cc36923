//! What the sync parts of an agent share: the bandwidth gate, the pulls in progress (served to
//! peers), the holders penalized for bad data, one lock per digest so an artifact is pulled
//! once however many tasks want it, and the peer directory gossip keeps.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::gate::Gate;
use super::serve::Partials;

/// How long a holder that served bad data is avoided.
pub const PENALTY: Duration = Duration::from_secs(600);

/// An agent name and its REST endpoint.
pub type Named = (String, String);

/// A peer as gossip (or the API) describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// REST endpoint (`http://host:port`).
    pub endpoint: String,
    /// Digests it holds whole (the newest it announced).
    pub artifacts: HashSet<String>,
    /// Digests it is pulling (it serves their verified chunks).
    pub fetching: HashSet<String>,
}

/// Shared sync state.
#[derive(Debug)]
pub struct SyncState {
    /// Request slots by priority and the bandwidth limit.
    pub gate: Arc<Gate>,
    /// Bearer token presented to peers.
    pub fetch_token: String,
    /// Pulls in progress.
    pub partials: Partials,
    /// Alive peers by name, from gossip.
    pub peers: Mutex<HashMap<String, PeerInfo>>,
    view: Mutex<(Vec<crate::gossip::Member>, Vec<String>)>,
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
            partials: Partials::default(),
            peers: Mutex::default(),
            view: Mutex::default(),
            penalties: Mutex::default(),
            locks: Mutex::default(),
        }
    }

    /// Records the gossip view: live members and members seen dead.
    pub fn set_view(&self, members: Vec<crate::gossip::Member>, dead: Vec<String>) {
        *self
            .view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (members, dead);
    }

    /// The gossip view: live members (this agent included) and members seen dead.
    pub fn view(&self) -> (Vec<crate::gossip::Member>, Vec<String>) {
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

    /// The peers gossip says hold `digest` whole, then those pulling it.
    pub fn holders_of(&self, digest: &str) -> (Vec<Named>, Vec<Named>) {
        let peers = self
            .peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut whole = Vec::new();
        let mut partial = Vec::new();
        for (name, p) in peers.iter() {
            if p.artifacts.contains(digest) {
                whole.push((name.clone(), p.endpoint.clone()));
            } else if p.fetching.contains(digest) {
                partial.push((name.clone(), p.endpoint.clone()));
            }
        }
        whole.sort();
        partial.sort();
        (whole, partial)
    }

    /// A peer's endpoint, from gossip.
    pub fn endpoint(&self, name: &str) -> Option<String> {
        self.peers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .map(|p| p.endpoint.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalties_and_holders() {
        let s = SyncState::new(4, 0, "t".into());
        s.penalize("bad");
        assert!(s.penalized("bad"));
        assert!(!s.penalized("good"));
        s.peers.lock().unwrap().insert(
            "b".into(),
            PeerInfo {
                endpoint: "http://b:1".into(),
                artifacts: ["d".to_owned()].into(),
                fetching: HashSet::new(),
            },
        );
        s.peers.lock().unwrap().insert(
            "a".into(),
            PeerInfo {
                endpoint: "http://a:1".into(),
                artifacts: HashSet::new(),
                fetching: ["d".to_owned()].into(),
            },
        );
        let (whole, partial) = s.holders_of("d");
        assert_eq!(whole, [("b".to_owned(), "http://b:1".to_owned())]);
        assert_eq!(partial, [("a".to_owned(), "http://a:1".to_owned())]);
        assert_eq!(s.endpoint("a").as_deref(), Some("http://a:1"));
        let l1 = s.lock("d");
        let l2 = s.lock("d");
        assert!(Arc::ptr_eq(&l1, &l2), "one lock per digest");
    }
}
