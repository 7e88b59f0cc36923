//! Placement decisions, case by case.

use ringrift_crds::common::GpuSelector;

use super::*;

fn gpu(uuid: &str, product: &str, memory_mib: u64) -> GpuView {
    GpuView {
        uuid: uuid.into(),
        product: product.into(),
        memory_mib,
        healthy: true,
    }
}

fn agent(name: &str, gpus: Vec<GpuView>) -> AgentView {
    AgentView {
        name: name.into(),
        ready: true,
        unschedulable: false,
        disk_pressure: false,
        cpu_millis: 16_000,
        memory_mib: 65_536,
        gpus,
    }
}

fn h100s(name: &str, n: usize) -> AgentView {
    agent(
        name,
        (0..n)
            .map(|i| gpu(&format!("{name}-gpu{i}"), "NVIDIA H100 80GB HBM3", 81_559))
            .collect(),
    )
}

fn req(id: &str, priority: u32, gpus: u32, elastic: bool) -> Request {
    Request {
        id: id.into(),
        priority,
        resources: TaskResources {
            gpus,
            cpu_millis: 1000,
            memory_mib: 1024,
            ..TaskResources::default()
        },
        elastic,
        avoid: Vec::new(),
        writes_outputs: true,
        input_bytes: BTreeMap::new(),
    }
}

fn outcome<'a>(result: &'a [(String, Outcome)], id: &str) -> &'a Outcome {
    &result.iter().find(|(i, _)| i == id).unwrap().1
}

fn placed_on(o: &Outcome) -> &str {
    match o {
        Outcome::Place { agent, .. } | Outcome::Preempt { agent, .. } => agent,
        Outcome::Wait { reason, .. } => panic!("waits: {reason}"),
    }
}

#[test]
fn globs() {
    assert!(glob_match("*H100*", "NVIDIA H100 80GB HBM3"));
    assert!(glob_match("*h100*", "NVIDIA H100 80GB HBM3"), "case-insensitive");
    assert!(glob_match("NVIDIA A?00*", "NVIDIA A100-SXM4-40GB"));
    assert!(!glob_match("*A100*", "NVIDIA H100 80GB HBM3"));
    assert!(glob_match("*", ""));
}

#[test]
fn gpus_are_assigned_without_sharing() {
    let agents = [h100s("a", 2)];
    let result = place(
        &agents,
        &[],
        &[
            req("x", 100, 1, false),
            req("y", 100, 1, false),
            req("z", 100, 1, false),
        ],
    );
    let Outcome::Place { gpus: gx, .. } = outcome(&result, "x") else {
        panic!()
    };
    let Outcome::Place { gpus: gy, .. } = outcome(&result, "y") else {
        panic!()
    };
    assert_ne!(gx, gy);
    assert!(matches!(outcome(&result, "z"), Outcome::Wait { position: 1, .. }));
}

#[test]
fn live_claims_and_cpu_only_work() {
    let agents = [h100s("a", 1)];
    let claims = [Claim {
        task: "t".into(),
        agent: "a".into(),
        cpu_millis: 15_500,
        memory_mib: 1024,
        gpus: vec!["a-gpu0".into()],
        priority: 100,
        elastic: true,
    }];
    let result = place(
        &agents,
        &claims,
        &[req("gpu", 100, 1, true), req("cpu", 100, 0, true)],
    );
    let Outcome::Wait { reason, .. } = outcome(&result, "gpu") else {
        panic!()
    };
    assert_eq!(reason, "needs 1 free GPUs; the most on any agent is 0");
    let Outcome::Wait { reason, .. } = outcome(&result, "cpu") else {
        panic!()
    };
    assert_eq!(reason, "needs 1000m CPU; the most free on any agent is 500m");
}

