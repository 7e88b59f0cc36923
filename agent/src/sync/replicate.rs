//! Replication: copies of an artifact pushed from the agent that holds it to agents that do
//! not, before the task that made it counts as done ([`replicate`]): each output gets the
//! Task's `replicas` copies on distinct agents (its own included), each pushed copy's agent
//! named among the holders the `Task` reports. An agent nobody can reach (behind NAT, inbound
//! closed) does not count its own copy: peers cannot pull from it, so at least one copy must
//! land on a reachable agent. Targets are agents that are Ready, were reached by the
//! controller's probe, and are not short of disk ([`reachability`], [`choose`]); fewer
//! targets than copies wanted is a shortfall, counted, never a failure.
//!
//! The receiver takes the bytes only from a peer with the peer token, hashes them as they
//! arrive, and keeps them only when they are the digest named in the request.

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Buf;
use futures_util::{Stream, StreamExt as _};
use kube::Api;
use kube::ResourceExt as _;
use kube::api::ListParams;
use ringrift_crds::agent::Agent;
use ringrift_crds::common::{Artifact, ArtifactKind};
use ringrift_crds::durability::zone_order;
use ringrift_crds::identity::ZONE_LABEL;
use sha2::Digest as _;
use tokio::io::AsyncWriteExt as _;
use warp::http::StatusCode;

use super::context::Context;
use super::holder::{Holder, peer};
use crate::artifacts::{kind_name, plain_name};
use crate::rest::errors::ApiError;

/// What the agents' conditions say, as replication needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reachability {
    /// This agent's endpoint was probed and could not be reached.
    pub this_unreachable: bool,
    /// Other agents that are Ready, were reached and have disk to spare, with what a client
    /// needs.
    pub reachable: Vec<Holder>,
    /// The zone of every agent that has one (its `ringrift.ai/zone` label).
    pub zones: BTreeMap<String, String>,
}

fn condition<'a>(agent: &'a Agent, type_: &str) -> Option<&'a str> {
    agent
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .map(|c| c.status.as_str())
}

/// Reads [`Reachability`] from the `Agent` objects (pure). Only agents the controller reached
/// (`Reachable=True`) count as targets: an agent never probed may be as unreachable as this one.
/// Nor do agents under `DiskPressure`: a copy there would be the first thing their retention
/// drops, if it fits at all.
pub fn reachability(this: &str, agents: &[Agent]) -> Reachability {
    let mut out = Reachability::default();
    for agent in agents {
        let name = kube::ResourceExt::name_any(agent);
        if let Some(zone) = agent.labels().get(ZONE_LABEL) {
            out.zones.insert(name.clone(), zone.clone());
        }
        if name == this {
            out.this_unreachable = condition(agent, "Reachable") == Some("False");
            continue;
        }
        if condition(agent, "Ready") != Some("True")
            || condition(agent, "Reachable") != Some("True")
            || condition(agent, "DiskPressure") == Some("True")
        {
            continue;
        }
        let status = agent.status.as_ref();
        if let Some(endpoint) = status.and_then(|s| s.endpoint.clone()) {
            out.reachable.push(Holder {
                name,
                endpoint,
                fingerprint: status.and_then(|s| s.certificate_fingerprint.clone()),
            });
        }
    }
    out
}

/// Copies of each output to push elsewhere for `replicas` in all (pure): this agent's own
/// counts unless peers cannot reach it, in which case at least one must land elsewhere.
pub fn copies_wanted(replicas: u32, this_unreachable: bool) -> usize {
    let replicas = usize::try_from(replicas.max(1)).unwrap_or(1);
    if this_unreachable { replicas } else { replicas - 1 }
}

/// The targets to try for one more copy, best first (pure): the zone order the controller
/// also uses when it makes copies again ([`ringrift_crds::durability::zone_order`]).
pub fn choose<'a>(
    candidates: &'a [Holder],
    holders: &[String],
    offset: usize,
    zones: &BTreeMap<String, String>,
) -> Vec<&'a Holder> {
    zone_order(candidates, |c| c.name.as_str(), holders, offset, zones)
}

/// Why outputs could not be replicated.
#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    /// The `Agent` objects could not be read.
    #[error("cannot list the agents: {0}")]
    Api(#[from] kube::Error),
    /// No agent is known to be reachable.
    #[error(
        "this agent cannot be reached by its peers and no other agent is both Ready and Reachable to take its outputs"
    )]
    NoTarget,
    /// Every target refused or failed.
    #[error("no reachable agent took {artifact}: {errors}")]
    Refused {
        /// The artifact's name.
        artifact: String,
        /// What each target answered.
        errors: String,
    },
}

