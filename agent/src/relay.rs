//! Task logs read through the API server, for agents nobody can connect to (NAT, closed
//! inbound ports). The agent keeps asking the server, on its own connection outward, whether
//! someone wants a log (`GET /ringrift/v1/relay/next`, held open by the server for up to half a
//! minute); for each request it sends the log back in pieces (`POST
//! /ringrift/v1/relay/answer/{id}`), following the task while the reader stays. The server
//! authorizes readers (`get` on `tasks/log`) and passes the pieces on (`GET
//! /apis/ringrift.ai/v1alpha1/namespaces/{ns}/tasks/{name}/log`, what `ringrift logs` reads).
//!
//! Against an API server without these paths (a Kubernetes cluster's), the agent stops asking
//! after the first 404: there, agents are reached directly. It stops too when the server
//! refuses its credential these paths (401, 403: it runs with a credential other than an
//! agent's own, such as an administrator's kubeconfig), with one warning, rather than asking
//! again every few seconds for as long as it runs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kube::Client;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::node::Node;

/// How long one ask waits for a request at most (the server answers 204 sooner).
const ASK_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause after a failed ask.
const RETRY: Duration = Duration::from_secs(5);
/// Longest a piece of log waits to be sent with the lines after it.
const GATHER: Duration = Duration::from_millis(200);
/// Most bytes sent in one piece.
const PIECE: usize = 256 * 1024;

/// A reader's request, as the server hands it over.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Ask {
    /// The request's id, to answer to.
    pub id: String,
    /// The Task's namespace.
    pub namespace: String,
    /// The Task's name.
    pub name: String,
    /// Last lines wanted.
    #[serde(default)]
    pub tail: Option<usize>,
    /// Whether to keep sending new lines.
    #[serde(default)]
    pub follow: bool,
}

/// Asks for requests and answers them until `shutdown`.
pub async fn run(node: Arc<Node>, shutdown: CancellationToken) {
    loop {
        let request = warp::http::Request::get("/ringrift/v1/relay/next").body(Vec::new());
        let Ok(request) = request else { return };
        let asked = tokio::select! {
            () = shutdown.cancelled() => return,
            r = tokio::time::timeout(ASK_TIMEOUT, node.client.request_text(request)) => r,
        };
        match asked {
            Ok(Ok(text)) if text.trim().is_empty() => {}
            Ok(Ok(text)) => match serde_json::from_str::<Ask>(&text) {
                Ok(ask) => {
                    tracing::info!(task = %format!("{}/{}", ask.namespace, ask.name), follow = ask.follow, "sending a task's log through the API server");
                    tokio::spawn(answer(node.clone(), ask, shutdown.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "the API server relayed a request that does not parse"),
            },
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => {
                tracing::debug!("the API server does not relay logs; agents are reached directly");
                return;
            }
            Ok(Err(kube::Error::Api(s))) if s.code == 401 || s.code == 403 => {
                tracing::warn!(
                    code = s.code, message = %s.message,
                    "the API server does not relay task logs for this agent's credential (an agent's own identity may, from `ringrift join`); `ringrift logs` through the server will not reach this agent"
                );
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "asking the API server for log requests failed; asking again");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(RETRY) => {}
                }
            }
            Err(_) => {}
        }
    }
}

/// Sends one piece; false when the reader is gone (or the server refuses).
async fn send(client: &Client, id: &str, status: Option<u16>, end: bool, data: Vec<u8>) -> bool {
    let path = match status {
        Some(s) => format!("/ringrift/v1/relay/answer/{id}?end={end}&status={s}"),
        None => format!("/ringrift/v1/relay/answer/{id}?end={end}"),
    };
    let Ok(request) = warp::http::Request::post(path)
        .header("content-type", "application/octet-stream")
        .body(data)
    else {
        return false;
    };
    client.request_text(request).await.is_ok()
}

/// Answers `ask`: the error, or the tail and, when following, the lines as they come.
async fn answer(node: Arc<Node>, ask: Ask, shutdown: CancellationToken) {
    let client = node.client.clone();
    let stream = match crate::rest::task_log(&node, &ask.namespace, &ask.name, ask.tail, ask.follow) {
        Ok(stream) => stream,
        Err(e) => {
            let body = serde_json::to_vec(&e).unwrap_or_default();
            send(&client, &ask.id, Some(e.status().as_u16()), true, body).await;
            return;
        }
    };
    let Some(mut rest) = stream.rest else {
        send(&client, &ask.id, Some(200), true, stream.first.to_vec()).await;
        return;
    };
    if !send(&client, &ask.id, Some(200), false, stream.first.to_vec()).await {
        return;
    }
    loop {
        // Lines that come together go together.
        let mut piece: Vec<u8> = Vec::new();
        let first = tokio::select! {
            () = shutdown.cancelled() => None,
            line = rest.recv() => line,
        };
        let Some(Ok(line)) = first else { break };
        piece.extend_from_slice(&line);
        let until = tokio::time::Instant::now() + GATHER;
        while piece.len() < PIECE {
            match tokio::time::timeout_at(until, rest.recv()).await {
                Ok(Some(Ok(more))) => piece.extend_from_slice(&more),
                _ => break,
            }
        }
        if !send(&client, &ask.id, None, false, piece).await {
            return;
        }
    }
    send(&client, &ask.id, None, true, Bytes::new().to_vec()).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn asks_parse_with_their_defaults() {
        let ask: Ask = serde_json::from_str(r#"{"id": "r1", "namespace": "ns", "name": "t"}"#).unwrap();
        assert_eq!(
            ask,
            Ask {
                id: "r1".into(),
                namespace: "ns".into(),
                name: "t".into(),
                tail: None,
                follow: false
            }
        );
        let ask: Ask = serde_json::from_str(
            r#"{"id": "r2", "namespace": "ns", "name": "t", "tail": 5, "follow": true}"#,
        )
        .unwrap();
        assert_eq!((ask.tail, ask.follow), (Some(5), true));
    }
}