#[test]
fn selectors_health_readiness_and_cordons() {
    let mut sick = h100s("sick", 1);
    sick.gpus[0].healthy = false;
    let mut down = h100s("down", 4);
    down.ready = false;
    let mut cordoned = h100s("cordoned", 4);
    cordoned.unschedulable = true;
    let agents = [
        agent("a100", vec![gpu("a", "NVIDIA A100-SXM4-40GB", 40_960)]),
        sick,
        down,
        cordoned,
        h100s("ok", 1),
    ];
    let mut wants_h100 = req("h", 200, 1, false);
    wants_h100.resources.gpu_selector = Some(GpuSelector {
        product: Some("*H100*".into()),
        min_memory_mib: None,
    });
    let mut wants_80g = req("m", 200, 1, false);
    wants_80g.resources.gpu_selector = Some(GpuSelector {
        product: None,
        min_memory_mib: Some(80_000),
    });
    let result = place(&agents, &[], &[wants_h100, wants_80g]);
    assert_eq!(placed_on(outcome(&result, "h")), "ok");
    let Outcome::Wait { reason, .. } = outcome(&result, "m") else {
        panic!("only one healthy, ready, schedulable 80 GB GPU")
    };
    assert!(reason.starts_with("needs 1 free GPUs"), "{reason}");
    let none = place(&[], &[], &[req("x", 1, 0, true)]);
    assert!(matches!(outcome(&none, "x"), Outcome::Wait { reason, .. } if reason == "no agents registered"));
}

#[test]
fn higher_priority_goes_first() {
    let agents = [h100s("a", 1)];
    let result = place(
        &agents,
        &[],
        &[req("selfplay", 100, 1, true), req("gauntlet", 300, 1, false)],
    );
    assert_eq!(placed_on(outcome(&result, "gauntlet")), "a");
    assert!(matches!(outcome(&result, "selfplay"), Outcome::Wait { .. }));
}

#[test]
fn selfplay_spreads_and_training_packs() {
    let agents = [h100s("a", 4), h100s("b", 4)];
    let spread = place(&agents, &[], &[req("s1", 100, 1, true), req("s2", 100, 1, true)]);
    assert_ne!(
        placed_on(outcome(&spread, "s1")),
        placed_on(outcome(&spread, "s2")),
        "elastic work spreads"
    );
    let claims = [Claim {
        task: "t".into(),
        agent: "b".into(),
        cpu_millis: 0,
        memory_mib: 0,
        gpus: vec!["b-gpu0".into()],
        priority: 100,
        elastic: true,
    }];
    let packed = place(&agents, &claims, &[req("train", 200, 2, false)]);
    assert_eq!(
        placed_on(outcome(&packed, "train")),
        "b",
        "tightest fit keeps a's 4 GPUs whole"
    );
}

#[test]
fn training_preempts_the_fewest_selfplay_tasks() {
    let agents = [h100s("a", 2), h100s("b", 2)];
    let claim = |task: &str, agent: &str, gpu: &str, priority: u32, elastic: bool| Claim {
        task: task.into(),
        agent: agent.into(),
        cpu_millis: 1000,
        memory_mib: 1024,
        gpus: vec![gpu.into()],
        priority,
        elastic,
    };
    let claims = [
        claim("sp-1", "a", "a-gpu0", 100, true),
        claim("sp-2", "a", "a-gpu1", 100, true),
        claim("sp-3", "b", "b-gpu0", 100, true),
        claim("train-old", "b", "b-gpu1", 200, false),
    ];
    let result = place(
        &agents,
        &claims,
        &[req("train", 200, 1, false), req("more-selfplay", 100, 1, true)],
    );
    let Outcome::Preempt { agent, victims, gpus } = outcome(&result, "train") else {
        panic!("{result:?}")
    };
    assert_eq!(victims.len(), 1);
    assert_eq!(gpus.len(), 1);
    assert!(agent == "a" || agent == "b");
    assert!(
        !victims.contains(&"train-old".to_owned()),
        "never preempts non-elastic work"
    );
    assert!(
        matches!(outcome(&result, "more-selfplay"), Outcome::Wait { .. }),
        "selfplay never preempts"
    );
    let peer = place(&agents, &claims, &[req("gauntlet", 100, 1, false)]);
    assert!(
        matches!(outcome(&peer, "gauntlet"), Outcome::Wait { .. }),
        "no preemption of equal priority"
    );
}

#[test]
fn a_retry_avoids_the_faulty_agent_when_it_can() {
    let agents = [h100s("a", 1), h100s("b", 1)];
    let mut retry = req("retry", 200, 1, false);
    retry.avoid = vec!["a".into()];
    assert_eq!(
        placed_on(outcome(
            &place(&agents, &[], std::slice::from_ref(&retry)),
            "retry"
        )),
        "b"
    );
    let only_a = [h100s("a", 1)];
    assert_eq!(
        placed_on(outcome(&place(&only_a, &[], &[retry]), "retry")),
        "a",
        "soft: better there than nowhere"
    );
}

