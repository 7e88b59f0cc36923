//! Joining a GPU box (`ringrift join`), in kubeadm's model, at two paths of our own:
//!
//! - `GET /ringrift/v1/cluster-info`, anonymous: the cluster CA (PEM). The joiner compares the
//!   SHA-256 of its public key with the `--ca-cert-hash` it was given *before* it sends
//!   anything secret, then trusts only that CA.
//! - `POST /ringrift/v1/join`, with the bootstrap token as the bearer and a JSON body
//!   `{"name": "<agent>", "certificateSigningRequest": "<PEM>"}`: checks the token
//!   ([`crate::bootstrap`]: known, not expired, not used up), refuses a name a live agent holds
//!   (its `Agent` is `Ready`), signs the request's key as `ringrift:agent:<name>` in
//!   `ringrift:agents` (the node-restricted identity), counts the use, and answers
//!   `{"certificate": "<PEM>", "caCertificate": "<PEM>", "clusterKey": "<base64>"}` (the
//!   fleet's cluster key, when the server keeps one). The agent's key never leaves the box.
//!
//! - `POST /ringrift/v1/renew`, over TLS with the agent's current client certificate and a JSON
//!   body `{"certificateSigningRequest": "<PEM>"}`: a new certificate for the same identity
//!   (`ringrift join` asks after two thirds of the old one's lifetime), as kubelets rotate
//!   theirs. Only an agent's own identity (`ringrift:agent:<name>` in `ringrift:agents`,
//!   authenticated by a certificate, not impersonated) is renewed; it can never become another.
//!
//! All three answer 404 when the server has no CA of its own to sign with (plain HTTP, or client
//! certificates from a CA it does not hold).

use bytes::Bytes;
use hyper::{Method, StatusCode};
use jiff::Timestamp;
use ringrift_crds::identity::{AGENTS_GROUP, agent_of, agent_user};
use serde_json::{Value, json};

use super::reply::{Body, error, json_response};
use super::state::{ApiServer, new_uid, now};
use super::status::ApiError;
use crate::auth::User;
use crate::bootstrap::{self, Refusal, Stored, Token};
use crate::store::semantics::Subresource;
use crate::store::semantics::WriteContext;
use crate::store::{ResourceKey, StoreError};

pub use crate::bootstrap::AGENT_CERT_VALIDITY;

/// What a joining box sends.
struct JoinRequest {
    name: String,
    certificate_signing_request: String,
}

impl JoinRequest {
    fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the join request is not JSON: {e}")))?;
        let text = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| ApiError::bad_request(format!("the join request needs {key:?} (a string)")))
        };
        Ok(Self {
            name: text("name")?,
            certificate_signing_request: text("certificateSigningRequest")?,
        })
    }
}

fn secrets() -> ResourceKey {
    ResourceKey::new("", "secrets")
}

/// `GET /ringrift/v1/cluster-info`.
pub(crate) fn cluster_info(server: &ApiServer, method: &Method) -> hyper::Response<Body> {
    let Some(ca) = &server.options.signer else {
        return error(&ApiError::no_route());
    };
    if method != Method::GET {
        return error(&ApiError::method_not_allowed());
    }
    json_response(
        StatusCode::OK,
        &json!({"caCertificate": ca.cert_pem(), "caCertHash": ca.hash()}),
    )
}

/// Whether a live agent holds `name`: its `Agent` exists and its `Ready` condition is `True`.
fn held_by_live_agent(agent: &Value) -> bool {
    agent
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|conditions| {
            conditions.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// A join refused for its token: 401, counted as an authentication failure
/// (`reason="bootstrap_token"`), so guessing shows on the dashboard.
fn refused(server: &ApiServer, r: &Refusal) -> ApiError {
    server
        .metrics
        .auth_failures
        .get_or_create(&super::metrics::AuthFailureLabels {
            reason: "bootstrap_token",
        })
        .inc();
    ApiError::unauthorized_because(r.to_string())
}

/// The CA that signs agents' certificates, for a `POST` (404 when the server holds none, 405
/// for another method).
fn signer_for_post<'a>(
    server: &'a ApiServer,
    method: &Method,
) -> Result<&'a ringrift_tls::pki::Ca, ApiError> {
    let ca = server.options.signer.as_deref().ok_or_else(ApiError::no_route)?;
    if method != Method::POST {
        return Err(ApiError::method_not_allowed());
    }
    Ok(ca)
}

