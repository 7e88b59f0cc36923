//! Whether each agent can be reached at the endpoint it advertises: the leader opens a TCP
//! connection to it now and then and records the answer as the agent's `Reachable` condition.
//! Peers pull artifacts from that endpoint, so an agent nobody can reach (behind NAT, or a
//! rented box with inbound traffic closed) pushes its outputs to one that can be reached before
//! its tasks count as done (`ringrift_agent::exec::replicate`). Agents only ever dial out; this
//! probe is the one connection made towards them, from where the controller runs.
//!
//! The decision what to write is pure ([`reachable_patch`]); the loop around it is I/O.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt as _;
use jiff::Timestamp;
use kube::ResourceExt as _;
use ringrift_crds::agent::Agent;
use ringrift_crds::common::set_condition;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::admin::Health;
use super::caches::{Caches, valid};
use super::writer::Writer;

/// The condition type.
pub const REACHABLE: &str = "Reachable";
/// How often the loop looks for agents to probe.
const TICK: Duration = Duration::from_secs(2);
/// How often an agent is probed again while its endpoint does not change.
const REPROBE: Duration = Duration::from_secs(30);
/// Longest wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// `host:port` of an advertised endpoint (`https://host:port` or `http://host:port`).
pub fn authority(endpoint: &str) -> Option<&str> {
    let rest = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"))?;
    let rest = rest.trim_end_matches('/');
    (!rest.is_empty() && !rest.contains('/')).then_some(rest)
}

/// The status patch that records a probe of `agent`'s endpoint (`Ok` when a connection was
/// made, else why not), or `None` when its `Reachable` condition already says so. The patch
/// carries the object's resourceVersion: the agent writes its own conditions beside this one,
/// and a write based on an older object is refused rather than losing either's.
pub fn reachable_patch(
    agent: &Agent,
    endpoint: &str,
    probe: &Result<(), String>,
    now: Timestamp,
) -> Option<serde_json::Value> {
    let status = agent.status.clone().unwrap_or_default();
    let (reachable, reason, message) = match probe {
        Ok(()) => (
            true,
            "Connected",
            format!("the controller connected to {endpoint}"),
        ),
        Err(e) => (
            false,
            "ConnectFailed",
            format!(
                "the controller cannot connect to {endpoint}: {e}; peers cannot pull from this agent, so it pushes its outputs to a reachable agent"
            ),
        ),
    };
    let want = if reachable { "True" } else { "False" };
    let current = status.conditions.iter().find(|c| c.type_ == REACHABLE);
    if current.is_some_and(|c| c.status == want && c.message == message) {
        return None;
    }
    let mut conditions = status.conditions;
    let generation = agent.metadata.generation.unwrap_or(0);
    set_condition(
        &mut conditions,
        REACHABLE,
        reachable,
        reason,
        &message,
        generation,
        now,
    );
    Some(serde_json::json!({
        "metadata": {"resourceVersion": agent.metadata.resource_version},
        "status": {"conditions": conditions},
    }))
}

