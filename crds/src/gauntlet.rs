//! `GauntletJob`: play a candidate model against opponents and decide on its promotion.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{
    GameSpec, JobPhase, ModelRef, NAME_PATTERN, QueueStatus, RunPolicy, TaskCounts, TaskResources,
    WorkloadTemplate,
};

/// Plays `candidate` against each opponent and decides by `promotion` whether it should become
/// the new best model. Stops early once the decision is certain.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "ringrift.ai",
    version = "v1alpha1",
    kind = "GauntletJob",
    namespaced,
    status = "GauntletJobStatus",
    shortname = "gj",
    category = "ringrift",
    doc = "Plays a candidate model against opponents and decides on its promotion.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Decision", type_ = "string", json_path = ".status.decision"),
    printcolumn(
        name = "Games",
        type_ = "string",
        json_path = ".status.progress",
        description = "Games played/scheduled"
    ),
    printcolumn(
        name = "WinRate",
        type_ = "number",
        json_path = ".status.winRate",
        description = "Candidate's score against the deciding opponent"
    ),
    printcolumn(name = "LLR", type_ = "number", json_path = ".status.sprt.llr", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(
        "!has(self.promotion.opponent) || self.opponents.exists(o, o.name == self.promotion.opponent)")
        .message("promotion.opponent must name one of the opponents")
        .field_path(".promotion.opponent"),
    validation = Rule::new(
        "!has(self.promotion.gates) || self.promotion.gates.all(g, !has(g.opponent) || self.opponents.exists(o, o.name == g.opponent))")
        .message("every promotion gate's opponent must name one of the opponents")
        .field_path(".promotion.gates")
)]
pub struct GauntletJobSpec {
    /// The game to play.
    pub game: GameSpec,
    /// The model under test.
    pub candidate: ModelRef,
    /// Who it plays, each `gamesPerOpponent` games, half of them moving first.
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[schemars(length(min = 1, max = 16))]
    pub opponents: Vec<Opponent>,
    /// How many games, how the decision is made, and how each task runs.
    #[serde(flatten)]
    pub settings: GauntletSettings,
    /// Its terms in the fleet's fair share when no `TrainingLoop` owns it (a loop's jobs count
    /// under the loop's `spec.share`). Unset: weight 1, no floor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<crate::common::ShareSpec>,
}

/// How much to play and how to decide: shared by `GauntletJob` and a `TrainingLoop`'s gauntlet
/// stage.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GauntletSettings {
    /// Games against each opponent (at most; SPRT may stop earlier). Defaults to 100.
    #[serde(default = "default_games_per_opponent")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub games_per_opponent: u32,
    /// Games per task (work unit). Defaults to 20.
    #[serde(default = "default_games_per_task")]
    #[schemars(range(min = 1, max = 100_000))]
    pub games_per_task: u32,
    /// Tree-search simulations per move. Defaults to 64.
    #[serde(default = "crate::common::default_simulations")]
    #[schemars(range(min = 1, max = 100_000))]
    pub simulations: u32,
    /// How the decision is made.
    pub promotion: PromotionPolicy,
    /// How each task's process is started. Defaults to the built-in demo workload.
    #[serde(default)]
    pub template: WorkloadTemplate,
    /// What each task needs.
    #[serde(default)]
    pub resources: TaskResources,
    /// Retries, deadlines and priority.
    #[serde(default)]
    pub run_policy: RunPolicy,
}

fn default_games_per_opponent() -> u32 {
    100
}

fn default_games_per_task() -> u32 {
    20
}

/// A built-in opponent that needs no model.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Baseline {
    /// Uniformly random legal moves.
    Random,
    /// A fixed hand-written heuristic player.
    Heuristic,
}

/// One opponent: a model, the best model of a loop, or a built-in baseline. Exactly one of
/// `model`, `bestOf` and `baseline` is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "(has(self.model) ? 1 : 0) + (has(self.bestOf) ? 1 : 0) + (has(self.baseline) ? 1 : 0) == 1")
    .message("exactly one of model, bestOf or baseline must be set"))]
