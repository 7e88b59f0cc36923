//! TLS and authentication of the embedded API server with the clients users run: kubectl
//! authenticated by a token over TLS and by client certificates (CN = user, O = group), bad
//! certificates refused 401 with the reason, plain HTTP refused, the CA kept across restarts and
//! the serving certificate renewed while serving, one's own certificates and client CAs, the
//! node restriction on agents' credentials, and requests without credentials refused 401.
//! (Clients that do not trust the server: `client_trust.rs`.)

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use ringrift_apiserver::run::{Credential, kubeconfig};
use ringrift_crds::agent::Agent;
use ringrift_crds::identity::{AGENTS_GROUP, agent_user};
use ringrift_crds::task::Task;
use ringrift_e2e::cluster::{Cluster, until};
use ringrift_e2e::kubectl::ok;
use ringrift_e2e::process::{ApiServerProcess, HttpClient, Kubeconfig, Scratch};
use ringrift_e2e::{run, tool};
use ringrift_tls::pki::{Ca, DAY, Pem};
use serde_json::json;

/// The cluster CA of a server started in `dir` (its data directory is `dir/data`).
fn cluster_ca(dir: &Path) -> Ca {
    let (cert, key) = ringrift_apiserver::run::ca_files(&dir.join("data"));
    Ca::from_pem(
        &std::fs::read_to_string(&cert).unwrap(),
        &std::fs::read_to_string(key).unwrap(),
        "ca",
    )
    .unwrap()
}

/// Writes a kubeconfig for `server` with `credential` and the server's CA.
fn kubeconfig_file(dir: &Path, name: &str, server: &ApiServerProcess, credential: Credential<'_>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, kubeconfig(&server.url, Some(&server.ca()), credential)).unwrap();
    path
}

