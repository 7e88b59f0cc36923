//! Registration: the agent's `Agent` object (endpoint, version, capacity, conditions) and its
//! heartbeat Lease `agent-<name>`. Retries until the API answers, and registers again after
//! it comes back.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use ringrift_crds::agent::{Agent, AgentSpec, AgentStatus};
use ringrift_crds::common::{ConditionStatus, set_condition};
use ringrift_crds::identity::ZONE_LABEL;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::detect::Inventory;
use crate::metrics::ResultLabels;
use crate::node::Node;

/// How the agent registers.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Namespace of the heartbeat Lease (the controller's).
    pub namespace: String,
    /// How often the heartbeat is renewed.
    pub heartbeat: Duration,
    /// How long a heartbeat stays valid.
    pub lease_duration: Duration,
    /// REST endpoint other agents and people reach this agent at.
    pub endpoint: String,
    /// The fingerprint of the certificate the endpoint serves (none in the insecure plain-HTTP
    /// mode).
    pub certificate_fingerprint: Option<String>,
    /// Free disk below this many MiB is DiskPressure.
    pub disk_pressure_mib: u64,
    /// Address the gossip listens on, when the agent gossips.
    pub gossip_address: Option<String>,
    /// Its failure domain, the `ringrift.ai/zone` label of its `Agent` (none: no label).
    pub zone: Option<String>,
}

/// Renews a heartbeat Lease `agent-<name>`, creating it when it does not exist; returns whether
/// it had to be created (the first time, or after the API lost it).
///
/// # Errors
/// The API's error.
pub async fn heartbeat(leases: &Api<Lease>, name: &str, duration: Duration) -> kube::Result<bool> {
    let lease_name = ringrift_crds::identity::heartbeat_lease(name);
    let spec = LeaseSpec {
        holder_identity: Some(name.to_owned()),
        lease_duration_seconds: Some(i32::try_from(duration.as_secs().max(1)).unwrap_or(i32::MAX)),
        renew_time: Some(MicroTime(jiff::Timestamp::now())),
        ..LeaseSpec::default()
    };
    let patch = json!({"spec": spec});
    match leases
        .patch(&lease_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(false),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(lease_name),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            leases.create(&PostParams::default(), &lease).await.map(|_| true)
        }
        Err(e) => Err(e),
    }
}

/// The `Agent` status for an inventory (pure). `previous` keeps transition times.
pub fn agent_status(
    previous: &[Condition],
    inventory: &Inventory,
    reg: &Registration,
    version: &str,
    generation: i64,
    now: &Time,
) -> AgentStatus {
    let now = now.0;
    let mut conditions = previous.to_vec();
    set_condition(
        &mut conditions,
        "Ready",
        ConditionStatus::True,
        "Registered",
        "agent is running and heartbeating",
        generation,
        now,
    );
    let unhealthy = inventory.unhealthy();
    if inventory.gpus.is_empty() {
        let why = inventory
            .gpu_error
            .clone()
            .unwrap_or_else(|| "no GPUs found".into());
        set_condition(
            &mut conditions,
            "GpuHealthy",
            ConditionStatus::Unknown,
            "NoGpus",
            &why,
            generation,
            now,
        );
    } else if unhealthy.is_empty() {
        set_condition(
            &mut conditions,
            "GpuHealthy",
            ConditionStatus::True,
            "AllHealthy",
            &format!("{} GPUs healthy", inventory.gpus.len()),
            generation,
            now,
        );
    } else {
        set_condition(
            &mut conditions,
            "GpuHealthy",
            ConditionStatus::False,
            "Unhealthy",
            &format!(
                "unhealthy GPUs (no work is placed on them): {}",
                unhealthy.join(", ")
            ),
            generation,
            now,
        );
    }
    let free = inventory.host.disk_free_mib;
    if free < reg.disk_pressure_mib {
        set_condition(
            &mut conditions,
            "DiskPressure",
            ConditionStatus::True,
            "LowDisk",
            &format!(
                "{free} MiB free in the data directory, below {} MiB",
                reg.disk_pressure_mib
            ),
            generation,
            now,
        );
    } else {
        set_condition(
            &mut conditions,
            "DiskPressure",
            ConditionStatus::False,
            "EnoughDisk",
            &format!(
                "at least {} MiB free in the data directory",
                reg.disk_pressure_mib
            ),
            generation,
            now,
        );
    }
    AgentStatus {
        observed_generation: Some(generation),
        conditions,
        endpoint: Some(reg.endpoint.clone()),
        certificate_fingerprint: reg.certificate_fingerprint.clone(),
        gossip_address: reg.gossip_address.clone(),
        version: Some(version.to_owned()),
        capacity: inventory.capacity(),
        registered_at: None,
    }
}

