//! What the chart lets the components do: its RBAC rules are the ones the code declares
//! (`ringrift_crds::rbac`, which `ringrift up` grants too), and its optional
//! ValidatingAdmissionPolicy holds each agent to its own node's objects, its CEL evaluated here
//! against an agent's requests on its own and other nodes' objects, a token without a node name,
//! and another user's.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ringrift_e2e::chart::{NAMESPACE, object, objects, template};
use serde_json::Value;

#[test]
fn the_chart_grants_exactly_the_rules_the_code_declares() {
    let objs = objects(&template(&[]).unwrap());
    for (component, rules) in [
        ("controller", ringrift_crds::rbac::controller()),
        ("agent", ringrift_crds::rbac::agent()),
    ] {
        let rendered = |kind: &str| object(&objs, kind, component)["rules"].clone();
        assert_eq!(
            rendered("ClusterRole"),
            serde_json::to_value(&rules.cluster).unwrap(),
            "the {component}'s ClusterRole is ringrift_crds::rbac::{component}().cluster"
        );
        assert_eq!(
            rendered("Role"),
            serde_json::to_value(&rules.namespaced).unwrap(),
            "the {component}'s Role is ringrift_crds::rbac::{component}().namespaced"
        );
    }
    // With the dashboard on, the controller may list events too, and only then.
    let dashboard = objects(
        &template(&[
            "--set",
            "controller.dashboard.enabled=true",
            "--set",
            "controller.tls.secretName=admin-tls",
        ])
        .unwrap(),
    );
    let mut rules = ringrift_crds::rbac::controller().cluster;
    rules.extend(ringrift_crds::rbac::controller_dashboard());
    assert_eq!(
        object(&dashboard, "ClusterRole", "controller")["rules"],
        serde_json::to_value(&rules).unwrap()
    );
    // With Kueue on, the controller's ClusterRole has its Workload rules too, and only then.
    let kueue = objects(&template(&["--set", "controller.kueue.enabled=true"]).unwrap());
    let mut rules = ringrift_crds::rbac::controller().cluster;
    rules.extend(ringrift_crds::rbac::controller_kueue());
    assert_eq!(
        object(&kueue, "ClusterRole", "controller")["rules"],
        serde_json::to_value(&rules).unwrap()
    );
}

/// Admits one request through a rendered ValidatingAdmissionPolicy as the API server would:
/// its match condition, its variables in order, then each validation; the message of the first
/// that fails.
fn admit(policy: &Value, request: &Value, object: &Value, old: &Value) -> Result<(), String> {
    use kube_cel::KubeCelExt as _;
    use kube_cel::cel::{Context, Program};
    let spec = &policy["spec"];
    let mut ctx = Context::default().with_all();
    ctx.add_variable("request", request.clone()).unwrap();
    ctx.add_variable("object", object.clone()).unwrap();
    ctx.add_variable("oldObject", old.clone()).unwrap();
    let eval = |ctx: &Context, expression: &str| {
        let program = Program::compile(expression).unwrap_or_else(|e| panic!("{expression}: {e}"));
        program
            .execute(ctx)
            .unwrap_or_else(|e| panic!("{expression}: {e}"))
    };
    for condition in spec["matchConditions"].as_array().unwrap() {
        if eval(&ctx, condition["expression"].as_str().unwrap()) != true.into() {
            return Ok(());
        }
    }
    let mut variables = std::collections::HashMap::new();
    for v in spec["variables"].as_array().unwrap() {
        let value = eval(&ctx, v["expression"].as_str().unwrap());
        variables.insert(v["name"].as_str().unwrap().to_owned(), value);
        ctx.add_variable_from_value("variables", kube_cel::cel::Value::from(variables.clone()));
    }
    for validation in spec["validations"].as_array().unwrap() {
        if eval(&ctx, validation["expression"].as_str().unwrap()) != true.into() {
            return Err(match validation["messageExpression"].as_str() {
                Some(m) => match eval(&ctx, m) {
                    kube_cel::cel::Value::String(s) => s.to_string(),
                    other => format!("{other:?}"),
                },
                None => validation["message"].as_str().unwrap_or_default().to_owned(),
            });
        }
    }
    Ok(())
}

