use ringrift_crds::common::ModelRef;

use super::*;

#[allow(clippy::needless_pass_by_value)] // call sites read better with json! inline
fn lp(extra: serde_json::Value) -> TrainingLoop {
    let mut spec = serde_json::json!({
        "game": {"board": "connect4", "players": 2},
        "maxGenerations": 3,
        "selfplay": {"games": 40, "gamesPerTask": 10},
        "training": {"window": {"games": 100}},
        "gauntlet": {
            "opponents": [{"name": "random", "baseline": "random"}, {"name": "heuristic", "baseline": "heuristic"}],
            "gamesPerOpponent": 20,
            "promotion": {"winRate": {"minWinRate": 0.55, "minGames": 20}}
        }
    });
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            s.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "ringrift.ai/v1alpha1", "kind": "TrainingLoop",
        "metadata": {"name": "c4", "namespace": "default", "uid": "loop-uid", "generation": 1},
        "spec": spec
    }))
    .unwrap()
}

fn now() -> Timestamp {
    "2026-11-24T10:00:00Z".parse().unwrap()
}

/// Applies a plan's status to the loop, as the write would.
fn apply(mut l: TrainingLoop, plan: &LoopPlan) -> TrainingLoop {
    l.status = Some(plan.status.clone());
    l
}

fn done(phase: JobPhase) -> Child {
    Child {
        phase,
        ..Child::default()
    }
}

fn names(plan: &LoopPlan) -> Vec<String> {
    plan.create
        .iter()
        .map(|j| match j {
            NewJob::Selfplay(j) => j.metadata.name.clone().unwrap(),
            NewJob::Training(j) => j.metadata.name.clone().unwrap(),
            NewJob::Gauntlet(j) => j.metadata.name.clone().unwrap(),
        })
        .collect()
}

fn condition<'a>(
    s: &'a TrainingLoopStatus,
    t: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    s.conditions.iter().find(|c| c.type_ == t).unwrap()
}

#[test]
fn a_new_loop_starts_generation_one_with_selfplay_of_the_untrained_model() {
    let l = lp(serde_json::json!({}));
    let plan = plan_loop(&l, &LoopWorld::default(), now());
    assert_eq!(names(&plan), ["c4-g001-selfplay"]);
    let NewJob::Selfplay(job) = &plan.create[0] else {
        panic!()
    };
    assert_eq!(job.spec.model, None);
    assert_eq!(job.spec.output.dataset, "c4");
    assert_eq!(job.spec.settings.games, 40);
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("TrainingLoop", "loop-uid", Some(true))
    );
    assert_eq!(job.metadata.labels.as_ref().unwrap()[LOOP_LABEL], "c4");
    assert!(
        !job.metadata
            .labels
            .as_ref()
            .unwrap()
            .contains_key(crate::reconcile::kueue::QUEUE_LABEL),
        "not queued in Kueue unless the loop is"
    );
    // A loop queued in Kueue queues its jobs in the same LocalQueue.
    let mut queued = l.clone();
    queued.metadata.labels =
        Some([(crate::reconcile::kueue::QUEUE_LABEL.to_owned(), "team".to_owned())].into());
    let NewJob::Selfplay(job) = &plan_loop(&queued, &LoopWorld::default(), now()).create[0] else {
        panic!()
    };
    assert_eq!(
        job.metadata.labels.as_ref().unwrap()[crate::reconcile::kueue::QUEUE_LABEL],
        "team"
    );
    let s = &plan.status;
    assert_eq!(
        (s.phase, s.generation, s.stage),
        (LoopPhase::Running, 1, Stage::Selfplay)
    );
    assert_eq!(s.active_jobs.selfplay.as_deref(), Some("c4-g001-selfplay"));
    assert_eq!(condition(s, "Ready").status, "True");
    assert!(plan.events.iter().any(|e| e.reason == "GenerationStarted"));
}

