//! The Writer: every write the controller makes, each checked against the leadership claim right
//! before it is sent, so a replica that lost its lease stops writing at once.

use std::fmt::Debug;

use kube::api::{DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::{Api, Client, Resource, ResourceExt};
use ringrift_crds::model::Model;
use ringrift_crds::task::Task;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::watch;

use super::events::Recorder;
use ringrift_crds::task::{CANCEL_REASON_ANNOTATION, CancelReason};

/// A write that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// This replica does not hold the lease now.
    #[error("failed to {what}: not the leader")]
    NotLeading {
        /// The write.
        what: String,
    },
    /// The API refused the write or could not be reached.
    #[error("failed to {what}: {source}")]
    Api {
        /// The write.
        what: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
}

impl ApplyError {
    /// A stable label for metrics and events.
    pub fn category(&self) -> &'static str {
        match self {
            Self::NotLeading { .. } => "not_leading",
            Self::Api { source, .. } => match source {
                kube::Error::Api(s) if s.code == 409 => "conflict",
                kube::Error::Api(s) if s.code == 404 => "not_found",
                kube::Error::Api(s) if s.code == 400 || s.code == 422 => "invalid",
                kube::Error::Api(_) => "api",
                _ => "transport",
            },
        }
    }

    /// Whether trying again later may succeed (the API was down or overloaded).
    pub fn is_transient(&self) -> bool {
        matches!(self.category(), "api" | "transport")
    }
}

/// A write that stops a task.
#[derive(Debug, Clone)]
pub enum Fence {
    /// Its agent stopped heartbeating.
    Lost {
        /// The agent.
        agent: String,
    },
    /// Cancel it for this reason.
    Cancel(CancelReason),
}

/// Writes to the API, gated on leadership.
#[derive(Clone)]
pub struct Writer {
    client: Client,
    leading: watch::Receiver<bool>,
    recorder: Recorder,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

fn api_error(what: String) -> impl FnOnce(kube::Error) -> ApplyError {
    move |source| ApplyError::Api { what, source }
}

impl Writer {
    /// A writer that writes only while `leading` says so.
    pub fn new(client: Client, leading: watch::Receiver<bool>, recorder: Recorder) -> Self {
        Self {
            client,
            leading,
            recorder,
        }
    }

    fn gate(&self, what: impl FnOnce() -> String) -> Result<(), ApplyError> {
        if *self.leading.borrow() {
            Ok(())
        } else {
            Err(ApplyError::NotLeading { what: what() })
        }
    }

    /// Whether this replica leads now.
    pub fn leading(&self) -> bool {
        *self.leading.borrow()
    }

    /// Creates a task.
    ///
    /// # Errors
    /// [`ApplyError`].
    pub async fn create_task(&self, task: &Task) -> Result<Task, ApplyError> {
        let ns = task.namespace().unwrap_or_default();
        let what = || format!("create Task {ns}/{}", task.name_any());
        self.gate(what)?;
        Api::<Task>::namespaced(self.client.clone(), &ns)
            .create(&PostParams::default(), task)
            .await
            .map_err(api_error(what()))
    }

    /// Asks a task to stop, saying why.
    ///
    /// # Errors
    /// [`ApplyError`].
    pub async fn cancel_task(&self, ns: &str, name: &str, reason: CancelReason) -> Result<Task, ApplyError> {
        let what = || format!("cancel Task {ns}/{name} ({})", reason.as_str());
        self.gate(what)?;
        let patch = json!({
            "metadata": {"annotations": {CANCEL_REASON_ANNOTATION: reason.as_str()}},
            "spec": {"cancel": true},
        });
        Api::<Task>::namespaced(self.client.clone(), ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_error(what()))
    }

    /// Marks a task lost: first the fence (cancel with reason `Lost`, which makes any later
    /// success of this attempt uncountable), then its status, for people.
    ///
    /// # Errors
    /// [`ApplyError`].
    pub async fn mark_lost(&self, ns: &str, name: &str, agent: &str) -> Result<Task, ApplyError> {
        self.cancel_task(ns, name, CancelReason::Lost).await?;
        let what = || format!("mark Task {ns}/{name} lost");
        self.gate(what)?;
        let patch = json!({"status": {
            "phase": "Lost",
            "reason": "AgentLost",
            "message": format!("agent {agent} stopped heartbeating; the work unit runs again as a new attempt"),
            "completionTime": jiff::Timestamp::now().to_string(),
        }});
        Api::<Task>::namespaced(self.client.clone(), ns)
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api_error(what()))
    }

