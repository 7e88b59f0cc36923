//! The continuous pipeline: selfplay batches all the time with the best model, and a training
//! whenever enough new games have arrived (`spec.pipeline: Continuous`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use ringrift_crds::training_loop::{Pipeline, Stage};

use super::jobs::batch_job;
use super::{ChildKind, LoopEvent, Pass, Step, TRAINING_SLOT, batch_name};

impl Pass<'_> {
    /// Whether the loop runs the continuous pipeline.
    pub(super) fn continuous(&self) -> bool {
        self.lp.spec.pipeline == Pipeline::Continuous
    }

    /// The continuous pipeline's selfplay: the running batch, or the next once it has
    /// finished (its games counted once, by batch number), always with the best model. Once
    /// every unit of the running batch has a task, the next batch is made ahead of it, so the
    /// loop always has work waiting: its GPUs pass from one batch's tasks to the next's as they
    /// end, instead of standing idle (or going to other loops, to be taken back by preemption)
    /// between the two. A batch that has recorded no game yet when a new best is promoted is
    /// replaced with one on the new best; one that has games finishes with the model it
    /// started with (its games are good training data). No new batch once the loop is done.
    pub(super) fn batches(&mut self) {
        if !self.continuous() || self.status.stage == Stage::Done || self.waiting.is_some() {
            return;
        }
        let mut c = self.status.continuous.clone().unwrap_or_default();
        c.batch = c.batch.max(1);
        let (g, best) = (self.status.generation, self.status.best_model.clone());
        let lp = self.lp;
        // Bounded: the batches finished since the last pass (a few at most), then the next one.
        for _ in 0..8 {
            let job = batch_name(&self.name, c.batch);
            self.status.active_jobs.selfplay = Some(job.clone());
            if self.restart_stale(&job) {
                break;
            }
            let batch = c.batch;
            let Some(done) = self.stage_job(&job, "SelfplayFailed", || {
                Some(batch_job(lp, batch, g, best.as_ref()))
            }) else {
                // Running, being made or replaced: the next is made once this one's units
                // all have tasks (its own finish is counted when it becomes the running one).
                let placed = self.world.jobs.get(&job).is_some_and(|b| {
                    b.placed && !b.deleting && !b.phase.is_finished() && !self.deleting(&job)
                });
                let ahead = batch_name(&self.name, batch + 1);
                if placed && !self.restart_stale(&ahead) {
                    // Made now; counted once it is the running batch and has finished.
                    self.stage_job(&ahead, "SelfplayFailed", || {
                        Some(batch_job(lp, batch + 1, g, best.as_ref()))
                    });
                }
                break;
            };
            c.games = c.games.saturating_add(done.games);
            c.batch += 1;
        }
        self.status.continuous = Some(c);
    }

    /// Whether this pass deletes `job`.
    fn deleting(&self, job: &str) -> bool {
        self.delete.iter().any(|(_, name)| name == job)
    }

    /// Replaces batch `job` when it has recorded no game yet and plays with another model than
    /// the best: deleted (with an event), to be made again on the best once it is gone.
    fn restart_stale(&mut self, job: &str) -> bool {
        let best = self.status.best_model.as_ref();
        let stale = self.world.jobs.get(job).is_some_and(|b| {
            !b.deleting && !b.phase.is_finished() && b.games == 0 && b.model.as_ref() != best
        });
        if !stale || self.deleting(job) {
            return false;
        }
        self.events.push(LoopEvent::normal(
            "SelfplayRestarted",
            format!(
                "{job} has recorded no game yet: restarted with the new best model {}",
                best.map_or("none", String::as_str)
            ),
        ));
        self.delete.push((ChildKind::Selfplay, job.to_owned()));
        true
    }

    /// The continuous pipeline between trainings: the next training starts once
    /// `continuous.trainEvery` new games have arrived since the last one started, its
    /// cooldown has passed, and the fleet runs fewer trainings than it allows.
    pub(super) fn collect(&mut self) -> Step {
        let mut c = self.status.continuous.clone().unwrap_or_default();
        let spec = &self.lp.spec;
        let every = spec.continuous.train_every.unwrap_or(spec.selfplay.games).max(1);
        let new = c.games.saturating_sub(c.games_at_last_training);
        let cooled = c.last_training_time.as_ref().is_none_or(|t| {
            let cooldown = i64::try_from(spec.continuous.cooldown_seconds).unwrap_or(i64::MAX);
            self.now.as_second().saturating_sub(t.0.as_second()) >= cooldown
        });
        self.note = if new < every {
            Some("collecting games for the next training")
        } else if !cooled {
            Some("waiting for the training cooldown")
        } else if self.world.trainings_full {
            Some(TRAINING_SLOT)
        } else {
            None
        };
        if self.note.is_some() || self.suspended {
            return Step::Stay;
        }
        c.games_at_last_training = c.games;
        c.generation_games = new;
        c.last_training_time = Some(Time(self.now));
        self.status.continuous = Some(c);
        self.status.stage = Stage::Training;
        Step::Next
    }
}
