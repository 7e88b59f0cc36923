//! Who the roles of `ringrift up` are: the API server runs with RBAC on, the controllers and
//! agents each get a client certificate from the cluster CA (`ringrift:controller:<name>` in
//! the group `ringrift:controllers`, `ringrift:agent:<name>` in `ringrift:agents`) in a
//! kubeconfig of their own (mode 0600), and the groups are bound to the roles the Helm chart
//! grants (`ringrift_crds::rbac`). An agent's certificate is also what the node restriction
//! keys on: it may change only its own objects.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding, RoleRef, Subject};
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Client};
use ringrift_apiserver::run::{Credential, kubeconfig};
use ringrift_crds::identity::{AGENTS_GROUP, CONTROLLERS_GROUP, agent_user, controller_user};
use ringrift_tls::pki::{Ca, LEAF_VALIDITY};

/// The field manager of what `up` applies.
const MANAGER: &str = "ringrift-up";

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some([("app.kubernetes.io/managed-by".to_owned(), MANAGER.to_owned())].into()),
        ..ObjectMeta::default()
    }
}

fn binding(kind: &str, name: &str, group: &str) -> (RoleRef, Vec<Subject>) {
    (
        RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: kind.into(),
            name: name.into(),
        },
        vec![Subject {
            kind: "Group".into(),
            name: group.into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            namespace: None,
        }],
    )
}

async fn apply<K>(api: &Api<K>, name: &str, object: &K) -> anyhow::Result<()>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(object))
        .await
        .with_context(|| format!("failed to apply {} {name}", K::kind(&())))?;
    Ok(())
}

/// Applies the ClusterRole, Role and their bindings of one component.
async fn component(
    client: &Client,
    namespace: &str,
    name: &str,
    group: &str,
    rules: ringrift_crds::rbac::Rules,
) -> anyhow::Result<()> {
    let cluster_role = ClusterRole {
        metadata: meta(name, None),
        rules: Some(rules.cluster),
        ..ClusterRole::default()
    };
    apply(&Api::<ClusterRole>::all(client.clone()), name, &cluster_role).await?;
    let (role_ref, subjects) = binding("ClusterRole", name, group);
    let cluster_binding = ClusterRoleBinding {
        metadata: meta(name, None),
        role_ref,
        subjects: Some(subjects),
    };
    apply(
        &Api::<ClusterRoleBinding>::all(client.clone()),
        name,
        &cluster_binding,
    )
    .await?;
    let role = Role {
        metadata: meta(name, Some(namespace)),
        rules: Some(rules.namespaced),
    };
    apply(&Api::<Role>::namespaced(client.clone(), namespace), name, &role).await?;
    let (role_ref, subjects) = binding("Role", name, group);
    let role_binding = RoleBinding {
        metadata: meta(name, Some(namespace)),
        role_ref,
        subjects: Some(subjects),
    };
    apply(
        &Api::<RoleBinding>::namespaced(client.clone(), namespace),
        name,
        &role_binding,
    )
    .await
}

/// The controllers' rules: the chart's, and what the dashboard `up` serves reads.
fn controller_rules() -> ringrift_crds::rbac::Rules {
    let mut rules = ringrift_crds::rbac::controller();
    rules.cluster.extend(ringrift_crds::rbac::controller_dashboard());
    rules
}

/// Grants the controllers' and the agents' groups what the chart grants them (and the
/// controllers what their dashboard reads).
///
/// # Errors
/// When the API refuses an object.
pub(crate) async fn grant(client: &Client, namespace: &str) -> anyhow::Result<()> {
    component(
        client,
        namespace,
        "ringrift-controller",
        CONTROLLERS_GROUP,
        controller_rules(),
    )
    .await?;
    component(
        client,
        namespace,
        "ringrift-agent",
        AGENTS_GROUP,
        ringrift_crds::rbac::agent(),
    )
    .await
}

/// The role a credential is for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Identity<'a> {
    /// A controller replica with this identity.
    Controller(&'a str),
    /// The agent of this name.
    Agent(&'a str),
}

/// The cluster CA of the API server whose data directory is `apiserver_dir`.
///
/// # Errors
/// When its files cannot be read.
pub(crate) fn cluster_ca(apiserver_dir: &Path) -> anyhow::Result<Ca> {
    let (cert, key) = ringrift_apiserver::run::ca_files(apiserver_dir);
    let read =
        |p: &Path| std::fs::read_to_string(p).with_context(|| format!("failed to read {}", p.display()));
    Ca::from_pem(&read(&cert)?, &read(&key)?, &cert.display().to_string())
        .context("the cluster CA is unusable")
}

/// Issues `identity` a client certificate and writes its kubeconfig (0600) into `dir`; returns the
/// kubeconfig's path.
///
/// # Errors
/// When the certificate cannot be made or the file written.
pub(crate) fn credential(ca: &Ca, url: &str, dir: &Path, identity: Identity<'_>) -> anyhow::Result<PathBuf> {
    let (file, user, group) = match identity {
        Identity::Controller(name) => (name, controller_user(name), CONTROLLERS_GROUP),
        Identity::Agent(name) => (name, agent_user(name), AGENTS_GROUP),
    };
    let pem = ca
        .client(&user, Some(group), ringrift_tls::now(), LEAF_VALIDITY)
        .with_context(|| format!("failed to issue a certificate for {user}"))?;
    let path = dir.join(format!("{file}.kubeconfig"));
    let text = kubeconfig(url, Some(ca.cert_pem()), Credential::Certificate(&pem));
    ringrift_tls::files::write_private(&path, text.as_bytes())
        .with_context(|| format!("failed to write {}", path.display()))?;
    Ok(path)
}
