//! One round of leader election, decided without I/O, with client-go's semantics: a missing
//! Lease is created; a Lease held by another identity is left alone until it has gone
//! unrenewed for its duration, as timed by *this* replica's clock from when it last saw the
//! Lease change (so clock skew between replicas does not matter); otherwise it is taken or
//! renewed by an update carrying the observed resourceVersion, so of two racing replicas one
//! gets a 409.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

/// Lease timing, as client-go's `LeaderElectionConfig`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a Lease stays valid without renewal (default 15 s).
    pub lease_duration: Duration,
    /// How long a leader keeps trying to renew before it gives up leading (default 10 s).
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew (default 2 s).
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl Timing {
    /// Checks client-go's constraints: lease duration > renew deadline > 1.2 × retry period.
    ///
    /// # Errors
    /// A message naming the violated constraint.
    pub fn validate(&self) -> Result<(), String> {
        if self.lease_duration <= self.renew_deadline {
            return Err(format!(
                "lease duration ({:?}) must be greater than renew deadline ({:?})",
                self.lease_duration, self.renew_deadline
            ));
        }
        if self.renew_deadline.as_secs_f64() <= 1.2 * self.retry_period.as_secs_f64() {
            return Err(format!(
                "renew deadline ({:?}) must be greater than 1.2 x retry period ({:?})",
                self.renew_deadline, self.retry_period
            ));
        }
        if self.retry_period.is_zero() {
            return Err("retry period must be greater than zero".into());
        }
        Ok(())
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }
}

/// What one round should do.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// No Lease exists: create this one.
    Create(LeaseSpec),
    /// Take or renew the Lease: update it to this, with the observed resourceVersion.
    Update(LeaseSpec),
    /// Another replica holds a valid Lease.
    Standby {
        /// Who holds it.
        holder: String,
        /// How long until it expires if it is not renewed.
        expires_in: Duration,
    },
}

fn holder(spec: &LeaseSpec) -> Option<&str> {
    spec.holder_identity.as_deref().filter(|h| !h.is_empty())
}

/// Decides one round for `identity`. `observed` is the Lease spec as last read (none: no Lease)
/// and `observed_at` when this replica first saw that spec; `now` is the monotonic clock and
/// `wall` the time to write into the Lease.
pub fn decide(
    identity: &str,
    observed: Option<&LeaseSpec>,
    observed_at: Instant,
    now: Instant,
    wall: jiff::Timestamp,
    timing: &Timing,
) -> Step {
    let stamp = Some(MicroTime(wall));
    let Some(spec) = observed else {
        return Step::Create(LeaseSpec {
            holder_identity: Some(identity.to_owned()),
            lease_duration_seconds: Some(timing.lease_seconds()),
            acquire_time: stamp.clone(),
            renew_time: stamp,
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        });
    };
    let current = holder(spec);
    if let Some(other) = current.filter(|h| *h != identity) {
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(timing.lease_duration, Duration::from_secs);
        let expires = observed_at + duration;
        if now < expires {
            return Step::Standby {
                holder: other.to_owned(),
                expires_in: expires - now,
            };
        }
    }
    let mut next = spec.clone();
    next.holder_identity = Some(identity.to_owned());
    next.lease_duration_seconds = Some(timing.lease_seconds());
    next.renew_time.clone_from(&stamp);
    if current != Some(identity) {
        next.acquire_time = stamp;
        next.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    Step::Update(next)
}

/// The Lease a leader writes when it steps down: no holder, so a standby takes over at its
/// next retry instead of waiting for expiry.
pub fn release(spec: &LeaseSpec, wall: jiff::Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(wall)),
        renew_time: Some(MicroTime(wall)),
        lease_transitions: spec.lease_transitions,
        ..LeaseSpec::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
    };

    fn held_by(holder: &str, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(jiff::Timestamp::UNIX_EPOCH)),
            renew_time: Some(MicroTime(jiff::Timestamp::UNIX_EPOCH)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    fn wall() -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_000_000).unwrap()
    }

    #[test]
    fn a_missing_lease_is_created() {
        let t0 = Instant::now();
        let Step::Create(spec) = decide("a", None, t0, t0, wall(), &TIMING) else {
            panic!("expected create")
        };
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(spec.renew_time, Some(MicroTime(wall())));
    }

    #[test]
    fn another_holders_valid_lease_means_standby_until_it_expires_by_our_clock() {
        let t0 = Instant::now();
        let lease = held_by("b", 3);
        let step = decide(
            "a",
            Some(&lease),
            t0,
            t0 + Duration::from_secs(5),
            wall(),
            &TIMING,
        );
        assert_eq!(
            step,
            Step::Standby {
                holder: "b".into(),
                expires_in: Duration::from_secs(10)
            }
        );
        // The renewTime in the Lease is ancient, but what counts is when we last saw it change.
        let Step::Update(taken) = decide(
            "a",
            Some(&lease),
            t0,
            t0 + Duration::from_secs(15),
            wall(),
            &TIMING,
        ) else {
            panic!("expected takeover")
        };
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.lease_transitions, Some(4), "a new holder is a transition");
        assert_eq!(taken.acquire_time, Some(MicroTime(wall())));
    }

    #[test]
    fn the_holder_renews_keeping_acquire_time_and_transitions() {
        let t0 = Instant::now();
        let Step::Update(renewed) = decide("a", Some(&held_by("a", 2)), t0, t0, wall(), &TIMING) else {
            panic!("expected renew")
        };
        assert_eq!(renewed.lease_transitions, Some(2));
        assert_eq!(renewed.acquire_time, Some(MicroTime(jiff::Timestamp::UNIX_EPOCH)));
        assert_eq!(renewed.renew_time, Some(MicroTime(wall())));
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let t0 = Instant::now();
        let released = release(&held_by("b", 5), wall());
        assert_eq!(released.holder_identity, None);
        assert_eq!(released.lease_transitions, Some(5));
        let Step::Update(taken) = decide("a", Some(&released), t0, t0, wall(), &TIMING) else {
            panic!("expected take")
        };
        assert_eq!(taken.holder_identity.as_deref(), Some("a"));
        assert_eq!(taken.lease_transitions, Some(6));
    }

    #[test]
    fn timing_constraints() {
        assert!(Timing::default().validate().is_ok());
        let bad = Timing {
            renew_deadline: Duration::from_secs(15),
            ..Timing::default()
        };
        assert!(bad.validate().unwrap_err().contains("lease duration"));
        let tight = Timing {
            retry_period: Duration::from_secs(9),
            ..Timing::default()
        };
        assert!(tight.validate().unwrap_err().contains("1.2 x retry period"));
    }
}