#[test]
#[allow(clippy::many_single_char_names)]
fn stages_follow_each_other_and_a_promotion_is_recorded_once() {
    let mut l = lp(serde_json::json!({}));
    let mut world = LoopWorld::default();
    l = apply(l.clone(), &plan_loop(&l, &world, now()));
    // Selfplay done: training from no base model, on the loop's dataset.
    world.jobs.insert(
        "c4-g001-selfplay".into(),
        Child {
            games: 40,
            bytes_moved: 1000,
            ..done(JobPhase::Succeeded)
        },
    );
    let plan = plan_loop(&l, &world, now());
    assert_eq!(names(&plan), ["c4-g001-train"]);
    let NewJob::Training(t) = &plan.create[0] else {
        panic!()
    };
    assert_eq!(
        (t.spec.datasets.clone(), t.spec.base_model.clone()),
        (vec!["c4".to_owned()], None)
    );
    assert_eq!(t.spec.output.model, "c4-g001");
    assert_eq!(t.metadata.annotations.as_ref().unwrap()[GENERATION_LABEL], "1");
    l = apply(l, &plan);
    // Training succeeded but its Model is not there yet: wait.
    world.jobs.insert(
        "c4-g001-train".into(),
        Child {
            bytes_moved: 200,
            ..done(JobPhase::Succeeded)
        },
    );
    let plan = plan_loop(&l, &world, now());
    assert!(plan.create.is_empty());
    assert_eq!(plan.status.stage, Stage::Training);
    // The model exists: the gauntlet, with no best model yet decided by the first opponent.
    world.models.insert("c4-g001".into(), None);
    let plan = plan_loop(&l, &world, now());
    assert_eq!(names(&plan), ["c4-g001-gauntlet"]);
    let NewJob::Gauntlet(g) = &plan.create[0] else {
        panic!()
    };
    assert_eq!(g.spec.candidate, ModelRef::model("c4-g001"));
    let opponents: Vec<&str> = g.spec.opponents.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(opponents, ["random", "heuristic"]);
    assert_eq!(g.spec.settings.promotion.opponent.as_deref(), Some("random"));
    l = apply(l, &plan);
    // Promoted: recorded, best model set, generation 2's selfplay plays with it at once.
    world.jobs.insert(
        "c4-g001-gauntlet".into(),
        Child {
            decision: Decision::Promote,
            win_rate: Some(0.97),
            bytes_moved: 30,
            ..done(JobPhase::Succeeded)
        },
    );
    world.models.insert("c4-g001".into(), Some(412.0));
    let plan = plan_loop(&l, &world, now());
    let s = &plan.status;
    assert_eq!(s.best_model.as_deref(), Some("c4-g001"));
    assert_eq!(s.best_elo, Some(412.0));
    assert_eq!((s.generation, s.stage), (2, Stage::Selfplay));
    assert_eq!(s.history.len(), 1);
    let h = &s.history[0];
    assert_eq!(
        (h.generation, h.decision, h.win_rate, h.elo, h.games),
        (1, Decision::Promote, Some(0.97), Some(412.0), 40)
    );
    assert_eq!(h.jobs.gauntlet.as_deref(), Some("c4-g001-gauntlet"));
    assert_eq!(h.bytes_moved, 1230, "what its three jobs moved");
    assert_eq!(names(&plan), ["c4-g002-selfplay"]);
    let NewJob::Selfplay(sp) = &plan.create[0] else {
        panic!()
    };
    assert_eq!(sp.spec.model, Some(ModelRef::model("c4-g001")));
    assert!(
        plan.events
            .iter()
            .any(|e| e.reason == "Promoted" && e.message.contains("c4-g001"))
    );
    // The same pass again (the status write failed): same status, nothing recorded twice.
    let again = plan_loop(&l, &world, now());
    assert_eq!(again.status.history.len(), 1);
    assert_eq!(names(&again), ["c4-g002-selfplay"]);
    // After the write: the next pass does not record it again either.
    let l2 = apply(l, &plan);
    world
        .jobs
        .insert("c4-g002-selfplay".into(), done(JobPhase::Running));
    let next = plan_loop(&l2, &world, now());
    assert!(next.create.is_empty());
    assert_eq!(next.status.history.len(), 1);
}

/// A loop at generation `g`, stage `stage`, with `best` as its best model.
fn at(g: u32, stage: Stage, best: Option<&str>, extra: serde_json::Value) -> TrainingLoop {
    let mut l = lp(extra);
    l.status = Some(TrainingLoopStatus {
        generation: g,
        stage,
        phase: LoopPhase::Running,
        best_model: best.map(str::to_owned),
        ..TrainingLoopStatus::default()
    });
    l
}

