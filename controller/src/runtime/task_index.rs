//! How a pass reads the Tasks: grouped by the job that owns them, as the planner's views, and
//! the claims of the live ones on their agents' resources. A pass reads every Task (tens of
//! thousands on a busy fleet, most of them finished), so each view is made once per version of
//! its object, not once per pass.

use std::collections::HashMap;
use std::sync::Arc;

use kube::ResourceExt;
use ringrift_crds::common::GpuFraction;
use ringrift_crds::task::{JobKind, Task};

use super::address::{ByAddress, address};
use crate::plan::placement::Claim;
use crate::reconcile::view::{TaskView, default_priority};

/// Tasks by the uid of the job that owns them.
pub(super) type TasksByJob = HashMap<String, Vec<Arc<TaskView>>>;

/// A live task's claim on its agent.
pub(super) struct LiveClaim {
    /// The claim; its `after` is the claim id (`namespace/name`) of the live task whose uid
    /// the Task's `spec.startAfter` names, none when that task is no longer live.
    pub(super) claim: Claim,
    /// The uid of the job that owns it.
    pub(super) owner: String,
    /// Its view.
    pub(super) view: Arc<TaskView>,
    /// Its uid.
    pub(super) uid: String,
}

/// The planner's views of the Tasks, each made once per object: the tasks cache hands the same
/// shared object back until it changes, so a view is keyed by that object's address, and keeps
/// the object alive so that the address is not reused while the view is kept.
#[derive(Default)]
pub(super) struct TaskIndex {
    by_object: ByAddress<Made>,
    round: u64,
}

/// One view and what it was made from.
struct Made {
    _task: Arc<Task>,
    view: Arc<TaskView>,
    /// The uid of the job that owns the task.
    owner: Option<String>,
    /// The last pass that read it.
    seen: u64,
}

impl std::fmt::Debug for TaskIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskIndex")
            .field("views", &self.by_object.len())
            .finish_non_exhaustive()
    }
}

impl TaskIndex {
    /// Reads each task: grouped by the uid of the job that owns it (tasks of a deleted job of
    /// the same name, not yet garbage-collected, are not the new job's), and, while live on an
    /// agent, a claim on that agent's resources with its job's uid (placement fills in the
    /// job's priority; a successor's `after` names the live task its `spec.startAfter` uid is).
    /// Views of tasks no longer read are forgotten.
    pub(super) fn index(&mut self, tasks: &[Arc<Task>]) -> (TasksByJob, Vec<LiveClaim>) {
        self.round += 1;
        let round = self.round;
        let mut by_job = TasksByJob::new();
        let mut claims: Vec<LiveClaim> = Vec::new();
        for t in tasks {
            let made = self.by_object.entry(address(t)).or_insert_with(|| Made {
                _task: t.clone(),
                view: Arc::new(TaskView::from_task(t)),
                owner: t
                    .owner_references()
                    .iter()
                    .find(|o| o.controller == Some(true))
                    .map(|o| o.uid.clone()),
                seen: round,
            });
            made.seen = round;
            let v = &made.view;
            if let (Some(agent), true) = (&v.agent, v.is_live()) {
                claims.push(LiveClaim {
                    claim: claim(t, v, agent),
                    owner: made.owner.clone().unwrap_or_default(),
                    view: v.clone(),
                    uid: t.uid().unwrap_or_default(),
                });
            }
            if let Some(owner) = &made.owner {
                match by_job.get_mut(owner) {
                    Some(views) => views.push(v.clone()),
                    None => {
                        by_job.insert(owner.clone(), vec![v.clone()]);
                    }
                }
            }
        }
        self.by_object.retain(|_, m| m.seen == round);
        let live: HashMap<String, String> = claims
            .iter()
            .map(|c| (c.uid.clone(), c.claim.task.clone()))
            .collect();
        for c in &mut claims {
            c.claim.after = c.claim.after.as_ref().and_then(|uid| live.get(uid).cloned());
        }
        (by_job, claims)
    }
}

