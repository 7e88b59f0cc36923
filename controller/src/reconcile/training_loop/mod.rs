//! The `TrainingLoop` stage machine, without I/O: from the loop, its child jobs and the models'
//! ratings, the jobs to create and the loop's next status.
//!
//! Each generation runs a `SelfplayJob` with the best model, a `TrainingJob` on the newest games
//! of the loop's dataset (from the best model), and a `GauntletJob` of the candidate against the
//! best model and the baselines; the gauntlet's decision promotes the candidate or not, and the
//! generation is recorded in the history. Child names are deterministic
//! (`<loop>-g<NNN>-selfplay|train|gauntlet`, model `<loop>-g<NNN>`), so a pass repeated after a
//! failed write creates nothing twice, and a finished generation is recorded once (by number).

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use ringrift_crds::common::JobPhase;
use ringrift_crds::gauntlet::{Decision, GauntletJob};
use ringrift_crds::selfplay::SelfplayJob;
use ringrift_crds::training::TrainingJob;
use ringrift_crds::training_loop::{
    ActiveJobs, GenerationRecord, LoopPhase, Stage, TrainingLoop, TrainingLoopStatus,
};

use ringrift_crds::common::set_condition;

mod continuous;
mod durability;
mod jobs;
pub mod rollback;

pub use jobs::{batch_name, child_name, model_name};
use jobs::{gauntlet_job, selfplay_job, training_job};

/// Label on a loop's jobs with the loop's name.
pub const LOOP_LABEL: &str = "ringrift.ai/training-loop";
/// Label (and annotation on training jobs) with the generation.
pub const GENERATION_LABEL: &str = "ringrift.ai/generation";
/// The opponent name of the best model in a loop's gauntlets.
pub const BEST: &str = "best";

/// What the loop needs to know of one of its child jobs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Child {
    /// Phase.
    pub phase: JobPhase,
    /// Why it failed, when it did.
    pub failure: Option<String>,
    /// Games recorded (selfplay).
    pub games: u64,
    /// Every work unit has a task: none waits for a place (selfplay).
    pub placed: bool,
    /// The metrics its tasks reported, averaged (selfplay: the training gates read them).
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// The decision (gauntlet).
    pub decision: Decision,
    /// The candidate's score against the deciding opponent (gauntlet).
    pub win_rate: Option<f64>,
    /// Why it decided as it did, naming the gate that failed (gauntlet).
    pub reason: Option<String>,
    /// Bytes its tasks moved between agents.
    pub bytes_moved: u64,
    /// Which of its outputs have no copy left, when some have none (its `Replicated`
    /// condition's message when the reason is `CopiesLost`), or which are being made again
    /// (its `Progressing` message while it regenerates them).
    pub outputs_lost: Option<String>,
    /// The Model it plays or trains from, by name (a selfplay's model, a training's base, a
    /// gauntlet's `best` opponent).
    pub model: Option<String>,
    /// Marked for deletion: gone soon, not to be created again until it is.
    pub deleting: bool,
}

/// The kind of one of a loop's child jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildKind {
    /// A `SelfplayJob`.
    Selfplay,
    /// A `TrainingJob`.
    Training,
    /// A `GauntletJob`.
    Gauntlet,
}

/// The world as the loop sees it.
#[derive(Debug, Default)]
pub struct LoopWorld {
    /// The loop's child jobs by name (only those it owns).
    pub jobs: HashMap<String, Child>,
    /// Models of the namespace that exist, with their Elo if rated.
    pub models: HashMap<String, Option<f64>>,
    /// The 95% interval of each rated model's Elo (low, high).
    pub intervals: HashMap<String, (f64, f64)>,
    /// Models whose weights had holders and have none left whose heartbeat is current.
    pub lost_models: HashSet<String>,
    /// The loop's standing in the fleet's fair share, as of this pass's placement (none:
    /// the status keeps what it had).
    pub share: Option<ringrift_crds::common::ShareStatus>,
    /// The fleet runs as many trainings as `--max-concurrent-trainings` allows: no training
    /// starts now.
    pub trainings_full: bool,
}

