//! The benchmarks: each prints JSON figures and never fails on speed.

pub(crate) mod apiserver;
mod http;
mod stats;
