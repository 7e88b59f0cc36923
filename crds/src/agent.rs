//! `Agent` (cluster-scoped): a node agent, what it detected and how it is doing.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A node agent. Created and kept up to date by the agent itself; `spec.unschedulable` is the
/// operator's switch to stop new work landing on it (cordon).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[kube(
    group = "ringrift.ai",
    version = "v1alpha1",
    kind = "Agent",
    status = "AgentStatus",
    shortname = "agt",
    category = "ringrift",
    doc = "A node agent: its endpoints, detected resources and health.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(name = "GPUs", type_ = "integer", json_path = ".status.capacity.gpuCount"),
    printcolumn(
        name = "Product",
        type_ = "string",
        json_path = ".status.capacity.gpus[0].product"
    ),
    printcolumn(name = "Unschedulable", type_ = "boolean", json_path = ".spec.unschedulable"),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.endpoint",
        priority = 1
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".status.version",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct AgentSpec {
    /// Keeps new tasks off this agent; running ones finish. Defaults to false.
    #[serde(default)]
    pub unschedulable: bool,
}

/// Observed state of an `Agent`, written by the agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, GpuHealthy and DiskPressure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::common::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Base URL of its REST and data API, for example `https://10.0.0.5:8770`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// SHA-256 fingerprint of the certificate its endpoint serves, `sha256:<hex>`: whoever calls
    /// the agent (peers, `ringrift logs`) trusts exactly this certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))]
    pub certificate_fingerprint: Option<String>,
    /// Address its gossip listens on, `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gossip_address: Option<String>,
    /// Agent version (`ringrift --version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Resources it detected.
    #[serde(default)]
    pub capacity: Capacity,
    /// When it registered last (started or came back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_at: Option<Time>,
}

/// What an agent has to give.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Capacity {
    /// CPU, in thousandths of a core.
    #[serde(default)]
    pub cpu_millis: u64,
    /// Memory, in MiB.
    #[serde(default)]
    #[serde(rename = "memoryMiB")]
    pub memory_mib: u64,
    /// Free space in the data directory, in MiB.
    #[serde(default)]
    #[serde(rename = "diskMiB")]
    pub disk_mib: u64,
    /// Number of GPUs (`gpus` has one entry each).
    #[serde(default)]
    pub gpu_count: u32,
    /// Why no GPU was detected, when none was (no driver, no library).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_detection_message: Option<String>,
    /// Each GPU.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["uuid".into()]))]
    #[schemars(length(max = 64))]
    pub gpus: Vec<Gpu>,
    /// Whether the GPUs are simulated (`--simulate-gpus`), for tests and benchmarks.
    #[serde(default)]
    pub simulated: bool,
}

/// One GPU as the agent sees it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Gpu {
    /// NVML index.
    pub index: u32,
    /// NVML UUID, for example `GPU-8f3c…`.
    pub uuid: String,
    /// Product name, for example `NVIDIA H100 80GB HBM3`.
    pub product: String,
    /// Total memory, in MiB.
    #[serde(rename = "memoryMiB")]
    pub memory_mib: u64,
    /// Healthy or Unhealthy.
    #[serde(default)]
    pub health: GpuHealth,
    /// Why it is unhealthy (XID or ECC errors), when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_message: Option<String>,
    /// Whether MIG mode is on.
    #[serde(default)]
    pub mig_enabled: bool,
}

/// Health of a GPU. No work is placed on an unhealthy one.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum GpuHealth {
    /// Usable.
    #[default]
    Healthy,
    /// Not usable.
    Unhealthy,
}
