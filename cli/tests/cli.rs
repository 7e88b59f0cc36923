//! The `ringrift` binary as a user runs it.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

fn ringrift(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringrift"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_subcommand_has_help() {
    let built: [&[&str]; 17] = [
        &["up"],
        &["status"],
        &["workload"],
        &["bench", "sync"],
        &["bench", "gossip"],
        &["agent"],
        &["logs"],
        &["bench", "agent-idle"],
        &["bench", "dispatch"],
        &["bench", "failover"],
        &["crds"],
        &["bench"],
        &["apiserver"],
        &["controller"],
        &["sim-agents"],
        &["bench", "apiserver"],
        &["bench", "tls"],
    ];
    for args in built {
        let out = ringrift(&[args, &["--help"]].concat());
        assert!(out.status.success(), "{args:?} --help: {}", text(&out.stderr));
        let help = text(&out.stdout);
        assert!(help.contains("Usage: ringrift"), "{args:?}: {help}");
    }
}

#[test]
fn roles_that_need_the_api_say_which_kubeconfig_they_could_not_read() {
    let data = std::env::temp_dir().join(format!("cli-agent-{}", std::process::id()));
    let data = data.display().to_string();
    for role in [
        &["controller"][..],
        &["sim-agents"],
        &["status"],
        &["agent", "--data-dir", &data],
    ] {
        let out = ringrift(&[role, &["--kubeconfig", "/nonexistent/kubeconfig"]].concat());
        assert_eq!(out.status.code(), Some(1), "{role:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains("failed to read the kubeconfig /nonexistent/kubeconfig"),
            "{role:?}: {err}"
        );
    }
}