/// kubectl with `kubeconfig`: success, stdout and stderr.
fn kubectl(dir: &Path, kubeconfig: &Path, args: &[&str]) -> ringrift_e2e::Output {
    run(std::process::Command::new(tool("kubectl").unwrap())
        .env("KUBECACHEDIR", dir.join("kubecache"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args))
    .unwrap()
}

#[test]
fn kubectl_is_the_user_of_its_token_or_its_certificate() {
    let dir = Scratch::new("tls-users").unwrap();
    let tokens = dir.0.join("tokens.csv");
    std::fs::write(&tokens, "alice-token,alice,1\n").unwrap();
    let server = ApiServerProcess::start(
        &dir.0,
        &[
            "--token-auth-file",
            tokens.to_str().unwrap(),
            "--authorization-mode",
            "RBAC",
        ],
    )
    .unwrap();
    // The administrator's kubeconfig: a client certificate in system:masters.
    let admin = kubectl(&dir.0, &server.kubeconfig, &["get", "namespaces", "-o", "name"]);
    assert!(
        admin.success && admin.stdout.contains("namespace/default"),
        "{admin:?}"
    );

    // A token over TLS: kubectl sends it, and RBAC names its user.
    let alice = kubeconfig_file(&dir.0, "alice", &server, Credential::Token("alice-token"));
    let out = kubectl(&dir.0, &alice, &["get", "configmaps"]);
    assert!(!out.success);
    assert!(
        out.stderr
            .contains(r#"User "alice" cannot list resource "configmaps""#),
        "{}",
        out.stderr
    );

    // A client certificate signed by the cluster CA: CN is the user, O the group.
    let ca = cluster_ca(&dir.0);
    let bob = ca
        .client("bob", Some("developers"), ringrift_tls::now(), DAY)
        .unwrap();
    let bob_config = kubeconfig_file(&dir.0, "bob", &server, Credential::Certificate(&bob));
    let out = kubectl(&dir.0, &bob_config, &["get", "configmaps"]);
    assert!(
        out.stderr
            .contains(r#"User "bob" cannot list resource "configmaps""#),
        "{}",
        out.stderr
    );
    // Grant the group, and bob may.
    let grant = dir.0.join("grant.yaml");
    std::fs::write(
        &grant,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: read-configmaps}\n\
         rules: [{apiGroups: [\"\"], resources: [configmaps], verbs: [list]}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: developers}\n\
         roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: read-configmaps}\n\
         subjects: [{kind: Group, name: developers, apiGroup: rbac.authorization.k8s.io}]\n",
    )
    .unwrap();
    let applied = kubectl(
        &dir.0,
        &server.kubeconfig,
        &["apply", "-f", grant.to_str().unwrap()],
    );
    assert!(applied.success, "{applied:?}");
    let out = kubectl(&dir.0, &bob_config, &["get", "configmaps", "-n", "default"]);
    assert!(out.success, "bob's group may list: {out:?}");

    // Expired, or from another CA: 401, and the server says why.
    let expired = ca
        .client("carol", None, ringrift_tls::now() - 10 * DAY, DAY)
        .unwrap();
    let stranger = Ca::generate("other-ca", ringrift_tls::now())
        .unwrap()
        .client("mallory", Some("system:masters"), ringrift_tls::now(), DAY)
        .unwrap();
    for (name, pem, why) in [
        ("carol", &expired, "expired"),
        ("mallory", &stranger, "unknown certificate authority"),
    ] {
        let config = kubeconfig_file(&dir.0, name, &server, Credential::Certificate(pem));
        let out = kubectl(&dir.0, &config, &["get", "namespaces"]);
        assert!(!out.success);
        assert!(
            out.stderr.contains("You must be logged in to the server") && out.stderr.contains(why),
            "{}",
            out.stderr
        );
        let (code, body) = HttpClient::from_kubeconfig(&Kubeconfig::read(&config).unwrap())
            .unwrap()
            .http("GET", "/api/v1/namespaces", &[], b"")
            .unwrap();
        assert_eq!(code, 401);
        assert!(
            body.contains(&format!("CN={name}")) && body.contains(why),
            "{body}"
        );
    }
    let (_, metrics) = server.http("GET", "/metrics", &[], b"").unwrap();
    assert!(
        metrics
            .contains(r#"ringrift_apiserver_authentication_failures_total{reason="certificate_rejected"}"#),
        "{metrics}"
    );
}

#[test]
fn plain_http_is_refused_and_counted() {
    let dir = Scratch::new("tls-plain").unwrap();
    let server = ApiServerProcess::start(&dir.0, &[]).unwrap();
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let (code, body) = HttpClient::plain(&server.url)
        .http("GET", "/api/v1/namespaces", &[], b"")
        .unwrap();
    assert_eq!(code, 400);
    assert!(
        body.contains("Client sent an HTTP request to an HTTPS server."),
        "{body}"
    );
    let (_, metrics) = server.http("GET", "/metrics", &[], b"").unwrap();
    assert!(
        metrics.contains(r#"ringrift_apiserver_authentication_failures_total{reason="plain_http"} 1"#),
        "{metrics}"
    );
}

/// The fingerprint of the certificate the server at `url` presents now.
async fn presented(url: &str) -> String {
    ringrift_tls::pin::presented(&ringrift_e2e::https::authority(url), Duration::from_secs(5))
        .await
        .unwrap()
        .fingerprint
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_is_kept_across_restarts_and_the_serving_certificate_renewed_while_serving() {
    let dir = Scratch::new("tls-renew").unwrap();
    let mut server = ApiServerProcess::start(
        &dir.0,
        &["--tls-serving-validity", "6s", "--tls-renew-check", "200ms"],
    )
    .unwrap();
    let first = presented(&server.url).await;
    let kept = dir.0.join("kubeconfig-before");
    std::fs::copy(&server.kubeconfig, &kept).unwrap();
    // Renewed after two thirds of its 6 s, while serving, by the same CA.
    until(
        "a renewed serving certificate",
        Duration::from_secs(20),
        || async { (presented(&server.url).await != first).then_some(()) },
    )
    .await;
    let out = kubectl(&dir.0, &kept, &["get", "namespaces", "-o", "name"]);
    assert!(
        out.success,
        "the kubeconfig from before trusts the renewed certificate: {out:?}"
    );
    assert!(
        std::fs::read_to_string(dir.0.join("apiserver.log"))
            .unwrap()
            .contains("serving a new certificate"),
        "the renewal is logged"
    );
    // A restart keeps the CA: the kubeconfig written before still works.
    let ca_before = server.ca();
    server.restart_on_same_address().unwrap();
    assert_eq!(server.ca(), ca_before);
    let out = kubectl(&dir.0, &kept, &["get", "namespaces", "-o", "name"]);
    assert!(out.success, "{out:?}");
}

#[test]
fn own_certificates_are_served_and_client_cas_authenticate() {
    let dir = Scratch::new("tls-own").unwrap();
    let now = ringrift_tls::now();
    let corp = Ca::generate("corp-ca", now).unwrap();
    let serving = corp
        .serving("api.corp", &["127.0.0.1".into(), "localhost".into()], now, DAY)
        .unwrap();
    let people = Ca::generate("people-ca", now).unwrap();
    let files = |name: &str, text: &str| {
        let path = dir.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (cert, key) = (files("tls.crt", &serving.cert), files("tls.key", &serving.key));
    let client_ca = files("people.crt", people.cert_pem());
    let audit = dir.0.join("audit.jsonl");
    let server = ApiServerProcess::start(
        &dir.0,
        &[
            "--tls-cert-file",
            &cert,
            "--tls-private-key-file",
            &key,
            "--client-ca-file",
            &client_ca,
            "--audit-log",
            audit.to_str().unwrap(),
        ],
    )
    .unwrap();
    let authority = ringrift_e2e::https::authority(&server.url);
    let seen = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(ringrift_tls::pin::presented(&authority, Duration::from_secs(5)))
        .unwrap();
    assert_eq!(
        seen.fingerprint,
        serving.info().unwrap().fingerprint,
        "its own certificate is served"
    );
    // Clients trust the operator's CA; a certificate from the client CA authenticates.
    let carol = people.client("carol", None, now, DAY).unwrap();
    let config = dir.0.join("kubeconfig-carol");
    std::fs::write(
        &config,
        kubeconfig(
            &server.url,
            Some(corp.cert_pem()),
            Credential::Certificate(&carol),
        ),
    )
    .unwrap();
    let out = kubectl(&dir.0, &config, &["get", "namespaces", "-o", "name"]);
    assert!(out.success, "{out:?}");
    let log = std::fs::read_to_string(&audit).unwrap();
    assert!(log.contains(r#""user":"carol""#), "{log}");
}

/// A kube client with a client certificate for the agent `name`.
async fn agent_client(dir: &Path, server: &ApiServerProcess, name: &str) -> Client {
    let pem: Pem = cluster_ca(dir)
        .client(&agent_user(name), Some(AGENTS_GROUP), ringrift_tls::now(), DAY)
        .unwrap();
    let path = kubeconfig_file(
        dir,
        &format!("kubeconfig-{name}"),
        server,
        Credential::Certificate(&pem),
    );
    ringrift_e2e::chart_install::admin_client(&path).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_credential_changes_only_its_own_objects() {
    let cluster = Cluster::start("tls-node-restriction").await;
    let dir = cluster.dir();
    let a = agent_client(&dir, &cluster.api, "a").await;
    let agents = Api::<Agent>::all(a.clone());
    let new = |name: &str| -> Agent {
        serde_json::from_value(json!({"apiVersion": "ringrift.ai/v1alpha1", "kind": "Agent",
            "metadata": {"name": name}, "spec": {}}))
        .unwrap()
    };
    agents.create(&PostParams::default(), &new("a")).await.unwrap();
    let refused = agents
        .create(&PostParams::default(), &new("b"))
        .await
        .unwrap_err();
    let text = refused.to_string();
    assert!(
        text.contains(r#"agent "a" may not create Agent "b""#) && text.contains("node restriction"),
        "{text}"
    );
    // b's own Agent, made by b, may not be changed by a.
    let b = agent_client(&dir, &cluster.api, "b").await;
    Api::<Agent>::all(b.clone())
        .create(&PostParams::default(), &new("b"))
        .await
        .unwrap();
    let status = Patch::Merge(json!({"status": {"endpoint": "https://evil:1"}}));
    let refused = agents
        .patch_status("b", &PatchParams::default(), &status)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("may not patch Agent \"b\""),
        "{refused}"
    );
    agents
        .patch_status("a", &PatchParams::default(), &status)
        .await
        .unwrap();
    // Leases: its heartbeat only.
    let leases = Api::<Lease>::namespaced(a.clone(), "default");
    let lease = |name: &str| -> Lease {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"holderIdentity": "a"}})).unwrap()
    };
    leases
        .create(&PostParams::default(), &lease("agent-a"))
        .await
        .unwrap();
    let refused = leases
        .create(&PostParams::default(), &lease("ringrift-controller"))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("Lease \"ringrift-controller\""),
        "{refused}"
    );
    // Tasks: the status of those bound to it.
    let tasks = cluster.tasks();
    for (task, bound) in [("ta", "a"), ("tb", "b")] {
        let t: Task = serde_json::from_value(json!({"apiVersion": "ringrift.ai/v1alpha1", "kind": "Task",
            "metadata": {"name": task, "namespace": "default"},
            "spec": {"role": "selfplay", "job": {"kind": "SelfplayJob", "name": "j"}, "workUnit": task,
                     "attempt": 0, "agent": bound, "template": {"command": ["true"]}}}))
        .unwrap();
        tasks.create(&PostParams::default(), &t).await.unwrap();
    }
    let as_a = Api::<Task>::namespaced(a, "default");
    let running = Patch::Merge(json!({"status": {"phase": "Running"}}));
    as_a.patch_status("ta", &PatchParams::default(), &running)
        .await
        .unwrap();
    let refused = as_a
        .patch_status("tb", &PatchParams::default(), &running)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains(r#"bound to agent "b""#), "{refused}");
    let refused = as_a
        .patch(
            "ta",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"agent": "a2"}})),
        )
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("only its status"), "{refused}");
}

#[test]
fn credentials_are_required_and_the_kubeconfig_carries_the_admins() {
    let dir = Scratch::new("auth").unwrap();
    let server = ApiServerProcess::start(&dir.0, &["--token", "t0p-secret"]).unwrap();
    // Over TLS without a client certificate or token: nobody.
    let anonymous = server.anonymous_client();
    let (code, body) = anonymous.http("GET", "/api/v1/namespaces", &[], b"").unwrap();
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("\"reason\":\"Unauthorized\""), "{body}");
    let (code, _) = anonymous
        .http(
            "GET",
            "/api/v1/namespaces",
            &[("Authorization", "Bearer wrong")],
            b"",
        )
        .unwrap();
    assert_eq!(code, 401);
    let create = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"k":"v"}}"#;
    let (code, _) = anonymous
        .http(
            "POST",
            "/api/v1/namespaces/default/configmaps",
            &[("Content-Type", "application/json")],
            create,
        )
        .unwrap();
    assert_eq!(code, 401, "a request without credentials changes nothing");
    let auth = [("Authorization", "Bearer t0p-secret")];
    let (code, body) = anonymous
        .http("GET", "/api/v1/namespaces/default/configmaps", &auth, b"")
        .unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"items\":[]"), "{body}");
    let (code, _) = anonymous.http("GET", "/readyz", &[], b"").unwrap();
    assert_eq!(code, 200, "health checks need no credentials");
    // The kubeconfig trusts the server's CA and holds the administrator's client certificate,
    // readable by its owner only.
    let kubeconfig = Kubeconfig::read(&server.kubeconfig).unwrap();
    assert!(
        kubeconfig.server.starts_with("https://127.0.0.1:"),
        "{kubeconfig:?}"
    );
    assert!(kubeconfig.ca.is_some() && kubeconfig.identity.is_some() && kubeconfig.token.is_none());
    let mode = std::fs::metadata(&server.kubeconfig)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(ok(&server, &["get", "configmaps", "-o", "name"]).trim(), "");
}
