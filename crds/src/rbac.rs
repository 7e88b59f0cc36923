//! What the controller and the agent may do through the API: the rules of their roles, once.
//! The Helm chart's `rbac.yaml` spells the same rules in YAML (a test checks they are equal),
//! `ringrift up` creates them from here, and the chart install test checks them against every
//! call the components make. Cluster-wide rules go in a ClusterRole; the Lease rules in a Role
//! of the controller's namespace.

use k8s_openapi::api::rbac::v1::PolicyRule;

/// A component's rules.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Rules of its ClusterRole.
    pub cluster: Vec<PolicyRule>,
    /// Rules of its Role in the controller's namespace (the Leases).
    pub namespaced: Vec<PolicyRule>,
}

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

/// What the controller needs beyond [`controller`] with `--kueue`: Kueue's Workloads, one
/// created per queued job, and their status (`Finished`). The chart adds them to its
/// ClusterRole only when `controller.kueue.enabled`.
pub fn controller_kueue() -> Vec<PolicyRule> {
    vec![
        rule("kueue.x-k8s.io", &["workloads"], &["list", "watch", "create"]),
        rule("kueue.x-k8s.io", &["workloads/status"], &["update"]),
    ]
}

/// What the controller needs beyond [`controller`] to serve its web dashboard
/// (`--dashboard-listen`): the recent events it shows. `ringrift up`, which serves the
/// dashboard, grants it.
pub fn controller_dashboard() -> Vec<PolicyRule> {
    vec![rule("", &["events"], &["list"])]
}

/// The controller's: it reads everything through watches, creates and deletes jobs, creates
/// Tasks and Models, writes the status of what it reconciles, marks lapsed agents, records
/// Events, waits for the CRDs, and holds the leader Lease (reading the agents' heartbeats).
pub fn controller() -> Rules {
    let g = crate::GROUP;
    Rules {
        cluster: vec![
            rule(
                g,
                &["selfplayjobs", "trainingjobs", "gauntletjobs"],
                &["list", "watch", "create", "delete"],
            ),
            rule(
                g,
                &[
                    "selfplayjobs/status",
                    "trainingjobs/status",
                    "gauntletjobs/status",
                    "trainingloops/status",
                    "models/status",
                ],
                &["update"],
            ),
            rule(g, &["trainingloops"], &["list", "watch"]),
            rule(g, &["models"], &["list", "watch", "create"]),
            rule(g, &["tasks"], &["list", "watch", "create", "patch"]),
            rule(g, &["tasks/status"], &["patch"]),
            rule(g, &["agents"], &["list", "watch"]),
            rule(g, &["agents/status"], &["patch"]),
            rule("", &["events"], &["create", "patch"]),
            rule("apiextensions.k8s.io", &["customresourcedefinitions"], &["get"]),
        ],
        namespaced: vec![rule(
            "coordination.k8s.io",
            &["leases"],
            &["get", "list", "watch", "create", "update"],
        )],
    }
}

/// The agent's: it watches its Tasks and writes their status, registers its Agent (reading it
/// first, to keep the conditions the controller writes beside its own, such as `Reachable`;
/// patching its zone label when `--zone` changed; and lists the others: peers, their
/// endpoints, fingerprints, zones and reachability), reads what retention must keep, reads its
/// Node's zone label (`--zone-node-label`, as the chart runs it), and renews its heartbeat
/// Lease.
pub fn agent() -> Rules {
    let g = crate::GROUP;
    Rules {
        cluster: vec![
            rule(g, &["tasks"], &["get", "list", "watch"]),
            rule(g, &["tasks/status"], &["update"]),
            rule(g, &["agents"], &["get", "list", "create", "patch"]),
            rule(g, &["agents/status"], &["patch"]),
            rule(
                g,
                &["models", "selfplayjobs", "trainingjobs", "trainingloops"],
                &["list"],
            ),
            rule("", &["nodes"], &["get"]),
        ],
        namespaced: vec![rule("coordination.k8s.io", &["leases"], &["create", "patch"])],
    }
}