/// Whether `agent` says it is up (a lapsed heartbeat is not probed: nobody answers).
fn ready(agent: &Agent) -> bool {
    agent
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// Opens and closes a TCP connection to `authority`.
async fn probe(authority: &str) -> Result<(), String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(authority)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

/// Writes what a probe of `agent` found, when its condition does not say so already, with an
/// event; whether the condition now says it (false: changed meanwhile, probed again next tick).
async fn record(writer: &Writer, agent: &Agent, endpoint: &str, result: &Result<(), String>) -> bool {
    let name = agent.name_any();
    let Some(patch) = reachable_patch(agent, endpoint, result, Timestamp::now()) else {
        return true;
    };
    if let Err(e) = writer.patch_agent_status(&name, &patch).await {
        tracing::debug!(agent = %name, error = %e, "reachability not recorded");
        return false;
    }
    let (warning, reason, note) = match result {
        Ok(()) => {
            tracing::info!(agent = %name, %endpoint, "agent reachable");
            (false, "Reachable", format!("agent {name} answers at {endpoint}"))
        }
        Err(e) => {
            tracing::warn!(agent = %name, %endpoint, error = %e, "agent unreachable; it will push its outputs to a reachable agent");
            (
                true,
                "Unreachable",
                format!("agent {name} cannot be reached at {endpoint}: {e}"),
            )
        }
    };
    writer
        .event(&kube::Resource::object_ref(agent, &()), warning, reason, note)
        .await;
    true
}

/// Probes every ready agent's endpoint while this replica leads: a new or changed endpoint at
/// once, the others every 30 s. Ends at `shutdown`.
pub async fn run(
    caches: Caches,
    writer: Writer,
    leading: watch::Receiver<bool>,
    health: std::sync::Arc<Health>,
    shutdown: CancellationToken,
) {
    // Agent name → (endpoint probed, when).
    let mut probed: HashMap<String, (String, Instant)> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !*leading.borrow() {
            probed.clear();
            continue;
        }
        let (agents, _) = valid(&caches.agents);
        probed.retain(|name, _| agents.iter().any(|a| a.name_any() == *name));
        let mut unreachable = 0;
        let mut due = Vec::new();
        for agent in &agents {
            let endpoint = agent.status.as_ref().and_then(|s| s.endpoint.clone());
            let (Some(endpoint), true) = (endpoint, ready(agent)) else {
                continue;
            };
            let says_unreachable = agent
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == REACHABLE))
                .is_some_and(|c| c.status == "False");
            if says_unreachable {
                unreachable += 1;
            }
            if probed
                .get(&agent.name_any())
                .is_none_or(|(e, at)| *e != endpoint || at.elapsed() >= REPROBE)
            {
                due.push((agent.clone(), endpoint));
            }
        }
        // Probes at once (an unreachable endpoint takes the whole timeout), at most 32 in flight.
        let results: Vec<(Agent, String, Result<(), String>)> = futures_util::stream::iter(due)
            .map(|(agent, endpoint)| async move {
                let result = match authority(&endpoint) {
                    Some(a) => probe(a).await,
                    None => Err(format!("{endpoint:?} is not scheme://host:port")),
                };
                (agent, endpoint, result)
            })
            .buffer_unordered(32)
            .collect()
            .await;
        for (agent, endpoint, result) in results {
            if record(&writer, &agent, &endpoint, &result).await {
                probed.insert(agent.name_any(), (endpoint, Instant::now()));
            }
        }
        health.metrics.agents_unreachable.set(unreachable);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn agent(conditions: &serde_json::Value) -> Agent {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "Agent",
            "metadata": {"name": "a1", "resourceVersion": "42", "generation": 3},
            "spec": {},
            "status": {"endpoint": "https://198.18.0.3:8770", "conditions": conditions},
        }))
        .unwrap()
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn endpoints_give_their_authority() {
        assert_eq!(authority("https://198.18.0.3:8770"), Some("198.18.0.3:8770"));
        assert_eq!(authority("http://[::1]:80/"), Some("[::1]:80"));
        assert_eq!(authority("198.18.0.3:8770"), None);
        assert_eq!(authority("https://"), None);
        assert_eq!(authority("https://h:1/path"), None);
    }

    #[test]
    fn a_failed_probe_sets_reachable_false_beside_the_agents_own_conditions() {
        let a = agent(
            &serde_json::json!([{"type": "Ready", "status": "True", "reason": "Registered",
            "message": "", "lastTransitionTime": "2027-01-15T08:00:00Z"}]),
        );
        let patch = reachable_patch(
            &a,
            "https://198.18.0.3:8770",
            &Err("Network is unreachable".into()),
            at(0),
        )
        .unwrap();
        assert_eq!(patch["metadata"]["resourceVersion"], "42");
        let conditions = patch["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[0]["type"], "Ready");
        assert_eq!(conditions[1]["type"], "Reachable");
        assert_eq!(conditions[1]["status"], "False");
        assert_eq!(conditions[1]["reason"], "ConnectFailed");
        assert_eq!(conditions[1]["observedGeneration"], 3);
        assert!(
            conditions[1]["message"]
                .as_str()
                .unwrap()
                .contains("Network is unreachable")
        );
    }

    #[test]
    fn nothing_is_written_while_the_condition_already_says_so_and_a_change_is_written() {
        let a = agent(&serde_json::json!([]));
        let first = reachable_patch(&a, "https://198.18.0.3:8770", &Ok(()), at(0)).unwrap();
        let a = agent(&first["status"]["conditions"]);
        assert_eq!(
            reachable_patch(&a, "https://198.18.0.3:8770", &Ok(()), at(30)),
            None
        );
        let lost = reachable_patch(&a, "https://198.18.0.3:8770", &Err("refused".into()), at(60)).unwrap();
        let c = &lost["status"]["conditions"][0];
        assert_eq!(c["status"], "False");
        assert_eq!(c["lastTransitionTime"], "2027-01-15T08:01:00Z");
        // Another endpoint is news even when the answer is the same.
        let a = agent(&first["status"]["conditions"]);
        assert!(reachable_patch(&a, "https://198.18.0.9:8770", &Ok(()), at(90)).is_some());
    }

    #[test]
    fn only_agents_that_say_they_are_ready_are_probed() {
        assert!(ready(&agent(
            &serde_json::json!([{"type": "Ready", "status": "True", "reason": "Registered",
            "message": "", "lastTransitionTime": "2027-01-15T08:00:00Z"}])
        )));
        assert!(!ready(&agent(
            &serde_json::json!([{"type": "Ready", "status": "False", "reason": "HeartbeatLapsed",
            "message": "", "lastTransitionTime": "2027-01-15T08:00:00Z"}])
        )));
        assert!(!ready(&agent(&serde_json::json!([]))));
    }
}
