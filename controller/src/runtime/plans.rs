//! Plans of settled jobs, kept between passes. A pass plans every job, and on a busy fleet
//! most jobs are finished, with hundreds of tasks and outputs each: planning them again every
//! pass was most of a pass. A finished job's plan is kept while nothing it was made from
//! changes (its view, each of its tasks' views, which agents are Ready); the time does not
//! enter it (a kept plan has nothing to cancel, create or delete and no time to wake at).

use std::collections::HashMap;
use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use super::reconciler::Entry;
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
pub(super) fn settled(plan: &JobPlan) -> bool {
    matches!(plan.verdict, Verdict::Finished { .. })
        && plan.requeue_after.is_none()
        && !plan.delete
        && plan.lost.is_empty()
        && plan.cancel.is_empty()
        && plan.create.is_empty()
        && plan.summary.live.is_empty()
        && plan.summary.regenerating.is_empty()
}

/// What a settled job's status was found up to date with: the version of the job, its kept
/// plan (the same `Arc` while nothing it was made from changes, see [`Plans`]) and its model.
/// While all three stay, the status is not built again: it is a function of them (a settled
/// job has no clock-driven field), and building it copies every output (hundreds per job, and
/// most of a long run's jobs are settled).
#[derive(Debug)]
pub(super) struct Settled {
    pub(super) version: String,
    pub(super) plan: Arc<JobPlan>,
    pub(super) model: Option<String>,
}

impl Settled {
    /// Whether `e`'s status was found up to date with what `e` holds now.
    pub(super) fn holds_for(&self, e: &Entry) -> bool {
        e.plan.as_ref().is_some_and(|p| Arc::ptr_eq(p, &self.plan))
            && e.job.meta().resource_version.as_deref() == Some(self.version.as_str())
            && e.model == self.model
    }
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

    /// A finished selfplay job's object (version `rv`, no status yet), its view and settled
    /// plan, as a pass's entry.
    fn entry(rv: &str, plan: Arc<JobPlan>, view: JobView) -> Entry {
        let job: ringrift_crds::selfplay::SelfplayJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "SelfplayJob",
            "metadata": {"name": "sp", "namespace": "default", "uid": "uid-1",
                         "resourceVersion": rv, "generation": 1},
            "spec": {"game": {"board": "connect4"}, "games": 20, "gamesPerTask": 10,
                     "output": {"dataset": "d"}}
        }))
        .expect("a valid SelfplayJob");
        Entry {
            job: crate::runtime::jobs::AnyJob::Selfplay(job),
            view: Ok(view),
            model: Some("m1".into()),
            plan: Some(plan),
            queue: None,
            placed: Vec::new(),
            displacing: HashMap::new(),
            held_back: false,
            gated: None,
            copying: Vec::new(),
            regenerating: Vec::new(),
        }
    }

    #[test]
    fn a_settled_status_holds_for_the_same_version_plan_and_model_only() {
        let (job, tasks) = finished();
        let plan = Arc::new(plan_job(&job, &tasks, &env(100)));
        assert!(settled(&plan));
        let e = entry("7", plan.clone(), job.clone());
        let memo = Settled {
            version: "7".into(),
            plan: plan.clone(),
            model: Some("m1".into()),
        };
        assert!(memo.holds_for(&e));
        // An equal plan made again is another plan: it may come from other tasks.
        let again = Arc::new((*plan).clone());
        assert!(!memo.holds_for(&entry("7", again, job.clone())));
        assert!(
            !memo.holds_for(&entry("8", plan.clone(), job.clone())),
            "a new version"
        );
        let mut other_model = entry("7", plan, job);
        other_model.model = Some("m2".into());
        assert!(!memo.holds_for(&other_model));
    }

    #[test]
    fn a_settled_jobs_status_does_not_change_with_the_clock() {
        // What lets a pass skip building it: found up to date once, up to date later too.
        let (job, tasks) = finished();
        let plan = Arc::new(plan_job(&job, &tasks, &env(100)));
        let e = entry("7", plan.clone(), job.clone());
        let status = |j: &crate::runtime::jobs::AnyJob, now: i64| {
            j.with_status(
                Some(&job),
                Some(&plan),
                None,
                None,
                e.model.clone(),
                at(now),
                true,
            )
        };
        let written = status(&e.job, 100).expect("a first status");
        assert!(status(&written, 100).is_none(), "up to date right after");
        assert!(status(&written, 1_000_000).is_none(), "and days later");
    }
}
