//! Pieces shared by several kinds: the game, the workload template, resources, the run policy,
//! references to models and content-addressed artifacts, and status conditions.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Pattern of a Kubernetes object name (RFC 1123 subdomain), used for references.
pub const NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$";
/// Pattern of an artifact digest: `sha256:` and 64 lowercase hex digits.
pub const DIGEST_PATTERN: &str = r"^sha256:[a-f0-9]{64}$";

/// Copies of each games artifact kept on distinct agents unless a job or loop says otherwise.
pub const DEFAULT_GAMES_REPLICAS: u32 = 2;
/// Copies of each model kept on distinct agents unless a job or loop says otherwise.
pub const DEFAULT_MODEL_REPLICAS: u32 = 3;
/// Most copies a job or loop may ask for.
pub const MAX_REPLICAS: u32 = 16;

/// The game to play. Passed to the workload untouched (in `RINGRIFT_PARAMS`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GameSpec {
    /// Board or variant name understood by the workload, for example `connect4` or `hex8`.
    #[schemars(length(min = 1, max = 63))]
    pub board: String,
    /// Number of players, 2 to 4. Defaults to 2.
    #[serde(default = "default_players")]
    #[schemars(range(min = 2, max = 4))]
    pub players: u8,
    /// Free-form options for the workload (rule variants and the like).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

fn default_players() -> u8 {
    2
}

/// Tree-search simulations per move unless a job says otherwise.
pub(crate) fn default_simulations() -> u32 {
    64
}

/// How a task's process is started. An empty `command` means the built-in demo workload
/// (`ringrift workload`); see the workload contract in `docs/workload-contract.md`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadTemplate {
    /// Executable and leading arguments. Empty: the built-in demo workload.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Further arguments appended after `command`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Extra environment variables. The `RINGRIFT_*` and `CUDA_VISIBLE_DEVICES` variables of the
    /// contract are set by the agent and take precedence.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory of the process. Defaults to the task's scratch directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

/// What one task of a job needs on the agent that runs it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskResources {
    /// Whole GPUs per task. 0 runs on CPU only. Defaults to 0.
    #[serde(default)]
    #[schemars(range(max = 16))]
    pub gpus: u32,
    /// GPU memory per GPU, in MiB, that the task needs free. Defaults to 0 (any).
    #[serde(default)]
    #[serde(rename = "gpuMemoryMiB")]
    pub gpu_memory_mib: u64,
    /// CPU per task, in thousandths of a core. Defaults to 1000 (one core).
    #[serde(default = "default_cpu_millis")]
    #[schemars(range(min = 1))]
    pub cpu_millis: u32,
    /// Memory per task, in MiB. Defaults to 512.
    #[serde(default = "default_memory_mib")]
    #[schemars(range(min = 1))]
    #[serde(rename = "memoryMiB")]
    pub memory_mib: u64,
    /// Which GPUs may be used, when `gpus` is more than 0 or `gpuFraction` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_selector: Option<GpuSelector>,
    /// A share of one GPU instead of whole `gpus` (selfplay only; `gpus` must be 0): tasks are
    /// packed onto one device until their fractions fill it (0.25: four to a GPU), each seeing
    /// that device's UUID in `CUDA_VISIBLE_DEVICES`; their `gpuMemoryMiB` together must fit
    /// its memory. From 0.001 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_fraction: Option<GpuFraction>,
}

/// A fraction of one GPU, kept in thousandths and written as a number (`0.25`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GpuFraction(u16);

impl GpuFraction {
    /// A whole GPU, in thousandths.
    pub const WHOLE: u16 = 1000;

    /// `thousandths` of a GPU, from 1 to 1000.
    pub fn from_thousandths(thousandths: u16) -> Option<Self> {
        (1..=Self::WHOLE)
            .contains(&thousandths)
            .then_some(Self(thousandths))
    }

    /// In thousandths of a GPU.
    pub fn thousandths(self) -> u16 {
        self.0
    }
}

impl Serialize for GpuFraction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(f64::from(self.0) / 1000.0)
    }
}

impl<'de> Deserialize<'de> for GpuFraction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(d)?;
        let thousandths = (value * 1000.0).round();
        if !(value > 0.0 && value <= 1.0) || thousandths < 1.0 {
            return Err(serde::de::Error::custom(format!(
                "gpuFraction must be more than 0 and at most 1 (in steps of 0.001), not {value}"
            )));
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // 1..=1000
        Ok(Self(thousandths as u16))
    }
}