/// Condition types the agent writes; others on its `Agent` (the controller's `Reachable`) are
/// kept as they are.
const OWN_CONDITIONS: [&str; 3] = ["Ready", "GpuHealthy", "DiskPressure"];

/// `own` conditions in place of those of the same types in `stored`, the other types of
/// `stored` kept (pure).
pub fn merge_conditions(stored: &[Condition], own: &[Condition]) -> Vec<Condition> {
    let mut out: Vec<Condition> = stored
        .iter()
        .filter(|c| !OWN_CONDITIONS.contains(&c.type_.as_str()))
        .cloned()
        .collect();
    out.splice(0..0, own.iter().cloned());
    out
}

/// Creates the `Agent` if needed and writes `status` over it, keeping the conditions others
/// own. The write names the resourceVersion it was based on; when someone wrote meanwhile it
/// is based on the new object and sent again.
async fn register(
    agents: &Api<Agent>,
    node: &Node,
    status: &AgentStatus,
    zone: Option<&str>,
    first: bool,
) -> kube::Result<Agent> {
    let mut conflicts = 0;
    loop {
        let current = match agents.get_opt(&node.name).await? {
            Some(agent) => label_zone(agents, agent, zone).await?,
            None => match agents
                .create(&PostParams::default(), &new_agent(&node.name, zone))
                .await
            {
                Ok(agent) => {
                    tracing::info!(agent = %node.name, "created the Agent object");
                    agent
                }
                // Created meanwhile (another start of this agent): read it again.
                Err(kube::Error::Api(s)) if s.code == 409 && conflicts < 5 => {
                    conflicts += 1;
                    continue;
                }
                Err(e) => return Err(e),
            },
        };
        let stored = current
            .status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or_default();
        let mut status = status.clone();
        status.conditions = merge_conditions(stored, &status.conditions);
        let mut body = serde_json::to_value(&status).unwrap_or_default();
        if first && let Some(o) = body.as_object_mut() {
            o.insert("registeredAt".into(), json!(jiff::Timestamp::now().to_string()));
        }
        let patch = json!({
            "metadata": {"resourceVersion": current.metadata.resource_version},
            "status": body,
        });
        match agents
            .patch_status(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 409 && conflicts < 5 => conflicts += 1,
            other => return other,
        }
    }
}

/// The zone in `label` of the Kubernetes `Node` named `node`, when it is a valid zone; none,
/// with a warning, when the Node cannot be read, lacks the label or holds something else.
pub async fn zone_of_node(client: &kube::Client, node: &str, label: &str) -> Option<String> {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    match nodes.get_opt(node).await {
        Ok(Some(n)) => match kube::ResourceExt::labels(&n).get(label) {
            Some(z) if ringrift_crds::identity::valid_zone(z) => {
                tracing::info!(node, label, zone = %z, "zone taken from the node's label");
                Some(z.clone())
            }
            Some(z) => {
                tracing::warn!(node, label, value = %z, "the node's zone label is not a valid zone; running without one");
                None
            }
            None => {
                tracing::warn!(node, label, "the node has no such label; running without a zone");
                None
            }
        },
        Ok(None) => {
            tracing::warn!(
                node,
                label,
                "no Node of this agent's name; running without a zone"
            );
            None
        }
        Err(e) => {
            tracing::warn!(node, label, error = %e, "cannot read the Node for its zone label; running without a zone");
            None
        }
    }
}

