//! Gossip of a running agent: publishes its own state (endpoint, free GPUs, running tasks,
//! artifacts held and being pulled), keeps the peer directory pulls use, and finds the others
//! through the gossip addresses of the `Agent` objects (and the peers recorded last time, so a
//! restarted agent finds them even while the API is unreachable). The view it reads each second
//! is what pulls ask for holders and endpoints.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::ListParams;
use ringrift_crds::agent::Agent;
use tokio_util::sync::CancellationToken;

use super::Gossip;
use super::state::{AgentState, MAX_LISTED, raw_digest};
use crate::node::Node;

/// How often the state is checked for changes and the directory refreshed.
const EVERY: Duration = Duration::from_secs(1);
/// How often, while alone, the agent looks for others.
const SEEK_EVERY: Duration = Duration::from_secs(15);

/// This agent's state now (version set by [`Gossip::set_state`]).
pub async fn own_state(node: &Node, endpoint: &str) -> AgentState {
    let inventory = node.inventory.borrow().clone();
    let unhealthy = inventory.unhealthy();
    let active = node.runs.active();
    let busy: HashSet<&String> = active.iter().flat_map(|r| r.gpus.iter()).collect();
    let free = inventory
        .gpus
        .iter()
        .filter(|g| !unhealthy.contains(&g.uuid) && !busy.contains(&g.uuid))
        .count();
    let held = node.db.artifacts().await.unwrap_or_default();
    // Models first (everyone wants them), then the newest games.
    let mut listed: Vec<&crate::store::ArtifactRow> = held.iter().filter(|a| a.kind != "games").collect();
    listed.extend(held.iter().filter(|a| a.kind == "games"));
    AgentState {
        name: node.name.clone(),
        version: 0,
        endpoint: endpoint.to_owned(),
        free_gpus: u32::try_from(free).unwrap_or(u32::MAX),
        running_tasks: u32::try_from(active.len()).unwrap_or(u32::MAX),
        artifact_count: u32::try_from(held.len()).unwrap_or(u32::MAX),
        artifacts: listed
            .iter()
            .filter_map(|a| raw_digest(&a.digest))
            .take(MAX_LISTED)
            .collect(),
        fetching: node
            .sync
            .state
            .partials
            .digests()
            .iter()
            .filter_map(|d| raw_digest(d))
            .take(MAX_LISTED)
            .collect(),
    }
}

async fn seeds(node: &Node) -> Vec<(String, SocketAddr)> {
    let mut out = Vec::new();
    let agents: Api<Agent> = Api::all(node.client.clone());
    match agents.list(&ListParams::default()).await {
        Ok(list) => {
            for a in list.items {
                let name = a.metadata.name.clone().unwrap_or_default();
                if name == node.name {
                    continue;
                }
                if let Some(addr) = a
                    .status
                    .as_ref()
                    .and_then(|s| s.gossip_address.as_deref())
                    .and_then(|g| g.parse().ok())
                {
                    out.push((name, addr));
                }
            }
        }
        Err(e) => tracing::debug!(error = %e, "cannot list Agents for gossip seeds"),
    }
    for p in node.db.peers().await.unwrap_or_default() {
        if let Ok(addr) = p.gossip_addr.parse() {
            out.push((p.name, addr));
        }
    }
    out
}

/// Runs until `stop`, then leaves the gossip.
pub async fn run(node: Arc<Node>, gossip: Gossip, endpoint: String, stop: CancellationToken) {
    let mut published: Option<AgentState> = None;
    let mut sought: Option<Instant> = None;
    let mut recorded: HashSet<String> = HashSet::new();
    loop {
        let members = gossip.members();
        if members.len() <= 1 && sought.is_none_or(|t| t.elapsed() > SEEK_EVERY) {
            sought = Some(Instant::now());
            let to = seeds(&node).await;
            if !to.is_empty() {
                tracing::debug!(count = to.len(), "announcing to gossip seeds");
                gossip.announce(to);
            }
        }
        let state = own_state(&node, &endpoint).await;
        if published.as_ref() != Some(&state) {
            gossip.set_state(state.clone());
            published = Some(state);
        }
        // Peers met are recorded (once their endpoint is known) to find them after a restart.
        for m in members.iter().filter(|m| m.name != node.name) {
            let Some(state) = &m.state else { continue };
            if recorded.insert(format!("{}@{}@{}", m.name, m.gossip_address, state.endpoint))
                && let Err(e) = node
                    .db
                    .put_peer(&m.name, &state.endpoint, &m.gossip_address)
                    .await
            {
                tracing::debug!(error = %e, "cannot record a peer");
            }
        }
        node.sync.state.set_view(members, gossip.dead());
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = stop.cancelled() => break,
        }
    }
    gossip.stop().await;
}
