//! What each agent tells the others through gossip, and how the newest word of each agent wins:
//! a state carries its agent's name and a version (milliseconds since the epoch at the change,
//! so a restarted agent's states supersede its old ones), and foca disseminates a state until a
//! newer one of the same agent replaces it.

use std::collections::HashMap;
use std::net::SocketAddr;

use foca::{BroadcastHandler, Identity, Invalidates};
use serde::{Deserialize, Serialize};

/// Most digests a state lists (the newest held); the full list is at `/v1/artifacts`.
pub const MAX_LISTED: usize = 24;

/// A gossip member: the agent's name, where its gossip listens, and a generation that grows
/// with each start (so a restarted agent rejoins at once instead of waiting out its old
/// identity's death).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Id {
    /// Agent name.
    pub name: String,
    /// Gossip address.
    pub addr: SocketAddr,
    /// Start generation.
    pub generation: u64,
}

impl Identity for Id {
    /// Members are told apart by gossip address: an announcement to a seed reaches whoever
    /// listens there, whatever its name.
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self {
            generation: self.generation + 1,
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// An agent's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    /// Agent name.
    pub name: String,
    /// Version: newer wins.
    pub version: u64,
    /// REST endpoint.
    pub endpoint: String,
    /// GPUs not given to a task.
    pub free_gpus: u32,
    /// Tasks running.
    pub running_tasks: u32,
    /// Artifacts held.
    pub artifact_count: u32,
    /// Newest held artifacts, raw sha256 (at most [`MAX_LISTED`]).
    pub artifacts: Vec<[u8; 32]>,
    /// Artifacts being pulled (their verified chunks are served).
    pub fetching: Vec<[u8; 32]>,
}

/// The raw sha256 of a `sha256:<hex>` digest.
pub fn raw_digest(digest: &str) -> Option<[u8; 32]> {
    let hex = crate::artifacts::hex_of(digest)?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex, &mut out).ok()?;
    Some(out)
}

/// The key foca keeps a state under while disseminating it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateKey {
    name: String,
    version: u64,
}

impl Invalidates for StateKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.name == other.name && self.version >= other.version
    }
}

/// A state that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("malformed agent state: {0}")]
pub struct BadState(String);

/// The newest state of every agent heard of, shared with the view the REST API reads.
#[derive(Debug, Default, Clone)]
pub struct States {
    /// By agent name.
    pub by_name: std::sync::Arc<std::sync::Mutex<HashMap<String, AgentState>>>,
}

impl States {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, AgentState>> {
        self.by_name
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The newest state of `name`.
    pub fn get(&self, name: &str) -> Option<AgentState> {
        self.lock().get(name).cloned()
    }

    /// Records a state of this agent's own.
    pub fn put(&self, state: AgentState) {
        self.lock().insert(state.name.clone(), state);
    }

    /// Forgets a member's state (it died).
    pub fn forget(&self, name: &str) {
        self.lock().remove(name);
    }
}

impl BroadcastHandler<Id> for States {
    type Key = StateKey;
    type Error = BadState;

    fn receive_item(&mut self, data: &[u8], _sender: Option<&Id>) -> Result<Option<StateKey>, BadState> {
        let state: AgentState = postcard::from_bytes(data).map_err(|e| BadState(e.to_string()))?;
        if state.name.is_empty() || state.artifacts.len() > MAX_LISTED || state.fetching.len() > MAX_LISTED {
            return Err(BadState(format!("state of {:?} out of bounds", state.name)));
        }
        let mut by_name = self.lock();
        if by_name
            .get(&state.name)
            .is_some_and(|known| known.version >= state.version)
        {
            return Ok(None);
        }
        let key = StateKey {
            name: state.name.clone(),
            version: state.version,
        };
        by_name.insert(state.name.clone(), state);
        Ok(Some(key))
    }
}

/// Encodes a state for [`foca::Foca::add_broadcast`].
///
/// # Errors
/// When it cannot be encoded (it always can).
pub fn encode(state: &AgentState) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_allocvec(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(name: &str, version: u64) -> AgentState {
        AgentState {
            name: name.into(),
            version,
            endpoint: format!("http://{name}:8770"),
            ..AgentState::default()
        }
    }

    #[test]
    fn newer_states_win_and_old_ones_stop_spreading() {
        let mut s = States::default();
        let v2 = encode(&state("a", 2)).unwrap();
        let v1 = encode(&state("a", 1)).unwrap();
        assert!(s.receive_item(&v2, None).unwrap().is_some());
        assert!(
            s.receive_item(&v2, None).unwrap().is_none(),
            "already known: not spread again"
        );
        assert!(s.receive_item(&v1, None).unwrap().is_none(), "older: dropped");
        assert_eq!(s.get("a").unwrap().version, 2);
        s.forget("a");
        assert!(s.get("a").is_none());
        let k2 = StateKey {
            name: "a".into(),
            version: 2,
        };
        let k1 = StateKey {
            name: "a".into(),
            version: 1,
        };
        let other = StateKey {
            name: "b".into(),
            version: 1,
        };
        assert!(k2.invalidates(&k1));
        assert!(!k1.invalidates(&k2));
        assert!(!k2.invalidates(&other));
    }

    #[test]
    fn malformed_states_are_errors_not_panics() {
        let mut s = States::default();
        assert!(s.receive_item(&[0xff, 0xff, 0xff], None).is_err());
        assert!(s.receive_item(&[], None).is_err());
        let mut big = state("a", 1);
        big.artifacts = vec![[0u8; 32]; MAX_LISTED + 1];
        assert!(s.receive_item(&encode(&big).unwrap(), None).is_err());
        assert!(s.receive_item(&encode(&state("", 1)).unwrap(), None).is_err());
    }

    #[test]
    fn identities_renew_and_newer_generations_win() {
        let id = Id {
            name: "a".into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            generation: 5,
        };
        let next = id.renew().unwrap();
        assert_eq!(next.generation, 6);
        assert_eq!(next.addr(), id.addr());
        assert!(next.win_addr_conflict(&id));
        assert!(!id.win_addr_conflict(&next));
    }

    #[test]
    fn digests_round_trip() {
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(raw_digest(&d), Some([0xab; 32]));
        assert!(raw_digest("sha256:zz").is_none());
    }
}
