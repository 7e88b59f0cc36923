//! The controller process: caches, leadership, the reconcile loop, the admin port.
//!
//! Every replica keeps its caches warm and serves `/ready` once they are synced; only the
//! replica holding the Lease runs passes, and every write checks the claim right before it is
//! sent ([`writer::Writer`]).

mod address;
pub mod admin;
mod admin_tls;
pub mod agents;
mod apply;
pub mod caches;
mod creates;
pub mod dashboard;
pub mod events;
mod hand_overs;
pub mod jobs;
mod kueue;
mod loops;
pub mod metrics;
pub mod overlay;
mod plans;
pub mod reach;
pub mod reconciler;
mod repair;
pub mod run;
mod task_index;
pub mod world;
pub mod writer;
