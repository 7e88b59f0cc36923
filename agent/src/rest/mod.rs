//! The agent's REST API (DESIGN.md section 7), on warp: health and readiness without a token,
//! everything else behind `Authorization: Bearer <token>`; bounded bodies and validated paths;
//! JSON errors with stable codes ([`errors`]); routes described in [`openapi`].

pub mod errors;
pub mod openapi;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use warp::Filter as _;
use warp::http::StatusCode;
use warp::reply::Reply as _;

use self::errors::ApiError;
use crate::exec::classify::Stop;
use crate::exec::{RunHandle, RunInfo, logs};
use crate::metrics::HttpLabels;
use crate::node::Node;

/// Largest request body (the cancel reason).
pub const MAX_BODY: u64 = 4 * 1024;
/// Most log lines one request returns before following.
pub const MAX_TAIL: usize = 100_000;

/// What the handlers share.
#[derive(Debug)]
pub struct Rest {
    /// The agent.
    pub node: Arc<Node>,
    /// The bearer token.
    pub token: String,
    /// The token peers present to fetch artifacts (derived from the cluster key), if any: it
    /// opens the artifact routes only.
    pub peer_token: Option<String>,
    /// The token Prometheus presents, if any: it opens `/metrics` only.
    pub metrics_token: Option<String>,
    /// True once registered and watching.
    pub ready: watch::Receiver<bool>,
}

/// Whether an `Authorization` header carries `token`, compared in constant time.
pub fn authorized(header: Option<&str>, token: &str) -> bool {
    ringrift_tls::secret::bearer_is(header, token)
}

/// Whether `s` is a DNS-1123 name of at most `max` characters.
fn dns_name(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

fn task_path(namespace: &str, name: &str) -> Result<(), ApiError> {
    if !dns_name(namespace, 63) || namespace.contains('.') {
        return Err(ApiError::invalid_path(format!("invalid namespace {namespace:?}")));
    }
    if !dns_name(name, 253) {
        return Err(ApiError::invalid_path(format!("invalid task name {name:?}")));
    }
    Ok(())
}

/// A task as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TaskEntry {
    namespace: String,
    name: String,
    uid: String,
    attempt: u32,
    role: ringrift_crds::task::Role,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    gpus: Vec<String>,
    #[serde(flatten)]
    info: RunInfo,
}

fn entry(run: &RunHandle) -> TaskEntry {
    TaskEntry {
        namespace: run.namespace.clone(),
        name: run.name.clone(),
        uid: run.uid.clone(),
        attempt: run.attempt,
        role: run.role,
        gpus: run.gpus.clone(),
        info: run.info(),
    }
}