/// A new `Agent` named `name`, labelled with its zone.
fn new_agent(name: &str, zone: Option<&str>) -> Agent {
    let mut agent = Agent::new(name, AgentSpec::default());
    if let Some(z) = zone {
        agent.metadata.labels = Some([(ZONE_LABEL.to_owned(), z.to_owned())].into());
    }
    agent
}

/// The zone label `agent` should have changed (set, or removed when `zone` is none), when it
/// differs: the agent was started with another `--zone`.
fn zone_change(agent: &Agent, zone: Option<&str>) -> Option<serde_json::Value> {
    let current = agent
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(ZONE_LABEL))
        .map(String::as_str);
    (current != zone).then(|| json!({"metadata": {"labels": {ZONE_LABEL: zone}}}))
}

/// Patches the zone label of this agent's `Agent` when `--zone` changed; the object as it is
/// now.
async fn label_zone(agents: &Api<Agent>, agent: Agent, zone: Option<&str>) -> kube::Result<Agent> {
    let Some(patch) = zone_change(&agent, zone) else {
        return Ok(agent);
    };
    let name = kube::ResourceExt::name_any(&agent);
    tracing::info!(agent = %name, zone = zone.unwrap_or("(none)"), "labelling the Agent with its zone");
    agents
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

/// Keeps the `Agent` and the heartbeat current until `shutdown` is cancelled. Status is written
/// when it changes, after an API outage, and at least every minute.
pub async fn run(node: Arc<Node>, reg: Registration, shutdown: CancellationToken) {
    let agents: Api<Agent> = Api::all(node.client.clone());
    let leases: Api<Lease> = Api::namespaced(node.client.clone(), &reg.namespace);
    let mut inventory = node.inventory.clone();
    let mut last: Option<AgentStatus> = None;
    let mut last_write = tokio::time::Instant::now();
    let mut first = true;
    let mut lease_seen = false;
    // The Agent's metadata.generation as last written: what its conditions observed.
    let mut generation = 0;
    let mut tick = tokio::time::interval(reg.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = inventory.changed() => if r.is_err() { break },
            () = shutdown.cancelled() => break,
        }
        let now = Time(jiff::Timestamp::now());
        let previous = last.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
        let status = agent_status(
            &previous,
            &inventory.borrow_and_update(),
            &reg,
            &node.version,
            generation,
            &now,
        );
        let changed = last.as_ref().is_none_or(|l| {
            l.capacity != status.capacity
                || l.conditions
                    .iter()
                    .zip(&status.conditions)
                    .any(|(a, b)| a.status != b.status || a.message != b.message)
        });
        if changed || last_write.elapsed() >= Duration::from_secs(60) {
            let result = register(&agents, &node, &status, reg.zone.as_deref(), first).await;
            let label = if result.is_ok() { "ok" } else { "error" };
            node.metrics
                .registrations
                .get_or_create(&ResultLabels { result: label.into() })
                .inc();
            match result {
                Ok(agent) => {
                    generation = agent.metadata.generation.unwrap_or(generation);
                    if first || last.is_none() {
                        tracing::info!(agent = %node.name, gpus = status.capacity.gpu_count, endpoint = %reg.endpoint, "registered");
                    }
                    first = false;
                    last = Some(status);
                    last_write = tokio::time::Instant::now();
                }
                Err(e) => {
                    tracing::warn!(agent = %node.name, error = %e, "failed to register; retrying");
                    // Registered again (full status) once the API answers.
                    last = None;
                }
            }
        }
        let result = match heartbeat(&leases, &node.name, reg.lease_duration).await {
            Ok(created) => {
                if created && lease_seen {
                    // The Lease was gone: the API lost its state. Register again in full.
                    tracing::warn!(agent = %node.name, "heartbeat Lease was missing; registering again");
                    last = None;
                }
                lease_seen = true;
                "ok"
            }
            Err(e) => {
                tracing::warn!(agent = %node.name, error = %e, "failed to renew the heartbeat");
                last = None;
                "error"
            }
        };
        node.metrics
            .heartbeats
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
    }
}

