//! Apply for the loops and the model registry: each `TrainingLoop`'s plan (child jobs to
//! create, its status, events), then every `Model`'s status (rating, promotion, holders).

use std::collections::HashMap;

use futures_util::StreamExt as _;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::{Resource, ResourceExt};
use ringrift_crds::gauntlet::GauntletJob;
use ringrift_crds::model::Model;
use ringrift_crds::selfplay::{SelfplayJob, SelfplayJobStatus, SelfplaySettings};
use ringrift_crds::training::TrainingJob;
use ringrift_crds::training_loop::TrainingLoop;

use super::metrics::{KindLabels, LoopLabels};
use super::reconciler::{Reconciler, Registry};
use crate::plan::placement::Standing;
use crate::reconcile::models::{Pools, model_statuses, pool_ratings, rounded};
use crate::reconcile::training_loop::{BEST, Child, ChildKind, LoopPlan, LoopWorld, NewJob, plan_loop};
use ringrift_crds::common::ShareStatus;

/// Whether `meta` is controlled by the object with `uid`.
fn owned_by(meta: &kube::api::ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

fn failure(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> Option<String> {
    conditions
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")
        .map(|c| format!("{}: {}", c.reason, c.message))
}

/// What a child job says of its outputs that lost every copy: its `Replicated` condition's
/// message when the reason is `CopiesLost`, else, while the units that made them run again,
/// its `Progressing` message (`RegeneratingLostOutputs`): not available until they are made.
fn outputs_lost(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> Option<String> {
    let said = |t: &str, reason: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t && c.reason == reason)
            .map(|c| c.message.clone())
    };
    said("Replicated", "CopiesLost").or_else(|| said("Progressing", "RegeneratingLostOutputs"))
}

/// Whether every work unit of a selfplay job has a task, as its status says: none waits for a
/// place (its queue is empty) and its live and succeeded tasks cover its units.
fn every_unit_placed(settings: &SelfplaySettings, s: &SelfplayJobStatus) -> bool {
    let units = settings.games.div_ceil(settings.games_per_task.max(1));
    let t = &s.tasks;
    let covered = u64::from(t.pending) + u64::from(t.running) + u64::from(t.succeeded);
    s.queue.is_none() && units > 0 && covered >= units
}

/// A claimant's standing as its status shows it: GPUs to two decimals, whole thousandths of
/// a core.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
fn share_status(s: &Standing) -> ShareStatus {
    ShareStatus {
        entitled_gpus: (s.entitled.gpus * 100.0).round() / 100.0,
        entitled_cpu_millis: s.entitled.cpu_millis.round().max(0.0) as u64,
        used_gpus: (s.used.gpus * 100.0).round() / 100.0,
        used_cpu_millis: s.used.cpu_millis.round().max(0.0) as u64,
        waiting: s.waiting,
    }
}

/// The loop's child jobs and the namespace's models with their ratings as of this pass, as the
/// stage machine sees them.
fn world_of(lp: &TrainingLoop, r: &Registry<'_>, pools: &Pools, trainings_full: bool) -> LoopWorld {
    let uid = lp.metadata.uid.clone().unwrap_or_default();
    let ns = lp.namespace().unwrap_or_default();
    let mut jobs = HashMap::new();
    // Phase and failure of any kind of job, plus what only that kind has.
    macro_rules! children {
        ($list:expr, |$j:ident, $s:ident| $extra:expr) => {
            for $j in $list.iter().filter(|j| owned_by(&j.metadata, &uid)) {
                let $s = $j.status.clone().unwrap_or_default();
                let base = Child {
                    phase: $s.phase,
                    failure: failure(&$s.conditions),
                    bytes_moved: $s.bytes_moved,
                    outputs_lost: outputs_lost(&$s.conditions),
                    deleting: $j.metadata.deletion_timestamp.is_some(),
                    ..Child::default()
                };
                jobs.insert($j.name_any(), ($extra)(base));
            }
        };
    }
    children!(r.selfplay, |j, s| |c| Child {
        games: s.games_done,
        placed: every_unit_placed(&j.spec.settings, &s),
        metrics: s.metrics.clone(),
        model: j.spec.model.as_ref().and_then(|m| m.model.clone()),
        ..c
    });
    children!(r.training, |j, s| |c| Child {
        model: j.spec.base_model.as_ref().and_then(|m| m.model.clone()),
        ..c
    });
    children!(r.gauntlet, |j, s| |c| Child {
        decision: s.decision,
        win_rate: s.win_rate,
        reason: s.decision_reason.clone(),
        model: j
            .spec
            .opponents
            .iter()
            .find(|o| o.name == BEST)
            .and_then(|o| o.model.clone()),
        ..c
    });
    let models = r
        .models
        .iter()
        .filter(|m| m.namespace().unwrap_or_default() == ns)
        .map(|m| {
            let elo = pools
                .get(&crate::reconcile::models::pool_of(&ns, &m.spec.game))
                .and_then(|p| p.get(&m.name_any()))
                .map(|r| rounded(r.elo));
            (m.name_any(), elo)
        })
        .collect();
    let intervals = r
        .models
        .iter()
        .filter(|m| m.namespace().unwrap_or_default() == ns)
        .filter_map(|m| {
            let rating = pools
                .get(&crate::reconcile::models::pool_of(&ns, &m.spec.game))
                .and_then(|p| p.get(&m.name_any()))?;
            Some((m.name_any(), (rounded(rating.low), rounded(rating.high))))
        })
        .collect();
    let lost_models = r
        .models
        .iter()
        .filter(|m| m.namespace().unwrap_or_default() == ns)
        .filter(|m| {
            let holders = m
                .status
                .as_ref()
                .map(|s| s.holders.as_slice())
                .unwrap_or_default();
            !r.disrupted && !holders.is_empty() && !holders.iter().any(|h| r.live.contains(h))
        })
        .map(ResourceExt::name_any)
        .collect();
    let claimant = format!("TrainingLoop/{ns}/{}", lp.name_any());
    // No standing: nothing of the loop runs or waits (zeros, not the last pass's figures).
    let share = Some(
        r.shares
            .get(&claimant)
            .map_or_else(ShareStatus::default, share_status),
    );
    LoopWorld {
        jobs,
        models,
        intervals,
        lost_models,
        share,
        trainings_full,
    }
}

impl Reconciler {
    /// Plans and applies every loop (`registry.loops` already merged with this replica's own
    /// writes), then the models' statuses. The ratings are fitted once per pass for both.
    pub(super) async fn loops_and_models(&mut self, registry: Registry<'_>, now: Timestamp) {
        let pools = pool_ratings(registry.gauntlet);
        let mut reported = std::collections::HashSet::new();
        // Trainings running in the fleet, against --max-concurrent-trainings (0: no limit).
        let most = self.tuning.max_concurrent_trainings;
        let mut planned = Vec::new();
        let mut trainings = registry
            .training
            .iter()
            .filter(|j| j.status.as_ref().is_none_or(|s| !s.phase.is_finished()))
            .count();
        for lp in registry
            .loops
            .iter()
            .filter(|l| l.metadata.deletion_timestamp.is_none())
        {
            self.health
                .metrics
                .reconciles
                .get_or_create(&KindLabels {
                    kind: "TrainingLoop".into(),
                })
                .inc();
            let key = format!(
                "TrainingLoop/{}/{}",
                lp.namespace().unwrap_or_default(),
                lp.name_any()
            );
            let full = most > 0 && trainings >= most;
            let plan = plan_loop(lp, &world_of(lp, &registry, &pools, full), now);
            trainings += plan
                .create
                .iter()
                .filter(|j| matches!(j, NewJob::Training(_)))
                .count();
            let labels = LoopLabels {
                namespace: lp.namespace().unwrap_or_default(),
                training_loop: lp.name_any(),
            };
            self.health.metrics.training_loop(
                &labels,
                Some((
                    plan.status.generation,
                    plan.status.phase == ringrift_crds::training_loop::LoopPhase::Degraded,
                    plan.status.best_elo,
                )),
            );
            reported.insert((labels.namespace, labels.training_loop));
            planned.push((lp, key, plan));
        }
        // Planned in order (the fleet's trainings are counted across loops); written at once,
        // each loop's writes in order: a loop's status write waited behind every other's.
        let this = &*self;
        let written: Vec<TrainingLoop> = futures_util::stream::iter(planned.iter())
            .map(|(lp, key, plan)| this.apply_loop(lp, key, plan))
            .buffer_unordered(self.tuning.concurrency.max(1))
            .filter_map(std::future::ready)
            .collect()
            .await;
        for w in written {
            self.loops.wrote(w);
        }
        for (namespace, training_loop) in self.loops_reported.difference(&reported) {
            let labels = LoopLabels {
                namespace: namespace.clone(),
                training_loop: training_loop.clone(),
            };
            self.health.metrics.training_loop(&labels, None);
        }
        self.loops_reported = reported;
        self.apply_models(registry.models, &registry.loops, &pools, registry.training, now)
            .await;
    }

    /// Writes what a loop's plan asks for: its jobs created and replaced ones deleted, then its
    /// status and events. The status as written, if it was.
    async fn apply_loop(&self, lp: &TrainingLoop, key: &str, plan: &LoopPlan) -> Option<TrainingLoop> {
        let writer = &self.writer;
        let reference = lp.object_ref(&());
        let mut failed = !self.create_jobs(key, &reference, &plan.create).await;
        failed |= !self.delete_replaced(lp, key, &plan.delete).await;
        if failed || lp.status.as_ref() == Some(&plan.status) {
            // A failure: the status would claim jobs that do not exist; the next pass tries
            // again.
            return None;
        }
        let mut next = lp.clone();
        next.status = Some(plan.status.clone());
        match writer.replace_status(&next).await {
            Ok(written) => {
                let recorded = lp.status.as_ref().map_or(&[][..], |s| s.history.as_slice());
                for g in plan
                    .status
                    .history
                    .iter()
                    .filter(|g| !recorded.iter().any(|r| r.generation == g.generation))
                {
                    self.health
                        .metrics
                        .generation_bytes_moved
                        .get_or_create(&LoopLabels {
                            namespace: lp.namespace().unwrap_or_default(),
                            training_loop: lp.name_any(),
                        })
                        .inc_by(g.bytes_moved);
                }
                for event in &plan.events {
                    writer
                        .event(&reference, event.warning, &event.reason, event.message.clone())
                        .await;
                }
                tracing::info!(
                    training_loop = key,
                    generation = plan.status.generation,
                    stage = ?plan.status.stage,
                    phase = ?plan.status.phase,
                    "loop status written"
                );
                Some(written)
            }
            Err(e) => {
                self.health.metrics.error("TrainingLoop", e.category());
                tracing::debug!(training_loop = key, error = %e, "loop status not written");
                None
            }
        }
    }

    /// Creates the jobs a loop's plan asks for (an existing one is left alone), with an event
    /// for each; false when a create failed.
    async fn create_jobs(&self, key: &str, reference: &ObjectReference, create: &[NewJob]) -> bool {
        let writer = self.writer.clone();
        let mut failed = false;
        for job in create {
            let (kind, name, result) = match job {
                NewJob::Selfplay(j) => (
                    "SelfplayJob",
                    j.name_any(),
                    writer.create_if_absent(j.as_ref()).await,
                ),
                NewJob::Training(j) => (
                    "TrainingJob",
                    j.name_any(),
                    writer.create_if_absent(j.as_ref()).await,
                ),
                NewJob::Gauntlet(j) => (
                    "GauntletJob",
                    j.name_any(),
                    writer.create_if_absent(j.as_ref()).await,
                ),
            };
            match result {
                Ok(true) => {
                    tracing::info!(training_loop = key, job = name, "created {kind}");
                    writer
                        .event(reference, false, "JobCreated", format!("created {kind} {name}"))
                        .await;
                }
                Ok(false) => {}
                Err(e) => {
                    self.health.metrics.error("TrainingLoop", e.category());
                    tracing::warn!(training_loop = key, job = name, error = %e, "create failed");
                    failed = true;
                }
            }
        }
        !failed
    }

    /// Deletes the loop's jobs that its plan replaces (they name a lost or stale model, or a
    /// continuous batch restarts on a new best; the loop's event says which); false when a
    /// delete failed.
    async fn delete_replaced(&self, lp: &TrainingLoop, key: &str, jobs: &[(ChildKind, String)]) -> bool {
        let writer = self.writer.clone();
        let ns = lp.namespace().unwrap_or_default();
        let mut deleted = true;
        for (kind, name) in jobs {
            let result = match kind {
                ChildKind::Selfplay => writer.delete::<SelfplayJob>(&ns, name).await,
                ChildKind::Training => writer.delete::<TrainingJob>(&ns, name).await,
                ChildKind::Gauntlet => writer.delete::<GauntletJob>(&ns, name).await,
            };
            match result {
                Ok(()) => tracing::info!(
                    training_loop = key,
                    job = name,
                    "deleted, to be created again (the loop's event says why)"
                ),
                Err(e) => {
                    self.health.metrics.error("TrainingLoop", e.category());
                    tracing::warn!(training_loop = key, job = name, error = %e, "delete failed");
                    deleted = false;
                }
            }
        }
        deleted
    }

    /// Models: ratings, promotion (demotions first, so two are never promoted at once),
    /// holders.
    async fn apply_models(
        &mut self,
        models: Vec<Model>,
        loops: &[TrainingLoop],
        pools: &Pools,
        training: &[TrainingJob],
        now: Timestamp,
    ) {
        let writer = self.writer.clone();
        let models = self.models.merge(models);
        let mut changes = model_statuses(&models, pools, training, loops, now);
        changes.sort_by_key(|(_, s)| s.promoted);
        for (model, status) in changes {
            let was_promoted = model.status.as_ref().is_some_and(|s| s.promoted);
            let promoted = status.promoted;
            let mut next = model.clone();
            next.status = Some(status);
            match writer.replace_status(&next).await {
                Ok(written) => {
                    self.models.wrote(written);
                    if promoted && !was_promoted {
                        writer
                            .event(
                                &model.object_ref(&()),
                                false,
                                "Promoted",
                                "the best model of its loop".into(),
                            )
                            .await;
                    }
                }
                Err(e) => {
                    self.health.metrics.error("Model", e.category());
                    tracing::debug!(model = model.name_any(), error = %e, "model status not written");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ringrift_crds::common::{QueueStatus, TaskCounts};

    use super::*;

    fn settings(games: u64, per_task: u64) -> SelfplaySettings {
        serde_json::from_value(serde_json::json!({"games": games, "gamesPerTask": per_task}))
            .expect("settings")
    }

    fn status(pending: u32, running: u32, succeeded: u32, queued: bool) -> SelfplayJobStatus {
        SelfplayJobStatus {
            tasks: TaskCounts {
                pending,
                running,
                succeeded,
                failed: 3,
            },
            queue: queued.then(|| QueueStatus {
                position: 1,
                reason: "no Ready agent has 1 free GPU".into(),
            }),
            ..SelfplayJobStatus::default()
        }
    }

    #[test]
    fn a_selfplay_job_is_placed_once_every_unit_has_a_task_and_none_waits() {
        // 10 games in units of 4: 3 units, the last of 2 games.
        let s = settings(10, 4);
        assert!(every_unit_placed(&s, &status(1, 1, 1, false)));
        assert!(every_unit_placed(&s, &status(0, 0, 3, false)));
        assert!(
            !every_unit_placed(&s, &status(0, 2, 0, false)),
            "one unit has no task"
        );
        assert!(!every_unit_placed(&s, &status(1, 1, 1, true)), "something waits");
        assert!(
            !every_unit_placed(&s, &SelfplayJobStatus::default()),
            "not looked at yet"
        );
    }
}
