//! Validate: a job object, checked and resolved against the models and datasets it names, into
//! the [`JobView`] the planner works on. A job that cannot run as written gets a [`Blocked`]
//! that its status shows until the spec or the world changes.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use ringrift_contract::{GauntletParams, OpponentDetails, Params, SelfplayParams, TrainingParams, Unit};
use ringrift_crds::common::{
    Artifact, ArtifactKind, JobPhase, ModelRef, RunPolicy, TaskResources, WorkloadTemplate,
};
use ringrift_crds::gauntlet::GauntletJob;
use ringrift_crds::selfplay::SelfplayJob;
use ringrift_crds::task::JobKind;
use ringrift_crds::training::{TrainingJob, window_parts};

use super::promotion;
use super::status::{Blocked, BlockedReason};
use super::view::{JobSpecifics, JobView, default_priority};
use crate::plan::split;

/// A model the registry knows.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// `Model` name.
    pub name: String,
    /// Its weights, as an input artifact.
    pub artifact: Artifact,
    /// Its generation.
    pub generation: u32,
    /// What its training reported (`spec.metrics`).
    pub metrics: BTreeMap<String, f64>,
}

/// Recorded games of a dataset from one selfplay job (its outputs, borrowed from the job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetPart<'a> {
    /// When the job finished (newest parts are used first).
    pub finished: Timestamp,
    /// Games in it.
    pub games: u64,
    /// Its game files.
    pub artifacts: &'a [Artifact],
}

/// What a job may name, looked up in the controller's caches.
pub trait World {
    /// The `Model` `namespace/name`.
    fn model(&self, namespace: &str, name: &str) -> Option<ModelInfo>;
    /// The name of the best model of the `TrainingLoop` `namespace/name`.
    fn best_of(&self, namespace: &str, training_loop: &str) -> Option<String>;
    /// The finished parts of a dataset, any order.
    fn dataset(&self, namespace: &str, dataset: &str) -> &[DatasetPart<'_>];
}

fn blocked(reason: BlockedReason, message: String) -> Blocked {
    Blocked { reason, message }
}

fn resolve(world: &dyn World, namespace: &str, r: &ModelRef, what: &str) -> Result<ModelInfo, Blocked> {
    let name = match (&r.model, &r.best_of) {
        (Some(model), _) => model.clone(),
        (None, Some(l)) => world.best_of(namespace, l).ok_or_else(|| {
            blocked(
                BlockedReason::ModelNotFound,
                format!("{what}: TrainingLoop {l} has no best model yet"),
            )
        })?,
        (None, None) => {
            return Err(blocked(
                BlockedReason::InvalidSpec,
                format!("{what}: set model or bestOf"),
            ));
        }
    };
    world.model(namespace, &name).ok_or_else(|| {
        blocked(
            BlockedReason::ModelNotFound,
            format!("{what}: Model {name} does not exist"),
        )
    })
}

/// `resources.gpuFraction`: selfplay only, and not with whole `gpus`.
fn fraction_allowed(resources: &TaskResources, selfplay: bool) -> Result<(), Blocked> {
    match (resources.gpu_fraction, selfplay, resources.gpus) {
        (None, _, _) | (Some(_), true, 0) => Ok(()),
        (Some(_), false, _) => Err(blocked(
            BlockedReason::InvalidSpec,
            "resources.gpuFraction is for selfplay only: training and gauntlets take whole gpus"
                .into(),
        )),
        (Some(_), true, _) => Err(blocked(
            BlockedReason::InvalidSpec,
            "resources.gpuFraction and resources.gpus are both set: ask for a share of one GPU or for whole GPUs"
                .into(),
        )),
    }
}

fn finished(
    phase: JobPhase,
    completion: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
) -> Option<(JobPhase, Timestamp)> {
    phase
        .is_finished()
        .then(|| (phase, completion.map_or(Timestamp::UNIX_EPOCH, |t| t.0)))
}

/// A view with no units, for the status of a job that cannot be resolved.
pub fn placeholder(kind: JobKind) -> JobView {
    base(kind, &kube::api::ObjectMeta::default(), None)
}

/// What every kind's spec and status carry the same way.
struct Shared<'a> {
    resources: &'a TaskResources,
    template: &'a WorkloadTemplate,
    policy: &'a RunPolicy,
    /// Recorded phase, start and completion time, from the status.
    recorded: Option<(JobPhase, Option<&'a Time>, Option<&'a Time>)>,
}

