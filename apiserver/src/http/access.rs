//! Who a request comes from and what it may do: authentication (a client certificate, then a
//! bearer token, then anonymous where allowed), RBAC's policy, `/metrics` access, and the node
//! restriction on agents' writes.

use bytes::Bytes;
use hyper::header::{AUTHORIZATION, HeaderMap};
use ringrift_tls::serve::ClientCert;
use serde_json::Value;

use super::state::ApiServer;
use super::status::ApiError;
use crate::auth::rbac::{self, Attributes, Policy};
use crate::auth::{User, node};
use crate::store::{ResourceKey, StoreError};

impl ApiServer {
    /// Why the node restriction refuses this write of an agent's, if it does (see
    /// [`node::refusal`]): the created object's name comes from the body, a Task's binding from
    /// the stored Task.
    pub(crate) async fn node_refusal(
        &self,
        user: &User,
        attributes: &Attributes,
        body: &Bytes,
    ) -> Option<String> {
        ringrift_crds::identity::agent_of(&user.name, &user.groups)?;
        let created: Option<Value> = (attributes.verb == "create")
            .then(|| serde_json::from_slice(body).ok())
            .flatten();
        let created_name = created
            .as_ref()
            .and_then(|v| v.pointer("/metadata/name"))
            .and_then(Value::as_str);
        let stored = match (attributes.resource.as_str(), &attributes.name) {
            ("tasks", Some(name)) => self
                .store
                .get(
                    &ResourceKey::new(&attributes.group, &attributes.resource),
                    attributes.namespace.as_deref().unwrap_or_default(),
                    name,
                )
                .await
                .ok()
                .flatten(),
            _ => None,
        };
        node::refusal(
            user,
            attributes,
            node::Subject {
                created_name,
                stored: stored.as_ref(),
            },
        )
    }

