//! Discovery documents: `/version`, `/api`, `/apis`, group and group-version resource lists,
//! and a minimal `/openapi/v3` built from the CRD schemas, so kubectl and kube-rs find every
//! served kind.

use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use super::reply::{Body, error, json_response};
use super::route::Route;
use super::state::ApiServer;
use super::status::ApiError;
use crate::registry::{Registry, ResourceType};

/// The Kubernetes version this server presents itself as: the oldest the types target.
pub const KUBERNETES_MINOR: &str = "33";

/// `/version`.
pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0-ringrift.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn resource_entry(t: &ResourceType) -> Value {
    let mut entry = json!({
        "name": t.plural,
        "singularName": t.singular,
        "namespaced": t.namespaced,
        "kind": t.kind,
        "verbs": if t.review { &["create"][..] } else { &VERBS[..] },
    });
    if !t.short_names.is_empty() {
        entry["shortNames"] = json!(t.short_names);
    }
    if !t.categories.is_empty() {
        entry["categories"] = json!(t.categories);
    }
    entry
}

/// The resources of one group version, with their subresources.
pub fn resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let types: Vec<&ResourceType> = registry
        .all()
        .filter(|t| t.group == group && t.version == version)
        .collect();
    if types.is_empty() {
        return None;
    }
    let mut resources = Vec::new();
    for t in types {
        resources.push(resource_entry(t));
        if t.status_subresource {
            resources.push(
                json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced,
                                  "kind": t.kind, "verbs": ["get", "patch", "update"]}),
            );
        }
        if t.scale.is_some() {
            resources.push(json!({"name": format!("{}/scale", t.plural), "singularName": "", "namespaced": t.namespaced,
                "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}));
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}

fn group_entry(name: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    json!({"name": name, "versions": versions, "preferredVersion": versions.first()})
}

/// The OpenAPI v3 document of one group version: a schema per kind, tagged with its
/// group-version-kind, and each kind's object path with a PATCH operation that declares the
/// `fieldValidation` parameter, which is how kubectl learns that the server validates fields
/// itself (and so needs no client-side schema).
pub fn openapi(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let mut schemas = serde_json::Map::new();
    let mut paths = serde_json::Map::new();
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    for t in registry
        .all()
        .filter(|t| t.group == group && t.version == version)
    {
        let gvk = json!({"group": group, "version": version, "kind": t.kind});
        let mut schema = t.validator.as_ref().map_or_else(
            || json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            |v| v.schema().clone(),
        );
        schema["x-kubernetes-group-version-kind"] = json!([gvk]);
        let reversed: Vec<&str> = group.split('.').rev().collect();
        let package = if group.is_empty() {
            "io.k8s.api.core".to_owned()
        } else {
            reversed.join(".")
        };
        let schema_name = format!("{package}.{version}.{}", t.kind);
        schemas.insert(schema_name.clone(), schema);
        let scope = if t.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let reference = json!({"$ref": format!("#/components/schemas/{schema_name}")});
        let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string"}});
        let operation = |verb: &str| {
            json!({
                "x-kubernetes-action": verb,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation")],
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": reference}}}},
            })
        };
        paths.insert(
            format!("{prefix}{scope}/{}/{{name}}", t.plural),
            json!({"get": operation("get"), "put": operation("put"), "patch": operation("patch"), "delete": operation("delete")}),
        );
    }
    if schemas.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "RingRift", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// The media type of aggregated discovery documents (`apidiscovery.k8s.io/v2`).
pub const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the client asks for aggregated discovery before the legacy documents (kubectl
/// 1.37 and kube-rs `Discovery::run_aggregated` do).
fn wants_aggregated(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(ACCEPT).and_then(|a| a.to_str().ok()) else {
        return false;
    };
    let Some(first) = accept.split(',').next() else {
        return false;
    };
    let params: Vec<String> = first.split(';').map(|p| p.trim().replace(' ', "")).collect();
    params.first().is_some_and(|m| m == "application/json")
        && ["g=apidiscovery.k8s.io", "v=v2", "as=APIGroupDiscoveryList"]
            .iter()
            .all(|p| params.iter().any(|q| q == p))
}

fn response_kind(t: &ResourceType) -> Value {
    json!({"group": t.group, "version": t.version, "kind": t.kind})
}

/// One group's aggregated document: every version (preferred first), its resources with their
/// scope, verbs, names, categories and subresources.
fn group_discovery(registry: &Registry, group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|version| {
            let resources: Vec<Value> = registry
                .all()
                .filter(|t| t.group == group && t.version == *version)
                .map(|t| {
                    let mut entry = json!({
                        "resource": t.plural,
                        "responseKind": response_kind(t),
                        "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": t.singular,
                        "verbs": if t.review { &["create"][..] } else { &VERBS[..] },
                    });
                    if !t.short_names.is_empty() {
                        entry["shortNames"] = json!(t.short_names);
                    }
                    if !t.categories.is_empty() {
                        entry["categories"] = json!(t.categories);
                    }
                    let mut subresources = Vec::new();
                    if t.status_subresource {
                        subresources.push(json!({"subresource": "status", "responseKind": response_kind(t),
                            "verbs": ["get", "patch", "update"]}));
                    }
                    if t.scale.is_some() {
                        subresources.push(json!({"subresource": "scale",
                            "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                            "verbs": ["get", "patch", "update"]}));
                    }
                    if !subresources.is_empty() {
                        entry["subresources"] = Value::Array(subresources);
                    }
                    entry
                })
                .collect();
            json!({"version": version, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut metadata = json!({"creationTimestamp": null});
    if !group.is_empty() {
        metadata["name"] = group.into();
    }
    json!({"metadata": metadata, "versions": versions})
}

/// The aggregated discovery document of `/api` (the core group) or `/apis` (every other).
pub fn aggregated(registry: &Registry, core: bool) -> Value {
    let items: Vec<Value> = if core {
        vec![group_discovery(registry, "", &["v1".to_owned()])]
    } else {
        registry
            .groups()
            .iter()
            .map(|(name, versions)| group_discovery(registry, name, versions))
            .collect()
    };
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// Answers a discovery route.
pub fn answer(server: &ApiServer, route: &Route, headers: &HeaderMap) -> Response<Body> {
    let registry = server.registry();
    if matches!(route, Route::CoreVersions | Route::Groups) && wants_aggregated(headers) {
        let document = aggregated(&registry, matches!(route, Route::CoreVersions));
        let mut response = json_response(StatusCode::OK, &document);
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(AGGREGATED));
        return response;
    }
    let found = match route {
        Route::CoreVersions => Some(json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]})),
        Route::Groups => {
            let groups: Vec<Value> = registry
                .groups()
                .iter()
                .map(|(name, versions)| group_entry(name, versions))
                .collect();
            Some(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        Route::Group(name) => registry.groups().get(name).map(|versions| {
            let mut group = group_entry(name, versions);
            group["kind"] = "APIGroup".into();
            group["apiVersion"] = "v1".into();
            group
        }),
        Route::Resources { group, version } => resource_list(&registry, group, version),
        Route::OpenApiIndex => {
            let mut paths = serde_json::Map::new();
            paths.insert(
                "api/v1".into(),
                json!({"serverRelativeURL": "/openapi/v3/api/v1"}),
            );
            for (group, versions) in registry.groups() {
                for version in versions {
                    let key = format!("apis/{group}/{version}");
                    paths.insert(
                        key.clone(),
                        json!({"serverRelativeURL": format!("/openapi/v3/{key}")}),
                    );
                }
            }
            Some(json!({"paths": paths}))
        }
        Route::OpenApi { group, version } => openapi(&registry, group, version),
        Route::Version
        | Route::Health
        | Route::Metrics
        | Route::Object(_)
        | Route::ClusterInfo
        | Route::Join
        | Route::Renew
        | Route::RelayNext
        | Route::RelayAnswer(_) => None,
    };
    found.map_or_else(
        || error(&ApiError::no_route()),
        |doc| json_response(StatusCode::OK, &doc),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_lists_carry_short_names_categories_and_status() {
        let mut registry = Registry::default();
        for crd in ringrift_crds::all() {
            registry
                .register_crd(&serde_json::to_value(crd).unwrap())
                .unwrap();
        }
        let list = resource_list(&registry, "ringrift.ai", "v1alpha1").unwrap();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(
            names.contains(&"selfplayjobs") && names.contains(&"selfplayjobs/status"),
            "{names:?}"
        );
        let sp = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "selfplayjobs")
            .unwrap();
        assert_eq!(sp["shortNames"], json!(["sp"]));
        assert_eq!(sp["categories"], json!(["ringrift"]));
        let agent = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "agents")
            .unwrap();
        assert_eq!(agent["namespaced"], false);
        assert!(resource_list(&registry, "ringrift.ai", "v9").is_none());
        let doc = openapi(&registry, "ringrift.ai", "v1alpha1").unwrap();
        let task = &doc["components"]["schemas"]["ai.ringrift.v1alpha1.Task"];
        assert_eq!(task["x-kubernetes-group-version-kind"][0]["kind"], "Task");
        let patch = &doc["paths"]["/apis/ringrift.ai/v1alpha1/namespaces/{namespace}/tasks/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Task");
        let params: Vec<&str> = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(
            params.contains(&"fieldValidation"),
            "kubectl looks for it: {params:?}"
        );
        assert!(
            doc["paths"]
                .get("/apis/ringrift.ai/v1alpha1/agents/{name}")
                .is_some(),
            "cluster-scoped path"
        );
    }
}
