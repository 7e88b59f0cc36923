//! [`World`] over the caches: models, loops' best models and datasets, for validation.

use std::collections::HashMap;

use jiff::Timestamp;
use kube::ResourceExt;
use ringrift_crds::model::Model;
use ringrift_crds::selfplay::SelfplayJob;
use ringrift_crds::training_loop::TrainingLoop;

use crate::reconcile::validate::{DatasetPart, ModelInfo, World, model_artifact};

/// A snapshot of what jobs may refer to.
#[derive(Debug, Default)]
pub struct Snapshot<'a> {
    models: HashMap<(String, String), Model>,
    best: HashMap<(String, String), String>,
    datasets: HashMap<(String, String), Vec<DatasetPart<'a>>>,
}

impl<'a> Snapshot<'a> {
    /// Indexes the caches' objects.
    pub fn new(models: Vec<Model>, loops: &[TrainingLoop], selfplay: &'a [SelfplayJob]) -> Self {
        let ns = |m: &kube::api::ObjectMeta| m.namespace.clone().unwrap_or_default();
        let mut datasets: HashMap<(String, String), Vec<DatasetPart<'a>>> = HashMap::new();
        for job in selfplay {
            let Some(status) = &job.status else { continue };
            if status.phase != ringrift_crds::common::JobPhase::Succeeded {
                continue;
            }
            datasets
                .entry((ns(&job.metadata), job.spec.output.dataset.clone()))
                .or_default()
                .push(DatasetPart {
                    finished: status
                        .completion_time
                        .as_ref()
                        .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
                    games: status.games_done,
                    artifacts: &status.outputs,
                });
        }
        Self {
            models: models
                .into_iter()
                .map(|m| ((ns(&m.metadata), m.name_any()), m))
                .collect(),
            best: loops
                .iter()
                .filter_map(|l| {
                    let best = l.status.as_ref()?.best_model.clone()?;
                    Some(((ns(&l.metadata), l.name_any()), best))
                })
                .collect(),
            datasets,
        }
    }
}

impl World for Snapshot<'_> {
    fn model(&self, namespace: &str, name: &str) -> Option<ModelInfo> {
        let m = self.models.get(&(namespace.to_owned(), name.to_owned()))?;
        Some(ModelInfo {
            name: name.to_owned(),
            artifact: model_artifact(m),
            generation: m.spec.generation,
            metrics: m.spec.metrics.clone(),
        })
    }

    fn best_of(&self, namespace: &str, training_loop: &str) -> Option<String> {
        self.best
            .get(&(namespace.to_owned(), training_loop.to_owned()))
            .cloned()
    }

    fn dataset(&self, namespace: &str, dataset: &str) -> &[DatasetPart<'_>] {
        self.datasets
            .get(&(namespace.to_owned(), dataset.to_owned()))
            .map_or(&[], Vec::as_slice)
    }
}