#[test]
fn the_agent_refuses_bad_flags_naming_them() {
    let out = ringrift(&["agent", "--simulate-gpus", "lots"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("--simulate-gpus") && err.contains("4xH100-80GB"),
        "{err}"
    );
    let out = ringrift(&[
        "agent",
        "--name",
        "Bad_Name",
        "--kubeconfig",
        "/nonexistent/kubeconfig",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("invalid --name \"Bad_Name\""), "{err}");
}

#[test]
fn version_names_the_git_revision() {
    let out = ringrift(&["--version"]);
    assert!(out.status.success());
    let version = text(&out.stdout);
    let expected_rev = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(|| "unknown".to_owned(), |o| text(&o.stdout).trim().to_owned());
    assert_eq!(
        version.trim(),
        format!("ringrift {} (git {expected_rev})", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn crds_prints_every_crd_as_yaml() {
    let out = ringrift(&["crds"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text(&out.stdout)).unwrap();
    let kinds: Vec<&str> = docs
        .iter()
        .map(|d| d["spec"]["names"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "TrainingLoop",
            "SelfplayJob",
            "TrainingJob",
            "GauntletJob",
            "Model",
            "Task",
            "Agent"
        ]
    );
    assert!(docs.iter().all(|d| d["kind"] == "CustomResourceDefinition"));
}

#[test]
fn crds_output_dir_writes_the_files_and_removes_stale_ones() {
    let dir = std::env::temp_dir().join(format!("ringrift-crds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("gone.ringrift.ai.yaml"), "stale").unwrap();
    std::fs::write(dir.join("keep-me.yaml"), "not generated").unwrap();
    let out = ringrift(&["crds", "--output-dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/ringrift/files/crds");
    for name in names.iter().filter(|n| n.ends_with(".ringrift.ai.yaml")) {
        let written = std::fs::read_to_string(dir.join(name)).unwrap();
        assert_eq!(
            written,
            std::fs::read_to_string(committed.join(name)).unwrap(),
            "{name}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(names.len(), 8, "{names:?}");
    assert!(
        !names.contains(&"gone.ringrift.ai.yaml".to_owned()),
        "stale generated file removed"
    );
    assert!(
        names.contains(&"keep-me.yaml".to_owned()),
        "other files are left alone"
    );
}

#[test]
fn crds_output_dir_that_cannot_be_created_is_a_clear_error() {
    let out = ringrift(&["crds", "--output-dir", "/proc/version/nope"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("ringrift: failed to create /proc/version/nope"),
        "{err}"
    );
}

#[test]
fn unknown_subcommands_and_flags_are_rejected() {
    let out = ringrift(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unrecognized subcommand 'frobnicate'"));
    let out = ringrift(&["crds", "--out"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bench_gossip_reports_propagation_and_deaths_for_each_load() {
    let out = ringrift(&[
        "bench",
        "gossip",
        "--agents",
        "6",
        "--changes",
        "2",
        "--kills",
        "1",
        "--suspect-timeout",
        "1s",
        "--patience",
        "30s",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["bench"], "gossip");
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "idle and saturated");
    for run in runs {
        assert_eq!(run["state_change_to_all"]["reached"], 2, "{run}");
        assert_eq!(run["killed_seen_dead_by_all"]["reached"], 1, "{run}");
        assert_eq!(run["members_left"], 5, "{run}");
        assert!(run["false_deaths"].is_u64(), "{run}");
    }
}

#[test]
fn bench_sync_reports_agent_cp_rsync_and_spread_figures() {
    let out = ringrift(&[
        "bench",
        "sync",
        "--size-mib",
        "8",
        "--spread-mib",
        "4",
        "--spread-agents",
        "2",
        "--rounds",
        "2",
        "--link-mib",
        "8",
        "--patience",
        "120s",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["bench"], "sync");
    for path in [
        &["transfer", "agent_to_agent", "mib_per_s"][..],
        &["transfer", "agent_to_agent_plain_http", "mib_per_s"],
        &["transfer", "tls_vs_plain_http"],
        &["transfer", "cp", "mib_per_s"],
        &["transfer", "rsync_daemon_loopback", "mib_per_s"],
        &["spread", "one_transfer_s"],
        &["spread", "all_agents_s"],
        &["spread_behind_links", "one_transfer_s"],
        &["spread_behind_links", "all_agents_s"],
        &["sha256_one_core_mib_per_s"],
    ] {
        let v = path.iter().fold(&report, |v, k| &v[*k]);
        assert!(v.as_f64().is_some_and(|x| x > 0.0), "{path:?} in {report}");
    }
    assert_eq!(report["spread"]["agents"], 2);
    assert_eq!(report["spread_behind_links"]["link_mib_per_s"], 8);
    for method in [
        "agent_to_agent",
        "agent_to_agent_plain_http",
        "cp",
        "rsync_daemon_loopback",
    ] {
        let samples = report["transfer"][method]["samples_s"].as_array().unwrap();
        assert_eq!(samples.len(), 2, "one sample per round: {report}");
    }
    // 4 MiB behind 8 MiB/s links (a quarter second of credit): 0.25 s at the least.
    assert!(
        report["spread_behind_links"]["one_transfer_s"].as_f64().unwrap() >= 0.24,
        "{report}"
    );
}

#[test]
fn bench_apiserver_runs_over_https_and_over_the_plain_http_baseline() {
    for (extra, transport) in [(&[][..], "https"), (&["--insecure-plain-http"][..], "http")] {
        let out = ringrift(
            &[
                &[
                    "bench",
                    "apiserver",
                    "--objects",
                    "200",
                    "--list-objects",
                    "100",
                    "--writers",
                    "4",
                    "--watchers",
                    "5",
                    "--watch-events",
                    "5",
                ][..],
                extra,
            ]
            .concat(),
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["transport"], transport, "{report}");
        assert!(
            report["durable_writes"]["all_per_second"].as_f64().unwrap() > 0.0,
            "{report}"
        );
        assert_eq!(report["watch"]["missed"], 0, "{report}");
    }
}

/// Runs `ringrift workload` under the contract's variables; returns (status, stdout, stderr).
fn workload(
    role: &str,
    params: &serde_json::Value,
    input: &Path,
    output: &Path,
) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ringrift"))
        .arg("workload")
        .env("RINGRIFT_ROLE", role)
        .env("RINGRIFT_TASK", format!("t-{role}"))
        .env("RINGRIFT_PARAMS", params.to_string())
        .env("RINGRIFT_INPUT_DIR", input)
        .env("RINGRIFT_OUTPUT_DIR", output)
        .output()
        .unwrap();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn the_demo_workload_plays_trains_and_judges_under_the_contract() {
    let dir = std::env::temp_dir().join(format!("cli-workload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (input, games_out, model_out, gauntlet_out) =
        (dir.join("in"), dir.join("sp"), dir.join("tr"), dir.join("ga"));
    std::fs::create_dir_all(&input).unwrap();
    let game = serde_json::json!({"board": "connect4", "players": 2});

    let params = serde_json::json!({"game": game, "games": 6, "simulations": 16, "seed": 3, "job": "sp"});
    let (code, stdout, stderr) = workload("selfplay", &params, &input, &games_out);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains(r#"@ringrift {"done":6,"#), "{stdout}");
    let games = std::fs::read_to_string(games_out.join("games-t-selfplay.jsonl")).unwrap();
    assert_eq!(games.lines().count(), 6);
    // Deterministic given the seed.
    let again = dir.join("sp2");
    assert_eq!(workload("selfplay", &params, &input, &again).0, Some(0));
    assert_eq!(
        std::fs::read_to_string(again.join("games-t-selfplay.jsonl")).unwrap(),
        games
    );

    std::fs::copy(
        games_out.join("games-t-selfplay.jsonl"),
        input.join("games-a.jsonl"),
    )
    .unwrap();
    let params = serde_json::json!({"game": game, "seed": 1, "window": {"games": 4},
        "hyperparameters": {"steps": 30, "batchSize": 16, "extra": {"hidden": "16"}}});
    let (code, stdout, stderr) = workload("training", &params, &input, &model_out);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("from the newest 4 games"), "{stdout}");
    assert!(stdout.contains(r#""unit":"steps""#), "{stdout}");
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model_out.join("result.json")).unwrap()).unwrap();
    assert_eq!(result["windowGames"], 4);
    std::fs::copy(model_out.join("model.json"), input.join("cand")).unwrap();

    let params = serde_json::json!({"game": game, "games": 4, "simulations": 8, "candidate": "cand",
        "opponent": {"name": "random", "details": {"baseline": "random"}}});
    let (code, _, stderr) = workload("gauntlet", &params, &input, &gauntlet_out);
    assert_eq!(code, Some(0), "{stderr}");
    let result: serde_json::Value =
        serde_json::from_slice(&std::fs::read(gauntlet_out.join("result.json")).unwrap()).unwrap();
    let played: u64 = ["wins", "losses", "draws"]
        .iter()
        .map(|k| result[*k].as_u64().unwrap())
        .sum();
    assert_eq!(played, 4, "{result}");

    // Bad input is refused with a message that names it, exit status 2.
    let bad = [
        (
            "selfplay",
            serde_json::json!({"game": {"board": "go"}, "games": 1}),
            "params.game.board",
        ),
        (
            "selfplay",
            serde_json::json!({"games": "many"}),
            "RINGRIFT_PARAMS.games: invalid type: string \"many\", expected u64",
        ),
        (
            "training",
            serde_json::json!({"hyperparameters": {"steps": -3}}),
            "RINGRIFT_PARAMS.hyperparameters.steps: invalid value",
        ),
        (
            "gauntlet",
            serde_json::json!({"games": 1, "candidate": "c",
                "opponent": {"name": "x", "details": {"baseline": "perfect"}}}),
            "RINGRIFT_PARAMS.opponent.details.baseline: unknown variant `perfect`",
        ),
        (
            "gauntlet",
            serde_json::json!({"games": 1, "candidate": "missing"}),
            "input model missing is missing",
        ),
        (
            "gauntlet",
            serde_json::json!({"games": 1, "candidate": "../x"}),
            "not a plain file name",
        ),
    ];
    for (role, params, message) in bad {
        let (code, _, stderr) = workload(role, &params, &input, &dir.join("bad"));
        assert_eq!(code, Some(2), "{params}");
        assert!(stderr.contains(message), "{params}: {stderr}");
    }
    std::fs::write(
        input.join("games-z.jsonl"),
        "{\"moves\": [9], \"visits\": [[0,0,0,0,0,0,0]], \"result\": 0}\n",
    )
    .unwrap();
    let params = serde_json::json!({"window": {"games": 10}, "hyperparameters": {"steps": 1}});
    let (code, _, stderr) = workload("training", &params, &input, &dir.join("bad"));
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("input games-z.jsonl, line 1: move 1 (column 9) is not legal"),
        "{stderr}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
