//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics: the
//! decision in [`decision`] (pure), the I/O in [`Elector`].

pub mod decision;
mod elector;

pub use decision::Timing;
pub use elector::{ElectionError, Elector};
