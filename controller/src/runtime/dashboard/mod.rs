//! The web dashboard's server: read-only pages and their JSON, drawn from this replica's caches
//! (leader or standby), behind the dashboard token ([`crate::dashboard::auth`]). Agents' GPU
//! utilization and task logs come from each agent's REST API (with the agents' token, trusting
//! the certificate fingerprint its `Agent` status publishes); recent events from the API.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt as _};
use ringrift_tls::serve::Acceptor;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

mod agents;

use super::caches::{Caches, valid};
use crate::dashboard::auth::{self, Access, Purpose};
use crate::dashboard::{assets, views};

/// The body of every answer: whole, or a log streamed from an agent.
type Body = BoxBody<Bytes, std::io::Error>;

/// What the dashboard needs to run.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// Where it listens.
    pub listen: std::net::SocketAddr,
    /// The token that lets a reader in (bearer, or typed into the login page), and that signs
    /// login links and sessions.
    pub token: String,
    /// Its certificate and key (a certificate from the cluster CA); none: plain HTTP, which
    /// the command line allows only on a loopback address.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The agents' REST token: GPU utilization and task logs from the agents. None: the
    /// dashboard shows what the caches hold and says why logs are unavailable.
    pub agent_token: Option<String>,
}

/// The dashboard's state, shared by its connections.
pub struct Dashboard {
    caches: Caches,
    health: Arc<super::admin::Health>,
    client: Client,
    token: String,
    agent_token: Option<String>,
    secure: bool,
    /// Each agent's last `/v1/node` answer (or why there is none), and when it was asked.
    live: Mutex<HashMap<String, (Instant, Value)>>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("secure", &self.secure)
            .finish_non_exhaustive()
    }
}

fn full(code: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).map_err(|never| match never {}).boxed());
    *r.status_mut() = code;
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    );
    r
}

fn json_reply(code: StatusCode, value: &Value) -> Response<Body> {
    full(code, "application/json", value.to_string())
}

fn problem(code: StatusCode, message: &str) -> Response<Body> {
    json_reply(code, &json!({"code": code.as_u16(), "message": message}))
}

fn redirect(to: &str, cookie: Option<String>) -> Response<Body> {
    let mut r = full(StatusCode::SEE_OTHER, "text/plain", "");
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

/// A bounded label for a request path.
fn route_of(path: &str) -> &'static str {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api", "overview"] => "overview",
        ["api", "loops", ..] => "loop",
        ["api", "lineage"] => "lineage",
        ["api", "matchups"] => "matchups",
        ["api", "agents"] => "agents",
        ["api", "jobs", ..] => "job",
        ["api", "tasks", _, _, "log"] => "log",
        ["api", "tasks", ..] => "task",
        ["api", "events"] => "events",
        ["api", ..] => "api-other",
        ["assets", ..] => "asset",
        ["login" | "logout"] => "login",
        _ => "page",
    }
}