/// The [`Shared`] part of a job of any kind (`$s`: its settings).
macro_rules! shared {
    ($job:expr, $s:expr) => {
        Shared {
            resources: &$s.resources,
            template: &$s.template,
            policy: &$s.run_policy,
            recorded: $job
                .status
                .as_ref()
                .map(|st| (st.phase, st.start_time.as_ref(), st.completion_time.as_ref())),
        }
    };
}

/// The view's fields every kind fills the same way.
fn base(kind: JobKind, meta: &kube::api::ObjectMeta, shared: Option<Shared<'_>>) -> JobView {
    let mut view = JobView {
        kind,
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        generation: meta.generation.unwrap_or(0),
        created: meta
            .creation_timestamp
            .as_ref()
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
        units: Vec::new(),
        resources: TaskResources::default(),
        template: WorkloadTemplate::default(),
        policy: RunPolicy::default(),
        priority: default_priority(kind),
        parallelism: None,
        params: None,
        inputs: Vec::new(),
        replicas: None,
        specifics: JobSpecifics::Selfplay,
        finished: None,
        started: None,
    };
    if let Some(shared) = shared {
        view.resources = shared.resources.clone();
        view.template = shared.template.clone();
        view.policy = shared.policy.clone();
        view.priority = shared.policy.priority.unwrap_or(view.priority);
        if let Some((phase, start, completion)) = shared.recorded {
            view.finished = finished(phase, completion);
            view.started = start.map(|t| t.0);
        }
    }
    view
}

/// A `SelfplayJob`, with the name of the model that plays (if any).
///
/// # Errors
/// [`Blocked`] when its model does not exist.
pub fn selfplay(job: &SelfplayJob, world: &dyn World) -> Result<(JobView, Option<String>), Blocked> {
    let spec = &job.spec;
    let s = &spec.settings;
    fraction_allowed(&s.resources, true)?;
    let mut view = base(JobKind::SelfplayJob, &job.metadata, Some(shared!(job, s)));
    let model = spec
        .model
        .as_ref()
        .map(|r| resolve(world, &view.namespace, r, "spec.model"))
        .transpose()?;
    view.units = split::selfplay(s.games, s.games_per_task);
    view.parallelism = s.parallelism;
    view.params = Some(Params::Selfplay(SelfplayParams {
        unit: Unit::default(),
        game: Some((&spec.game).into()),
        games: 0,
        simulations: s.simulations,
        model: model.as_ref().map(|m| m.name.clone()),
        dataset: Some(spec.output.dataset.clone()),
    }));
    view.inputs = model.iter().map(|m| m.artifact.clone()).collect();
    view.replicas = Some(
        s.replicas
            .unwrap_or(ringrift_crds::common::DEFAULT_GAMES_REPLICAS),
    );
    Ok((view, model.map(|m| m.name)))
}

/// A `TrainingJob`. Its inputs are the newest parts of its datasets that hold the window (the
/// workload keeps the newest games of them); its base model, when set, is an input too.
///
/// # Errors
/// [`Blocked`] when the base model does not exist or the datasets hold no games yet.
pub fn training(job: &TrainingJob, world: &dyn World) -> Result<JobView, Blocked> {
    let spec = &job.spec;
    let s = &spec.settings;
    fraction_allowed(&s.resources, false)?;
    let mut view = base(JobKind::TrainingJob, &job.metadata, Some(shared!(job, s)));
    let base_model = spec
        .base_model
        .as_ref()
        .map(|r| resolve(world, &view.namespace, r, "spec.baseModel"))
        .transpose()?;
    // A loop's dataset holds every generation's games: only the window's parts are copied.
    let parts: Vec<&DatasetPart<'_>> = spec
        .datasets
        .iter()
        .flat_map(|d| world.dataset(&view.namespace, d))
        .collect();
    let inputs: Vec<Artifact> = window_parts(s.window.games, parts, |p| p.finished, |p| p.games)
        .into_iter()
        .flat_map(|part| part.artifacts)
        .filter(|a| a.kind == ArtifactKind::Games)
        .cloned()
        .collect();
    if inputs.is_empty() {
        return Err(blocked(
            BlockedReason::DatasetEmpty,
            format!(
                "no finished selfplay games in dataset(s) {}",
                spec.datasets.join(", ")
            ),
        ));
    }
    view.units = split::training();
    view.params = Some(Params::Training(TrainingParams {
        unit: Unit::default(),
        game: Some((&spec.game).into()),
        hyperparameters: (&s.hyperparameters).into(),
        window: (&s.window).into(),
        base_model: base_model.as_ref().map(|m| m.name.clone()),
        output_model: Some(spec.output.model.clone()),
        // Newest first, so the workload can keep the newest games of the window.
        inputs: Some(inputs.iter().map(|a| a.name.clone()).collect()),
    }));
    view.inputs = inputs;
    view.inputs.extend(base_model.iter().map(|m| m.artifact.clone()));
    view.replicas = Some(
        s.replicas
            .unwrap_or(ringrift_crds::common::DEFAULT_MODEL_REPLICAS),
    );
    let annotation = |key: &str| {
        job.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .cloned()
    };
    let training_loop = annotation(super::training_loop::LOOP_LABEL)
        .zip(annotation(super::training_loop::GENERATION_LABEL).and_then(|g| g.parse::<u32>().ok()));
    view.specifics = JobSpecifics::Training {
        model: spec.output.model.clone(),
        parent: base_model.map(|m| (m.name, m.generation)),
        training_loop,
    };
    Ok(view)
}

