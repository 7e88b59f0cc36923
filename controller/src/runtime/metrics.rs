//! Prometheus metrics of the controller, served on the admin port at `/metrics`. Label values
//! are bounded: job kinds and error categories.

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A job kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `SelfplayJob`, `TrainingJob` or `GauntletJob`.
    pub kind: String,
}

/// An error's kind and category.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The job kind, or `Agent` / `Task`.
    pub kind: String,
    /// The error's stable category.
    pub category: String,
}

/// A training loop.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoopLabels {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub training_loop: String,
}

/// A claimant in the fleet's fair share: `TrainingLoop/<namespace>/<name>`, or a job's
/// `<Kind>/<namespace>/<name>`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClaimantLabels {
    /// Who.
    pub claimant: String,
}

/// An agent.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AgentLabels {
    /// Its name.
    pub agent: String,
}

/// A dashboard request: which route and what it answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DashboardLabels {
    /// The route (`overview`, `loop`, `agents`, `log`, `page`, `login`, …; bounded).
    pub route: String,
    /// The status code.
    pub code: String,
}

/// The controller's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Jobs reconciled, by kind.
    pub reconciles: Family<KindLabels, Counter>,
    /// Failed writes, by kind and category.
    pub errors: Family<ErrorLabels, Counter>,
    /// Tasks created, by kind.
    pub tasks_created: Family<KindLabels, Counter>,
    /// Time to place the pending work units of one pass.
    pub placement: Histogram,
    /// Time of a whole pass (observe, plan, apply).
    pub pass: Histogram,
    /// Work units waiting for room.
    pub queue_depth: Gauge<i64, AtomicI64>,
    /// Agents held for a waiting gang (several whole GPUs) while they drain.
    pub agents_held: Gauge<i64, AtomicI64>,
    /// Units bound to follow a running task about to end, on its GPUs (hand-overs).
    pub hand_overs: Counter,
    /// Successors withdrawn because the task they followed ran past its expected end.
    pub hand_overs_withdrawn: Counter,
    /// Time from a Task create sent off to the API server's answer.
    pub create: Histogram,
    /// Task creates sent off and not yet answered by the API server.
    pub creates_in_flight: Gauge<i64, AtomicI64>,
    /// 1 while this replica leads.
    pub leader: Gauge<i64, AtomicI64>,
    /// Agents with a current heartbeat.
    pub agents_ready: Gauge<i64, AtomicI64>,
    /// Ready agents whose advertised endpoint the controller cannot connect to.
    pub agents_unreachable: Gauge<i64, AtomicI64>,
    /// Copy Tasks created: copies of needed outputs made again after a holder was lost.
    pub copies_created: Counter,
    /// Needed outputs with no copy on a Ready agent, as of the last pass.
    pub outputs_lost: Gauge<i64, AtomicI64>,
    /// Bytes moved between agents by the recorded generations of each loop.
    pub generation_bytes_moved: Family<LoopLabels, Counter>,
    /// Agents kept from new work by the circuit breaker.
    pub agents_quarantined: Gauge<i64, AtomicI64>,
    /// Quarantines started (each trip of the breaker, and each longer one).
    pub agent_quarantines: Counter,
    /// GPUs each claimant is entitled to in the fair share.
    pub share_entitled_gpus: Family<ClaimantLabels, Gauge<f64, AtomicU64>>,
    /// GPUs each claimant's running tasks hold.
    pub share_used_gpus: Family<ClaimantLabels, Gauge<f64, AtomicU64>>,
    /// Work units of each claimant waiting for room.
    pub share_waiting_units: Family<ClaimantLabels, Gauge<i64, AtomicI64>>,
    /// Per agent: 1 while its heartbeat is current.
    pub agent_ready: Family<AgentLabels, Gauge<i64, AtomicI64>>,
    /// Per agent: 1 while it reports DiskPressure.
    pub agent_disk_pressure: Family<AgentLabels, Gauge<i64, AtomicI64>>,
    /// Per loop: the generation in progress.
    pub loop_generation: Family<LoopLabels, Gauge<i64, AtomicI64>>,
    /// Per loop: 1 while it is Degraded.
    pub loop_degraded: Family<LoopLabels, Gauge<i64, AtomicI64>>,
    /// Per loop: the Elo rating of its best model (absent before one is rated).
    pub loop_best_elo: Family<LoopLabels, Gauge<f64, AtomicU64>>,
    /// Requests the web dashboard answered, by route and status code.
    pub dashboard_requests: Family<DashboardLabels, Counter>,
    /// Trust failures with the API server (counted by the API client's layer).
    pub trust: ringrift_tls::trust::TrustMetrics,
}

