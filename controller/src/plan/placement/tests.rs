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
        claimant: String::new(),
    }
}

fn outcome<'a>(result: &'a [(String, Outcome)], id: &str) -> &'a Outcome {
    &result.iter().find(|(i, _)| i == id).unwrap().1
}

fn placed_on(o: &Outcome) -> &str {
    match o {
        Outcome::Place { agent, .. } | Outcome::Preempt { agent, .. } | Outcome::HandOver { agent, .. } => {
            agent
        }
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
        claimant: String::new(),
        gpu_fraction: None,
        gpu_memory_mib: 0,
        ends_in_ms: None,
        after: None,
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
        claimant: String::new(),
        gpu_fraction: None,
        gpu_memory_mib: 0,
        ends_in_ms: None,
        after: None,
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
        claimant: String::new(),
        gpu_fraction: None,
        gpu_memory_mib: 0,
        ends_in_ms: None,
        after: None,
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
        claimant: String::new(),
        gpu_fraction: None,
        gpu_memory_mib: 0,
        ends_in_ms: None,
        after: None,
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

fn of(claimant: &str, r: Request) -> Request {
    Request {
        claimant: claimant.into(),
        ..r
    }
}

/// `n` one-GPU requests of `claimant`, ids `<claimant>-<i>`.
fn units(claimant: &str, n: usize, priority: u32, elastic: bool) -> Vec<Request> {
    (0..n)
        .map(|i| of(claimant, req(&format!("{claimant}-{i}"), priority, 1, elastic)))
        .collect()
}

fn placed_of(placed: &Placed, claimant: &str) -> usize {
    placed
        .outcomes
        .iter()
        .filter(|(id, o)| id.starts_with(&format!("{claimant}-")) && !matches!(o, Outcome::Wait { .. }))
        .count()
}

fn terms(weights: &[(&str, f64)]) -> BTreeMap<String, Terms> {
    weights
        .iter()
        .map(|(c, w)| {
            (
                (*c).to_owned(),
                Terms {
                    weight: *w,
                    min_gpus: 0.0,
                },
            )
        })
        .collect()
}

#[test]
fn claimants_take_turns_by_share_not_by_arrival_or_priority() {
    let agents = [h100s("a", 8)];
    // b's work has the higher priority and comes last: across claimants the share decides.
    let mut requests = units("a", 8, 1, true);
    requests.extend(units("b", 8, 9, true));
    let placed = place_shared(&agents, &[], &requests, &BTreeMap::new());
    assert_eq!((placed_of(&placed, "a"), placed_of(&placed, "b")), (4, 4));
    assert!((placed.shares["a"].entitled.gpus - 4.0).abs() < 1e-6);
    assert_eq!(placed.shares["a"].waiting, 4);
    // Weighted 1:3.
    let placed = place_shared(&agents, &[], &requests, &terms(&[("a", 1.0), ("b", 3.0)]));
    assert_eq!((placed_of(&placed, "a"), placed_of(&placed, "b")), (2, 6));
    assert!((placed.shares["b"].used.gpus - 6.0).abs() < 1e-6);
}

#[test]
fn capacity_nobody_else_wants_is_lent() {
    let agents = [h100s("a", 8)];
    let mut requests = units("a", 8, 1, true);
    requests.extend(units("b", 1, 1, true));
    let placed = place_shared(&agents, &[], &requests, &BTreeMap::new());
    assert_eq!((placed_of(&placed, "a"), placed_of(&placed, "b")), (7, 1));
    // b has no work: a takes every GPU, beyond nothing (its demand is the whole fleet).
    let placed = place_shared(&agents, &[], &units("a", 8, 1, true), &BTreeMap::new());
    assert_eq!(placed_of(&placed, "a"), 8);
}

/// Elastic one-GPU tasks `<claimant>-old-<i>` of `claimant` on `agent`'s GPUs `gpus`.
fn held_by(claimant: &str, agent: &str, gpus: std::ops::Range<usize>) -> Vec<Claim> {
    gpus.map(|i| Claim {
        task: format!("{claimant}-old-{i}"),
        agent: agent.into(),
        cpu_millis: 1000,
        memory_mib: 1024,
        gpus: vec![format!("{agent}-gpu{i}")],
        priority: 1,
        elastic: true,
        claimant: claimant.into(),
        gpu_fraction: None,
        gpu_memory_mib: 0,
        ends_in_ms: None,
        after: None,
    })
    .collect()
}

#[track_caller]
fn all_wait(placed: &Placed) {
    assert!(
        placed
            .outcomes
            .iter()
            .all(|(_, o)| matches!(o, Outcome::Wait { .. })),
        "{:?}",
        placed.outcomes
    );
}

#[test]
fn lent_selfplay_is_taken_back_when_its_owner_wants_it_and_then_stays() {
    let agents = [h100s("a", 8)];
    // a holds all 8 GPUs (lent: b had no work); b now wants 4.
    let claims = held_by("a", "a", 0..8);
    let placed = place_shared(&agents, &claims, &units("b", 4, 1, true), &BTreeMap::new());
    let victims: Vec<&String> = placed
        .outcomes
        .iter()
        .filter_map(|(_, o)| match o {
            Outcome::Preempt { victims, .. } => Some(victims),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(victims.len(), 4, "{:?}", placed.outcomes);
    assert!(victims.iter().all(|v| v.starts_with("a-old-")));
    assert!((placed.shares["a"].used.gpus - 4.0).abs() < 1e-6);
    assert!((placed.shares["b"].used.gpus - 4.0).abs() < 1e-6);
    // Then nobody takes anything back: each holds its share, with work waiting on both sides.
    let mut claims = held_by("a", "a", 0..4);
    claims.extend(held_by("b", "a", 4..8));
    let mut requests = units("a", 4, 1, true);
    requests.extend(units("b", 4, 1, true));
    let placed = place_shared(&agents, &claims, &requests, &BTreeMap::new());
    all_wait(&placed);
    assert_eq!((placed.shares["a"].waiting, placed.shares["b"].waiting), (4, 4));
}

#[test]
fn work_that_is_not_lent_is_never_taken() {
    // a holds 2 of 4 GPUs, its share; b holds the other 2 and wants 2 more: b is not owed.
    let agents = [h100s("a", 4)];
    let mut claims = held_by("a", "a", 0..2);
    claims.extend(held_by("b", "a", 2..4));
    let mut requests = units("b", 2, 1, true);
    requests.extend(units("a", 1, 1, true));
    let placed = place_shared(&agents, &claims, &requests, &BTreeMap::new());
    all_wait(&placed);
    // Inside one claimant, priority still preempts its own elastic work.
    let placed = place_shared(
        &agents,
        &claims,
        &[of("b", req("b-train", 9, 1, false))],
        &BTreeMap::new(),
    );
    match outcome(&placed.outcomes, "b-train") {
        Outcome::Preempt { victims, .. } => assert!(victims[0].starts_with("b-old-"), "{victims:?}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_floor_keeps_a_light_claimant_from_starving() {
    let agents = [h100s("a", 8)];
    let mut requests = units("light", 8, 1, true);
    requests.extend(units("heavy", 8, 1, true));
    let mut t = terms(&[("light", 1.0), ("heavy", 1000.0)]);
    let placed = place_shared(&agents, &[], &requests, &t);
    assert_eq!(
        placed_of(&placed, "light"),
        0,
        "1:1000 of 8 GPUs is less than one"
    );
    t.insert(
        "light".into(),
        Terms {
            weight: 1.0,
            min_gpus: 2.0,
        },
    );
    let placed = place_shared(&agents, &[], &requests, &t);
    assert_eq!((placed_of(&placed, "light"), placed_of(&placed, "heavy")), (2, 6));
}

/// The worked example of docs/controller.md ("Sharing the fleet"): 4 agents of 8 GPUs; sq8
/// (weight 1) and hex (weight 2) each want 40 one-GPU units, sq19 (weight 1, minGPUs 4) wants
/// 3. Entitled: sq19 3, sq8 29/3, hex 58/3; placed in whole units: 3, 9 and 20.
#[test]
fn the_worked_example_of_three_loops() {
    let agents: Vec<AgentView> = (0..4).map(|i| h100s(&format!("n{i}"), 8)).collect();
    let mut requests = units("sq8", 40, 100, true);
    requests.extend(units("hex", 40, 100, true));
    requests.extend(units("sq19", 3, 100, true));
    let mut t = terms(&[("sq8", 1.0), ("hex", 2.0)]);
    t.insert(
        "sq19".into(),
        Terms {
            weight: 1.0,
            min_gpus: 4.0,
        },
    );
    let placed = place_shared(&agents, &[], &requests, &t);
    let entitled = |c: &str| placed.shares[c].entitled.gpus;
    assert!((entitled("sq19") - 3.0).abs() < 1e-6);
    assert!((entitled("sq8") - 29.0 / 3.0).abs() < 1e-6, "{}", entitled("sq8"));
    assert!((entitled("hex") - 58.0 / 3.0).abs() < 1e-6, "{}", entitled("hex"));
    assert_eq!(
        (
            placed_of(&placed, "sq19"),
            placed_of(&placed, "sq8"),
            placed_of(&placed, "hex")
        ),
        (3, 9, 20)
    );
    assert_eq!(placed.shares["sq8"].waiting, 31);
}

/// `n` selfplay requests of `fraction` of a GPU (and `memory` MiB of it).
fn fractions(prefix: &str, n: usize, fraction: u16, memory: u64) -> Vec<Request> {
    (0..n)
        .map(|i| {
            let mut r = req(&format!("{prefix}-{i}"), 100, 0, true);
            r.resources.gpu_fraction = ringrift_crds::common::GpuFraction::from_thousandths(fraction);
            r.resources.gpu_memory_mib = memory;
            r
        })
        .collect()
}

fn gpus_of(placed: &[(String, Outcome)]) -> Vec<String> {
    placed
        .iter()
        .filter_map(|(_, o)| match o {
            Outcome::Place { gpus, .. } | Outcome::Preempt { gpus, .. } | Outcome::HandOver { gpus, .. } => {
                Some(gpus.join(","))
            }
            Outcome::Wait { .. } => None,
        })
        .collect()
}

#[test]
fn quarter_gpus_are_packed_four_to_a_device() {
    let agents = [h100s("a", 2)];
    let placed = place(&agents, &[], &fractions("sp", 5, 250, 0));
    assert_eq!(
        gpus_of(&placed),
        ["a-gpu0", "a-gpu0", "a-gpu0", "a-gpu0", "a-gpu1"],
        "the first device fills before the second is touched"
    );
    // With those running, a whole-GPU task finds no whole GPU; a quarter still fits.
    let claims: Vec<Claim> = placed
        .iter()
        .map(|(id, o)| {
            let Outcome::Place { agent, gpus } = o else {
                panic!("{o:?}")
            };
            Claim {
                task: id.clone(),
                agent: agent.clone(),
                cpu_millis: 1000,
                memory_mib: 1024,
                gpus: gpus.clone(),
                priority: 100,
                elastic: true,
                claimant: String::new(),
                gpu_fraction: Some(250),
                gpu_memory_mib: 0,
                ends_in_ms: None,
                after: None,
            }
        })
        .collect();
    let r = place(&agents, &claims, &[req("whole", 100, 1, true)]);
    match outcome(&r, "whole") {
        Outcome::Wait { reason, .. } => assert!(reason.contains("needs 1 free GPUs"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let r = place(&agents, &claims, &fractions("more", 1, 250, 0));
    assert_eq!(gpus_of(&r), ["a-gpu1"]);
    // Three quarters on one device leave no room for a half.
    let r = place(&agents, &claims, &fractions("half", 1, 500, 0));
    assert_eq!(gpus_of(&r), ["a-gpu1"]);
    let mut full = claims.clone();
    full[4].gpu_fraction = Some(750);
    let r = place(&agents, &full, &fractions("half", 1, 500, 0));
    match outcome(&r, "half-0") {
        Outcome::Wait { reason, .. } => {
            assert!(reason.contains("needs 0.500 of a GPU"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn shared_devices_respect_gpu_memory() {
    // 81 559 MiB per H100: two tasks asking 30 000 MiB fit on one, the third goes to the next,
    // whatever their fractions allow.
    let agents = [h100s("a", 2)];
    let placed = place(&agents, &[], &fractions("sp", 3, 100, 30_000));
    assert_eq!(gpus_of(&placed), ["a-gpu0", "a-gpu0", "a-gpu1"]);
}

#[test]
fn fractions_count_as_fractions_in_the_share() {
    let agents = [h100s("a", 1)];
    let mut requests: Vec<Request> = fractions("x", 4, 250, 0)
        .into_iter()
        .map(|r| of("x", r))
        .collect();
    requests.extend(units("y", 1, 100, true));
    let placed = place_shared(&agents, &[], &requests, &BTreeMap::new());
    // One GPU: each is entitled to half. x's quarters count a quarter each, so it takes turns
    // with y at that grain; y's next unit is the whole device, which leaves it the less served
    // to go next only once x has had its half and more: x fills the device, y waits (and may
    // not preempt: with the device it would be as far over its share as x is).
    let (x, y) = (&placed.shares["x"], &placed.shares["y"]);
    assert!((x.entitled.gpus - 0.5).abs() < 1e-6, "{:?}", placed.shares);
    assert!((x.used.gpus - 1.0).abs() < 1e-6, "{:?}", placed.shares);
    assert_eq!((y.used.gpus, y.waiting), (0.0, 1));
}

#[test]
fn work_placed_in_the_same_pass_is_never_a_victim() {
    // Units placed in this pass are no tasks yet: even where eviction is allowed, none of
    // them is offered as a victim (cancelling it would cancel nothing and double-book).
    let agents = [h100s("a", 2)];
    let mut free = free_capacity(&agents, &held_by("b", "a", 0..1));
    let fresh = of("b", req("b-new", 100, 1, true));
    free.get_mut("a")
        .unwrap()
        .take(&fresh, "a", &["a-gpu1".to_owned()]);
    let anything = |_: &Claim, _: &BTreeMap<String, Amount>| true;
    let one = of("c", req("c-1", 100, 1, true));
    let (_, _, victims) = preemption(&agents, &free, &one, &anything).unwrap();
    assert_eq!(victims, ["b-old-0"], "the running task, not the fresh unit");
    let two = of("c", req("c-2", 100, 2, true));
    assert!(
        preemption(&agents, &free, &two, &anything).is_none(),
        "only the running task may go: two GPUs cannot be made free"
    );
}

#[test]
fn plain_priority_ignores_the_share_and_preempts_by_priority_alone() {
    let agents = [h100s("a", 8)];
    let mut requests = units("a", 8, 1, true);
    requests.extend(units("b", 8, 1, true));
    let weights = terms(&[("a", 1.0), ("b", 3.0)]);
    // First come first served: a's units came first and take every GPU, whatever the weights;
    // the standings are still computed (entitled 2 and 6).
    let placed = place_by(&agents, &[], &requests, &weights, Policy::Priority);
    assert_eq!((placed_of(&placed, "a"), placed_of(&placed, "b")), (8, 0));
    assert!((placed.shares["a"].entitled.gpus - 2.0).abs() < 1e-6);
    assert!((placed.shares["a"].used.gpus - 8.0).abs() < 1e-6);
    assert_eq!(placed.shares["b"].waiting, 8);
    // The share policy on the same input: 2 and 6.
    let placed = place_by(&agents, &[], &requests, &weights, Policy::Share);
    assert_eq!((placed_of(&placed, "a"), placed_of(&placed, "b")), (2, 6));
    // Higher priority goes first, whoever asks.
    let mut requests = units("a", 8, 1, true);
    requests.extend(units("b", 8, 5, true));
    let placed = place_by(&agents, &[], &requests, &weights, Policy::Priority);
    assert_eq!((placed_of(&placed, "a"), placed_of(&placed, "b")), (0, 8));
    // Lent selfplay is not taken back for its owner (elastic never preempts) ...
    let claims = held_by("a", "a", 0..8);
    let placed = place_by(
        &agents,
        &claims,
        &units("b", 4, 1, true),
        &weights,
        Policy::Priority,
    );
    all_wait(&placed);
    // ... but work that is not elastic preempts elastic work of lower priority, of anyone.
    let placed = place_by(
        &agents,
        &claims,
        &units("b", 1, 5, false),
        &weights,
        Policy::Priority,
    );
    assert!(
        matches!(&placed.outcomes[0].1, Outcome::Preempt { victims, .. } if victims.len() == 1),
        "{:?}",
        placed.outcomes
    );
    assert!((placed.shares["a"].used.gpus - 7.0).abs() < 1e-6);
    assert_eq!("priority".parse::<Policy>(), Ok(Policy::Priority));
    assert!(
        "fair"
            .parse::<Policy>()
            .unwrap_err()
            .contains("share or priority")
    );
}

fn waits_because(placed: &Placed, id: &str) -> String {
    match outcome(&placed.outcomes, id) {
        Outcome::Wait { reason, .. } => reason.clone(),
        other => panic!("{id} does not wait: {other:?}"),
    }
}

fn on(placed: &Placed, claimant: &str, agent: &str) -> usize {
    placed
        .outcomes
        .iter()
        .filter(|(id, o)| {
            id.starts_with(&format!("{claimant}-"))
                && matches!(o, Outcome::Place { agent: a, .. } if a == agent)
        })
        .count()
}

#[test]
fn an_owed_gang_holds_the_agent_closest_to_fitting_until_it_drains() {
    // t wants 8 GPUs on one agent and is owed them; s holds 12 GPUs, its entitlement, spread
    // over a (5 of 8) and b (7 of 8), so nothing of s is lent and t cannot preempt. small has 4
    // free GPUs but could never hold 8.
    let agents = [h100s("a", 8), h100s("b", 8), h100s("small", 4)];
    let mut claims = held_by("s", "a", 0..5);
    claims.extend(held_by("s", "b", 0..7));
    let mut requests = vec![of("t", req("t-train", 1, 8, false))];
    requests.extend(units("s", 6, 1, true));
    let placed = place_shared(&agents, &claims, &requests, &BTreeMap::new());
    assert_eq!(
        placed.reservations,
        BTreeMap::from([("t-train".to_owned(), "a".to_owned())])
    );
    let why = waits_because(&placed, "t-train");
    assert!(
        why.contains("agent a is held for it (3 of 8 GPUs free there)"),
        "{why}"
    );
    // s's elastic work spreads everywhere but a, though a has the most free GPUs.
    assert_eq!(on(&placed, "s", "a"), 0, "{:?}", placed.outcomes);
    assert_eq!(placed_of(&placed, "s"), 5, "4 on small and 1 on b");
    // The next pass, after s's tasks on a ended: t fits there and lets it go.
    let claims = held_by("s", "b", 0..7);
    let placed = place_shared(&agents, &claims, &requests, &BTreeMap::new());
    assert_eq!(placed_on(outcome(&placed.outcomes, "t-train")), "a");
    assert!(placed.reservations.is_empty());
}

#[test]
fn a_gang_that_fits_is_not_crowded_out_by_elastic_work_taking_its_turn_first() {
    // Two empty agents; s's eight units take their turns before t's gang (equal standing, and
    // s sorts first). Spread one by one they would leave 4 free GPUs on each agent and t none.
    let agents = [h100s("a", 8), h100s("b", 8)];
    let mut requests = units("s", 8, 1, true);
    requests.push(of("t", req("t-train", 1, 8, false)));
    let placed = place_shared(&agents, &[], &requests, &BTreeMap::new());
    let t = placed_on(outcome(&placed.outcomes, "t-train")).to_owned();
    assert_eq!(on(&placed, "s", &t), 0, "{:?}", placed.outcomes);
    assert_eq!(placed_of(&placed, "s"), 8);
    assert!(placed.reservations.is_empty(), "placed: nothing held");
}

#[test]
fn a_gang_beyond_its_share_or_under_plain_priority_holds_nothing() {
    let agents = [h100s("a", 8), h100s("b", 8)];
    // t holds its whole entitlement (8 of 16) already: another 8 would be lent, not owed.
    let mut claims = held_by("t", "b", 0..8);
    claims.extend(held_by("s", "a", 0..5));
    let mut requests = vec![of("t", req("t-train", 1, 8, false))];
    requests.extend(units("s", 3, 1, true));
    let placed = place_shared(&agents, &claims, &requests, &BTreeMap::new());
    assert!(placed.reservations.is_empty());
    assert!(!waits_because(&placed, "t-train").contains("held"));
    assert_eq!(on(&placed, "s", "a"), 3, "s fills a");
    // Plain priority never holds an agent (a gang there preempts lower priorities instead; here
    // there are none, so it just waits, and s's work takes a's free GPUs).
    let mut claims = held_by("s", "a", 0..5);
    claims.extend(held_by("s", "b", 0..7));
    let placed = place_by(&agents, &claims, &requests, &BTreeMap::new(), Policy::Priority);
    assert!(placed.reservations.is_empty());
    assert!(!waits_because(&placed, "t-train").contains("held"));
    assert!(on(&placed, "s", "a") >= 2, "{:?}", placed.outcomes);
}

/// `claims` with `task`'s expected end in `ms`.
fn ending(mut claims: Vec<Claim>, task: &str, ms: u64) -> Vec<Claim> {
    for c in claims.iter_mut().filter(|c| c.task == task) {
        c.ends_in_ms = Some(ms);
    }
    claims
}

#[track_caller]
fn follows(o: &Outcome) -> (&str, &str) {
    match o {
        Outcome::HandOver { agent, gpus, after } => {
            assert_eq!(gpus.len(), 1, "{o:?}");
            (agent, after)
        }
        other => panic!("not a hand-over: {other:?}"),
    }
}

#[test]
fn a_unit_that_fits_nowhere_follows_the_task_that_ends_soonest() {
    let agents = [h100s("a", 2), h100s("b", 1)];
    let mut claims = held_by("x", "a", 0..2);
    claims.extend(held_by("z", "b", 0..1));
    let claims = ending(ending(claims, "x-old-0", 1500), "x-old-1", 300);
    let result = place(
        &agents,
        &claims,
        &[
            req("r1", 100, 1, true),
            req("r2", 100, 1, true),
            req("r3", 100, 1, true),
        ],
    );
    assert_eq!(follows(outcome(&result, "r1")), ("a", "x-old-1"));
    let Outcome::HandOver { gpus, .. } = outcome(&result, "r1") else {
        unreachable!()
    };
    assert_eq!(gpus, &["a-gpu1"], "the GPUs of the task it follows");
    assert_eq!(
        follows(outcome(&result, "r2")),
        ("a", "x-old-0"),
        "each task takes one successor"
    );
    // b's task is not about to end (no expected end): r3 waits.
    assert!(
        matches!(outcome(&result, "r3"), Outcome::Wait { .. }),
        "{result:?}"
    );
}

#[test]
fn a_free_gpu_comes_before_a_hand_over() {
    let agents = [h100s("a", 2)];
    let claims = ending(held_by("x", "a", 0..1), "x-old-0", 0);
    let result = place(
        &agents,
        &claims,
        &[req("r1", 100, 1, true), req("r2", 100, 1, true)],
    );
    assert_eq!(placed_on(outcome(&result, "r1")), "a");
    assert!(matches!(outcome(&result, "r1"), Outcome::Place { .. }));
    assert_eq!(follows(outcome(&result, "r2")), ("a", "x-old-0"));
}

#[test]
fn a_hand_over_needs_the_same_whole_gpus_and_no_more_than_the_task_followed_holds() {
    let agents = [h100s("a", 2)];
    let claims = ending(held_by("x", "a", 0..2), "x-old-0", 100);
    // Two GPUs, a fraction, more CPU or more memory than the task followed holds, or another
    // GPU product: no hand-over (they wait, or preempt what is lent).
    let two = req("two", 100, 2, true);
    let mut quarter = req("quarter", 100, 0, true);
    quarter.resources.gpu_fraction = Some(GpuFraction::from_thousandths(250).expect("a valid fraction"));
    let mut cpu = req("cpu", 100, 1, true);
    cpu.resources.cpu_millis = 1001;
    let mut memory = req("memory", 100, 1, true);
    memory.resources.memory_mib = 1025;
    let mut selector = req("selector", 100, 1, true);
    selector.resources.gpu_selector = Some(GpuSelector {
        product: Some("*A100*".into()),
        min_memory_mib: None,
    });
    for r in [two, quarter, cpu, memory, selector] {
        let result = place(&agents, &claims, std::slice::from_ref(&r));
        assert!(
            !matches!(outcome(&result, &r.id), Outcome::HandOver { .. }),
            "{}: {result:?}",
            r.id
        );
    }
    // An agent under DiskPressure takes no successor that writes outputs; one to avoid is
    // taken only when no other has a task ending.
    let mut pressed = agents.clone();
    pressed[0].disk_pressure = true;
    let result = place(&pressed, &claims, &[req("r", 100, 1, true)]);
    assert!(
        !matches!(outcome(&result, "r"), Outcome::HandOver { .. }),
        "{result:?}"
    );
    let two_agents = [h100s("a", 1), h100s("b", 1)];
    let mut claims = ending(held_by("x", "a", 0..1), "x-old-0", 0);
    claims.extend(ending(held_by("y", "b", 0..1), "y-old-0", 900));
    let mut avoiding = req("r", 100, 1, true);
    avoiding.avoid = vec!["a".into()];
    let result = place(&two_agents, &claims, std::slice::from_ref(&avoiding));
    assert_eq!(follows(outcome(&result, "r")), ("b", "y-old-0"));
}

#[test]
fn a_successor_holds_nothing_more_and_neither_it_nor_the_task_it_follows_is_preempted() {
    let mut agents = [h100s("a", 2)];
    agents[0].cpu_millis = 2000;
    let mut claims = ending(held_by("x", "a", 0..1), "x-old-0", 100);
    claims.push(Claim {
        task: "y-next".into(),
        claimant: "y".into(),
        after: Some("x-old-0".into()),
        ..claims[0].clone()
    });
    claims[1].ends_in_ms = None;
    // The successor fits in what its predecessor holds: a's other GPU and 1,000m of CPU are
    // free, and the task followed takes no second successor.
    let result = place(
        &agents,
        &claims,
        &[req("free", 100, 1, true), req("again", 100, 1, true)],
    );
    assert!(
        matches!(outcome(&result, "free"), Outcome::Place { .. }),
        "{result:?}"
    );
    assert!(
        matches!(outcome(&result, "again"), Outcome::Wait { .. }),
        "{result:?}"
    );
    // Training may preempt selfplay of lower priority, but not a hand-over's two ends.
    let result = place(&agents[..], &claims, &[req("train", 200, 2, false)]);
    assert!(
        matches!(outcome(&result, "train"), Outcome::Wait { .. }),
        "{result:?}"
    );
    // In the share, the successor counts for the GPU, the task it follows no more.
    let placed = place_shared(&agents, &claims, &[], &BTreeMap::new());
    assert!(
        placed.shares.get("x").is_none_or(|s| s.used.gpus == 0.0),
        "{:?}",
        placed.shares
    );
    assert!(
        (placed.shares["y"].used.gpus - 1.0).abs() < 1e-9,
        "{:?}",
        placed.shares
    );
    // Once the task followed has ended, the successor is an ordinary task.
    let alone = vec![claims[1].clone()];
    let result = place(
        &agents,
        &alone,
        &[req("r1", 100, 1, true), req("r2", 100, 1, true)],
    );
    assert!(
        matches!(outcome(&result, "r1"), Outcome::Place { .. }),
        "{result:?}"
    );
    assert!(
        matches!(outcome(&result, "r2"), Outcome::Wait { .. }),
        "the successor holds a GPU now"
    );
}

#[test]
fn an_owed_claimant_takes_a_gpu_about_to_free_before_preempting() {
    // x holds all 4 GPUs, lent; y is owed 2. One of x's tasks ends in 200 ms: y's first unit
    // follows it, the second preempts.
    let agents = [h100s("a", 4)];
    let claims = ending(held_by("x", "a", 0..4), "x-old-2", 200);
    let mut requests = units("x", 4, 1, true);
    requests.extend(units("y", 2, 1, true));
    let placed = place_shared(&agents, &claims, &requests, &BTreeMap::new());
    let y: Vec<&Outcome> = placed
        .outcomes
        .iter()
        .filter(|(id, _)| id.starts_with("y-"))
        .map(|(_, o)| o)
        .collect();
    assert_eq!(follows(y[0]), ("a", "x-old-2"), "{y:?}");
    assert!(matches!(y[1], Outcome::Preempt { .. }), "{y:?}");
    // Both placed: y uses 2, x 2 (one preempted, one handed over).
    assert!(
        (placed.shares["y"].used.gpus - 2.0).abs() < 1e-9,
        "{:?}",
        placed.shares
    );
    assert!(
        (placed.shares["x"].used.gpus - 2.0).abs() < 1e-9,
        "{:?}",
        placed.shares
    );
}

#[test]
fn the_standings_after_a_hand_over_are_those_of_the_fleet_after_it() {
    // x's only task is about to end and x waits for nothing more; y's unit follows it. After the
    // pass x holds nothing and wants nothing: it is entitled to nothing, and y to its GPU.
    let agents = [h100s("a", 1)];
    let claims = ending(held_by("x", "a", 0..1), "x-old-0", 500);
    let placed = place_shared(&agents, &claims, &units("y", 1, 1, true), &BTreeMap::new());
    assert_eq!(follows(&placed.outcomes[0].1), ("a", "x-old-0"));
    let (x, y) = (&placed.shares["x"], &placed.shares["y"]);
    assert!(x.used.gpus.abs() < 1e-9 && x.entitled.gpus.abs() < 1e-9, "{x:?}");
    assert!(
        (y.used.gpus - 1.0).abs() < 1e-9 && (y.entitled.gpus - 1.0).abs() < 1e-9,
        "{y:?}"
    );
}