/// The valid object `namespace/name` (cluster-scoped: no namespace) of a cache.
fn one<K>(store: &super::caches::Guarded<K>, namespace: Option<&str>, name: &str) -> Option<K>
where
    K: kube::Resource<DynamicType = ()> + Clone,
{
    let mut key = kube::runtime::reflector::ObjectRef::<kube::core::DeserializeGuard<K>>::new(name);
    if let Some(ns) = namespace {
        key = key.within(ns);
    }
    store.get(&key)?.0.as_ref().ok().cloned()
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl Dashboard {
    fn session_cookie(&self, now: i64) -> String {
        let session = auth::mint(
            &self.token,
            Purpose::Session,
            now + auth::SESSION_VALIDITY_SECONDS,
        );
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            auth::COOKIE,
            auth::SESSION_VALIDITY_SECONDS
        )
    }

    fn login_page(code: StatusCode, message: &str) -> Response<Body> {
        let escaped = message
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        full(
            code,
            "text/html; charset=utf-8",
            assets::LOGIN.replace("{{message}}", &escaped),
        )
    }

    fn snapshot(&self) -> views::Snapshot {
        views::Snapshot {
            loops: valid(&self.caches.loops).0,
            selfplay: valid(&self.caches.selfplay).0,
            training: valid(&self.caches.training).0,
            gauntlets: valid(&self.caches.gauntlet).0,
            models: valid(&self.caches.models).0,
            tasks: valid(&self.caches.tasks).0,
            agents: valid(&self.caches.agents).0,
        }
    }

    /// Answers one request, and counts it by route and status.
    async fn answer(self: Arc<Self>, request: Request<hyper::body::Incoming>) -> Response<Body> {
        let route = route_of(request.uri().path());
        let health = self.health.clone();
        let response = self.respond(request).await;
        health
            .metrics
            .dashboard_requests
            .get_or_create(&crate::runtime::metrics::DashboardLabels {
                route: route.to_owned(),
                code: response.status().as_u16().to_string(),
            })
            .inc();
        response
    }

    async fn respond(self: Arc<Self>, request: Request<hyper::body::Incoming>) -> Response<Body> {
        let now = Timestamp::now();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().map(str::to_owned);
        let headers = request.headers();
        let text = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (authorization, cookies) = (text(header::AUTHORIZATION), text(header::COOKIE));
        match (request.method(), path.as_str()) {
            (&Method::GET, "/assets/app.js") => {
                return full(StatusCode::OK, "text/javascript; charset=utf-8", assets::APP_JS);
            }
            (&Method::GET, "/assets/app.css") => {
                return full(StatusCode::OK, "text/css; charset=utf-8", assets::APP_CSS);
            }
            (&Method::GET, "/healthz") => return full(StatusCode::OK, "text/plain", "ok\n"),
            (&Method::GET, "/login") => {
                let link = query_param(query.as_deref(), "t").unwrap_or_default();
                return match auth::check(&self.token, Purpose::Login, &link, now.as_second()) {
                    Ok(()) => redirect("/", Some(self.session_cookie(now.as_second()))),
                    Err(_) if link.is_empty() => {
                        Self::login_page(StatusCode::OK, "log in with the dashboard token")
                    }
                    Err(e) => Self::login_page(
                        StatusCode::UNAUTHORIZED,
                        &format!(
                            "this login link does not work: {e}; ask for a new one or type the dashboard token"
                        ),
                    ),
                };
            }
            (&Method::POST, "/login") => {
                let body = match http_body_util::Limited::new(request.into_body(), 4096)
                    .collect()
                    .await
                {
                    Ok(b) => b.to_bytes(),
                    Err(_) => {
                        return Self::login_page(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "the login form is too large",
                        );
                    }
                };
                let given = form_urlencoded::parse(&body)
                    .find(|(k, _)| k == "token")
                    .map(|(_, v)| v.into_owned());
                return if given
                    .is_some_and(|g| ringrift_tls::secret::same(g.trim().as_bytes(), self.token.as_bytes()))
                {
                    redirect("/", Some(self.session_cookie(now.as_second())))
                } else {
                    tracing::info!("dashboard login refused: wrong token");
                    Self::login_page(StatusCode::UNAUTHORIZED, "wrong dashboard token")
                };
            }
            (&Method::GET, "/logout") => {
                let clear = format!("{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0", auth::COOKIE);
                return redirect("/login", Some(clear));
            }
            _ => {}
        }
        if let Access::Denied(why) = auth::access(
            &self.token,
            authorization.as_deref(),
            cookies.as_deref(),
            now.as_second(),
        ) {
            return if path.starts_with("/api/") {
                problem(StatusCode::UNAUTHORIZED, why)
            } else {
                Self::login_page(StatusCode::UNAUTHORIZED, why)
            };
        }
        if request.method() != Method::GET {
            return problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "the dashboard is read-only: GET only",
            );
        }
        if !path.starts_with("/api/") {
            // Every other path is a page of the app; its script reads the path.
            return full(StatusCode::OK, "text/html; charset=utf-8", assets::INDEX);
        }
        self.api(&path, query.as_deref(), now).await
    }

    async fn api(&self, path: &str, query: Option<&str>, now: Timestamp) -> Response<Body> {
        let parts: Vec<&str> = path.trim_start_matches("/api/").split('/').collect();
        let found = |v: Option<Value>, what: String| match v {
            Some(v) => json_reply(StatusCode::OK, &v),
            None => problem(StatusCode::NOT_FOUND, &format!("{what} not found")),
        };
        match parts.as_slice() {
            ["overview"] => json_reply(StatusCode::OK, &views::overview(&self.snapshot(), now)),
            ["loops", ns, name] => found(
                views::training_loop(&self.snapshot(), ns, name, now),
                format!("TrainingLoop {ns}/{name}"),
            ),
            ["lineage"] => {
                let ns = query_param(query, "namespace");
                json_reply(StatusCode::OK, &views::lineage(&self.snapshot(), ns.as_deref()))
            }
            ["matchups"] => json_reply(StatusCode::OK, &views::matchups(&self.snapshot())),
            ["agents"] => {
                let snapshot = self.snapshot();
                let live = agents::live(&self.live, self.agent_token.as_deref(), &snapshot).await;
                json_reply(StatusCode::OK, &views::agents(&snapshot, &live, now))
            }
            ["jobs", ns, name, "tasks"] => {
                json_reply(StatusCode::OK, &views::job_tasks(&self.snapshot(), ns, name, now))
            }
            ["tasks", ns, name] => found(
                views::task(&self.snapshot(), ns, name, now),
                format!("Task {ns}/{name}"),
            ),
            ["tasks", ns, name, "log"] => self.log(ns, name, query).await,
            ["events"] => self.events().await,
            _ => problem(StatusCode::NOT_FOUND, &format!("no dashboard API at {path}")),
        }
    }

    /// A task's log from its agent: the last `tail` lines, followed while `follow=true`.
    async fn log(&self, ns: &str, name: &str, query: Option<&str>) -> Response<Body> {
        let Some(token) = &self.agent_token else {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "the controller has no agent token (--agent-token-file): task logs are not shown; use `ringrift logs`",
            );
        };
        let tail: u32 = query_param(query, "tail")
            .and_then(|t| t.parse().ok())
            .unwrap_or(200)
            .min(5000);
        let follow = query_param(query, "follow").as_deref() == Some("true");
        // Two objects by key, not a copy of every cache.
        let Some(task) = one(&self.caches.tasks, Some(ns), name) else {
            return problem(StatusCode::NOT_FOUND, &format!("Task {ns}/{name} not found"));
        };
        let Some(agent) = task
            .spec
            .agent
            .as_deref()
            .and_then(|a| one(&self.caches.agents, None, a))
        else {
            return problem(
                StatusCode::NOT_FOUND,
                &format!("Task {ns}/{name} is not bound to a known agent"),
            );
        };
        let path = format!("/v1/tasks/{ns}/{name}/logs?tail={tail}&follow={follow}");
        match agents::get(&agent, token, &path).await {
            Ok((StatusCode::OK, body)) => {
                let mut r = full(StatusCode::OK, "text/plain; charset=utf-8", "");
                *r.body_mut() = body.map_err(std::io::Error::other).boxed();
                r
            }
            Ok((code, body)) => {
                let text = body
                    .collect()
                    .await
                    .map(http_body_util::Collected::to_bytes)
                    .unwrap_or_default();
                let message = serde_json::from_slice::<Value>(&text)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| String::from_utf8_lossy(&text).into_owned());
                problem(
                    StatusCode::BAD_GATEWAY,
                    &format!("agent {} answered {code}: {message}", agent.name_any()),
                )
            }
            Err(e) => problem(StatusCode::BAD_GATEWAY, &e),
        }
    }

    /// The most recent events, newest first.
    async fn events(&self) -> Response<Body> {
        let api: Api<Event> = Api::all(self.client.clone());
        match api.list(&ListParams::default().limit(500)).await {
            Ok(list) => {
                let mut items: Vec<Value> = list
                    .items
                    .iter()
                    .map(|e| {
                        let when = e
                            .last_timestamp
                            .as_ref()
                            .map(|t| t.0)
                            .or_else(|| e.event_time.as_ref().map(|t| t.0));
                        json!({
                            "namespace": e.namespace(),
                            "kind": e.involved_object.kind,
                            "object": e.involved_object.name,
                            "type": e.type_,
                            "reason": e.reason,
                            "message": e.message,
                            "count": e.count,
                            "lastTimestamp": when.map(|t| t.to_string()),
                        })
                    })
                    .collect();
                items.sort_by(|a, b| b["lastTimestamp"].as_str().cmp(&a["lastTimestamp"].as_str()));
                items.truncate(100);
                json_reply(StatusCode::OK, &json!({"items": items}))
            }
            Err(e) => problem(StatusCode::BAD_GATEWAY, &format!("failed to list events: {e}")),
        }
    }
}