#[test]
#[allow(clippy::many_single_char_names)]
fn later_gauntlets_play_the_best_model_which_decides_and_a_rejection_keeps_it() {
    let l = at(2, Stage::Gauntlet, Some("c4-g001"), serde_json::json!({}));
    let mut world = LoopWorld::default();
    let plan = plan_loop(&l, &world, now());
    let NewJob::Gauntlet(g) = &plan.create[0] else {
        panic!()
    };
    assert_eq!(g.spec.opponents[0].name, BEST);
    assert_eq!(g.spec.opponents[0].model.as_deref(), Some("c4-g001"));
    assert_eq!(g.spec.opponents.len(), 3);
    assert_eq!(g.spec.settings.promotion.opponent.as_deref(), Some(BEST));
    world.jobs.insert(
        "c4-g002-gauntlet".into(),
        Child {
            decision: Decision::Reject,
            win_rate: Some(0.41),
            ..done(JobPhase::Succeeded)
        },
    );
    let plan = plan_loop(&l, &world, now());
    assert_eq!(plan.status.best_model.as_deref(), Some("c4-g001"));
    assert_eq!(plan.status.history[0].decision, Decision::Reject);
    assert_eq!(plan.status.generation, 3);
    let NewJob::Selfplay(sp) = &plan.create[0] else {
        panic!()
    };
    assert_eq!(
        sp.spec.model,
        Some(ModelRef::model("c4-g001")),
        "selfplay keeps the old best"
    );
    assert!(plan.events.iter().any(|e| e.reason == "Rejected"));
}

#[test]
fn a_gauntlet_finished_without_a_decision_counts_as_a_rejection() {
    let l = at(2, Stage::Gauntlet, Some("c4-g001"), serde_json::json!({}));
    let mut world = LoopWorld::default();
    world
        .jobs
        .insert("c4-g002-gauntlet".into(), done(JobPhase::Succeeded));
    let plan = plan_loop(&l, &world, now());
    assert_eq!(plan.status.history[0].decision, Decision::Reject);
}

#[test]
fn the_last_generation_ends_the_loop() {
    let l = at(3, Stage::Gauntlet, Some("c4-g002"), serde_json::json!({}));
    let mut world = LoopWorld::default();
    world.jobs.insert(
        "c4-g003-gauntlet".into(),
        Child {
            decision: Decision::Promote,
            ..done(JobPhase::Succeeded)
        },
    );
    let plan = plan_loop(&l, &world, now());
    let s = &plan.status;
    assert_eq!(
        (s.phase, s.stage, s.generation),
        (LoopPhase::Succeeded, Stage::Done, 3)
    );
    assert_eq!(s.best_model.as_deref(), Some("c4-g003"));
    assert!(plan.create.is_empty());
    assert!(plan.events.iter().any(|e| e.reason == "Succeeded"));
    assert_eq!(condition(s, "Progressing").status, "False");
    // And stays done.
    let after = plan_loop(&apply(l, &plan), &world, now());
    assert!(after.create.is_empty());
    assert_eq!(after.status.phase, LoopPhase::Succeeded);
}

#[test]
fn a_failed_stage_degrades_the_loop_until_the_job_is_deleted() {
    let l = at(2, Stage::Training, Some("c4-g001"), serde_json::json!({}));
    let mut world = LoopWorld::default();
    world.jobs.insert(
        "c4-g002-train".into(),
        Child {
            failure: Some("BackoffLimitExceeded: 3 attempts failed".into()),
            ..done(JobPhase::Failed)
        },
    );
    let plan = plan_loop(&l, &world, now());
    let s = &plan.status;
    assert_eq!(s.phase, LoopPhase::Degraded);
    assert!(plan.create.is_empty(), "no looping forever");
    let degraded = condition(s, "Degraded");
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "TrainingFailed")
    );
    assert!(
        degraded
            .message
            .contains("c4-g002-train failed: BackoffLimitExceeded"),
        "{}",
        degraded.message
    );
    assert!(
        plan.events
            .iter()
            .any(|e| e.warning && e.reason == "TrainingFailed")
    );
    // Deleted: the stage runs again.
    let l = apply(l, &plan);
    world.jobs.clear();
    let plan = plan_loop(&l, &world, now());
    assert_eq!(names(&plan), ["c4-g002-train"]);
    assert_eq!(plan.status.phase, LoopPhase::Running);
    assert_eq!(condition(&plan.status, "Degraded").status, "False");
}

