use super::*;
use serde::de::DeserializeOwned;

fn obj<K: DeserializeOwned>(v: Value) -> K {
    serde_json::from_value(v).unwrap()
}

const T0: &str = "2026-12-06T10:00:00Z";

fn now() -> Timestamp {
    "2026-12-06T10:01:40Z".parse().unwrap() // T0 + 100 s
}

fn game() -> Value {
    json!({"board": "connect4", "players": 2})
}

fn model(
    name: &str,
    parent: Option<&str>,
    generation: u32,
    elo: Option<(f64, f64, f64)>,
    best: bool,
) -> Model {
    let mut status = json!({"promoted": best});
    if let Some((elo, low, high)) = elo {
        status = json!({"promoted": best, "elo": elo, "eloLow": low, "eloHigh": high, "gamesRated": 100});
    }
    obj(json!({
        "apiVersion": "ringrift.ai/v1alpha1", "kind": "Model",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"game": game(), "digest": "sha256:00", "sizeBytes": 1, "generation": generation,
                 "parent": parent, "trainingLoop": "lp"},
        "status": status,
    }))
}

fn record(generation: u32, candidate: &str, decision: &str) -> Value {
    json!({"generation": generation, "candidate": candidate, "decision": decision, "elo": 1.0, "games": 10,
           "jobs": {}})
}

fn loop_obj(stage: &str, history: &[Value]) -> TrainingLoop {
    obj(json!({
        "apiVersion": "ringrift.ai/v1alpha1", "kind": "TrainingLoop",
        "metadata": {"name": "lp", "namespace": "ns"},
        "spec": {"game": game(), "maxGenerations": 5, "share": {"weight": 2},
                 "selfplay": {"games": 10, "gamesPerTask": 5}, "training": {"window": {"games": 10}, "hyperparameters": {"steps": 10}},
                 "gauntlet": {"opponents": [{"name": "random", "baseline": "random"}],
                              "promotion": {"winRate": {"minWinRate": 0.5}}}},
        "status": {"phase": "Running", "stage": stage, "generation": 4, "bestModel": "m3",
                   "activeJobs": {"training": "lp-g004-train"}, "history": history,
                   "conditions": [{"type": "Degraded", "status": "False", "reason": "Fine", "message": "",
                                   "lastTransitionTime": T0}]},
    }))
}

fn task_obj(name: &str, agent: &str, phase: &str, gpus: &[&str], fraction: Option<f64>) -> Task {
    let mut resources = json!({});
    if let Some(f) = fraction {
        resources = json!({"gpuFraction": f});
    }
    obj(json!({
        "apiVersion": "ringrift.ai/v1alpha1", "kind": "Task",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"role": "selfplay", "job": {"kind": "SelfplayJob", "name": "lp-g004-selfplay"},
                 "workUnit": name, "attempt": 0, "agent": agent, "template": {"command": ["x"]},
                 "resources": resources, "gpus": gpus},
        "status": {"phase": phase, "startTime": T0},
    }))
}

fn agent(name: &str, ready: bool) -> Agent {
    obj(json!({
        "apiVersion": "ringrift.ai/v1alpha1", "kind": "Agent",
        "metadata": {"name": name, "labels": {"ringrift.ai/zone": "z1"}},
        "spec": {},
        "status": {
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "reason": "R",
                            "message": "", "lastTransitionTime": T0}],
            "capacity": {"cpuMillis": 8000, "memoryMiB": 1024, "diskMiB": 2048, "gpuCount": 2,
                         "gpus": [{"index": 0, "uuid": "GPU-a", "product": "H100", "memoryMiB": 80000, "health": "Healthy"},
                                  {"index": 1, "uuid": "GPU-b", "product": "H100", "memoryMiB": 80000, "health": "Unhealthy"}]},
        },
    }))
}

