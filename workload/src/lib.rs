//! The built-in demo workload: selfplay, training and gauntlet roles for Connect Four, following
//! the workload contract (DESIGN.md section 6). `ringrift workload` runs it; the agent starts
//! that when a job's template names no command.
//!
//! - [`game`]: the board (bitboards), moves, wins.
//! - [`net`]: the small learned model (one hidden layer, a policy and a value head).
//! - [`mcts`]: tree search guided by the model (PUCT).
//! - [`players`]: the `random` and `heuristic` baselines and the search player.
//! - [`train`]: fitting the model to recorded games.
//! - [`roles`]: the three roles under the contract.
//!
//! Everything runs on the CPU, single-threaded, and is deterministic given the task's seed.

pub mod game;
pub mod mcts;
pub mod net;
pub mod players;
pub mod record;
pub mod rng;
pub mod roles;
pub mod train;

pub use ringrift_contract::{Params, Role};
pub use roles::{Contract, run};

/// Whether `name` is a plain file name (no directories, not `.` or `..`).
pub fn plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0']) && name.len() <= 255
}
