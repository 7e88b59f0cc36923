//! The request entry point ([`ApiServer::handle`]: authenticate, authorize, route, negotiate
//! the encoding) and [`serve`], the accept loop. The state it works on is in `state.rs`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use ringrift_tls::serve::{AcceptError, Acceptor, ClientCert};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::query::Query;
use super::reply::{Body, error, json_response, text};
use super::route::{self, ObjectPath, Route};
use super::state::ApiServer;
use super::status::ApiError;
use crate::auth::User;
use crate::auth::rbac::{self, Attributes};

impl ApiServer {
    async fn object_request(
        self: &Arc<Self>,
        parts: &hyper::http::request::Parts,
        user: &User,
        attributes: &Attributes,
        object: super::route::ObjectPath,
        query: &Query,
        body: Incoming,
    ) -> Response<Body> {
        if object.group == "ringrift.ai"
            && object.resource == "tasks"
            && object.subresource.as_deref() == Some("log")
            && parts.method == Method::GET
            && let (Some(namespace), Some(name)) = (&object.namespace, &object.name)
        {
            return super::relay::task_log(self, namespace, name, query).await;
        }
        let declared = parts
            .headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|len| len > self.options.max_body) {
            return error(&ApiError::too_large(self.options.max_body));
        }
        let body = match read_body(body, self.options.max_body).await {
            Ok(body) => body,
            Err(e) => return error(&e),
        };
        // Protobuf bodies become JSON here: everything after works with JSON only.
        let (headers, body) = if super::protobuf::is_protobuf(&parts.headers) {
            match super::protobuf::to_json(&parts.headers, &body) {
                Ok((headers, body)) => (std::borrow::Cow::Owned(headers), body),
                Err(e) => return error(&e),
            }
        } else {
            (std::borrow::Cow::Borrowed(&parts.headers), body)
        };
        if let Some(message) = self.node_refusal(user, attributes, &body).await {
            tracing::info!(user = %user.name, verb = %attributes.verb, resource = %attributes.resource_path(),
                name = ?attributes.name, "refused by the node restriction");
            return error(&ApiError::forbidden(message));
        }
        super::handlers::object(self, user, &parts.method, &headers, object, query, body).await
    }

    async fn metrics_response(&self) -> Response<Body> {
        if let Ok(revision) = self.store.revision().await {
            self.metrics
                .revision
                .set(i64::try_from(revision).unwrap_or(i64::MAX));
        }
        let mut response = Response::new(Full::new(Bytes::from(self.metrics.render())).boxed());
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        response
    }

    /// An agent's side of the log relay (`relay`): only an agent's own identity, never
    /// impersonated, asks for and answers the requests made of it.
    async fn agent_relay(
        &self,
        parts: &hyper::http::request::Parts,
        route: &Route,
        client: &ClientCert,
        body: Incoming,
    ) -> Response<Body> {
        let user = match self.authenticate(&parts.headers, client) {
            Ok(user) => user,
            Err(e) => return error(&e),
        };
        let Some(agent) = ringrift_crds::identity::agent_of(&user.name, &user.groups) else {
            return error(&ApiError::forbidden(format!(
                "{:?} is not an agent's identity: only agents answer log requests",
                user.name
            )));
        };
        match (route, &parts.method) {
            (Route::RelayNext, &Method::GET) => super::relay::next(self, agent).await,
            (Route::RelayAnswer(id), &Method::POST) => match read_body(body, 1024 * 1024).await {
                Ok(data) => {
                    super::relay::answer(self, agent, id, &Query::parse(parts.uri.query()), data).await
                }
                Err(e) => error(&e),
            },
            _ => error(&ApiError::method_not_allowed()),
        }
    }

    /// Answers a resource request: authorizes it (under RBAC), serves it, and records it in the
    /// audit log.
    async fn resource_request(
        self: &Arc<Self>,
        parts: &hyper::http::request::Parts,
        user: &User,
        object: ObjectPath,
        query: &Query,
        body: Incoming,
    ) -> Response<Body> {
        let attributes = Attributes {
            verb: rbac::verb(parts.method.as_str(), object.name.is_some(), query.flag("watch")).to_owned(),
            group: object.group.clone(),
            resource: object.resource.clone(),
            subresource: object.subresource.clone(),
            namespace: object.namespace.clone(),
            name: object.name.clone(),
        };
        let self_review = super::reviews::is_self_review(&object.group, &object.resource);
        let response = if self.options.rbac && !user.is_master() && !self_review {
            match self.policy(attributes.namespace.as_deref()).await {
                Ok(policy) if policy.allows(user, &attributes) => {
                    self.object_request(parts, user, &attributes, object, query, body)
                        .await
                }
                Ok(_) => {
                    tracing::info!(user = %user.name, verb = %attributes.verb, resource = %attributes.resource_path(),
                        namespace = ?attributes.namespace, "forbidden");
                    error(&ApiError::forbidden(rbac::forbidden_message(user, &attributes)))
                }
                Err(e) => error(&ApiError::internal(format!(
                    "failed to read the RBAC policy: {e}"
                ))),
            }
        } else {
            self.object_request(parts, user, &attributes, object, query, body)
                .await
        };
        if let Some(audit) = &self.options.audit {
            let agent = parts
                .headers
                .get(hyper::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            audit.record(user, agent, &attributes, response.status().as_u16());
        }
        response
    }

    /// Answers one request that came with the connection's `client` certificate.
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>, client: &ClientCert) -> Response<Body> {
        let started = Instant::now();
        let (parts, body) = request.into_parts();
        let path = parts.uri.path().to_owned();
        let query = Query::parse(parts.uri.query());
        let route = route::parse(&path);
        let resource = match &route {
            Some(Route::Object(o)) => {
                let known = self.registry().get(&o.group, &o.version, &o.resource).is_some();
                match (known, o.group.is_empty()) {
                    (false, _) => "unknown".to_owned(),
                    (true, true) => o.resource.clone(),
                    (true, false) => format!("{}.{}", o.resource, o.group),
                }
            }
            Some(Route::Health | Route::Version) => "health".to_owned(),
            Some(Route::ClusterInfo | Route::Join | Route::Renew) => "join".to_owned(),
            Some(Route::RelayNext | Route::RelayAnswer(_)) => "relay".to_owned(),
            Some(Route::Metrics) => "metrics".to_owned(),
            Some(_) => "discovery".to_owned(),
            None => "none".to_owned(),
        };
        // Joining authenticates with a bootstrap token, not as a user; the CA is public.
        if let Some(join_route @ (Route::ClusterInfo | Route::Join)) = &route {
            let response = if *join_route == Route::Join {
                let bearer = parts
                    .headers
                    .get(hyper::header::AUTHORIZATION)
                    .and_then(|h| h.to_str().ok())
                    .and_then(|h| h.strip_prefix("Bearer "))
                    .map(str::trim);
                let body = read_body(body, 64 * 1024).await;
                super::join::join(&self, &parts.method, bearer, body).await
            } else {
                super::join::cluster_info(&self, &parts.method)
            };
            return self.finish(&parts, &path, resource, started, response);
        }
        if let Some(relay @ (Route::RelayNext | Route::RelayAnswer(_))) = &route {
            let response = self.agent_relay(&parts, relay, client, body).await;
            return self.finish(&parts, &path, resource, started, response);
        }
        // Renewal authenticates with the agent's current certificate, never impersonated.
        if route == Some(Route::Renew) {
            let response = match (self.authenticate(&parts.headers, client), client) {
                (Ok(user), ClientCert::Verified(_)) => {
                    let body = read_body(body, 64 * 1024).await;
                    super::join::renew(&self, &parts.method, &user, body).await
                }
                (Ok(_), _) => error(&ApiError::forbidden(
                    "an agent renews its certificate by presenting it (TLS client certificate)",
                )),
                (Err(e), _) => error(&e),
            };
            return self.finish(&parts, &path, resource, started, response);
        }
        let user = match route {
            Some(Route::Health | Route::Version) => Err(ApiError::unauthorized()),
            _ => match self.authenticate(&parts.headers, client) {
                Ok(user) => self.impersonate(user, &parts.headers).await,
                Err(e) => Err(e),
            },
        };
        let response = match (route, user) {
            (Some(Route::Health), _) => text(StatusCode::OK, "ok"),
            (Some(Route::Version), _) => json_response(StatusCode::OK, &super::discovery::version()),
            (_, Err(e)) => error(&e),
            (Some(Route::Metrics), Ok(user)) => match self.may_read_metrics(&user).await {
                Ok(()) => self.metrics_response().await,
                Err(e) => error(&e),
            },
            (None, _) => error(&ApiError::no_route()),
            (Some(Route::Object(object)), Ok(user)) => {
                self.resource_request(&parts, &user, object, &query, body).await
            }
            // Discovery is open to every authenticated user, as the default
            // `system:discovery` binding makes it in Kubernetes.
            (Some(other), _) if parts.method == Method::GET => {
                super::discovery::answer(&self, &other, &parts.headers)
            }
            (Some(_), _) => error(&ApiError::method_not_allowed()),
        };
        let response = if super::protobuf::wants_protobuf(&parts.headers) && !query.flag("watch") {
            super::protobuf::encode_response(response).await
        } else {
            response
        };
        self.finish(&parts, &path, resource, started, response)
    }

    /// Counts and logs an answered request.
    fn finish(
        &self,
        parts: &hyper::http::request::Parts,
        path: &str,
        resource: String,
        started: Instant,
        response: Response<Body>,
    ) -> Response<Body> {
        let elapsed = started.elapsed();
        self.metrics
            .requests
            .get_or_create(&super::metrics::RequestLabels {
                verb: match parts.method {
                    Method::GET
                    | Method::POST
                    | Method::PUT
                    | Method::PATCH
                    | Method::DELETE
                    | Method::HEAD => parts.method.to_string(),
                    _ => "OTHER".to_owned(),
                },
                resource,
                code: response.status().as_u16(),
            })
            .inc();
        self.metrics.duration.observe(elapsed.as_secs_f64());
        tracing::debug!(method = %parts.method, path, status = response.status().as_u16(),
            elapsed_ms = elapsed.as_millis(), "request");
        response
    }
}

