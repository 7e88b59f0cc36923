//! The embedded API server driven by kube-rs, the client the controller and agents use: a
//! `Controller` with an owned child and a finalizer, a watcher that recovers from 410 Gone, and
//! Lease create/update races decided by resourceVersion (client-go leader-election semantics).

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, CustomResourceExt, Resource, ResourceExt};
use ringrift_crds::SelfplayJob;
use ringrift_e2e::process::{ApiServerProcess, Scratch};
use ringrift_e2e::repo_root;

/// Waits until the watcher reports an object named `name`.
async fn wait_for(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    name: &str,
) -> Result<(), tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(seen) = rx.recv().await {
            if seen == name {
                return;
            }
        }
    })
    .await
}

async fn client(server: &ApiServerProcess) -> Client {
    let kubeconfig = Kubeconfig::read_from(&server.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

async fn install_crds(client: &Client) {
    let crds: Api<
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    > = Api::all(client.clone());
    for crd in ringrift_crds::all() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let established = kube::runtime::wait::conditions::is_crd_established();
    let name = SelfplayJob::crd_name();
    tokio::time::timeout(
        Duration::from_secs(30),
        kube::runtime::wait::await_condition(crds, name, established),
    )
    .await
    .unwrap()
    .unwrap();
}

fn example_job(name: &str) -> SelfplayJob {
    let text = std::fs::read_to_string(repo_root().join("examples/selfplay-job.yaml")).unwrap();
    let mut job: SelfplayJob = serde_saphyr::from_str(&text).unwrap();
    job.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some("default".into()),
        ..ObjectMeta::default()
    };
    job
}

/// Waits for `check` to hold, polling with a deadline.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const FINALIZER: &str = "test.ringrift.ai/cleanup";

struct Ctx {
    client: Client,
    cleaned: AtomicUsize,
}

async fn reconcile(
    job: Arc<SelfplayJob>,
    ctx: Arc<Ctx>,
) -> Result<Action, kube::runtime::finalizer::Error<kube::Error>> {
    let jobs: Api<SelfplayJob> = Api::namespaced(ctx.client.clone(), "default");
    finalizer(&jobs, FINALIZER, job, |event| async {
        match event {
            Event::Apply(job) => {
                let owner = job.controller_owner_ref(&()).unwrap();
                let child = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(format!("{}-child", job.name_any())),
                        namespace: Some("default".into()),
                        owner_references: Some(vec![OwnerReference { ..owner }]),
                        ..ObjectMeta::default()
                    },
                    data: Some([("games".to_owned(), job.spec.settings.games.to_string())].into()),
                    ..ConfigMap::default()
                };
                let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), "default");
                let ssa = PatchParams::apply("ringrift-e2e").force();
                cms.patch(&child.name_any(), &ssa, &Patch::Apply(&child)).await?;
                let status = serde_json::json!({"status": {"phase": "Running", "gamesTotal": job.spec.settings.games}});
                jobs.patch_status(&job.name_any(), &PatchParams::default(), &Patch::Merge(&status)).await?;
                Ok(Action::await_change())
            }
            Event::Cleanup(_) => {
                ctx.cleaned.fetch_add(1, Ordering::SeqCst);
                Ok(Action::await_change())
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_with_an_owned_child_and_a_finalizer() {
    let dir = Scratch::new("kube-controller").unwrap();
    let server = ApiServerProcess::start(&dir.0, &[]).unwrap();
    let client = client(&server).await;
    install_crds(&client).await;
    let jobs: Api<SelfplayJob> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        cleaned: AtomicUsize::new(0),
    });
    let controller = Controller::new(jobs.clone(), watcher::Config::default())
        .owns(cms.clone(), watcher::Config::default())
        .run(
            reconcile,
            |_, _, _| Action::requeue(Duration::from_secs(1)),
            Arc::clone(&ctx),
        )
        .for_each(|_| async {});
    let controller = tokio::spawn(controller);

    jobs.create(&PostParams::default(), &example_job("ctl"))
        .await
        .unwrap();
    eventually("the child and the status", || async {
        let child = cms.get_opt("ctl-child").await.unwrap();
        let job = jobs.get("ctl").await.unwrap();
        child.is_some_and(|c| {
            c.owner_references()
                .iter()
                .any(|o| Some(&o.uid) == job.uid().as_ref())
        }) && job.status.as_ref().is_some_and(|s| s.games_total == 2000)
            && job.finalizers().iter().any(|f| f == FINALIZER)
    })
    .await;

    // Changing the spec reconciles again (the child follows).
    jobs.patch(
        "ctl",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"games": 10}})),
    )
    .await
    .unwrap();
    eventually("the child to follow the spec", || async {
        cms.get("ctl-child")
            .await
            .unwrap()
            .data
            .unwrap_or_default()
            .get("games")
            .map(String::as_str)
            == Some("10")
    })
    .await;

    // Deleting runs the finalizer's cleanup, then the job goes, then its child is collected.
    jobs.delete("ctl", &DeleteParams::default()).await.unwrap();
    eventually("the job to be gone", || async {
        jobs.get_opt("ctl").await.unwrap().is_none()
    })
    .await;
    assert_eq!(ctx.cleaned.load(Ordering::SeqCst), 1, "cleanup ran once");
    eventually("the child to be collected", || async {
        cms.get_opt("ctl-child").await.unwrap().is_none()
    })
    .await;
    controller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_recovers_from_410_gone() {
    let dir = Scratch::new("kube-410").unwrap();
    let server = ApiServerProcess::start(&dir.0, &["--watch-history", "5"]).unwrap();
    let client = client(&server).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    // Short server-side timeouts make the watcher re-watch from its last resourceVersion. It
    // watches only ConfigMaps labelled `watched`: the writes below, ConfigMaps without the
    // label, never reach it, so its version stays while they push events of its own kind out
    // of the 5-event history (a watch expires only when its kind's events were compacted, as
    // upstream's per-resource watch cache). Without bookmarks: a bookmark (sent before a
    // watch times out, as upstream does) would move that version forward and the re-watch
    // would never be too old.
    let stream = watcher(
        cms.clone(),
        watcher::Config::default()
            .labels("watched=yes")
            .timeout(1)
            .disable_bookmarks(),
    )
    .applied_objects();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            if let Ok(cm) = item {
                let _ = tx.send(cm.name_any());
            }
        }
    });
    let make = |name: &str, watched: bool| ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: watched.then(|| [("watched".to_owned(), "yes".to_owned())].into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    cms.create(&PostParams::default(), &make("before", true))
        .await
        .unwrap();
    wait_for(&mut rx, "before")
        .await
        .expect("the watcher saw the first object");
    // Forty writes the watcher does not select: the history (5 events, compacted every 32
    // writes) drops the watcher's version.
    for i in 0..40 {
        cms.create(&PostParams::default(), &make(&format!("f{i}"), false))
            .await
            .unwrap();
    }
    // The re-watch from the expired version is answered 410 Gone; the watcher relists, which
    // hands it the first object again.
    wait_for(&mut rx, "before")
        .await
        .expect("the watcher relisted after 410 Gone");
    cms.create(&PostParams::default(), &make("after", true))
        .await
        .unwrap();
    wait_for(&mut rx, "after")
        .await
        .expect("the watcher relisted after 410 and kept going");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_races_have_exactly_one_winner() {
    let dir = Scratch::new("kube-lease").unwrap();
    let server = ApiServerProcess::start(&dir.0, &[]).unwrap();
    let client = client(&server).await;
    let leases: Api<Lease> = Api::namespaced(client, "default");
    let lease = |holder: &str| Lease {
        metadata: ObjectMeta {
            name: Some("controller".into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }),
    };
    // Create race: one creates, the rest get 409 AlreadyExists.
    let creates = futures_util::future::join_all((0..8).map(|i| {
        let leases = leases.clone();
        let candidate = lease(&format!("replica-{i}"));
        async move { leases.create(&PostParams::default(), &candidate).await }
    }))
    .await;
    let won = creates.iter().filter(|r| r.is_ok()).count();
    let already = creates
        .iter()
        .filter(|r| matches!(r, Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists"))
        .count();
    assert_eq!((won, already), (1, 7));
    // Update race from the same observed version: one replace wins, the rest get 409 Conflict.
    let observed = leases.get("controller").await.unwrap();
    let replaces = futures_util::future::join_all((0..8).map(|i| {
        let leases = leases.clone();
        let mut candidate = observed.clone();
        candidate.spec.as_mut().unwrap().holder_identity = Some(format!("taker-{i}"));
        async move {
            leases
                .replace("controller", &PostParams::default(), &candidate)
                .await
        }
    }))
    .await;
    let winners: Vec<String> = replaces
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|l| l.spec.as_ref().unwrap().holder_identity.clone().unwrap())
        .collect();
    let conflicts = replaces
        .iter()
        .filter(|r| matches!(r, Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "Conflict"))
        .count();
    assert_eq!((winners.len(), conflicts), (1, 7));
    let stored = leases.get("controller").await.unwrap();
    assert_eq!(
        stored.spec.unwrap().holder_identity.unwrap(),
        winners[0],
        "the winner's write is what is stored"
    );
}