fn snapshot() -> Snapshot {
    let history = [
        record(1, "m1", "Promote"),
        record(2, "m2", "Reject"),
        record(3, "m3", "Promote"),
    ];
    Snapshot {
        loops: vec![loop_obj("Training", &history)],
        training: vec![obj(json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": "lp-g004-train", "namespace": "ns"},
            "spec": {"game": game(), "datasets": [], "window": {"games": 10}, "output": {"model": "m4"}},
            "status": {"step": 500, "totalSteps": 2000, "startTime": T0},
        }))],
        models: vec![
            model(
                "m1",
                Some("initial-from-elsewhere"),
                1,
                Some((100.0, 50.0, 150.0)),
                false,
            ),
            model("m2", Some("m1"), 2, Some((90.0, 40.0, 140.0)), false),
            model("m3", Some("m1"), 3, Some((200.0, 150.0, 250.0)), true),
            model("m4", Some("m3"), 4, None, false),
        ],
        tasks: vec![
            task_obj("t-run", "a1", "Running", &["GPU-a", "GPU-b"], None),
            task_obj("t-frac", "a1", "Running", &["GPU-a"], Some(0.25)),
            task_obj("t-done", "a1", "Succeeded", &["GPU-a"], None),
            task_obj("t-pend", "a2", "Pending", &[], None),
        ],
        agents: vec![agent("a2", false), agent("a1", true)],
        ..Snapshot::default()
    }
}

#[test]
fn the_fleet_page_has_each_loops_progress_rate_eta_best_and_share() {
    let o = overview(&snapshot(), now());
    let l = &o["loops"][0];
    assert_eq!(l["name"], "lp");
    assert_eq!(l["stage"], "Training");
    assert_eq!(l["weight"], 2);
    let p = &l["progress"];
    assert_eq!((p["done"].as_u64(), p["total"].as_u64()), (Some(500), Some(2000)));
    assert_eq!(p["unit"], "steps");
    assert!((p["ratePerSecond"].as_f64().unwrap() - 5.0).abs() < 1e-9, "{p}");
    assert_eq!(p["etaSeconds"].as_f64(), Some(300.0));
    assert_eq!(l["best"]["elo"].as_f64(), Some(200.0));
    assert_eq!(l["best"]["low"].as_f64(), Some(150.0));
    assert!(
        l["degraded"].is_null(),
        "a False Degraded condition is no message"
    );
    assert_eq!(o["agents"], json!({"total": 2, "ready": 1}));
    // Two whole GPUs and a quarter of one are held; only the ready agent's GPUs count.
    assert_eq!(o["gpus"], json!({"total": 2, "busy": 2.25}));
    assert_eq!(o["tasks"], json!({"Pending": 1, "Running": 2, "Succeeded": 1}));
}

#[test]
fn the_loop_page_has_each_generations_candidate_and_the_best_after_it() {
    let d = training_loop(&snapshot(), "ns", "lp", now()).unwrap();
    let points = d["points"].as_array().unwrap();
    assert_eq!(points.len(), 3);
    let best: Vec<&str> = points.iter().map(|p| p["best"].as_str().unwrap()).collect();
    assert_eq!(
        best,
        ["m1", "m1", "m3"],
        "a rejected candidate leaves the best as it was"
    );
    assert_eq!(points[1]["candidateRating"]["elo"].as_f64(), Some(90.0));
    assert_eq!(points[1]["bestRating"]["high"].as_f64(), Some(150.0));
    assert_eq!(points[1]["decision"], "Reject");
    assert!(training_loop(&snapshot(), "other", "lp", now()).is_none());
    assert!(training_loop(&snapshot(), "ns", "nope", now()).is_none());
}

#[test]
fn a_candidate_without_a_model_still_shows_the_elo_its_history_recorded() {
    let mut s = snapshot();
    s.models.clear();
    let d = training_loop(&s, "ns", "lp", now()).unwrap();
    assert_eq!(d["points"][0]["candidateRating"], json!({"elo": 1.0}));
    assert!(d["points"][0]["bestRating"].is_null());
}