/// A live task's claim on its agent.
fn claim(t: &Task, v: &TaskView, agent: &str) -> Claim {
    let kind = t.spec.job.kind;
    Claim {
        task: format!("{}/{}", t.namespace().unwrap_or_default(), v.name),
        agent: agent.to_owned(),
        cpu_millis: u64::from(v.resources.cpu_millis),
        memory_mib: v.resources.memory_mib,
        gpus: v.gpus.clone(),
        priority: default_priority(kind),
        elastic: kind == JobKind::SelfplayJob,
        claimant: String::new(),
        gpu_fraction: v.resources.gpu_fraction.map(GpuFraction::thousandths),
        gpu_memory_mib: v.resources.gpu_memory_mib,
        ends_in_ms: None,
        // The uid, until `TaskIndex::index` puts the claim id of that task in its place.
        after: t.spec.start_after.clone(),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use ringrift_crds::task::{TaskPhase, TaskStatus};

    use super::*;

    fn task(name: &str, owner: &str, phase: TaskPhase) -> Arc<Task> {
        let mut t: Task = serde_json::from_value(serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "Task",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "resourceVersion": "1"},
            "spec": {"role": "selfplay", "job": {"kind": "SelfplayJob", "name": "job"},
                     "workUnit": "u0", "attempt": 0, "agent": "agent-a", "gpus": ["GPU-0"],
                     "resources": {"cpuMillis": 500, "memoryMiB": 256},
                     "template": {"command": ["x"]}}
        }))
        .expect("a valid Task");
        t.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "ringrift.ai/v1alpha1".into(),
            kind: "SelfplayJob".into(),
            name: "job".into(),
            uid: owner.into(),
            controller: Some(true),
            ..OwnerReference::default()
        }]);
        t.status = Some(TaskStatus {
            phase,
            ..TaskStatus::default()
        });
        Arc::new(t)
    }

    #[test]
    fn groups_by_owner_and_claims_only_live_tasks() {
        let tasks = vec![
            task("a", "job-1", TaskPhase::Running),
            task("b", "job-1", TaskPhase::Succeeded),
            task("c", "job-2", TaskPhase::Pending),
        ];
        let (by_job, claims) = TaskIndex::default().index(&tasks);
        let names = |uid: &str| by_job[uid].iter().map(|v| v.name.clone()).collect::<Vec<_>>();
        assert_eq!(names("job-1"), ["a", "b"]);
        assert_eq!(names("job-2"), ["c"]);
        let claimed: Vec<_> = claims
            .iter()
            .map(|c| (c.claim.task.as_str(), c.owner.as_str()))
            .collect();
        assert_eq!(claimed, [("default/a", "job-1"), ("default/c", "job-2")]);
        assert_eq!(claims[0].claim.gpus, ["GPU-0"]);
    }

    #[test]
    fn a_successor_names_the_live_task_whose_uid_it_follows() {
        let before = task("a", "job-1", TaskPhase::Running);
        let mut next = (*task("b", "job-1", TaskPhase::Pending)).clone();
        next.spec.start_after = Some("uid-a".into());
        let mut orphan = (*task("c", "job-1", TaskPhase::Pending)).clone();
        orphan.spec.start_after = Some("uid-gone".into());
        let (_, claims) = TaskIndex::default().index(&[before, Arc::new(next), Arc::new(orphan)]);
        let after: Vec<_> = claims
            .iter()
            .map(|c| (c.claim.task.as_str(), c.claim.after.as_deref()))
            .collect();
        assert_eq!(
            after,
            [
                ("default/a", None),
                ("default/b", Some("default/a")),
                ("default/c", None)
            ]
        );
        assert_eq!(claims[0].uid, "uid-a");
    }

    #[test]
    fn a_view_is_made_once_per_object_and_again_when_it_changes() {
        let mut index = TaskIndex::default();
        let first = task("a", "job-1", TaskPhase::Running);
        let (one, _) = index.index(std::slice::from_ref(&first));
        let (two, _) = index.index(std::slice::from_ref(&first));
        assert!(
            Arc::ptr_eq(&one["job-1"][0], &two["job-1"][0]),
            "the same object: the same view"
        );
        // A new version of the task is a new object.
        let changed = task("a", "job-1", TaskPhase::Succeeded);
        let (three, claims) = index.index(std::slice::from_ref(&changed));
        assert_eq!(three["job-1"][0].phase, TaskPhase::Succeeded);
        assert!(claims.is_empty(), "a finished task claims nothing");
        assert_eq!(index.by_object.len(), 1, "the old object's view is forgotten");
    }
}
