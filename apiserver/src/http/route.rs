//! Parsing request paths into what they address, following the Kubernetes API's URL layout:
//! `/api/v1/...` for the core group, `/apis/{group}/{version}/...` for the others, and
//! `namespaces/{ns}/` before namespaced resources.

/// What a request path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/version`
    Version,
    /// `/healthz`, `/livez`, `/readyz` (and their `/...` sub-checks).
    Health,
    /// `/metrics`: Prometheus metrics.
    Metrics,
    /// `/api`: the core group's versions.
    CoreVersions,
    /// `/apis`: every group.
    Groups,
    /// `/apis/{group}`: one group.
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`: the resources of a group version.
    Resources {
        /// Group, empty for core.
        group: String,
        /// Version.
        version: String,
    },
    /// `/openapi/v3`: the index of OpenAPI documents.
    OpenApiIndex,
    /// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`.
    OpenApi {
        /// Group, empty for core.
        group: String,
        /// Version.
        version: String,
    },
    /// A collection, an object or an object's subresource.
    Object(ObjectPath),
    /// `/ringrift/v1/cluster-info`: the cluster CA, for a box about to join.
    ClusterInfo,
    /// `/ringrift/v1/join`: a bootstrap token traded for an agent's certificate.
    Join,
    /// `/ringrift/v1/renew`: an agent's certificate, presented, traded for a new one.
    Renew,
    /// `/ringrift/v1/relay/next`: an agent asks for the next log request for it.
    RelayNext,
    /// `/ringrift/v1/relay/answer/{id}`: an agent sends a piece of a log.
    RelayAnswer(String),
}

/// The resource part of a path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectPath {
    /// Group, empty for core.
    pub group: String,
    /// Version.
    pub version: String,
    /// Namespace, when the path names one.
    pub namespace: Option<String>,
    /// Plural resource name.
    pub resource: String,
    /// Object name; none for a collection.
    pub name: Option<String>,
    /// Subresource, such as `status`.
    pub subresource: Option<String>,
}

/// Parses a request path (without the query string). None: no such route.
pub fn parse(path: &str) -> Option<Route> {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    match parts.as_slice() {
        ["version"] => Some(Route::Version),
        ["healthz" | "livez" | "readyz", ..] => Some(Route::Health),
        ["metrics"] => Some(Route::Metrics),
        ["ringrift", "v1", "cluster-info"] => Some(Route::ClusterInfo),
        ["ringrift", "v1", "join"] => Some(Route::Join),
        ["ringrift", "v1", "renew"] => Some(Route::Renew),
        ["ringrift", "v1", "relay", "next"] => Some(Route::RelayNext),
        ["ringrift", "v1", "relay", "answer", id] => Some(Route::RelayAnswer((*id).to_owned())),
        ["api"] => Some(Route::CoreVersions),
        ["apis"] => Some(Route::Groups),
        ["apis", group] => Some(Route::Group((*group).to_owned())),
        ["openapi", "v3"] => Some(Route::OpenApiIndex),
        ["openapi", "v3", "api", version] => Some(Route::OpenApi {
            group: String::new(),
            version: (*version).to_owned(),
        }),
        ["openapi", "v3", "apis", group, version] => Some(Route::OpenApi {
            group: (*group).to_owned(),
            version: (*version).to_owned(),
        }),
        ["api", version] => Some(Route::Resources {
            group: String::new(),
            version: (*version).to_owned(),
        }),
        ["apis", group, version] => Some(Route::Resources {
            group: (*group).to_owned(),
            version: (*version).to_owned(),
        }),
        ["api", version, rest @ ..] => object(String::new(), version, rest),
        ["apis", group, version, rest @ ..] => object((*group).to_owned(), version, rest),
        _ => None,
    }
}

