//! The objects the controller creates, built without I/O: a `Task` for a placed attempt, a
//! `copy` Task for an output short of copies, and the `Model` a succeeded `TrainingJob`
//! produced.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;
use ringrift_contract::{NamedOpponent, Params, Unit};
use ringrift_crds::common::{ArtifactKind, TaskResources, WorkloadTemplate};
use ringrift_crds::model::{Model, ModelSpec};
use ringrift_crds::task::{AGENT_LABEL, JOB_LABEL, JobKind, JobRef, Role, Task, TaskSpec};

use super::decide::{JobPlan, NewAttempt};
use super::durability::{NewCopy, copy_unit};
use super::view::{JobSpecifics, JobView};

/// Label on a `Task` with its work unit.
pub const UNIT_LABEL: &str = "ringrift.ai/work-unit";

/// Name of an attempt's `Task`: `<job>-<unit>-<attempt>`, the job's name shortened if the
/// whole would pass 253 characters. Deterministic, so a repeated create is refused (409), never
/// doubled.
pub fn task_name(job: &str, unit: &str, attempt: u32) -> String {
    let suffix = format!("-{unit}-{attempt}");
    let keep = 253usize.saturating_sub(suffix.len()).min(job.len());
    let mut prefix = job[..keep].to_owned();
    while prefix.ends_with(['-', '.']) {
        prefix.pop();
    }
    format!("{prefix}{suffix}")
}

/// A label value, or none when the text cannot be one (over 63 characters).
fn label_value(s: &str) -> Option<String> {
    (s.len() <= 63).then(|| s.to_owned())
}

