//! Peer-to-peer data sync (DESIGN.md section 7): artifacts are content-addressed, served by
//! every agent that holds them ([`serve`]), and pulled in verified chunks from several holders
//! at once ([`pull`]), resumable, within one bandwidth limit and by priority ([`gate`]), over
//! TLS to peers trusted by the certificate fingerprints their `Agent` objects publish
//! ([`pins`], [`client`]).
//!
//! Pure decisions: [`chain`] (SHA-256 cut at chunk boundaries), [`manifest`] (chunk layout and
//! checks), [`plan`] (which holder serves which chunk, and what a bad one costs it), [`gate`]
//! (priority order, token bucket), [`range`] (the `Range` header), [`sent`] (what a holder has
//! sent lately, so its first copies go to different chunks) and [`retention`] (what to drop when
//! the disk fills).

pub mod blocks;
pub mod chain;
pub mod checked;
pub mod client;
pub mod context;
mod fetch;
pub mod gate;
pub mod holder;
pub mod key;
pub mod manifest;
pub mod metrics;
pub mod partial;
pub mod pins;
pub mod plan;
pub mod pull;
pub mod range;
pub mod receive;
pub mod replicate;
pub mod retention;
pub mod sent;
pub mod serve;
pub mod state;
pub mod sweep;

pub use context::Context;
