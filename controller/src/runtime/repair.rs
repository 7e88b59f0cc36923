//! Durability in a pass: for each job whose outputs should have copies, the copy Tasks that
//! bring each needed output back to its count after holders were lost, and the selfplay units
//! run again when every copy of their games is gone (the decisions are
//! [`crate::reconcile::durability`]'s; this applies them to the pass's entries).

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use ringrift_crds::common::{Artifact, ArtifactKind};
use ringrift_crds::durability::Needed;
use ringrift_crds::task::{CancelReason, JobKind};

use super::reconciler::{Entry, Reconciler};
use crate::reconcile::durability::{Candidate, repairs};
use crate::reconcile::objects;

impl Reconciler {
    /// For every job whose outputs should have copies: the copy Tasks that bring each needed
    /// output back to its count after holders were lost (added to the job's placed tasks), and
    /// the needed outputs with no copy left (counted). A selfplay unit whose games all went
    /// that way runs again (its task fenced `OutputsLost`), unless the fleet is `disrupted`.
    #[allow(clippy::too_many_arguments)] // one pass's state, passed as it is
    pub(super) fn durability(
        &self,
        entries: &mut [Entry],
        needed: &Needed,
        candidates: &[Candidate],
        live: &dyn Fn(&str) -> bool,
        disrupted: bool,
        now: Timestamp,
        soon: &mut impl FnMut(Duration),
    ) {
        let is_needed = |a: &Artifact| needed.keeps(&a.digest, a.kind == ArtifactKind::Games);
        let mut lost = 0usize;
        for e in entries.iter_mut().filter(|e| !e.held_back) {
            let (Ok(view), Some(plan)) = (&e.view, &mut e.plan) else {
                continue;
            };
            let Some(replicas) = view.replicas else {
                continue;
            };
            let r = repairs(
                &plan.summary.outputs,
                replicas,
                &is_needed,
                live,
                &plan.summary.copies,
                candidates,
                now,
            );
            if let Some(d) = r.wake {
                soon(d);
            }
            lost += r.lost.len();
            if view.kind == JobKind::SelfplayJob && !r.lost.is_empty() {
                if disrupted {
                    tracing::debug!(
                        job = %e.job.key(),
                        agents = candidates.len(),
                        "outputs have no copy on a Ready agent, but most agents are not Ready: waiting before running their units again"
                    );
                } else {
                    let gone = |a: &Artifact| r.lost.iter().any(|l| l.digest == a.digest);
                    let mut cancel = Vec::new();
                    for t in &plan.summary.counted {
                        if !t.outputs.is_empty() && t.outputs.iter().all(gone) {
                            tracing::warn!(job = %e.job.key(), unit = %t.unit, task = %t.name, "every copy of a unit's games was lost; running it again");
                            cancel.push((t.name.clone(), CancelReason::OutputsLost));
                            e.regenerating.push(t.unit.clone());
                        }
                    }
                    if !cancel.is_empty() {
                        // The plan may be shared with the kept plans: this pass's copy only.
                        Arc::make_mut(plan).cancel.extend(cancel);
                    }
                }
            }
            for copy in &r.copies {
                tracing::info!(
                    job = %e.job.key(),
                    artifact = %copy.artifact.name,
                    digest = %copy.artifact.digest,
                    to = %copy.agent,
                    live = copy.artifact.holders.len(),
                    replicas,
                    "an output lost a holder; making a copy"
                );
                e.copying.push(format!(
                    "{} on {} ({} live of {replicas})",
                    copy.artifact.name,
                    copy.agent,
                    copy.artifact.holders.len()
                ));
                e.placed.push(objects::copy_task(view, copy));
            }
        }
        self.health
            .metrics
            .outputs_lost
            .set(i64::try_from(lost).unwrap_or(i64::MAX));
    }
}