/// The owner reference from a task (or model) to its job.
pub fn owner(job: &JobView) -> OwnerReference {
    OwnerReference {
        api_version: "ringrift.ai/v1alpha1".into(),
        kind: kind_name(job.kind).into(),
        name: job.name.clone(),
        uid: job.uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The kind's name.
pub fn kind_name(kind: JobKind) -> &'static str {
    match kind {
        JobKind::SelfplayJob => "SelfplayJob",
        JobKind::TrainingJob => "TrainingJob",
        JobKind::GauntletJob => "GauntletJob",
    }
}

/// The `Task` for an attempt placed on `agent` with `gpus`.
pub fn task(job: &JobView, attempt: &NewAttempt, agent: &str, gpus: &[String]) -> Task {
    let role = match job.kind {
        JobKind::SelfplayJob => Role::Selfplay,
        JobKind::TrainingJob => Role::Training,
        JobKind::GauntletJob => Role::Gauntlet,
    };
    let unit = &attempt.unit;
    let params = job.params.clone().map_or_else(
        || serde_json::Value::Object(serde_json::Map::new()),
        |mut params| {
            *params.unit_mut() = Unit {
                role: role.workload(),
                work_unit: unit.id.clone(),
                seed: unit.index,
                job: job.name.clone(),
            };
            match &mut params {
                Params::Selfplay(p) => p.games = unit.games,
                Params::Gauntlet(p) => {
                    p.games = unit.games;
                    p.opponent = unit.opponent.as_ref().map(|o| NamedOpponent {
                        name: o.clone(),
                        details: p.opponents.get(o).cloned(),
                    });
                }
                Params::Training(_) => {}
            }
            params.to_value()
        },
    );
    let mut labels = BTreeMap::from([(AGENT_LABEL.to_owned(), agent.to_owned())]);
    if let Some(v) = label_value(&job.name) {
        labels.insert(JOB_LABEL.to_owned(), v);
    }
    if let Some(v) = label_value(&unit.id) {
        labels.insert(UNIT_LABEL.to_owned(), v);
    }
    Task {
        metadata: ObjectMeta {
            name: Some(task_name(&job.name, &unit.id, attempt.attempt)),
            namespace: Some(job.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![owner(job)]),
            ..ObjectMeta::default()
        },
        spec: TaskSpec {
            role,
            job: JobRef {
                kind: job.kind,
                name: job.name.clone(),
            },
            work_unit: unit.id.clone(),
            attempt: attempt.attempt,
            agent: Some(agent.to_owned()),
            template: job.template.clone(),
            params,
            resources: job.resources.clone(),
            gpus: gpus.to_vec(),
            inputs: job.inputs.iter().chain(&attempt.resume).cloned().collect(),
            active_deadline_seconds: None,
            progress_deadline_seconds: job.policy.progress_deadline_seconds,
            cancel: false,
            replicas: job.replicas,
            resume_from: attempt.resume.as_ref().map(|c| c.name.clone()),
            start_after: None,
        },
        status: None,
    }
}

/// The `copy` Task that makes one more copy of one of `job`'s outputs on `copy.agent`: no
/// process, the output its one input (pulled from its live holders), one copy (its own).
pub fn copy_task(job: &JobView, copy: &NewCopy) -> Task {
    let unit = copy_unit(&copy.artifact.digest);
    let mut labels = BTreeMap::from([
        (AGENT_LABEL.to_owned(), copy.agent.clone()),
        (UNIT_LABEL.to_owned(), unit.clone()),
    ]);
    if let Some(v) = label_value(&job.name) {
        labels.insert(JOB_LABEL.to_owned(), v);
    }
    Task {
        metadata: ObjectMeta {
            name: Some(task_name(&job.name, &unit, copy.attempt)),
            namespace: Some(job.namespace.clone()),
            labels: Some(labels),
            owner_references: Some(vec![owner(job)]),
            ..ObjectMeta::default()
        },
        spec: TaskSpec {
            role: Role::Copy,
            job: JobRef {
                kind: job.kind,
                name: job.name.clone(),
            },
            work_unit: unit,
            attempt: copy.attempt,
            agent: Some(copy.agent.clone()),
            template: WorkloadTemplate::default(),
            params: serde_json::Value::Object(serde_json::Map::new()),
            // A pull holds a little CPU and memory, no GPU.
            resources: TaskResources {
                gpus: 0,
                gpu_memory_mib: 0,
                cpu_millis: 100,
                memory_mib: 64,
                gpu_selector: None,
                gpu_fraction: None,
            },
            gpus: Vec::new(),
            inputs: vec![copy.artifact.clone()],
            active_deadline_seconds: None,
            progress_deadline_seconds: None,
            cancel: false,
            replicas: Some(1),
            resume_from: None,
            start_after: None,
        },
        status: None,
    }
}

/// The `Model` a succeeded training job produced: the model artifact of its counted task.
/// None for other kinds, or when the task reported no model output.
pub fn trained_model(job: &JobView, plan: &JobPlan) -> Option<Model> {
    let JobSpecifics::Training {
        model,
        parent,
        training_loop,
    } = &job.specifics
    else {
        return None;
    };
    let artifact = plan
        .summary
        .counted
        .iter()
        .flat_map(|t| &t.outputs)
        .find(|a| a.kind == ArtifactKind::Model)?;
    let game = job.params.as_ref()?.game()?.into();
    Some(Model {
        metadata: ObjectMeta {
            name: Some(model.clone()),
            namespace: Some(job.namespace.clone()),
            owner_references: None,
            ..ObjectMeta::default()
        },
        spec: ModelSpec {
            game,
            digest: artifact.digest.clone(),
            size_bytes: artifact.size_bytes,
            generation: training_loop
                .as_ref()
                .map_or_else(|| parent.as_ref().map_or(1, |(_, g)| g + 1), |(_, g)| *g),
            parent: parent.as_ref().map(|(n, _)| n.clone()),
            training_loop: training_loop.as_ref().map(|(l, _)| l.clone()),
            training_job: Some(job.name.clone()),
            metrics: plan
                .summary
                .counted
                .first()
                .map(|t| t.metrics.clone())
                .unwrap_or_default(),
        },
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_names_are_deterministic_and_fit() {
        assert_eq!(task_name("sp", "games-0003", 2), "sp-games-0003-2");
        let long = "a".repeat(253);
        let name = task_name(&long, "games-0003", 12);
        assert_eq!(name.len(), 253);
        assert!(name.ends_with("-games-0003-12"));
        let dashed = format!("{}-{}", "a".repeat(238), "b".repeat(14));
        assert!(!task_name(&dashed, "games-0003", 1).contains("--"));
    }

    /// What a gauntlet unit's Task carries is what the workload reads: its own games, seed and
    /// opponent (with who that opponent is), beside the job's settings.
    #[test]
    fn a_units_task_carries_its_own_parameters_for_the_workload() {
        use ringrift_contract::{Baseline, GauntletParams, OpponentDetails, Role as WorkRole};

        let mut job = super::super::fixtures::selfplay(10, 5);
        job.kind = JobKind::GauntletJob;
        job.units = crate::plan::split::gauntlet(&["best".into(), "rand".into()], 4, 2);
        job.params = Some(Params::Gauntlet(GauntletParams {
            unit: Unit::default(),
            game: None,
            games: 0,
            simulations: 8,
            candidate: "m2".into(),
            opponents: BTreeMap::from([
                (
                    "best".into(),
                    OpponentDetails {
                        model: Some("m1".into()),
                        baseline: None,
                    },
                ),
                (
                    "rand".into(),
                    OpponentDetails {
                        model: None,
                        baseline: Some(Baseline::Random),
                    },
                ),
            ]),
            opponent: None,
        }));
        let unit = job
            .units
            .iter()
            .find(|u| u.opponent.as_deref() == Some("rand"))
            .unwrap()
            .clone();
        let attempt = NewAttempt {
            unit: unit.clone(),
            attempt: 1,
            avoid: Vec::new(),
            resume: None,
        };
        let made = task(&job, &attempt, "a1", &["GPU-0".into()]);
        let Params::Gauntlet(read) = Params::from_value(WorkRole::Gauntlet, &made.spec.params).unwrap()
        else {
            panic!("not gauntlet parameters");
        };
        assert_eq!(read.unit.role, Some(WorkRole::Gauntlet));
        assert_eq!(
            (
                read.unit.seed,
                read.unit.work_unit.as_str(),
                read.unit.job.as_str()
            ),
            (unit.index, unit.id.as_str(), "sp")
        );
        assert_eq!(read.games, unit.games);
        let opponent = read.opponent.unwrap();
        assert_eq!(opponent.name, "rand");
        assert_eq!(opponent.details.unwrap().baseline, Some(Baseline::Random));
        assert_eq!((read.candidate.as_str(), read.simulations), ("m2", 8));

        assert_eq!(made.spec.resume_from, None);
        // An attempt that resumes gets the checkpoint as one more input, named in resumeFrom.
        let checkpoint = ringrift_crds::common::Artifact {
            name: "checkpoint-t-0.ckpt".into(),
            kind: ringrift_crds::common::ArtifactKind::Checkpoint,
            digest: "sha256:c".into(),
            size_bytes: 1,
            holders: vec!["a2".into()],
        };
        let resuming = NewAttempt {
            resume: Some(checkpoint.clone()),
            ..attempt.clone()
        };
        let made = task(&job, &resuming, "a1", &[]);
        assert_eq!(made.spec.inputs.last(), Some(&checkpoint));
        assert_eq!(made.spec.inputs.len(), job.inputs.len() + 1);
        assert_eq!(made.spec.resume_from.as_deref(), Some("checkpoint-t-0.ckpt"));

        job.params = None;
        assert_eq!(task(&job, &attempt, "a1", &[]).spec.params, serde_json::json!({}));
    }
}
