//! `TrainingLoop`: generations of selfplay → training → gauntlet → promotion.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::NAME_PATTERN;
use crate::common::{GameSpec, ShareSpec, ShareStatus};
use crate::gauntlet::{Decision, GauntletSettings, Opponent};
use crate::selfplay::SelfplaySettings;
use crate::training::TrainingSettings;

/// Runs the AlphaZero loop: each generation records selfplay games with the best model, trains
/// a candidate on a window of recent games, plays a gauntlet against the best model and the
/// baselines, and promotes the candidate if it wins clearly enough.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "ringrift.ai",
    version = "v1alpha1",
    kind = "TrainingLoop",
    namespaced,
    status = "TrainingLoopStatus",
    shortname = "loop",
    category = "ringrift",
    doc = "Runs generations of selfplay, training, gauntlet and promotion.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Generation", type_ = "integer", json_path = ".status.generation"),
    printcolumn(name = "Stage", type_ = "string", json_path = ".status.stage"),
    printcolumn(name = "Best", type_ = "string", json_path = ".status.bestModel"),
    printcolumn(name = "BestElo", type_ = "number", json_path = ".status.bestElo"),
    printcolumn(name = "GPUs", type_ = "number", json_path = ".status.share.usedGPUs"),
    printcolumn(name = "Entitled", type_ = "number", json_path = ".status.share.entitledGPUs"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.training.gates) || !has(self.pipeline) || self.pipeline != 'Continuous'")
    .message("training.gates apply to the Generational pipeline only")
    .field_path(".training.gates"))]
pub struct TrainingLoopSpec {
    /// The game to learn.
    pub game: GameSpec,
    /// The `Model` generation 0 plays with. Unset: an untrained model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = NAME_PATTERN))]
    pub initial_model: Option<String>,
    /// Generations to run before the loop succeeds. Unset: run until stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100_000))]
    pub max_generations: Option<u32>,
    /// Pauses the loop between stages; nothing is lost. Defaults to false.
    #[serde(default)]
    pub suspend: bool,
    /// Start the next generation's selfplay while the gauntlet runs (with the current best
    /// model, never an unpromoted one). Defaults to false.
    #[serde(default)]
    pub overlap_selfplay: bool,
    /// The selfplay stage of each generation (each becomes a `SelfplayJob`).
    pub selfplay: SelfplaySettings,
    /// The training stage of each generation (each becomes a `TrainingJob`), and the gates
    /// the generation's games must pass first.
    pub training: TrainingStage,
    /// The gauntlet stage of each generation.
    pub gauntlet: GauntletStage,
    /// Its terms in the fleet's fair share, for all its jobs. Defaults to weight 1, no floor.
    #[serde(default)]
    pub share: ShareSpec,
    /// How the stages follow each other: `Generational` (the default: each generation's
    /// selfplay, then training, then gauntlet) or `Continuous` (selfplay runs all the time, in
    /// batches of `selfplay.games` games with the best model; a training starts when
    /// `continuous.trainEvery` new games have arrived and the cooldown has passed; the gauntlet
    /// runs while selfplay goes on).
    #[serde(default)]
    pub pipeline: Pipeline,
    /// When trainings start in the continuous pipeline (ignored by the generational one).
    #[serde(default)]
    pub continuous: ContinuousSpec,
    /// Make this earlier `Model` the best model again. Applied once per distinct value (the
    /// value applied is `status.rollbackApplied`): a later promotion is not undone unless the
    /// value changes. Unfinished jobs on another model are started again on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = NAME_PATTERN))]
    pub rollback_to: Option<String>,
    /// Roll back a promoted model on its own when it proves worse than the model it replaced.
    /// Unset: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_rollback: Option<AutoRollback>,
}

/// When a promoted model is rolled back on its own: once the upper end of the 95% interval of
/// its Elo minus its parent's (the best model it replaced) falls below `-marginElo`, as the
/// ratings refit over every gauntlet game.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoRollback {
    /// How much worse than its parent, in Elo, a model must surely be. Defaults to 0.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1000.0))]
    pub margin_elo: f64,
}

/// What rolled a loop's best model back.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RollbackTrigger {
    /// `spec.rollbackTo`.
    #[default]
    Manual,
    /// `spec.autoRollback`.
    Automatic,
}

/// One rollback of a loop's best model.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RollbackRecord {
    /// The generation the loop was in.
    pub generation: u32,
    /// The best model before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The best model after.
    pub to: String,
    /// `Manual` (`spec.rollbackTo`) or `Automatic` (`spec.autoRollback`).
    #[serde(default)]
    pub trigger: RollbackTrigger,
    /// Why, in words.
    #[serde(default)]
    pub message: String,
    /// When.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
}

/// How a loop's stages follow each other.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Pipeline {
    /// Each generation's selfplay, training and gauntlet in turn (`overlapSelfplay` starts the
    /// next selfplay during the gauntlet).
    #[default]
    Generational,
    /// Selfplay all the time; training when enough new games have arrived.
    Continuous,
}

/// When a continuous loop trains.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContinuousSpec {
    /// New games (of finished selfplay batches) since the last training start that start the
    /// next training. Unset: `selfplay.games`, one batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub train_every: Option<u64>,
    /// Least seconds between the starts of two trainings. Defaults to 0.
    #[serde(default)]
    #[schemars(range(max = 604_800))]
    pub cooldown_seconds: u64,
}

