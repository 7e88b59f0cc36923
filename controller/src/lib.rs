//! The RingRift controller: holds leadership through a `coordination.k8s.io/v1` Lease and turns
//! `SelfplayJob`, `TrainingJob` and `GauntletJob` objects into `Task`s bound to agents.
//!
//! Not built yet; `ringrift controller` says so. See DESIGN.md sections 4 and 5.