#[test]
fn suspend_lets_the_running_stage_finish_and_starts_nothing_new() {
    let l = at(1, Stage::Selfplay, None, serde_json::json!({"suspend": true}));
    let mut world = LoopWorld::default();
    world
        .jobs
        .insert("c4-g001-selfplay".into(), done(JobPhase::Running));
    let plan = plan_loop(&l, &world, now());
    assert_eq!(plan.status.phase, LoopPhase::Suspended);
    assert!(plan.create.is_empty());
    assert!(plan.events.iter().any(|e| e.reason == "Suspended"));
    world
        .jobs
        .insert("c4-g001-selfplay".into(), done(JobPhase::Succeeded));
    let plan = plan_loop(&apply(l, &plan), &world, now());
    assert_eq!(
        plan.status.stage,
        Stage::Training,
        "the finished stage is recorded"
    );
    assert!(plan.create.is_empty(), "but training does not start");
    // Resumed: training starts.
    let mut l = apply(lp(serde_json::json!({})), &plan);
    l.spec.suspend = false;
    let plan = plan_loop(&l, &world, now());
    assert_eq!(names(&plan), ["c4-g001-train"]);
    assert_eq!(plan.status.phase, LoopPhase::Running);
    assert!(plan.events.iter().any(|e| e.reason == "Resumed"));
}

#[test]
fn overlapping_selfplay_uses_the_best_model_never_the_candidate() {
    let l = at(
        2,
        Stage::Gauntlet,
        Some("c4-g001"),
        serde_json::json!({"overlapSelfplay": true}),
    );
    let mut world = LoopWorld::default();
    world
        .jobs
        .insert("c4-g002-gauntlet".into(), done(JobPhase::Running));
    let plan = plan_loop(&l, &world, now());
    assert_eq!(names(&plan), ["c4-g003-selfplay"]);
    let NewJob::Selfplay(sp) = &plan.create[0] else {
        panic!()
    };
    assert_eq!(sp.spec.model, Some(ModelRef::model("c4-g001")));
    // Not past the last generation.
    let last = at(
        3,
        Stage::Gauntlet,
        Some("c4-g001"),
        serde_json::json!({"overlapSelfplay": true}),
    );
    world
        .jobs
        .insert("c4-g003-gauntlet".into(), done(JobPhase::Running));
    assert!(plan_loop(&last, &world, now()).create.is_empty());
    // Promoted meanwhile: generation 3 adopts the selfplay already running.
    world
        .jobs
        .insert("c4-g003-selfplay".into(), done(JobPhase::Running));
    world.jobs.insert(
        "c4-g002-gauntlet".into(),
        Child {
            decision: Decision::Promote,
            ..done(JobPhase::Succeeded)
        },
    );
    let plan = plan_loop(&l, &world, now());
    assert!(plan.create.is_empty());
    assert_eq!(
        plan.status.active_jobs.selfplay.as_deref(),
        Some("c4-g003-selfplay")
    );
}

#[test]
fn the_initial_model_must_exist_and_then_plays_first() {
    let l = lp(serde_json::json!({"initialModel": "seed-model"}));
    let mut world = LoopWorld::default();
    let plan = plan_loop(&l, &world, now());
    assert_eq!(plan.status.phase, LoopPhase::Pending);
    assert!(plan.create.is_empty());
    assert_eq!(condition(&plan.status, "Ready").reason, "ModelNotFound");
    world.models.insert("seed-model".into(), None);
    let plan = plan_loop(&l, &world, now());
    let NewJob::Selfplay(sp) = &plan.create[0] else {
        panic!()
    };
    assert_eq!(sp.spec.model, Some(ModelRef::model("seed-model")));
    assert_eq!(plan.status.best_model.as_deref(), Some("seed-model"));
}

