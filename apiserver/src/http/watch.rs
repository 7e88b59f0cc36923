//! Watches: newline-delimited JSON events from a resourceVersion on, with label and field
//! selectors, bookmarks, `timeoutSeconds`, initial events, and an in-stream `410 Gone` when the
//! requested version is older than the kept history.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::query::Query;
use super::reply::{Body, error};
use super::selectors::Selector;
use super::state::ApiServer;
use super::status::ApiError;
use super::target::selectors;
use crate::registry::ResourceType;
use crate::store::{EventType, StoreError, WatchEvent};

/// Bytes of waiting events sent as one chunk at most.
const CHUNK_MAX: usize = 256 * 1024;

/// Longest watch when the client does not say (the API server picks 30 to 60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

struct Filter {
    namespace: String,
    labels: Selector,
    fields: Selector,
}

impl Filter {
    fn in_scope(&self, event: &WatchEvent) -> bool {
        self.namespace.is_empty() || event.namespace == self.namespace
    }

    fn selects(&self, obj: &Value) -> bool {
        self.labels.matches_labels(obj) && self.fields.matches_fields(obj)
    }
}

/// One watch event as a JSON line around the object's stored JSON (encoded once by the store
/// for every watcher).
fn stored_line(event_type: &str, body: &str) -> Bytes {
    let mut bytes = Vec::with_capacity(body.len() + 32);
    push_line(&mut bytes, event_type, body);
    Bytes::from(bytes)
}

/// Appends the line of [`stored_line`] to `chunk`.
fn push_line(chunk: &mut Vec<u8>, event_type: &str, body: &str) {
    chunk.extend_from_slice(b"{\"type\":\"");
    chunk.extend_from_slice(event_type.as_bytes());
    chunk.extend_from_slice(b"\",\"object\":");
    chunk.extend_from_slice(body.as_bytes());
    chunk.extend_from_slice(b"}\n");
}

/// One watch event as a JSON line, written straight from the object (no copy of it).
fn line(event_type: &str, object: &Value) -> Bytes {
    let mut bytes = Vec::with_capacity(1024);
    bytes.extend_from_slice(b"{\"type\":");
    // Writing JSON into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut bytes, event_type);
    bytes.extend_from_slice(b",\"object\":");
    let _ = serde_json::to_writer(&mut bytes, object);
    bytes.extend_from_slice(b"}\n");
    Bytes::from(bytes)
}

fn bookmark(t: &ResourceType, revision: u64, initial_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"kind": t.kind, "apiVersion": t.api_version(), "metadata": metadata}),
    )
}

