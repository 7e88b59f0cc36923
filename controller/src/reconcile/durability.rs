//! Durability of a job's outputs, without I/O: which agents still hold each output (its live
//! holders), which copies to make again when a holder is lost ([`repairs`]), and which outputs
//! have no copy left.
//!
//! An output should have its job's `replicas` copies on distinct agents; the producing agent
//! pushes them before its task succeeds. Afterwards the controller keeps the count: a holder
//! whose heartbeat lapsed (or whose `Agent` is gone) no longer counts, and for every output the
//! fleet still needs ([`ringrift_crds::durability::Needed`], the definition agents' retention
//! uses too) the controller creates `copy` Tasks on other agents until the count is back to
//! min(replicas, agents that may take a copy). A copy Task has the output as its one input:
//! its agent pulls it from the live holders and reports it as its output once verified; the
//! job's status then names that agent among the output's holders.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use jiff::Timestamp;
use ringrift_crds::common::Artifact;
use ringrift_crds::durability::zone_order;
use ringrift_crds::task::TaskPhase;

use super::view::TaskView;

/// How long after a failed copy of an output the next is tried.
pub const COPY_RETRY: Duration = Duration::from_secs(10);

/// The work unit of the copies of the artifact with this digest: `copy-` and the first 12 hex
/// digits (copies of one artifact share it, each a new attempt).
pub fn copy_unit(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("copy-{}", hex.get(..12).unwrap_or(hex))
}

/// A job's outputs as recorded: each counted task's outputs, with the agents that made a copy
/// since (succeeded copy Tasks) added to the holders of the artifact they copied.
pub fn merged_outputs<T: Borrow<TaskView>>(counted: &[T], copies: &[T]) -> Vec<Artifact> {
    let mut more: HashMap<&str, Vec<&str>> = HashMap::new();
    for c in copies
        .iter()
        .map(Borrow::borrow)
        .filter(|c| c.phase == TaskPhase::Succeeded)
    {
        for a in &c.outputs {
            for h in &a.holders {
                more.entry(a.digest.as_str()).or_default().push(h.as_str());
            }
        }
    }
    let mut outputs: Vec<Artifact> = counted
        .iter()
        .flat_map(|t| t.borrow().outputs.iter().cloned())
        .collect();
    for a in &mut outputs {
        for h in more.get(a.digest.as_str()).into_iter().flatten() {
            if !a.holders.iter().any(|x| x == h) {
                a.holders.push((*h).to_owned());
            }
        }
    }
    outputs
}

/// An agent as durability sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Agent name.
    pub name: String,
    /// May take a copy: Ready, not cordoned, not under `DiskPressure`, not known unreachable.
    pub eligible: bool,
    /// Its `ringrift.ai/zone`, if any.
    pub zone: Option<String>,
}

/// One copy to make: a `copy` Task of `attempt` on `agent`, pulling `artifact` from its live
/// holders (the artifact's `holders`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCopy {
    /// The output, its holders the live ones.
    pub artifact: Artifact,
    /// The agent that takes the copy.
    pub agent: String,
    /// Attempt number within the artifact's copy unit.
    pub attempt: u32,
}

/// What [`repairs`] decided for one job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repairs {
    /// Copies to make now.
    pub copies: Vec<NewCopy>,
    /// Needed outputs whose recorded holders are all gone: no copy to make them from.
    pub lost: Vec<Artifact>,
    /// Look again after this (a failed copy's retry).
    pub wake: Option<Duration>,
}