impl JsonSchema for GpuFraction {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "GpuFraction".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "number",
            "minimum": 0.001,
            "maximum": 1,
            "description": "A fraction of one GPU, from 0.001 to 1."
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

impl Default for TaskResources {
    fn default() -> Self {
        Self {
            gpus: 0,
            gpu_memory_mib: 0,
            cpu_millis: default_cpu_millis(),
            memory_mib: default_memory_mib(),
            gpu_selector: None,
            gpu_fraction: None,
        }
    }
}

fn default_cpu_millis() -> u32 {
    1000
}

fn default_memory_mib() -> u64 {
    512
}

/// Restricts the GPUs a task may be placed on.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GpuSelector {
    /// Glob pattern on the GPU product name as NVML reports it, for example `*H100*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub product: Option<String>,
    /// Smallest total GPU memory, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "minMemoryMiB")]
    pub min_memory_mib: Option<u64>,
}

/// Retries, deadlines, clean-up and scheduling priority of a job.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunPolicy {
    /// Retries per work unit after its first attempt fails. Defaults to 3.
    #[serde(default = "default_backoff_limit")]
    #[schemars(range(max = 100))]
    pub backoff_limit: u32,
    /// Seconds the whole job may run before it is failed with `DeadlineExceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<u64>,
    /// Seconds a task may go without reporting progress before it is considered stuck, cancelled
    /// and retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub progress_deadline_seconds: Option<u64>,
    /// Seconds after the job finishes before it (and its tasks) are deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<u64>,
    /// Suspends the job: running tasks are cancelled, progress is kept, and the job resumes when
    /// this is set back to false. Defaults to false.
    #[serde(default)]
    pub suspend: bool,
    /// Scheduling priority; higher runs first and may preempt lower. Defaults by kind: gauntlet
    /// 300, training 200, selfplay 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub priority: Option<u32>,
}

impl Default for RunPolicy {
    fn default() -> Self {
        Self {
            backoff_limit: default_backoff_limit(),
            active_deadline_seconds: None,
            progress_deadline_seconds: None,
            ttl_seconds_after_finished: None,
            suspend: false,
            priority: None,
        }
    }
}

fn default_backoff_limit() -> u32 {
    3
}

/// A claimant's terms in the fleet's fair share: a `TrainingLoop`'s (for all its jobs), or a
/// job's own when no loop owns it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShareSpec {
    /// Weight against the other claimants: with twice the weight, twice the share of the
    /// fleet while both want more than they have. Defaults to 1.
    #[serde(default = "default_weight")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub weight: u32,
    /// GPUs it is entitled to before the rest is shared by weight (when its work asks for as
    /// many), so it never starves. Defaults to 0.
    #[serde(default, rename = "minGPUs")]
    #[schemars(range(max = 1_000_000))]
    pub min_gpus: u32,
}

impl Default for ShareSpec {
    fn default() -> Self {
        Self {
            weight: default_weight(),
            min_gpus: 0,
        }
    }
}

fn default_weight() -> u32 {
    1
}

/// How a claimant stands in the fleet's fair share, as of the controller's last pass.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShareStatus {
    /// GPUs it is entitled to: its weighted share of the fleet, capped by what its work asks
    /// for (two decimals; a share need not be whole GPUs).
    #[serde(rename = "entitledGPUs")]
    pub entitled_gpus: f64,
    /// CPU it is entitled to, thousandths of a core.
    #[serde(rename = "entitledCPUMillis")]
    pub entitled_cpu_millis: u64,
    /// GPUs its running tasks hold, fractions of shared devices included (two decimals; more
    /// than entitled: capacity lent while others have no work for it).
    #[serde(rename = "usedGPUs")]
    pub used_gpus: f64,
    /// CPU its running tasks hold, thousandths of a core.
    #[serde(rename = "usedCPUMillis")]
    pub used_cpu_millis: u64,
    /// Work units waiting for room.
    pub waiting: u32,
}

/// A reference to a model: a `Model` by name, or the current best model of a `TrainingLoop`.
/// Exactly one of the two is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.model) != has(self.bestOf)")
    .message("exactly one of model or bestOf must be set"))]
pub struct ModelRef {
    /// Name of a `Model` in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = NAME_PATTERN))]
    pub model: Option<String>,
    /// Name of a `TrainingLoop` in the same namespace whose best model is meant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = NAME_PATTERN))]
    pub best_of: Option<String>,
}

impl ModelRef {
    /// A reference to the `Model` with this name.
    pub fn model(name: impl Into<String>) -> Self {
        Self {
            model: Some(name.into()),
            best_of: None,
        }
    }