/// Pushes every artifact in `outputs` (stored here) to other agents until it has `replicas`
/// copies ([`copies_wanted`]), naming each agent that took one among its holders. Copies
/// wanted but not made (no agent to take them, or every candidate refused) are a shortfall:
/// logged and counted in the metrics, not an error.
///
/// # Errors
/// [`ReplicateError`]: this agent cannot be reached and no copy of some output landed
/// elsewhere (the caller does not report the outputs as available); the agents could not be
/// listed.
pub async fn replicate(ctx: &Context, outputs: &mut [Artifact], replicas: u32) -> Result<(), ReplicateError> {
    if outputs.is_empty() {
        return Ok(());
    }
    let agents = Api::<Agent>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?;
    let seen = reachability(&ctx.name, &agents.items);
    let wanted = copies_wanted(replicas, seen.this_unreachable);
    if wanted == 0 {
        return Ok(());
    }
    if seen.reachable.is_empty() && seen.this_unreachable {
        return Err(ReplicateError::NoTarget);
    }
    let mut shortfall = 0;
    for (i, artifact) in outputs.iter_mut().enumerate() {
        let Some(path) = ctx.content.path(&artifact.digest) else {
            continue;
        };
        let elsewhere = |a: &Artifact| a.holders.iter().filter(|h| **h != ctx.name).count();
        let mut errors = Vec::new();
        // Turned by the digest, so the copies of many tasks' outputs spread over the agents.
        let turn = usize::from_str_radix(artifact.digest.get(7..15).unwrap_or("0"), 16).unwrap_or(0);
        let mut tried: Vec<String> = Vec::new();
        while elsewhere(artifact) < wanted {
            // Chosen again after every copy: the zones covered change.
            let Some(target) = choose(
                &seen.reachable,
                &artifact.holders,
                turn.wrapping_add(i),
                &seen.zones,
            )
            .into_iter()
            .find(|t| !tried.contains(&t.name)) else {
                break;
            };
            tried.push(target.name.clone());
            let Some(client) = peer(ctx, target) else {
                errors.push(format!("{}: not trusted", target.name));
                continue;
            };
            match client.push(artifact, &path).await {
                Ok(()) => {
                    tracing::info!(artifact = %artifact.name, digest = %artifact.digest, to = %target.name, "pushed a copy of an output");
                    ctx.metrics
                        .pushes
                        .get_or_create(&crate::metrics::ResultLabels { result: "ok".into() })
                        .inc();
                    artifact.holders.push(target.name.clone());
                }
                Err(e) => {
                    ctx.metrics
                        .pushes
                        .get_or_create(&crate::metrics::ResultLabels {
                            result: "failed".into(),
                        })
                        .inc();
                    tracing::warn!(artifact = %artifact.name, to = %target.name, error = %e, "push failed");
                    errors.push(format!("{}: {e}", target.name));
                }
            }
        }
        if seen.this_unreachable && elsewhere(artifact) == 0 {
            return Err(ReplicateError::Refused {
                artifact: artifact.name.clone(),
                errors: errors.join("; "),
            });
        }
        let short = wanted.saturating_sub(elsewhere(artifact));
        if short > 0 {
            let copies = elsewhere(artifact) + usize::from(!seen.this_unreachable);
            if errors.is_empty() {
                // Not enough agents to take one: expected on a small fleet (`ringrift up`).
                tracing::info!(
                    artifact = %artifact.name, copies, replicas, candidates = seen.reachable.len(),
                    "fewer copies than asked for: no more Ready, reachable agents with disk to spare"
                );
            } else {
                tracing::warn!(
                    artifact = %artifact.name, digest = %artifact.digest, copies, replicas,
                    errors = %errors.join("; "), "fewer copies than asked for: pushes failed"
                );
            }
            shortfall += short;
        }
    }
    // Counted once the outputs are reported (a retried call would count them again).
    ctx.metrics.replica_shortfall.inc_by(shortfall as u64);
    Ok(())
}

/// What a push names besides the digest (`PUT /v1/artifacts/{digest}?name=…&kind=…`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PushQuery {
    /// The artifact's file name.
    pub name: String,
    /// `games`, `model` or `checkpoint`.
    pub kind: String,
}

fn kind_of(name: &str) -> Option<ArtifactKind> {
    [ArtifactKind::Games, ArtifactKind::Model, ArtifactKind::Checkpoint]
        .into_iter()
        .find(|k| kind_name(*k) == name)
}

