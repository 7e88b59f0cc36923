//! The pinned helm against the embedded API server, as an operator runs it: install the chart,
//! upgrade it (a strategic merge patch of each built-in object: the containers keep every field
//! the change leaves alone), roll back, uninstall; the Secret the chart generates once (helm's
//! `lookup`) keeps its values across upgrades.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ringrift_e2e::kubectl::{kubectl, ok};
use ringrift_e2e::process::{ApiServerProcess, Scratch};
use ringrift_e2e::{Output, repo_root, run, tool};
use serde_json::Value;

const RELEASE: &str = "rr";

fn helm(server: &ApiServerProcess, args: &[&str]) -> Output {
    let home = server.kubeconfig.with_file_name("helm-home");
    let mut command = std::process::Command::new(tool("helm").unwrap());
    command
        .env("KUBECONFIG", &server.kubeconfig)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .args(args);
    run(&mut command).unwrap()
}

fn helm_ok(server: &ApiServerProcess, args: &[&str]) -> String {
    let out = helm(server, args);
    assert!(out.success, "helm {args:?} failed:\n{}{}", out.stdout, out.stderr);
    out.stdout
}

fn controller(server: &ApiServerProcess) -> Value {
    let text = ok(
        server,
        &[
            "get",
            "deployment",
            "rr-ringrift-controller",
            "-n",
            "default",
            "-o",
            "json",
        ],
    );
    serde_json::from_str(&text).unwrap()
}

/// The data of the Secret the chart generates once.
fn generated_secret(server: &ApiServerProcess) -> Value {
    let text = ok(
        server,
        &[
            "get",
            "secret",
            "rr-ringrift-agent",
            "-n",
            "default",
            "-o",
            "json",
        ],
    );
    serde_json::from_str::<Value>(&text).unwrap()["data"].clone()
}

/// Upgrades with a new image tag and log level: helm sends a three-way strategic merge patch
/// naming only what changed in the container (and `$setElementOrder`).
fn upgrade_keeps_what_it_does_not_change(
    server: &ApiServerProcess,
    chart: &str,
    container: &Value,
    secret: &Value,
) {
    helm_ok(
        server,
        &[
            "upgrade",
            RELEASE,
            chart,
            "-n",
            "default",
            "--set",
            "image.tag=v9",
            "--set",
            "logging.level=debug",
        ],
    );
    let upgraded = controller(server);
    let after = &upgraded["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(after["image"], "ghcr.io/ringrift/ringrift:v9");
    assert!(
        after["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--log-level=debug"),
        "{after}"
    );
    for field in [
        "ports",
        "env",
        "volumeMounts",
        "resources",
        "livenessProbe",
        "securityContext",
    ] {
        assert_eq!(after[field], container[field], "{field} survives the upgrade");
    }
    assert!(
        !upgraded.to_string().contains("$setElementOrder"),
        "no directive is stored"
    );
    assert_eq!(upgraded["metadata"]["generation"], 2);
    assert_eq!(
        &generated_secret(server),
        secret,
        "the generated Secret keeps its values (lookup)"
    );
}

#[test]
fn helm_installs_upgrades_rolls_back_and_uninstalls_the_chart() {
    let dir = Scratch::new("helm").unwrap();
    let server = ApiServerProcess::start(&dir.0, &[]).unwrap();
    let chart = repo_root().join("charts/ringrift");
    let chart = chart.to_str().unwrap();

    helm_ok(&server, &["install", RELEASE, chart, "-n", "default"]);
    let container = controller(&server)["spec"]["template"]["spec"]["containers"][0].clone();
    assert!(
        container["ports"].is_array() && container["env"].is_array(),
        "{container}"
    );
    let secret = generated_secret(&server);
    assert!(secret.as_object().is_some_and(|d| !d.is_empty()), "{secret}");

    upgrade_keeps_what_it_does_not_change(&server, chart, &container, &secret);

    // Roll back to the first release: the container is as installed.
    helm_ok(&server, &["rollback", RELEASE, "1", "-n", "default"]);
    assert_eq!(
        controller(&server)["spec"]["template"]["spec"]["containers"][0],
        container
    );
    let history = helm_ok(&server, &["history", RELEASE, "-n", "default"]);
    assert_eq!(
        history.lines().count(),
        4,
        "three revisions and a header:\n{history}"
    );

    helm_ok(&server, &["uninstall", RELEASE, "-n", "default"]);
    let gone = kubectl(
        &server,
        &["get", "deployment", "rr-ringrift-controller", "-n", "default"],
    );
    assert!(
        !gone.success && gone.stderr.contains("NotFound"),
        "{}",
        gone.stderr
    );
    let releases = ok(
        &server,
        &[
            "get",
            "secrets",
            "-n",
            "default",
            "-l",
            "owner=helm",
            "-o",
            "name",
        ],
    );
    assert!(
        releases.trim().is_empty(),
        "helm's release records are deleted: {releases}"
    );
}

#[test]
fn a_strategic_merge_patch_of_a_custom_resource_is_refused_as_upstream() {
    let (_dir, server) = ringrift_e2e::kubectl::with_crds("helm-smp-cr");
    ok(
        &server,
        &[
            "apply",
            "-f",
            repo_root().join("examples/selfplay-job.yaml").to_str().unwrap(),
        ],
    );
    let out = kubectl(
        &server,
        &[
            "patch",
            "selfplayjob",
            "connect4-selfplay-demo",
            "--type=strategic",
            "-p",
            r#"{"spec":{"games":5}}"#,
        ],
    );
    assert!(!out.success);
    assert!(
        out.stderr.contains("UnsupportedMediaType") || out.stderr.contains("unknown format"),
        "{}",
        out.stderr
    );
    // A built-in kind takes it.
    ok(&server, &["create", "configmap", "c", "--from-literal=a=1"]);
    ok(
        &server,
        &["patch", "configmap", "c", "-p", r#"{"data":{"b":"2"}}"#],
    );
    let data = ok(&server, &["get", "configmap", "c", "-o", "jsonpath={.data}"]);
    assert_eq!(data, r#"{"a":"1","b":"2"}"#);
}
