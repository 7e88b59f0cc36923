//! The REST API's routes as data, and the OpenAPI 3 description generated from them. The
//! committed `docs/agent-openapi.json` is checked against it by a test, and every route listed
//! here is checked to be served.

use serde_json::{Value, json};

/// One route.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path template.
    pub path: &'static str,
    /// Name used as the operation id and the metrics label.
    pub id: &'static str,
    /// What it does.
    pub summary: &'static str,
    /// Whether it needs the bearer token.
    pub auth: bool,
    /// Success status.
    pub ok: u16,
    /// Success content type.
    pub content: &'static str,
}

const JSON: &str = "application/json";
const TEXT: &str = "text/plain";
const BYTES: &str = "application/octet-stream";

/// Every route the agent serves.
pub const ROUTES: &[Route] = &[
    Route {
        method: "get",
        path: "/healthz",
        id: "healthz",
        summary: "Liveness: the process answers.",
        auth: false,
        ok: 200,
        content: JSON,
    },
    Route {
        method: "get",
        path: "/readyz",
        id: "readyz",
        summary: "Readiness: registered and watching its Tasks.",
        auth: false,
        ok: 200,
        content: JSON,
    },
    Route {
        method: "get",
        path: "/metrics",
        id: "metrics",
        summary: "Prometheus metrics (text exposition format).",
        auth: true,
        ok: 200,
        content: TEXT,
    },
    Route {
        method: "get",
        path: "/v1/node",
        id: "node",
        summary: "The node: GPUs (with per-process use), CPU, memory, disk, version.",
        auth: true,
        ok: 200,
        content: JSON,
    },
    Route {
        method: "get",
        path: "/v1/tasks",
        id: "tasks",
        summary: "Tasks this agent runs or ran recently.",
        auth: true,
        ok: 200,
        content: JSON,
    },
    Route {
        method: "get",
        path: "/v1/tasks/{namespace}/{name}",
        id: "task",
        summary: "One task: phase, pid, progress, metrics, outcome.",
        auth: true,
        ok: 200,
        content: JSON,
    },
    Route {
        method: "get",
        path: "/v1/tasks/{namespace}/{name}/logs",
        id: "task_logs",
        summary: "The task's log: the last `tail` lines, then new lines while it runs with `follow=true`.",
        auth: true,
        ok: 200,
        content: TEXT,
    },
    Route {
        method: "post",
        path: "/v1/tasks/{namespace}/{name}/cancel",
        id: "task_cancel",
        summary: "Stops the task's process group (SIGTERM, then SIGKILL after the grace period). Optional JSON body `{\"reason\": \"…\"}`.",
        auth: true,
        ok: 202,
        content: JSON,
    },
    Route {
        method: "get",
        path: "/v1/peers",
        id: "peers",
        summary: "This agent's gossip view: live members (alive or suspect) with the state each announced, members seen dead, and every peer ever met.",
        auth: true,
        ok: 200,
        content: JSON,
    },
    Route {
        method: "get",
        path: "/v1/artifacts",
        id: "artifacts",
        summary: "Artifacts held in this agent's content store.",
        auth: true,
        ok: 200,
        content: JSON,
    },
    Route {
        method: "get",
        path: "/v1/artifacts/{digest}",
        id: "artifact",
        summary: "An artifact's content (206 with a single `Range: bytes=a-b`). Also serves the verified chunks of an artifact still being pulled; a range not held yet answers 416. Peers authenticate with the token derived from the cluster key.",
        auth: true,
        ok: 200,
        content: BYTES,
    },
    Route {
        method: "head",
        path: "/v1/artifacts/{digest}",
        id: "artifact_head",
        summary: "An artifact's size (`Content-Length`) and chunk size (`X-Ringrift-Chunk-Size`), without the content.",
        auth: true,
        ok: 200,
        content: BYTES,
    },
    Route {
        method: "put",
        path: "/v1/artifacts/{digest}",
        id: "artifact_push",
        summary: "A copy pushed by a peer (`?name=<file>&kind=games|model|checkpoint`, `Content-Length` required): kept, and served from then on, only when the bytes hash to the digest (400 otherwise; 507 when the disk cannot take them; 200 when already held, 201 when taken). An agent its peers cannot reach pushes its outputs this way. Peers authenticate with the token derived from the cluster key.",
        auth: true,
        ok: 201,
        content: JSON,
    },
    Route {
        method: "get",
        path: "/v1/artifacts/{digest}/chunks",
        id: "artifact_chunks",
        summary: "An artifact's chunk manifest: size, chunk size, the sha256 of every chunk, and for one still being pulled which chunks are held (`have`).",
        auth: true,
        ok: 200,
        content: JSON,
    },
    Route {
        method: "get",
        path: "/v1/openapi.json",
        id: "openapi",
        summary: "This description.",
        auth: true,
        ok: 200,
        content: JSON,
    },
];

