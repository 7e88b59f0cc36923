//! Role-based access control, as Kubernetes evaluates it: a request is allowed when some binding
//! that names the user (or one of its groups, or its ServiceAccount) refers to a role with a rule
//! that matches the request's verb, API group, resource (with subresource) and name. Pure: the
//! caller supplies the roles and bindings.

use serde_json::Value;

use super::User;

/// What a request asks to do, as RBAC sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// API group, empty for core.
    pub group: String,
    /// Plural resource.
    pub resource: String,
    /// Subresource, such as `status`.
    pub subresource: Option<String>,
    /// Namespace; none for cluster-scoped resources and requests across every namespace.
    pub namespace: Option<String>,
    /// Object name, when the request names one.
    pub name: Option<String>,
}

impl Attributes {
    /// `resource` or `resource/subresource`, as RBAC rules name it.
    pub fn resource_path(&self) -> String {
        match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.clone(),
        }
    }
}

/// The RBAC verb of an HTTP request on a resource path.
pub fn verb(method: &str, named: bool, watch: bool) -> &'static str {
    match (method, named) {
        ("GET" | "HEAD", _) if watch => "watch",
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

/// One rule of a Role or ClusterRole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    /// API groups; `*` is any.
    pub api_groups: Vec<String>,
    /// Resources (`tasks`, `tasks/status`, `*`, `*/status`).
    pub resources: Vec<String>,
    /// Verbs; `*` is any.
    pub verbs: Vec<String>,
    /// Object names; empty is any.
    pub resource_names: Vec<String>,
}

