//! The circuit breaker for failing agents, without I/O: an agent whose tasks keep failing for
//! reasons of the agent (not of the workload) is kept from new work for a while, longer each
//! time it trips again, as the seed's node circuit breaker.
//!
//! What counts against an agent: a task that ended `GpuFault` or `AgentError`, or was lost
//! with it (its heartbeat lapsed while the task ran). The workload's own failures (`UserError`,
//! a signal, a deadline, bad inputs from elsewhere) never do. [`Policy::default`] has the
//! defaults: 3 such failures within 10 minutes trip it; the first quarantine lasts 5 minutes,
//! each further trip within 6 hours doubles it, up to an hour. The state is derived from the
//! tasks every pass, so it survives a controller restart or a change of leader.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

/// When the breaker trips and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failures that trip it…
    pub failures: u32,
    /// …within this window.
    pub window: Duration,
    /// The first quarantine.
    pub quarantine: Duration,
    /// The longest quarantine.
    pub longest: Duration,
    /// Trips this recent count toward the next quarantine's length (each doubles it).
    pub memory: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            failures: 3,
            window: Duration::from_secs(600),
            quarantine: Duration::from_secs(300),
            longest: Duration::from_secs(3600),
            memory: Duration::from_secs(6 * 3600),
        }
    }
}

/// A task failure that counts against its agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The agent.
    pub agent: String,
    /// When it ended.
    pub at: Timestamp,
    /// Why, for the message (`GpuFault`, `AgentError`, `Lost`).
    pub why: String,
}

/// An agent kept from new work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    /// Until when.
    pub until: Timestamp,
    /// When it tripped.
    pub since: Timestamp,
    /// How many times it tripped within the policy's memory, this one included.
    pub trips: u32,
    /// The failures that tripped it, with why.
    pub failures: Vec<String>,
}

impl Quarantine {
    /// For the condition and the event.
    pub fn message(&self, policy: &Policy) -> String {
        format!(
            "{} of its tasks failed for reasons of the agent within {} ({}); no new work until {} (trip {}, {})",
            self.failures.len(),
            minutes(policy.window),
            self.failures.join(", "),
            self.until.strftime("%Y-%m-%dT%H:%M:%SZ"),
            self.trips,
            minutes(Duration::try_from(self.until.duration_since(self.since)).unwrap_or_default()),
        )
    }
}

fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

fn sub(t: Timestamp, d: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN)
}

/// The agents quarantined at `now`, each with its quarantine, from the failures that count
/// against agents (any order).
pub fn quarantined(failures: &[Failure], now: Timestamp, policy: &Policy) -> BTreeMap<String, Quarantine> {
    let mut by_agent: BTreeMap<&str, Vec<&Failure>> = BTreeMap::new();
    for f in failures.iter().filter(|f| f.at <= now) {
        by_agent.entry(f.agent.as_str()).or_default().push(f);
    }
    let needed = usize::try_from(policy.failures.max(1)).unwrap_or(usize::MAX);
    let mut out = BTreeMap::new();
    for (agent, mut list) in by_agent {
        list.sort_by_key(|f| f.at);
        let mut trips: Vec<Timestamp> = Vec::new();
        let mut last: Option<Quarantine> = None;
        // Failures since the last trip: each trip starts the count again.
        let mut start = 0;
        for i in 0..list.len() {
            let at = list[i].at;
            let recent: Vec<&Failure> = list[start..=i]
                .iter()
                .copied()
                .filter(|f| f.at > sub(at, policy.window))
                .collect();
            if recent.len() < needed {
                continue;
            }
            trips.retain(|t| *t > sub(at, policy.memory));
            trips.push(at);
            let exponent = u32::try_from(trips.len() - 1).unwrap_or(u32::MAX).min(20);
            let length = policy
                .quarantine
                .saturating_mul(1 << exponent)
                .min(policy.longest);
            last = Some(Quarantine {
                until: add(at, length),
                since: at,
                trips: u32::try_from(trips.len()).unwrap_or(u32::MAX),
                failures: recent.iter().map(|f| f.why.clone()).collect(),
            });
            start = i + 1;
        }
        if let Some(q) = last.filter(|q| q.until > now) {
            out.insert(agent.to_owned(), q);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(minute: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + minute * 60).unwrap()
    }

    fn fail(agent: &str, minute: i64) -> Failure {
        Failure {
            agent: agent.into(),
            at: t(minute),
            why: "GpuFault".into(),
        }
    }

    #[test]
    fn three_failures_within_ten_minutes_trip_it_for_five() {
        let p = Policy::default();
        let f = [fail("a", 0), fail("a", 4), fail("a", 9)];
        let q = &quarantined(&f, t(9), &p)["a"];
        assert_eq!((q.since, q.until, q.trips), (t(9), t(14), 1));
        assert!(quarantined(&f, t(14), &p).is_empty(), "released at the end");
        // Two are not enough; three spread over more than the window are not either.
        assert!(quarantined(&f[..2], t(9), &p).is_empty());
        let spread = [fail("a", 0), fail("a", 6), fail("a", 11)];
        assert!(quarantined(&spread, t(11), &p).is_empty());
        // Another agent's failures are its own.
        assert!(!quarantined(&f, t(10), &p).contains_key("b"));
    }

    #[test]
    fn each_trip_within_the_memory_doubles_the_quarantine_up_to_an_hour() {
        let p = Policy::default();
        let mut f = Vec::new();
        let mut lengths = Vec::new();
        for trip in 0..6 {
            let base = trip * 50;
            f.extend([fail("a", base), fail("a", base + 1), fail("a", base + 2)]);
            let q = &quarantined(&f, t(base + 2), &p)["a"];
            lengths.push((q.until.duration_since(q.since).as_secs() / 60, q.trips));
        }
        assert_eq!(lengths, [(5, 1), (10, 2), (20, 3), (40, 4), (60, 5), (60, 6)]);
        // Trips older than 6 hours are forgotten: long after, the count starts again.
        f.extend([fail("a", 2000), fail("a", 2001), fail("a", 2002)]);
        let q = &quarantined(&f, t(2002), &p)["a"];
        assert_eq!(q.trips, 1);
    }

    #[test]
    fn a_trip_starts_the_count_again_and_the_message_says_why() {
        let p = Policy::default();
        // The fourth failure, just after the trip, does not trip it again by itself.
        let f = [fail("a", 0), fail("a", 1), fail("a", 2), fail("a", 3)];
        let q = &quarantined(&f, t(3), &p)["a"];
        assert_eq!((q.since, q.trips), (t(2), 1));
        let message = q.message(&p);
        assert!(
            message.starts_with(
                "3 of its tasks failed for reasons of the agent within 10m (GpuFault, GpuFault, GpuFault)"
            ) && message.ends_with("(trip 1, 5m)"),
            "{message}"
        );
        // Failures in the future of `now` do not count yet.
        assert!(quarantined(&f, t(1), &p).is_empty());
    }
}
