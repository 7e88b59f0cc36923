//! The admin port: `/live` (the process runs), `/ready` (its caches are synced; standbys are
//! ready too) and `/metrics`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;

use super::metrics::Metrics;

/// What the admin port reports on.
#[derive(Debug, Default)]
pub struct Health {
    /// Every cache has its first full list.
    pub ready: AtomicBool,
    /// The metrics.
    pub metrics: Metrics,
}

fn answer(health: &Health, path: &str) -> Response<Full<Bytes>> {
    let (code, content_type, body) = match path {
        "/live" | "/livez" | "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/ready" | "/readyz" => {
            if health.ready.load(Ordering::Relaxed) {
                (StatusCode::OK, "text/plain", "ok\n".to_owned())
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "caches not synced yet\n".to_owned(),
                )
            }
        }
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            health.metrics.encode(),
        ),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".to_owned()),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}

/// Serves the admin port until `shutdown`.
pub async fn serve(listener: TcpListener, health: Arc<Health>, shutdown: impl Future<Output = ()>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let health = health.clone();
                let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                    let response = answer(&health, request.uri().path());
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
}
