//! The HTTP side of the API server: [`serve`] runs an [`ApiServer`] on a listener.

mod access;
mod admission;
mod builtin;
mod convert;
mod delete;
pub mod discovery;
mod handlers;
mod lifecycle;
mod meta;
pub mod metrics;
mod params;
pub mod patch;
mod protobuf;
mod reviews;
pub mod route;
mod scale;
pub mod selectors;
mod server;
pub mod status;
pub mod strategic;
pub mod table;
mod watch;

pub use server::{ApiServer, Body, DEFAULT_MAX_BODY, Options, Query, serve};
