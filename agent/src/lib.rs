//! The RingRift node agent (`ringrift agent`): registers its `Agent` and heartbeat, detects
//! GPUs through NVML, runs the `Task`s bound to it under the workload contract, keeps local
//! state in SQLite so a restart never runs an attempt twice, and serves a REST API. See
//! DESIGN.md sections 6 and 7 and `docs/agent.md`.
//!
//! Pure decisions live in [`fence`], [`recover`], [`progress`], [`exec::classify`],
//! [`exec::launch`] and [`detect`]; the rest is I/O around them. [`sim`] holds the lightweight
//! simulated fleet used by controller tests and benchmarks.

/// The allocator settings whatever starts an agent passes in its environment (`ringrift up`,
/// `ringrift join`'s unit file, the benchmarks, the chart's DaemonSet): the C library's malloc
/// (`ringrift_alloc`), which holds an idle agent's heap at 1.7 MiB where mimalloc holds 2.6;
/// and, should mimalloc be chosen, arena memory committed only as it is used (3 MiB of heap
/// instead of 13). See docs/benchmarks.md. A value already in the environment is left alone.
pub const ALLOCATOR_ENV: [(&str, &str); 2] = [
    ("RINGRIFT_ALLOCATOR", "system"),
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
];

/// Adds [`ALLOCATOR_ENV`] to `command`, but for variables the caller's environment already sets.
pub fn allocator_env(command: &mut std::process::Command) {
    for (name, value) in ALLOCATOR_ENV {
        if std::env::var_os(name).is_none() {
            command.env(name, value);
        }
    }
}

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
pub mod relay;
pub mod rest;
pub mod run;
pub mod sim;
pub mod status;
pub mod store;
pub mod sync;
pub mod tls;
