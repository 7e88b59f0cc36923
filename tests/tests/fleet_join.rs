//! `ringrift server` and `ringrift join`, as real processes: the server prints a join command;
//! a box joins with it (CA checked by hash, bootstrap token traded for its own client
//! certificate), registers and becomes Ready under its node-restricted identity; a rejoin with
//! the same data directory resumes without a token; and joins that must not happen are refused
//! with a message saying why (wrong CA hash, expired or used-up token, a name a live agent
//! holds, a malformed token).

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use ringrift_apiserver::bootstrap::{self, Token};
use ringrift_crds::agent::Agent;
use ringrift_e2e::cluster::until;
use ringrift_e2e::process::{Scratch, ringrift_bin};
use ringrift_e2e::role::RoleProcess;

const WAIT: Duration = Duration::from_secs(60);

/// A process stopped as an operator would (SIGTERM, then waited for), also when the test
/// fails: `ringrift server` then stops its controllers too.
struct Graceful(RoleProcess);

impl Drop for Graceful {
    fn drop(&mut self) {
        let _ = self.0.terminate();
        let _ = self.0.wait(Duration::from_secs(30));
    }
}

struct Joined {
    url: String,
    token: String,
    hash: String,
}

impl Joined {
    /// The URL, token and CA hash of the printed `ringrift join URL --token T --ca-cert-hash H`.
    fn from_banner(line: &str) -> Self {
        let words: Vec<&str> = line.split_whitespace().collect();
        Self {
            url: words[2].to_owned(),
            token: words[4].to_owned(),
            hash: words[6].to_owned(),
        }
    }
}

/// `ringrift join …` once, to its end: exit status and stderr.
fn join_fails(url: &str, token: &str, hash: &str, name: &str, data_dir: &Path) -> (i32, String) {
    let out = Command::new(ringrift_bin().unwrap())
        .args([
            "join",
            url,
            "--token",
            token,
            "--ca-cert-hash",
            hash,
            "--name",
            name,
            "--data-dir",
        ])
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0", "--simulate-gpus", "1xT4-16GB"])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn join_args(j: &Joined, name: &str, data_dir: &Path, token: bool) -> Vec<String> {
    let mut args: Vec<String> = vec!["join".into(), j.url.clone()];
    if token {
        args.extend([
            "--token".into(),
            j.token.clone(),
            "--ca-cert-hash".into(),
            j.hash.clone(),
        ]);
    }
    args.extend(
        [
            "--name",
            name,
            "--data-dir",
            &data_dir.display().to_string(),
            "--listen",
            "127.0.0.1:0",
            "--simulate-gpus",
            "1xT4-16GB",
            "--heartbeat",
            "500ms",
            "--heartbeat-lease",
            "3s",
            "--gossip-listen",
            "127.0.0.1:0",
        ]
        .map(String::from),
    );
    args
}