#[test]
fn the_node_restriction_policy_holds_each_agent_to_its_own_node() {
    let objs = objects(
        &template(&[
            "--kube-version",
            "1.33.0",
            "--set",
            "agent.nodeRestrictionPolicy.enabled=true",
        ])
        .unwrap(),
    );
    let policy = object(&objs, "ValidatingAdmissionPolicy", "agent");
    let binding = object(&objs, "ValidatingAdmissionPolicyBinding", "agent");
    assert_eq!(binding["spec"]["policyName"], policy["metadata"]["name"]);
    assert_eq!(binding["spec"]["validationActions"], serde_json::json!(["Deny"]));
    let agent_sa = object(&objs, "ServiceAccount", "agent")["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let request = |user: &str, node: Option<&str>, op: &str, resource: &str, sub: &str| {
        let extra = node.map_or_else(
            || serde_json::json!({}),
            |n| serde_json::json!({"authentication.kubernetes.io/node-name": [n]}),
        );
        serde_json::json!({"operation": op, "subResource": sub,
            "resource": {"group": "", "version": "v1", "resource": resource},
            "userInfo": {"username": user, "extra": extra}})
    };
    let agent = format!("system:serviceaccount:{NAMESPACE}:{agent_sa}");
    let named = |name: &str| serde_json::json!({"metadata": {"name": name}});
    let task = |bound: &str| serde_json::json!({"metadata": {"name": "t"}, "spec": {"agent": bound}});
    let null = Value::Null;
    let on = |op, resource, sub, object: &Value, old: &Value| {
        admit(
            policy,
            &request(&agent, Some("node-1"), op, resource, sub),
            object,
            old,
        )
    };
    // Its own objects.
    assert_eq!(on("CREATE", "agents", "", &named("node-1"), &null), Ok(()));
    assert_eq!(
        on("UPDATE", "agents", "status", &named("node-1"), &named("node-1")),
        Ok(())
    );
    assert_eq!(
        on(
            "UPDATE",
            "leases",
            "",
            &named("agent-node-1"),
            &named("agent-node-1")
        ),
        Ok(())
    );
    assert_eq!(on("DELETE", "agents", "", &null, &named("node-1")), Ok(()));
    assert_eq!(
        on("UPDATE", "tasks", "status", &task("node-1"), &task("node-1")),
        Ok(())
    );
    // Another node's.
    let e = on("UPDATE", "agents", "status", &named("node-2"), &named("node-2")).unwrap_err();
    assert!(
        e.contains("node-1 may change only its own Agent, not node-2"),
        "{e}"
    );
    let e = on("CREATE", "leases", "", &named("ringrift-controller"), &null).unwrap_err();
    assert!(e.contains("heartbeat Lease agent-node-1"), "{e}");
    let e = on("UPDATE", "tasks", "status", &task("node-2"), &task("node-2")).unwrap_err();
    assert!(e.contains("Tasks bound to it"), "{e}");
    assert!(
        on("UPDATE", "tasks", "", &task("node-1"), &task("node-1")).is_err(),
        "only the status"
    );
    // A token without a node name is refused; other users are not the policy's business.
    let e = admit(
        policy,
        &request(&agent, None, "CREATE", "agents", ""),
        &named("x"),
        &null,
    )
    .unwrap_err();
    assert!(e.contains("carries no node name"), "{e}");
    let controller = format!("system:serviceaccount:{NAMESPACE}:rr-ringrift-controller");
    assert_eq!(
        admit(
            policy,
            &request(&controller, None, "UPDATE", "agents", "status"),
            &named("node-2"),
            &named("node-2")
        ),
        Ok(())
    );
    // Older clusters are told what is missing.
    let e = template(&[
        "--kube-version",
        "1.29.0",
        "--set",
        "agent.nodeRestrictionPolicy.enabled=true",
    ])
    .expect_err("refused before 1.30");
    assert!(
        e.contains("nodeRestrictionPolicy needs Kubernetes >= 1.30"),
        "{e}"
    );
}