async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(ApiError::too_large(limit))
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "failed to read the request body: {e}"
        ))),
    }
}

/// Serves connections from `listener` until `shutdown` is cancelled, then stops accepting and
/// lets open connections finish their current request (watches are long-lived: 5 s at most).
/// Each connection's TLS handshake (through `acceptor`) runs on its own task; its client
/// certificate goes with every request.
pub async fn serve(
    listener: TcpListener,
    acceptor: Arc<Acceptor>,
    server: Arc<ApiServer>,
    shutdown: CancellationToken,
) {
    let refused_server = Arc::clone(&server);
    let refused = move |peer: std::net::SocketAddr, e: &AcceptError| {
        let reason = match e {
            AcceptError::PlainHttp => "plain_http",
            AcceptError::Handshake(_) | AcceptError::Timeout => "handshake",
        };
        refused_server
            .metrics
            .auth_failures
            .get_or_create(&super::metrics::AuthFailureLabels { reason })
            .inc();
        tracing::info!(%peer, error = %e, "connection not accepted");
    };
    let make = move |client: ClientCert| {
        let (server, client) = (Arc::clone(&server), Arc::new(client));
        hyper::service::service_fn(move |request| {
            let (server, client) = (Arc::clone(&server), Arc::clone(&client));
            async move { Ok::<_, Infallible>(server.handle(request, &client).await) }
        })
    };
    ringrift_tls::http::serve(
        listener,
        acceptor,
        make,
        refused,
        shutdown,
        Duration::from_secs(5),
    )
    .await;
}