    /// Runs a fence write: marks a task lost or cancels it.
    ///
    /// # Errors
    /// [`ApplyError`].
    pub async fn fence(&self, ns: &str, name: &str, fence: Fence) -> Result<Task, ApplyError> {
        match fence {
            Fence::Lost { agent } => self.mark_lost(ns, name, &agent).await,
            Fence::Cancel(reason) => self.cancel_task(ns, name, reason).await,
        }
    }

    /// Replaces an object's status, with its resourceVersion as the precondition.
    ///
    /// # Errors
    /// [`ApplyError`]; `conflict` when the object changed since it was read.
    pub async fn replace_status<K>(&self, obj: &K) -> Result<K, ApplyError>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope>
            + Clone
            + Serialize
            + DeserializeOwned
            + Debug,
        K::DynamicType: Default,
    {
        let ns = obj.namespace().unwrap_or_default();
        let kind = K::kind(&K::DynamicType::default()).into_owned();
        let what = || format!("update the status of {kind} {ns}/{}", obj.name_any());
        self.gate(what)?;
        Api::<K>::namespaced(self.client.clone(), &ns)
            .replace_status(&obj.name_any(), &PostParams::default(), obj)
            .await
            .map_err(api_error(what()))
    }

    /// Creates a model; one that already exists is left as it is.
    ///
    /// # Errors
    /// [`ApplyError`] other than "already exists".
    pub async fn create_model(&self, model: &Model) -> Result<(), ApplyError> {
        self.create_if_absent(model).await.map(|_| ())
    }

    /// Creates a namespaced object; returns false when one of that name already exists (left
    /// as it is).
    ///
    /// # Errors
    /// [`ApplyError`] other than "already exists".
    pub async fn create_if_absent<K>(&self, obj: &K) -> Result<bool, ApplyError>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope>
            + Clone
            + Serialize
            + DeserializeOwned
            + Debug,
        K::DynamicType: Default,
    {
        let ns = obj.namespace().unwrap_or_default();
        let kind = K::kind(&K::DynamicType::default()).into_owned();
        let what = || format!("create {kind} {ns}/{}", obj.name_any());
        self.gate(what)?;
        match Api::<K>::namespaced(self.client.clone(), &ns)
            .create(&PostParams::default(), obj)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(api_error(what())(e)),
        }
    }

    /// Deletes a job and, through the garbage collector, its tasks.
    ///
    /// # Errors
    /// [`ApplyError`] other than "not found".
    pub async fn delete<K>(&self, ns: &str, name: &str) -> Result<(), ApplyError>
    where
        K: Resource<Scope = kube::core::NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let kind = K::kind(&K::DynamicType::default()).into_owned();
        let what = || format!("delete {kind} {ns}/{name}");
        self.gate(what)?;
        let params = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match Api::<K>::namespaced(self.client.clone(), ns)
            .delete(name, &params)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(api_error(what())(e)),
        }
    }

    /// Merge-patches an agent's status (its conditions), with a resourceVersion precondition.
    ///
    /// # Errors
    /// [`ApplyError`].
    pub async fn patch_agent_status(&self, name: &str, patch: &serde_json::Value) -> Result<(), ApplyError> {
        let what = || format!("update the status of Agent {name}");
        self.gate(what)?;
        Api::<ringrift_crds::agent::Agent>::all(self.client.clone())
            .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(|_| ())
            .map_err(api_error(what()))
    }

    /// Records an event on an object. Best effort: a failure is logged, never fatal.
    pub async fn event(
        &self,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        warning: bool,
        reason: &str,
        note: String,
    ) {
        if !self.leading() {
            return;
        }
        if let Err(e) = self.recorder.publish(reference, warning, reason, &note).await {
            tracing::debug!(reason, error = %e, "failed to record an event");
        }
    }
}
