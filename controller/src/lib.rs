//! The RingRift controller: holds leadership through a `coordination.k8s.io/v1` Lease and turns
//! `SelfplayJob`, `TrainingJob` and `GauntletJob` objects into `Task`s bound to agents.
//!
//! Built so far: [`leader`], leader election; [`rating`], gauntlet statistics and the promotion
//! decision. The reconcilers and `ringrift controller` are
//! not built yet. See DESIGN.md sections 4 and 5.

pub mod leader;
pub mod plan;
pub mod rating;
pub mod ratings;
pub mod reconcile;
pub mod runtime;
