//! `TrainingJob`: fit a new model on a window of recent games.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    Artifact, GameSpec, JobPhase, ModelRef, NAME_PATTERN, QueueStatus, RunPolicy, TaskResources,
    WorkloadTemplate,
};

/// Trains a candidate model from `baseModel` on the newest games of `datasets` and registers it
/// as the `Model` named in `output`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "ringrift.ai",
    version = "v1alpha1",
    kind = "TrainingJob",
    namespaced,
    status = "TrainingJobStatus",
    shortname = "tj",
    category = "ringrift",
    doc = "Trains a candidate model on a window of recent games.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Steps",
        type_ = "string",
        json_path = ".status.progress",
        description = "Steps done/total"
    ),
    printcolumn(name = "Loss", type_ = "number", json_path = ".status.loss"),
    printcolumn(name = "ETA", type_ = "string", json_path = ".status.eta"),
    printcolumn(name = "Model", type_ = "string", json_path = ".status.model"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct TrainingJobSpec {
    /// The game the model plays.
    pub game: GameSpec,
    /// Datasets (as named in `SelfplayJob.spec.output.dataset`) to train on.
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 253), regex(pattern = NAME_PATTERN)))]
    pub datasets: Vec<String>,
    /// Model to start from. Unset: train from scratch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_model: Option<ModelRef>,
    /// The window, the optimisation settings and how the trainer runs.
    #[serde(flatten)]
    pub settings: TrainingSettings,
    /// The model this job produces.
    pub output: ModelOutput,
    /// Its terms in the fleet's fair share when no `TrainingLoop` owns it (a loop's jobs count
    /// under the loop's `spec.share`). Unset: weight 1, no floor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<crate::common::ShareSpec>,
}

/// What to train on and how: shared by `TrainingJob` and a `TrainingLoop`'s training stage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingSettings {
    /// Which part of the datasets to use: the newest games or positions (in a `TrainingLoop`:
    /// across all generations' datasets).
    pub window: TrainingWindow,
    /// Optimisation settings.
    #[serde(default)]
    pub hyperparameters: Hyperparameters,
    /// How the trainer process is started. Defaults to the built-in demo workload.
    #[serde(default)]
    pub template: WorkloadTemplate,
    /// What the trainer needs; training runs as one task on one agent.
    #[serde(default)]
    pub resources: TaskResources,
    /// Retries, deadlines and priority.
    #[serde(default)]
    pub run_policy: RunPolicy,
    /// Copies of the trained model kept on distinct agents (the trainer's own included),
    /// spread over zones. Defaults to 3; fewer while fewer agents can take one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = crate::common::MAX_REPLICAS))]
    pub replicas: Option<u32>,
}

/// The newest part of the training data to use. Exactly one of `games` or `positions` is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.games) != has(self.positions)")
    .message("exactly one of games or positions must be set"))]
pub struct TrainingWindow {
    /// Use the newest this many games.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub games: Option<u64>,
    /// Use the newest this many positions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub positions: Option<u64>,
}

/// The parts of its datasets a training window reads, from the parts finished selfplay jobs
/// wrote: the newest first (by `finished`), until they hold `window_games` games (every part
/// when the window is not counted in games). The controller picks a training job's inputs with
/// it and an agent's retention keeps what it picks: one rule, so retention never drops games a
/// training will ask for.
pub fn window_parts<T, K: Ord>(
    window_games: Option<u64>,
    mut parts: Vec<T>,
    finished: impl Fn(&T) -> K,
    games: impl Fn(&T) -> u64,
) -> Vec<T> {
    parts.sort_by_key(|p| std::cmp::Reverse(finished(p)));
    let wanted = window_games.unwrap_or(u64::MAX);
    let mut held = 0u64;
    parts
        .into_iter()
        .take_while(|p| {
            let more = held < wanted;
            held = held.saturating_add(games(p));
            more
        })
        .collect()
}

