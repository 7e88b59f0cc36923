//! The embedded API server driven by the real kubectl, as a user would: apply the CRDs and the
//! examples, see them in `kubectl get`, be refused with the offending field, patch, label,
//! watch, and find everything again after a crash. (Deletion and garbage collection:
//! `apiserver_deletion.rs`; credentials: `apiserver_tls.rs`.)
//!
//! Each test names the upstream rule it checks (Kubernetes "API Concepts" and "API
//! Conventions" documents, and the CustomResourceDefinition task guide).

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ringrift_e2e::kubectl::{kubectl, ok, with_crds};
use ringrift_e2e::process::{ApiServerProcess, Scratch};
use ringrift_e2e::{mismatches, repo_root, tool, yaml_documents, yaml_files};

#[test]
fn crds_and_examples_apply_and_list_under_the_ringrift_category() {
    let (_dir, server) = with_crds("examples");
    let examples = repo_root().join("examples");
    ok(&server, &["apply", "-f", examples.to_str().unwrap()]);
    // Re-applying is a no-op (no-op writes keep the resourceVersion).
    let again = ok(&server, &["apply", "-f", examples.to_str().unwrap()]);
    assert!(again.lines().all(|l| l.ends_with(" unchanged")), "{again}");
    let names = ok(&server, &["get", "ringrift", "-o", "name"]);
    for expected in [
        "trainingloop.ringrift.ai/connect4",
        "trainingloop.ringrift.ai/connect4-continuous",
        "selfplayjob.ringrift.ai/connect4-selfplay-demo",
        "trainingjob.ringrift.ai/connect4-train-gen4",
        "gauntletjob.ringrift.ai/connect4-gauntlet-gen4",
    ] {
        assert!(names.lines().any(|l| l == expected), "{expected} in:\n{names}");
    }
    // Printer columns come through server-side Table output, for a list and for one object;
    // short names resolve.
    for args in [&["get", "sp"][..], &["get", "sp", "connect4-selfplay-demo"]] {
        let table = ok(&server, args);
        let header = table.lines().next().unwrap();
        for column in ["NAME", "PHASE", "GAMES", "GAMES/S", "ETA", "AGE"] {
            assert!(
                header.split_whitespace().any(|c| c == column),
                "{column} in {header} ({args:?})"
            );
        }
    }
    // Defaults from the schema are applied on create.
    let spec = ok(
        &server,
        &[
            "get",
            "sp",
            "connect4-selfplay-demo",
            "-o",
            "jsonpath={.spec.template}|{.spec.game.players}",
        ],
    );
    assert_eq!(spec, "{}|2");
}

#[test]
fn every_invalid_sample_is_refused_naming_the_field() {
    let (dir, server) = with_crds("invalid");
    for file in yaml_files(&repo_root().join("tests/fixtures/invalid")).unwrap() {
        let text = std::fs::read_to_string(&file).unwrap();
        let header = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
                .unwrap()
                .to_owned()
        };
        let (path, message) = (header("expect"), header("message"));
        let docs = yaml_documents(&text).unwrap();
        // An update sample: create the old object first, then apply the new one over it.
        if let [old, _] = docs.as_slice() {
            let old_file = dir.0.join("old.json");
            std::fs::write(&old_file, serde_json::to_string(old).unwrap()).unwrap();
            ok(&server, &["apply", "-f", old_file.to_str().unwrap()]);
        }
        let new_file = dir.0.join("new.json");
        std::fs::write(&new_file, serde_json::to_string(docs.last().unwrap()).unwrap()).unwrap();
        let out = kubectl(&server, &["apply", "-f", new_file.to_str().unwrap()]);
        let name = file.file_name().unwrap().to_string_lossy();
        assert!(!out.success, "{name} was accepted:\n{}", out.stdout);
        let unknown = message == "unknown field";
        let shown = if unknown {
            format!("unknown field \"{path}\"")
        } else {
            format!("{path}: ")
        };
        assert!(
            out.stderr.contains(&shown),
            "{name}: expected {shown:?} in:\n{}",
            out.stderr
        );
        assert!(
            out.stderr.contains(&message),
            "{name}: expected {message:?} in:\n{}",
            out.stderr
        );
        if let [old, _] = docs.as_slice() {
            // Nothing changed: the stored object is still the old one.
            let kind = old["kind"].as_str().unwrap().to_lowercase();
            let stored = ok(
                &server,
                &[
                    "get",
                    &kind,
                    old["metadata"]["name"].as_str().unwrap(),
                    "-o",
                    "json",
                ],
            );
            let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
            let changed = mismatches(&old["spec"], &stored["spec"], "spec");
            assert!(changed.is_empty(), "{name}: a refused update changed {changed:?}");
            ok(
                &server,
                &["delete", &kind, old["metadata"]["name"].as_str().unwrap()],
            );
        }
    }
}

