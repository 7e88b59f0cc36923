//! Errors as `metav1.Status` objects with the codes, reasons and messages the Kubernetes API
//! server uses, so kubectl and kube-rs read them as they would from a real cluster.

use serde_json::{Value, json};

use crate::schema::FieldError;
use crate::store::semantics::WriteError;
use crate::store::{ResourceKey, StoreError};

/// A failed request: becomes a `Status` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason`, for example `NotFound`.
    pub reason: &'static str,
    /// `Status.message`, for people.
    pub message: String,
    /// `Status.details`, when the error is about one object.
    pub details: Option<Value>,
}

fn details(resource: &ResourceKey, name: &str) -> Value {
    json!({"name": name, "group": resource.group, "kind": resource.resource})
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 401: no valid credentials.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 401 with a message (a rejected client certificate says why).
    pub fn unauthorized_because(message: impl Into<String>) -> Self {
        Self::new(401, "Unauthorized", message)
    }

    /// 403: the user may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// 404: no such path.
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 404: no such object.
    pub fn not_found(resource: &ResourceKey, name: &str) -> Self {
        Self {
            details: Some(details(resource, name)),
            ..Self::new(404, "NotFound", format!("{resource} \"{name}\" not found"))
        }
    }

    /// 405: the resource does not support this verb.
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// 409: an object of that name exists.
    pub fn already_exists(resource: &ResourceKey, name: &str) -> Self {
        Self {
            details: Some(details(resource, name)),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{resource} \"{name}\" already exists"),
            )
        }
    }

    /// 409: a precondition failed.
    pub fn conflict(resource: &ResourceKey, name: &str, why: &str) -> Self {
        Self {
            details: Some(details(resource, name)),
            ..Self::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on {resource} \"{name}\": {why}"),
            )
        }
    }

    /// 410: the requested resourceVersion is no longer in the history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 410: what the request answers is gone (a log reader that left).
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Gone", message)
    }

    /// 503: the server cannot take the request now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// 504: the request could not be completed in time.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// 413: the body is over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("the request is too large: limit is {limit} bytes"),
        )
    }

    /// 415: the body's content type is not accepted here.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/merge-patch+json, application/json-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"
            ),
        )
    }

    /// 422: the object is invalid; one cause per field error.
    pub fn invalid(kind: &str, group: &str, name: &str, errors: &[FieldError]) -> Self {
        let qualified = if group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{group}")
        };
        let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let summary = if listed.len() == 1 {
            listed[0].clone()
        } else {
            format!("[{}]", listed.join(", "))
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.kind.reason(), "message": e.body(), "field": e.path}))
            .collect();
        Self {
            details: Some(json!({"name": name, "group": group, "kind": kind, "causes": causes})),
            ..Self::new(
                422,
                "Invalid",
                format!("{qualified} \"{name}\" is invalid: {summary}"),
            )
        }
    }

    /// 500: something broke on the server.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// Maps a store failure about `name` of `resource`.
    pub fn from_store(error: StoreError, resource: &ResourceKey, name: &str) -> Self {
        match error {
            StoreError::NotFound { .. } => Self::not_found(resource, name),
            StoreError::AlreadyExists { .. } => Self::already_exists(resource, name),
            StoreError::Write(WriteError::Conflict(why)) => Self::conflict(resource, name, &why),
            StoreError::Write(WriteError::BadRequest(why)) => Self::bad_request(why),
            StoreError::Write(WriteError::Forbidden(why)) => Self {
                details: Some(details(resource, name)),
                ..Self::new(422, "Invalid", format!("{resource} \"{name}\" is invalid: {why}"))
            },
            StoreError::Expired { requested, oldest } => {
                Self::expired(format!("too old resource version: {requested} ({oldest})"))
            }
            // As upstream answers a resourceVersion it has not reached: 504, retry in a second.
            StoreError::TooLarge { requested, current } => Self {
                details: Some(
                    json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                                     "retryAfterSeconds": 1}),
                ),
                ..Self::new(
                    504,
                    "Timeout",
                    format!("Too large resource version: {requested}, current: {current}"),
                )
            },
            other => Self::internal(error_chain(&other)),
        }
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// An error and its sources, joined: `failed to write an object: disk I/O error`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// A `Status` of success, for deletes that remove an object.
pub fn success(resource: &ResourceKey, name: &str, uid: Option<&str>) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": name, "group": resource.group, "kind": resource.resource, "uid": uid},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ErrorKind;

    #[test]
    fn not_found_reads_like_the_api_server() {
        let s = ApiError::not_found(&ResourceKey::new("ringrift.ai", "tasks"), "t1").to_status();
        assert_eq!(s["code"], 404);
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["message"], "tasks.ringrift.ai \"t1\" not found");
        assert_eq!(s["details"]["kind"], "tasks");
    }

    #[test]
    fn invalid_lists_every_cause_with_its_field() {
        let errors = [
            FieldError {
                path: "spec.games".into(),
                kind: ErrorKind::Invalid,
                value: Some("0".into()),
                detail: "spec.games in body should be greater than or equal to 1".into(),
            },
            FieldError {
                path: "spec.output".into(),
                kind: ErrorKind::Required,
                value: None,
                detail: String::new(),
            },
        ];
        let s = ApiError::invalid("SelfplayJob", "ringrift.ai", "j", &errors).to_status();
        assert_eq!(s["code"], 422);
        assert_eq!(
            s["message"],
            "SelfplayJob.ringrift.ai \"j\" is invalid: [spec.games: Invalid value: 0: spec.games in body should be greater than or equal to 1, spec.output: Required value]"
        );
        assert_eq!(s["details"]["causes"][1]["field"], "spec.output");
        assert_eq!(
            s["details"]["causes"][1]["message"], "Required value",
            "kubectl prefixes the field itself"
        );
        assert_eq!(s["details"]["causes"][1]["reason"], "FieldValueRequired");
    }

    #[test]
    fn conflicts_name_the_object() {
        let e = ApiError::from_store(
            StoreError::Write(WriteError::Conflict("the object has been modified".into())),
            &ResourceKey::new("coordination.k8s.io", "leases"),
            "ctl",
        );
        assert_eq!((e.code, e.reason), (409, "Conflict"));
        assert_eq!(
            e.message,
            "Operation cannot be fulfilled on leases.coordination.k8s.io \"ctl\": the object has been modified"
        );
    }
}
