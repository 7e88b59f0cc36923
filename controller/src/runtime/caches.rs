//! Observe: watch caches (reflectors) of every kind the controller reads. They run on every
//! replica, leader or not, so a standby that takes over starts with warm caches. Objects are
//! read through `DeserializeGuard`: one malformed object is reported, never fatal.

use std::collections::hash_map::Entry;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use kube::core::DeserializeGuard;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
use ringrift_crds::agent::Agent;
use ringrift_crds::gauntlet::GauntletJob;
use ringrift_crds::kueue::Workload;
use ringrift_crds::model::Model;
use ringrift_crds::selfplay::SelfplayJob;
use ringrift_crds::task::Task;
use ringrift_crds::training::TrainingJob;
use ringrift_crds::training_loop::TrainingLoop;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::address::{ByAddress, address};

/// A cache that tolerates malformed objects.
pub type Guarded<K> = Store<DeserializeGuard<K>>;

/// Every cache the controller reads.
#[derive(Clone)]
pub struct Caches {
    /// Selfplay jobs, all namespaces.
    pub selfplay: Guarded<SelfplayJob>,
    /// Training jobs, all namespaces.
    pub training: Guarded<TrainingJob>,
    /// Gauntlets, all namespaces.
    pub gauntlet: Guarded<GauntletJob>,
    /// Tasks, all namespaces.
    pub tasks: Guarded<Task>,
    /// Agents.
    pub agents: Guarded<Agent>,
    /// Models, all namespaces.
    pub models: Guarded<Model>,
    /// Training loops, all namespaces (for `bestOf`).
    pub loops: Guarded<TrainingLoop>,
    /// Leases in the controller's namespace (agent heartbeats).
    pub leases: Store<Lease>,
    /// Kueue's Workloads, all namespaces, when the Kueue integration is on.
    pub workloads: Option<Guarded<Workload>>,
}

impl std::fmt::Debug for Caches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caches")
            .field("tasks", &self.tasks.len())
            .field("agents", &self.agents.len())
            .finish_non_exhaustive()
    }
}

/// The valid objects of a guarded cache, and the errors of the malformed ones with their
/// `namespace/name`.
pub fn valid<K>(store: &Guarded<K>) -> (Vec<K>, Vec<(String, String)>)
where
    K: Resource + Clone,
    K::DynamicType: Eq + Hash + Clone,
{
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for obj in store.state() {
        match &obj.0 {
            Ok(k) => ok.push(k.clone()),
            Err(e) => bad.push(malformed(e)),
        }
    }
    (ok, bad)
}

/// Shared copies of a cache's valid objects, made once per version: a pass reads every Task,
/// and copying tens of thousands of them on every pass was most of its time. The cache hands
/// the same `Arc` back until an object changes, so a copy is found by that `Arc`'s address
/// (kept alive with it, so the address is not reused while the copy is kept).
pub struct Copies<K> {
    by_object: ByAddress<(Arc<DeserializeGuard<K>>, Arc<K>, u64)>,
    round: u64,
}

impl<K> std::fmt::Debug for Copies<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Copies")
            .field("copies", &self.by_object.len())
            .finish_non_exhaustive()
    }
}

impl<K> Default for Copies<K> {
    fn default() -> Self {
        Self {
            by_object: ByAddress::default(),
            round: 0,
        }
    }
}

impl<K> Copies<K>
where
    K: Resource + Clone,
    K::DynamicType: Eq + Hash + Clone,
{
    /// The valid objects of `store` (a copy only of those new or changed since the last call),
    /// and the errors of the malformed ones with their `namespace/name`.
    pub fn valid(&mut self, store: &Guarded<K>) -> (Vec<Arc<K>>, Vec<(String, String)>) {
        self.round += 1;
        let round = self.round;
        let mut ok = Vec::new();
        let mut bad = Vec::new();
        for obj in store.state() {
            let k = match &obj.0 {
                Ok(k) => k,
                Err(e) => {
                    bad.push(malformed(e));
                    continue;
                }
            };
            match self.by_object.entry(address(&obj)) {
                Entry::Occupied(mut kept) => {
                    let (_, shared, seen) = kept.get_mut();
                    *seen = round;
                    ok.push(shared.clone());
                }
                Entry::Vacant(free) => {
                    let shared = Arc::new(k.clone());
                    ok.push(shared.clone());
                    free.insert((obj.clone(), shared, round));
                }
            }
        }
        self.by_object.retain(|_, (_, _, seen)| *seen == round);
        (ok, bad)
    }

    /// Forgets every copy.
    pub fn clear(&mut self) {
        self.by_object.clear();
    }
}

fn malformed(e: &kube::core::error_boundary::InvalidObject) -> (String, String) {
    (
        format!(
            "{}/{}",
            e.metadata.namespace.as_deref().unwrap_or_default(),
            e.metadata.name.as_deref().unwrap_or_default()
        ),
        e.error.clone(),
    )
}