/// The copies to make for one job's `outputs` (merged, [`merged_outputs`]) so that each output
/// `needed` has min(`replicas`, agents that may hold it) live copies: live holders, plus copies
/// in flight, plus the new ones, on eligible agents that hold none, zones without a copy first
/// ([`zone_order`]). `live` says whether an agent's heartbeat is current; `copies` are the
/// job's copy Tasks so far (their attempts and which are in flight); a copy of an output that
/// failed less than [`COPY_RETRY`] ago waits.
pub fn repairs<T: Borrow<TaskView>>(
    outputs: &[Artifact],
    replicas: u32,
    needed: &dyn Fn(&Artifact) -> bool,
    live: &dyn Fn(&str) -> bool,
    copies: &[T],
    agents: &[Candidate],
    now: Timestamp,
) -> Repairs {
    let mut out = Repairs::default();
    let zones: BTreeMap<String, String> = agents
        .iter()
        .filter_map(|a| Some((a.name.clone(), a.zone.clone()?)))
        .collect();
    let eligible: Vec<&Candidate> = agents.iter().filter(|a| a.eligible).collect();
    let mut seen: Vec<&str> = Vec::new();
    for artifact in outputs {
        if seen.contains(&artifact.digest.as_str()) || !needed(artifact) {
            continue;
        }
        seen.push(&artifact.digest);
        let holders: Vec<String> = artifact.holders.iter().filter(|h| live(h)).cloned().collect();
        if holders.is_empty() {
            // No holder recorded (simulated agents record none): nothing is known to be lost.
            if !artifact.holders.is_empty() {
                out.lost.push(artifact.clone());
            }
            continue;
        }
        let unit = copy_unit(&artifact.digest);
        let mine: Vec<&TaskView> = copies
            .iter()
            .map(Borrow::borrow)
            .filter(|c| c.unit == unit)
            .collect();
        let in_flight: Vec<String> = mine
            .iter()
            .filter(|c| c.is_live())
            .filter_map(|c| c.agent.clone())
            .filter(|a| !holders.contains(a))
            .collect();
        // Agents that may hold it: the eligible ones and the live holders (eligible or not).
        let room = eligible.iter().filter(|a| !holders.contains(&a.name)).count() + holders.len();
        let wanted = usize::try_from(replicas.max(1)).unwrap_or(usize::MAX).min(room);
        let missing = wanted.saturating_sub(holders.len() + in_flight.len());
        if missing == 0 {
            continue;
        }
        let failed_at = mine
            .iter()
            .filter(|c| c.phase != TaskPhase::Succeeded && !c.is_live())
            .filter_map(|c| c.finished.or(Some(c.created)))
            .max();
        if let Some(at) = failed_at {
            let retry = at + jiff::SignedDuration::try_from(COPY_RETRY).unwrap_or_default();
            if retry > now {
                let left = Duration::try_from(retry.duration_since(now)).unwrap_or(COPY_RETRY);
                out.wake = Some(out.wake.map_or(left, |w| w.min(left)));
                continue;
            }
        }
        let taken: Vec<String> = holders.iter().chain(&in_flight).cloned().collect();
        // Turned by digest, so the copies of many outputs spread over the candidates.
        let offset = artifact
            .digest
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(usize::from(b)));
        let order = zone_order(&eligible, |a| a.name.as_str(), &taken, offset, &zones);
        let first = mine.iter().map(|c| c.attempt + 1).max().unwrap_or(0);
        for (attempt, target) in (first..).zip(order.into_iter().take(missing)) {
            let mut from = artifact.clone();
            from.holders.clone_from(&holders);
            out.copies.push(NewCopy {
                artifact: from,
                agent: target.name.clone(),
                attempt,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use ringrift_crds::common::ArtifactKind;
    use ringrift_crds::task::CancelReason;

    use super::*;
    use crate::reconcile::fixtures::{at, task};

    fn artifact(c: char, holders: &[&str]) -> Artifact {
        Artifact {
            name: format!("{c}.games"),
            kind: ArtifactKind::Games,
            digest: format!("sha256:{}", c.to_string().repeat(64)),
            size_bytes: 10,
            holders: holders.iter().map(|h| (*h).to_owned()).collect(),
        }
    }

    fn agent(name: &str, eligible: bool, zone: Option<&str>) -> Candidate {
        Candidate {
            name: name.into(),
            eligible,
            zone: zone.map(Into::into),
        }
    }

    fn copy(of: &Artifact, agent: &str, attempt: u32, phase: TaskPhase, finished: i64) -> TaskView {
        let mut outputs = Vec::new();
        if phase == TaskPhase::Succeeded {
            outputs.push(Artifact {
                holders: vec![agent.to_owned()],
                ..of.clone()
            });
        }
        TaskView {
            name: format!("copy-{agent}-{attempt}"),
            unit: copy_unit(&of.digest),
            created: at(0),
            finished: phase.is_finished().then(|| at(finished)),
            outputs,
            copy: true,
            ..task("", attempt, agent, phase)
        }
    }

    fn fleet() -> Vec<Candidate> {
        vec![
            agent("a", true, Some("z1")),
            agent("b", true, Some("z1")),
            agent("c", true, Some("z2")),
            agent("d", true, None),
        ]
    }

    fn plan(
        outputs: &[Artifact],
        replicas: u32,
        dead: &[&str],
        copies: &[TaskView],
        agents: &[Candidate],
    ) -> Repairs {
        let dead: Vec<String> = dead.iter().map(|d| (*d).to_owned()).collect();
        let agents: Vec<Candidate> = agents
            .iter()
            .cloned()
            .map(|mut a| {
                a.eligible &= !dead.contains(&a.name);
                a
            })
            .collect();
        repairs(
            outputs,
            replicas,
            &|a| !a.name.starts_with('f'),
            &|h| !dead.iter().any(|d| d == h),
            copies,
            &agents,
            at(100),
        )
    }

    #[test]
    fn a_lost_holder_is_replaced_in_a_zone_without_a_copy() {
        let games = artifact('a', &["a", "b"]);
        let r = plan(std::slice::from_ref(&games), 2, &["b"], &[], &fleet());
        assert_eq!(r.copies.len(), 1);
        assert_eq!(r.copies[0].agent, "c", "z2 holds no copy; a (z1) holds one");
        assert_eq!(
            r.copies[0].artifact.holders,
            ["a"],
            "pulled from the live holder only"
        );
        assert_eq!(r.copies[0].attempt, 0);
        assert!(r.lost.is_empty());
        // Nothing lost: nothing to do.
        assert_eq!(plan(&[games], 2, &[], &[], &fleet()), Repairs::default());
    }

    #[test]
    fn copies_in_flight_or_made_count_and_are_not_doubled() {
        let games = artifact('a', &["a", "b"]);
        let running = copy(&games, "c", 0, TaskPhase::Running, 0);
        let r = plan(std::slice::from_ref(&games), 2, &["b"], &[running], &fleet());
        assert!(r.copies.is_empty(), "{r:?}");
        // Made: merged into the holders, the count is whole again.
        let made = copy(&games, "c", 0, TaskPhase::Succeeded, 50);
        let merged = merged_outputs(
            &[TaskView {
                outputs: vec![games.clone()],
                ..made.clone()
            }],
            std::slice::from_ref(&made),
        );
        assert_eq!(merged[0].holders, ["a", "b", "c"]);
        let r = plan(&merged, 2, &["b"], &[made], &fleet());
        assert!(r.copies.is_empty(), "{r:?}");
        // Its copy's agent lost too: another, as the next attempt.
        let lost = TaskView {
            cancel: Some(CancelReason::Lost),
            phase: TaskPhase::Lost,
            ..copy(&games, "c", 0, TaskPhase::Running, 0)
        };
        let r = plan(std::slice::from_ref(&games), 2, &["b", "c"], &[lost], &fleet());
        assert_eq!(r.copies.len(), 1);
        assert_eq!(r.copies[0].attempt, 1);
        assert_eq!(r.copies[0].agent, "d", "no zone beats a zone with a copy");
    }

    #[test]
    fn a_failed_copy_waits_before_the_next() {
        let games = artifact('a', &["a", "b"]);
        let failed = copy(&games, "c", 3, TaskPhase::Failed, 95);
        let r = plan(
            std::slice::from_ref(&games),
            2,
            &["b"],
            std::slice::from_ref(&failed),
            &fleet(),
        );
        assert!(r.copies.is_empty());
        assert_eq!(r.wake, Some(Duration::from_secs(5)));
        let failed = copy(&games, "c", 3, TaskPhase::Failed, 80);
        let r = plan(&[games], 2, &["b"], &[failed], &fleet());
        assert_eq!(r.copies[0].attempt, 4);
    }

    #[test]
    fn the_count_is_capped_by_the_agents_that_may_hold_a_copy() {
        // Three wanted, one left with a copy, one other agent may take one: one copy, no more.
        let agents = vec![
            agent("a", true, None),
            agent("b", true, None),
            agent("c", false, None),
        ];
        let r = plan(&[artifact('a', &["a", "b", "x"])], 3, &["b", "x"], &[], &agents);
        assert!(r.copies.is_empty(), "a alone, b dead, c ineligible: {r:?}");
        let agents = vec![
            agent("a", false, None),
            agent("b", true, None),
            agent("c", true, None),
        ];
        let r = plan(&[artifact('a', &["a"])], 3, &[], &[], &agents);
        let mut to: Vec<&str> = r.copies.iter().map(|c| c.agent.as_str()).collect();
        to.sort_unstable();
        assert_eq!(
            to,
            ["b", "c"],
            "a holder under disk pressure keeps counting; the others take the rest"
        );
    }

    #[test]
    fn outputs_not_needed_are_left_alone_and_ones_with_no_copy_are_lost() {
        let unneeded = Artifact {
            name: "f.games".into(),
            ..artifact('f', &["a", "b"])
        };
        let gone = artifact('a', &["b"]);
        let unknown = artifact('b', &[]);
        let r = plan(&[unneeded, gone.clone(), unknown], 2, &["b"], &[], &fleet());
        assert!(r.copies.is_empty());
        assert_eq!(r.lost, [gone], "no holder recorded is not known to be lost");
    }
}
