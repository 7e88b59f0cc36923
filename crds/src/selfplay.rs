//! `SelfplayJob`: play games with a model and record them as a dataset.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    Artifact, GameSpec, JobPhase, ModelRef, NAME_PATTERN, QueueStatus, RunPolicy, TaskCounts, TaskResources,
    WorkloadTemplate,
};

/// Plays `games` games with `model`, split into tasks of `gamesPerTask` games each, and records
/// them as the dataset named in `output`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "ringrift.ai",
    version = "v1alpha1",
    kind = "SelfplayJob",
    namespaced,
    status = "SelfplayJobStatus",
    shortname = "sp",
    category = "ringrift",
    doc = "Plays games with a model and records them as a dataset.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Games",
        type_ = "string",
        json_path = ".status.progress",
        description = "Games done/total"
    ),
    printcolumn(name = "Games/s", type_ = "number", json_path = ".status.gamesPerSecond"),
    printcolumn(name = "ETA", type_ = "string", json_path = ".status.eta"),
    printcolumn(name = "Model", type_ = "string", json_path = ".status.model", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct SelfplayJobSpec {
    /// The game to play.
    pub game: GameSpec,
    /// The model that plays. Unset: an untrained model (generation 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
    /// How many games, how they are split into tasks, and how each task runs.
    #[serde(flatten)]
    pub settings: SelfplaySettings,
    /// Where the recorded games go.
    pub output: DatasetOutput,
    /// Its terms in the fleet's fair share when no `TrainingLoop` owns it (a loop's jobs count
    /// under the loop's `spec.share`). Unset: weight 1, no floor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<crate::common::ShareSpec>,
}

/// How much selfplay to do and how: shared by `SelfplayJob` and a `TrainingLoop`'s selfplay
/// stage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelfplaySettings {
    /// Games to record (in a `TrainingLoop`: per generation).
    #[schemars(range(min = 1))]
    pub games: u64,
    /// Games per task (work unit). Defaults to 100.
    #[serde(default = "default_games_per_task")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub games_per_task: u64,
    /// Most tasks running at once. Unset: as many as fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub parallelism: Option<u32>,
    /// Tree-search simulations per move. Defaults to 64.
    #[serde(default = "crate::common::default_simulations")]
    #[schemars(range(min = 1, max = 100_000))]
    pub simulations: u32,
    /// How each task's process is started. Defaults to the built-in demo workload.
    #[serde(default)]
    pub template: WorkloadTemplate,
    /// What each task needs.
    #[serde(default)]
    pub resources: TaskResources,
    /// Retries, deadlines and priority.
    #[serde(default)]
    pub run_policy: RunPolicy,
    /// Copies of each task's games kept on distinct agents (the producer's own included),
    /// spread over zones. Defaults to 2; fewer while fewer agents can take one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = crate::common::MAX_REPLICAS))]
    pub replicas: Option<u32>,
}

fn default_games_per_task() -> u64 {
    100
}

/// The dataset a selfplay job writes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatasetOutput {
    /// Dataset name. Each task's games become an artifact of this dataset.
    #[schemars(length(min = 1, max = 253), regex(pattern = NAME_PATTERN))]
    pub dataset: String,
}

/// Observed state of a `SelfplayJob`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SelfplayJobStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Running, Suspended, Succeeded or Failed.
    #[serde(default)]
    pub phase: JobPhase,
    /// Ready, Progressing, Suspended and Failed, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::common::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Games recorded by succeeded tasks (each work unit counted once).
    #[serde(default)]
    pub games_done: u64,
    /// Games asked for (`spec.games`).
    #[serde(default)]
    pub games_total: u64,
    /// `gamesDone/gamesTotal`, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Recent rate of games finished per second across all tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub games_per_second: Option<f64>,
    /// Estimated time left, for example `4m10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<String>,
    /// The `Model` the games are played with (resolved from `spec.model`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Tasks by phase.
    #[serde(default)]
    pub tasks: TaskCounts,
    /// Why work is waiting, when some fits on no agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueStatus>,
    /// Recorded game files, one per succeeded work unit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<Artifact>,
    /// The metrics its counted tasks reported, each averaged over them weighted by games
    /// (data-quality figures such as the demo's `draw_rate`; a loop's training gates read them).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// Bytes its tasks moved between agents: inputs pulled and copies of outputs pushed or
    /// made again, by every attempt.
    #[serde(default, skip_serializing_if = "crate::common::is_zero")]
    pub bytes_moved: u64,
    /// When the first task started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the job succeeded or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
}
