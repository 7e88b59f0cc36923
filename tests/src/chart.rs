//! The Helm chart as the tests see it: rendered with the real helm, read back as objects, its
//! containers' command lines expanded as the kubelet would, and its RBAC rules as triples.

// Test harness: a failed unwrap is a failed test with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::missing_panics_doc
)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use ringrift_apiserver::auth::User;
use ringrift_apiserver::auth::rbac::Policy;
use serde_json::Value;

use crate::{Output, repo_root, run, tool, yaml_documents};

/// The release name and namespace the tests render the chart with.
pub const RELEASE: &str = "rr";
/// See [`RELEASE`].
pub const NAMESPACE: &str = "ringrift";

/// Runs the real helm with `args`.
pub fn helm(args: &[&str]) -> Output {
    run(Command::new(tool("helm").unwrap()).args(args)).unwrap()
}

/// `helm template` of the chart as release [`RELEASE`] in [`NAMESPACE`], with extra arguments
/// (`--set k=v`, `-f file`).
///
/// # Errors
/// helm's error output, when it refuses the values or the chart.
pub fn template(extra: &[&str]) -> Result<String, String> {
    let chart = repo_root().join("charts/ringrift");
    let mut args = vec![
        "template",
        RELEASE,
        chart.to_str().unwrap(),
        "--namespace",
        NAMESPACE,
    ];
    args.extend_from_slice(extra);
    let out = helm(&args);
    if out.success {
        Ok(out.stdout)
    } else {
        Err(out.stderr)
    }
}

/// The rendered objects.
pub fn objects(manifests: &str) -> Vec<Value> {
    yaml_documents(manifests)
        .unwrap()
        .into_iter()
        .filter(Value::is_object)
        .collect()
}

/// The one object of `kind` whose `app.kubernetes.io/component` is `component`.
pub fn object<'a>(objects: &'a [Value], kind: &str, component: &str) -> &'a Value {
    let found: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == kind && o["metadata"]["labels"]["app.kubernetes.io/component"] == component)
        .collect();
    assert_eq!(found.len(), 1, "one {kind} of the {component}");
    found[0]
}

/// Expands `$(VAR)` references as the kubelet does in `args` (unknown ones stay as written).
pub fn expand(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("$(") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find(')') {
            Some(end) if env.contains_key(&after[..end]) => {
                out.push_str(&env[&after[..end]]);
                rest = &after[end + 1..];
            }
            _ => {
                out.push_str("$(");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A container's environment: literal values, and `fieldRef`s from `fields` (by field path);
/// a `fieldRef` the test does not supply fails the test.
pub fn container_env(container: &Value, fields: &BTreeMap<&str, String>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for var in container["env"].as_array().into_iter().flatten() {
        let name = var["name"].as_str().unwrap().to_owned();
        let value = if let Some(v) = var["value"].as_str() {
            v.to_owned()
        } else if let Some(path) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            fields
                .get(path)
                .unwrap_or_else(|| panic!("no test value for fieldRef {path} (env {name})"))
                .clone()
        } else {
            panic!("env {name}: unsupported source {var}");
        };
        env.insert(name, value);
    }
    env
}

/// The pod template's first container in a Deployment or DaemonSet.
pub fn container(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]["containers"][0]
}

/// A Secret's data, decoded.
pub fn secret_data(secret: &Value) -> BTreeMap<String, Vec<u8>> {
    secret["data"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), base64_decode(v.as_str().unwrap())))
        .collect()
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut bits, mut count) = (0u32, 0u32);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = ALPHABET
            .iter()
            .position(|a| *a == c)
            .unwrap_or_else(|| panic!("not base64: {text}"));
        bits = (bits << 6) | u32::try_from(v).unwrap();
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(u8::try_from((bits >> count) & 0xff).unwrap());
        }
    }
    out
}

/// An API call as RBAC sees it: verb, API group, resource (with `/subresource`).
pub type Call = (String, String, String);

/// Every (verb, group, resource) the chart's Roles and ClusterRoles grant the ServiceAccount
/// `name` of [`NAMESPACE`]. Fails the test on wildcards and resourceNames (which this
/// comparison does not model).
pub fn granted(objects: &[Value], service_account: &str) -> BTreeSet<Call> {
    let of = |kind: &str| -> Vec<Value> { objects.iter().filter(|o| o["kind"] == kind).cloned().collect() };
    let policy = Policy {
        cluster_roles: of("ClusterRole"),
        cluster_role_bindings: of("ClusterRoleBinding"),
        roles: of("Role"),
        role_bindings: of("RoleBinding"),
    };
    let user = User {
        name: format!("system:serviceaccount:{NAMESPACE}:{service_account}"),
        groups: Vec::new(),
    };
    let mut calls = BTreeSet::new();
    for rule in policy.rules_for(&user, Some(NAMESPACE)) {
        assert!(rule.resource_names.is_empty(), "resourceNames in {rule:?}");
        for verb in &rule.verbs {
            for group in &rule.api_groups {
                for resource in &rule.resources {
                    assert!(
                        ![verb, group, resource].iter().any(|s| s.contains('*')),
                        "a wildcard in {rule:?}"
                    );
                    calls.insert((verb.clone(), group.clone(), resource.clone()));
                }
            }
        }
    }
    calls
}

/// One line of the API server's audit log.
#[derive(Debug, Clone)]
pub struct Audited {
    /// The user.
    pub user: String,
    /// The client's User-Agent.
    pub user_agent: String,
    /// What it asked.
    pub call: Call,
    /// The namespace, if any.
    pub namespace: Option<String>,
    /// The response code.
    pub code: u16,
}

/// Reads the audit log.
pub fn audit(text: &str) -> Vec<Audited> {
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
            let resource = match v["subresource"].as_str() {
                Some(sub) => format!("{}/{sub}", s("resource")),
                None => s("resource"),
            };
            Audited {
                user: s("user"),
                user_agent: s("userAgent"),
                call: (s("verb"), s("apiGroup"), resource),
                namespace: v["namespace"].as_str().map(str::to_owned),
                code: u16::try_from(v["code"].as_u64().unwrap()).unwrap(),
            }
        })
        .collect()
}
