//! The `TrainingLoop` stage machine, without I/O: from the loop, its child jobs and the models'
//! ratings, the jobs to create and the loop's next status.
//!
//! Each generation runs a `SelfplayJob` with the best model, a `TrainingJob` on the newest games
//! of the loop's dataset (from the best model), and a `GauntletJob` of the candidate against the
//! best model and the baselines; the gauntlet's decision promotes the candidate or not, and the
//! generation is recorded in the history. Child names are deterministic
//! (`<loop>-g<NNN>-selfplay|train|gauntlet`, model `<loop>-g<NNN>`), so a pass repeated after a
//! failed write creates nothing twice, and a finished generation is recorded once (by number).

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::ObjectMeta;
use ringrift_crds::common::{JobPhase, ModelRef};
use ringrift_crds::gauntlet::{Decision, GauntletJob, GauntletJobSpec, Opponent};
use ringrift_crds::selfplay::{DatasetOutput, SelfplayJob, SelfplayJobSpec};
use ringrift_crds::training::{ModelOutput, TrainingJob, TrainingJobSpec};
use ringrift_crds::training_loop::{
    ActiveJobs, GenerationRecord, LoopPhase, Stage, TrainingLoop, TrainingLoopStatus,
};

use super::status::set_condition;

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
    /// The decision (gauntlet).
    pub decision: Decision,
    /// The candidate's score against the deciding opponent (gauntlet).
    pub win_rate: Option<f64>,
}

/// The world as the loop sees it.
#[derive(Debug, Default)]
pub struct LoopWorld {
    /// The loop's child jobs by name (only those it owns).
    pub jobs: HashMap<String, Child>,
    /// Models of the namespace that exist, with their Elo if rated.
    pub models: HashMap<String, Option<f64>>,
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
    /// The status to write.
    pub status: TrainingLoopStatus,
    /// Events: (warning, reason, message).
    pub events: Vec<(bool, String, String)>,
}