/// A server with the CRDs and the example SelfplayJob, applied server-side.
fn with_example_job(test: &str) -> (Scratch, ApiServerProcess) {
    let (dir, server) = with_crds(test);
    let job = repo_root().join("examples/selfplay-job.yaml");
    ok(&server, &["apply", "--server-side", "-f", job.to_str().unwrap()]);
    (dir, server)
}

/// A field of the example SelfplayJob, by JSONPath.
fn example_job_field(server: &ApiServerProcess, path: &str) -> String {
    ok(
        server,
        &[
            "get",
            "sp",
            "connect4-selfplay-demo",
            "-o",
            &format!("jsonpath={path}"),
        ],
    )
}

#[test]
fn patch_label_and_server_side_apply() {
    let (_dir, server) = with_example_job("verbs");
    let get = |path: &str| example_job_field(&server, path);
    assert_eq!(get("{.metadata.generation}"), "1");

    // API Conventions: metadata.generation increases on spec changes only.
    ok(&server, &["label", "sp", "connect4-selfplay-demo", "team=search"]);
    assert_eq!(get("{.metadata.generation}"), "1");
    assert_eq!(
        ok(
            &server,
            &["get", "sp", "-l", "team in (search,eval)", "-o", "name"]
        )
        .trim(),
        "selfplayjob.ringrift.ai/connect4-selfplay-demo"
    );
    assert_eq!(
        ok(&server, &["get", "sp", "-l", "team!=search", "-o", "name"]).trim(),
        ""
    );
    ok(
        &server,
        &[
            "patch",
            "sp",
            "connect4-selfplay-demo",
            "--type=merge",
            "-p",
            r#"{"spec":{"games":3000}}"#,
        ],
    );
    assert_eq!(get("{.spec.games} {.metadata.generation}"), "3000 2");

    // API Concepts, JSON patch: a failed `test` operation fails the whole patch.
    let failed = kubectl(
        &server,
        &[
            "patch",
            "sp",
            "connect4-selfplay-demo",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/games","value":5},{"op":"test","path":"/spec/games","value":1}]"#,
        ],
    );
    assert!(
        !failed.success && failed.stderr.contains("test failed"),
        "{}",
        failed.stderr
    );
    assert_eq!(get("{.spec.games}"), "3000");
    ok(
        &server,
        &[
            "patch",
            "sp",
            "connect4-selfplay-demo",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/spec/games","value":3000},{"op":"replace","path":"/spec/games","value":4000}]"#,
        ],
    );
    assert_eq!(get("{.spec.games}"), "4000");
    // kubectl patch defaults to a strategic merge patch, which custom resources do not take
    // (no patch strategies in a CRD schema): 415 naming the types they do take, as upstream.
    let strategic = kubectl(
        &server,
        &[
            "patch",
            "sp",
            "connect4-selfplay-demo",
            "-p",
            r#"{"spec":{"simulations":200}}"#,
        ],
    );
    assert!(
        !strategic.success && strategic.stderr.contains("application/merge-patch+json"),
        "{}",
        strategic.stderr
    );
    assert_eq!(get("{.spec.games}"), "4000");
}

#[test]
fn status_goes_only_through_the_status_subresource() {
    let (_dir, server) = with_example_job("status");
    let get = |path: &str| example_job_field(&server, path);
    assert_eq!(get("{.metadata.generation}"), "1");
    // CRD guide, status subresource: the main endpoint ignores status; /status takes only status.
    ok(
        &server,
        &[
            "patch",
            "sp",
            "connect4-selfplay-demo",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Failed"}}"#,
        ],
    );
    assert_eq!(get("{.status.phase}"), "");
    ok(
        &server,
        &[
            "patch",
            "sp",
            "connect4-selfplay-demo",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running","progress":"100/4000"},"spec":{"games":1}}"#,
        ],
    );
    assert_eq!(
        get("{.status.phase} {.status.progress} {.spec.games} {.metadata.generation}"),
        "Running 100/4000 2000 1",
        "the status write touched neither spec nor generation"
    );
    let table = ok(&server, &["get", "sp"]);
    assert!(table.contains("Running") && table.contains("100/4000"), "{table}");
}