fn object(group: String, version: &str, rest: &[&str]) -> Option<Route> {
    let (namespace, rest) = match rest {
        // `namespaces/{ns}/{resource}...` is a namespaced resource; `namespaces` and
        // `namespaces/{name}[/{sub}]` address Namespace objects themselves.
        ["namespaces", ns, resource, tail @ ..] => {
            if ["status", "finalize"].contains(resource) && tail.is_empty() {
                (None, rest)
            } else {
                (Some((*ns).to_owned()), &rest[2..])
            }
        }
        _ => (None, rest),
    };
    let (resource, name, subresource) = match rest {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => return None,
    };
    if resource.is_empty() || name.is_some_and(str::is_empty) {
        return None;
    }
    Some(Route::Object(ObjectPath {
        group,
        version: version.to_owned(),
        namespace,
        resource: resource.to_owned(),
        name: name.map(str::to_owned),
        subresource: subresource.map(str::to_owned),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::unnecessary_wraps)] // compared with parse(), which returns an Option
    fn obj(
        group: &str,
        ns: Option<&str>,
        resource: &str,
        name: Option<&str>,
        sub: Option<&str>,
    ) -> Option<Route> {
        Some(Route::Object(ObjectPath {
            group: group.into(),
            version: if group.is_empty() {
                "v1".into()
            } else {
                "v1alpha1".into()
            },
            namespace: ns.map(Into::into),
            resource: resource.into(),
            name: name.map(Into::into),
            subresource: sub.map(Into::into),
        }))
    }

    #[test]
    fn discovery_paths() {
        assert_eq!(parse("/version"), Some(Route::Version));
        assert_eq!(parse("/readyz/ping"), Some(Route::Health));
        assert_eq!(parse("/metrics"), Some(Route::Metrics));
        assert_eq!(parse("/api"), Some(Route::CoreVersions));
        assert_eq!(parse("/apis/"), Some(Route::Groups));
        assert_eq!(
            parse("/apis/ringrift.ai"),
            Some(Route::Group("ringrift.ai".into()))
        );
        assert_eq!(
            parse("/api/v1"),
            Some(Route::Resources {
                group: String::new(),
                version: "v1".into()
            })
        );
        assert_eq!(
            parse("/openapi/v3/apis/ringrift.ai/v1alpha1"),
            Some(Route::OpenApi {
                group: "ringrift.ai".into(),
                version: "v1alpha1".into()
            })
        );
    }

    #[test]
    fn namespaced_and_cluster_objects() {
        let g = "ringrift.ai";
        assert_eq!(
            parse("/apis/ringrift.ai/v1alpha1/selfplayjobs"),
            obj(g, None, "selfplayjobs", None, None)
        );
        assert_eq!(
            parse("/apis/ringrift.ai/v1alpha1/namespaces/default/selfplayjobs"),
            obj(g, Some("default"), "selfplayjobs", None, None)
        );
        assert_eq!(
            parse("/apis/ringrift.ai/v1alpha1/namespaces/default/tasks/t1/status"),
            obj(g, Some("default"), "tasks", Some("t1"), Some("status"))
        );
        assert_eq!(
            parse("/apis/ringrift.ai/v1alpha1/agents/a1"),
            obj(g, None, "agents", Some("a1"), None)
        );
    }

    #[test]
    fn namespaces_themselves() {
        assert_eq!(
            parse("/api/v1/namespaces"),
            obj("", None, "namespaces", None, None)
        );
        assert_eq!(
            parse("/api/v1/namespaces/team"),
            obj("", None, "namespaces", Some("team"), None)
        );
        assert_eq!(
            parse("/api/v1/namespaces/team/status"),
            obj("", None, "namespaces", Some("team"), Some("status"))
        );
        assert_eq!(
            parse("/api/v1/namespaces/team/configmaps/c"),
            obj("", Some("team"), "configmaps", Some("c"), None)
        );
    }

    #[test]
    fn nonsense_is_no_route() {
        assert_eq!(parse("/"), None);
        assert_eq!(parse("/apis/g/v/r/n/s/extra"), None);
        assert_eq!(parse("/nope"), None);
        assert_eq!(parse("/api/v1/namespaces/ns/configmaps/c/status/x"), None);
    }
}