pub struct Opponent {
    /// Name of this opponent in the results, unique within the job.
    #[schemars(length(min = 1, max = 63), regex(pattern = NAME_PATTERN))]
    pub name: String,
    /// Name of a `Model` in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = NAME_PATTERN))]
    pub model: Option<String>,
    /// Name of a `TrainingLoop` whose current best model plays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = NAME_PATTERN))]
    pub best_of: Option<String>,
    /// A built-in player: `random` or `heuristic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
}

/// How the promotion decision is made: one test (`winRate` or `sprt`, against `opponent`), or
/// `gates`, several that must all pass. Exactly one of the three is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "(has(self.winRate) ? 1 : 0) + (has(self.sprt) ? 1 : 0) + (has(self.gates) ? 1 : 0) == 1")
    .message("set exactly one of winRate, sprt or gates"))]
pub struct PromotionPolicy {
    /// The opponent whose games decide (and the default opponent of each gate). Defaults to
    /// the first opponent (in a `TrainingLoop`: the current best model, once there is one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub opponent: Option<String>,
    /// Promote when the candidate's score reaches `minWinRate` after at least `minGames` games:
    /// shorthand for one `winRate` gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub win_rate: Option<WinRatePolicy>,
    /// Promote or reject by SPRT between Elo hypotheses `elo0` and `elo1`: shorthand for one
    /// `sprt` gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sprt: Option<SprtPolicy>,
    /// Tests that must all pass, each against its own opponent: for example a win rate of 0.9
    /// against `random`, 0.6 against `heuristic`, an SPRT against `best` and a minimum Elo
    /// gain. The gauntlet stops as soon as one fails (reject) or all have passed (promote).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(min = 1, max = 16))]
    pub gates: Vec<PromotionGate>,
}

/// One test a candidate must pass to be promoted: exactly one of `winRate`, `sprt` and
/// `eloGain`, on the games against `opponent`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "(has(self.winRate) ? 1 : 0) + (has(self.sprt) ? 1 : 0) + (has(self.eloGain) ? 1 : 0) + (has(self.metric) ? 1 : 0) == 1")
    .message("a gate sets exactly one of winRate, sprt, eloGain or metric"))]
pub struct PromotionGate {
    /// Its name in the status and in reasons. Defaults to `<kind>-<opponent>` (for example
    /// `winRate-random`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = NAME_PATTERN))]
    pub name: Option<String>,
    /// The opponent whose games it reads. Defaults to `promotion.opponent`, else the first
    /// opponent (in a `TrainingLoop`: the best model once there is one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub opponent: Option<String>,
    /// A score threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub win_rate: Option<WinRatePolicy>,
    /// A sequential probability ratio test.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sprt: Option<SprtPolicy>,
    /// A smallest Elo gain over the opponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elo_gain: Option<EloGainPolicy>,
    /// A bound on a figure the candidate's training reported (the demo's `holdout_loss`, its
    /// loss on held-out games): decided before any game; `opponent` does not apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<MetricTest>,
}

/// A bound on a reported metric: it passes when the metric was reported and lies within
/// `min` and `max` (each inclusive; at least one is set), and fails otherwise.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.min) || has(self.max)")
    .message("a metric gate sets min, max or both"))]
pub struct MetricTest {
    /// The metric, as the workload reports it (`@ringrift {"metrics": {...}}`).
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Smallest value that passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest value that passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// A smallest Elo gain over the opponent: passes once the 95% interval of the Elo difference
/// lies at or above `minElo`, fails once it lies below; when every game is played, the
/// estimate decides.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EloGainPolicy {
    /// The gain, in Elo (negative: a loss of at most that much is accepted).
    #[schemars(range(min = -1000.0, max = 1000.0))]
    pub min_elo: f64,
    /// Games needed before deciding early. Defaults to 100.
    #[serde(default = "default_min_games")]
    #[schemars(range(min = 1))]
    pub min_games: u32,
}

/// Where one promotion gate stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum GateVerdict {
    /// Not decided yet.
    #[default]
    Pending,
    /// The candidate passed it.
    Passed,
    /// The candidate failed it.
    Failed,
}

/// One promotion gate's verdict.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GateStatus {
    /// The gate's name.
    pub name: String,
    /// The opponent it reads (none for a metric gate).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub opponent: String,
    /// Pending, Passed or Failed.
    #[serde(default)]
    pub verdict: GateVerdict,
    /// Why, in words.
    #[serde(default)]
    pub reason: String,
}