/// The metrics label of a request path: its route's id, or `other`.
pub fn route_id(method: &str, path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    ROUTES
        .iter()
        .find(|r| {
            let template: Vec<&str> = r.path.trim_matches('/').split('/').collect();
            r.method.eq_ignore_ascii_case(method)
                && template.len() == segments.len()
                && template
                    .iter()
                    .zip(&segments)
                    .all(|(t, s)| t.starts_with('{') || t == s)
        })
        .map_or("other", |r| r.id)
}

/// The OpenAPI 3.0 document.
pub fn document() -> Value {
    let error = json!({"$ref": "#/components/schemas/Error"});
    let mut paths = serde_json::Map::new();
    for r in ROUTES {
        let mut responses = serde_json::Map::new();
        responses.insert(
            r.ok.to_string(),
            json!({"description": "OK", "content": {r.content: {}}}),
        );
        let mut errors = vec![];
        if r.auth {
            errors.push(("401", "Missing or wrong bearer token"));
        }
        if r.path.contains("{digest}") {
            errors.push(("400", "Not a digest, or a malformed Range header"));
            errors.push(("404", "Artifact not held by this agent"));
            errors.push(("416", "Range outside the content, or not held yet"));
            if r.method == "get" && !r.path.ends_with("/chunks") {
                errors.push((
                    "503",
                    "Busy: every serving slot is taken; ask another holder or retry",
                ));
            }
        } else if r.path.contains('{') {
            errors.push(("400", "Invalid namespace or name"));
            errors.push(("404", "No such task on this agent"));
        }
        if r.method == "post" {
            errors.push(("409", "The task already finished"));
            errors.push(("413", "Body larger than 4 KiB"));
        }
        if r.id == "readyz" {
            errors.push(("503", "Not ready"));
        }
        for (code, what) in errors {
            responses.insert(
                code.into(),
                json!({"description": what, "content": {JSON: {"schema": error}}}),
            );
        }
        let mut op = json!({"operationId": r.id, "summary": r.summary, "responses": responses});
        if !r.auth {
            op["security"] = json!([]);
        }
        let mut parameters = Vec::new();
        for p in ["namespace", "name"] {
            if r.path.contains(&format!("{{{p}}}")) {
                parameters.push(json!({"name": p, "in": "path", "required": true, "schema": {"type": "string", "maxLength": 253}}));
            }
        }
        if r.path.contains("{digest}") {
            parameters.push(json!({"name": "digest", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"}}));
        }
        if r.id == "artifact" {
            parameters.push(json!({"name": "Range", "in": "header", "schema": {"type": "string", "example": "bytes=0-4194303"}}));
        }
        if r.id == "task_logs" {
            parameters.push(json!({"name": "tail", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 100_000, "default": 100}}));
            parameters.push(
                json!({"name": "follow", "in": "query", "schema": {"type": "boolean", "default": false}}),
            );
        }
        if !parameters.is_empty() {
            op["parameters"] = Value::Array(parameters);
        }
        if r.method == "post" {
            op["requestBody"] = json!({"required": false, "content": {JSON: {"schema": {
                "type": "object", "additionalProperties": false,
                "properties": {"reason": {"type": "string", "maxLength": 256}}}}}});
        }
        let entry = paths.entry(r.path).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {"title": "RingRift agent", "version": "v1", "description": "The node agent's REST API (DESIGN.md section 7). Errors are JSON objects with a stable `code` and a `message`."},
        "servers": [{"url": "http://localhost:8770"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string", "enum": ["Unauthorized", "NotFound", "InvalidPath", "BadRequest", "Conflict", "NotReady", "Busy", "RangeNotSatisfiable", "PayloadTooLarge", "LengthRequired", "UnsupportedMediaType", "MethodNotAllowed", "Internal"]},
                "message": {"type": "string"}}}}
        }
    })
}