fn find(rest: &Rest, namespace: &str, name: &str) -> Result<Arc<RunHandle>, ApiError> {
    task_path(namespace, name)?;
    rest.node
        .runs
        .by_name(namespace, name)
        .ok_or_else(|| ApiError::not_found(format!("no task {namespace}/{name} on this agent")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    tail: Option<usize>,
    follow: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    reason: Option<String>,
}

fn json<T: Serialize>(value: &T, status: StatusCode) -> warp::reply::Response {
    warp::reply::with_status(warp::reply::json(value), status).into_response()
}

fn node_info(rest: &Rest) -> warp::reply::Response {
    let node = &rest.node;
    let inventory = node.inventory.borrow().clone();
    json(
        &serde_json::json!({
            "name": node.name,
            "version": node.version,
            "simulated": inventory.simulated,
            "gpus": inventory.gpus,
            "gpuError": inventory.gpu_error,
            "unhealthyGpus": inventory.unhealthy(),
            "host": inventory.host,
            "runningTasks": node.runs.active().len(),
        }),
        StatusCode::OK,
    )
}

fn logs(run: &Arc<RunHandle>, query: &LogQuery) -> Result<warp::reply::Response, ApiError> {
    let stream = log_stream(run, query.tail, query.follow.unwrap_or(false))?;
    let Some(rx) = stream.rest else {
        return Ok(warp::reply::with_header(
            stream.first.to_vec(),
            "content-type",
            "text/plain; charset=utf-8",
        )
        .into_response());
    };
    let first = futures_util::stream::once(std::future::ready(Ok::<_, Infallible>(stream.first)));
    let body = warp::reply::stream(futures_util::StreamExt::chain(
        first,
        tokio_stream::wrappers::ReceiverStream::new(rx),
    ));
    Ok(warp::reply::with_header(body, "content-type", "text/plain; charset=utf-8").into_response())
}

/// A task's log: the last lines, and for a live task followed, the lines as they come.
pub struct LogStream {
    /// The last lines (newline-terminated).
    pub first: Bytes,
    /// The lines that follow, until the task ends (or the receiver is dropped).
    pub rest: Option<mpsc::Receiver<Result<Bytes, Infallible>>>,
}

/// The log of the task `namespace/name` on this agent: `tail` last lines (default 100), then,
/// with `follow`, the new ones until it ends.
///
/// # Errors
/// [`ApiError`]: no such task here (404), a tail too long (400).
pub fn task_log(
    node: &Node,
    namespace: &str,
    name: &str,
    tail: Option<usize>,
    follow: bool,
) -> Result<LogStream, ApiError> {
    task_path(namespace, name)?;
    let run = node
        .runs
        .by_name(namespace, name)
        .ok_or_else(|| ApiError::not_found(format!("no task {namespace}/{name} on this agent")))?;
    log_stream(&run, tail, follow)
}

fn log_stream(
    run: &Arc<RunHandle>,
    tail: Option<usize>,
    keep_following: bool,
) -> Result<LogStream, ApiError> {
    let tail = tail.unwrap_or(100);
    if tail > MAX_TAIL {
        return Err(ApiError::bad_request(format!("tail must be at most {MAX_TAIL}")));
    }
    // Subscribe before reading the tail, so no line falls between the two.
    let mut follow = run.log.subscribe();
    let mut lines = run.log.tail(tail);
    if lines.len() < tail && (run.log.trimmed() || lines.is_empty()) {
        // Older lines than the memory holds (or a run re-reported after a restart, with none in
        // memory) come from the file.
        if let Ok(from_file) = logs::file_tail(&run.log_path(), tail)
            && from_file.len() > lines.len()
        {
            lines = from_file;
        }
    }
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    if !keep_following || run.is_done() {
        return Ok(LogStream {
            first: Bytes::from(text),
            rest: None,
        });
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    let mut done = run.done();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                line = follow.recv() => match line {
                    Ok(line) => if tx.send(Ok(Bytes::from(line + "\n"))).await.is_err() { return },
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        if tx.send(Ok(Bytes::from(format!("[{n} lines skipped]\n")))).await.is_err() { return }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                changed = done.changed() => {
                    if changed.is_ok() && !*done.borrow_and_update() {
                        continue;
                    }
                    // Lines already sent to the channel before the end still arrive.
                    while let Ok(line) = follow.try_recv() {
                        if tx.send(Ok(Bytes::from(line + "\n"))).await.is_err() { return }
                    }
                    return;
                }
                () = tx.closed() => return,
            }
        }
    });
    Ok(LogStream {
        first: Bytes::from(text),
        rest: Some(rx),
    })
}

fn cancel(run: &Arc<RunHandle>, body: &Bytes) -> Result<warp::reply::Response, ApiError> {
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let parsed: CancelBody =
            serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid body: {e}")))?;
        if parsed.reason.as_ref().is_some_and(|r| r.len() > 256) {
            return Err(ApiError::bad_request("reason must be at most 256 characters"));
        }
        parsed.reason
    };
    if run.is_done() {
        return Err(ApiError::conflict(format!(
            "task {}/{} already finished",
            run.namespace, run.name
        )));
    }
    let asked = run.request_stop(Stop::Cancelled);
    tracing::info!(task = %run.name, reason = reason.as_deref().unwrap_or(""), asked, "cancel requested through the REST API");
    Ok(json(
        &serde_json::json!({"cancelling": true, "namespace": run.namespace, "name": run.name, "attempt": run.attempt}),
        StatusCode::ACCEPTED,
    ))
}

fn reply(r: Result<warp::reply::Response, ApiError>) -> warp::reply::Response {
    r.unwrap_or_else(warp::Reply::into_response)
}

/// Which token besides the REST token a route accepts.
#[derive(Debug, Clone, Copy)]
enum Also {
    Nothing,
    Peers,
    Metrics,
}