/// A score threshold. Draws count half.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WinRatePolicy {
    /// Smallest score, 0 to 1, that promotes. For example 0.55.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_win_rate: f64,
    /// Games needed before deciding. Defaults to 100.
    #[serde(default = "default_min_games")]
    #[schemars(range(min = 1))]
    pub min_games: u32,
}

fn default_min_games() -> u32 {
    100
}

/// A sequential probability ratio test on the Elo difference.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.elo1 > self.elo0")
    .message("elo1 must be greater than elo0")
    .field_path(".elo1"))]
pub struct SprtPolicy {
    /// Elo difference of the null hypothesis (no real gain). Defaults to 0.
    #[serde(default)]
    #[schemars(range(min = -1000.0, max = 1000.0))]
    pub elo0: f64,
    /// Elo difference of the alternative hypothesis (a real gain). Defaults to 10.
    #[serde(default = "default_elo1")]
    #[schemars(range(min = -1000.0, max = 1000.0))]
    pub elo1: f64,
    /// Chance of promoting a model that is no better, 0.001 to 0.5. Defaults to 0.05.
    #[serde(default = "default_error_rate")]
    #[schemars(range(min = 0.001, max = 0.5))]
    pub alpha: f64,
    /// Chance of rejecting a model that is better, 0.001 to 0.5. Defaults to 0.05.
    #[serde(default = "default_error_rate")]
    #[schemars(range(min = 0.001, max = 0.5))]
    pub beta: f64,
}

fn default_elo1() -> f64 {
    10.0
}

fn default_error_rate() -> f64 {
    0.05
}

/// The outcome of a gauntlet.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Decision {
    /// Not decided yet.
    #[default]
    Pending,
    /// The candidate should become the new best model.
    Promote,
    /// The candidate is not better.
    Reject,
}

/// Observed state of a `GauntletJob`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GauntletJobStatus {
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
    /// Pending, Promote or Reject.
    #[serde(default)]
    pub decision: Decision,
    /// Why, in words: for example `SPRT accepted H1 (LLR 2.95 >= 2.94)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_reason: Option<String>,
    /// Score of the candidate against the deciding opponent so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub win_rate: Option<f64>,
    /// Results per opponent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub results: Vec<OpponentResult>,
    /// The test's state, when `promotion.sprt` is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sprt: Option<SprtStatus>,
    /// Each promotion gate's verdict (one gate for the `winRate`/`sprt` shorthand).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub gates: Vec<GateStatus>,
    /// Games played, counted once per succeeded work unit.
    #[serde(default)]
    pub games_done: u64,
    /// Games scheduled.
    #[serde(default)]
    pub games_total: u64,
    /// `gamesDone/gamesTotal`, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Tasks by phase.
    #[serde(default)]
    pub tasks: TaskCounts,
    /// Why work is waiting, when some fits on no agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueStatus>,
    /// Bytes its tasks moved between agents: inputs pulled and copies of outputs pushed or
    /// made again, by every attempt.
    #[serde(default, skip_serializing_if = "crate::common::is_zero")]
    pub bytes_moved: u64,
    /// When the first task started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the job finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
}

/// The candidate's results against one opponent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpponentResult {
    /// The opponent's `name`.
    pub name: String,
    /// Games the candidate won.
    #[serde(default)]
    pub wins: u64,
    /// Games the candidate lost.
    #[serde(default)]
    pub losses: u64,
    /// Drawn games.
    #[serde(default)]
    pub draws: u64,
    /// Score, draws counting half.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub win_rate: Option<f64>,
    /// Elo difference, candidate minus opponent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elo_diff: Option<f64>,
    /// Lower end of the 95% interval of `eloDiff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elo_low: Option<f64>,
    /// Upper end of the 95% interval of `eloDiff`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elo_high: Option<f64>,
}

/// State of the sequential probability ratio test.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SprtStatus {
    /// Log-likelihood ratio so far.
    pub llr: f64,
    /// Rejects at or below this bound, `ln(beta / (1 - alpha))`.
    pub lower_bound: f64,
    /// Promotes at or above this bound, `ln((1 - beta) / alpha)`.
    pub upper_bound: f64,
}
