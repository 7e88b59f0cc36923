//! Who a pull reads from, and how it fails: a holder (an agent that has the artifact), the
//! trusted client for it, and the pull's errors. The pull and its chunk fetch loop both use
//! them.

use super::client::{Peer, Reporter};
use super::context::Context;
use crate::artifacts::ArtifactError;

/// Manifests tried before a pull gives up.
pub(super) const MAX_ROUNDS: usize = 4;

/// A holder to pull from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Agent name.
    pub name: String,
    /// REST endpoint.
    pub endpoint: String,
    /// Its certificate's fingerprint (from its `Agent` status).
    pub fingerprint: Option<String>,
}

/// The client for `holder`, when it can be trusted (a published fingerprint for an `https://`
/// endpoint; plain HTTP only in the insecure benchmark mode).
pub(crate) fn peer(ctx: &Context, holder: &Holder) -> Option<Peer> {
    match Peer::new(
        &holder.name,
        &holder.endpoint,
        holder.fingerprint.as_deref(),
        &ctx.state.fetch_token,
        ctx.state.plain_peers,
    ) {
        Ok(peer) => Some(peer.with_reporter(Reporter {
            metrics: ctx.trust.clone(),
            pins: ctx.state.pins.clone(),
        })),
        Err(e) => {
            tracing::warn!(holder = %holder.name, error = %e, "not pulling from this holder");
            None
        }
    }
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// No holder answered with a valid manifest.
    #[error("no holder of {digest} could serve it (asked: {asked}); last error: {last}")]
    NoHolder {
        /// The artifact.
        digest: String,
        /// Holders asked.
        asked: String,
        /// The last error.
        last: String,
        /// Every holder asked refused this agent's credentials (asking again will not help).
        denied: bool,
    },
    /// No progress for a minute.
    #[error("pull of {digest} stalled with {remaining} chunks missing; holders left: {usable}")]
    Stalled {
        /// The artifact.
        digest: String,
        /// Chunks missing.
        remaining: usize,
        /// Holders still usable.
        usable: usize,
    },
    /// Every manifest tried was refuted by the bytes.
    #[error("{0} did not verify after {MAX_ROUNDS} rounds")]
    NeverVerified(String),
    /// Local trouble.
    #[error(transparent)]
    Local(#[from] ArtifactError),
}

impl From<crate::store::StoreError> for PullError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Local(ArtifactError::Store(e))
    }
}

pub(super) fn local_io(
    action: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> PullError {
    let path = path.display().to_string();
    move |source| PullError::Local(ArtifactError::Io { action, path, source })
}
