//! The continuous pipeline: selfplay batches all the time, training on new games.

use super::*;

fn continuous() -> TrainingLoop {
    lp(serde_json::json!({
        "pipeline": "Continuous",
        "maxGenerations": 2,
        "continuous": {"trainEvery": 80, "cooldownSeconds": 60}
    }))
}

fn later(seconds: i64) -> Timestamp {
    now() + jiff::SignedDuration::from_secs(seconds)
}

fn batch(games: u64, phase: JobPhase, model: Option<&str>) -> Child {
    Child {
        games,
        model: model.map(str::to_owned),
        ..done(phase)
    }
}

fn progressing(plan: &LoopPlan) -> String {
    condition(&plan.status, "Progressing").message.clone()
}

#[test]
fn selfplay_runs_in_batches_and_training_starts_on_enough_new_games() {
    let mut l = continuous();
    let mut world = LoopWorld::default();
    let plan = plan_loop(&l, &world, now());
    assert_eq!(names(&plan), ["c4-s0001"]);
    assert_eq!(plan.status.stage, Stage::Selfplay);
    assert_eq!(plan.status.active_jobs.selfplay.as_deref(), Some("c4-s0001"));
    assert!(
        progressing(&plan).contains("collecting games"),
        "{}",
        progressing(&plan)
    );
    l = apply(l, &plan);
    // One batch (40 games) is not enough: the next batch, no training.
    world
        .jobs
        .insert("c4-s0001".into(), batch(40, JobPhase::Succeeded, None));
    let plan = plan_loop(&l, &world, now());
    assert_eq!(names(&plan), ["c4-s0002"]);
    assert_eq!(plan.status.continuous.as_ref().unwrap().games, 40);
    l = apply(l, &plan);
    // The same pass again (batch 2 created) counts nothing twice.
    world
        .jobs
        .insert("c4-s0002".into(), batch(0, JobPhase::Running, None));
    let again = plan_loop(&l, &world, now());
    assert_eq!(again.status.continuous.as_ref().unwrap().games, 40);
    assert!(names(&again).is_empty(), "{:?}", names(&again));
    // 80 games: the training starts, and selfplay goes on beside it.
    world
        .jobs
        .insert("c4-s0002".into(), batch(40, JobPhase::Succeeded, None));
    let plan = plan_loop(&l, &world, now());
    assert_eq!(names(&plan), ["c4-s0003", "c4-g001-train"]);
    let c = plan.status.continuous.clone().unwrap();
    assert_eq!((c.batch, c.games, c.games_at_last_training), (3, 80, 80));
    assert_eq!(c.last_training_time, Some(Time(now())));
    assert_eq!(plan.status.stage, Stage::Training);
    l = apply(l, &plan);
    // Trained: the gauntlet runs while the batch does.
    world
        .jobs
        .insert("c4-s0003".into(), batch(0, JobPhase::Running, None));
    world
        .jobs
        .insert("c4-g001-train".into(), done(JobPhase::Succeeded));
    world.models.insert("c4-g001".into(), None);
    let plan = plan_loop(&l, &world, now());
    assert_eq!(names(&plan), ["c4-g001-gauntlet"]);
    assert_eq!(plan.status.active_jobs.selfplay.as_deref(), Some("c4-s0003"));
    l = apply(l, &plan);
    // Promoted: the batch that has recorded no game is restarted on the new best.
    world.jobs.insert(
        "c4-g001-gauntlet".into(),
        Child {
            decision: Decision::Promote,
            ..done(JobPhase::Succeeded)
        },
    );
    let plan = plan_loop(&l, &world, now());
    assert_eq!(plan.status.best_model.as_deref(), Some("c4-g001"));
    assert_eq!(
        plan.status.history[0].games, 80,
        "the games that started its training"
    );
    assert_eq!((plan.status.generation, plan.status.stage), (2, Stage::Selfplay));
    assert_eq!(plan.status.active_jobs.selfplay.as_deref(), Some("c4-s0003"));
    l = apply(l, &plan);
    let plan = plan_loop(&l, &world, now());
    assert_eq!(plan.delete, [(ChildKind::Selfplay, "c4-s0003".to_owned())]);
    assert!(plan.events.iter().any(|e| e.reason == "SelfplayRestarted"));
    assert!(names(&plan).is_empty(), "not created again while it exists");
    l = apply(l, &plan);
    world.jobs.remove("c4-s0003");
    let plan = plan_loop(&l, &world, now());
    let NewJob::Selfplay(job) = &plan.create[0] else {
        panic!("{:?}", names(&plan))
    };
    assert_eq!(job.metadata.name.as_deref(), Some("c4-s0003"));
    assert_eq!(job.spec.model, Some(ModelRef::model("c4-g001")));
    l = apply(l, &plan);
    // 80 new games, but the cooldown (60 s from the last start) has not passed.
    world
        .jobs
        .insert("c4-s0003".into(), batch(40, JobPhase::Succeeded, Some("c4-g001")));
    world
        .jobs
        .insert("c4-s0004".into(), batch(40, JobPhase::Succeeded, Some("c4-g001")));
    let plan = plan_loop(&l, &world, later(30));
    assert_eq!(names(&plan), ["c4-s0005"]);
    assert!(progressing(&plan).contains("cooldown"), "{}", progressing(&plan));
    l = apply(l, &plan);
    // Cooled down, but the fleet's trainings are full.
    world
        .jobs
        .insert("c4-s0005".into(), batch(5, JobPhase::Running, Some("c4-g001")));
    world.trainings_full = true;
    let plan = plan_loop(&l, &world, later(61));
    assert!(names(&plan).is_empty(), "{:?}", names(&plan));
    assert!(
        progressing(&plan).contains("training slot"),
        "{}",
        progressing(&plan)
    );
    world.trainings_full = false;
    let plan = plan_loop(&l, &world, later(61));
    assert_eq!(names(&plan), ["c4-g002-train"]);
    let NewJob::Training(t) = &plan.create[0] else {
        panic!()
    };
    assert_eq!(t.spec.base_model, Some(ModelRef::model("c4-g001")));
}