    /// The user a request acts as: `user`, or the one named by `Impersonate-User` (with the
    /// `Impersonate-Group` headers as its groups) when `user` may impersonate it: members of
    /// `system:masters`, users under `AlwaysAllow`, or, under RBAC, users granted `impersonate`
    /// on `users` (and `groups`) in the core group, as kube-apiserver decides it. Impersonating
    /// a user by groups alone, or with `Impersonate-Uid`/`Impersonate-Extra-*`, is refused
    /// rather than ignored.
    pub(crate) async fn impersonate(&self, user: User, headers: &HeaderMap) -> Result<User, ApiError> {
        let values = |name: &str| -> Vec<String> {
            headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_owned)
                .collect()
        };
        let names = values("impersonate-user");
        let groups = values("impersonate-group");
        let unsupported = headers
            .keys()
            .find(|k| k.as_str() == "impersonate-uid" || k.as_str().starts_with("impersonate-extra-"));
        if names.is_empty() && groups.is_empty() && unsupported.is_none() {
            return Ok(user);
        }
        if let Some(header) = unsupported {
            return Err(ApiError::bad_request(format!(
                "the {header} header is not supported by this server; impersonate with Impersonate-User and Impersonate-Group"
            )));
        }
        let [name] = names.as_slice() else {
            return Err(ApiError::bad_request(
                "impersonation needs exactly one Impersonate-User header",
            ));
        };
        if self.options.rbac && !user.is_master() {
            let policy = self
                .policy(None)
                .await
                .map_err(|e| ApiError::internal(format!("failed to read the RBAC policy: {e}")))?;
            let wants = std::iter::once(("users", name)).chain(groups.iter().map(|g| ("groups", g)));
            for (resource, target) in wants {
                let attributes = Attributes {
                    verb: "impersonate".into(),
                    group: String::new(),
                    resource: resource.into(),
                    subresource: None,
                    namespace: None,
                    name: Some(target.clone()),
                };
                if !policy.allows(&user, &attributes) {
                    return Err(ApiError::forbidden(format!(
                        "{resource} \"{target}\" is forbidden: User \"{}\" cannot impersonate resource \"{resource}\" in API group \"\" at the cluster scope",
                        user.name
                    )));
                }
            }
        }
        let mut impersonated = User {
            name: name.clone(),
            groups,
        };
        if !impersonated
            .groups
            .iter()
            .any(|g| g == crate::auth::AUTHENTICATED)
            && name != "system:anonymous"
        {
            impersonated.groups.push(crate::auth::AUTHENTICATED.into());
        }
        tracing::debug!(user = %user.name, as_user = %impersonated.name, "impersonating");
        Ok(impersonated)
    }

    /// Who sent a request, as kube-apiserver decides it: a verified client certificate first,
    /// then a bearer token; a rejected certificate or an unknown token is 401 (saying why for
    /// certificates: they are the client's own); no credentials at all is `system:anonymous`
    /// where allowed, else 401.
    pub(crate) fn authenticate(&self, headers: &HeaderMap, client: &ClientCert) -> Result<User, ApiError> {
        let refused = |reason: &'static str, message: String| {
            self.metrics
                .auth_failures
                .get_or_create(&super::metrics::AuthFailureLabels { reason })
                .inc();
            ApiError::unauthorized_because(message)
        };
        if let ClientCert::Verified(info) = client {
            return User::from_certificate(info).ok_or_else(|| {
                refused(
                    "certificate_rejected",
                    format!(
                        "client certificate {} has no common name to be a user",
                        info.subject()
                    ),
                )
            });
        }
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim);
        if let Some(token) = bearer {
            return self.options.tokens.authenticate(Some(token)).ok_or_else(|| {
                tracing::info!("refused a request with an unknown bearer token");
                refused("invalid_token", "Unauthorized".into())
            });
        }
        if let ClientCert::Rejected { subject, reason } = client {
            tracing::info!(certificate = %subject, %reason, "refused a client certificate");
            return Err(refused(
                "certificate_rejected",
                format!("client certificate {subject} was not accepted: {reason}"),
            ));
        }
        if self.options.open {
            return Ok(User::admin());
        }
        if self.options.anonymous && self.options.rbac {
            return Ok(User::anonymous());
        }
        Err(refused("no_credentials", "Unauthorized".into()))
    }

    /// Whether `user` may read `/metrics`: anyone authenticated, and under RBAC those in
    /// `system:masters` or granted `get` on the path by a ClusterRole (`nonResourceURLs`), as
    /// kube-apiserver decides it.
    pub(crate) async fn may_read_metrics(&self, user: &User) -> Result<(), ApiError> {
        if !self.options.rbac || user.is_master() {
            return Ok(());
        }
        let policy = self
            .policy(None)
            .await
            .map_err(|e| ApiError::internal(format!("failed to read the RBAC policy: {e}")))?;
        if policy.allows_path(user, "get", "/metrics") {
            Ok(())
        } else {
            Err(ApiError::forbidden(rbac::forbidden_path_message(
                user, "get", "/metrics",
            )))
        }
    }

    /// The roles and bindings that decide a request in `namespace`.
    pub(crate) async fn policy(&self, namespace: Option<&str>) -> Result<Policy, StoreError> {
        let rbac_key = |plural: &str| ResourceKey::new("rbac.authorization.k8s.io", plural);
        let (cluster_roles, _) = self.store.list(&rbac_key("clusterroles"), None).await?;
        let (cluster_role_bindings, _) = self.store.list(&rbac_key("clusterrolebindings"), None).await?;
        let (roles, role_bindings) = match namespace {
            Some(ns) => (
                self.store.list(&rbac_key("roles"), Some(ns)).await?.0,
                self.store.list(&rbac_key("rolebindings"), Some(ns)).await?.0,
            ),
            None => (Vec::new(), Vec::new()),
        };
        Ok(Policy {
            cluster_roles,
            cluster_role_bindings,
            roles,
            role_bindings,
        })
    }
}
