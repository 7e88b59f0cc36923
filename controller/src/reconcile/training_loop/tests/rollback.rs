//! Rollback: `spec.rollbackTo` once per value, `spec.autoRollback` on a model surely worse
//! than its parent, and the jobs on the model rolled back from started again.

use ringrift_crds::training_loop::RollbackTrigger;

use super::*;

fn record(g: u32, candidate: &str, decision: Decision) -> GenerationRecord {
    GenerationRecord {
        generation: g,
        candidate: Some(candidate.into()),
        decision,
        ..GenerationRecord::default()
    }
}

/// Generation 4 in selfplay with c4-g003 the best: g001 and g003 promoted, g002 rejected.
fn loop_at_g4(mut extra: serde_json::Value) -> TrainingLoop {
    extra["maxGenerations"] = serde_json::json!(5);
    let mut l = at(4, Stage::Selfplay, Some("c4-g003"), extra);
    if let Some(s) = l.status.as_mut() {
        s.history = vec![
            record(1, "c4-g001", Decision::Promote),
            record(2, "c4-g002", Decision::Reject),
            record(3, "c4-g003", Decision::Promote),
        ];
    }
    l
}

fn world() -> LoopWorld {
    let mut world = LoopWorld::default();
    for m in ["c4-g001", "c4-g002", "c4-g003"] {
        world.models.insert(m.into(), None);
    }
    // Generation 4's selfplay runs on c4-g003.
    world.jobs.insert(
        "c4-g004-selfplay".into(),
        Child {
            model: Some("c4-g003".into()),
            ..done(JobPhase::Running)
        },
    );
    world
}

fn reasons(plan: &LoopPlan) -> Vec<&str> {
    plan.events.iter().map(|e| e.reason.as_str()).collect()
}

#[test]
fn rollback_to_makes_the_model_best_once_and_restarts_selfplay_on_it() {
    let l = loop_at_g4(serde_json::json!({"rollbackTo": "c4-g001"}));
    let world = world();
    let plan = plan_loop(&l, &world, now());
    assert_eq!(plan.status.best_model.as_deref(), Some("c4-g001"));
    assert_eq!(plan.status.rollback_applied.as_deref(), Some("c4-g001"));
    let r = &plan.status.rollbacks[0];
    assert_eq!(
        (r.generation, r.from.as_deref(), r.to.as_str(), r.trigger),
        (4, Some("c4-g003"), "c4-g001", RollbackTrigger::Manual)
    );
    assert!(reasons(&plan).contains(&"RolledBack"), "{:?}", plan.events);
    assert_eq!(
        plan.delete,
        [(ChildKind::Selfplay, "c4-g004-selfplay".to_owned())]
    );
    assert!(
        plan.events
            .iter()
            .any(|e| e.reason == "JobReplaced" && !e.warning && e.message.contains("run again with c4-g001"))
    );

    // The next pass, with the job gone: it is created again on the restored model, and the
    // rollback is not applied twice.
    let l = TrainingLoop {
        status: Some(plan.status.clone()),
        ..l
    };
    let mut world = world;
    world.jobs.remove("c4-g004-selfplay");
    let plan = plan_loop(&l, &world, now());
    assert_eq!(plan.status.rollbacks.len(), 1);
    assert!(!reasons(&plan).contains(&"RolledBack"));
    let Some(NewJob::Selfplay(j)) = plan.create.first() else {
        panic!("{:?} {:?} {:?}", names(&plan), plan.events, plan.status)
    };
    assert_eq!(
        j.spec.model.as_ref().and_then(|m| m.model.as_deref()),
        Some("c4-g001")
    );

    // A later promotion stands while rollbackTo keeps its value.
    let mut later = TrainingLoop {
        status: Some(plan.status.clone()),
        ..l
    };
    if let Some(s) = later.status.as_mut() {
        s.best_model = Some("c4-g004".into());
        s.history.push(record(4, "c4-g004", Decision::Promote));
    }
    world.models.insert("c4-g004".into(), None);
    let plan = plan_loop(&later, &world, now());
    assert_eq!(plan.status.best_model.as_deref(), Some("c4-g004"));
    assert_eq!(plan.status.rollbacks.len(), 1);
}

