//! Clients that must decide whether to trust the API server: a role whose first connection
//! fails trust exits saying what the server presented and what it trusts; a running agent logs
//! and counts every failed retry with the cause; every kubeconfig form of trust and credential
//! (CA data or file, client certificate files, a token file, insecure-skip-tls-verify) works.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::Api;
use ringrift_apiserver::run::{Credential, kubeconfig};
use ringrift_crds::agent::Agent;
use ringrift_e2e::cluster::{Cluster, until};
use ringrift_e2e::process::{ApiServerProcess, Kubeconfig, Scratch};
use ringrift_e2e::run;
use ringrift_tls::pki::Ca;

/// Writes a kubeconfig for `server` with `credential` and the server's CA.
fn kubeconfig_file(dir: &Path, name: &str, server: &ApiServerProcess, credential: Credential<'_>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, kubeconfig(&server.url, Some(&server.ca()), credential)).unwrap();
    path
}

#[test]
fn a_role_that_cannot_trust_the_server_exits_with_the_cause() {
    let dir = Scratch::new("tls-untrusted").unwrap();
    let server = ApiServerProcess::start(&dir.0, &[]).unwrap();
    let other = Ca::generate("other-ca", ringrift_tls::now()).unwrap();
    let admin = Kubeconfig::read(&server.kubeconfig).unwrap().identity.unwrap();
    let wrong_ca = dir.0.join("kubeconfig-wrong-ca");
    std::fs::write(
        &wrong_ca,
        kubeconfig(
            &server.url,
            Some(other.cert_pem()),
            Credential::Certificate(&admin),
        ),
    )
    .unwrap();
    let bad_token = kubeconfig_file(&dir.0, "kubeconfig-bad-token", &server, Credential::Token("nope"));
    for (config, words) in [
        (
            &wrong_ca,
            &[
                "cannot trust the API server",
                "unknown_authority",
                "it presented CN=ringrift-apiserver (issued by CN=ringrift-ca@",
                "trusts the CA CN=other-ca",
            ][..],
        ),
        (&bad_token, &["refused a bearer token", "401"][..]),
    ] {
        let out = run(
            std::process::Command::new(ringrift_e2e::process::ringrift_bin().unwrap())
                .args(["controller", "--admin-listen", "127.0.0.1:0", "--kubeconfig"])
                .arg(config),
        )
        .unwrap();
        assert!(!out.success, "exits non-zero");
        for w in words {
            assert!(out.stderr.contains(w), "{w:?} in:\n{}", out.stderr);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_agent_logs_and_counts_each_failed_retry_with_the_cause() {
    let mut cluster = Cluster::start("tls-retries").await;
    let agent = cluster.agent("a1", &[]);
    let agents: Api<Agent> = Api::all(cluster.client.clone());
    until("a1 registered", Duration::from_secs(30), || async {
        agents.get_opt("a1").await.ok().flatten()
    })
    .await;
    // Another cluster comes up where the API server was: the agent does not trust it.
    cluster.api.restart_with_a_new_ca_on_same_address().unwrap();
    let sample = r#"ringrift_agent_trust_failures_total{peer="apiserver",reason="unknown_authority"}"#;
    until("failed retries counted", Duration::from_secs(30), || async {
        (agent.metric(sample) >= 2.0).then_some(())
    })
    .await;
    let log = agent.role.log();
    let lines = log
        .lines()
        .filter(|l| l.contains("cannot trust the API server") && l.contains("unknown certificate authority"))
        .count();
    assert!(lines >= 2, "logged at every retry, with the cause:\n{log}");
    assert!(log.contains("CN=ringrift-ca"), "the CA it trusts is named: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kubeconfig_form_of_trust_and_credential_works() {
    let dir = Scratch::new("tls-kubeconfig-forms").unwrap();
    let server = ApiServerProcess::start(&dir.0, &["--token", "admin-token-0123"]).unwrap();
    let admin = ringrift_e2e::chart_install::admin_client(&server.kubeconfig).await;
    ringrift_e2e::cluster::install_crds(&admin).await;
    let identity = Kubeconfig::read(&server.kubeconfig).unwrap().identity.unwrap();
    let file = |name: &str, text: &str| {
        let path = dir.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (ca, cert, key) = (
        file("ca.crt", &server.ca()),
        file("admin.crt", &identity.cert),
        file("admin.key", &identity.key),
    );
    let token_file = file("token", "admin-token-0123");
    let server_url = &server.url;
    let forms = [
        (
            "files",
            format!("{{server: {server_url}, certificate-authority: {ca}}}"),
            format!("{{client-certificate: {cert}, client-key: {key}}}"),
        ),
        (
            "token-file",
            format!("{{server: {server_url}, certificate-authority: {ca}}}"),
            format!("{{tokenFile: {token_file}}}"),
        ),
        (
            "insecure-skip-tls-verify",
            format!("{{server: {server_url}, insecure-skip-tls-verify: true}}"),
            "{token: admin-token-0123}".to_owned(),
        ),
    ];
    for (form, cluster, user) in forms {
        let path = file(
            &format!("kubeconfig-{form}"),
            &format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {cluster}\nusers:\n- name: u\n  user: {user}\n\
                 contexts:\n- name: x\n  context: {{cluster: c, user: u}}\ncurrent-context: x\n"
            ),
        );
        let out = run(
            std::process::Command::new(ringrift_e2e::process::ringrift_bin().unwrap())
                .args(["status", "--kubeconfig"])
                .arg(&path),
        )
        .unwrap();
        assert!(out.success, "{form}: {}", out.stderr);
    }
}
