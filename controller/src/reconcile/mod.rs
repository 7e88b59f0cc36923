//! The reconcile pipeline's pure steps: what the planner sees ([`view`]), the decision per job
//! ([`decide`]), and the status and conditions it leads to ([`status`]).

pub mod breaker;
pub mod decide;
pub mod durability;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod gauntlet;
pub mod handover;
pub mod kueue;
pub mod models;
pub mod objects;
pub mod promotion;
pub mod status;
pub mod training_loop;
pub mod units;
pub mod validate;
pub mod view;
