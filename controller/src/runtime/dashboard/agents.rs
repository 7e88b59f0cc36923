//! What the dashboard asks the agents' REST API: each agent's GPUs (`/v1/node`, kept for
//! [`LIVE_FOR`]) and a task's log, over TLS trusting exactly the certificate fingerprint the
//! agent's `Agent` status publishes, with the agents' token.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::{BodyExt as _, Empty};
use hyper::{Request, StatusCode, header};
use kube::ResourceExt as _;
use ringrift_crds::agent::Agent;
use serde_json::{Value, json};

use crate::dashboard::views;

/// How long an agent's `/v1/node` answer is shown before it is asked again.
const LIVE_FOR: Duration = Duration::from_secs(3);
/// Longest wait for an agent.
const AGENT_TIMEOUT: Duration = Duration::from_secs(3);

/// Each Ready agent's `/v1/node` answer, asked again when older than [`LIVE_FOR`].
pub(super) async fn live(
    cache: &Mutex<HashMap<String, (Instant, Value)>>,
    token: Option<&str>,
    snapshot: &views::Snapshot,
) -> BTreeMap<String, Value> {
    let Some(token) = token else {
        let why = json!({"error": "the controller has no agent token (--agent-token-file): GPU utilization is not shown"});
        return snapshot
            .agents
            .iter()
            .map(|a| (a.name_any(), why.clone()))
            .collect();
    };
    let stale: Vec<Agent> = {
        let live = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        snapshot
            .agents
            .iter()
            .filter(|a| views::agent_ready(a))
            .filter(|a| {
                live.get(&a.name_any())
                    .is_none_or(|(at, _)| at.elapsed() >= LIVE_FOR)
            })
            .cloned()
            .collect()
    };
    let answers = futures_util::stream::iter(stale)
        .map(|a| {
            let token = token.to_owned();
            async move {
                let answer = node_of(&a, &token).await.unwrap_or_else(|e| json!({"error": e}));
                (a.name_any(), answer)
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    let mut live = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for (name, value) in answers {
        live.insert(name, (Instant::now(), value));
    }
    live.retain(|name, _| snapshot.agents.iter().any(|a| &a.name_any() == name));
    live.iter().map(|(k, (_, v))| (k.clone(), v.clone())).collect()
}

/// GETs `path` from `agent`'s REST API; the status and the body as it streams.
pub(super) async fn get(
    agent: &Agent,
    token: &str,
    path: &str,
) -> Result<(StatusCode, hyper::body::Incoming), String> {
    let name = agent.name_any();
    let status = agent.status.clone().unwrap_or_default();
    let endpoint = status
        .endpoint
        .ok_or_else(|| format!("agent {name} has not registered an endpoint"))?;
    let fingerprint = status
        .certificate_fingerprint
        .filter(|f| ringrift_tls::pin::valid(f))
        .ok_or_else(|| format!("agent {name} publishes no certificate fingerprint to trust it by"))?;
    let address = crate::runtime::reach::authority(&endpoint)
        .ok_or_else(|| format!("agent {name}'s endpoint {endpoint} is not https://host:port"))?;
    let config = ringrift_tls::pin::client_config(&fingerprint).map_err(|e| e.to_string())?;
    let stream = ringrift_tls::pin::connect(address, config, AGENT_TIMEOUT)
        .await
        .map_err(|e| format!("failed to reach agent {name} at {endpoint}: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("agent {name}: {e}"))?;
    tokio::spawn(connection);
    let request = Request::get(path)
        .header(header::HOST, address)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(AGENT_TIMEOUT, sender.send_request(request))
        .await
        .map_err(|_| format!("agent {name} did not answer within {AGENT_TIMEOUT:?}"))?
        .map_err(|e| format!("agent {name}: {e}"))?;
    Ok((response.status(), response.into_body()))
}

/// An agent's `/v1/node`: its GPUs' utilization and memory.
async fn node_of(agent: &Agent, token: &str) -> Result<Value, String> {
    let (code, body) = get(agent, token, "/v1/node").await?;
    let bytes = tokio::time::timeout(AGENT_TIMEOUT, body.collect())
        .await
        .map_err(|_| "the agent's answer did not finish in time".to_owned())?
        .map_err(|e| e.to_string())?
        .to_bytes();
    if code != StatusCode::OK {
        return Err(format!("agent {} answered {code}", agent.name_any()));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("agent {}'s /v1/node does not parse: {e}", agent.name_any()))
}