/// The strings of a list field (others skipped; none when missing).
pub(crate) fn strings(value: &Value, field: &str) -> Vec<String> {
    value[field]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

impl Rule {
    /// The rules of a Role or ClusterRole object (non-resource URL rules are left out).
    pub fn of_role(role: &Value) -> Vec<Self> {
        role["rules"]
            .as_array()
            .map(|rules| {
                rules
                    .iter()
                    .filter(|r| r["resources"].is_array())
                    .map(|r| Self {
                        api_groups: strings(r, "apiGroups"),
                        resources: strings(r, "resources"),
                        verbs: strings(r, "verbs"),
                        resource_names: strings(r, "resourceNames"),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the rule allows the request.
    pub fn allows(&self, a: &Attributes) -> bool {
        let any = |list: &[String], want: &str| list.iter().any(|x| x == "*" || x == want);
        let resource = self.resources.iter().any(|r| {
            r == "*"
                || *r == a.resource_path()
                || (a.subresource.is_none() && *r == a.resource)
                || a.subresource.as_ref().is_some_and(|sub| *r == format!("*/{sub}"))
        });
        let name = self.resource_names.is_empty()
            || a.name.as_ref().is_some_and(|n| self.resource_names.contains(n));
        any(&self.verbs, &a.verb) && any(&self.api_groups, &a.group) && resource && name
    }
}

/// Whether a binding's subjects include the user.
fn binds(binding: &Value, user: &User) -> bool {
    let binding_ns = binding["metadata"]["namespace"].as_str();
    binding["subjects"].as_array().is_some_and(|subjects| {
        subjects.iter().any(|s| {
            let name = s["name"].as_str().unwrap_or_default();
            match s["kind"].as_str() {
                Some("User") => name == user.name,
                Some("Group") => user.groups.iter().any(|g| g == name),
                Some("ServiceAccount") => {
                    let ns = s["namespace"].as_str().or(binding_ns).unwrap_or_default();
                    user.name == format!("system:serviceaccount:{ns}:{name}")
                }
                _ => false,
            }
        })
    })
}

/// The roles and bindings RBAC reads, as stored objects.
#[derive(Debug, Default, Clone)]
pub struct Policy {
    /// Every ClusterRole.
    pub cluster_roles: Vec<Value>,
    /// Every ClusterRoleBinding.
    pub cluster_role_bindings: Vec<Value>,
    /// The Roles of the request's namespace.
    pub roles: Vec<Value>,
    /// The RoleBindings of the request's namespace.
    pub role_bindings: Vec<Value>,
}

fn named<'a>(objects: &'a [Value], name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["metadata"]["name"].as_str() == Some(name))
}

impl Policy {
    /// Every rule that applies to `user` in `namespace` (none: cluster-wide rules only).
    pub fn rules_for(&self, user: &User, namespace: Option<&str>) -> Vec<Rule> {
        let mut rules = Vec::new();
        for binding in self.cluster_role_bindings.iter().filter(|b| binds(b, user)) {
            if binding["roleRef"]["kind"] == "ClusterRole"
                && let Some(role) = named(
                    &self.cluster_roles,
                    binding["roleRef"]["name"].as_str().unwrap_or_default(),
                )
            {
                rules.extend(Rule::of_role(role));
            }
        }
        let Some(namespace) = namespace else {
            return rules;
        };
        for binding in self
            .role_bindings
            .iter()
            .filter(|b| b["metadata"]["namespace"].as_str() == Some(namespace) && binds(b, user))
        {
            let name = binding["roleRef"]["name"].as_str().unwrap_or_default();
            let role = match binding["roleRef"]["kind"].as_str() {
                Some("ClusterRole") => named(&self.cluster_roles, name),
                Some("Role") => self.roles.iter().find(|r| {
                    r["metadata"]["namespace"].as_str() == Some(namespace)
                        && r["metadata"]["name"].as_str() == Some(name)
                }),
                _ => None,
            };
            if let Some(role) = role {
                rules.extend(Rule::of_role(role));
            }
        }
        rules
    }

    /// Whether `user` may `verb` the non-resource path `path` (such as `get` `/metrics`): a
    /// ClusterRole bound cluster-wide with a `nonResourceURLs` rule that names the path, or a
    /// prefix of it ending in `*`, or `*`.
    pub fn allows_path(&self, user: &User, verb: &str, path: &str) -> bool {
        let matches = |pattern: &String| {
            pattern == path
                || pattern
                    .strip_suffix('*')
                    .is_some_and(|prefix| path.starts_with(prefix))
        };
        self.non_resource_rules_for(user)
            .iter()
            .any(|(verbs, urls)| verbs.iter().any(|v| v == "*" || v == verb) && urls.iter().any(matches))
    }

    /// The non-resource rules (verbs, URLs) of the ClusterRoles bound to `user` cluster-wide.
    pub fn non_resource_rules_for(&self, user: &User) -> Vec<(Vec<String>, Vec<String>)> {
        self.cluster_role_bindings
            .iter()
            .filter(|b| b["roleRef"]["kind"] == "ClusterRole" && binds(b, user))
            .filter_map(|b| {
                named(
                    &self.cluster_roles,
                    b["roleRef"]["name"].as_str().unwrap_or_default(),
                )
            })
            .flat_map(|role| role["rules"].as_array().cloned().unwrap_or_default())
            .filter(|rule| rule["nonResourceURLs"].is_array())
            .map(|rule| (strings(&rule, "verbs"), strings(&rule, "nonResourceURLs")))
            .collect()
    }

    /// Whether `user` may do what `attributes` ask.
    pub fn allows(&self, user: &User, attributes: &Attributes) -> bool {
        self.rules_for(user, attributes.namespace.as_deref())
            .iter()
            .any(|r| r.allows(attributes))
    }
}

/// The message of a refused non-resource request, worded as Kubernetes words it.
pub fn forbidden_path_message(user: &User, verb: &str, path: &str) -> String {
    format!("forbidden: User \"{}\" cannot {verb} path \"{path}\"", user.name)
}

/// The message of a refusal, worded as Kubernetes words it.
pub fn forbidden_message(user: &User, a: &Attributes) -> String {
    let scope = match &a.namespace {
        Some(ns) => format!(" in the namespace \"{ns}\""),
        None => " at the cluster scope".to_owned(),
    };
    let name = a.name.as_ref().map(|n| format!(" \"{n}\"")).unwrap_or_default();
    format!(
        "{}{name} is forbidden: User \"{}\" cannot {} resource \"{}\" in API group \"{}\"{scope}",
        a.resource,
        user.name,
        a.verb,
        a.resource_path(),
        a.group
    )
}

#[cfg(test)]
mod tests;