/// Takes a pushed artifact: `length` bytes from `body`, kept when they hash to `digest`.
///
/// # Errors
/// [`ApiError`]: 400 for a bad digest, name, kind or length, or bytes that are not `digest`;
/// 507 when the disk cannot take it; 500 for local trouble.
pub async fn accept<S, B>(
    ctx: &Context,
    digest: &str,
    query: PushQuery,
    length: Option<u64>,
    body: S,
) -> Result<(StatusCode, serde_json::Value), ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let Some(path) = ctx.content.path(digest) else {
        return Err(ApiError::invalid_path(format!(
            "{digest:?} is not a digest (sha256: and 64 lowercase hex digits)"
        )));
    };
    let kind = kind_of(&query.kind).ok_or_else(|| {
        ApiError::bad_request(format!("kind {:?}: one of games, model, checkpoint", query.kind))
    })?;
    if !plain_name(&query.name) {
        return Err(ApiError::bad_request(format!(
            "name {:?} is not a plain file name",
            query.name
        )));
    }
    let length = length.ok_or_else(|| ApiError::bad_request("Content-Length is required"))?;
    let lock = ctx.state.lock(digest);
    let _one_transfer = lock.lock().await;
    if tokio::fs::metadata(&path).await.is_ok_and(|m| m.len() == length) {
        return Ok((
            StatusCode::OK,
            serde_json::json!({"digest": digest, "held": true}),
        ));
    }
    let free_mib = ctx.inventory.borrow().host.disk_free_mib;
    if length / (1024 * 1024) + 1 > free_mib {
        return Err(ApiError::insufficient_storage(format!(
            "{length} bytes do not fit: {free_mib} MiB free"
        )));
    }
    let incoming = ctx
        .content
        .partial_path(digest)
        .map(|p| p.with_extension(format!("push-{}", uuid::Uuid::new_v4().simple())))
        .ok_or_else(|| ApiError::internal("no place for the incoming file"))?;
    let result = receive(&incoming, length, digest, body).await;
    let kept = match result {
        Ok(()) => ctx
            .content
            .ingest(&ctx.db, &incoming, &query.name, kind)
            .await
            .map_err(|e| ApiError::internal(e.to_string())),
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_file(&incoming).await;
    let artifact = kept?;
    if artifact.digest != digest {
        return Err(ApiError::internal(format!(
            "stored as {} instead of {digest}",
            artifact.digest
        )));
    }
    tracing::info!(artifact = %query.name, %digest, bytes = length, "took a pushed artifact");
    Ok((
        StatusCode::CREATED,
        serde_json::json!({"digest": digest, "held": true}),
    ))
}

