//! The one event recorder of the process: core/v1 Events (what `kubectl describe` shows),
//! with repeats of the same reason and message on the same object folded into one Event whose
//! `count` and `lastTimestamp` move, as client-go's correlator does.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::Mutex;

/// Most distinct (object, reason, message) keys remembered for folding.
const REMEMBERED: usize = 4096;

/// Folding key → (event name, namespace, count).
type Folded = HashMap<String, (String, String, i32)>;

/// Records events on objects.
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: String,
    instance: String,
    seen: Arc<Mutex<Folded>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("component", &self.component)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder reporting as `component` (this replica: `instance`).
    pub fn new(client: Client, component: &str, instance: &str) -> Self {
        Self {
            client,
            component: component.to_owned(),
            instance: instance.to_owned(),
            seen: Arc::default(),
        }
    }

    /// Records one event. Cluster-scoped objects get theirs in `default`.
    ///
    /// # Errors
    /// When the API refuses the write.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        message: &str,
    ) -> kube::Result<()> {
        let ns = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let events: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let now = jiff::Timestamp::now();
        let key = format!(
            "{}/{}/{}/{reason}/{message}",
            regarding.kind.as_deref().unwrap_or_default(),
            regarding.uid.as_deref().unwrap_or_default(),
            regarding.name.as_deref().unwrap_or_default()
        );
        let mut seen = self.seen.lock().await;
        if let Some((name, ns, count)) = seen.get_mut(&key) {
            *count += 1;
            let patch = json!({"count": *count, "lastTimestamp": Time(now)});
            let events: Api<Event> = Api::namespaced(self.client.clone(), ns);
            match events
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    seen.remove(&key);
                }
                Err(e) => return Err(e),
            }
        }
        if seen.len() >= REMEMBERED {
            seen.clear();
        }
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or("object"),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..ObjectMeta::default()
            },
            involved_object: regarding.clone(),
            reason: Some(reason.to_owned()),
            message: Some(message.chars().take(1024).collect()),
            type_: Some(if warning { "Warning" } else { "Normal" }.to_owned()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.instance.clone()),
            action: Some("Reconcile".into()),
            count: Some(1),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            ..Event::default()
        };
        events.create(&PostParams::default(), &event).await?;
        seen.insert(key, (name, ns, 1));
        Ok(())
    }
}