/// A filter that lets a request through when its bearer token is the REST token, or the token
/// `also` names.
fn bearer(
    rest: &Arc<Rest>,
    also: Also,
) -> impl warp::Filter<Extract = (), Error = warp::Rejection> + Clone + use<> {
    let rest = rest.clone();
    warp::header::optional::<String>("authorization")
        .and_then(move |header: Option<String>| {
            let rest = rest.clone();
            async move {
                let other = match also {
                    Also::Nothing => None,
                    Also::Peers => rest.peer_token.as_deref(),
                    Also::Metrics => rest.metrics_token.as_deref(),
                };
                if authorized(header.as_deref(), &rest.token)
                    || other.is_some_and(|t| authorized(header.as_deref(), t))
                {
                    Ok(())
                } else if header.is_none() {
                    Err(warp::reject::custom(ApiError::unauthorized(
                        "a bearer token is required",
                    )))
                } else {
                    Err(warp::reject::custom(ApiError::unauthorized("wrong bearer token")))
                }
            }
        })
        .untuple_one()
}

/// A filter that hands every handler the shared state.
fn with(rest: &Arc<Rest>) -> impl warp::Filter<Extract = (Arc<Rest>,), Error = Infallible> + Clone + use<> {
    let rest = rest.clone();
    warp::any().map(move || rest.clone())
}

/// The routes a probe or Prometheus reaches: health and readiness without a token, `/metrics`
/// with the REST or the metrics token.
fn probe_routes(
    rest: &Arc<Rest>,
) -> impl warp::Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone + use<> {
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| json(&serde_json::json!({"status": "ok"}), StatusCode::OK));
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(with(rest))
        .map(|rest: Arc<Rest>| {
            if *rest.ready.borrow() {
                json(&serde_json::json!({"status": "ready"}), StatusCode::OK)
            } else {
                ApiError::not_ready("not registered or not watching its Tasks yet").into_response()
            }
        });
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(bearer(rest, Also::Metrics))
        .and(with(rest))
        .map(|rest: Arc<Rest>| {
            warp::reply::with_header(
                rest.node.metrics.encode(),
                "content-type",
                "text/plain; version=0.0.4; charset=utf-8",
            )
            .into_response()
        });
    healthz.or(readyz).unify().or(metrics).unify()
}

/// The node and its tasks, behind the REST token: inventory, list, one task, its logs, cancel.
fn task_routes(
    rest: &Arc<Rest>,
) -> impl warp::Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone + use<> {
    let auth = bearer(rest, Also::Nothing);
    let node = warp::path!("v1" / "node")
        .and(warp::get())
        .and(auth.clone())
        .and(with(rest))
        .map(|rest: Arc<Rest>| node_info(&rest));
    let tasks = warp::path!("v1" / "tasks")
        .and(warp::get())
        .and(auth.clone())
        .and(with(rest))
        .map(|rest: Arc<Rest>| {
            let items: Vec<TaskEntry> = rest.node.runs.all().iter().map(|r| entry(r)).collect();
            json(&serde_json::json!({"items": items}), StatusCode::OK)
        });
    let task = warp::path!("v1" / "tasks" / String / String)
        .and(warp::get())
        .and(auth.clone())
        .and(with(rest))
        .map(|ns: String, name: String, rest: Arc<Rest>| {
            reply(find(&rest, &ns, &name).map(|r| json(&entry(&r), StatusCode::OK)))
        });
    let task_logs = warp::path!("v1" / "tasks" / String / String / "logs")
        .and(warp::get())
        .and(auth.clone())
        .and(warp::query::<LogQuery>())
        .and(with(rest))
        .map(|ns: String, name: String, q: LogQuery, rest: Arc<Rest>| {
            reply(find(&rest, &ns, &name).and_then(|r| logs(&r, &q)))
        });
    let task_cancel = warp::path!("v1" / "tasks" / String / String / "cancel")
        .and(warp::post())
        .and(auth)
        .and(warp::body::content_length_limit(MAX_BODY))
        .and(warp::body::bytes())
        .and(with(rest))
        .map(|ns: String, name: String, body: Bytes, rest: Arc<Rest>| {
            reply(find(&rest, &ns, &name).and_then(|r| cancel(&r, &body)))
        });
    node.or(tasks)
        .unify()
        .or(task)
        .unify()
        .or(task_logs)
        .unify()
        .or(task_cancel)
        .unify()
}