/// A job to create.
#[derive(Debug, Clone)]
pub enum NewJob {
    /// Selfplay.
    Selfplay(Box<SelfplayJob>),
    /// Training.
    Training(Box<TrainingJob>),
    /// Gauntlet.
    Gauntlet(Box<GauntletJob>),
}

/// The loop's decisions for this pass.
#[derive(Debug, Clone)]
pub struct LoopPlan {
    /// Jobs to create (already existing ones are left alone).
    pub create: Vec<NewJob>,
    /// Unfinished jobs to delete: they name a model whose weights are lost; the stage creates
    /// them again with the best model once they are gone.
    pub delete: Vec<(ChildKind, String)>,
    /// The status to write.
    pub status: TrainingLoopStatus,
    /// Events to record on the loop.
    pub events: Vec<LoopEvent>,
}

/// An event the loop records on itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopEvent {
    /// A warning (a stage failed), not a normal event.
    pub warning: bool,
    /// The reason, such as `Promoted`.
    pub reason: String,
    /// For people.
    pub message: String,
}

impl LoopEvent {
    fn normal(reason: &str, message: String) -> Self {
        Self {
            warning: false,
            reason: reason.to_owned(),
            message,
        }
    }
}

/// The note of a training held back by `--max-concurrent-trainings`.
const TRAINING_SLOT: &str = "waiting for a training slot (the fleet runs --max-concurrent-trainings)";

/// Why the loop does not go on: a condition's reason and message.
type Halt = (String, String);

/// Whether the stage machine moves on to the next stage in this pass.
enum Step {
    /// The stage is finished: go on.
    Next,
    /// Wait here (a job to create or running, or a failure).
    Stay,
}

/// One pass of the loop: what it reads and what it decides so far.
struct Pass<'a> {
    lp: &'a TrainingLoop,
    world: &'a LoopWorld,
    now: Timestamp,
    name: String,
    status: TrainingLoopStatus,
    create: Vec<NewJob>,
    delete: Vec<(ChildKind, String)>,
    events: Vec<LoopEvent>,
    degraded: Option<Halt>,
    waiting: Option<Halt>,
    suspended: bool,
    /// What the stage waits for, when not its jobs (said in the Progressing message).
    note: Option<&'static str>,
}

impl<'a> Pass<'a> {
    fn new(lp: &'a TrainingLoop, world: &'a LoopWorld, now: Timestamp) -> Self {
        let mut status = lp.status.clone().unwrap_or_default();
        status.observed_generation = Some(lp.metadata.generation.unwrap_or(0));
        Self {
            lp,
            world,
            now,
            name: lp.metadata.name.clone().unwrap_or_default(),
            status,
            create: Vec::new(),
            delete: Vec::new(),
            events: Vec::new(),
            degraded: None,
            waiting: None,
            suspended: lp.spec.suspend,
            note: None,
        }
    }

    /// First pass: generation 1 starts from the initial model, if any.
    fn start(&mut self) {
        if self.status.generation != 0 {
            return;
        }
        if let Some(initial) = &self.lp.spec.initial_model {
            if self.world.models.contains_key(initial) {
                self.status.best_model = Some(initial.clone());
            } else {
                self.waiting = Some((
                    "ModelNotFound".into(),
                    format!("spec.initialModel: Model {initial} does not exist"),
                ));
                return;
            }
        }
        self.status.generation = 1;
        self.status.stage = Stage::Selfplay;
        self.events.push(LoopEvent::normal(
            "GenerationStarted",
            "generation 1 started".into(),
        ));
    }

    /// Advances through as many stages as are already finished (bounded: one generation).
    fn advance(&mut self) {
        let max = self.lp.spec.max_generations;
        for _ in 0..4 {
            if self.waiting.is_some() || self.status.stage == Stage::Done {
                return;
            }
            if max.is_some_and(|m| self.status.generation > m) {
                self.status.stage = Stage::Done;
                return;
            }
            let step = match self.status.stage {
                Stage::Selfplay if self.continuous() => self.collect(),
                Stage::Selfplay => self.selfplay(),
                Stage::Training => self.training(),
                Stage::Gauntlet => self.gauntlet(),
                Stage::Done => Step::Stay,
            };
            if matches!(step, Step::Stay) {
                return;
            }
        }
    }

