//! Plans of settled jobs, kept between passes. A pass plans every job, and on a busy fleet
//! most jobs are finished, with hundreds of tasks and outputs each: planning them again every
//! pass was most of a pass. A finished job's plan is kept while nothing it was made from
//! changes (its view, each of its tasks' views, which agents are Ready); the time does not
//! enter it (a kept plan has nothing to cancel, create or delete and no time to wake at).

use std::collections::HashMap;
use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use crate::reconcile::decide::{Env, JobPlan, Verdict, plan_job};
use crate::reconcile::view::{JobView, TaskView};

/// The kept plans, by job uid.
#[derive(Default)]
pub(super) struct Plans {
    by_job: HashMap<String, Kept>,
    /// Hashes the Ready agents' names (fixed for the process: equal sets hash alike).
    hasher: RandomState,
    round: u64,
}

struct Kept {
    view: JobView,
    tasks: Vec<Arc<TaskView>>,
    ready: u64,
    plan: Arc<JobPlan>,
    seen: u64,
}

impl std::fmt::Debug for Plans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plans")
            .field("kept", &self.by_job.len())
            .finish_non_exhaustive()
    }
}

impl Plans {
    /// Starts a pass: a fingerprint of the Ready agents, for [`Plans::plan`].
    pub(super) fn begin(&mut self, ready: &HashSet<String>) -> u64 {
        self.round += 1;
        // Independent of the set's order: the sum of each name's hash, and the count.
        ready
            .iter()
            .map(|a| self.hasher.hash_one(a))
            .fold(ready.len() as u64, u64::wrapping_add)
    }

    /// The job's plan: the kept one when its view, its tasks (the same views, in the same
    /// order) and the Ready agents (`ready`, from [`Plans::begin`]) are as when it was made;
    /// otherwise planned now, and kept if it is settled.
    pub(super) fn plan(
        &mut self,
        view: &JobView,
        tasks: &[Arc<TaskView>],
        env: &Env<'_>,
        ready: u64,
    ) -> Arc<JobPlan> {
        let round = self.round;
        if let Some(kept) = self.by_job.get_mut(&view.uid)
            && kept.ready == ready
            && kept.tasks.len() == tasks.len()
            && kept.tasks.iter().zip(tasks).all(|(a, b)| Arc::ptr_eq(a, b))
            && kept.view == *view
        {
            kept.seen = round;
            return kept.plan.clone();
        }
        let plan = Arc::new(plan_job(view, tasks, env));
        if settled(&plan) {
            self.by_job.insert(
                view.uid.clone(),
                Kept {
                    view: view.clone(),
                    tasks: tasks.to_vec(),
                    ready,
                    plan: plan.clone(),
                    seen: round,
                },
            );
        } else {
            self.by_job.remove(&view.uid);
        }
        plan
    }

    /// Ends a pass: forgets the plans of jobs it did not plan (gone, or no longer valid).
    pub(super) fn end(&mut self) {
        let round = self.round;
        self.by_job.retain(|_, k| k.seen == round);
    }

    /// Forgets every kept plan.
    pub(super) fn clear(&mut self) {
        self.by_job.clear();
    }
}

/// A plan that holds while its inputs do, whatever the time: the job finished, with nothing
/// live, nothing to do and nothing to wait for.
fn settled(plan: &JobPlan) -> bool {
    matches!(plan.verdict, Verdict::Finished { .. })
        && plan.requeue_after.is_none()
        && !plan.delete
        && plan.lost.is_empty()
        && plan.cancel.is_empty()
        && plan.create.is_empty()
        && plan.summary.live.is_empty()
        && plan.summary.regenerating.is_empty()
}

#[cfg(test)]
mod tests {
    use ringrift_crds::common::JobPhase;
    use ringrift_crds::task::TaskPhase;

    use super::*;
    use crate::reconcile::fixtures::{at, env, selfplay, task};

    /// A finished job of two units and its two succeeded tasks.
    fn finished() -> (JobView, Vec<Arc<TaskView>>) {
        let mut job = selfplay(20, 10);
        job.finished = Some((JobPhase::Succeeded, at(6)));
        let tasks = ["g00000", "g00001"]
            .map(|unit| Arc::new(task(unit, 0, "a", TaskPhase::Succeeded)))
            .to_vec();
        (job, tasks)
    }

    fn agents(names: &[&str]) -> HashSet<String> {
        names.iter().map(|&n| n.to_owned()).collect()
    }

    #[test]
    fn a_finished_jobs_plan_is_kept_while_its_inputs_stay() {
        let (job, tasks) = finished();
        assert_eq!(job.units.len(), 2, "{:?}", job.units);
        let mut plans = Plans::default();
        let ready = plans.begin(&agents(&["a", "b"]));
        let first = plans.plan(&job, &tasks, &env(100), ready);
        assert!(
            matches!(first.verdict, Verdict::Finished { .. }),
            "{:?}",
            first.verdict
        );
        plans.end();
        // Later, the same inputs (the Ready set in another order): the same plan.
        let ready = plans.begin(&agents(&["b", "a"]));
        let again = plans.plan(&job, &tasks, &env(5000), ready);
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(*again, plan_job(&job, &tasks, &env(5000)), "as if planned now");
        plans.end();

        // A task's new version, an agent no longer Ready, or a changed view: planned again.
        let ready = plans.begin(&agents(&["a", "b"]));
        let mut changed = tasks.clone();
        changed[1] = Arc::new((*tasks[1]).clone());
        assert!(!Arc::ptr_eq(&first, &plans.plan(&job, &changed, &env(1), ready)));
        let kept = plans.plan(&job, &changed, &env(1), ready);
        let gone = plans.begin(&agents(&["a"]));
        assert!(!Arc::ptr_eq(&kept, &plans.plan(&job, &changed, &env(1), gone)));
        let kept = plans.plan(&job, &changed, &env(1), gone);
        let mut other = job.clone();
        other.generation = 2;
        assert!(!Arc::ptr_eq(&kept, &plans.plan(&other, &changed, &env(1), gone)));
    }

    #[test]
    fn plans_with_work_or_a_wake_up_are_not_kept_and_gone_jobs_are_forgotten() {
        let (mut job, tasks) = finished();
        let mut plans = Plans::default();
        // Running: a unit has no task yet.
        let running = selfplay(20, 10);
        let ready = plans.begin(&agents(&["a"]));
        let one = plans.plan(&running, &tasks[..1], &env(10), ready);
        assert!(!one.create.is_empty());
        assert!(!Arc::ptr_eq(
            &one,
            &plans.plan(&running, &tasks[..1], &env(10), ready)
        ));
        // Finished, but deleted after a TTL: it wakes then, so it is planned every pass.
        job.policy.ttl_seconds_after_finished = Some(600);
        let ttl = plans.plan(&job, &tasks, &env(10), ready);
        assert!(ttl.requeue_after.is_some());
        assert!(!Arc::ptr_eq(&ttl, &plans.plan(&job, &tasks, &env(10), ready)));
        // Settled, then not planned in a pass: forgotten.
        job.policy.ttl_seconds_after_finished = None;
        plans.plan(&job, &tasks, &env(10), ready);
        plans.end();
        assert_eq!(plans.by_job.len(), 1);
        plans.begin(&agents(&["a"]));
        plans.end();
        assert!(plans.by_job.is_empty());
    }
}
