use serde_json::json;

use super::*;

fn attrs(
    verb: &str,
    group: &str,
    resource: &str,
    sub: Option<&str>,
    ns: Option<&str>,
    name: Option<&str>,
) -> Attributes {
    Attributes {
        verb: verb.into(),
        group: group.into(),
        resource: resource.into(),
        subresource: sub.map(Into::into),
        namespace: ns.map(Into::into),
        name: name.map(Into::into),
    }
}

fn agent() -> User {
    User {
        name: "system:serviceaccount:rr:agent".into(),
        groups: vec![
            "system:serviceaccounts".into(),
            "system:serviceaccounts:rr".into(),
        ],
    }
}

fn policy() -> Policy {
    Policy {
        cluster_roles: vec![json!({
            "metadata": {"name": "agent"},
            "rules": [
                {"apiGroups": ["ringrift.ai"], "resources": ["tasks"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["ringrift.ai"], "resources": ["tasks/status"], "verbs": ["patch"]},
                {"nonResourceURLs": ["/healthz"], "verbs": ["get"]}
            ]
        })],
        cluster_role_bindings: vec![json!({
            "metadata": {"name": "agent"},
            "roleRef": {"kind": "ClusterRole", "name": "agent"},
            "subjects": [{"kind": "ServiceAccount", "name": "agent", "namespace": "rr"}]
        })],
        roles: vec![json!({
            "metadata": {"name": "leases", "namespace": "rr"},
            "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "update"], "resourceNames": ["agent-a"]}]
        })],
        role_bindings: vec![json!({
            "metadata": {"name": "leases", "namespace": "rr"},
            "roleRef": {"kind": "Role", "name": "leases"},
            "subjects": [{"kind": "ServiceAccount", "name": "agent"}]
        })],
    }
}

#[test]
fn verbs_follow_the_method_and_path() {
    assert_eq!(verb("GET", true, false), "get");
    assert_eq!(verb("GET", false, false), "list");
    assert_eq!(verb("GET", false, true), "watch");
    assert_eq!(verb("POST", false, false), "create");
    assert_eq!(verb("PUT", true, false), "update");
    assert_eq!(verb("PATCH", true, false), "patch");
    assert_eq!(verb("DELETE", true, false), "delete");
    assert_eq!(verb("DELETE", false, false), "deletecollection");
}

#[test]
fn a_cluster_role_binding_grants_its_rules_everywhere() {
    let p = policy();
    assert!(p.allows(
        &agent(),
        &attrs("watch", "ringrift.ai", "tasks", None, None, None)
    ));
    assert!(p.allows(
        &agent(),
        &attrs("get", "ringrift.ai", "tasks", None, Some("jobs"), Some("t"))
    ));
    assert!(p.allows(
        &agent(),
        &attrs(
            "patch",
            "ringrift.ai",
            "tasks",
            Some("status"),
            Some("jobs"),
            Some("t")
        )
    ));
}

#[test]
fn the_main_resource_does_not_grant_its_subresources_or_the_reverse() {
    let p = policy();
    assert!(!p.allows(
        &agent(),
        &attrs("patch", "ringrift.ai", "tasks", None, Some("jobs"), Some("t"))
    ));
    assert!(!p.allows(
        &agent(),
        &attrs(
            "get",
            "ringrift.ai",
            "tasks",
            Some("status"),
            Some("jobs"),
            Some("t")
        )
    ));
}

#[test]
fn verbs_groups_and_resources_must_all_match() {
    let p = policy();
    assert!(!p.allows(
        &agent(),
        &attrs("delete", "ringrift.ai", "tasks", None, Some("jobs"), Some("t"))
    ));
    assert!(!p.allows(
        &agent(),
        &attrs("get", "", "tasks", None, Some("jobs"), Some("t"))
    ));
    assert!(!p.allows(
        &agent(),
        &attrs("get", "ringrift.ai", "models", None, Some("jobs"), Some("m"))
    ));
}

#[test]
fn a_role_binding_grants_only_in_its_namespace_and_names() {
    let p = policy();
    let lease = |ns: &str, name: &str| {
        attrs(
            "update",
            "coordination.k8s.io",
            "leases",
            None,
            Some(ns),
            Some(name),
        )
    };
    assert!(p.allows(&agent(), &lease("rr", "agent-a")));
    assert!(
        !p.allows(&agent(), &lease("rr", "agent-b")),
        "resourceNames restrict"
    );
    assert!(
        !p.allows(&agent(), &lease("other", "agent-a")),
        "another namespace"
    );
    // A ServiceAccount subject without a namespace is the binding's namespace.
    let mut elsewhere = agent();
    elsewhere.name = "system:serviceaccount:other:agent".into();
    assert!(!p.allows(&elsewhere, &lease("rr", "agent-a")));
}

#[test]
fn another_user_gets_nothing() {
    let p = policy();
    let bob = User {
        name: "bob".into(),
        groups: vec![],
    };
    assert!(!p.allows(&bob, &attrs("get", "ringrift.ai", "tasks", None, None, None)));
}

#[test]
fn wildcards_and_group_and_user_subjects() {
    let p = Policy {
        cluster_roles: vec![json!({"metadata": {"name": "all"}, "rules": [
            {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["*"]}
        ]})],
        cluster_role_bindings: vec![
            json!({"metadata": {"name": "g"}, "roleRef": {"kind": "ClusterRole", "name": "all"},
                   "subjects": [{"kind": "Group", "name": "ops"}]}),
            json!({"metadata": {"name": "u"}, "roleRef": {"kind": "ClusterRole", "name": "all"},
                   "subjects": [{"kind": "User", "name": "carol"}]}),
        ],
        ..Policy::default()
    };
    let ops = User {
        name: "dave".into(),
        groups: vec!["ops".into()],
    };
    let carol = User {
        name: "carol".into(),
        groups: vec![],
    };
    let status = attrs(
        "update",
        "apps",
        "deployments",
        Some("status"),
        Some("x"),
        Some("d"),
    );
    assert!(p.allows(&ops, &status));
    assert!(p.allows(&carol, &status));
    assert!(!p.allows(
        &ops,
        &attrs("update", "apps", "deployments", None, Some("x"), Some("d"))
    ));
}

#[test]
fn the_refusal_names_the_user_verb_resource_and_namespace() {
    let m = forbidden_message(
        &agent(),
        &attrs("delete", "ringrift.ai", "tasks", None, Some("jobs"), Some("t")),
    );
    assert_eq!(
        m,
        "tasks \"t\" is forbidden: User \"system:serviceaccount:rr:agent\" cannot delete resource \"tasks\" in API group \"ringrift.ai\" in the namespace \"jobs\""
    );
}

#[test]
fn non_resource_paths_are_allowed_by_cluster_roles_only() {
    let monitoring = User {
        name: "prometheus".into(),
        groups: vec!["system:monitoring".into()],
    };
    let policy = Policy {
        cluster_roles: vec![
            json!({"metadata": {"name": "monitoring"},
                   "rules": [{"nonResourceURLs": ["/metrics", "/debug/*"], "verbs": ["get"]}]}),
            json!({"metadata": {"name": "everything"}, "rules": [{"nonResourceURLs": ["*"], "verbs": ["*"]}]}),
        ],
        cluster_role_bindings: vec![
            json!({"metadata": {"name": "m"}, "roleRef": {"kind": "ClusterRole", "name": "monitoring"},
                   "subjects": [{"kind": "Group", "name": "system:monitoring"}]}),
            json!({"metadata": {"name": "e"}, "roleRef": {"kind": "ClusterRole", "name": "everything"},
                   "subjects": [{"kind": "User", "name": "root"}]}),
        ],
        ..Policy::default()
    };
    assert!(policy.allows_path(&monitoring, "get", "/metrics"));
    assert!(policy.allows_path(&monitoring, "get", "/debug/pprof"));
    assert!(!policy.allows_path(&monitoring, "post", "/metrics"));
    assert!(!policy.allows_path(&monitoring, "get", "/metrics/extra"));
    assert!(!policy.allows_path(&agent(), "get", "/metrics"));
    let root = User {
        name: "root".into(),
        groups: vec![],
    };
    assert!(policy.allows_path(&root, "delete", "/anything"));
    assert_eq!(
        forbidden_path_message(&agent(), "get", "/metrics"),
        r#"forbidden: User "system:serviceaccount:rr:agent" cannot get path "/metrics""#
    );
}
