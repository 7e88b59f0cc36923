//! Metrics of data sync and gossip (`ringrift_agent_transfer_*`, `ringrift_agent_gossip_*`).

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::labels::{ResultLabels, add};

/// Direction and priority class of transferred bytes.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabels {
    /// `in` (pulled) or `out` (served).
    pub direction: String,
    /// `model`, `gauntlet`, `training`, `background` (served bytes: `served`).
    pub class: String,
}

/// Why a holder was dropped from a pull.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// `bad_data` or `unreachable`.
    pub reason: String,
}

/// Data sync and gossip metrics.
#[derive(Debug, Clone)]
pub struct SyncMetrics {
    /// Bytes moved, by direction and class (a rate with `rate()`).
    pub bytes: Family<FlowLabels, Counter>,
    /// Pulls in progress.
    pub active_transfers: Gauge<i64, AtomicI64>,
    /// Pulls finished, by result.
    pub transfers: Family<ResultLabels, Counter>,
    /// Chunks (or whole artifacts) whose bytes did not match their digest.
    pub verification_failures: Counter,
    /// Holders dropped from a pull, by reason.
    pub holders_dropped: Family<ReasonLabels, Counter>,
    /// Artifacts dropped by retention.
    pub retention_dropped: Counter,
    /// Retention rounds run (each checks the disk, and drops what it may when past the mark).
    pub retention_rounds: Counter,
    /// Members alive in this agent's gossip view (itself included).
    pub gossip_members: Gauge<i64, AtomicI64>,
    /// Members this agent saw suspected or declared dead.
    pub gossip_suspicions: Counter,
    /// Members declared dead.
    pub gossip_deaths: Counter,
    /// Gossip packets refused (wrong key, malformed, too old).
    pub gossip_rejected: Counter,
    /// Artifacts pushed to another agent (replication), by result.
    pub pushes: Family<ResultLabels, Counter>,
    /// Copies of outputs wanted (the Task's `replicas`) that no agent could take.
    pub replica_shortfall: Counter,
}

impl SyncMetrics {
    /// Registers every metric under `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        Self {
            bytes: add(
                registry,
                "transfer_bytes",
                "Artifact bytes moved, by direction and class",
                Family::default(),
            ),
            active_transfers: add(
                registry,
                "transfers_active",
                "Artifact pulls in progress",
                Gauge::default(),
            ),
            transfers: add(
                registry,
                "transfers",
                "Artifact pulls finished, by result",
                Family::default(),
            ),
            verification_failures: add(
                registry,
                "transfer_verification_failures",
                "Chunks or artifacts whose bytes did not match their digest",
                Counter::default(),
            ),
            holders_dropped: add(
                registry,
                "transfer_holders_dropped",
                "Holders dropped from a pull, by reason",
                Family::default(),
            ),
            retention_dropped: add(
                registry,
                "retention_dropped_artifacts",
                "Artifacts dropped by retention",
                Counter::default(),
            ),
            retention_rounds: add(
                registry,
                "retention_rounds",
                "Retention rounds run",
                Counter::default(),
            ),
            gossip_members: add(
                registry,
                "gossip_members",
                "Members alive in this agent's gossip view, itself included",
                Gauge::default(),
            ),
            gossip_suspicions: add(
                registry,
                "gossip_suspicion_events",
                "Members seen suspected of being down",
                Counter::default(),
            ),
            gossip_deaths: add(
                registry,
                "gossip_member_deaths",
                "Members declared down",
                Counter::default(),
            ),
            gossip_rejected: add(
                registry,
                "gossip_rejected_packets",
                "Gossip packets refused: wrong key, malformed or replayed",
                Counter::default(),
            ),
            pushes: add(
                registry,
                "replication_pushes",
                "Copies of outputs pushed to another agent (replication), by result",
                Family::default(),
            ),
            replica_shortfall: add(
                registry,
                "replication_shortfall_copies",
                "Copies of outputs a Task's replicas asked for that no Ready, reachable agent with disk to spare could take",
                Counter::default(),
            ),
        }
    }

    /// Counts `n` bytes moved.
    pub fn moved(&self, direction: &str, class: &str, n: u64) {
        self.bytes
            .get_or_create(&FlowLabels {
                direction: direction.to_owned(),
                class: class.to_owned(),
            })
            .inc_by(n);
    }
}