fn reflect<K>(
    api: Api<K>,
    notify: Option<Arc<Notify>>,
) -> (Store<K>, impl Future<Output = ()> + Send + 'static)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    reflect_when(api, notify, |_: &K| true)
}

/// Like [`reflect`], notifying only for objects that pass `filter`.
fn reflect_when<K>(
    api: Api<K>,
    notify: Option<Arc<Notify>>,
    filter: impl Fn(&K) -> bool + Send + Sync + 'static,
) -> (Store<K>, impl Future<Output = ()> + Send + 'static)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let routes: Vec<Route<K>> = match notify {
        Some(n) => vec![(n, Box::new(filter))],
        None => Vec::new(),
    };
    reflect_routed(api, routes)
}

/// A notification and the objects whose changes fire it.
type Route<K> = (Arc<Notify>, Box<dyn Fn(&K) -> bool + Send + Sync>);

/// Like [`reflect`], firing each route's notification for the objects its filter passes
/// (and for restarts of the watch).
fn reflect_routed<K>(
    api: Api<K>,
    routes: Vec<Route<K>>,
) -> (Store<K>, impl Future<Output = ()> + Send + 'static)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    let (reader, writer) = reflector::store();
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()).default_backoff());
    let run = async move {
        stream
            .for_each(|event| {
                match event {
                    Ok(event) => {
                        for (notify, filter) in &routes {
                            let relevant = match &event {
                                watcher::Event::Apply(k)
                                | watcher::Event::Delete(k)
                                | watcher::Event::InitApply(k) => filter(k),
                                _ => true,
                            };
                            if relevant {
                                notify.notify_one();
                            }
                        }
                    }
                    Err(e) => tracing::warn!(kind, error = %e, "watch failed; retrying"),
                }
                std::future::ready(())
            })
            .await;
    };
    (reader, run)
}

/// A filter that passes an object the first time its name is seen (and `wanted` says so).
fn first_seen<K: Resource>(
    wanted: impl Fn(&K) -> bool + Send + Sync + 'static,
) -> impl Fn(&K) -> bool + Send + Sync + 'static {
    let seen = std::sync::Mutex::new(std::collections::HashSet::new());
    move |k: &K| {
        let name = k.meta().name.clone().unwrap_or_default();
        wanted(k) && seen.lock().is_ok_and(|mut s| s.insert(name))
    }
}

/// A cache's watch, run until it is stopped.
type CacheRun = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Starts every cache on `tasks`, each watching until `stop` is cancelled; `notify` is woken
/// on each change except heartbeat renewals (their expiry is a timer, not an event);
/// `lease_changed` when the Lease `leader_lease` changes. Kueue's Workloads are watched only
/// with `kueue` (their CRD is Kueue's, installed with it).
pub fn start(
    client: &Client,
    namespace: &str,
    notify: &Arc<Notify>,
    (leader_lease, lease_changed): (&str, &Arc<Notify>),
    (tasks, stop): (&TaskTracker, &CancellationToken),
    kueue: bool,
) -> Caches {
    let spawn = |run: CacheRun| {
        tasks.spawn(stop.clone().run_until_cancelled_owned(run));
    };
    let wake = || Some(notify.clone());
    let (selfplay, run) = reflect(Api::<DeserializeGuard<SelfplayJob>>::all(client.clone()), wake());
    spawn(Box::pin(run));
    let (training, run) = reflect(Api::<DeserializeGuard<TrainingJob>>::all(client.clone()), wake());
    spawn(Box::pin(run));
    let (gauntlet, run) = reflect(Api::<DeserializeGuard<GauntletJob>>::all(client.clone()), wake());
    spawn(Box::pin(run));
    let (tasks, run) = reflect(Api::<DeserializeGuard<Task>>::all(client.clone()), wake());
    spawn(Box::pin(run));
    let (agents, run) = reflect(Api::<DeserializeGuard<Agent>>::all(client.clone()), wake());
    spawn(Box::pin(run));
    let (models, run) = reflect(Api::<DeserializeGuard<Model>>::all(client.clone()), wake());
    spawn(Box::pin(run));
    let (loops, run) = reflect(Api::<DeserializeGuard<TrainingLoop>>::all(client.clone()), wake());
    spawn(Box::pin(run));
    let leader_lease = leader_lease.to_owned();
    let (leases, run) = reflect_routed(
        Api::<Lease>::namespaced(client.clone(), namespace),
        vec![
            (
                lease_changed.clone(),
                Box::new(move |l: &Lease| l.metadata.name.as_deref() == Some(leader_lease.as_str())),
            ),
            // A pass when an agent's heartbeat Lease first appears: an agent registers (its
            // Agent, which wakes a pass) a moment before its first heartbeat, and a pass in
            // between marks it lapsed. Renewals wake no pass (their expiry is a timer).
            (
                notify.clone(),
                Box::new(first_seen(|l: &Lease| {
                    l.metadata
                        .name
                        .as_deref()
                        .is_some_and(|n| n.starts_with(ringrift_crds::identity::HEARTBEAT_LEASE_PREFIX))
                })),
            ),
        ],
    );
    spawn(Box::pin(run));
    let workloads = kueue.then(|| {
        let (workloads, run) = reflect(Api::<DeserializeGuard<Workload>>::all(client.clone()), wake());
        spawn(Box::pin(run));
        workloads
    });
    Caches {
        selfplay,
        training,
        gauntlet,
        tasks,
        agents,
        models,
        loops,
        leases,
        workloads,
    }
}