/// A new metric registered in `registry` under `name`.
fn registered<M>(registry: &mut Registry, name: &str, help: &str) -> M
where
    M: prometheus_client::registry::Metric + Clone + Default,
{
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        Self::with_trust(ringrift_tls::trust::TrustMetrics::default())
    }
}

impl Metrics {
    /// The metrics, counting trust failures in `trust` (shared with the API client's layer).
    pub fn with_trust(trust: ringrift_tls::trust::TrustMetrics) -> Self {
        let mut registry = Registry::with_prefix("ringrift_controller");
        trust.register(&mut registry);
        let r = &mut registry;
        let placement = Histogram::new(exponential_buckets(0.000_05, 2.0, 18));
        r.register(
            "placement_duration_seconds",
            "Time to place the waiting work units of one pass",
            placement.clone(),
        );
        let pass = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        r.register(
            "pass_duration_seconds",
            "Time of one reconcile pass over every job",
            pass.clone(),
        );
        let create = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        r.register(
            "create_duration_seconds",
            "Time from a Task create sent off (waiting for a write slot included) to the API server's answer",
            create.clone(),
        );
        Self {
            reconciles: registered(r, "reconciles", "Jobs reconciled, by kind"),
            errors: registered(r, "reconcile_errors", "Failed writes, by kind and error category"),
            tasks_created: registered(r, "tasks_created", "Tasks created, by job kind"),
            placement,
            pass,
            create,
            queue_depth: registered(r, "queue_depth", "Work units waiting for room"),
            agents_held: registered(
                r,
                "agents_held",
                "Agents held for a waiting gang (several whole GPUs) while they drain",
            ),
            hand_overs: registered(
                r,
                "hand_overs",
                "Units bound to follow a running task about to end, on its GPUs (hand-overs)",
            ),
            hand_overs_withdrawn: registered(
                r,
                "hand_overs_withdrawn",
                "Successors withdrawn because the task they followed ran past its expected end",
            ),
            creates_in_flight: registered(
                r,
                "creates_in_flight",
                "Task creates sent off and not yet answered by the API server",
            ),
            leader: registered(r, "leader", "1 while this replica leads"),
            agents_ready: registered(r, "agents_ready", "Agents with a current heartbeat"),
            agents_unreachable: registered(
                r,
                "agents_unreachable",
                "Ready agents whose advertised endpoint the controller cannot connect to",
            ),
            copies_created: registered(
                r,
                "copies_created",
                "Copy Tasks created: copies of needed outputs made again after a holder was lost",
            ),
            outputs_lost: registered(r, "outputs_lost", "Needed outputs with no copy on a Ready agent"),
            generation_bytes_moved: registered(
                r,
                "generation_bytes_moved",
                "Bytes moved between agents (inputs pulled, copies of outputs) by each loop's recorded generations",
            ),
            agents_quarantined: registered(
                r,
                "agents_quarantined",
                "Agents kept from new work because their tasks keep failing for reasons of the agent",
            ),
            agent_quarantines: registered(
                r,
                "agent_quarantines",
                "Quarantines of agents started by the circuit breaker",
            ),
            share_entitled_gpus: registered(
                r,
                "share_entitled_gpus",
                "GPUs each claimant (loop, or job outside a loop) is entitled to in the fleet's fair share",
            ),
            share_used_gpus: registered(r, "share_used_gpus", "GPUs each claimant's running tasks hold"),
            share_waiting_units: registered(
                r,
                "share_waiting_units",
                "Work units of each claimant waiting for room",
            ),
            agent_ready: registered(
                r,
                "agent_ready",
                "1 while the agent's heartbeat is current, per agent",
            ),
            agent_disk_pressure: registered(
                r,
                "agent_disk_pressure",
                "1 while the agent reports DiskPressure, per agent",
            ),
            loop_generation: registered(r, "loop_generation", "The generation each training loop is in"),
            loop_degraded: registered(
                r,
                "loop_degraded",
                "1 while the training loop is Degraded (a stage failed past its retries)",
            ),
            loop_best_elo: registered(
                r,
                "loop_best_elo",
                "Elo rating of each training loop's best model",
            ),
            dashboard_requests: registered(
                r,
                "dashboard_requests",
                "Requests the web dashboard answered, by route and status code",
            ),
            trust,
            registry,
        }
    }
}

