//! `Model`: a trained model in the registry, with its lineage and rating.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{DIGEST_PATTERN, GameSpec, NAME_PATTERN};

/// A trained model: its weights (by digest), lineage and rating. Created by the `TrainingJob`
/// that produced it; the spec never changes after creation.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "ringrift.ai",
    version = "v1alpha1",
    kind = "Model",
    namespaced,
    status = "ModelStatus",
    shortname = "mdl",
    category = "ringrift",
    doc = "A trained model with its lineage and rating.",
    printcolumn(name = "Generation", type_ = "integer", json_path = ".spec.generation"),
    printcolumn(name = "Elo", type_ = "number", json_path = ".status.elo"),
    printcolumn(
        name = "Games",
        type_ = "integer",
        json_path = ".status.gamesRated",
        description = "Gauntlet games rated"
    ),
    printcolumn(name = "Promoted", type_ = "boolean", json_path = ".status.promoted"),
    printcolumn(name = "Parent", type_ = "string", json_path = ".spec.parent"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("Model spec is immutable"))]
pub struct ModelSpec {
    /// The game it plays.
    pub game: GameSpec,
    /// `sha256:` digest of the weights artifact.
    #[schemars(regex(pattern = DIGEST_PATTERN))]
    pub digest: String,
    /// Size of the weights in bytes.
    pub size_bytes: u64,
    /// Generation that produced it; 0 for an initial model.
    #[serde(default)]
    pub generation: u32,
    /// The model it was trained from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = NAME_PATTERN))]
    pub parent: Option<String>,
    /// The `TrainingLoop` it belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = NAME_PATTERN))]
    pub training_loop: Option<String>,
    /// The `TrainingJob` that produced it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = NAME_PATTERN))]
    pub training_job: Option<String>,
    /// What its training reported last (the demo's `loss`, `holdout_loss`): promotion gates
    /// of kind `metric` read them.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metrics: std::collections::BTreeMap<String, f64>,
}

/// Observed state of a `Model`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Available (its weights are held by at least one agent), with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::common::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// Elo rating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elo: Option<f64>,
    /// Lower end of the 95% interval of `elo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elo_low: Option<f64>,
    /// Upper end of the 95% interval of `elo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elo_high: Option<f64>,
    /// Gauntlet games its rating rests on.
    #[serde(default)]
    pub games_rated: u64,
    /// Whether it is (or was) the best model of its loop.
    #[serde(default)]
    pub promoted: bool,
    /// When it was promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<Time>,
    /// Agents holding its weights.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holders: Vec<String>,
}