impl Caches {
    /// Waits until every cache has its first full list.
    ///
    /// # Errors
    /// When a cache's writer is gone (its task ended).
    pub async fn synced(&self) -> Result<(), reflector::store::WriterDropped> {
        self.selfplay.wait_until_ready().await?;
        self.training.wait_until_ready().await?;
        self.gauntlet.wait_until_ready().await?;
        self.tasks.wait_until_ready().await?;
        self.agents.wait_until_ready().await?;
        self.models.wait_until_ready().await?;
        self.loops.wait_until_ready().await?;
        if let Some(w) = &self.workloads {
            w.wait_until_ready().await?;
        }
        self.leases.wait_until_ready().await
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::watcher::Event;

    use super::*;

    fn guarded(value: serde_json::Value) -> DeserializeGuard<SelfplayJob> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_malformed_object_is_reported_and_the_rest_still_read() {
        let (reader, mut writer) = reflector::store::<DeserializeGuard<SelfplayJob>>();
        let good = serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "SelfplayJob",
            "metadata": {"name": "good", "namespace": "default"},
            "spec": {"game": {"board": "connect4"}, "games": 10, "output": {"dataset": "d"}}
        });
        let mut bad = good.clone();
        bad["metadata"]["name"] = "bad".into();
        bad["spec"]["games"] = "lots".into();
        writer.apply_watcher_event(&Event::Apply(guarded(good)));
        writer.apply_watcher_event(&Event::Apply(guarded(bad)));
        let (ok, errors) = valid(&reader);
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].metadata.name.as_deref(), Some("good"));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, "default/bad");
        assert!(errors[0].1.contains("\"lots\""), "{}", errors[0].1);
    }

    #[test]
    fn copies_are_made_once_per_version_and_forgotten_with_the_object() {
        let (reader, mut writer) = reflector::store::<DeserializeGuard<SelfplayJob>>();
        let job = |name: &str, uid: &str, rv: &str| {
            guarded(serde_json::json!({
                "apiVersion": "ringrift.ai/v1alpha1", "kind": "SelfplayJob",
                "metadata": {"name": name, "namespace": "default", "uid": uid, "resourceVersion": rv},
                "spec": {"game": {"board": "connect4"}, "games": 10, "output": {"dataset": "d"}}
            }))
        };
        writer.apply_watcher_event(&Event::Apply(job("a", "uid-a", "1")));
        writer.apply_watcher_event(&Event::Apply(job("b", "uid-b", "2")));
        let mut copies = Copies::default();
        let by_name = |objects: &[Arc<SelfplayJob>], name: &str| {
            objects
                .iter()
                .find(|o| o.metadata.name.as_deref() == Some(name))
                .cloned()
                .unwrap()
        };
        let (first, _) = copies.valid(&reader);
        let (second, _) = copies.valid(&reader);
        assert!(
            Arc::ptr_eq(&by_name(&first, "a"), &by_name(&second, "a")),
            "unchanged: the same copy"
        );
        writer.apply_watcher_event(&Event::Apply(job("a", "uid-a", "3")));
        writer.apply_watcher_event(&Event::Delete(job("b", "uid-b", "2")));
        let (third, _) = copies.valid(&reader);
        assert_eq!(third.len(), 1);
        let a = by_name(&third, "a");
        assert!(
            !Arc::ptr_eq(&by_name(&first, "a"), &a),
            "a new version: a new copy"
        );
        assert_eq!(a.metadata.resource_version.as_deref(), Some("3"));
        assert_eq!(copies.by_object.len(), 1, "the deleted object's copy is gone");
    }

    #[test]
    fn a_new_agent_lease_passes_once_and_other_leases_never() {
        let lease = |name: &str| Lease {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: None,
        };
        let filter = first_seen(|l: &Lease| {
            l.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("agent-"))
        });
        assert!(filter(&lease("agent-a1")), "first sight");
        assert!(!filter(&lease("agent-a1")), "a renewal");
        assert!(filter(&lease("agent-a2")));
        assert!(!filter(&lease("ringrift-controller")));
    }
}
