//! Kueue's `Workload` (`kueue.x-k8s.io/v1beta1`), as far as the controller reads and writes it:
//! the queue, the pod sets and the conditions; every other field is kept as it is. Not one of
//! ringrift's kinds (Kueue installs the CRD; [`crate::all`] does not list it).

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Kueue Workload: what a job asks of Kueue's quota.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kueue.x-k8s.io",
    version = "v1beta1",
    kind = "Workload",
    namespaced,
    status = "WorkloadStatus"
)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadSpec {
    /// The LocalQueue.
    #[serde(default)]
    pub queue_name: String,
    /// The pod sets (one for a ringrift job).
    #[serde(default)]
    pub pod_sets: Vec<serde_json::Value>,
    /// Fields the controller does not read.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// A Workload's status: Kueue's conditions (`QuotaReserved`, `Admitted`, `Evicted`, …) and the
/// job integration's `Finished`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadStatus {
    /// Conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<serde_json::Value>,
    /// Fields the controller does not read (`admission`, …).
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}