/// Optimisation settings handed to the trainer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Hyperparameters {
    /// Optimiser steps. Defaults to 1000.
    #[serde(default = "default_steps")]
    #[schemars(range(min = 1))]
    pub steps: u64,
    /// Positions per batch. Defaults to 256.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1, max = 65_536))]
    pub batch_size: u32,
    /// Learning rate, more than 0 and at most 10. Defaults to 0.001.
    #[serde(default = "default_learning_rate")]
    #[schemars(range(min = 0.000_000_001, max = 10.0))]
    pub learning_rate: f64,
    /// L2 weight decay, 0 to 1. Defaults to 0.0001.
    #[serde(default = "default_weight_decay")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub weight_decay: f64,
    /// Further settings passed to the trainer untouched.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// The defaults the workload contract documents: a job that sets nothing hands the workload
/// exactly these.
impl Default for Hyperparameters {
    fn default() -> Self {
        (&ringrift_contract::Hyperparameters::default()).into()
    }
}

fn default_steps() -> u64 {
    ringrift_contract::params::DEFAULT_STEPS
}

fn default_batch_size() -> u32 {
    ringrift_contract::params::DEFAULT_BATCH_SIZE
}

fn default_learning_rate() -> f64 {
    ringrift_contract::params::DEFAULT_LEARNING_RATE
}

fn default_weight_decay() -> f64 {
    ringrift_contract::params::DEFAULT_WEIGHT_DECAY
}

/// The model a training job registers when it succeeds.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelOutput {
    /// Name of the `Model` object to create.
    #[schemars(length(min = 1, max = 253), regex(pattern = NAME_PATTERN))]
    pub model: String,
}

/// Observed state of a `TrainingJob`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingJobStatus {
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
    /// Optimiser steps done.
    #[serde(default)]
    pub step: u64,
    /// Optimiser steps asked for.
    #[serde(default)]
    pub total_steps: u64,
    /// `step/totalSteps`, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Passes over the window so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<f64>,
    /// Latest training loss reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Estimated time left, for example `2m05s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<String>,
    /// Games in the window actually used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_games: Option<u64>,
    /// Agent the trainer runs on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Why the trainer is waiting, when it fits on no agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueStatus>,
    /// The `Model` created on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Produced files: the model weights and checkpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<Artifact>,
    /// The last metrics the counted task reported (the demo's `loss`, `holdout_loss`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// Bytes its tasks moved between agents: inputs pulled and copies of outputs pushed or
    /// made again, by every attempt.
    #[serde(default, skip_serializing_if = "crate::common::is_zero")]
    pub bytes_moved: u64,
    /// Attempts made so far.
    #[serde(default)]
    pub attempts: u32,
    /// When the trainer first started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the job succeeded or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
}

#[cfg(test)]
mod tests {
    use super::window_parts;

    #[test]
    fn a_window_takes_the_newest_parts_until_it_holds_its_games() {
        // (finished, games): the order given does not matter, only when each finished.
        let parts = vec![(1, 100), (3, 100), (2, 100), (4, 0)];
        let pick = |games| window_parts(games, parts.clone(), |p| p.0, |p| p.1);
        assert_eq!(
            pick(Some(150)),
            [(4, 0), (3, 100), (2, 100)],
            "the newest is empty: it does not count"
        );
        assert_eq!(pick(Some(100)), [(4, 0), (3, 100)]);
        assert_eq!(pick(Some(1)), [(4, 0), (3, 100)]);
        assert_eq!(
            pick(None),
            [(4, 0), (3, 100), (2, 100), (1, 100)],
            "not counted in games: all"
        );
        assert_eq!(pick(Some(10_000)).len(), 4, "fewer games than the window: all");
        assert!(window_parts(Some(5), Vec::<(u8, u64)>::new(), |p| p.0, |p| p.1).is_empty());
        // Games that overflow are counted as everything.
        let huge = vec![(2, u64::MAX), (1, 5)];
        assert_eq!(
            window_parts(Some(u64::MAX), huge, |p| p.0, |p| p.1),
            [(2, u64::MAX)]
        );
    }
}
