//! The in-cluster configuration, for real: a controller started as in a pod (a private mount
//! namespace whose tmpfs holds the ServiceAccount's `token`, `ca.crt` and `namespace` at their
//! standard path, `KUBERNETES_SERVICE_HOST`/`PORT` set, no kubeconfig anywhere and an empty
//! `HOME`) finds the API server, trusts it by the mounted CA, authenticates with the token,
//! takes its namespace from the mounted file, and leads; when the token rotates, it reads the
//! new one, and keeps leading once the old one is no longer accepted.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::PostParams;
use kube::{Api, Client};
use ringrift_e2e::chart::audit;
use ringrift_e2e::chart_install::admin_client;
use ringrift_e2e::cluster::{install_crds, until};
use ringrift_e2e::pod::{Pod, rotate_token};
use ringrift_e2e::process::{ApiServerProcess, Scratch};
use serde_json::json;

const NAMESPACE: &str = "ringrift";
const GROUP: &str = "ringrift:controllers";
/// The token the pod starts with, and the user it is.
const FIRST: (&str, &str) = ("ctrl-token-1", "system:serviceaccount:ringrift:controller");
/// The rotated token, and the user it is (another name, so the audit log tells which token a
/// request carried; the roles are the group's).
const SECOND: (&str, &str) = (
    "ctrl-token-2",
    "system:serviceaccount:ringrift:controller-rotated",
);

fn token_file(tokens: &[(&str, &str)]) -> String {
    use std::fmt::Write as _;
    tokens
        .iter()
        .enumerate()
        .fold(String::new(), |mut out, (i, (token, user))| {
            let _ = writeln!(out, "{token},{user},{i},\"{GROUP}\"");
            out
        })
}

/// The controller's roles (ringrift_crds::rbac), bound to its group.
async fn grant(client: &Client) {
    let rules = ringrift_crds::rbac::controller();
    let pp = PostParams::default();
    let subjects = json!([{"kind": "Group", "name": GROUP, "apiGroup": "rbac.authorization.k8s.io"}]);
    let role_ref =
        |kind: &str| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": "controller"});
    let cluster_role: ClusterRole =
        serde_json::from_value(json!({"metadata": {"name": "controller"}, "rules": rules.cluster})).unwrap();
    Api::<ClusterRole>::all(client.clone())
        .create(&pp, &cluster_role)
        .await
        .unwrap();
    let binding: ClusterRoleBinding = serde_json::from_value(json!({"metadata": {"name": "controller"},
        "roleRef": role_ref("ClusterRole"), "subjects": subjects}))
    .unwrap();
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&pp, &binding)
        .await
        .unwrap();
    let role: Role =
        serde_json::from_value(json!({"metadata": {"name": "controller", "namespace": NAMESPACE},
        "rules": rules.namespaced}))
        .unwrap();
    Api::<Role>::namespaced(client.clone(), NAMESPACE)
        .create(&pp, &role)
        .await
        .unwrap();
    let binding: RoleBinding =
        serde_json::from_value(json!({"metadata": {"name": "controller", "namespace": NAMESPACE},
        "roleRef": role_ref("Role"), "subjects": subjects}))
        .unwrap();
    Api::<RoleBinding>::namespaced(client.clone(), NAMESPACE)
        .create(&pp, &binding)
        .await
        .unwrap();
}

/// Who holds the leader Lease in the pod's namespace.
async fn holder(client: &Client) -> Option<String> {
    Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), NAMESPACE)
        .get_opt("ringrift-controller")
        .await
        .ok()
        .flatten()?
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_in_a_pod_finds_trusts_and_authenticates_in_cluster_and_follows_its_token() {
    let dir = Scratch::new("in-cluster").unwrap();
    let tokens = dir.0.join("tokens.csv");
    std::fs::write(&tokens, token_file(&[FIRST, SECOND])).unwrap();
    let audit_log = dir.0.join("audit.jsonl");
    let mut api = ApiServerProcess::start(
        &dir.0,
        &[
            "--token-auth-file",
            tokens.to_str().unwrap(),
            "--authorization-mode",
            "RBAC",
            "--audit-log",
            audit_log.to_str().unwrap(),
        ],
    )
    .unwrap();
    let admin = admin_client(&api.kubeconfig).await;
    install_crds(&admin).await;
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).unwrap();
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    grant(&admin).await;

    let pod = Pod {
        host: "127.0.0.1".into(),
        port: api.port(),
        token: FIRST.0.into(),
        ca: api.ca(),
        namespace: NAMESPACE.into(),
        env: Vec::new(),
    };
    // No --kubeconfig, no --namespace: everything from the pod.
    let args: Vec<String> = [
        "controller",
        "--identity",
        "c1",
        "--admin-listen",
        "127.0.0.1:0",
        "--lease-duration",
        "6s",
        "--renew-deadline",
        "4s",
        "--retry-period",
        "500ms",
    ]
    .map(String::from)
    .to_vec();
    let mut controller = pod
        .start(&dir.0, "controller", &args, "ringrift controller")
        .unwrap();
    until(
        "the controller to lead in its pod's namespace",
        Duration::from_secs(30),
        || async { (holder(&admin).await.as_deref() == Some("c1")).then_some(()) },
    )
    .await;
    let users = || -> Vec<(String, u16)> {
        audit(&std::fs::read_to_string(&audit_log).unwrap_or_default())
            .into_iter()
            .map(|a| (a.user, a.code))
            .collect()
    };
    assert!(
        users().iter().any(|(u, c)| u == FIRST.1 && *c == 200),
        "its requests carry the mounted token"
    );

    // The token rotates (a new file over the old, as the kubelet does): within a minute the
    // controller's requests carry the new one.
    rotate_token(controller.pid(), SECOND.0).unwrap();
    until(
        "requests with the rotated token",
        Duration::from_secs(90),
        || async {
            users()
                .iter()
                .any(|(u, c)| u == SECOND.1 && *c == 200)
                .then_some(())
        },
    )
    .await;
    // The old token stops working (the server restarts knowing only the new one): the
    // controller keeps leading, and is refused nothing.
    std::fs::write(&tokens, token_file(&[SECOND])).unwrap();
    let before = users().len();
    api.restart_on_same_address().unwrap();
    // Renewals go by (counted in the audit log, not slept through): more than a lease's worth.
    until(
        "a dozen accepted requests after the restart",
        Duration::from_secs(60),
        || async {
            (users()
                .split_off(before)
                .iter()
                .filter(|(u, c)| u == SECOND.1 && *c == 200)
                .count()
                >= 12)
                .then_some(())
        },
    )
    .await;
    assert!(
        controller.wait(Duration::from_millis(10)).is_err(),
        "still running:\n{}",
        controller.log()
    );
    assert_eq!(holder(&admin).await.as_deref(), Some("c1"));
    let after: Vec<(String, u16)> = users().split_off(before);
    assert!(after.iter().any(|(u, c)| u == SECOND.1 && *c == 200), "{after:?}");
    assert!(
        !after.iter().any(|(_, c)| *c == 401),
        "nothing refused after the rotation: {after:?}"
    );
}