    /// The child job of a stage as the world has it: create it when missing (unless
    /// suspended), stop on failure. Some: it succeeded.
    fn stage_job(
        &mut self,
        job: &str,
        failure: &str,
        new: impl FnOnce() -> Option<NewJob>,
    ) -> Option<&'a Child> {
        let replaced = self.delete.iter().any(|(_, name)| name == job);
        match self.world.jobs.get(job) {
            Some(c) if c.deleting || replaced => None,
            None if self.suspended => None,
            None => {
                if let Some(created) = new() {
                    self.create.push(created);
                }
                None
            }
            Some(c) if c.phase == JobPhase::Succeeded => Some(c),
            Some(c) if c.phase == JobPhase::Failed => {
                self.degraded = Some(failed(failure, job, c));
                None
            }
            Some(_) => None,
        }
    }

    fn selfplay(&mut self) -> Step {
        let (g, best) = (self.status.generation, self.status.best_model.clone());
        let job = child_name(&self.name, g, "selfplay");
        self.status.active_jobs.selfplay = Some(job.clone());
        let lp = self.lp;
        let Some(child) = self.stage_job(&job, "SelfplayFailed", || {
            Some(selfplay_job(lp, g, best.as_ref()))
        }) else {
            return Step::Stay;
        };
        if let Some((gate, why)) =
            crate::reconcile::promotion::failed_training_gate(&lp.spec.training.gates, &child.metrics)
        {
            // The games fail a quality gate: the generation is rejected untrained (no retry).
            self.reject_untrained(
                g,
                &job,
                child.games,
                &format!("training gate {gate} failed: {why}"),
            );
            return Step::Next;
        }
        self.status.stage = Stage::Training;
        Step::Next
    }

    /// Records generation `g` as rejected before training (a training gate failed on its games
    /// of `job`), then starts the next generation or ends the loop.
    fn reject_untrained(&mut self, g: u32, job: &str, games: u64, reason: &str) {
        if !self.status.history.iter().any(|h| h.generation == g) {
            self.status.history.push(GenerationRecord {
                generation: g,
                candidate: None,
                decision: Decision::Reject,
                reason: Some(reason.to_owned()),
                games,
                bytes_moved: self.world.jobs.get(job).map_or(0, |c| c.bytes_moved),
                jobs: ActiveJobs {
                    selfplay: Some(job.to_owned()),
                    ..ActiveJobs::default()
                },
                completion_time: Some(Time(self.now)),
                ..GenerationRecord::default()
            });
            self.events.push(LoopEvent {
                warning: true,
                reason: "Rejected".into(),
                message: format!("generation {g}: {reason}; not trained"),
            });
        }
        self.next_generation(g);
    }

    fn training(&mut self) -> Step {
        let (g, best) = (self.status.generation, self.status.best_model.clone());
        let job = child_name(&self.name, g, "train");
        self.status.active_jobs.training = Some(job.clone());
        let lp = self.lp;
        let full = self.world.trainings_full;
        if full && !self.world.jobs.contains_key(&job) {
            self.note = Some(TRAINING_SLOT);
        }
        if self
            .stage_job(&job, "TrainingFailed", || {
                (!full).then(|| training_job(lp, g, best.as_ref()))
            })
            .is_none()
            || !self.world.models.contains_key(&model_name(&self.name, g))
        {
            return Step::Stay;
        }
        self.status.stage = Stage::Gauntlet;
        Step::Next
    }

    fn gauntlet(&mut self) -> Step {
        let (g, best) = (self.status.generation, self.status.best_model.clone());
        let max = self.lp.spec.max_generations;
        let job = child_name(&self.name, g, "gauntlet");
        self.status.active_jobs.gauntlet = Some(job.clone());
        let running = self.world.jobs.get(&job).is_none_or(|c| !c.phase.is_finished());
        let overlap =
            self.lp.spec.overlap_selfplay && !self.continuous() && running && max.is_none_or(|m| g < m);
        if overlap && !self.suspended {
            let next = child_name(&self.name, g + 1, "selfplay");
            if !self.world.jobs.contains_key(&next) {
                // The next generation's games, with the current best model: never the
                // candidate, which is not promoted yet.
                self.create.push(selfplay_job(self.lp, g + 1, best.as_ref()));
            }
        }
        let lp = self.lp;
        let mut invalid = false;
        let finished = self.stage_job(&job, "GauntletFailed", || {
            let created = gauntlet_job(lp, g, best.as_ref());
            invalid = created.is_none();
            created
        });
        if invalid {
            self.degraded = Some((
                "InvalidSpec".into(),
                "gauntlet.opponents is empty and there is no best model to play".into(),
            ));
        }
        let Some(child) = finished else {
            return Step::Stay;
        };
        self.finish_generation(g, &job, child);
        Step::Next
    }

    /// Records a decided generation once (by number), promotes or not, and starts the next
    /// generation or ends the loop.
    fn finish_generation(&mut self, g: u32, job: &str, c: &Child) {
        let candidate = model_name(&self.name, g);
        let decision = match c.decision {
            Decision::Promote => Decision::Promote,
            _ => Decision::Reject,
        };
        if !self.status.history.iter().any(|h| h.generation == g) {
            let stage = |s: &str| self.world.jobs.get(&child_name(&self.name, g, s));
            let games = match &self.status.continuous {
                // The new games that started its training.
                Some(c) if self.continuous() => c.generation_games,
                _ => stage("selfplay").map_or(0, |s| s.games),
            };
            let bytes_moved = ["selfplay", "train", "gauntlet"]
                .into_iter()
                .filter_map(stage)
                .map(|c| c.bytes_moved)
                .fold(0, u64::saturating_add);
            self.status.history.push(GenerationRecord {
                generation: g,
                candidate: Some(candidate.clone()),
                decision,
                win_rate: c.win_rate,
                reason: c.reason.clone(),
                elo: self.world.models.get(&candidate).copied().flatten(),
                games,
                bytes_moved,
                jobs: ActiveJobs {
                    selfplay: Some(child_name(&self.name, g, "selfplay")),
                    training: Some(child_name(&self.name, g, "train")),
                    gauntlet: Some(job.to_owned()),
                },
                completion_time: Some(Time(self.now)),
            });
            let rate = match (&c.reason, c.win_rate) {
                (Some(why), _) => format!(": {why}"),
                (None, Some(w)) => format!(" (score {w:.2})"),
                (None, None) => String::new(),
            };
            if decision == Decision::Promote {
                self.status.best_model = Some(candidate.clone());
                self.events.push(LoopEvent::normal(
                    "Promoted",
                    format!("generation {g}: {candidate} is the new best model{rate}"),
                ));
            } else {
                self.events.push(LoopEvent::normal(
                    "Rejected",
                    format!("generation {g}: {candidate} is not better{rate}"),
                ));
            }
        }
        self.next_generation(g);
    }

    /// After generation `g`: the next one starts, or the loop is done.
    fn next_generation(&mut self, g: u32) {
        self.status.active_jobs = ActiveJobs {
            // The continuous pipeline's selfplay goes on.
            selfplay: self
                .continuous()
                .then(|| self.status.active_jobs.selfplay.clone())
                .flatten(),
            ..ActiveJobs::default()
        };
        if self.lp.spec.max_generations.is_some_and(|m| g + 1 > m) {
            // Done: the status keeps the last generation's number.
            self.status.stage = Stage::Done;
            self.events.push(LoopEvent::normal(
                "Succeeded",
                format!(
                    "all {g} generations are done; best model {}",
                    self.status.best_model.clone().unwrap_or_default()
                ),
            ));
        } else {
            self.status.generation = g + 1;
            self.status.stage = Stage::Selfplay;
            self.events.push(LoopEvent::normal(
                "GenerationStarted",
                format!("generation {} started", g + 1),
            ));
        }
    }

    /// The best model's Elo, and the newest record's once its candidate is rated.
    fn ratings(&mut self) {
        let models = &self.world.models;
        self.status.best_elo = self
            .status
            .best_model
            .as_ref()
            .and_then(|b| models.get(b).copied().flatten());
        if let Some(record) = self.status.history.last_mut()
            && record.elo.is_none()
            && let Some(c) = &record.candidate
        {
            record.elo = models.get(c).copied().flatten();
        }
    }

    /// The phase, the conditions, and the events of a phase change.
    fn conclude(mut self) -> LoopPlan {
        let previous = self.lp.status.as_ref().map(|s| s.phase);
        let status = &mut self.status;
        let stage_text = match self.note {
            Some(note) => format!("generation {}, {:?}: {note}", status.generation, status.stage),
            None => format!("generation {}, {:?}", status.generation, status.stage),
        };
        status.phase = if status.stage == Stage::Done {
            LoopPhase::Succeeded
        } else if self.degraded.is_some() {
            LoopPhase::Degraded
        } else if self.waiting.is_some() {
            LoopPhase::Pending
        } else if self.suspended {
            LoopPhase::Suspended
        } else {
            LoopPhase::Running
        };
        let message = conditions(
            status,
            self.degraded.as_ref(),
            self.waiting.as_ref(),
            &stage_text,
            self.suspended,
            self.lp.metadata.generation.unwrap_or(0),
            self.now,
        );
        if previous != Some(status.phase) {
            match status.phase {
                LoopPhase::Degraded => {
                    let (reason, message) = self.degraded.clone().unwrap_or_default();
                    self.events.push(LoopEvent {
                        warning: true,
                        reason,
                        message,
                    });
                }
                LoopPhase::Suspended => self.events.push(LoopEvent::normal("Suspended", message)),
                LoopPhase::Running if previous == Some(LoopPhase::Suspended) => {
                    self.events.push(LoopEvent::normal("Resumed", stage_text));
                }
                _ => {}
            }
        }
        LoopPlan {
            create: self.create,
            delete: self.delete,
            status: self.status,
            events: self.events,
        }
    }
}