#[test]
fn child_names_are_deterministic_and_fit() {
    assert_eq!(child_name("c4", 7, "train"), "c4-g007-train");
    assert_eq!(model_name("c4", 12), "c4-g012");
    assert_eq!(child_name("c4", 1234, ""), "c4-g1234");
    let long = "a".repeat(253);
    assert_eq!(child_name(&long, 1, "gauntlet").len(), 253);
}

#[test]
fn a_gauntlet_with_no_one_to_play_degrades_the_loop_and_creates_nothing() {
    // No opponents in the spec and no best model yet: there is no gauntlet to run.
    let mut l = at(1, Stage::Gauntlet, None, serde_json::json!({}));
    l.spec.gauntlet.opponents.clear();
    let mut world = LoopWorld::default();
    world.models.insert("c4-g001".into(), None);
    let plan = plan_loop(&l, &world, now());
    assert!(plan.create.is_empty(), "{:?}", names(&plan));
    assert_eq!(plan.status.phase, LoopPhase::Degraded);
    assert_eq!(condition(&plan.status, "Degraded").reason, "InvalidSpec");
    assert!(plan.events.iter().any(|e| e.warning && e.reason == "InvalidSpec"));
    assert_eq!(plan.status.stage, Stage::Gauntlet, "it stays where it is");
}

#[test]
fn a_best_model_lost_with_every_copy_falls_back_to_the_previous_best() {
    let record = |g: u32, decision: Decision| GenerationRecord {
        generation: g,
        candidate: Some(model_name("c4", g)),
        decision,
        win_rate: None,
        reason: None,
        elo: None,
        games: 0,
        bytes_moved: 0,
        jobs: ActiveJobs::default(),
        completion_time: None,
    };
    let mut l = at(
        4,
        Stage::Selfplay,
        Some("c4-g003"),
        serde_json::json!({"initialModel": "seed", "maxGenerations": 10}),
    );
    let status = l.status.as_mut().unwrap();
    status.history = vec![
        record(1, Decision::Promote),
        record(2, Decision::Reject),
        record(3, Decision::Promote),
    ];
    let mut world = LoopWorld::default();
    for m in ["seed", "c4-g001", "c4-g002", "c4-g003"] {
        world.models.insert(m.into(), None);
    }
    // Held: nothing changes.
    let plan = plan_loop(&l, &world, now());
    assert_eq!(plan.status.best_model.as_deref(), Some("c4-g003"));
    assert!(plan.events.iter().all(|e| e.reason != "BestModelLost"));
    // Lost: the newest promoted before it, never a rejected candidate.
    world.lost_models.insert("c4-g003".into());
    let plan = plan_loop(&l, &world, now());
    assert_eq!(plan.status.best_model.as_deref(), Some("c4-g001"));
    let event = plan.events.iter().find(|e| e.reason == "BestModelLost").unwrap();
    assert!(event.warning);
    assert!(
        event.message.contains("c4-g003") && event.message.ends_with("now c4-g001"),
        "{}",
        event.message
    );
    let NewJob::Selfplay(sp) = &plan.create[0] else {
        panic!()
    };
    assert_eq!(
        sp.spec.model,
        Some(ModelRef::model("c4-g001")),
        "the next jobs play it"
    );
    // That one lost too: the initial model; and with it lost, an untrained one.
    world.lost_models.insert("c4-g001".into());
    let plan = plan_loop(&l, &world, now());
    assert_eq!(plan.status.best_model.as_deref(), Some("seed"));
    world.lost_models.insert("seed".into());
    let plan = plan_loop(&l, &world, now());
    assert_eq!(plan.status.best_model, None);
    assert!(
        plan.events
            .iter()
            .any(|e| e.message.ends_with("untrained model plays)"))
    );
}

