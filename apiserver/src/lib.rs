//! The embedded Kubernetes-compatible API server of RingRift.
//!
//! Built so far:
//! - [`schema`]: admission of custom resources against their CRD's OpenAPI v3 schema and CEL
//!   rules (structural check, pruning, defaulting, validation);
//! - [`store`]: the object store: write semantics (preconditions, generation, the status
//!   subresource, no-op writes, finalizers) as pure functions, persisted in SQLite with one
//!   global revision and a bounded watch history.
//!
//! The HTTP server (`ringrift apiserver`) is not built yet.

pub mod http;
pub mod schema;
pub mod store;