/// `<loop>-g<NNN>[-suffix]`, the loop's name shortened so the whole fits 253 characters.
pub fn child_name(training_loop: &str, generation: u32, suffix: &str) -> String {
    let tail = if suffix.is_empty() {
        format!("-g{generation:03}")
    } else {
        format!("-g{generation:03}-{suffix}")
    };
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

fn selfplay_job(lp: &TrainingLoop, generation: u32, best: Option<&String>) -> NewJob {
    let name = child_name(
        &lp.metadata.name.clone().unwrap_or_default(),
        generation,
        "selfplay",
    );
    NewJob::Selfplay(Box::new(SelfplayJob {
        metadata: meta(lp, name, generation),
        spec: SelfplayJobSpec {
            game: lp.spec.game.clone(),
            model: best.map(ModelRef::model),
            settings: lp.spec.selfplay.clone(),
            output: DatasetOutput {
                dataset: lp.metadata.name.clone().unwrap_or_default(),
            },
        },
        status: None,
    }))
}

fn training_job(lp: &TrainingLoop, generation: u32, best: Option<&String>) -> NewJob {
    let loop_name = lp.metadata.name.clone().unwrap_or_default();
    NewJob::Training(Box::new(TrainingJob {
        metadata: meta(lp, child_name(&loop_name, generation, "train"), generation),
        spec: TrainingJobSpec {
            game: lp.spec.game.clone(),
            datasets: vec![loop_name.clone()],
            base_model: best.map(ModelRef::model),
            settings: lp.spec.training.clone(),
            output: ModelOutput {
                model: model_name(&loop_name, generation),
            },
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

fn gauntlet_job(lp: &TrainingLoop, generation: u32, best: Option<&String>) -> Option<NewJob> {
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
    Some(NewJob::Gauntlet(Box::new(GauntletJob {
        metadata: meta(lp, child_name(&loop_name, generation, "gauntlet"), generation),
        spec: GauntletJobSpec {
            game: lp.spec.game.clone(),
            candidate: ModelRef::model(model_name(&loop_name, generation)),
            opponents,
            settings,
        },
        status: None,
    })))
}

/// Plans one pass of the loop.
#[allow(clippy::too_many_lines)] // one stage machine, read top to bottom
pub fn plan_loop(lp: &TrainingLoop, world: &LoopWorld, now: Timestamp) -> LoopPlan {
    let name = lp.metadata.name.clone().unwrap_or_default();
    let generation_of_spec = lp.metadata.generation.unwrap_or(0);
    let mut status = lp.status.clone().unwrap_or_default();
    status.observed_generation = Some(generation_of_spec);
    let mut create = Vec::new();
    let mut events = Vec::new();
    let mut degraded: Option<(String, String)> = None;
    let mut waiting: Option<(String, String)> = None;
    let suspended = lp.spec.suspend;

    if status.generation == 0 {
        // First pass: generation 1 starts from the initial model, if any.
        if let Some(initial) = &lp.spec.initial_model {
            if world.models.contains_key(initial) {
                status.best_model = Some(initial.clone());
            } else {
                waiting = Some((
                    "ModelNotFound".into(),
                    format!("spec.initialModel: Model {initial} does not exist"),
                ));
            }
        }
        if waiting.is_none() {
            status.generation = 1;
            status.stage = Stage::Selfplay;
            events.push((false, "GenerationStarted".into(), "generation 1 started".into()));
        }
    }
    let max = lp.spec.max_generations;
    // Advance through as many stages as are already finished (bounded: one generation).
    for _ in 0..4 {
        if waiting.is_some() || status.stage == Stage::Done {
            break;
        }
        if max.is_some_and(|m| status.generation > m) {
            status.stage = Stage::Done;
            break;
        }
        let g = status.generation;
        let best = status.best_model.clone();
        match status.stage {
            Stage::Selfplay => {
                let job = child_name(&name, g, "selfplay");
                status.active_jobs.selfplay = Some(job.clone());
                match world.jobs.get(&job) {
                    None if suspended => break,
                    None => {
                        create.push(selfplay_job(lp, g, best.as_ref()));
                        break;
                    }
                    Some(c) if c.phase == JobPhase::Succeeded => status.stage = Stage::Training,
                    Some(c) if c.phase == JobPhase::Failed => {
                        degraded = Some(failed("SelfplayFailed", &job, c));
                        break;
                    }
                    Some(_) => break,
                }
            }
            Stage::Training => {
                let job = child_name(&name, g, "train");
                status.active_jobs.training = Some(job.clone());
                match world.jobs.get(&job) {
                    None if suspended => break,
                    None => {
                        create.push(training_job(lp, g, best.as_ref()));
                        break;
                    }
                    Some(c) if c.phase == JobPhase::Succeeded => {
                        if world.models.contains_key(&model_name(&name, g)) {
                            status.stage = Stage::Gauntlet;
                        } else {
                            break;
                        }
                    }
                    Some(c) if c.phase == JobPhase::Failed => {
                        degraded = Some(failed("TrainingFailed", &job, c));
                        break;
                    }
                    Some(_) => break,
                }
            }
            Stage::Gauntlet => {
                let job = child_name(&name, g, "gauntlet");
                status.active_jobs.gauntlet = Some(job.clone());
                let running = world.jobs.get(&job).is_none_or(|c| !c.phase.is_finished());
                let overlap = lp.spec.overlap_selfplay && running && max.is_none_or(|m| g < m);
                if overlap && !suspended {
                    let next = child_name(&name, g + 1, "selfplay");
                    if !world.jobs.contains_key(&next) {
                        // The next generation's games, with the current best model: never the
                        // candidate, which is not promoted yet.
                        create.push(selfplay_job(lp, g + 1, best.as_ref()));
                    }
                }
                match world.jobs.get(&job) {
                    None if suspended => break,
                    None => {
                        match gauntlet_job(lp, g, best.as_ref()) {
                            Some(j) => create.push(j),
                            None => {
                                degraded = Some((
                                    "InvalidSpec".into(),
                                    "gauntlet.opponents is empty and there is no best model to play".into(),
                                ));
                            }
                        }
                        break;
                    }
                    Some(c) if c.phase == JobPhase::Succeeded => {
                        let candidate = model_name(&name, g);
                        let decision = match c.decision {
                            Decision::Promote => Decision::Promote,
                            _ => Decision::Reject,
                        };
                        if !status.history.iter().any(|h| h.generation == g) {
                            let games = world
                                .jobs
                                .get(&child_name(&name, g, "selfplay"))
                                .map_or(0, |s| s.games);
                            status.history.push(GenerationRecord {
                                generation: g,
                                candidate: Some(candidate.clone()),
                                decision,
                                win_rate: c.win_rate,
                                elo: world.models.get(&candidate).copied().flatten(),
                                games,
                                jobs: ActiveJobs {
                                    selfplay: Some(child_name(&name, g, "selfplay")),
                                    training: Some(child_name(&name, g, "train")),
                                    gauntlet: Some(job.clone()),
                                },
                                completion_time: Some(Time(now)),
                            });
                            let rate = c
                                .win_rate
                                .map_or_else(String::new, |w| format!(" (score {w:.2})"));
                            if decision == Decision::Promote {
                                status.best_model = Some(candidate.clone());
                                events.push((
                                    false,
                                    "Promoted".into(),
                                    format!("generation {g}: {candidate} is the new best model{rate}"),
                                ));
                            } else {
                                events.push((
                                    false,
                                    "Rejected".into(),
                                    format!("generation {g}: {candidate} is not better{rate}"),
                                ));
                            }
                        }
                        status.active_jobs = ActiveJobs::default();
                        if max.is_some_and(|m| g + 1 > m) {
                            // Done: the status keeps the last generation's number.
                            status.stage = Stage::Done;
                            events.push((
                                false,
                                "Succeeded".into(),
                                format!(
                                    "all {g} generations are done; best model {}",
                                    status.best_model.clone().unwrap_or_default()
                                ),
                            ));
                        } else {
                            status.generation = g + 1;
                            status.stage = Stage::Selfplay;
                            events.push((
                                false,
                                "GenerationStarted".into(),
                                format!("generation {} started", g + 1),
                            ));
                        }
                    }
                    Some(c) if c.phase == JobPhase::Failed => {
                        degraded = Some(failed("GauntletFailed", &job, c));
                        break;
                    }
                    Some(_) => break,
                }
            }
            Stage::Done => break,
        }
    }
    status.best_elo = status
        .best_model
        .as_ref()
        .and_then(|b| world.models.get(b).copied().flatten());
    if let Some(record) = status.history.last_mut()
        && record.elo.is_none()
        && let Some(c) = &record.candidate
    {
        record.elo = world.models.get(c).copied().flatten();
    }

    // Phase and conditions.
    let previous = lp.status.as_ref().map(|s| s.phase);
    let g = generation_of_spec;
    let stage_text = format!("generation {}, {:?}", status.generation, status.stage);
    status.phase = if status.stage == Stage::Done {
        LoopPhase::Succeeded
    } else if degraded.is_some() {
        LoopPhase::Degraded
    } else if waiting.is_some() {
        LoopPhase::Pending
    } else if suspended {
        LoopPhase::Suspended
    } else {
        LoopPhase::Running
    };
    let c = &mut status.conditions;
    match (&degraded, &waiting) {
        (Some((reason, message)), _) | (None, Some((reason, message))) => {
            set_condition(c, "Ready", false, reason, message, g, now);
        }
        (None, None) => set_condition(c, "Ready", true, "Reconciled", &stage_text, g, now),
    }
    match &degraded {
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
        LoopPhase::Running => ("StageRunning", stage_text.clone()),
    };
    set_condition(c, "Progressing", progressing, reason, &message, g, now);
    set_condition(
        c,
        "Suspended",
        suspended,
        if suspended {
            "SuspendedBySpec"
        } else {
            "NotSuspended"
        },
        if suspended {
            "spec.suspend is set: no new stage starts; the running one finishes"
        } else {
            "spec.suspend is not set"
        },
        g,
        now,
    );
    if previous != Some(status.phase) {
        match status.phase {
            LoopPhase::Degraded => {
                let (reason, message) = degraded.clone().unwrap_or_default();
                events.push((true, reason, message));
            }
            LoopPhase::Suspended => events.push((false, "Suspended".into(), message.clone())),
            LoopPhase::Running if previous == Some(LoopPhase::Suspended) => {
                events.push((false, "Resumed".into(), stage_text.clone()));
            }
            _ => {}
        }
    }
    LoopPlan {
        create,
        status,
        events,
    }
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
