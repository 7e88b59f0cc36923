//! The HTTP side of the API server.

pub mod patch;
pub mod route;
pub mod selectors;
pub mod status;
