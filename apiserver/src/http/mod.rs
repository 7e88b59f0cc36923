//! The HTTP side of the API server: [`serve`] runs an [`ApiServer`] on a listener.

mod access;
mod admission;
mod builtin;
mod convert;
mod delete;
pub mod discovery;
mod handlers;
mod join;
mod lifecycle;
mod meta;
pub mod metrics;
mod params;
pub mod patch;
mod protobuf;
mod query;
mod reads;
mod relay;
mod reply;
mod reviews;
pub mod route;
mod scale;
pub mod selectors;
mod server;
mod start;
mod state;
pub mod status;
pub mod strategic;
pub mod table;
mod target;
mod watch;
mod write;

pub use query::Query;
pub use reply::Body;
pub use server::serve;
pub use state::{ApiServer, DEFAULT_MAX_BODY, Options};
