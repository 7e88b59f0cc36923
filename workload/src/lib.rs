//! The built-in demo workload: selfplay, training and gauntlet roles for a small two-player game,
//! following the workload contract (DESIGN.md section 6).
//!
//! Not built yet; `ringrift workload` says so.
