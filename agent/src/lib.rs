//! The RingRift node agent: registers its `Agent`, detects GPUs, runs the `Task`s bound to it,
//! serves its REST API, gossips with its peers and moves artifacts between them.
//!
//! Built so far: [`sim`], simulated agents for tests and benchmarks. The real agent
//! (`ringrift agent`) is not built yet. See DESIGN.md sections 6 and 7.

pub mod sim;
