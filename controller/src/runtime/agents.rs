//! Agents as placement and durability see them, from their `Agent` objects and heartbeat
//! Leases. Pure.

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt as _;
use ringrift_crds::agent::{Agent, GpuHealth};
use ringrift_crds::identity::ZONE_LABEL;

use crate::plan::placement::{AgentView, GpuView};
use crate::reconcile::durability::Candidate;

/// Name of an agent's heartbeat Lease.
pub fn lease_name(agent: &str) -> String {
    ringrift_crds::identity::heartbeat_lease(agent)
}

/// When an agent's heartbeat runs out: its Lease's `renewTime` (or `acquireTime`) plus
/// `leaseDurationSeconds`. None without a Lease or a time in it.
pub fn heartbeat_expiry(lease: Option<&Lease>) -> Option<Timestamp> {
    let spec = lease?.spec.as_ref()?;
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref())?.0;
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(40).max(1));
    renewed.checked_add(jiff::SignedDuration::from_secs(seconds)).ok()
}

/// Whether the agent's own `Ready` condition is not `False` (it may say it cannot take work).
fn says_ready(agent: &Agent) -> bool {
    agent
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .is_none_or(|c| c.status != "False" || c.reason == HEARTBEAT_LAPSED)
}

/// Whether the agent reports condition `type_` as `True`.
fn condition_true(agent: &Agent, type_: &str) -> bool {
    agent
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .is_some_and(|c| c.status == "True")
}

/// The agent as durability sees it: whether it may take a copy of an output (Ready with a
/// current heartbeat, not cordoned, not under `DiskPressure`, not found unreachable) and its
/// zone.
pub fn candidate(agent: &Agent, heartbeat_current: bool) -> Candidate {
    let unreachable = agent
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Reachable"))
        .is_some_and(|c| c.status == "False");
    Candidate {
        name: agent.metadata.name.clone().unwrap_or_default(),
        eligible: heartbeat_current
            && says_ready(agent)
            && !agent.spec.unschedulable
            && !condition_true(agent, "DiskPressure")
            && !unreachable,
        zone: agent.labels().get(ZONE_LABEL).cloned(),
    }
}

/// Reason of the `Ready=False` condition the controller sets when a heartbeat lapses.
pub const HEARTBEAT_LAPSED: &str = "HeartbeatLapsed";

/// The agent for placement: ready when its heartbeat is current and it does not itself say it
/// is not ready; only healthy GPUs take work.
pub fn view(agent: &Agent, heartbeat_current: bool) -> AgentView {
    let status = agent.status.clone().unwrap_or_default();
    AgentView {
        name: agent.metadata.name.clone().unwrap_or_default(),
        ready: heartbeat_current && says_ready(agent),
        unschedulable: agent.spec.unschedulable,
        disk_pressure: condition_true(agent, "DiskPressure"),
        cpu_millis: status.capacity.cpu_millis,
        memory_mib: status.capacity.memory_mib,
        gpus: status
            .capacity
            .gpus
            .iter()
            .map(|g| GpuView {
                uuid: g.uuid.clone(),
                product: g.product.clone(),
                memory_mib: g.memory_mib,
                healthy: g.health == GpuHealth::Healthy,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
    use ringrift_crds::agent::{AgentSpec, AgentStatus};

    use super::*;

    fn lease(renewed: Timestamp, secs: i32) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(renewed)),
                lease_duration_seconds: Some(secs),
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        }
    }

    #[test]
    fn the_heartbeat_runs_out_a_lease_duration_after_renewal() {
        let t = Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(
            heartbeat_expiry(Some(&lease(t, 10))),
            Some(Timestamp::from_second(1_800_000_010).unwrap())
        );
        assert_eq!(heartbeat_expiry(None), None);
        assert_eq!(heartbeat_expiry(Some(&Lease::default())), None);
    }

    /// An agent with one condition.
    fn with_condition(type_: &str, status: &str, reason: &str) -> Agent {
        let mut agent = Agent::new("a", AgentSpec::default());
        agent.status = Some(AgentStatus {
            conditions: vec![Condition {
                type_: type_.into(),
                status: status.into(),
                reason: reason.into(),
                message: String::new(),
                observed_generation: None,
                last_transition_time: Time(Timestamp::UNIX_EPOCH),
            }],
            ..AgentStatus::default()
        });
        agent
    }

    #[test]
    fn an_agent_that_says_it_is_not_ready_takes_no_work() {
        let agent = Agent::new("a", AgentSpec::default());
        assert!(view(&agent, true).ready);
        assert!(!view(&agent, false).ready);
        assert!(!view(&with_condition("Ready", "False", "DiskFull"), true).ready);
        assert!(
            view(&with_condition("Ready", "False", HEARTBEAT_LAPSED), true).ready,
            "the controller's own mark clears with the heartbeat"
        );
    }

    #[test]
    fn disk_pressure_is_read_from_the_agents_condition() {
        let agent = Agent::new("a", AgentSpec::default());
        assert!(!view(&agent, true).disk_pressure, "no condition: no pressure");
        let v = view(&with_condition("DiskPressure", "True", "LowDisk"), true);
        assert!(v.disk_pressure);
        assert!(v.ready, "pressure does not make an agent NotReady");
        assert!(!view(&with_condition("DiskPressure", "False", "EnoughDisk"), true).disk_pressure);
    }
}
