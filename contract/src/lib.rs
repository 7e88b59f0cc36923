//! The workload contract (DESIGN.md section 6, `docs/workload-contract.md`) as types: what the
//! controller puts in a task's parameters (`RINGRIFT_PARAMS`) for each role, and the
//! `@ringrift` report lines a workload prints. The controller serializes these, the agent and
//! the demo workload parse them: one definition, so the three cannot drift apart.
//!
//! No Kubernetes types here: a workload builds against this crate alone. The API types in
//! `ringrift-crds` convert into these (the API's spelling of a game or a window is one thing,
//! what a workload is handed another, and each can evolve behind its own version).

pub mod params;
pub mod report;

pub use params::{
    Baseline, Game, GauntletParams, Hyperparameters, NamedOpponent, OpponentDetails, Params, ParamsError,
    Role, SelfplayParams, TrainingParams, Unit, Window,
};
pub use report::{PREFIX, Report};
