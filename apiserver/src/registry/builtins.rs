//! The built-in kinds the server stores as objects.

use super::ResourceType;

/// A built-in kind with no selectable fields beyond name and namespace.
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short: &[&str],
    status: bool,
) -> ResourceType {
    ResourceType {
        group: group.into(),
        version: version.into(),
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        namespaced,
        short_names: short.iter().map(|s| (*s).to_owned()).collect(),
        categories: Vec::new(),
        status_subresource: status,
        // The kinds whose strategies set metadata.generation upstream: those with a spec a
        // controller reconciles. ConfigMaps, Secrets, RBAC objects and the rest have none.
        generation: matches!(
            kind,
            "CustomResourceDefinition" | "Deployment" | "DaemonSet" | "PodDisruptionBudget" | "NetworkPolicy"
        ),
        review: false,
        scale: None,
        terminating: false,
        storage_version: version.into(),
        selectable_fields: Vec::new(),
        validator: None,
        printer_columns: Vec::new(),
    }
}

/// An `Event` kind (`group` "" for core/v1, `events.k8s.io`), selectable by `fields` besides
/// name and namespace.
fn events(group: &str, fields: &[&str]) -> ResourceType {
    ResourceType {
        selectable_fields: fields.iter().map(|f| (*f).to_owned()).collect(),
        ..builtin(group, "v1", "events", "Event", true, &["ev"], false)
    }
}

/// The fields `kubectl describe` selects core Events by, and a few more.
const CORE_EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "type",
];

/// The same for `events.k8s.io` Events.
const EVENT_FIELDS: &[&str] = &[
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "reason",
    "reportingController",
    "type",
];

/// A review kind: POST only, answered by the server from its RBAC policy and the request's
/// user (`kubectl auth can-i`, `kubectl auth whoami`).
fn review(group: &str, plural: &str, kind: &str) -> ResourceType {
    ResourceType {
        review: true,
        generation: false,
        ..builtin(group, "v1", plural, kind, false, &[], false)
    }
}

/// The built-in kinds: those this system and its chart use, stored as objects, and the reviews.
pub(super) fn builtins() -> Vec<ResourceType> {
    vec![
        review(
            "authorization.k8s.io",
            "selfsubjectaccessreviews",
            "SelfSubjectAccessReview",
        ),
        review(
            "authorization.k8s.io",
            "selfsubjectrulesreviews",
            "SelfSubjectRulesReview",
        ),
        review(
            "authorization.k8s.io",
            "subjectaccessreviews",
            "SubjectAccessReview",
        ),
        review("authentication.k8s.io", "selfsubjectreviews", "SelfSubjectReview"),
        builtin("", "v1", "namespaces", "Namespace", false, &["ns"], true),
        builtin("", "v1", "configmaps", "ConfigMap", true, &["cm"], false),
        // Selectable by `type`, as upstream (`kubectl get secrets --field-selector
        // type=bootstrap.kubernetes.io/token` lists the join tokens).
        ResourceType {
            selectable_fields: vec!["type".to_owned()],
            ..builtin("", "v1", "secrets", "Secret", true, &[], false)
        },
        events("", CORE_EVENT_FIELDS),
        builtin(
            "",
            "v1",
            "serviceaccounts",
            "ServiceAccount",
            true,
            &["sa"],
            false,
        ),
        builtin("", "v1", "services", "Service", true, &["svc"], true),
        events("events.k8s.io", EVENT_FIELDS),
        builtin("coordination.k8s.io", "v1", "leases", "Lease", true, &[], false),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            &["crd", "crds"],
            true,
        ),
        builtin("apps", "v1", "deployments", "Deployment", true, &["deploy"], true),
        builtin("apps", "v1", "daemonsets", "DaemonSet", true, &["ds"], true),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "roles",
            "Role",
            true,
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            "RoleBinding",
            true,
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterroles",
            "ClusterRole",
            false,
            &[],
            false,
        ),
        builtin(
            "rbac.authorization.k8s.io",
            "v1",
            "clusterrolebindings",
            "ClusterRoleBinding",
            false,
            &[],
            false,
        ),
        builtin(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            true,
            &["pdb"],
            true,
        ),
        builtin(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            true,
            &["netpol"],
            false,
        ),
    ]
}