#[test]
fn waiting_work_gets_queue_positions_in_priority_order() {
    let agents = [h100s("a", 0)];
    let result = place(
        &agents,
        &[],
        &[
            req("low", 100, 1, true),
            req("high", 300, 1, false),
            req("mid", 200, 1, false),
        ],
    );
    let position = |id| match outcome(&result, id) {
        Outcome::Wait { position, .. } => *position,
        other => panic!("{other:?}"),
    };
    assert_eq!((position("high"), position("mid"), position("low")), (1, 2, 3));
}

#[test]
fn work_that_writes_outputs_stays_off_agents_under_disk_pressure() {
    let mut full = h100s("full", 8);
    full.disk_pressure = true;
    let agents = vec![full, h100s("roomy", 1)];
    // Training (tightest fit) would take the 1-GPU agent anyway; selfplay (spread) would take
    // the emptier one, but its disk is full.
    let r = place(&agents, &[], &[req("sp", 1, 1, true)]);
    assert_eq!(placed_on(outcome(&r, "sp")), "roomy");
    // A second GPU request fits only on the full agent: it waits, saying why.
    let r = place(&agents, &[], &[req("a", 1, 1, true), req("b", 1, 1, true)]);
    assert_eq!(placed_on(outcome(&r, "a")), "roomy");
    match outcome(&r, "b") {
        Outcome::Wait { reason, .. } => assert!(reason.contains("needs 1 free GPUs"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // Work that writes nothing (a gauntlet) may still go there.
    let mut gauntlet = req("g", 3, 8, false);
    gauntlet.writes_outputs = false;
    let r = place(&agents, &[], &[gauntlet]);
    assert_eq!(placed_on(outcome(&r, "g")), "full");
    // Nor is it a preemption target for work that writes outputs.
    let claims = vec![Claim {
        task: "sp-old".into(),
        agent: "full".into(),
        cpu_millis: 1000,
        memory_mib: 1024,
        gpus: (0..8).map(|i| format!("full-gpu{i}")).collect(),
        priority: 1,
        elastic: true,
    }];
    let r = place(&agents, &claims, &[req("train", 2, 8, false)]);
    match outcome(&r, "train") {
        Outcome::Wait { reason, .. } => assert!(reason.contains("needs 8 free GPUs"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // When every agent is under pressure the reason says so.
    let mut only = h100s("only", 2);
    only.disk_pressure = true;
    let r = place(&[only], &[], &[req("x", 1, 1, true)]);
    match outcome(&r, "x") {
        Outcome::Wait { reason, .. } => {
            assert!(
                reason.contains("DiskPressure") && reason.contains("only"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn training_goes_where_its_inputs_are_and_selfplay_still_spreads() {
    let agents = vec![h100s("a", 1), h100s("b", 2), h100s("c", 2)];
    let mut train = req("train", 2, 1, false);
    train.input_bytes = BTreeMap::from([("c".to_owned(), 5_000_000_000), ("b".to_owned(), 10)]);
    let r = place(&agents, &[], &[train.clone()]);
    assert_eq!(
        placed_on(outcome(&r, "train")),
        "c",
        "most input bytes wins over the tightest fit (a)"
    );
    // Without inputs held anywhere: the tightest fit, as before.
    train.input_bytes.clear();
    let r = place(&agents, &[], &[train]);
    assert_eq!(placed_on(outcome(&r, "train")), "a");
    // Selfplay spreads first; among equally loaded agents, where its model is.
    let mut sp = req("sp", 1, 1, true);
    sp.input_bytes = BTreeMap::from([("b".to_owned(), 100)]);
    let r = place(&agents, &[], &[sp.clone()]);
    assert_eq!(placed_on(outcome(&r, "sp")), "b");
    sp.input_bytes = BTreeMap::from([("a".to_owned(), 100)]);
    let r = place(&agents, &[], &[sp]);
    assert_ne!(placed_on(outcome(&r, "sp")), "a", "load comes first for selfplay");
}
