//! The real kubectl against a test API server, as a user runs it: with the server's kubeconfig
//! (its CA and the administrator's certificate) and a discovery cache per server.

// Test harness: a failed unwrap is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use crate::process::{ApiServerProcess, Scratch};
use crate::{Output, repo_root, run, tool};

/// Runs kubectl against `server`: success, stdout and stderr.
pub fn kubectl(server: &ApiServerProcess, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(tool("kubectl").unwrap());
    // A discovery cache per test: nothing written to ~/.kube, nothing stale between servers.
    let cache = server.kubeconfig.with_file_name("kube-cache");
    command
        .env("KUBECONFIG", &server.kubeconfig)
        .env("KUBECACHEDIR", cache)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .args(args);
    run(&mut command).unwrap()
}

/// Runs kubectl against `server` and returns its stdout.
pub fn ok(server: &ApiServerProcess, args: &[&str]) -> String {
    let out = kubectl(server, args);
    assert!(
        out.success,
        "kubectl {args:?} failed:\n{}{}",
        out.stdout, out.stderr
    );
    out.stdout
}

/// A server for `test` with the chart's CRDs applied by kubectl and established.
pub fn with_crds(test: &str) -> (Scratch, ApiServerProcess) {
    let dir = Scratch::new(test).unwrap();
    let server = ApiServerProcess::start(&dir.0, &[]).unwrap();
    let crds = repo_root().join("charts/ringrift/files/crds");
    ok(&server, &["apply", "-f", &crds.to_string_lossy()]);
    // CRD guide: a CRD is usable once its Established condition is True.
    ok(
        &server,
        &[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=30s",
        ],
    );
    (dir, server)
}
