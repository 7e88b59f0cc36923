//! The child jobs of a loop's generation, as objects to create: deterministic names, labels and
//! owner reference, and each stage's spec from the loop's.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;
use ringrift_crds::common::ModelRef;
use ringrift_crds::gauntlet::{GauntletJob, GauntletJobSpec, Opponent};
use ringrift_crds::selfplay::{DatasetOutput, SelfplayJob, SelfplayJobSpec};
use ringrift_crds::training::{ModelOutput, TrainingJob, TrainingJobSpec};
use ringrift_crds::training_loop::TrainingLoop;

use super::{BEST, GENERATION_LABEL, LOOP_LABEL, NewJob};

/// `<loop>-g<NNN>[-suffix]`, the loop's name shortened so the whole fits 253 characters.
pub fn child_name(training_loop: &str, generation: u32, suffix: &str) -> String {
    let tail = if suffix.is_empty() {
        format!("-g{generation:03}")
    } else {
        format!("-g{generation:03}-{suffix}")
    };
    with_tail(training_loop, &tail)
}

/// `<loop>-s<NNNN>`: a continuous loop's selfplay batch, the loop's name shortened as
/// [`child_name`] does.
pub fn batch_name(training_loop: &str, batch: u32) -> String {
    with_tail(training_loop, &format!("-s{batch:04}"))
}

/// The loop's name, shortened (and never ending in `-` or `.`) so that with `tail` it fits
/// 253 characters.
fn with_tail(training_loop: &str, tail: &str) -> String {
    let keep = 253usize.saturating_sub(tail.len()).min(training_loop.len());
    let mut head = training_loop[..keep].to_owned();
    while head.ends_with(['-', '.']) {
        head.pop();
    }
    format!("{head}{tail}")
}

/// The name of the model trained in a generation.
pub fn model_name(training_loop: &str, generation: u32) -> String {
    child_name(training_loop, generation, "")
}

fn meta(lp: &TrainingLoop, name: String, generation: u32) -> ObjectMeta {
    let loop_name = lp.metadata.name.clone().unwrap_or_default();
    let mut labels = BTreeMap::from([(GENERATION_LABEL.to_owned(), generation.to_string())]);
    if loop_name.len() <= 63 {
        labels.insert(LOOP_LABEL.to_owned(), loop_name.clone());
    }
    // A loop queued in Kueue queues each of its jobs in the same LocalQueue.
    if let Some(queue) = lp
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(crate::reconcile::kueue::QUEUE_LABEL))
    {
        labels.insert(crate::reconcile::kueue::QUEUE_LABEL.to_owned(), queue.clone());
    }
    ObjectMeta {
        name: Some(name),
        namespace: lp.metadata.namespace.clone(),
        labels: Some(labels),
        annotations: Some(BTreeMap::from([
            (GENERATION_LABEL.to_owned(), generation.to_string()),
            (LOOP_LABEL.to_owned(), loop_name.clone()),
        ])),
        owner_references: Some(vec![OwnerReference {
            api_version: "ringrift.ai/v1alpha1".into(),
            kind: "TrainingLoop".into(),
            name: loop_name,
            uid: lp.metadata.uid.clone().unwrap_or_default(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]),
        ..ObjectMeta::default()
    }
}

pub(super) fn selfplay_job(lp: &TrainingLoop, generation: u32, best: Option<&String>) -> NewJob {
    let name = child_name(
        &lp.metadata.name.clone().unwrap_or_default(),
        generation,
        "selfplay",
    );
    selfplay_named(lp, name, generation, best)
}

/// A continuous loop's selfplay batch `batch`, labelled with the generation its games feed.
pub(super) fn batch_job(lp: &TrainingLoop, batch: u32, generation: u32, best: Option<&String>) -> NewJob {
    let name = batch_name(&lp.metadata.name.clone().unwrap_or_default(), batch);
    selfplay_named(lp, name, generation, best)
}

fn selfplay_named(lp: &TrainingLoop, name: String, generation: u32, best: Option<&String>) -> NewJob {
    NewJob::Selfplay(Box::new(SelfplayJob {
        metadata: meta(lp, name, generation),
        spec: SelfplayJobSpec {
            game: lp.spec.game.clone(),
            model: best.map(ModelRef::model),
            settings: lp.spec.selfplay.clone(),
            output: DatasetOutput {
                dataset: lp.metadata.name.clone().unwrap_or_default(),
            },
            share: None,
        },
        status: None,
    }))
}

pub(super) fn training_job(lp: &TrainingLoop, generation: u32, best: Option<&String>) -> NewJob {
    let loop_name = lp.metadata.name.clone().unwrap_or_default();
    NewJob::Training(Box::new(TrainingJob {
        metadata: meta(lp, child_name(&loop_name, generation, "train"), generation),
        spec: TrainingJobSpec {
            game: lp.spec.game.clone(),
            datasets: vec![loop_name.clone()],
            base_model: best.map(ModelRef::model),
            settings: lp.spec.training.settings.clone(),
            output: ModelOutput {
                model: model_name(&loop_name, generation),
            },
            share: None,
        },
        status: None,
    }))
}

/// The opponent that decides promotion: the spec's choice, else the best model, else (no best
/// model yet) the first of the spec's opponents.
fn deciding(lp: &TrainingLoop, best: Option<&String>) -> Option<String> {
    match (&lp.spec.gauntlet.settings.promotion.opponent, best) {
        (Some(o), _) if o != BEST => Some(o.clone()),
        (_, Some(_)) => Some(BEST.into()),
        _ => lp.spec.gauntlet.opponents.first().map(|o| o.name.clone()),
    }
}

pub(super) fn gauntlet_job(lp: &TrainingLoop, generation: u32, best: Option<&String>) -> Option<NewJob> {
    let loop_name = lp.metadata.name.clone().unwrap_or_default();
    let mut opponents = Vec::new();
    if let Some(best) = best {
        opponents.push(Opponent {
            name: BEST.into(),
            model: Some(best.clone()),
            best_of: None,
            baseline: None,
        });
    }
    opponents.extend(lp.spec.gauntlet.opponents.iter().cloned());
    let mut settings = lp.spec.gauntlet.settings.clone();
    settings.promotion.opponent = Some(deciding(lp, best)?);
    if best.is_none() {
        // Generation 1 has no best model to play: its gates are left out, and if that leaves
        // none, the first gate judges against the first listed opponent instead.
        let gates = &mut settings.promotion.gates;
        let first = gates.first().cloned();
        gates.retain(|g| g.opponent.as_deref() != Some(BEST));
        if let (true, Some(mut g)) = (gates.is_empty(), first) {
            g.opponent.clone_from(&settings.promotion.opponent);
            gates.push(g);
        }
    }
    Some(NewJob::Gauntlet(Box::new(GauntletJob {
        metadata: meta(lp, child_name(&loop_name, generation, "gauntlet"), generation),
        spec: GauntletJobSpec {
            game: lp.spec.game.clone(),
            candidate: ModelRef::model(model_name(&loop_name, generation)),
            opponents,
            settings,
            share: None,
        },
        status: None,
    })))
}