#[test]
fn the_loop_names_child_jobs_whose_outputs_lost_every_copy() {
    let l = at(2, Stage::Training, Some("c4-g001"), serde_json::json!({}));
    let mut world = LoopWorld::default();
    world.models.insert("c4-g001".into(), None);
    let plan = plan_loop(&l, &world, now());
    let c = condition(&plan.status, "OutputsAvailable");
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "CopiesHeld"));
    world.jobs.insert(
        "c4-g002-selfplay".into(),
        Child {
            outputs_lost: Some("1 of 4 outputs have no copy on a Ready agent: g.games".into()),
            ..done(JobPhase::Running)
        },
    );
    let plan = plan_loop(&l, &world, now());
    let c = condition(&plan.status, "OutputsAvailable");
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "CopiesLost"));
    assert!(
        c.message.starts_with("c4-g002-selfplay: 1 of 4 outputs"),
        "{}",
        c.message
    );
    let event = plan.events.iter().find(|e| e.reason == "OutputsLost").unwrap();
    assert!(event.warning && event.message == c.message);
    assert_ne!(
        plan.status.phase,
        LoopPhase::Degraded,
        "saying so holds nothing back"
    );
    // Said once: the next pass with the same loss records no second event.
    let l = apply(l, &plan);
    let again = plan_loop(&l, &world, now());
    assert!(again.events.iter().all(|e| e.reason != "OutputsLost"));
    // Made again: available once more.
    world.jobs.get_mut("c4-g002-selfplay").unwrap().outputs_lost = None;
    let plan = plan_loop(&l, &world, now());
    assert_eq!(condition(&plan.status, "OutputsAvailable").status, "True");
}

#[test]
fn unfinished_jobs_on_a_lost_model_are_replaced_with_the_fallback() {
    let l = at(
        2,
        Stage::Training,
        Some("c4-g001"),
        serde_json::json!({"initialModel": "seed"}),
    );
    let mut world = LoopWorld::default();
    for m in ["seed", "c4-g001"] {
        world.models.insert(m.into(), None);
    }
    let on = |model: &str, phase: JobPhase| Child {
        model: Some(model.into()),
        ..done(phase)
    };
    world
        .jobs
        .insert("c4-g002-selfplay".into(), on("c4-g001", JobPhase::Succeeded));
    world
        .jobs
        .insert("c4-g002-train".into(), on("c4-g001", JobPhase::Running));
    // Held: the running training is left alone.
    let plan = plan_loop(&l, &world, now());
    assert!(plan.delete.is_empty());
    assert!(plan.events.iter().all(|e| e.reason != "JobReplaced"));
    // Lost: the training on it is deleted (the finished selfplay is not), nothing is created
    // in its place while it exists, and the stage does not move on.
    world.lost_models.insert("c4-g001".into());
    let plan = plan_loop(&l, &world, now());
    assert_eq!(plan.status.best_model.as_deref(), Some("seed"));
    assert_eq!(plan.delete, [(ChildKind::Training, "c4-g002-train".to_owned())]);
    assert!(plan.create.is_empty());
    assert_eq!(plan.status.stage, Stage::Training);
    let event = plan.events.iter().find(|e| e.reason == "JobReplaced").unwrap();
    assert!(
        event.warning && event.message.contains("Model c4-g001") && event.message.ends_with("with seed"),
        "{}",
        event.message
    );
    // Being deleted: asked once, nothing created yet.
    let l = apply(l, &plan);
    world.jobs.get_mut("c4-g002-train").unwrap().deleting = true;
    let plan = plan_loop(&l, &world, now());
    assert!(plan.delete.is_empty() && plan.create.is_empty());
    // Gone: created again on the fallback.
    world.jobs.remove("c4-g002-train");
    let plan = plan_loop(&l, &world, now());
    let NewJob::Training(t) = &plan.create[0] else {
        panic!("{:?}", names(&plan))
    };
    assert_eq!(t.spec.base_model, Some(ModelRef::model("seed")));
    // A failed job on the lost model is replaced too instead of degrading the loop.
    world
        .jobs
        .insert("c4-g002-train".into(), on("c4-g001", JobPhase::Failed));
    let plan = plan_loop(&l, &world, now());
    assert_eq!(plan.delete.len(), 1);
    assert_ne!(plan.status.phase, LoopPhase::Degraded);
}

mod continuous;
mod rollback;