    /// A reference to the best model of the `TrainingLoop` with this name.
    pub fn best_of(training_loop: impl Into<String>) -> Self {
        Self {
            model: None,
            best_of: Some(training_loop.into()),
        }
    }
}

/// For `skip_serializing_if`: a count that is zero.
#[allow(clippy::trivially_copy_pass_by_ref)] // serde passes a reference
pub(crate) fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What an artifact holds.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ArtifactKind {
    /// Recorded selfplay games.
    Games,
    /// Model weights that can be played.
    Model,
    /// A training checkpoint (weights and optimizer state).
    Checkpoint,
}

/// A content-addressed file held by one or more agents.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Name for people and for the workload (the file name in its input directory).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// What it holds: `games`, `model` or `checkpoint`.
    pub kind: ArtifactKind,
    /// `sha256:` and the hex digest of the content.
    #[schemars(regex(pattern = DIGEST_PATTERN))]
    pub digest: String,
    /// Size of the content in bytes.
    pub size_bytes: u64,
    /// Agents known to hold it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1024))]
    pub holders: Vec<String>,
}

/// Counts of a job's tasks by phase.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskCounts {
    /// Created, waiting for an agent to start them.
    #[serde(default)]
    pub pending: u32,
    /// Fetching inputs or running.
    #[serde(default)]
    pub running: u32,
    /// Finished successfully (one per work unit).
    #[serde(default)]
    pub succeeded: u32,
    /// Attempts that failed (including lost ones).
    #[serde(default)]
    pub failed: u32,
}

/// Why work is waiting and where it stands in the queue.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueStatus {
    /// Position in the placement queue, 1 being next.
    pub position: u32,
    /// Why it does not fit anywhere now, for example `no Ready agent has 2 free GPUs`.
    pub reason: String,
}

/// Phase of a job.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum JobPhase {
    /// Accepted, no task running yet.
    #[default]
    Pending,
    /// At least one task is running or placed.
    Running,
    /// Suspended by `runPolicy.suspend`.
    Suspended,
    /// All work units succeeded.
    Succeeded,
    /// Gave up: retries exhausted, deadline exceeded or invalid spec.
    Failed,
}

impl JobPhase {
    /// Whether the job will make no further progress.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// Schema of `status.conditions`: a list of `metav1.Condition` merged by `type`.
pub(crate) fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    let object = schema.ensure_object();
    object.insert("x-kubernetes-list-type".into(), "map".into());
    object.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["type"]));
    object.insert(
        "description".into(),
        "Latest observations of the object's state, one per condition type.".into(),
    );
    schema
}

/// Schema of a free-form JSON object kept as is (`x-kubernetes-preserve-unknown-fields`).
pub(crate) fn free_form_object_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// A condition's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionStatus {
    /// `True`.
    True,
    /// `False`.
    False,
    /// `Unknown`: the writer cannot tell (an agent without GPUs for `GpuHealthy`).
    Unknown,
}

impl ConditionStatus {
    /// As the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(value: bool) -> Self {
        if value { Self::True } else { Self::False }
    }
}

/// Sets condition `type_` in `conditions`, as the API conventions describe it: its
/// `lastTransitionTime` moves only when its status changes, and `observedGeneration` is the
/// object's generation the writer acted on. The controller's and the agent's conditions are all
/// set here.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: impl Into<ConditionStatus>,
    reason: &str,
    message: &str,
    generation: i64,
    now: jiff::Timestamp,
) {
    let status = status.into().as_str();
    let kept = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone());
    let condition = Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        observed_generation: Some(generation),
        last_transition_time: kept.unwrap_or(Time(now)),
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => *c = condition,
        None => conditions.push(condition),
    }
}

#[cfg(test)]
mod condition_tests {
    use super::*;

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + seconds).unwrap_or_default()
    }

    #[test]
    fn a_condition_keeps_its_transition_time_until_its_status_changes() {
        let mut c = Vec::new();
        set_condition(&mut c, "Ready", true, "Accepted", "", 1, at(0));
        set_condition(&mut c, "Ready", true, "Accepted", "again", 2, at(50));
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, Time(at(0)));
        assert_eq!(c[0].message, "again");
        assert_eq!(c[0].observed_generation, Some(2));
        set_condition(&mut c, "Ready", false, "ModelNotFound", "", 2, at(60));
        assert_eq!(c[0].last_transition_time, Time(at(60)));
        set_condition(
            &mut c,
            "GpuHealthy",
            ConditionStatus::Unknown,
            "NoGpus",
            "none",
            2,
            at(70),
        );
        assert_eq!((c.len(), c[1].status.as_str()), (2, "Unknown"));
    }
}