#[test]
fn the_lineage_is_a_tree_under_parents_and_survives_cycles() {
    let mut s = snapshot();
    s.models.push(model("x", Some("y"), 1, None, false));
    s.models.push(model("y", Some("x"), 1, None, false));
    s.models.push(model("self", Some("self"), 1, None, false));
    let l = lineage(&s, Some("ns"));
    let roots = l["roots"].as_array().unwrap();
    let names: Vec<&str> = roots.iter().map(|r| r["name"].as_str().unwrap()).collect();
    // m1's parent is no Model here: a root. x and y only reach each other: shown once.
    assert_eq!(names, ["m1", "self", "x"]);
    assert_eq!(roots[2]["children"][0]["name"], "y");
    let m1 = &roots[0];
    let kids: Vec<&str> = m1["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(kids, ["m2", "m3"]);
    assert_eq!(m1["children"][1]["children"][0]["name"], "m4");
    assert_eq!(m1["promoted"], true);
    assert_eq!(m1["children"][0]["promoted"], false, "m2 was rejected");
    assert_eq!(m1["children"][1]["best"], true);
    assert_eq!(lineage(&s, Some("elsewhere"))["roots"], json!([]));
}

#[test]
fn the_matchup_matrix_has_both_sides_of_every_pair() {
    let gauntlet = |name: &str, candidate: &str, results: Value| -> GauntletJob {
        obj(json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "GauntletJob",
            "metadata": {"name": name, "namespace": "ns"},
            "spec": {"game": game(), "candidate": {"model": candidate},
                     "opponents": [{"name": "best", "model": "m1"}, {"name": "random", "baseline": "random"}],
                     "promotion": {"winRate": {"minWinRate": 0.5}}},
            "status": {"results": results},
        }))
    };
    let s = Snapshot {
        gauntlets: vec![
            gauntlet(
                "g2",
                "m2",
                json!([{"name": "best", "wins": 6, "losses": 3, "draws": 1},
                                        {"name": "random", "wins": 10, "losses": 0, "draws": 0}]),
            ),
            gauntlet(
                "g3",
                "m3",
                json!([{"name": "best", "wins": 2, "losses": 1, "draws": 0}]),
            ),
            gauntlet(
                "g2b",
                "m2",
                json!([{"name": "best", "wins": 1, "losses": 0, "draws": 0}]),
            ),
        ],
        ..Snapshot::default()
    };
    let m = matchups(&s);
    let pool = &m["pools"][0];
    assert_eq!(pool["board"], "connect4");
    assert_eq!(pool["players"], json!(["baseline:random", "m1", "m2", "m3"]));
    let cell = |a: &str, b: &str| {
        pool["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["row"] == a && r["column"] == b)
            .map(|r| {
                (
                    r["wins"].as_u64().unwrap(),
                    r["losses"].as_u64().unwrap(),
                    r["draws"].as_u64().unwrap(),
                )
            })
    };
    assert_eq!(
        cell("m2", "m1"),
        Some((7, 3, 1)),
        "two gauntlets of m2 against m1 add up"
    );
    assert_eq!(cell("m1", "m2"), Some((3, 7, 1)));
    assert_eq!(cell("baseline:random", "m2"), Some((0, 10, 0)));
    assert_eq!(cell("m2", "m3"), None, "never played");
    assert_eq!(matchups(&Snapshot::default())["pools"], json!([]));
}

#[test]
fn agents_show_live_gpu_figures_by_uuid_and_their_unfinished_tasks() {
    let live = BTreeMap::from([
        (
            "a1".to_owned(),
            json!({"gpus": [{"uuid": "GPU-b", "utilizationPct": 87, "memoryUsedMib": 1234}]}),
        ),
        ("a2".to_owned(), json!({"error": "agent a2 did not answer"})),
    ]);
    let a = agents(&snapshot(), &live, now());
    let items = a["items"].as_array().unwrap();
    assert_eq!(items[0]["name"], "a1", "sorted by name");
    assert_eq!(items[0]["ready"], true);
    assert_eq!(items[0]["zone"], "z1");
    assert_eq!(items[0]["capacity"]["cpuMillis"], 8000);
    let gpus = items[0]["gpus"].as_array().unwrap();
    assert!(gpus[0]["utilizationPct"].is_null(), "no sample for GPU-a");
    assert_eq!(gpus[1]["utilizationPct"], 87);
    assert_eq!(gpus[1]["memoryUsedMib"], 1234);
    assert_eq!(gpus[1]["health"], "Unhealthy");
    let tasks: Vec<&str> = items[0]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tasks, ["t-run", "t-frac"], "a finished task is not running on it");
    assert_eq!(items[0]["tasks"][0]["runningSeconds"], 100.0);
    assert_eq!(items[1]["ready"], false);
    assert_eq!(items[1]["live"]["error"], "agent a2 did not answer");
    assert_eq!(items[1]["tasks"][0]["name"], "t-pend");
}

#[test]
fn a_task_and_a_jobs_tasks_are_found_by_namespace_and_name() {
    let s = snapshot();
    let t = task(&s, "ns", "t-run", now()).unwrap();
    assert_eq!(t["line"]["agent"], "a1");
    assert_eq!(t["spec"]["workUnit"], "t-run");
    assert!(task(&s, "ns", "nope", now()).is_none());
    assert!(task(&s, "other", "t-run", now()).is_none());
    let items = job_tasks(&s, "ns", "lp-g004-selfplay", now());
    assert_eq!(items["items"].as_array().unwrap().len(), 4);
    assert_eq!(job_tasks(&s, "ns", "other", now())["items"], json!([]));
}
