//! The admin port, over TLS: `/live` (the process runs) and `/ready` (its caches are synced;
//! standbys are ready too) open to anyone (the kubelet's probes), `/metrics` behind the metrics
//! token (`Authorization: Bearer <token>`, compared in constant time).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use ringrift_tls::serve::Acceptor;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

/// What the admin port reports on.
#[derive(Debug, Default)]
pub struct Health {
    /// Every cache has its first full list.
    pub ready: AtomicBool,
    /// The metrics.
    pub metrics: Metrics,
    /// The token `/metrics` asks for; none configured: `/metrics` is refused.
    pub metrics_token: Option<String>,
}

fn answer(health: &Health, path: &str, authorization: Option<&str>) -> Response<Full<Bytes>> {
    let text = |code, body: &str| (code, "text/plain", body.to_owned());
    let (code, content_type, body) = match path {
        "/live" | "/livez" | "/healthz" => text(StatusCode::OK, "ok\n"),
        "/ready" | "/readyz" => {
            if health.ready.load(Ordering::Relaxed) {
                text(StatusCode::OK, "ok\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet\n")
            }
        }
        "/metrics" => match &health.metrics_token {
            None => text(
                StatusCode::FORBIDDEN,
                "no metrics token is configured (--metrics-token-file)\n",
            ),
            Some(token) if !ringrift_tls::secret::bearer_is(authorization, token) => text(
                StatusCode::UNAUTHORIZED,
                "Unauthorized: /metrics needs the metrics token\n",
            ),
            Some(_) => (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                health.metrics.encode(),
            ),
        },
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}

/// Serves the admin port through `acceptor` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    acceptor: Arc<Acceptor>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    let make = move |_client| {
        let health = health.clone();
        hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let authorization = request
                .headers()
                .get(hyper::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let response = answer(&health, request.uri().path(), authorization);
            async move { Ok::<_, std::convert::Infallible>(response) }
        })
    };
    let refused = |peer: std::net::SocketAddr, e: &ringrift_tls::serve::AcceptError| {
        tracing::debug!(%peer, error = %e, "admin connection not accepted");
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
    fn probes_are_open_and_metrics_need_the_token() {
        let health = Health {
            metrics_token: Some("m-token".into()),
            ..Health::default()
        };
        assert_eq!(answer(&health, "/live", None).status(), StatusCode::OK);
        assert_eq!(
            answer(&health, "/ready", None).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        health.ready.store(true, Ordering::Relaxed);
        assert_eq!(answer(&health, "/ready", None).status(), StatusCode::OK);
        assert_eq!(
            answer(&health, "/metrics", None).status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            answer(&health, "/metrics", Some("Bearer wrong!")).status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            answer(&health, "/metrics", Some("Bearer m-token")).status(),
            StatusCode::OK
        );
        let none = Health::default();
        assert_eq!(
            answer(&none, "/metrics", Some("Bearer ")).status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(answer(&none, "/nope", None).status(), StatusCode::NOT_FOUND);
    }
}