/// Sync: peers and the artifact list behind the REST token; an artifact's bytes and chunk list
/// with the REST or the peer token.
fn sync_routes(
    rest: &Arc<Rest>,
) -> impl warp::Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone + use<> {
    let auth = bearer(rest, Also::Nothing);
    let peer_auth = bearer(rest, Also::Peers);
    let peers = warp::path!("v1" / "peers")
        .and(warp::get())
        .and(auth.clone())
        .and(with(rest))
        .then(|rest: Arc<Rest>| async move {
            let (members, dead) = rest.node.sync.state.view();
            match rest.node.db.peers().await {
                Ok(known) => json(
                    &serde_json::json!({
                        "gossip": !members.is_empty(),
                        "members": members,
                        "dead": dead,
                        "known": known,
                    }),
                    StatusCode::OK,
                ),
                Err(e) => ApiError::internal(e.to_string()).into_response(),
            }
        });
    let artifacts = warp::path!("v1" / "artifacts")
        .and(warp::get())
        .and(auth)
        .and(with(rest))
        .then(|rest: Arc<Rest>| async move {
            match rest.node.db.artifacts().await {
                Ok(items) => json(&serde_json::json!({"items": items}), StatusCode::OK),
                Err(e) => ApiError::internal(e.to_string()).into_response(),
            }
        });
    let artifact = warp::path!("v1" / "artifacts" / String)
        .and(warp::get().map(|| false).or(warp::head().map(|| true)).unify())
        .and(peer_auth.clone())
        .and(warp::header::optional::<String>("range"))
        .and(with(rest))
        .then(
            |digest: String, head: bool, range: Option<String>, rest: Arc<Rest>| async move {
                reply(crate::sync::serve::content(rest.node.sync.clone(), digest, head, range).await)
            },
        );
    let artifact_chunks = warp::path!("v1" / "artifacts" / String / "chunks")
        .and(warp::get())
        .and(peer_auth.clone())
        .and(with(rest))
        .then(|digest: String, rest: Arc<Rest>| async move {
            reply(crate::sync::serve::chunks(rest.node.sync.clone(), digest).await)
        });
    // A copy pushed by a peer (replication: an unreachable agent's outputs).
    let push = warp::path!("v1" / "artifacts" / String)
        .and(warp::put())
        .and(peer_auth)
        .and(warp::query::<crate::sync::replicate::PushQuery>())
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and(with(rest))
        .then(
            |digest: String, query, length, body, rest: Arc<Rest>| async move {
                match crate::sync::replicate::accept(&rest.node.sync, &digest, query, length, body).await {
                    Ok((code, value)) => json(&value, code),
                    Err(e) => e.into_response(),
                }
            },
        );
    peers
        .or(artifacts)
        .unify()
        .or(artifact)
        .unify()
        .or(artifact_chunks)
        .unify()
        .or(push)
        .unify()
}

/// Every route, with errors recovered into JSON and each answer counted by route and code.
/// The REST token opens every route; the peer token also the artifact routes, the metrics
/// token also `/metrics`.
pub fn routes(
    rest: Arc<Rest>,
) -> impl warp::Filter<Extract = (impl warp::Reply,), Error = Infallible> + Clone {
    let openapi = warp::path!("v1" / "openapi.json")
        .and(warp::get())
        .and(bearer(&rest, Also::Nothing))
        .map(|| json(&openapi::document(), StatusCode::OK));
    probe_routes(&rest)
        .or(task_routes(&rest))
        .unify()
        .or(sync_routes(&rest))
        .unify()
        .or(openapi)
        .unify()
        .recover(errors::recover)
        .unify()
        .with(warp::log::custom(move |info| {
            rest.node
                .metrics
                .http_requests
                .get_or_create(&HttpLabels {
                    route: openapi::route_id(info.method().as_str(), info.path()).to_owned(),
                    code: info.status().as_u16().to_string(),
                })
                .inc();
        }))
}

/// Serves the API on `listener` until `shutdown` is cancelled: each connection through
/// `acceptor` (TLS; plain HTTP is answered 400), then the routes through hyper.
pub async fn serve(
    rest: Arc<Rest>,
    listener: tokio::net::TcpListener,
    acceptor: Arc<ringrift_tls::serve::Acceptor>,
    shutdown: CancellationToken,
) {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::debug!(?addr, tls = acceptor.is_tls(), "REST API serving");
    let service = warp::service(routes(rest));
    let make = move |_client| {
        let service = service.clone();
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let mut service = service.clone();
            tower::Service::call(&mut service, request)
        })
    };
    let refused = |peer: SocketAddr, e: &ringrift_tls::serve::AcceptError| {
        tracing::info!(%peer, error = %e, "REST connection not accepted");
    };
    ringrift_tls::http::serve(
        listener,
        acceptor,
        make,
        refused,
        shutdown,
        std::time::Duration::from_secs(5),
    )
    .await;
}

#[cfg(test)]
mod tests;
