//! Prometheus metrics of the API server, served at `/metrics` to authenticated users (under RBAC:
//! `system:masters`, or a ClusterRole granting `get` on the path). Label values are bounded:
//! verbs, resources that exist, status codes.

use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub verb: String,
    /// `resource.group` for object requests, `discovery` or `health` otherwise.
    pub resource: String,
    /// HTTP status code.
    pub code: u16,
}

/// Why a client was not authenticated (or its connection not accepted).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthFailureLabels {
    /// `certificate_rejected`, `invalid_token`, `no_credentials`, `plain_http`, `handshake`.
    pub reason: &'static str,
}

/// The server's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests answered.
    pub requests: Family<RequestLabels, Counter>,
    /// Requests refused 401 and connections refused at the handshake, by reason.
    pub auth_failures: Family<AuthFailureLabels, Counter>,
    /// Time to answer (to the start of the body, for watches).
    pub duration: Histogram,
    /// Watches open now.
    pub watches: Gauge<i64, AtomicI64>,
    /// The store's current revision (resourceVersion).
    pub revision: Gauge<i64, AtomicI64>,
}

impl Metrics {
    /// The server's metrics, with the store's writes per transaction among them.
    pub fn with_store(batch_sizes: Histogram) -> Self {
        let mut metrics = Self::default();
        metrics.registry.register(
            "storage_writes_per_commit",
            "Write requests taken into one transaction (group commit), refused ones included",
            batch_sizes,
        );
        metrics
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ringrift_apiserver");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by verb, resource and code",
            requests.clone(),
        );
        let auth_failures = Family::<AuthFailureLabels, Counter>::default();
        registry.register(
            "authentication_failures",
            "Requests refused 401 (a rejected client certificate, an unknown token, no credentials) and connections refused at the TLS handshake (plain HTTP, a failed handshake), by reason",
            auth_failures.clone(),
        );
        let duration = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        registry.register(
            "request_duration_seconds",
            "Time to answer a request",
            duration.clone(),
        );
        let watches = Gauge::<i64, AtomicI64>::default();
        registry.register("watches", "Watches open now", watches.clone());
        let revision = Gauge::<i64, AtomicI64>::default();
        registry.register("revision", "The store's current revision", revision.clone());
        Self {
            registry,
            requests,
            auth_failures,
            duration,
            watches,
            revision,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let batches = Histogram::new(exponential_buckets(1.0, 2.0, 8));
        batches.observe(3.0);
        let m = Metrics::with_store(batches);
        m.requests
            .get_or_create(&RequestLabels {
                verb: "GET".into(),
                resource: "tasks.ringrift.ai".into(),
                code: 200,
            })
            .inc();
        m.watches.inc();
        m.auth_failures
            .get_or_create(&AuthFailureLabels {
                reason: "invalid_token",
            })
            .inc();
        m.revision.set(42);
        m.duration.observe(0.002);
        let text = m.render();
        assert!(
            text.contains(
                r#"ringrift_apiserver_requests_total{verb="GET",resource="tasks.ringrift.ai",code="200"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("ringrift_apiserver_watches 1"), "{text}");
        assert!(
            text.contains(r#"ringrift_apiserver_authentication_failures_total{reason="invalid_token"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("ringrift_apiserver_storage_writes_per_commit_sum 3.0"),
            "{text}"
        );
        assert!(text.contains("ringrift_apiserver_revision 42"), "{text}");
        assert!(
            text.contains("ringrift_apiserver_request_duration_seconds_count 1"),
            "{text}"
        );
    }
}