#[test]
fn gates_against_the_best_model_wait_for_one_and_the_first_gate_stands_in_when_none_is_left() {
    let gauntlet = |promotion: serde_json::Value| {
        serde_json::json!({"gauntlet": {
            "opponents": [{"name": "random", "baseline": "random"}, {"name": "heuristic", "baseline": "heuristic"}],
            "gamesPerOpponent": 20,
            "promotion": promotion,
        }})
    };
    let gate_names = |l: &TrainingLoop| {
        let plan = plan_loop(l, &LoopWorld::default(), now());
        let NewJob::Gauntlet(g) = &plan.create[0] else {
            panic!("{:?}", names(&plan))
        };
        let policy = &g.spec.settings.promotion;
        let opponents: Vec<String> = g.spec.opponents.iter().map(|o| o.name.clone()).collect();
        let gates = crate::reconcile::promotion::gates(policy, "unused");
        assert_eq!(
            crate::reconcile::promotion::check(policy, &gates, &opponents),
            Ok(())
        );
        gates
            .into_iter()
            .map(|g| format!("{}@{}", g.name, g.opponent))
            .collect::<Vec<_>>()
    };
    let seed = gauntlet(serde_json::json!({"gates": [
        {"opponent": "random", "winRate": {"minWinRate": 0.9}},
        {"opponent": "heuristic", "winRate": {"minWinRate": 0.6}},
        {"opponent": "best", "sprt": {"elo0": 0, "elo1": 10}},
        {"name": "gain", "eloGain": {"minElo": 0}},
    ]}));
    // Generation 1: no best model, so no SPRT against it; a gate without an opponent reads the
    // deciding one, the first listed until there is a best model.
    let first = at(1, Stage::Gauntlet, None, seed.clone());
    assert_eq!(
        gate_names(&first),
        [
            "winRate-random@random",
            "winRate-heuristic@heuristic",
            "gain@random"
        ]
    );
    // Later: every gate, the unnamed opponent being the best model.
    let later = at(2, Stage::Gauntlet, Some("c4-g001"), seed);
    assert_eq!(
        gate_names(&later),
        [
            "winRate-random@random",
            "winRate-heuristic@heuristic",
            "sprt-best@best",
            "gain@best"
        ]
    );
    // Only gates against the best model: in generation 1 the first judges the first opponent.
    let only_best = gauntlet(serde_json::json!({"gates": [
        {"opponent": "best", "sprt": {"elo0": 0, "elo1": 10}},
        {"opponent": "best", "eloGain": {"minElo": 10}},
    ]}));
    assert_eq!(
        gate_names(&at(1, Stage::Gauntlet, None, only_best)),
        ["sprt-random@random"]
    );
}

#[test]
fn games_that_fail_a_training_gate_reject_the_generation_untrained() {
    let gates = serde_json::json!({
        "maxGenerations": 3,
        "training": {"window": {"games": 100}, "gates": [{"name": "few-draws", "metric": {"name": "draw_rate", "max": 0.5}}]}
    });
    let l = at(1, Stage::Selfplay, None, gates);
    let mut world = LoopWorld::default();
    let selfplay = |draw_rate: f64| Child {
        games: 40,
        metrics: std::collections::BTreeMap::from([("draw_rate".to_owned(), draw_rate)]),
        ..done(JobPhase::Succeeded)
    };
    // Fine games: training starts.
    world.jobs.insert("c4-g001-selfplay".into(), selfplay(0.2));
    let plan = plan_loop(&l, &world, now());
    assert_eq!(names(&plan), ["c4-g001-train"]);
    // Too many draws: rejected, not trained, the next generation starts.
    world.jobs.insert("c4-g001-selfplay".into(), selfplay(0.8));
    let plan = plan_loop(&l, &world, now());
    assert_eq!(names(&plan), ["c4-g002-selfplay"]);
    let record = &plan.status.history[0];
    assert_eq!(
        (record.generation, record.decision, record.candidate.as_deref()),
        (1, Decision::Reject, None)
    );
    assert_eq!(
        record.reason.as_deref(),
        Some("training gate few-draws failed: draw_rate 0.8000 > 0.5")
    );
    assert_eq!(record.games, 40);
    assert_eq!(record.jobs.training, None);
    assert_eq!(plan.status.generation, 2);
    assert!(
        plan.events
            .iter()
            .any(|e| e.reason == "Rejected" && e.warning && e.message.contains("not trained"))
    );
    // Recorded once.
    let again = plan_loop(&apply(l, &plan), &world, now());
    assert_eq!(again.status.history.len(), 1);
}
