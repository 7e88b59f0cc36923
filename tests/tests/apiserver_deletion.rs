//! Deletion with the real kubectl, as the API Concepts document's garbage collection section
//! describes it: deleting a CRD removes its kind and objects, owner references cascade in the
//! background (also to a dependent created after its owner was gone), foreground deletion
//! waits for blocking dependents, and orphaning keeps them.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use ringrift_e2e::kubectl::{kubectl, ok, with_crds};
use ringrift_e2e::process::ApiServerProcess;
use ringrift_e2e::repo_root;

/// The example SelfplayJob this file's tests own tasks by.
const JOB: &str = "connect4-selfplay-demo";

/// Applies the example SelfplayJob [`JOB`]; its uid.
fn apply_job(server: &ApiServerProcess) -> String {
    let file = repo_root().join("examples/selfplay-job.yaml");
    ok(server, &["apply", "-f", file.to_str().unwrap()]);
    ok(server, &["get", "sp", JOB, "-o", "jsonpath={.metadata.uid}"])
}

/// Applies a Task `name` whose controller is [`JOB`] (uid `uid`), blocking the job's foreground
/// deletion when `blocks`.
fn apply_owned_task(dir: &Path, server: &ApiServerProcess, uid: &str, name: &str, blocks: bool) {
    let task = serde_json::json!({
        "apiVersion": "ringrift.ai/v1alpha1", "kind": "Task",
        "metadata": {"name": name, "ownerReferences": [{
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "SelfplayJob", "name": JOB, "uid": uid,
            "controller": true, "blockOwnerDeletion": blocks}]},
        "spec": {"role": "selfplay", "job": {"kind": "SelfplayJob", "name": JOB}, "workUnit": name, "attempt": 0}
    });
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, task.to_string()).unwrap();
    ok(server, &["apply", "-f", file.to_str().unwrap()]);
}

#[test]
fn deleting_a_crd_removes_its_kind_and_objects() {
    let (_dir, server) = with_crds("crd-delete");
    ok(
        &server,
        &[
            "apply",
            "-f",
            repo_root().join("examples/gauntlet-sprt.yaml").to_str().unwrap(),
        ],
    );
    ok(&server, &["delete", "crd", "gauntletjobs.ringrift.ai"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = kubectl(&server, &["get", "gj"]);
        // Either kubectl's discovery no longer lists the kind, or the server refuses it.
        let gone = out
            .stderr
            .contains("the server doesn't have a resource type \"gj\"")
            || out
                .stderr
                .contains("the server could not find the requested resource");
        if !out.success && gone {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "gj still served:\n{}{}",
            out.stdout,
            out.stderr
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Re-creating the CRD does not resurrect the old objects.
    ok(
        &server,
        &[
            "apply",
            "-f",
            repo_root()
                .join("charts/ringrift/files/crds/gauntletjobs.ringrift.ai.yaml")
                .to_str()
                .unwrap(),
        ],
    );
    ok(
        &server,
        &[
            "wait",
            "--for=condition=Established",
            "crd/gauntletjobs.ringrift.ai",
            "--timeout=30s",
        ],
    );
    assert_eq!(ok(&server, &["get", "gj", "-o", "name"]).trim(), "");
}

/// Deleting the owner deletes its dependents, and only those whose references still name it:
/// a Task released by a patch stays, also when the server was restarted in between (the
/// server's index of owners is rebuilt from its database).
#[test]
fn owner_references_cascade_deletes() {
    let (dir, mut server) = with_crds("gc");
    let uid = apply_job(&server);
    apply_owned_task(&dir.0, &server, &uid, "connect4-selfplay-demo-0000", false);
    apply_owned_task(&dir.0, &server, &uid, "connect4-selfplay-demo-0001", false);
    apply_owned_task(&dir.0, &server, &uid, "released-0000", false);
    ok(
        &server,
        &[
            "patch",
            "rtask",
            "released-0000",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/ownerReferences"}]"#,
        ],
    );
    server.restart_on_same_address().unwrap();
    // API Concepts, garbage collection: deleting the owner deletes its dependents.
    ok(&server, &["delete", "sp", JOB, "--cascade=background"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let names = ok(&server, &["get", "rtask", "-o", "name"]);
        if names.trim() == "task.ringrift.ai/released-0000" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the owned tasks were not collected, or the released one was: {names}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// As upstream's garbage collector: a dependent created after its owner was deleted (a
/// controller acting on a stale view) is collected too; one whose owner exists stays.
#[test]
fn a_dependent_created_after_its_owner_is_gone_is_collected() {
    let (dir, server) = with_crds("gc-late");
    let uid = apply_job(&server);
    ok(&server, &["delete", "sp", JOB, "--cascade=background"]);
    apply_owned_task(&dir.0, &server, &uid, "late-0000", false);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !ok(&server, &["get", "rtask", "-o", "name"]).trim().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the task created for a deleted owner was not collected"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A new owner of the same name is another object: a task naming the old uid still goes,
    // one naming the new uid stays.
    let fresh = apply_job(&server);
    apply_owned_task(&dir.0, &server, &uid, "late-0001", false);
    apply_owned_task(&dir.0, &server, &fresh, "kept-0000", false);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let names = ok(&server, &["get", "rtask", "-o", "name"]);
        if !names.contains("late-0001") {
            assert!(names.contains("kept-0000"), "{names}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{names}");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(ok(&server, &["get", "rtask", "-o", "name"]).contains("kept-0000"));
}

#[test]
fn foreground_deletion_waits_for_dependents_and_orphan_keeps_them() {
    let (dir, server) = with_crds("propagation");
    let uid = apply_job(&server);
    apply_owned_task(&dir.0, &server, &uid, "fg-task", true);
    // API Concepts, garbage collection, foreground: the owner is deleted after its dependents;
    // `kubectl delete --wait` returns once the owner is gone.
    ok(
        &server,
        &["delete", "sp", JOB, "--cascade=foreground", "--timeout=30s"],
    );
    assert_eq!(
        ok(&server, &["get", "rtask", "-o", "name"]).trim(),
        "",
        "the dependent went first"
    );
    assert_eq!(ok(&server, &["get", "sp", "-o", "name"]).trim(), "");

    // Orphan: the owner goes, the dependent stays with the owner reference removed.
    let uid = apply_job(&server);
    apply_owned_task(&dir.0, &server, &uid, "orphan-task", true);
    ok(
        &server,
        &["delete", "sp", JOB, "--cascade=orphan", "--timeout=30s"],
    );
    assert_eq!(ok(&server, &["get", "sp", "-o", "name"]).trim(), "");
    let refs = ok(
        &server,
        &[
            "get",
            "rtask",
            "orphan-task",
            "-o",
            "jsonpath={.metadata.ownerReferences}",
        ],
    );
    assert_eq!(refs.trim(), "", "the orphan no longer names its deleted owner");
}
