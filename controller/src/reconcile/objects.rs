//! The objects the controller creates, built without I/O: a `Task` for a placed attempt and the
//! `Model` a succeeded `TrainingJob` produced.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;
use ringrift_crds::common::ArtifactKind;
use ringrift_crds::model::{Model, ModelSpec};
use ringrift_crds::task::{AGENT_LABEL, JOB_LABEL, JobKind, JobRef, Role, Task, TaskSpec};
use serde_json::json;

use super::decide::{JobPlan, NewAttempt};
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
    let mut params = job.params.clone();
    if let Some(p) = params.as_object_mut() {
        p.insert("role".into(), json!(role));
        p.insert("workUnit".into(), json!(unit.id));
        p.insert("seed".into(), json!(unit.index));
        p.insert("job".into(), json!(job.name));
        if unit.games > 0 {
            p.insert("games".into(), json!(unit.games));
        }
        if let Some(o) = &unit.opponent {
            let details = p.get("opponents").and_then(|all| all.get(o)).cloned();
            p.insert("opponent".into(), json!({"name": o, "details": details}));
        }
    }
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
            inputs: job.inputs.clone(),
            active_deadline_seconds: None,
            progress_deadline_seconds: job.policy.progress_deadline_seconds,
            cancel: false,
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
    let game = serde_json::from_value(job.params.get("game")?.clone()).ok()?;
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
}