/// Sets the loop's conditions (Ready, Degraded, Progressing, Suspended) for its phase; returns
/// the Progressing message.
fn conditions(
    status: &mut TrainingLoopStatus,
    degraded: Option<&Halt>,
    waiting: Option<&Halt>,
    stage_text: &str,
    suspended: bool,
    g: i64,
    now: Timestamp,
) -> String {
    let c = &mut status.conditions;
    match degraded.or(waiting) {
        Some((reason, message)) => set_condition(c, "Ready", false, reason, message, g, now),
        None => set_condition(c, "Ready", true, "Reconciled", stage_text, g, now),
    }
    match degraded {
        Some((reason, message)) => set_condition(c, "Degraded", true, reason, message, g, now),
        None => set_condition(
            c,
            "Degraded",
            false,
            "StagesHealthy",
            "no stage has failed",
            g,
            now,
        ),
    }
    let progressing = status.phase == LoopPhase::Running;
    let (reason, message) = match status.phase {
        LoopPhase::Succeeded => ("Succeeded", "every generation is done".to_owned()),
        LoopPhase::Suspended => ("Suspended", format!("suspended at {stage_text}")),
        LoopPhase::Degraded => ("Degraded", format!("stopped at {stage_text}")),
        LoopPhase::Pending => ("Waiting", "waiting to start".to_owned()),
        LoopPhase::Running => ("StageRunning", stage_text.to_owned()),
    };
    set_condition(c, "Progressing", progressing, reason, &message, g, now);
    let (reason, text) = if suspended {
        (
            "SuspendedBySpec",
            "spec.suspend is set: no new stage starts; the running one finishes",
        )
    } else {
        ("NotSuspended", "spec.suspend is not set")
    };
    set_condition(c, "Suspended", suspended, reason, text, g, now);
    message
}

/// Plans one pass of the loop: the first generation's start, the stages already finished, the
/// ratings, then the phase, conditions and events.
pub fn plan_loop(lp: &TrainingLoop, world: &LoopWorld, now: Timestamp) -> LoopPlan {
    let mut pass = Pass::new(lp, world, now);
    pass.start();
    pass.fall_back();
    pass.roll_back();
    pass.auto_roll_back();
    pass.replace_lost();
    pass.replace_stale();
    pass.batches();
    pass.advance();
    pass.ratings();
    pass.outputs();
    if let Some(share) = &world.share {
        pass.status.share = Some(share.clone());
    }
    pass.conclude()
}

fn failed(reason: &str, job: &str, child: &Child) -> (String, String) {
    (
        reason.to_owned(),
        format!(
            "{job} failed: {}; delete it to run the stage again",
            child.failure.clone().unwrap_or_else(|| "no reason given".into())
        ),
    )
}

#[cfg(test)]
mod tests;