#[test]
fn a_rollback_to_a_missing_or_lost_model_waits_and_says_why() {
    let l = loop_at_g4(serde_json::json!({"rollbackTo": "c4-g009"}));
    let plan = plan_loop(&l, &world(), now());
    assert_eq!(plan.status.best_model.as_deref(), Some("c4-g003"));
    assert_eq!(plan.status.rollback_applied, None);
    let e = plan
        .events
        .iter()
        .find(|e| e.reason == "RollbackWaiting")
        .unwrap();
    assert!(e.warning && e.message.contains("c4-g009 is no Model"), "{e:?}");
    let l = loop_at_g4(serde_json::json!({"rollbackTo": "c4-g001"}));
    let mut world = world();
    world.lost_models.insert("c4-g001".into());
    let plan = plan_loop(&l, &world, now());
    assert_eq!(plan.status.best_model.as_deref(), Some("c4-g003"));
    assert!(
        plan.events
            .iter()
            .any(|e| e.reason == "RollbackWaiting" && e.message.contains("no copy"))
    );
    assert!(plan.delete.is_empty());
}

#[test]
fn auto_rollback_undoes_a_promotion_that_is_surely_worse_than_its_parent_once() {
    let l = loop_at_g4(serde_json::json!({"autoRollback": {"marginElo": 20}}));
    let rated = |best: (f64, f64, f64), parent: (f64, f64, f64)| {
        let mut w = world();
        for (m, (elo, low, high)) in [("c4-g003", best), ("c4-g001", parent)] {
            w.models.insert(m.into(), Some(elo));
            w.intervals.insert(m.into(), (low, high));
        }
        w
    };
    // 60 below its parent, each +-30: the difference's interval ends at about -60 + 83 = 23.
    let plan = plan_loop(&l, &rated((440.0, 410.0, 470.0), (500.0, 470.0, 530.0)), now());
    assert_eq!(
        plan.status.best_model.as_deref(),
        Some("c4-g003"),
        "not sure enough"
    );
    // 150 below, each +-30: ends at about -67, below -20.
    let world = rated((350.0, 320.0, 380.0), (500.0, 470.0, 530.0));
    let plan = plan_loop(&l, &world, now());
    assert_eq!(
        plan.status.best_model.as_deref(),
        Some("c4-g001"),
        "back to the parent (g002 was rejected)"
    );
    let r = &plan.status.rollbacks[0];
    assert_eq!(
        (r.from.as_deref(), r.to.as_str(), r.trigger),
        (Some("c4-g003"), "c4-g001", RollbackTrigger::Automatic)
    );
    assert!(r.message.contains("below -20"), "{}", r.message);
    assert_eq!(
        plan.delete,
        [(ChildKind::Selfplay, "c4-g004-selfplay".to_owned())]
    );
    // Once: with c4-g003 made best again by hand, it is not rolled back again.
    let mut again = TrainingLoop {
        status: Some(plan.status.clone()),
        ..l.clone()
    };
    again.spec.rollback_to = Some("c4-g003".into());
    let plan = plan_loop(&again, &world, now());
    assert_eq!(plan.status.best_model.as_deref(), Some("c4-g003"));
    assert_eq!(plan.status.rollbacks.len(), 2);
    assert_eq!(plan.status.rollbacks[1].trigger, RollbackTrigger::Manual);
    // Without autoRollback nothing happens.
    let plan = plan_loop(&loop_at_g4(serde_json::json!({})), &world, now());
    assert_eq!(plan.status.best_model.as_deref(), Some("c4-g003"));
    // The initial model counts as the parent of generation 1's promotion.
    let mut first = at(
        2,
        Stage::Selfplay,
        Some("c4-g001"),
        serde_json::json!({"autoRollback": {}, "initialModel": "seed"}),
    );
    if let Some(s) = first.status.as_mut() {
        s.history = vec![record(1, "c4-g001", Decision::Promote)];
    }
    let mut w = LoopWorld::default();
    for (m, (elo, low, high)) in [("c4-g001", (0.0, -10.0, 10.0)), ("seed", (100.0, 90.0, 110.0))] {
        w.models.insert(m.into(), Some(elo));
        w.intervals.insert(m.into(), (low, high));
    }
    let plan = plan_loop(&first, &w, now());
    assert_eq!(plan.status.best_model.as_deref(), Some("seed"));
}

#[test]
fn the_upper_end_of_a_difference_combines_both_intervals() {
    let u = crate::reconcile::training_loop::rollback::difference_upper(
        (0.0, (-1.96, 1.96)),
        (0.0, (-1.96, 1.96)),
    );
    assert!((u - 1.96 * 2f64.sqrt()).abs() < 1e-9, "{u}");
    let u =
        crate::reconcile::training_loop::rollback::difference_upper((10.0, (10.0, 10.0)), (0.0, (0.0, 0.0)));
    assert!((u - 10.0).abs() < 1e-9);
}