/// Whether `client` can reach the API (for readiness).
pub async fn reachable(client: &Client) -> bool {
    client.apiserver_version().await.is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{GpuSample, Host};

    /// An API that serves the Nodes `nodes` (name, labels) and answers 404 for the rest.
    fn nodes_api(nodes: &[(&str, &[(&str, &str)])]) -> Client {
        let nodes: Vec<(String, serde_json::Value)> = nodes
            .iter()
            .map(|(name, labels)| {
                let labels: serde_json::Map<String, serde_json::Value> =
                    labels.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
                let node = json!({"apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": name, "labels": labels}});
                ((*name).to_owned(), node)
            })
            .collect();
        let api = tower::service_fn(move |request: hyper::Request<kube::client::Body>| {
            let found = nodes
                .iter()
                .find(|(n, _)| request.uri().path() == format!("/api/v1/nodes/{n}"))
                .map(|(_, node)| node.clone());
            async move {
                let (status, body) = match found {
                    Some(node) => (200, node),
                    None => (
                        404,
                        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                            "reason": "NotFound", "code": 404, "message": "not found"}),
                    ),
                };
                let mut response = hyper::Response::new(kube::client::Body::from(
                    serde_json::to_vec(&body).unwrap_or_default(),
                ));
                *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        Client::new(api, "default")
    }

    #[tokio::test]
    async fn the_zone_comes_from_the_nodes_label_when_there_is_a_valid_one() {
        const LABEL: &str = "topology.kubernetes.io/zone";
        let client = nodes_api(&[
            ("gpu1", &[(LABEL, "eu-west-1a")]),
            ("gpu2", &[("other", "x")]),
            ("gpu3", &[(LABEL, "not a zone")]),
        ]);
        assert_eq!(
            zone_of_node(&client, "gpu1", LABEL).await.as_deref(),
            Some("eu-west-1a")
        );
        assert_eq!(zone_of_node(&client, "gpu2", LABEL).await, None, "no such label");
        assert_eq!(
            zone_of_node(&client, "gpu3", LABEL).await,
            None,
            "not a label value"
        );
        assert_eq!(
            zone_of_node(&client, "elsewhere", LABEL).await,
            None,
            "no such node"
        );
    }

    fn reg() -> Registration {
        Registration {
            namespace: "default".into(),
            heartbeat: Duration::from_secs(5),
            lease_duration: Duration::from_secs(20),
            endpoint: "https://10.0.0.1:8770".into(),
            certificate_fingerprint: Some(format!("sha256:{}", "ab".repeat(32))),
            disk_pressure_mib: 1024,
            gossip_address: None,
            zone: None,
        }
    }

    fn inventory(ecc: u64, free: u64) -> Inventory {
        Inventory {
            gpus: vec![GpuSample {
                index: 0,
                uuid: "GPU-0".into(),
                product: "H100".into(),
                memory_total_mib: 80_000,
                ecc_uncorrected: Some(ecc),
                ..GpuSample::default()
            }],
            gpu_error: None,
            simulated: false,
            host: Host {
                cpu_millis: 2000,
                memory_mib: 1000,
                disk_mib: 10_000,
                disk_free_mib: free,
            },
        }
    }

    fn condition<'a>(s: &'a AgentStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn conditions_follow_health_and_keep_transition_times() {
        let t0 = Time("2026-01-01T00:00:00Z".parse().unwrap());
        let t1 = Time("2026-01-01T00:01:00Z".parse().unwrap());
        let a = agent_status(&[], &inventory(0, 5000), &reg(), "v1", 1, &t0);
        assert_eq!(condition(&a, "GpuHealthy").status, "True");
        assert_eq!(condition(&a, "DiskPressure").status, "False");
        assert_eq!(a.endpoint.as_deref(), Some("https://10.0.0.1:8770"));
        assert_eq!(a.certificate_fingerprint, reg().certificate_fingerprint);
        assert_eq!(a.capacity.gpu_count, 1);

        let b = agent_status(&a.conditions, &inventory(0, 5000), &reg(), "v1", 1, &t1);
        assert_eq!(
            condition(&b, "GpuHealthy").last_transition_time,
            t0,
            "unchanged status keeps its time"
        );

        let c = agent_status(&b.conditions, &inventory(3, 100), &reg(), "v1", 2, &t1);
        let gpu = condition(&c, "GpuHealthy");
        assert_eq!((gpu.status.as_str(), gpu.reason.as_str()), ("False", "Unhealthy"));
        assert!(gpu.message.contains("GPU-0"));
        assert_eq!(gpu.last_transition_time, t1);
        assert_eq!(condition(&c, "DiskPressure").status, "True");
        assert_eq!(condition(&c, "Ready").last_transition_time, t0);
        // Every condition says which generation of the Agent it observed.
        assert!(c.conditions.iter().all(|x| x.observed_generation == Some(2)));
        assert_eq!(c.observed_generation, Some(2));
    }

    #[test]
    fn the_agents_conditions_replace_its_own_and_keep_the_controllers() {
        let t0 = Time("2026-01-01T00:00:00Z".parse().unwrap());
        let own = agent_status(&[], &inventory(0, 5000), &reg(), "v1", 1, &t0).conditions;
        let mut stored = agent_status(&[], &inventory(3, 100), &reg(), "v1", 1, &t0).conditions;
        set_condition(
            &mut stored,
            "Reachable",
            false,
            "ConnectFailed",
            "no route",
            1,
            t0.0,
        );
        let merged = merge_conditions(&stored, &own);
        let types: Vec<&str> = merged.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Ready", "GpuHealthy", "DiskPressure", "Reachable"]);
        assert_eq!(merged[1].status, "True", "the agent's own GPU health wins");
        assert_eq!(
            merged[3].reason, "ConnectFailed",
            "the controller's condition is kept"
        );
        assert_eq!(merge_conditions(&[], &own), own);
    }

    #[test]
    fn no_gpus_is_unknown_with_the_reason() {
        let mut inv = inventory(0, 5000);
        inv.gpus.clear();
        inv.gpu_error = Some("NVML not found".into());
        let s = agent_status(&[], &inv, &reg(), "v1", 1, &Time(jiff::Timestamp::now()));
        let gpu = condition(&s, "GpuHealthy");
        assert_eq!(
            (gpu.status.as_str(), gpu.message.as_str()),
            ("Unknown", "NVML not found")
        );
        assert_eq!(
            s.capacity.gpu_detection_message.as_deref(),
            Some("NVML not found")
        );
    }

    #[test]
    fn the_zone_label_is_set_at_creation_and_changed_only_when_it_differs() {
        let a = new_agent("a", Some("eu-1"));
        assert_eq!(
            a.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(ZONE_LABEL))
                .map(String::as_str),
            Some("eu-1")
        );
        assert!(new_agent("b", None).metadata.labels.is_none());
        assert_eq!(zone_change(&a, Some("eu-1")), None, "unchanged: no write");
        assert_eq!(
            zone_change(&a, Some("us-2")),
            Some(json!({"metadata": {"labels": {ZONE_LABEL: "us-2"}}}))
        );
        assert_eq!(
            zone_change(&a, None),
            Some(json!({"metadata": {"labels": {ZONE_LABEL: null}}})),
            "a zone no longer given is removed"
        );
        assert_eq!(zone_change(&new_agent("b", None), None), None);
    }
}
