//! What an agent trusts its peers by: each peer's certificate fingerprint (and endpoint), as its
//! `Agent` status publishes them, read through the API this agent already trusts (never from
//! gossip, which any holder of the cluster key can speak). Refreshed by listing the Agents when
//! a name is not known yet, or after a peer presented another certificate (it may have a new
//! key), at most once per [`MIN_REFRESH`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::api::ListParams;
use kube::{Api, Client};
use ringrift_crds::agent::Agent;

/// Least time between two lists of the Agents.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);

/// A peer as its `Agent` status describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// Its REST endpoint.
    pub endpoint: Option<String>,
    /// Its certificate's fingerprint.
    pub fingerprint: Option<String>,
}

impl Pin {
    /// Whether it says where the agent is and what it presents.
    pub fn is_complete(&self) -> bool {
        self.endpoint.is_some() && self.fingerprint.is_some()
    }
}

/// The pins of every agent, as last listed.
#[derive(Debug, Default)]
pub struct Pins {
    known: Mutex<HashMap<String, Pin>>,
    refreshed: tokio::sync::Mutex<Option<Instant>>,
}

impl Pins {
    /// The pin of `name` as last listed, without asking the API.
    pub fn cached(&self, name: &str) -> Option<Pin> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .cloned()
    }

    /// The pin of `name`; lists the Agents first when it is not known, was forgotten, or had
    /// no fingerprint yet (an agent still registering when last listed).
    pub async fn of(&self, client: &Client, name: &str) -> Option<Pin> {
        if let Some(pin) = self.cached(name).filter(Pin::is_complete) {
            return Some(pin);
        }
        self.refresh(client).await;
        self.cached(name)
    }

    /// Forgets `name`'s pin (it presented another certificate): the next [`Self::of`] reads it
    /// again.
    pub fn forget(&self, name: &str) {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name);
    }

    /// Lists the Agents and keeps their pins, unless that was done less than [`MIN_REFRESH`]
    /// ago (one list at a time; the others wait for it).
    pub async fn refresh(&self, client: &Client) {
        let mut last = self.refreshed.lock().await;
        if last.is_some_and(|at| at.elapsed() < MIN_REFRESH) {
            return;
        }
        *last = Some(Instant::now());
        match Api::<Agent>::all(client.clone())
            .list(&ListParams::default())
            .await
        {
            Ok(agents) => self.set(agents.items.iter()),
            Err(e) => {
                tracing::warn!(error = %e, "failed to list the Agents for their certificate fingerprints");
            }
        }
    }

    /// Keeps the pins of `agents`, replacing all.
    pub fn set<'a>(&self, agents: impl Iterator<Item = &'a Agent>) {
        let pins = agents
            .filter_map(|a| {
                let name = a.metadata.name.clone()?;
                let status = a.status.as_ref();
                Some((
                    name,
                    Pin {
                        endpoint: status.and_then(|s| s.endpoint.clone()),
                        fingerprint: status.and_then(|s| s.certificate_fingerprint.clone()),
                    },
                ))
            })
            .collect();
        *self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = pins;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use ringrift_crds::agent::{AgentSpec, AgentStatus};

    use super::*;

    #[tokio::test]
    async fn a_pin_without_a_fingerprint_is_looked_up_again_and_a_complete_one_is_not() {
        // The API: one list of the Agents, in which "b" has registered its fingerprint since.
        let lists = Arc::new(AtomicUsize::new(0));
        let counted = lists.clone();
        let api = tower::service_fn(move |request: hyper::Request<kube::client::Body>| {
            counted.fetch_add(1, Ordering::SeqCst);
            assert_eq!(request.uri().path(), "/apis/ringrift.ai/v1alpha1/agents");
            let list = serde_json::json!({"apiVersion": "ringrift.ai/v1alpha1", "kind": "AgentList",
                "metadata": {}, "items": [agent("a", Some("sha256:aa")), agent("b", Some("sha256:bb"))]});
            let body = kube::client::Body::from(serde_json::to_vec(&list).unwrap_or_default());
            async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(body)) }
        });
        let client = Client::new(api, "default");
        let pins = Pins::default();
        pins.set([agent("a", Some("sha256:aa")), agent("b", None)].iter());
        assert_eq!(
            pins.of(&client, "a").await.unwrap().fingerprint.as_deref(),
            Some("sha256:aa")
        );
        assert_eq!(
            lists.load(Ordering::SeqCst),
            0,
            "a complete pin comes from the cache"
        );
        assert_eq!(
            pins.of(&client, "b").await.unwrap().fingerprint.as_deref(),
            Some("sha256:bb")
        );
        assert_eq!(
            lists.load(Ordering::SeqCst),
            1,
            "one without a fingerprint is listed again"
        );
    }

    fn agent(name: &str, fingerprint: Option<&str>) -> Agent {
        let mut a = Agent::new(name, AgentSpec::default());
        a.status = Some(AgentStatus {
            endpoint: Some(format!("https://{name}:8770")),
            certificate_fingerprint: fingerprint.map(str::to_owned),
            ..AgentStatus::default()
        });
        a
    }

    #[test]
    fn pins_come_from_agent_statuses_and_can_be_forgotten() {
        let pins = Pins::default();
        let agents = [agent("a", Some("sha256:aa")), agent("b", None)];
        pins.set(agents.iter());
        assert_eq!(
            pins.cached("a"),
            Some(Pin {
                endpoint: Some("https://a:8770".into()),
                fingerprint: Some("sha256:aa".into())
            })
        );
        assert_eq!(pins.cached("b").unwrap().fingerprint, None);
        assert!(pins.cached("a").unwrap().is_complete());
        assert!(
            !pins.cached("b").unwrap().is_complete(),
            "b is looked up again when asked for"
        );
        pins.forget("a");
        assert_eq!(pins.cached("a"), None);
        pins.set(std::iter::once(&agents[1]));
        assert_eq!(pins.cached("a"), None, "a listing replaces every pin");
    }
}
