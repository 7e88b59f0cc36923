//! The embedded Kubernetes-compatible API server of RingRift.
//!
//! So far this crate holds [`schema`]: admission of custom resources against their CRD's
//! OpenAPI v3 schema and CEL rules. The HTTP server itself (`ringrift apiserver`) is not built
//! yet.

pub mod schema;
pub mod store;