#[test]
fn a_batch_with_games_finishes_on_its_model_and_a_done_loop_starts_no_batch() {
    let mut l = continuous();
    let mut world = LoopWorld::default();
    l = apply(l.clone(), &plan_loop(&l, &world, now()));
    // A new best while batch 1 has games: it goes on.
    let mut status = l.status.clone().unwrap();
    status.best_model = Some("other".into());
    l.status = Some(status);
    world
        .jobs
        .insert("c4-s0001".into(), batch(10, JobPhase::Running, None));
    let plan = plan_loop(&l, &world, now());
    assert!(plan.delete.is_empty());
    assert!(names(&plan).is_empty());
    // Done: no next batch.
    let mut status = l.status.clone().unwrap();
    status.stage = Stage::Done;
    l.status = Some(status);
    world
        .jobs
        .insert("c4-s0001".into(), batch(40, JobPhase::Succeeded, None));
    let plan = plan_loop(&l, &world, now());
    assert!(names(&plan).is_empty(), "{:?}", names(&plan));
}

#[test]
fn generational_loops_wait_for_a_training_slot_too() {
    let mut l = lp(serde_json::json!({}));
    let mut world = LoopWorld::default();
    l = apply(l.clone(), &plan_loop(&l, &world, now()));
    world.jobs.insert(
        "c4-g001-selfplay".into(),
        Child {
            games: 40,
            ..done(JobPhase::Succeeded)
        },
    );
    world.trainings_full = true;
    let plan = plan_loop(&l, &world, now());
    assert!(names(&plan).is_empty());
    assert_eq!(plan.status.stage, Stage::Training);
    assert!(progressing(&plan).contains("training slot"));
    // Untouched by the continuous pipeline's fields.
    assert_eq!(plan.status.continuous, None);
}

