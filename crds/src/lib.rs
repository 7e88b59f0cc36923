//! The RingRift API: group `ringrift.ai`, version `v1alpha1`.
//!
//! One module per kind, plus [`common`] for the pieces they share. Every kind derives its
//! `CustomResourceDefinition` (schema, CEL rules, printer columns, short names, the `ringrift`
//! category) from the Rust types; [`all`] returns them and [`render`] turns them into the YAML
//! committed in the Helm chart.

// `#[kube(printcolumn(type_ = …), printcolumn(type_ = …))]` repeats keys by design; clippy reads
// them as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod agent;
pub mod common;
pub mod contract;
pub mod durability;
pub mod gauntlet;
pub mod identity;
pub mod kueue;
pub mod model;
pub mod rbac;
pub mod render;
pub mod selfplay;
pub mod task;
pub mod training;
pub mod training_loop;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

pub use agent::Agent;
pub use gauntlet::GauntletJob;
pub use model::Model;
pub use selfplay::SelfplayJob;
pub use task::Task;
pub use training::TrainingJob;
pub use training_loop::TrainingLoop;

/// API group of every kind.
pub const GROUP: &str = "ringrift.ai";
/// API version of every kind.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of every kind.
pub const API_VERSION: &str = "ringrift.ai/v1alpha1";
/// Category every kind belongs to, so that `kubectl get ringrift` lists them all.
pub const CATEGORY: &str = "ringrift";

/// Every CRD of the API, in a stable order: user-facing jobs first, then what the system
/// manages.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        TrainingLoop::crd(),
        SelfplayJob::crd(),
        TrainingJob::crd(),
        GauntletJob::crd(),
        Model::crd(),
        Task::crd(),
        Agent::crd(),
    ]
}
