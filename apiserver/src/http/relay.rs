//! Task logs through the server, for agents nobody can connect to: the reader asks the server
//! (`GET /apis/ringrift.ai/v1alpha1/namespaces/{ns}/tasks/{name}/log?tailLines=N&follow=true`,
//! authorized as `get` on `tasks/log`, like `pods/log`), the server queues the request for the
//! agent the Task is bound to, and the agent, which keeps asking on its own connection outward
//! (`GET /ringrift/v1/relay/next`, held for up to 25 s), sends the log back in pieces (`POST
//! /ringrift/v1/relay/answer/{id}?status=&end=`) that the server streams to the reader. A reader
//! that leaves makes the next piece answer 410, and the agent stops. Only the agent a request
//! was queued for may answer it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;

use super::reply::{Body, error, json_response};
use super::state::ApiServer;
use super::status::ApiError;
use crate::store::ResourceKey;

/// How long an agent's ask is held open when nobody wants a log.
const HOLD: Duration = Duration::from_secs(25);
/// How long a reader waits for the agent to start answering.
const PICKUP: Duration = Duration::from_secs(30);
/// Requests queued for one agent at most.
const QUEUE: usize = 16;

/// One piece of an answer.
struct Piece {
    status: Option<u16>,
    data: Bytes,
}

/// The requests waiting for each agent, and the readers waiting for answers.
#[derive(Debug, Default)]
pub(crate) struct Relay {
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    /// Request id → (the agent it was queued for, where its pieces go).
    readers: Mutex<HashMap<String, (String, mpsc::Sender<Piece>)>>,
}

#[derive(Debug)]
struct Queue {
    tx: mpsc::Sender<Value>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Value>>,
}

impl std::fmt::Debug for Piece {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Piece")
            .field("status", &self.status)
            .field("len", &self.data.len())
            .finish()
    }
}

impl Relay {
    fn queue(&self, agent: &str) -> Arc<Queue> {
        let mut queues = self
            .queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        queues
            .entry(agent.to_owned())
            .or_insert_with(|| {
                let (tx, rx) = mpsc::channel(QUEUE);
                Arc::new(Queue {
                    tx,
                    rx: tokio::sync::Mutex::new(rx),
                })
            })
            .clone()
    }

    fn readers(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, mpsc::Sender<Piece>)>> {
        self.readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `GET …/tasks/{name}/log` (already authorized): the log of the Task, from its agent.
pub(crate) async fn task_log(
    server: &ApiServer,
    namespace: &str,
    name: &str,
    query: &super::query::Query,
) -> Response<Body> {
    let key = ResourceKey::new("ringrift.ai", "tasks");
    let task = match server.store.get(&key, namespace, name).await {
        Ok(Some(task)) => task,
        Ok(None) => return error(&ApiError::not_found(&key, name)),
        Err(e) => return error(&ApiError::internal(e.to_string())),
    };
    let Some(agent) = task
        .pointer("/spec/agent")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return error(&ApiError::bad_request(format!(
            "Task {name} is not bound to an agent yet"
        )));
    };
    let tail = match query.get("tailLines").map(str::parse::<usize>) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return error(&ApiError::bad_request("tailLines must be a whole number")),
    };
    let follow = query.flag("follow");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (tx, mut rx) = mpsc::channel::<Piece>(64);
    server.relay.readers().insert(id.clone(), (agent.clone(), tx));
    let ask = json!({"id": id, "namespace": namespace, "name": name, "tail": tail, "follow": follow});
    if server.relay.queue(&agent).tx.try_send(ask).is_err() {
        server.relay.readers().remove(&id);
        return error(&ApiError::unavailable(format!(
            "too many log requests are waiting for agent {agent}; try again shortly"
        )));
    }
    let Ok(Some(first)) = tokio::time::timeout(PICKUP, rx.recv()).await else {
        server.relay.readers().remove(&id);
        return error(&ApiError::timeout(format!(
            "agent {agent} did not pick up the request within {}s: it is not connected to this server (is it running, and can it reach the server?)",
            PICKUP.as_secs()
        )));
    };
    let status = StatusCode::from_u16(first.status.unwrap_or(200)).unwrap_or(StatusCode::BAD_GATEWAY);
    if status != StatusCode::OK {
        server.relay.readers().remove(&id);
        let message = serde_json::from_slice::<Value>(&first.data)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&first.data).into_owned());
        return json_response(
            status,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": status.as_u16(),
                    "reason": status.canonical_reason().unwrap_or("Error"),
                    "message": format!("agent {agent}: {message}")}),
        );
    }
    let pieces = tokio_stream::once(first.data)
        .chain(tokio_stream::wrappers::ReceiverStream::new(rx).map(|p| p.data))
        .map(|data| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(data)));
    let body: Body = http_body_util::StreamBody::new(pieces).boxed();
    Response::builder()
        .status(StatusCode::OK)
        .header(hyper::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body)
        .unwrap_or_else(|_| error(&ApiError::internal("cannot build the response")))
}

/// `GET /ringrift/v1/relay/next` from `agent`: the next request for it, or 204 after a while.
pub(crate) async fn next(server: &ApiServer, agent: &str) -> Response<Body> {
    let queue = server.relay.queue(agent);
    let mut rx = queue.rx.lock().await;
    match tokio::time::timeout(HOLD, rx.recv()).await {
        Ok(Some(ask)) => json_response(StatusCode::OK, &ask),
        _ => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(
                http_body_util::Empty::new()
                    .map_err(|never| match never {})
                    .boxed(),
            )
            .unwrap_or_else(|_| error(&ApiError::internal("cannot build the response"))),
    }
}

/// `POST /ringrift/v1/relay/answer/{id}` from `agent`: one piece of its answer.
pub(crate) async fn answer(
    server: &ApiServer,
    agent: &str,
    id: &str,
    query: &super::query::Query,
    data: Bytes,
) -> Response<Body> {
    let reader = server.relay.readers().get(id).cloned();
    let Some((owner, tx)) = reader else {
        return error(&ApiError::gone(format!("nobody is reading {id} any more")));
    };
    if owner != agent {
        return error(&ApiError::forbidden(format!(
            "request {id} was not made of agent {agent}"
        )));
    }
    let status = query.get("status").and_then(|s| s.parse().ok());
    if tx.send(Piece { status, data }).await.is_err() {
        server.relay.readers().remove(id);
        return error(&ApiError::gone(format!("the reader of {id} left")));
    }
    if query.flag("end") {
        server.relay.readers().remove(id);
    }
    json_response(StatusCode::OK, &json!({"delivered": true}))
}
