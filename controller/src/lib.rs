//! The RingRift controller: holds leadership through a `coordination.k8s.io/v1` Lease, turns
//! `SelfplayJob`, `TrainingJob` and `GauntletJob` objects into `Task`s bound to agents, runs
//! each `TrainingLoop` generation after generation and keeps the model registry.
//!
//! [`leader`]: leader election; [`plan`]: work units and placement; [`sprt`]: gauntlet
//! statistics (Elo interval, SPRT) and the promotion decision; [`bradley_terry`]: model ratings
//! over every gauntlet game;
//! [`reconcile`]: the pure reconcile steps (jobs, the loop's stage machine, the registry);
//! [`runtime`]: the I/O around them (caches, the pass, leadership-gated writes, metrics, the
//! web [`dashboard`]). See
//! DESIGN.md sections 4 and 5 and `docs/controller.md`.

pub mod bradley_terry;
pub mod dashboard;
pub mod leader;
pub mod plan;
pub mod reconcile;
pub mod runtime;
pub mod sprt;
