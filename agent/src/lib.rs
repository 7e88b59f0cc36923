//! The RingRift node agent: registers its `Agent`, detects GPUs, runs the `Task`s bound to it,
//! serves its REST API, gossips with its peers and moves artifacts between them.
//!
//! Not built yet; `ringrift agent` says so. See DESIGN.md sections 6 and 7.