/// The dashboard's listener, bound before the caches exist (so a bad address fails at start),
/// and its acceptor.
pub struct Bound {
    listener: TcpListener,
    acceptor: Arc<Acceptor>,
    config: DashboardConfig,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("listen", &self.config.listen)
            .finish_non_exhaustive()
    }
}

/// Binds the dashboard's address and reads its certificate; prints its URL.
///
/// # Errors
/// When the address cannot be bound or the certificate read.
pub async fn bind(config: DashboardConfig) -> Result<Bound, String> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("failed to bind the dashboard's address {}: {e}", config.listen))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let acceptor = match &config.tls {
        Some(files) => {
            super::admin_tls::acceptor(Some(files), bound)
                .map_err(|e| format!("the dashboard's certificate: {e}"))?
                .0
        }
        None => Acceptor::insecure_plain(),
    };
    println!(
        "ringrift controller: dashboard on {}://{bound}/",
        acceptor.scheme()
    );
    Ok(Bound {
        listener,
        acceptor: Arc::new(acceptor),
        config,
    })
}

/// Serves the dashboard from `caches` until `shutdown`.
pub async fn serve(
    bound: Bound,
    (caches, client): (Caches, Client),
    health: Arc<super::admin::Health>,
    shutdown: CancellationToken,
) {
    let Bound {
        listener,
        acceptor,
        config,
    } = bound;
    let dashboard = Arc::new(Dashboard {
        caches,
        health,
        client,
        token: config.token,
        agent_token: config.agent_token,
        secure: acceptor.is_tls(),
        live: Mutex::new(HashMap::new()),
    });
    let make = move |_client| {
        let dashboard = dashboard.clone();
        hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let dashboard = dashboard.clone();
            async move { Ok::<_, Infallible>(dashboard.answer(request).await) }
        })
    };
    let refused = |peer: std::net::SocketAddr, e: &ringrift_tls::serve::AcceptError| {
        tracing::debug!(%peer, error = %e, "dashboard connection not accepted");
    };
    ringrift_tls::http::serve(
        listener,
        acceptor,
        make,
        refused,
        shutdown,
        Duration::from_secs(2),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_counts_under_a_bounded_route() {
        for (path, route) in [
            ("/api/overview", "overview"),
            ("/api/loops/ns/lp", "loop"),
            ("/api/tasks/ns/t", "task"),
            ("/api/tasks/ns/t/log", "log"),
            ("/api/jobs/ns/j/tasks", "job"),
            ("/api/whatever/else", "api-other"),
            ("/assets/app.js", "asset"),
            ("/login", "login"),
            ("/loops/ns/lp", "page"),
            ("/", "page"),
            ("/../../etc/passwd", "page"),
        ] {
            assert_eq!(route_of(path), route, "{path}");
        }
        assert_eq!(query_param(Some("a=1&t=x%2By"), "t").as_deref(), Some("x+y"));
        assert_eq!(query_param(None, "t"), None);
    }
}