/// Where a continuous loop's selfplay and game count stand.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContinuousStatus {
    /// The selfplay batch running (or next to run), from 1; its job is `<loop>-s<NNNN>`.
    #[serde(default)]
    pub batch: u32,
    /// Games of the finished batches.
    #[serde(default)]
    pub games: u64,
    /// `games` when the last training started.
    #[serde(default)]
    pub games_at_last_training: u64,
    /// The new games that started the generation in progress's training (its history
    /// record's `games`).
    #[serde(default)]
    pub generation_games: u64,
    /// When the last training started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_training_time: Option<Time>,
}

/// Template of each generation's `GauntletJob`. The current best model is always added as the
/// opponent named `best`, and decides promotion unless `promotion.opponent` says otherwise.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.opponents.all(o, o.name != 'best')")
        .message("the opponent name 'best' is reserved for the current best model")
        .field_path(".opponents"),
    validation = Rule::new(
        "!has(self.promotion.opponent) || self.promotion.opponent == 'best' || self.opponents.exists(o, o.name == self.promotion.opponent)")
        .message("promotion.opponent must be 'best' or name one of the opponents")
        .field_path(".promotion.opponent"),
    validation = Rule::new(
        "!has(self.promotion.gates) || self.promotion.gates.all(g, !has(g.opponent) || g.opponent == 'best' || self.opponents.exists(o, o.name == g.opponent))")
        .message("every promotion gate's opponent must be 'best' or name one of the opponents")
        .field_path(".promotion.gates")
)]
pub struct GauntletStage {
    /// Further opponents, typically the `random` and `heuristic` baselines.
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(max = 15))]
    pub opponents: Vec<Opponent>,
    /// How many games, how the decision is made, and how each task runs.
    #[serde(flatten)]
    pub settings: GauntletSettings,
}

/// A loop's training stage: the `TrainingJob` settings, and quality gates on the games.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingStage {
    /// The window, the optimisation settings and how the trainer runs.
    #[serde(flatten)]
    pub settings: TrainingSettings,
    /// Bounds on the figures the generation's selfplay reported (each metric averaged over its
    /// tasks, weighted by games; the demo's `draw_rate` and `mean_moves`), checked once the
    /// selfplay has finished: one that fails rejects the generation without training, naming
    /// the gate (no retry). Generational pipeline only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub gates: Vec<TrainingGate>,
}

/// A quality gate on a generation's games.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingGate {
    /// Its name in reasons. Defaults to `metric-<metric name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = NAME_PATTERN))]
    pub name: Option<String>,
    /// The bound.
    pub metric: crate::gauntlet::MetricTest,
}

/// Phase of a loop.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum LoopPhase {
    /// Accepted, nothing started.
    #[default]
    Pending,
    /// A generation is in progress.
    Running,
    /// Paused by `spec.suspend`.
    Suspended,
    /// A stage failed past its retries; the loop waits for a fix and says why.
    Degraded,
    /// `maxGenerations` reached.
    Succeeded,
}

/// The stage a generation is in.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Stage {
    /// Recording games.
    #[default]
    Selfplay,
    /// Training the candidate.
    Training,
    /// Playing the gauntlet.
    Gauntlet,
    /// The loop has finished.
    Done,
}

/// Observed state of a `TrainingLoop`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrainingLoopStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Running, Suspended, Degraded or Succeeded.
    #[serde(default)]
    pub phase: LoopPhase,
    /// Ready, Progressing, Degraded, Suspended and OutputsAvailable (False while outputs of its
    /// jobs have no copy left), with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::common::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The generation in progress, from 1.
    #[serde(default)]
    pub generation: u32,
    /// Selfplay, Training, Gauntlet or Done.
    #[serde(default)]
    pub stage: Stage,
    /// The current best (promoted) `Model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_model: Option<String>,
    /// Elo rating of the best model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_elo: Option<f64>,
    /// The jobs of the generation in progress.
    #[serde(default)]
    pub active_jobs: ActiveJobs,
    /// Its standing in the fleet's fair share (all its jobs together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<ShareStatus>,
    /// The continuous pipeline's selfplay batches and game counts (that pipeline only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continuous: Option<ContinuousStatus>,
    /// One record per finished generation, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["generation".into()]))]
    pub history: Vec<GenerationRecord>,
    /// The `spec.rollbackTo` value last applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_applied: Option<String>,
    /// Every rollback of the best model, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollbacks: Vec<RollbackRecord>,
}

/// Names of the child jobs currently running.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActiveJobs {
    /// The `SelfplayJob`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selfplay: Option<String>,
    /// The `TrainingJob`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<String>,
    /// The `GauntletJob`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gauntlet: Option<String>,
}

/// What happened in one generation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenerationRecord {
    /// Generation number, from 1.
    pub generation: u32,
    /// The candidate `Model` trained in this generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// Promote or Reject.
    #[serde(default)]
    pub decision: Decision,
    /// Candidate's score against the deciding opponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub win_rate: Option<f64>,
    /// Why the gauntlet decided so: the deciding test's reason, or which promotion gate
    /// failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Candidate's Elo rating after the gauntlet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elo: Option<f64>,
    /// Games recorded in this generation.
    #[serde(default)]
    pub games: u64,
    /// Bytes its jobs moved between agents (inputs pulled, copies of outputs), when it was
    /// recorded.
    #[serde(default)]
    pub bytes_moved: u64,
    /// The child jobs, for drilling down.
    #[serde(default)]
    pub jobs: ActiveJobs,
    /// When the generation finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
}
