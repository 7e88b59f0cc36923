//! [`Elector`]: runs leader election on a `coordination.k8s.io/v1` Lease through the API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::decision::{Step, Timing, decide, release};

/// Why an elector stopped.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    /// The timing is not usable.
    #[error("invalid leader election timing: {0}")]
    Timing(String),
    /// The leader could not renew within the renew deadline: it must stop writing and exit.
    #[error("failed to renew the lease {lease} within {deadline:?}; leadership lost")]
    Lost {
        /// The Lease.
        lease: String,
        /// The renew deadline.
        deadline: Duration,
    },
}

impl ElectionError {
    /// A stable label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Timing(_) => "config",
            Self::Lost { .. } => "lost",
        }
    }
}

/// Now on tokio's clock (as a std `Instant`, which the pure decision takes): a test that
/// pauses time moves the elector's clock with it.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Leader election for one identity on one Lease.
pub struct Elector {
    leases: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    /// The Lease as last read, its resourceVersion, and when this replica first saw that spec.
    observed: Option<(LeaseSpec, Option<String>, Instant)>,
    /// Woken when the Lease changes, so a standby tries at once after a release instead of
    /// at its next retry.
    nudge: Option<Arc<Notify>>,
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector")
            .field("lease", &self.name)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Elector {
    /// An elector for `identity` on the Lease `namespace/name`.
    ///
    /// # Errors
    /// [`ElectionError::Timing`] when the timing breaks client-go's constraints.
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timing: Timing,
    ) -> Result<Self, ElectionError> {
        timing.validate().map_err(ElectionError::Timing)?;
        Ok(Self {
            leases: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            timing,
            observed: None,
            nudge: None,
        })
    }

    /// Lets a standby try to acquire as soon as `nudge` is notified (a watch saw the Lease
    /// change), besides every retry period.
    #[must_use]
    pub fn with_nudge(mut self, nudge: Arc<Notify>) -> Self {
        self.nudge = Some(nudge);
        self
    }

    /// One round: read the Lease, decide, write. True when this replica holds the Lease after
    /// the round. API errors and lost races count as not holding it.
    pub async fn try_acquire_or_renew(&mut self) -> bool {
        let read = tokio::time::timeout(self.timing.retry_period, self.leases.get_opt(&self.name)).await;
        let current = match read {
            Ok(Ok(lease)) => lease,
            Ok(Err(e)) => {
                tracing::warn!(lease = self.name, error = %e, "failed to read the lease");
                return false;
            }
            Err(_) => {
                tracing::warn!(lease = self.name, "reading the lease timed out");
                return false;
            }
        };
        let now = now();
        let (spec, version) = match &current {
            Some(lease) => (
                Some(lease.spec.clone().unwrap_or_default()),
                lease.metadata.resource_version.clone(),
            ),
            None => (None, None),
        };
        let observed_at = match (&self.observed, &spec) {
            (Some((seen, _, at)), Some(spec)) if seen == spec => *at,
            _ => now,
        };
        self.observed = spec.clone().map(|s| (s, version.clone(), observed_at));
        let step = decide(
            &self.identity,
            spec.as_ref(),
            observed_at,
            now,
            jiff::Timestamp::now(),
            &self.timing,
        );
        let retry = self.timing.retry_period;
        let params = PostParams::default();
        let written = match step {
            Step::Standby { holder, expires_in } => {
                tracing::debug!(lease = self.name, holder, ?expires_in, "standing by");
                return false;
            }
            Step::Create(spec) => {
                let lease = self.lease(spec, None);
                tokio::time::timeout(retry, self.leases.create(&params, &lease)).await
            }
            Step::Update(spec) => {
                let lease = self.lease(spec, version);
                tokio::time::timeout(retry, self.leases.replace(&self.name, &params, &lease)).await
            }
        };
        self.finish(written)
    }

    fn lease(&self, spec: LeaseSpec, resource_version: Option<String>) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                resource_version,
                ..ObjectMeta::default()
            },
            spec: Some(spec),
        }
    }

    fn finish(&mut self, written: Result<kube::Result<Lease>, tokio::time::error::Elapsed>) -> bool {
        match written {
            Ok(Ok(lease)) => {
                let spec = lease.spec.unwrap_or_default();
                self.observed = Some((spec, lease.metadata.resource_version, now()));
                true
            }
            Ok(Err(kube::Error::Api(status))) if status.code == 409 => {
                tracing::debug!(lease = self.name, "another replica won the race");
                false
            }
            Ok(Err(e)) => {
                tracing::warn!(lease = self.name, error = %e, "failed to write the lease");
                false
            }
            Err(_) => {
                tracing::warn!(lease = self.name, "writing the lease timed out");
                false
            }
        }
    }

    /// Steps down: clears the holder (if this replica still holds the Lease) so a standby takes
    /// over at its next retry instead of waiting for expiry.
    pub async fn release(&mut self) {
        let Some((spec, version, _)) = self.observed.clone() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        let lease = self.lease(release(&spec, jiff::Timestamp::now()), version);
        match self
            .leases
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = self.name, identity = self.identity, "released the lease"),
            Err(e) => tracing::warn!(lease = self.name, error = %e, "failed to release the lease"),
        }
        self.observed = None;
    }

    /// Campaigns until `shutdown` is cancelled: publishes `true` on `leading` while this replica leads.
    /// Returns `Ok` after `shutdown` (releasing the Lease if held), or
    /// [`ElectionError::Lost`] when a leader could not renew within the renew deadline; then
    /// `leading` is already `false` and the process should exit to restart with clean state.
    ///
    /// # Errors
    /// [`ElectionError::Lost`].
    pub async fn run(
        mut self,
        leading: watch::Sender<bool>,
        shutdown: CancellationToken,
    ) -> Result<(), ElectionError> {
        let retry = self.timing.retry_period;
        loop {
            if self.try_acquire_or_renew().await {
                break;
            }
            let nudge = self.nudge.clone();
            let nudged = async move {
                match nudge {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(retry) => {}
                () = nudged => {}
            }
        }
        tracing::info!(lease = self.name, identity = self.identity, "leading");
        let _ = leading.send(true);
        let mut renewed = now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    let _ = leading.send(false);
                    self.release().await;
                    return Ok(());
                }
                () = tokio::time::sleep(retry) => {}
            }
            if self.try_acquire_or_renew().await {
                renewed = now();
            } else if now().saturating_duration_since(renewed) >= self.timing.renew_deadline {
                let _ = leading.send(false);
                tracing::error!(lease = self.name, identity = self.identity, "leadership lost");
                return Err(ElectionError::Lost {
                    lease: self.name.clone(),
                    deadline: self.timing.renew_deadline,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