/// Writes `body` into `file`, checking its length and its SHA-256 against `digest`.
async fn receive<S, B>(file: &Path, length: u64, digest: &str, body: S) -> Result<(), ApiError>
where
    S: Stream<Item = Result<B, warp::Error>> + Send,
    B: Buf,
{
    let local = |e: std::io::Error| ApiError::internal(format!("cannot write {}: {e}", file.display()));
    if let Some(parent) = file.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(local)?;
    }
    let mut out = tokio::fs::File::create(file).await.map_err(local)?;
    let mut hasher = sha2::Sha256::new();
    let mut got = 0u64;
    let mut body = std::pin::pin!(body);
    while let Some(piece) = body.next().await {
        let mut piece = piece.map_err(|e| ApiError::bad_request(format!("the body broke off: {e}")))?;
        while piece.has_remaining() {
            let bytes = piece.chunk();
            got += bytes.len() as u64;
            if got > length {
                return Err(ApiError::bad_request(format!(
                    "more than the {length} bytes of Content-Length"
                )));
            }
            hasher.update(bytes);
            out.write_all(bytes).await.map_err(local)?;
            let n = bytes.len();
            piece.advance(n);
        }
    }
    if got != length {
        return Err(ApiError::bad_request(format!(
            "{got} bytes of the {length} announced"
        )));
    }
    out.sync_all().await.map_err(local)?;
    let actual = format!("sha256:{:x}", hasher.finalize());
    if actual != digest {
        return Err(ApiError::bad_request(format!(
            "the bytes are {actual}, not {digest}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn agent(name: &str, ready: &str, reachable: Option<&str>) -> Agent {
        agent_with(name, ready, reachable, "False")
    }

    fn agent_with(name: &str, ready: &str, reachable: Option<&str>, disk_pressure: &str) -> Agent {
        let mut conditions = vec![
            serde_json::json!({"type": "DiskPressure", "status": disk_pressure, "reason": "R",
            "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}),
            serde_json::json!({"type": "Ready", "status": ready, "reason": "R",
            "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}),
        ];
        if let Some(r) = reachable {
            conditions.push(
                serde_json::json!({"type": "Reachable", "status": r, "reason": "R",
                "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}),
            );
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "Agent",
            "metadata": {"name": name}, "spec": {},
            "status": {"endpoint": format!("https://{name}:8770"), "certificateFingerprint": "sha256:ab",
                       "conditions": conditions},
        }))
        .unwrap()
    }

    fn holder(name: &str) -> Holder {
        Holder {
            name: name.into(),
            endpoint: format!("https://{name}:8770"),
            fingerprint: Some("sha256:ab".into()),
        }
    }

    #[test]
    fn only_ready_agents_the_controller_reached_are_targets() {
        let agents = [
            agent("me", "True", Some("False")),
            agent("up", "True", Some("True")),
            agent("unprobed", "True", None),
            agent("natted", "True", Some("False")),
            agent("down", "False", Some("True")),
        ];
        let seen = reachability("me", &agents);
        assert!(seen.this_unreachable);
        assert_eq!(seen.reachable, vec![holder("up")]);
        assert!(seen.zones.is_empty(), "no agent has a zone label");
        // An agent never probed, or probed and reached, does not push.
        assert!(!reachability("unprobed", &agents).this_unreachable);
        assert!(!reachability("up", &agents).this_unreachable);
    }

    #[test]
    fn agents_short_of_disk_take_no_copies() {
        let agents = [
            agent("me", "True", Some("True")),
            agent_with("full", "True", Some("True"), "True"),
            agent("roomy", "True", Some("True")),
        ];
        let seen = reachability("me", &agents);
        assert!(!seen.this_unreachable);
        assert_eq!(seen.reachable, vec![holder("roomy")]);
    }

    #[test]
    fn copies_pushed_count_this_agents_own_unless_nobody_can_reach_it() {
        assert_eq!(copies_wanted(3, false), 2);
        assert_eq!(copies_wanted(2, false), 1);
        assert_eq!(copies_wanted(1, false), 0, "one copy: this agent's");
        assert_eq!(copies_wanted(0, false), 0, "zero reads as one");
        assert_eq!(
            copies_wanted(1, true),
            1,
            "unreachable: one copy must land elsewhere"
        );
        assert_eq!(copies_wanted(3, true), 3);
    }

    #[test]
    fn targets_skip_holders_and_rotate() {
        let c = [holder("a"), holder("b"), holder("c")];
        let names = |v: Vec<&Holder>| v.iter().map(|h| h.name.clone()).collect::<Vec<_>>();
        let none = BTreeMap::new();
        assert_eq!(names(choose(&c, &["me".into()], 0, &none)), ["a", "b", "c"]);
        assert_eq!(names(choose(&c, &["me".into()], 1, &none)), ["b", "c", "a"]);
        assert_eq!(
            names(choose(&c, &["me".into(), "b".into()], 1, &none)),
            ["c", "a"]
        );
        assert!(choose(&c, &["a".into(), "b".into(), "c".into()], 5, &none).is_empty());
        assert!(choose(&[], &[], 0, &none).is_empty());
    }

    #[test]
    fn kinds_are_read_as_stored() {
        assert_eq!(kind_of("games"), Some(ArtifactKind::Games));
        assert_eq!(kind_of("checkpoint"), Some(ArtifactKind::Checkpoint));
        assert_eq!(kind_of("Model"), None);
    }

    #[tokio::test]
    async fn a_body_is_kept_only_when_it_is_the_digest_and_the_length() {
        let dir = std::env::temp_dir().join(format!("push-{}", uuid::Uuid::new_v4().simple()));
        let file = dir.join("in");
        let data = b"twelve bytes".to_vec();
        let digest = format!("sha256:{:x}", sha2::Sha256::digest(&data));
        let body = |parts: Vec<&'static [u8]>| {
            futures_util::stream::iter(
                parts
                    .into_iter()
                    .map(|p| Ok::<_, warp::Error>(bytes::Bytes::from_static(p))),
            )
        };
        receive(&file, 12, &digest, body(vec![b"twelve", b" bytes"]))
            .await
            .unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), data);
        let wrong = receive(&file, 12, &digest, body(vec![b"twelve bytez"]))
            .await
            .unwrap_err();
        assert!(wrong.message.contains("not sha256:"), "{}", wrong.message);
        let short = receive(&file, 12, &digest, body(vec![b"twelve"]))
            .await
            .unwrap_err();
        assert!(short.message.contains("6 bytes of the 12"), "{}", short.message);
        let long = receive(&file, 6, &digest, body(vec![b"twelve bytes"]))
            .await
            .unwrap_err();
        assert!(long.message.contains("more than the 6 bytes"), "{}", long.message);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
