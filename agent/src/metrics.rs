//! Prometheus metrics of the agent. GPU gauges use the DCGM exporter's names and labels
//! (`DCGM_FI_DEV_GPU_UTIL{gpu, UUID, modelName, Hostname}`), so dashboards built for it work;
//! the agent's own metrics are prefixed `ringrift_agent_`.

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::detect::{Inventory, health};

pub use crate::labels::ResultLabels;
pub(crate) use crate::labels::add;

/// Labels of a GPU, as the DCGM exporter writes them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
#[allow(non_snake_case)]
pub struct GpuLabels {
    /// NVML index.
    pub gpu: String,
    /// GPU UUID.
    pub UUID: String,
    /// Product name.
    pub modelName: String,
    /// Agent name.
    pub Hostname: String,
}

/// Labels of a task.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TaskLabels {
    /// Namespace.
    pub namespace: String,
    /// Task name.
    pub task: String,
}

/// A phase label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// Final phase (`Succeeded`, `Failed`, `Cancelled`).
    pub phase: String,
}

/// An HTTP route and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The route's name.
    pub route: String,
    /// Status code.
    pub code: String,
}

type FGauge = Gauge<f64, AtomicU64>;

/// The agent's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Attempts started.
    pub tasks_started: Counter,
    /// Processes adopted after a restart.
    pub tasks_adopted: Counter,
    /// Copy tasks done: a copy of a needed artifact made here again after a holder was lost.
    pub copies_made: Counter,
    /// Supervisor passes over the agent's Tasks (each decides what to start, stop or record).
    pub supervisor_passes: Counter,
    /// Attempts finished, by phase.
    pub tasks_finished: Family<PhaseLabels, Counter>,
    /// Processes running now.
    pub tasks_running: Gauge<i64, AtomicI64>,
    /// Task status writes, by result.
    pub status_writes: Family<ResultLabels, Counter>,
    /// `@ringrift` lines that could not be parsed.
    pub bad_reports: Counter,
    /// REST requests by route and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Heartbeat renewals, by result.
    pub heartbeats: Family<ResultLabels, Counter>,
    /// `Agent` status writes, by result.
    pub registrations: Family<ResultLabels, Counter>,
    /// GPU utilization, percent.
    pub gpu_util: Family<GpuLabels, FGauge>,
    /// Frame buffer used, MiB.
    pub fb_used: Family<GpuLabels, FGauge>,
    /// Frame buffer free, MiB.
    pub fb_free: Family<GpuLabels, FGauge>,
    /// Temperature, °C.
    pub gpu_temp: Family<GpuLabels, FGauge>,
    /// Power draw, W.
    pub power: Family<GpuLabels, FGauge>,
    /// 1 when the GPU is healthy.
    pub gpu_healthy: Family<GpuLabels, Gauge<i64, AtomicI64>>,
    /// GPU memory used by a task's processes, MiB.
    pub task_gpu_memory: Family<TaskLabels, FGauge>,
    /// Data sync and gossip.
    pub sync: crate::sync::metrics::SyncMetrics,
    /// Trust failures with the API server and with peers.
    pub trust: ringrift_tls::trust::TrustMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::with_trust(ringrift_tls::trust::TrustMetrics::default())
    }
}

impl Metrics {
    /// The metrics, counting trust failures in `trust` (shared with the API client's layer).
    pub fn with_trust(trust: ringrift_tls::trust::TrustMetrics) -> Self {
        let mut registry = Registry::default();
        let r = &mut registry;
        let gpu_util = add(
            r,
            "DCGM_FI_DEV_GPU_UTIL",
            "GPU utilization (in %)",
            Family::default(),
        );
        let fb_used = add(
            r,
            "DCGM_FI_DEV_FB_USED",
            "Framebuffer memory used (in MiB)",
            Family::default(),
        );
        let fb_free = add(
            r,
            "DCGM_FI_DEV_FB_FREE",
            "Framebuffer memory free (in MiB)",
            Family::default(),
        );
        let gpu_temp = add(
            r,
            "DCGM_FI_DEV_GPU_TEMP",
            "GPU temperature (in C)",
            Family::default(),
        );
        let power = add(
            r,
            "DCGM_FI_DEV_POWER_USAGE",
            "Power draw (in W)",
            Family::default(),
        );
        let own = registry.sub_registry_with_prefix("ringrift_agent");
        trust.register(own);
        Self {
            trust,
            tasks_started: add(own, "tasks_started", "Task attempts started", Counter::default()),
            copies_made: add(
                own,
                "copies_made",
                "Copy tasks done: copies of needed artifacts made here after a holder was lost",
                Counter::default(),
            ),
            tasks_adopted: add(
                own,
                "tasks_adopted",
                "Task processes adopted after an agent restart",
                Counter::default(),
            ),
            supervisor_passes: add(
                own,
                "supervisor_passes",
                "Passes over this agent's Tasks deciding what to start, stop or record",
                Counter::default(),
            ),
            tasks_finished: add(
                own,
                "tasks_finished",
                "Task attempts finished, by phase",
                Family::default(),
            ),
            tasks_running: add(
                own,
                "tasks_running",
                "Task processes running now",
                Gauge::default(),
            ),
            status_writes: add(
                own,
                "status_writes",
                "Task status writes, by result",
                Family::default(),
            ),
            bad_reports: add(
                own,
                "bad_reports",
                "@ringrift report lines that could not be parsed",
                Counter::default(),
            ),
            http_requests: add(
                own,
                "http_requests",
                "REST requests, by route and status code",
                Family::default(),
            ),
            heartbeats: add(
                own,
                "heartbeats",
                "Heartbeat Lease renewals, by result",
                Family::default(),
            ),
            registrations: add(
                own,
                "registrations",
                "Agent status writes, by result",
                Family::default(),
            ),
            gpu_healthy: add(
                own,
                "gpu_healthy",
                "1 when the GPU is healthy (ECC, XID, reachable)",
                Family::default(),
            ),
            task_gpu_memory: add(
                own,
                "task_gpu_memory_used_mib",
                "GPU memory used by a task's processes (MiB)",
                Family::default(),
            ),
            sync: crate::sync::metrics::SyncMetrics::register(own),
            gpu_util,
            fb_used,
            fb_free,
            gpu_temp,
            power,
            registry,
        }
    }
}

impl Metrics {
    /// The registry in the text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Sets the GPU gauges from an inventory.
    #[allow(clippy::cast_precision_loss)]
    pub fn observe(&self, node: &str, inventory: &Inventory) {
        for g in &inventory.gpus {
            let labels = GpuLabels {
                gpu: g.index.to_string(),
                UUID: g.uuid.clone(),
                modelName: g.product.clone(),
                Hostname: node.to_owned(),
            };
            if let Some(u) = g.utilization_pct {
                self.gpu_util.get_or_create(&labels).set(f64::from(u));
            }
            self.fb_used.get_or_create(&labels).set(g.memory_used_mib as f64);
            self.fb_free
                .get_or_create(&labels)
                .set(g.memory_total_mib.saturating_sub(g.memory_used_mib) as f64);
            if let Some(t) = g.temperature_c {
                self.gpu_temp.get_or_create(&labels).set(f64::from(t));
            }
            if let Some(p) = g.power_w {
                self.power.get_or_create(&labels).set(p);
            }
            let healthy = health(g).0 == ringrift_crds::agent::GpuHealth::Healthy;
            self.gpu_healthy.get_or_create(&labels).set(i64::from(healthy));
        }
    }

    /// Counts a status write.
    pub fn status_write(&self, result: &str) {
        self.status_writes
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }
}