/// A `GauntletJob`. Model opponents and the candidate are inputs; baselines are built in.
///
/// # Errors
/// [`Blocked`] when the candidate or an opponent's model does not exist.
pub fn gauntlet(job: &GauntletJob, world: &dyn World) -> Result<JobView, Blocked> {
    let spec = &job.spec;
    let s = &spec.settings;
    fraction_allowed(&s.resources, false)?;
    let mut view = base(JobKind::GauntletJob, &job.metadata, Some(shared!(job, s)));
    let candidate = resolve(world, &view.namespace, &spec.candidate, "spec.candidate")?;
    let mut inputs = vec![candidate.artifact.clone()];
    let mut opponents = BTreeMap::new();
    for o in &spec.opponents {
        let model_ref = match (&o.model, &o.best_of) {
            (Some(m), _) => Some(ModelRef::model(m)),
            (None, Some(l)) => Some(ModelRef::best_of(l)),
            (None, None) => None,
        };
        let entry = match model_ref {
            Some(r) => {
                let m = resolve(world, &view.namespace, &r, &format!("opponent {}", o.name))?;
                if !inputs.iter().any(|a| a.digest == m.artifact.digest) {
                    inputs.push(m.artifact.clone());
                }
                OpponentDetails {
                    model: Some(m.name),
                    baseline: None,
                }
            }
            None => OpponentDetails {
                model: None,
                baseline: o.baseline.map(Into::into),
            },
        };
        opponents.insert(o.name.clone(), entry);
    }
    let names: Vec<String> = spec.opponents.iter().map(|o| o.name.clone()).collect();
    let deciding = s
        .promotion
        .opponent
        .clone()
        .or_else(|| names.first().cloned())
        .ok_or_else(|| blocked(BlockedReason::InvalidSpec, "spec.opponents is empty".into()))?;
    view.units = split::gauntlet(
        &names,
        u64::from(s.games_per_opponent),
        u64::from(s.games_per_task),
    );
    view.params = Some(Params::Gauntlet(GauntletParams {
        unit: Unit::default(),
        game: Some((&spec.game).into()),
        games: 0,
        simulations: s.simulations,
        candidate: candidate.name.clone(),
        opponents,
        opponent: None,
    }));
    view.inputs = inputs;
    let gates = promotion::gates(&s.promotion, &deciding);
    promotion::check(&s.promotion, &gates, &names).map_err(|m| blocked(BlockedReason::InvalidSpec, m))?;
    view.specifics = JobSpecifics::Gauntlet {
        gates,
        candidate_metrics: candidate.metrics.clone(),
        deciding,
        per_opponent: u64::from(s.games_per_opponent),
    };
    Ok(view)
}

/// A `Model`'s weights as an input artifact.
pub fn model_artifact(model: &ringrift_crds::model::Model) -> Artifact {
    Artifact {
        name: model.name_any(),
        kind: ArtifactKind::Model,
        digest: model.spec.digest.clone(),
        size_bytes: model.spec.size_bytes,
        holders: model
            .status
            .as_ref()
            .map(|s| s.holders.clone())
            .unwrap_or_default(),
    }
}
