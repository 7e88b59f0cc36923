//! Hand-overs in a pass: which live tasks may hand their GPUs over to a successor, and which
//! successors waited too long (the rules are [`crate::reconcile::handover`]'s).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use ringrift_crds::task::JobKind;

use super::reconciler::Entry;
use super::task_index::{LiveClaim, TasksByJob};
use crate::plan::placement::Claim;
use crate::reconcile::handover;

/// Marks the running tasks about to end that may hand their GPUs over (by their job's
/// expected duration: [`handover`]) and finds the successors that waited too long for
/// theirs, to withdraw. `peers` has, per job uid, the uids of the jobs of its kind and
/// claimant, newest first. Returns the claims with their job's uid, the successors to
/// withdraw, when the next running task may hand over, and each created live task's uid by
/// claim id (for the `spec.startAfter` of a successor).
pub(super) fn mark(
    claims: Vec<LiveClaim>,
    (by_job, peers): (&TasksByJob, &Peers),
    now: Timestamp,
    lookahead: Duration,
) -> Marked {
    let mut expected: HashMap<String, Option<Duration>> = HashMap::new();
    let mut expect = |owner: &str| {
        *expected.entry(owner.to_owned()).or_insert_with(|| {
            let others = peers
                .get(owner)
                .into_iter()
                .flat_map(|p| p.iter())
                .map(String::as_str);
            let jobs = std::iter::once(owner).chain(others.filter(|j| *j != owner));
            handover::expected_duration(
                jobs.filter_map(|j| by_job.get(j))
                    .flat_map(|tasks| tasks.iter().map(|t| &**t)),
            )
        })
    };
    let mut next: Option<Duration> = None;
    let owners: HashMap<String, String> = claims
        .iter()
        .map(|c| (c.claim.task.clone(), c.owner.clone()))
        .collect();
    let mut withdrawn = Vec::new();
    let mut uids = HashMap::with_capacity(claims.len());
    let mut out = Vec::with_capacity(claims.len());
    for LiveClaim {
        mut claim,
        owner,
        view,
        uid,
    } in claims
    {
        // A task sent off and not yet created has no uid yet: nothing can name it.
        if !uid.is_empty() {
            uids.insert(claim.task.clone(), uid);
        }
        if !lookahead.is_zero() && claim.gpu_fraction.is_none() && !claim.gpus.is_empty() {
            if let Some(e) = expect(&owner) {
                claim.ends_in_ms = handover::ends_in(&view, e, now, lookahead);
                if let Some(d) = handover::eligible_in(&view, e, now, lookahead) {
                    next = Some(next.map_or(d, |n| n.min(d)));
                }
            }
            if let Some(before) = claim.after.as_deref().and_then(|p| owners.get(p))
                && handover::overdue(&view, expect(before), now, lookahead)
            {
                tracing::info!(
                    task = claim.task,
                    after = claim.after,
                    "withdrawing a successor: the task it follows runs past its expected end"
                );
                withdrawn.push(claim.task.clone());
            }
        }
        out.push((claim, owner));
    }
    Marked {
        claims: out,
        withdrawn,
        next,
        uids,
    }
}

/// What [`mark`] found.
pub(super) struct Marked {
    /// The claims, with the uid of the job that owns each.
    pub(super) claims: Vec<(Claim, String)>,
    /// Successors to withdraw (`namespace/name`).
    pub(super) withdrawn: Vec<String>,
    /// When the next running task may hand over.
    pub(super) next: Option<Duration>,
    /// Each live task's uid by claim id (`namespace/name`), for those created (a task still
    /// in flight has none).
    pub(super) uids: HashMap<String, String>,
}

/// Per job uid, the uids of the jobs of the pass with its kind and claimant (its own among
/// them), newest first: one list shared by the jobs of a kind and claimant.
pub(super) type Peers = HashMap<String, Arc<Vec<String>>>;

/// The [`Peers`] of the pass's jobs, newest first by creation time, then name.
pub(super) fn peers(entries: &[Entry]) -> Peers {
    // (created, name, uid) of each job, per claimant and kind.
    type Jobs = Vec<(Option<Timestamp>, String, String)>;
    let mut groups: HashMap<(String, JobKind), Jobs> = HashMap::new();
    for e in entries {
        let meta = e.job.meta();
        let Some(uid) = meta.uid.clone() else { continue };
        groups.entry((e.job.claimant(), e.job.kind())).or_default().push((
            meta.creation_timestamp.as_ref().map(|t| t.0),
            meta.name.clone().unwrap_or_default(),
            uid,
        ));
    }
    let mut out = HashMap::new();
    for mut jobs in groups.into_values() {
        jobs.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
        let uids: Arc<Vec<String>> = Arc::new(jobs.into_iter().map(|(_, _, uid)| uid).collect());
        for uid in uids.iter() {
            out.insert(uid.clone(), uids.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use ringrift_crds::task::Task;

    use super::*;
    use crate::runtime::task_index::TaskIndex;

    fn task(name: &str, uid: Option<&str>) -> Arc<Task> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "ringrift.ai/v1alpha1", "kind": "Task",
                "metadata": {"name": name, "namespace": "default", "uid": uid},
                "spec": {"role": "selfplay", "job": {"kind": "SelfplayJob", "name": "job"},
                         "workUnit": "u0", "attempt": 0, "agent": "agent-a", "gpus": ["GPU-0"],
                         "resources": {"gpus": 1}, "template": {"command": ["x"]}}
            }))
            .expect("a valid Task"),
        )
    }

    /// A task sent off and not created yet (no uid) cannot be named by a successor: it has no
    /// uid to give (an empty `spec.startAfter` is refused by the API server).
    #[test]
    fn only_created_tasks_have_a_uid_to_follow() {
        let (by_job, claims) =
            TaskIndex::default().index(&[task("made", Some("uid-made")), task("sent", None)]);
        let marked = mark(
            claims,
            (&by_job, &Peers::new()),
            Timestamp::now(),
            Duration::from_secs(2),
        );
        assert_eq!(marked.claims.len(), 2, "both hold their GPU");
        assert_eq!(
            marked.uids,
            HashMap::from([("default/made".to_owned(), "uid-made".to_owned())])
        );
    }
}