impl Metrics {
    /// Sets the share gauges of every claimant in `shares`, and removes those of claimants
    /// `before` had that are gone.
    pub fn shares(
        &self,
        shares: &std::collections::BTreeMap<String, crate::plan::placement::Standing>,
        before: &std::collections::HashSet<String>,
    ) {
        for gone in before.iter().filter(|c| !shares.contains_key(*c)) {
            let labels = ClaimantLabels {
                claimant: gone.clone(),
            };
            self.share_entitled_gpus.remove(&labels);
            self.share_used_gpus.remove(&labels);
            self.share_waiting_units.remove(&labels);
        }
        for (claimant, s) in shares {
            let labels = ClaimantLabels {
                claimant: claimant.clone(),
            };
            self.share_entitled_gpus
                .get_or_create(&labels)
                .set(s.entitled.gpus);
            self.share_used_gpus.get_or_create(&labels).set(s.used.gpus);
            self.share_waiting_units
                .get_or_create(&labels)
                .set(i64::from(s.waiting));
        }
    }

    /// Sets each agent's readiness and disk pressure from `agents` (name, heartbeat current,
    /// DiskPressure), and removes the gauges of agents `before` had that are gone.
    pub fn agents(&self, agents: &[(String, bool, bool)], before: &std::collections::HashSet<String>) {
        for gone in before.iter().filter(|b| !agents.iter().any(|(a, _, _)| a == *b)) {
            let labels = AgentLabels { agent: gone.clone() };
            self.agent_ready.remove(&labels);
            self.agent_disk_pressure.remove(&labels);
        }
        for (agent, ready, pressure) in agents {
            let labels = AgentLabels { agent: agent.clone() };
            self.agent_ready.get_or_create(&labels).set(i64::from(*ready));
            self.agent_disk_pressure
                .get_or_create(&labels)
                .set(i64::from(*pressure));
        }
    }

    /// Sets a loop's gauges; `None` removes them (the loop is gone).
    pub fn training_loop(&self, labels: &LoopLabels, state: Option<(u32, bool, Option<f64>)>) {
        let Some((generation, degraded, elo)) = state else {
            self.loop_generation.remove(labels);
            self.loop_degraded.remove(labels);
            self.loop_best_elo.remove(labels);
            return;
        };
        self.loop_generation
            .get_or_create(labels)
            .set(i64::from(generation));
        self.loop_degraded.get_or_create(labels).set(i64::from(degraded));
        match elo {
            Some(elo) => {
                self.loop_best_elo.get_or_create(labels).set(elo);
            }
            None => {
                self.loop_best_elo.remove(labels);
            }
        }
    }

    /// Counts a failed write.
    pub fn error(&self, kind: &str, category: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.to_owned(),
                category: category.to_owned(),
            })
            .inc();
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
