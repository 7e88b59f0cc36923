//! The benchmarks: each prints JSON figures and never fails on speed.

pub(crate) mod apiserver;
pub(crate) mod dispatch;
pub(crate) mod failover;
mod fleet;
mod http;
mod stats;