fn placed(child: Child) -> Child {
    Child {
        placed: true,
        ..child
    }
}

#[test]
fn the_next_batch_is_made_once_every_unit_of_the_running_one_has_a_task() {
    let mut l = continuous();
    let mut world = LoopWorld::default();
    l = apply(l.clone(), &plan_loop(&l, &world, now()));
    // Batch 1 still has units waiting: nothing more.
    world
        .jobs
        .insert("c4-s0001".into(), batch(0, JobPhase::Running, None));
    let plan = plan_loop(&l, &world, now());
    assert!(names(&plan).is_empty(), "{:?}", names(&plan));
    // Every unit of batch 1 has a task: batch 2 is made ahead, and batch 1 stays the running one.
    world
        .jobs
        .insert("c4-s0001".into(), placed(batch(8, JobPhase::Running, None)));
    let plan = plan_loop(&l, &world, now());
    assert_eq!(names(&plan), ["c4-s0002"]);
    assert_eq!(plan.status.active_jobs.selfplay.as_deref(), Some("c4-s0001"));
    let c = plan.status.continuous.clone().unwrap();
    assert_eq!(
        (c.batch, c.games),
        (1, 0),
        "nothing counted before batch 1 finishes"
    );
    l = apply(l, &plan);
    // Batch 2 exists and is placed too: no third batch while batch 1 runs.
    world
        .jobs
        .insert("c4-s0002".into(), placed(batch(0, JobPhase::Running, None)));
    let plan = plan_loop(&l, &world, now());
    assert!(names(&plan).is_empty(), "{:?}", names(&plan));
    // Batch 2 finishes first: still counted only once batch 1 has.
    world
        .jobs
        .insert("c4-s0002".into(), batch(40, JobPhase::Succeeded, None));
    let plan = plan_loop(&l, &world, now());
    assert!(names(&plan).is_empty(), "{:?}", names(&plan));
    assert_eq!(plan.status.continuous.clone().unwrap().games, 0);
    // Batch 1 finishes: both counted, in order, and batch 3 is the running one.
    world
        .jobs
        .insert("c4-s0001".into(), batch(40, JobPhase::Succeeded, None));
    let plan = plan_loop(&l, &world, now());
    let c = plan.status.continuous.clone().unwrap();
    assert_eq!((c.batch, c.games), (3, 80));
    assert_eq!(plan.status.active_jobs.selfplay.as_deref(), Some("c4-s0003"));
    assert_eq!(names(&plan), ["c4-s0003", "c4-g001-train"]);
}

#[test]
fn a_batch_made_ahead_with_no_game_is_restarted_on_a_new_best() {
    let mut l = continuous();
    let mut world = LoopWorld::default();
    l = apply(l.clone(), &plan_loop(&l, &world, now()));
    world
        .jobs
        .insert("c4-s0001".into(), placed(batch(8, JobPhase::Running, None)));
    world
        .jobs
        .insert("c4-s0002".into(), batch(0, JobPhase::Running, None));
    let mut status = l.status.clone().unwrap();
    status.best_model = Some("c4-g001".into());
    l.status = Some(status);
    // Batch 1 has games and finishes on its model; batch 2 has none and is replaced.
    let plan = plan_loop(&l, &world, now());
    assert_eq!(plan.delete, [(ChildKind::Selfplay, "c4-s0002".to_owned())]);
    assert!(plan.events.iter().any(|e| e.reason == "SelfplayRestarted"));
    assert!(names(&plan).is_empty(), "not made again while it exists");
    l = apply(l, &plan);
    world.jobs.remove("c4-s0002");
    let plan = plan_loop(&l, &world, now());
    let NewJob::Selfplay(job) = &plan.create[0] else {
        panic!("{:?}", names(&plan))
    };
    assert_eq!(job.metadata.name.as_deref(), Some("c4-s0002"));
    assert_eq!(job.spec.model, Some(ModelRef::model("c4-g001")));
}