#[test]
fn get_watch_sees_changes_as_they_happen() {
    let (_dir, server) = with_crds("watch");
    let job = repo_root().join("examples/selfplay-job.yaml");
    ok(&server, &["apply", "-f", job.to_str().unwrap()]);
    let mut watcher = Command::new(tool("kubectl").unwrap())
        .env("KUBECONFIG", &server.kubeconfig)
        .env("KUBECACHEDIR", server.kubeconfig.with_file_name("kube-cache"))
        .args([
            "get",
            "sp",
            "--watch",
            "--output-watch-events",
            "-o",
            "custom-columns=EVENT:.type,NAME:.object.metadata.name,GAMES:.object.spec.games",
            "--request-timeout=60s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = watcher.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let expect = |wanted: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.join(" ") == wanted {
                return;
            }
            seen.push(line);
        }
        panic!("watch did not show {wanted:?}; saw {seen:?}");
    };
    expect("ADDED connect4-selfplay-demo 2000");
    ok(
        &server,
        &[
            "patch",
            "sp",
            "connect4-selfplay-demo",
            "--type=merge",
            "-p",
            r#"{"spec":{"games":2500}}"#,
        ],
    );
    expect("MODIFIED connect4-selfplay-demo 2500");
    ok(&server, &["delete", "sp", "connect4-selfplay-demo"]);
    expect("DELETED connect4-selfplay-demo 2500");
    let _ = watcher.kill();
    let _ = watcher.wait();
}

#[test]
fn acknowledged_objects_survive_sigkill_and_restart() {
    let (_dir, mut server) = with_crds("restart");
    let examples = repo_root().join("examples");
    ok(&server, &["apply", "-f", examples.to_str().unwrap()]);
    let before = ok(
        &server,
        &[
            "get",
            "ringrift",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}@{.metadata.resourceVersion} {end}",
        ],
    );
    server.kill();
    server.restart().unwrap();
    // The CRDs are served again without being re-applied, and every object is as it was.
    let after = ok(
        &server,
        &[
            "get",
            "ringrift",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}@{.metadata.resourceVersion} {end}",
        ],
    );
    assert_eq!(before, after);
    let files = std::fs::read_dir(&examples).unwrap().count();
    assert_eq!(
        before.split_whitespace().count(),
        files,
        "one object per example: {before}"
    );
    // New writes continue the revision sequence.
    ok(&server, &["label", "loop", "connect4", "after=restart"]);
    let rv: u64 = ok(
        &server,
        &[
            "get",
            "loop",
            "connect4",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ],
    )
    .parse()
    .unwrap();
    let max_before = before
        .split_whitespace()
        .filter_map(|e| e.split('@').nth(1)?.parse::<u64>().ok())
        .max()
        .unwrap();
    assert!(rv > max_before, "{rv} > {max_before}");
}

#[test]
fn bad_requests_get_the_right_status_and_change_nothing() {
    let (_dir, server) = with_crds("bad-input");
    let json = [("Content-Type", "application/json")];
    let path = "/apis/ringrift.ai/v1alpha1/namespaces/default/selfplayjobs";
    let (code, body) = server.http("POST", path, &json, b"{not json").unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("\"reason\":\"BadRequest\""), "{body}");
    let (code, _) = server
        .http("POST", path, &[("Content-Type", "text/plain")], b"x")
        .unwrap();
    assert_eq!(code, 415);
    let huge = vec![b' '; 4 * 1024 * 1024];
    let (code, _) = server.http("POST", path, &json, &huge).unwrap();
    assert_eq!(code, 413);
    let (code, _) = server
        .http(
            "GET",
            "/apis/ringrift.ai/v1alpha1/namespaces/default/nonsense",
            &[],
            b"",
        )
        .unwrap();
    assert_eq!(code, 404);
    let (code, body) = server
        .http("GET", &format!("{path}?labelSelector=a%20in%20b"), &[], b"")
        .unwrap();
    assert_eq!(code, 400, "{body}");
    let bad_name =
        br#"{"apiVersion":"ringrift.ai/v1alpha1","kind":"SelfplayJob","metadata":{"name":"Bad_Name"},
        "spec":{"game":{"board":"connect4"},"games":1,"output":{"dataset":"d"}}}"#;
    let (code, body) = server.http("POST", path, &json, bad_name).unwrap();
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("metadata.name"), "{body}");
    let wrong_kind = br#"{"apiVersion":"ringrift.ai/v1alpha1","kind":"TrainingJob","metadata":{"name":"x"}}"#;
    let (code, _) = server.http("POST", path, &json, wrong_kind).unwrap();
    assert_eq!(code, 400);
    assert_eq!(
        ok(&server, &["get", "sp", "-o", "name"]).trim(),
        "",
        "nothing was stored"
    );
    let (code, _) = server.http("GET", "/healthz", &[], b"").unwrap();
    assert_eq!(code, 200, "still serving");
}