/// `POST /ringrift/v1/join`.
pub(crate) async fn join(
    server: &ApiServer,
    method: &Method,
    bearer: Option<&str>,
    body: Result<Bytes, ApiError>,
) -> hyper::Response<Body> {
    let answer = async {
        let ca = signer_for_post(server, method)?;
        let token = bearer
            .ok_or_else(|| {
                ApiError::unauthorized_because(
                    "a bootstrap token is required (Authorization: Bearer <id>.<secret>)",
                )
            })
            .and_then(|t| Token::parse(t).map_err(ApiError::unauthorized_because))?;
        let request = JoinRequest::parse(&body?)?;
        if !ringrift_tls::pki::valid_dns_name(&request.name)
            || request.name.contains('.')
            || request.name.len() > 63
        {
            return Err(ApiError::bad_request(format!(
                "name {:?}: an agent's name is a DNS label (a-z, 0-9 and '-', at most 63)",
                request.name
            )));
        }
        let name = request.name.to_ascii_lowercase();
        let secret = server
            .store
            .get(&secrets(), bootstrap::NAMESPACE, &token.secret_name())
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .ok_or_else(|| refused(server, &Refusal::Unknown))?;
        let stored = Stored::from_secret(&secret).ok_or_else(|| refused(server, &Refusal::Unknown))?;
        stored.check(&token, Timestamp::now()).map_err(|r| {
            tracing::info!(token = %token.id, reason = %r, "join refused");
            refused(server, &r)
        })?;
        let agents = ResourceKey::new("ringrift.ai", "agents");
        if let Some(agent) = server
            .store
            .get(&agents, "", &name)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            && held_by_live_agent(&agent)
        {
            return Err(ApiError::conflict(
                &agents,
                &name,
                "a live agent holds this name (it is Ready); choose another --name, or stop that agent and wait until it is no longer Ready",
            ));
        }
        let certificate = ca
            .sign_client_request(
                &request.certificate_signing_request,
                &agent_user(&name),
                Some(AGENTS_GROUP),
                ringrift_tls::now(),
                server.options.agent_cert_validity,
            )
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        count_use(server, &secret, &token).await?;
        tracing::info!(agent = name, token = %token.id, "an agent joined");
        let mut answer = json!({"certificate": certificate, "caCertificate": ca.cert_pem(), "name": name});
        if let Some(key) = cluster_key(server).await? {
            answer["clusterKey"] = Value::String(key);
        }
        Ok(answer)
    };
    match answer.await {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => error(&e),
    }
}

/// `POST /ringrift/v1/renew`, for `user`, authenticated by its client certificate.
pub(crate) async fn renew(
    server: &ApiServer,
    method: &Method,
    user: &User,
    body: Result<Bytes, ApiError>,
) -> hyper::Response<Body> {
    let answer = async {
        let ca = signer_for_post(server, method)?;
        let agent = agent_of(&user.name, &user.groups).ok_or_else(|| {
            ApiError::forbidden(format!(
                "{:?} is not an agent's identity (ringrift:agent:<name> in {AGENTS_GROUP}): only agents renew their certificates here",
                user.name
            ))
        })?;
        let value: Value = serde_json::from_slice(&body?)
            .map_err(|e| ApiError::bad_request(format!("the renewal request is not JSON: {e}")))?;
        let request = value
            .get("certificateSigningRequest")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ApiError::bad_request("the renewal request needs \"certificateSigningRequest\" (a string)")
            })?;
        let certificate = ca
            .sign_client_request(
                request,
                &agent_user(agent),
                Some(AGENTS_GROUP),
                ringrift_tls::now(),
                server.options.agent_cert_validity,
            )
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        tracing::info!(agent, "renewed an agent's certificate");
        Ok(json!({"certificate": certificate, "caCertificate": ca.cert_pem()}))
    };
    match answer.await {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => error(&e),
    }
}

/// The fleet's cluster key, base64, if the server keeps one ([`bootstrap::CLUSTER_KEY_SECRET`]).
async fn cluster_key(server: &ApiServer) -> Result<Option<String>, ApiError> {
    let secret = server
        .store
        .get(&secrets(), bootstrap::NAMESPACE, bootstrap::CLUSTER_KEY_SECRET)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(secret
        .as_ref()
        .and_then(|s| s.pointer("/data/key"))
        .and_then(Value::as_str)
        .map(str::to_owned))
}

/// Counts one use of the token, against the version read (a race with another join on a
/// token about to be used up is refused, not counted twice).
async fn count_use(server: &ApiServer, secret: &Value, token: &Token) -> Result<(), ApiError> {
    let (now, uid) = (now(), new_uid());
    let ctx = WriteContext {
        now: &now,
        uid: &uid,
        status_subresource: false,
        generation: false,
    };
    match server
        .store
        .update(
            &secrets(),
            bootstrap::NAMESPACE,
            &token.secret_name(),
            bootstrap::count_use(secret),
            Subresource::Main,
            &ctx,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(StoreError::Write(_)) => Err(ApiError::conflict(
            &secrets(),
            &token.secret_name(),
            "the token was used at the same moment; try again",
        )),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_ready_agent_holds_its_name() {
        let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        let lapsed = json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "HeartbeatLapsed"}]}});
        assert!(held_by_live_agent(&ready));
        assert!(!held_by_live_agent(&lapsed));
        assert!(!held_by_live_agent(&json!({})));
    }
}
