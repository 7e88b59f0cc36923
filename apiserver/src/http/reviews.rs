//! Reviews, answered from the same RBAC code that decides requests and never stored:
//! SelfSubjectAccessReview (`kubectl auth can-i`), SelfSubjectRulesReview (`kubectl auth can-i
//! --list`), SubjectAccessReview (another user's access, for those allowed to create it) and
//! SelfSubjectReview (`kubectl auth whoami`).

use hyper::StatusCode;
use serde_json::{Value, json};

use super::state::ApiServer;
use super::status::ApiError;
use super::target::{Reply, Target};
use crate::auth::User;
use crate::auth::rbac::{Attributes, Policy, strings};

/// Every user may review itself, as the `system:basic-user` ClusterRole grants upstream.
pub(crate) fn is_self_review(group: &str, resource: &str) -> bool {
    matches!(
        (group, resource),
        (
            "authorization.k8s.io",
            "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
        ) | ("authentication.k8s.io", "selfsubjectreviews")
    )
}

/// Answers a review created by `user`.
pub(crate) async fn answer(
    server: &ApiServer,
    user: &User,
    target: &Target,
    body: &Value,
) -> Result<Reply, ApiError> {
    let t = &target.t;
    if body.get("kind").and_then(Value::as_str) != Some(t.kind.as_str())
        || body.get("apiVersion").and_then(Value::as_str) != Some(t.api_version().as_str())
    {
        return Err(ApiError::bad_request(format!(
            "the request body must be a {} of {}",
            t.kind,
            t.api_version()
        )));
    }
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = match t.kind.as_str() {
        "SelfSubjectReview" => json!({"userInfo": {"username": user.name, "groups": user.groups}}),
        "SelfSubjectAccessReview" => access(server, user, &spec).await?,
        "SubjectAccessReview" => {
            let subject = User {
                name: spec
                    .get("user")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                groups: strings(&spec, "groups"),
            };
            if subject.name.is_empty() && subject.groups.is_empty() {
                return Err(invalid(
                    t,
                    "spec.user",
                    "at least one of user or group must be specified",
                ));
            }
            access(server, &subject, &spec).await?
        }
        "SelfSubjectRulesReview" => {
            let Some(namespace) = spec
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            else {
                return Err(invalid(t, "spec.namespace", "namespace is required"));
            };
            rules(server, user, namespace).await?
        }
        other => return Err(ApiError::internal(format!("{other} is not a review"))),
    };
    let mut answer = json!({
        "apiVersion": t.api_version(),
        "kind": t.kind,
        "metadata": {"creationTimestamp": null},
        "status": status,
    });
    if t.kind != "SelfSubjectReview" {
        answer["spec"] = spec;
    }
    Ok(Reply {
        status: StatusCode::CREATED,
        body: answer,
        warnings: Vec::new(),
    })
}

fn invalid(t: &crate::registry::ResourceType, field: &str, detail: &str) -> ApiError {
    ApiError {
        code: 422,
        reason: "Invalid",
        message: format!(
            "{}.{} is invalid: {field}: Invalid value: {detail}",
            t.kind, t.group
        ),
        details: Some(json!({"kind": t.kind, "group": t.group,
            "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": field}]})),
    }
}

fn text(value: &Value, field: &str) -> Option<String> {
    value
        .get(field)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

async fn policy(server: &ApiServer, namespace: Option<&str>) -> Result<Policy, ApiError> {
    server
        .policy(namespace)
        .await
        .map_err(|e| ApiError::internal(format!("failed to read the RBAC policy: {e}")))
}

/// Whether `user` may do what `spec` asks (resource or non-resource attributes), decided as a
/// request would be: everything without RBAC or for `system:masters`, else RBAC.
async fn access(server: &ApiServer, user: &User, spec: &Value) -> Result<Value, ApiError> {
    let open = !server.options.rbac || user.is_master();
    let allowed = if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
        let attributes = Attributes {
            verb: text(r, "verb").unwrap_or_default(),
            group: text(r, "group").unwrap_or_default(),
            resource: text(r, "resource").unwrap_or_default(),
            subresource: text(r, "subresource"),
            namespace: text(r, "namespace"),
            name: text(r, "name"),
        };
        open || policy(server, attributes.namespace.as_deref())
            .await?
            .allows(user, &attributes)
    } else if let Some(n) = spec.get("nonResourceAttributes").filter(|n| n.is_object()) {
        let (verb, path) = (
            text(n, "verb").unwrap_or_default(),
            text(n, "path").unwrap_or_default(),
        );
        open || policy(server, None).await?.allows_path(user, &verb, &path)
    } else {
        return Err(ApiError {
            code: 422,
            reason: "Invalid",
            message: "spec.resourceAttributes: Invalid value: exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
            details: None,
        });
    };
    let reason = match (allowed, open) {
        (true, true) if server.options.rbac => "allowed: the user is in system:masters",
        (true, true) => "allowed: every request is allowed (--authorization-mode AlwaysAllow)",
        (true, false) => "RBAC: allowed by a binding of the user, one of its groups or its ServiceAccount",
        (false, _) => "",
    };
    let mut status = json!({"allowed": allowed});
    if !reason.is_empty() {
        status["reason"] = reason.into();
    }
    Ok(status)
}

/// What `user` may do in `namespace`: the rules of every binding that names it.
async fn rules(server: &ApiServer, user: &User, namespace: &str) -> Result<Value, ApiError> {
    if !server.options.rbac || user.is_master() {
        return Ok(json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        }));
    }
    let policy = policy(server, Some(namespace)).await?;
    let mut resource_rules: Vec<Value> = vec![
        // What every authenticated user may do (system:basic-user upstream).
        json!({"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
               "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]}),
        json!({"verbs": ["create"], "apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"]}),
    ];
    for rule in policy.rules_for(user, Some(namespace)) {
        let mut entry =
            json!({"verbs": rule.verbs, "apiGroups": rule.api_groups, "resources": rule.resources});
        if !rule.resource_names.is_empty() {
            entry["resourceNames"] = json!(rule.resource_names);
        }
        resource_rules.push(entry);
    }
    let non_resource_rules: Vec<Value> = policy
        .non_resource_rules_for(user)
        .into_iter()
        .map(|(verbs, urls)| json!({"verbs": verbs, "nonResourceURLs": urls}))
        .collect();
    Ok(json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": false,
    }))
}
