//! The RingRift node agent (`ringrift agent`): registers its `Agent` and heartbeat, detects
//! GPUs through NVML, runs the `Task`s bound to it under the workload contract, keeps local
//! state in SQLite so a restart never runs an attempt twice, and serves a REST API. See
//! DESIGN.md sections 6 and 7 and `docs/agent.md`.
//!
//! Pure decisions live in [`fence`], [`recover`], [`progress`], [`exec::classify`],
//! [`exec::launch`] and [`detect`]; the rest is I/O around them. [`sim`] holds the lightweight
//! simulated fleet used by controller tests and benchmarks.

pub mod artifacts;
pub mod detect;
pub mod exec;
pub mod fence;
pub mod gossip;
pub mod labels;
pub mod metrics;
pub mod node;
pub mod progress;
pub mod recover;
pub mod register;
pub mod rest;
pub mod run;
pub mod sim;
pub mod status;
pub mod store;
pub mod sync;
pub mod tls;