async fn admin(dir: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(dir.join("kubeconfig")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// The server's web dashboard (its login line is on stdout, which the harness does not keep):
/// served over TLS with a certificate the cluster CA issued (a
/// client trusting only the CA connects), behind the dashboard token, showing the joined box.
async fn dashboard_over_tls(dir: &Path) {
    // `ringrift server` writes where its dashboard is beside `join-url`.
    let url = std::fs::read_to_string(dir.join("dashboard-url"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let ca = Kubeconfig::read_from(dir.join("kubeconfig")).unwrap();
    let ca_pem = ca.clusters[0]
        .cluster
        .as_ref()
        .and_then(|c| c.certificate_authority_data.clone())
        .map(|d| {
            String::from_utf8(base64::Engine::decode(&base64::engine::general_purpose::STANDARD, d).unwrap())
                .unwrap()
        })
        .unwrap();
    let client = ringrift_e2e::https::HttpClient::trusting(&url, &ca_pem).unwrap();
    let token = std::fs::read_to_string(dir.join("dashboard-token")).unwrap();
    let bearer = format!("Bearer {}", token.trim());
    let (code, body) = tokio::task::spawn_blocking({
        let client = client.clone();
        move || client.http("GET", "/api/overview", &[], b"").unwrap()
    })
    .await
    .unwrap();
    assert_eq!(code, 401, "{body}");
    let (code, body) = tokio::task::spawn_blocking(move || {
        client
            .http("GET", "/api/agents", &[("Authorization", bearer.as_str())], b"")
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"name\":\"box1\""), "{body}");
    // Plain HTTP is refused: the server's dashboard speaks only TLS.
    let plain = ringrift_e2e::https::HttpClient::plain(&url);
    let answered = tokio::task::spawn_blocking(move || plain.http("GET", "/api/overview", &[], b""))
        .await
        .unwrap();
    assert!(
        answered.is_err() || answered.as_ref().is_ok_and(|(code, _)| *code != 200),
        "{answered:?}"
    );
}

async fn ready(agents: &Api<Agent>, name: &str) -> bool {
    agents.get_opt(name).await.ok().flatten().is_some_and(|a| {
        a.status
            .unwrap_or_default()
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// A stored token with these fields changed (`stringData`).
async fn put_token(client: &Client, changes: &[(&str, &str)]) -> Token {
    let token = Token::generate();
    let mut secret = bootstrap::secret(&token, None, None, "test");
    for (k, v) in changes {
        secret["stringData"][*k] = serde_json::json!(v);
    }
    Api::<Secret>::namespaced(client.clone(), bootstrap::NAMESPACE)
        .create(&PostParams::default(), &serde_json::from_value(secret).unwrap())
        .await
        .unwrap();
    token
}

/// `ringrift server token …` against the running server's directory.
fn token_command(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(ringrift_bin().unwrap())
        .args(["server", "token"])
        .args(args)
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The banner's token is listed (its secret never is); one made and deleted comes and goes.
fn tokens_are_managed(dir: &Path, banner: &str) {
    let (id, secret) = banner.split_once('.').unwrap();
    let listed = token_command(dir, &["list"]);
    assert!(listed.contains(id) && !listed.contains(secret), "{listed}");
    let made = token_command(
        dir,
        &[
            "create",
            "--ttl",
            "1h",
            "--usages",
            "3",
            "--description",
            "three boxes",
        ],
    );
    let made = Token::parse(made.trim()).unwrap();
    let listed = token_command(dir, &["list"]);
    let line = listed
        .lines()
        .find(|l| l.starts_with(&made.id))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(line.contains("0/3") && line.contains("three boxes"), "{line}");
    token_command(dir, &["delete", &made.to_string()]);
    assert!(!token_command(dir, &["list"]).contains(&made.id));
}

/// Joins that must not happen, each refused saying why; none leaves a credential behind.
async fn refusals(j: &Joined, client: &Client, other: &Path) {
    let wrong_hash = format!("sha256:{}", "0".repeat(64));
    for (token, hash, name, why) in [
        (
            j.token.clone(),
            wrong_hash.clone(),
            "box2",
            "does not match --ca-cert-hash",
        ),
        (
            j.token.clone(),
            j.hash.clone(),
            "box1",
            "a live agent holds this name",
        ),
        ("not-a-token".to_owned(), j.hash.clone(), "box2", "<id>.<secret>"),
        (
            "abcdef.0123456789abcdef".to_owned(),
            j.hash.clone(),
            "box2",
            "the bootstrap token is not valid",
        ),
        (
            put_token(client, &[("expiration", "2020-01-01T00:00:00Z")])
                .await
                .to_string(),
            j.hash.clone(),
            "box2",
            "expired",
        ),
        (
            put_token(client, &[("usage-limit", "1"), ("usages", "1")])
                .await
                .to_string(),
            j.hash.clone(),
            "box2",
            "used up",
        ),
    ] {
        let (code, stderr) = join_fails(&j.url, &token, &hash, name, other);
        assert_ne!(code, 0, "{name} with {token}: {stderr}");
        assert!(stderr.contains(why), "{why:?} in: {stderr}");
        assert!(
            !other.join("kubeconfig").exists(),
            "no credential after a refusal"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_joins_with_the_printed_command_and_bad_joins_are_refused() {
    let scratch = Scratch::new("fleet-join").unwrap();
    let dir = scratch.0.join("server");
    let server = server(&scratch.0, "server", &dir, &[]);
    // The printed command, word for word.
    let words: Vec<&str> = server.0.announced.split_whitespace().collect();
    assert_eq!(
        (words[0], words[1], words[3], words[5]),
        ("ringrift", "join", "--token", "--ca-cert-hash")
    );
    let j = Joined::from_banner(&server.0.announced);
    let client = admin(&dir).await;
    let agents: Api<Agent> = Api::all(client.clone());
    tokens_are_managed(&dir, &j.token);

    // A box joins and becomes Ready under its own identity.
    let box1 = scratch.0.join("box1");
    let joined = RoleProcess::start(
        &scratch.0,
        "box1",
        &join_args(&j, "box1", &box1, true),
        "ringrift agent box1: REST on",
    )
    .unwrap();
    assert!(!joined.log().contains("ERROR"), "{}", joined.log());
    until("box1 Ready", WAIT, || async {
        ready(&agents, "box1").await.then_some(())
    })
    .await;
    dashboard_over_tls(&dir).await;
    let kubeconfig = std::fs::read_to_string(box1.join("kubeconfig")).unwrap();
    assert!(kubeconfig.contains("client-certificate-data") && !kubeconfig.contains(&j.token));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(box1.join("kubeconfig")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // It was handed the fleet's cluster key (gossip and fetches between agents).
    assert_eq!(
        std::fs::read(box1.join("cluster-key")).unwrap(),
        std::fs::read(dir.join("cluster-key")).unwrap()
    );

    refusals(&j, &client, &scratch.0.join("other")).await;
    // The three refused for their token (unknown, expired, used up; a malformed one never
    // reaches the server) are counted as authentication failures.
    let http = ringrift_e2e::https::HttpClient::from_kubeconfig(
        &ringrift_e2e::https::Kubeconfig::read(&dir.join("kubeconfig")).unwrap(),
    )
    .unwrap();
    let (code, metrics) = http.http("GET", "/metrics", &[], b"").unwrap();
    assert_eq!(code, 200, "{metrics}");
    let sample = "ringrift_apiserver_authentication_failures_total{reason=\"bootstrap_token\"} ";
    let count: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(sample))
        .unwrap_or_else(|| panic!("{sample} in {metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert_eq!(count, 3);

    // Stopped and started again with its data directory: no token needed, Ready again.
    joined.terminate().unwrap();
    let mut joined = joined;
    joined.wait(Duration::from_secs(30)).unwrap();
    let again = RoleProcess::start(
        &scratch.0,
        "box1-again",
        &join_args(&j, "box1", &box1, false),
        "ringrift agent box1: REST on",
    )
    .unwrap();
    until("box1 Ready again", WAIT, || async {
        ready(&agents, "box1").await.then_some(())
    })
    .await;
    drop(again);
    drop(server);
}

fn server(scratch: &Path, name: &str, dir: &Path, extra: &[&str]) -> Graceful {
    let mut args: Vec<String> = [
        "server",
        "--dir",
        &dir.display().to_string(),
        "--listen",
        "127.0.0.1:0",
        "--advertise",
        "127.0.0.1",
        "--controllers",
        "1",
        "--dashboard-listen",
        "127.0.0.1:0",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Graceful(RoleProcess::start(scratch, name, &args, "  ringrift join https://").unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_serving_restores_exactly_and_every_client_relists() {
    use futures_util::{StreamExt as _, TryStreamExt as _};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::WatchParams;
    use kube::core::WatchEvent;

    let scratch = Scratch::new("server-backup").unwrap();
    let dir = scratch.0.join("server");
    let first = server(&scratch.0, "server", &dir, &[]);
    let expired = put_token(&admin(&dir).await, &[("expiration", "2020-01-01T00:00:00Z")]).await;
    let maps: Api<ConfigMap> = Api::namespaced(admin(&dir).await, "default");
    let map = |name: &str| -> ConfigMap {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap()
    };
    maps.create(&PostParams::default(), &map("kept")).await.unwrap();
    let file = scratch.0.join("state.backup");
    let out = Command::new(ringrift_bin().unwrap())
        .args(["server", "backup"])
        .arg(&file)
        .arg("--dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("at resourceVersion"));
    let lost = maps
        .create(&PostParams::default(), &map("after-the-backup"))
        .await
        .unwrap();
    let lost_rv = lost.metadata.resource_version.clone().unwrap();
    drop(first);

    let _second = server(
        &scratch.0,
        "server-restored",
        &dir,
        &["--restore", &file.display().to_string()],
    );
    let maps: Api<ConfigMap> = Api::namespaced(admin(&dir).await, "default");
    let names: Vec<String> = maps
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|m| m.metadata.name)
        .filter(|n| n != "kube-root-ca.crt")
        .collect();
    assert_eq!(names, ["kept"], "exactly the backed-up state");
    // A watch from a version served before the restore is answered 410: the client relists.
    let mut events = maps
        .watch(&WatchParams::default(), &lost_rv)
        .await
        .unwrap()
        .boxed();
    match events.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!(e.code, 410, "{e:?}"),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    // New versions continue above every one served before.
    let new = maps.create(&PostParams::default(), &map("new")).await.unwrap();
    let (new_rv, lost_rv): (u64, u64) = (
        new.metadata.resource_version.unwrap().parse().unwrap(),
        lost_rv.parse().unwrap(),
    );
    assert!(new_rv > lost_rv, "{new_rv} after {lost_rv}");
    // Expired tokens are cleaned up at start (each start prints a new one).
    let secrets: Api<Secret> = Api::namespaced(admin(&dir).await, bootstrap::NAMESPACE);
    assert!(secrets.get_opt(&expired.secret_name()).await.unwrap().is_none());
    assert!(
        std::fs::read_dir(dir.join("apiserver"))
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains("before-restore"))
    );
}

/// The client certificate in a joined box's kubeconfig.
fn client_certificate(data_dir: &Path) -> String {
    let text = std::fs::read_to_string(data_dir.join("kubeconfig")).unwrap();
    let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    doc["users"][0]["user"]["client-certificate-data"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_box_renews_its_certificate_before_it_expires_and_stays_ready() {
    let scratch = Scratch::new("join-renew").unwrap();
    let dir = scratch.0.join("server");
    // Certificates of 15 s: renewed after 10 (two thirds of the lifetime).
    let server = server(
        &scratch.0,
        "server",
        &dir,
        &["--agent-certificate-validity", "15s"],
    );
    let j = Joined::from_banner(&server.0.announced);
    let agents: Api<Agent> = Api::all(admin(&dir).await);
    let box1 = scratch.0.join("box1");
    let joined = RoleProcess::start(
        &scratch.0,
        "box1",
        &join_args(&j, "box1", &box1, true),
        "ringrift agent box1: REST on",
    )
    .unwrap();
    until("box1 Ready", WAIT, || async {
        ready(&agents, "box1").await.then_some(())
    })
    .await;
    let first = client_certificate(&box1);
    let registered = |a: Agent| a.status.and_then(|s| s.registered_at);
    let before = registered(agents.get("box1").await.unwrap()).unwrap();
    // A new certificate in the kubeconfig, and the agent registered again on it.
    until("box1 renewed and registered again", WAIT, || async {
        let again = registered(agents.get("box1").await.ok()?)?;
        (client_certificate(&box1) != first && again.0 > before.0).then_some(())
    })
    .await;
    until("box1 Ready on its new certificate", WAIT, || async {
        ready(&agents, "box1").await.then_some(())
    })
    .await;
    let log = joined.log();
    assert!(log.contains("renewed the agent's certificate"), "{log}");
    // The box is still the same process (it started itself again in place).
    assert!(
        std::fs::read_to_string(format!("/proc/{}/cmdline", joined.pid())).is_ok_and(|c| c.contains("join"))
    );
    // Renewal is for agents only, with their own certificate: the administrator's is refused.
    let http = ringrift_e2e::https::HttpClient::from_kubeconfig(
        &ringrift_e2e::https::Kubeconfig::read(&dir.join("kubeconfig")).unwrap(),
    )
    .unwrap();
    let (code, body) = http
        .http(
            "POST",
            "/ringrift/v1/renew",
            &[],
            br#"{"certificateSigningRequest": "x"}"#,
        )
        .unwrap();
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("not an agent's identity"), "{body}");
    drop(joined);
    drop(server);
}

/// A counter's value in Prometheus text.
fn counter(metrics: &str, name: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_box_may_read_everything_retention_needs_under_its_node_restricted_identity() {
    let scratch = Scratch::new("join-retention").unwrap();
    let dir = scratch.0.join("server");
    let server = server(&scratch.0, "server", &dir, &[]);
    let j = Joined::from_banner(&server.0.announced);
    let box1 = scratch.0.join("box1");
    // Any disk is past a high-water mark of 1%: every round asks the API what must be kept.
    let mut args = join_args(&j, "box1", &box1, true);
    args.extend(
        [
            "--disk-high-water",
            "0.01",
            "--disk-low-water",
            "0.005",
            "--retention-interval",
            "100ms",
        ]
        .map(String::from),
    );
    let joined = RoleProcess::start(&scratch.0, "box1", &args, "ringrift agent box1: REST on").unwrap();
    let token = std::fs::read_to_string(box1.join("token")).unwrap();
    let rest = joined.announced_client();
    let bearer = format!("Bearer {}", token.trim());
    until("three retention rounds", WAIT, || async {
        let (code, metrics) = rest
            .http("GET", "/metrics", &[("authorization", &bearer)], b"")
            .ok()?;
        (code == 200 && counter(&metrics, "ringrift_agent_retention_rounds_total") >= 3).then_some(())
    })
    .await;
    let log = joined.log();
    assert!(
        !log.contains("cannot say what is needed") && !log.contains("forbidden"),
        "{log}"
    );
    drop(joined);
    drop(server);
}
