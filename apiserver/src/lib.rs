//! The embedded Kubernetes-compatible API server of RingRift (`ringrift apiserver`).
//!
//! - [`schema`]: admission of custom resources against their CRD's OpenAPI v3 schema and CEL
//!   rules (structural check, pruning, defaulting, validation);
//! - [`store`]: the object store: write semantics (preconditions, generation, the status
//!   subresource, no-op writes, finalizers) as pure functions, persisted in SQLite with one
//!   global revision and a bounded watch history;
//! - [`registry`]: the served kinds, built-in and registered by CRDs at run time;
//! - [`proto`]: the protobuf encoding of the built-in kinds kubectl and helm send;
//! - [`http`]: discovery, CRUD, patches, selectors, watches and errors over HTTP;
//! - [`certs`]: its CA and serving certificate (generated once, kept, renewed) or the operator's own;
//! - [`run`]: the process: listen over TLS, announce, write a kubeconfig, serve until shutdown.

pub mod auth;
pub mod bootstrap;
pub mod certs;
pub mod http;
pub mod proto;
pub mod registry;
pub mod run;
pub mod schema;
pub mod ssa;
pub mod store;
