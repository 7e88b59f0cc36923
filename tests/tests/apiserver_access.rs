//! Access reviews through the real kubectl and kube-rs, answered by the RBAC code that decides
//! requests: `kubectl auth can-i` (and `--list`), `kubectl auth whoami`, a SubjectAccessReview,
//! and impersonation (`--as`) honoured or refused, never ignored.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kube::Api;
use kube::api::PostParams;
use ringrift_e2e::api::client;
use ringrift_e2e::kubectl::{kubectl, ok};
use ringrift_e2e::process::{ApiServerProcess, Scratch};
use serde_json::Value;

/// A server under RBAC where bob (token `bob-token`) may get and list Secrets in `default` and
/// read `/metrics`; and the `--kubeconfig` argument that makes kubectl bob.
fn server_with_bob(dir: &std::path::Path) -> (ApiServerProcess, String) {
    let tokens = dir.join("tokens.csv");
    std::fs::write(&tokens, "bob-token,bob,u-bob\n").unwrap();
    let server = ApiServerProcess::start(
        dir,
        &[
            "--authorization-mode",
            "RBAC",
            "--token-auth-file",
            tokens.to_str().unwrap(),
        ],
    )
    .unwrap();
    ok(
        &server,
        &[
            "create",
            "role",
            "reader",
            "--verb=get,list",
            "--resource=secrets",
            "-n",
            "default",
        ],
    );
    ok(
        &server,
        &[
            "create",
            "rolebinding",
            "reads",
            "--role=reader",
            "--user=bob",
            "-n",
            "default",
        ],
    );
    ok(
        &server,
        &[
            "create",
            "clusterrole",
            "metrics",
            "--verb=get",
            "--non-resource-url=/metrics",
        ],
    );
    ok(
        &server,
        &[
            "create",
            "clusterrolebinding",
            "metrics",
            "--clusterrole=metrics",
            "--user=bob",
        ],
    );
    // Bob's own kubeconfig: the server's CA and his token, no client certificate.
    let admin: Value =
        serde_json::from_str(&ok(&server, &["config", "view", "--raw", "-o", "json"])).unwrap();
    let bob_config = dir.join("bob.kubeconfig");
    let bob = serde_json::json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "bob",
        "clusters": [{"name": "c", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": "bob", "user": {"token": "bob-token"}}],
        "contexts": [{"name": "bob", "context": {"cluster": "c", "user": "bob"}}],
    });
    std::fs::write(&bob_config, bob.to_string()).unwrap();
    let as_bob = format!("--kubeconfig={}", bob_config.display());

    (server, as_bob)
}

#[test]
fn kubectl_auth_reviews_answer_from_rbac() {
    let dir = Scratch::new("fidelity-auth").unwrap();
    let (server, as_bob) = server_with_bob(&dir.0);
    // The administrator (system:masters) may do anything.
    assert_eq!(
        ok(&server, &["auth", "can-i", "create", "selfplayjobs.ringrift.ai"]).trim(),
        "yes"
    );
    let whoami = ok(&server, &["auth", "whoami"]);
    assert!(
        whoami.contains("admin") && whoami.contains("system:masters"),
        "{whoami}"
    );

    // Bob, through impersonation (the administrator may impersonate anyone) and through his
    // own token: the same RBAC code answers as it decides his requests.
    for (args, expected) in [
        (&["auth", "can-i", "get", "secrets", "-n", "default"][..], "yes"),
        (&["auth", "can-i", "list", "secrets", "-n", "default"], "yes"),
        (&["auth", "can-i", "create", "secrets", "-n", "default"], "no"),
        (&["auth", "can-i", "get", "secrets", "-n", "kube-system"], "no"),
        (&["auth", "can-i", "get", "/metrics"], "yes"),
        (&["auth", "can-i", "get", "/healthz/etcd"], "no"),
    ] {
        let mut impersonated = args.to_vec();
        impersonated.push("--as=bob");
        let out = kubectl(&server, &impersonated);
        assert_eq!(out.stdout.trim(), expected, "{impersonated:?}: {}", out.stderr);
        let mut own = args.to_vec();
        own.push(&as_bob);
        let out = kubectl(&server, &own);
        assert_eq!(
            out.stdout.trim(),
            expected,
            "{own:?} with bob's token: {}",
            out.stderr
        );
    }
    // What can-i says is what happens.
    assert!(kubectl(&server, &["get", "secrets", "-n", "default", "--as=bob"]).success);
    let refused = kubectl(&server, &["get", "secrets", "-n", "kube-system", "--as=bob"]);
    assert!(
        !refused.success && refused.stderr.contains("User \"bob\" cannot list"),
        "{}",
        refused.stderr
    );

    let list = ok(&server, &["auth", "can-i", "--list", "-n", "default", "--as=bob"]);
    let secrets_row = list
        .lines()
        .find(|l| l.starts_with("secrets "))
        .unwrap_or_default();
    assert!(secrets_row.contains("[get list]"), "{list}");
    assert!(list.contains("/metrics"), "{list}");
    let whoami = ok(&server, &["auth", "whoami", "--as=bob", "--as-group=devs"]);
    assert!(whoami.contains("bob") && whoami.contains("devs"), "{whoami}");

    // Bob may not impersonate anyone; that is refused, not ignored.
    let out = kubectl(
        &server,
        &["auth", "can-i", "get", "secrets", "--as=alice", &as_bob],
    );
    assert!(
        !out.success && out.stderr.contains("cannot impersonate"),
        "{}{}",
        out.stdout,
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_rs_asks_about_another_user_with_a_subject_access_review() {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
    };
    let dir = Scratch::new("fidelity-sar").unwrap();
    let server = ApiServerProcess::start(&dir.0, &["--authorization-mode", "RBAC"]).unwrap();
    ok(
        &server,
        &[
            "create",
            "clusterrole",
            "ns-reader",
            "--verb=get",
            "--resource=namespaces",
        ],
    );
    ok(
        &server,
        &[
            "create",
            "clusterrolebinding",
            "ns-readers",
            "--clusterrole=ns-reader",
            "--group=readers",
        ],
    );
    let reviews: Api<SubjectAccessReview> = Api::all(client(&server).await);
    let ask = |groups: Vec<String>| SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some("carol".into()),
            groups: Some(groups),
            resource_attributes: Some(ResourceAttributes {
                verb: Some("get".into()),
                resource: Some("namespaces".into()),
                name: Some("default".into()),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    let answer = reviews
        .create(&PostParams::default(), &ask(vec!["readers".into()]))
        .await
        .unwrap();
    assert!(answer.status.unwrap().allowed);
    let answer = reviews
        .create(&PostParams::default(), &ask(vec!["writers".into()]))
        .await
        .unwrap();
    assert!(!answer.status.unwrap().allowed);
}