/// Starts a watch; the response streams until the timeout, the client leaving, or shutdown.
pub(crate) fn watch(
    server: &Arc<ApiServer>,
    t: &ResourceType,
    namespace: &str,
    query: &Query,
) -> Response<Body> {
    let (labels, fields) = match selectors(t, query) {
        Ok(s) => s,
        Err(e) => return error(&e),
    };
    let since = match query
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0")
    {
        None => None,
        Some(v) => match v.parse::<u64>() {
            Ok(rv) => Some(rv),
            Err(_) => return error(&ApiError::bad_request(format!("invalid resourceVersion {v:?}"))),
        },
    };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|s| s.parse().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let bookmarks = query.flag("allowWatchBookmarks");
    let initial_events = query.flag("sendInitialEvents") || since.is_none();
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let filter = Filter {
        namespace: namespace.to_owned(),
        labels,
        fields,
    };
    let server = Arc::clone(server);
    let t = t.clone();
    let announce_end = query.flag("sendInitialEvents");
    tokio::spawn(async move {
        server.metrics.watches.inc();
        let live = server.store.subscribe(&t.key());
        let run = stream(
            &server,
            &t,
            &filter,
            since,
            initial_events,
            announce_end,
            bookmarks,
            live,
            &tx,
        );
        let _ = tokio::time::timeout(timeout, run).await;
        server.metrics.watches.dec();
    });
    let body = StreamBody::new(ReceiverStream::new(rx).map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let mut response = Response::new(BodyExt::boxed(body));
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[allow(clippy::too_many_arguments)]
async fn stream(
    server: &ApiServer,
    t: &ResourceType,
    filter: &Filter,
    since: Option<u64>,
    initial_events: bool,
    announce_end: bool,
    bookmarks: bool,
    mut live: broadcast::Receiver<WatchEvent>,
    tx: &mpsc::Sender<Bytes>,
) {
    let key = t.key();
    let mut last = 0;
    let scope = (!filter.namespace.is_empty()).then_some(filter.namespace.as_str());
    if let Some(rv) = since {
        match server.store.events_since(&key, rv).await {
            Ok(history) => {
                last = rv;
                for event in history {
                    last = event.revision;
                    if !send(tx, filter, &view(t, &event)).await {
                        return;
                    }
                }
            }
            Err(StoreError::Expired { requested, oldest }) => {
                let status = ApiError::expired(format!("too old resource version: {requested} ({oldest})"))
                    .to_status();
                let _ = tx.send(line("ERROR", &status)).await;
                return;
            }
            Err(e) => {
                let _ = tx
                    .send(line("ERROR", &ApiError::internal(e.to_string()).to_status()))
                    .await;
                return;
            }
        }
    } else if initial_events {
        let Ok((items, revision)) = server.store.list(&key, scope).await else {
            return;
        };
        let items = items.into_iter().map(|o| super::convert::from_storage(t, o));
        for obj in items.filter(|o| filter.selects(o)) {
            if tx.send(line("ADDED", &obj)).await.is_err() {
                return;
            }
        }
        last = revision;
        if announce_end && tx.send(bookmark(t, revision, true)).await.is_err() {
            return;
        }
    }
    let mut ticker = tokio::time::interval(server.options.bookmark_interval);
    ticker.tick().await;
    loop {
        let first = tokio::select! {
            () = tx.closed() => return,
            _ = ticker.tick(), if bookmarks => None,
            received = live.recv() => Some(received),
        };
        // A bookmark carries the store's revision, not only this kind's last: read before
        // taking what waits in the channel, every event of this kind up to it is there. A
        // watch of a quiet kind then resumes from a version the history still holds (as
        // kube-apiserver's bookmarks advance with etcd's progress notifications).
        let published = first.is_none().then(|| server.store.published_revision());
        // The events already waiting go out together, as one chunk: one write and one wake-up
        // of the client for a burst instead of one per event.
        let mut chunk = Vec::new();
        let mut next = first.or_else(|| waiting(&mut live));
        while let Some(received) = next.take() {
            match received {
                Ok(event) if event.resource == key && event.revision > last => {
                    last = event.revision;
                    let event = view(t, &event);
                    if let Some(event_type) = seen(filter, &event) {
                        push_line(&mut chunk, event_type, &event.body);
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let status = ApiError::expired(
                        "the watch fell behind; list again and watch from the new resourceVersion",
                    )
                    .to_status();
                    chunk.extend_from_slice(&line("ERROR", &status));
                    let _ = tx.send(chunk.into()).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
            if chunk.len() >= CHUNK_MAX {
                if tx.send(std::mem::take(&mut chunk).into()).await.is_err() {
                    return;
                }
                // A live burst goes back to the select (a bookmark must drain the channel).
                if published.is_none() {
                    break;
                }
            }
            next = waiting(&mut live);
        }
        if let Some(revision) = published {
            last = last.max(revision);
            chunk.extend_from_slice(&bookmark(t, last, false));
        }
        if !chunk.is_empty() && tx.send(chunk.into()).await.is_err() {
            return;
        }
        if live.is_closed() {
            return;
        }
    }
}

/// The next event already waiting in `live`, if any.
fn waiting(
    live: &mut broadcast::Receiver<WatchEvent>,
) -> Option<Result<WatchEvent, broadcast::error::RecvError>> {
    match live.try_recv() {
        Err(broadcast::error::TryRecvError::Empty) => None,
        Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Err(broadcast::error::RecvError::Lagged(n))),
        Err(broadcast::error::TryRecvError::Closed) => Some(Err(broadcast::error::RecvError::Closed)),
        Ok(event) => Some(Ok(event)),
    }
}

/// A store event as a watcher of `t`'s version sees it: as stored, or converted (the objects
/// of `events.k8s.io` Events and of CRD versions other than the storage one).
fn view<'a>(t: &ResourceType, event: &'a WatchEvent) -> std::borrow::Cow<'a, WatchEvent> {
    if !super::convert::converts(t) {
        return std::borrow::Cow::Borrowed(event);
    }
    let object = super::convert::from_storage(t, (*event.object).clone());
    let body: Arc<str> = serde_json::to_string(&object).unwrap_or_default().into();
    std::borrow::Cow::Owned(WatchEvent {
        object: Arc::new(object),
        body,
        previous: event
            .previous
            .as_ref()
            .map(|p| Arc::new(super::convert::from_storage(t, (**p).clone()))),
        ..event.clone()
    })
}

/// Sends one store event as the client sees it through its selectors. False when the client is
/// gone.
async fn send(tx: &mpsc::Sender<Bytes>, filter: &Filter, event: &WatchEvent) -> bool {
    match seen(filter, event) {
        Some(event_type) => tx.send(stored_line(event_type, &event.body)).await.is_ok(),
        None => true,
    }
}

/// How the client sees one store event through its selectors, if at all: an object that starts
/// matching is ADDED, one that stops matching is DELETED, one that matches before and after is
/// MODIFIED.
fn seen(filter: &Filter, event: &WatchEvent) -> Option<&'static str> {
    if !filter.in_scope(event) {
        return None;
    }
    let before = event.previous.as_ref().is_some_and(|p| filter.selects(p));
    let after = event.event_type != EventType::Deleted && filter.selects(&event.object);
    seen_as(before, after)
}

/// The event a watcher sees, from whether its selectors matched the object before and after.
fn seen_as(before: bool, after: bool) -> Option<&'static str> {
    match (before, after) {
        (false, true) => Some("ADDED"),
        (true, true) => Some("MODIFIED"),
        (true, false) => Some("DELETED"),
        (false, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_transitions() {
        assert_eq!(
            seen_as(false, true),
            Some("ADDED"),
            "created, or relabeled into the selection"
        );
        assert_eq!(seen_as(true, true), Some("MODIFIED"));
        assert_eq!(
            seen_as(true, false),
            Some("DELETED"),
            "deleted, or relabeled out of the selection"
        );
        assert_eq!(seen_as(false, false), None, "never visible");
    }

    #[test]
    fn a_stored_line_is_the_line_of_the_object() {
        let object = json!({"kind": "Task", "metadata": {"name": "a\"b", "labels": {"x": "ü"}}});
        let body = serde_json::to_string(&object).unwrap();
        assert_eq!(stored_line("MODIFIED", &body), line("MODIFIED", &object));
    }
}
