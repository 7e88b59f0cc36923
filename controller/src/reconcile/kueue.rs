//! Kueue's external-framework contract, without I/O: a job labelled
//! `kueue.x-k8s.io/queue-name` is admitted by Kueue through a `Workload`
//! (`kueue.x-k8s.io/v1beta1`) the controller creates for it; the job's units wait until the
//! Workload is admitted, its running tasks stop when Kueue evicts it, and the Workload is marked
//! `Finished` when the job ends, so Kueue releases the quota.
//!
//! The Workload is read and written as JSON (the controller does not link Kueue's types): its
//! `spec.podSets` describe the job as one pod set of `count` pods, each asking for one work
//! unit's resources (`cpu`, `memory`, `nvidia.com/gpu`), and `status.conditions` carry Kueue's
//! `QuotaReserved`, `Admitted`, `Evicted` and the controller's `Finished`.

use jiff::Timestamp;
use ringrift_crds::common::TaskResources;
use serde_json::{Value, json};

/// The label that puts a job in a Kueue LocalQueue.
pub const QUEUE_LABEL: &str = "kueue.x-k8s.io/queue-name";
/// The label on a Workload with its job's uid (as Kueue's own integrations set it).
pub const JOB_UID_LABEL: &str = "kueue.x-k8s.io/job-uid";
/// Kueue's API group and version.
pub const API_VERSION: &str = "kueue.x-k8s.io/v1beta1";

/// Where a job's Workload stands with Kueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Not created yet.
    Missing,
    /// Created, not admitted (queued, or its quota reserved while admission checks run).
    Pending,
    /// Admitted: the job may run.
    Admitted,
    /// Evicted (preempted, or its pods not ready in time): the job stops until admitted again.
    Evicted(String),
}

fn condition<'a>(conditions: &'a [Value], kind: &str) -> Option<&'a Value> {
    conditions
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(kind))
}

fn is_true(conditions: &[Value], kind: &str) -> bool {
    condition(conditions, kind)
        .and_then(|c| c.get("status"))
        .and_then(Value::as_str)
        == Some("True")
}

/// What a Workload's conditions say (no Workload: [`Admission::Missing`]). An eviction wins
/// over an admission not yet withdrawn: Kueue sets `Evicted` first, then clears the admission.
pub fn admission(conditions: Option<&[Value]>) -> Admission {
    let Some(c) = conditions else {
        return Admission::Missing;
    };
    if is_true(c, "Evicted") {
        let evicted = condition(c, "Evicted");
        let text = |key: &str| {
            evicted
                .and_then(|e| e.get(key))
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        return Admission::Evicted(format!("{}: {}", text("reason"), text("message")));
    }
    if is_true(c, "Admitted") {
        Admission::Admitted
    } else {
        Admission::Pending
    }
}

/// Whether the Workload is already marked `Finished`.
pub fn finished(conditions: &[Value]) -> bool {
    is_true(conditions, "Finished")
}

/// The Workload's name: `<kind>-<job>-<first five of the uid>`, the job's name shortened to fit
/// 253 characters (as Kueue names its own: `job-my-job-19797`).
pub fn workload_name(kind: &str, job: &str, uid: &str) -> String {
    let kind = kind.to_ascii_lowercase();
    let suffix: String = uid.chars().filter(char::is_ascii_alphanumeric).take(5).collect();
    let keep = 253usize
        .saturating_sub(kind.len() + suffix.len() + 2)
        .min(job.len());
    format!("{kind}-{}-{suffix}", &job[..keep]).to_ascii_lowercase()
}

/// The requests of one pod of the pod set: one work unit's resources.
fn requests(r: &TaskResources) -> Value {
    let mut requests = json!({
        "cpu": format!("{}m", r.cpu_millis),
        "memory": format!("{}Mi", r.memory_mib),
    });
    if r.gpus > 0 {
        requests["nvidia.com/gpu"] = json!(r.gpus.to_string());
    }
    requests
}

/// What a job asks Kueue for.
#[derive(Debug, Clone)]
pub struct Asked<'a> {
    /// The job's kind (`SelfplayJob`, …), name, namespace and uid.
    pub kind: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// Its uid.
    pub uid: &'a str,
    /// The LocalQueue.
    pub queue: &'a str,
    /// Work units that run at once at most (the pod count).
    pub count: u32,
    /// One unit's resources.
    pub resources: &'a TaskResources,
}

/// The Workload object for a job, owned by it.
pub fn workload(a: &Asked<'_>) -> Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": "Workload",
        "metadata": {
            "name": workload_name(a.kind, a.name, a.uid),
            "namespace": a.namespace,
            "labels": {JOB_UID_LABEL: a.uid},
            "ownerReferences": [{
                "apiVersion": "ringrift.ai/v1alpha1",
                "kind": a.kind,
                "name": a.name,
                "uid": a.uid,
                "controller": true,
                "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "queueName": a.queue,
            "podSets": [{
                "name": "main",
                "count": a.count.max(1),
                "template": {"spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "workload",
                        "image": "ringrift-task",
                        "resources": {"requests": requests(a.resources)},
                    }],
                }},
            }],
        },
    })
}

/// The Workload's conditions with `Finished` set (Kueue's own kept as they are), as Kueue's job
/// integrations finish a Workload so its quota is released.
pub fn with_finished(conditions: &[Value], succeeded: bool, message: &str, now: Timestamp) -> Vec<Value> {
    let mut out: Vec<Value> = conditions
        .iter()
        .filter(|c| c.get("type").and_then(Value::as_str) != Some("Finished"))
        .cloned()
        .collect();
    out.push(json!({
        "type": "Finished",
        "status": "True",
        "reason": if succeeded { "Succeeded" } else { "Failed" },
        "message": message,
        "lastTransitionTime": now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(conditions: &[(&str, &str)]) -> Vec<Value> {
        conditions
            .iter()
            .map(|(t, s)| json!({"type": t, "status": s, "reason": "R", "message": "m"}))
            .collect()
    }

    #[test]
    fn conditions_read_as_kueue_means_them() {
        assert_eq!(admission(None), Admission::Missing);
        assert_eq!(admission(Some(&[])), Admission::Pending);
        assert_eq!(
            admission(Some(&with(&[("QuotaReserved", "True")]))),
            Admission::Pending
        );
        assert_eq!(
            admission(Some(&with(&[("QuotaReserved", "True"), ("Admitted", "True")]))),
            Admission::Admitted
        );
        assert_eq!(
            admission(Some(&with(&[("Admitted", "True"), ("Evicted", "True")]))),
            Admission::Evicted("R: m".into()),
            "eviction wins over an admission not yet withdrawn"
        );
        assert_eq!(
            admission(Some(&with(&[("Admitted", "False"), ("Evicted", "False")]))),
            Admission::Pending
        );
    }

    #[test]
    fn the_workload_asks_for_one_unit_per_pod_and_is_owned_by_its_job() {
        let r = TaskResources {
            gpus: 2,
            cpu_millis: 1500,
            memory_mib: 4096,
            ..TaskResources::default()
        };
        let w = workload(&Asked {
            kind: "SelfplayJob",
            name: "sp",
            namespace: "team",
            uid: "a1b2c3d4-e5f6",
            queue: "user-queue",
            count: 4,
            resources: &r,
        });
        assert_eq!(w["metadata"]["name"], "selfplayjob-sp-a1b2c");
        assert_eq!(w["metadata"]["labels"][JOB_UID_LABEL], "a1b2c3d4-e5f6");
        assert_eq!(w["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(w["spec"]["queueName"], "user-queue");
        let set = &w["spec"]["podSets"][0];
        assert_eq!(set["count"], 4);
        let requests = &set["template"]["spec"]["containers"][0]["resources"]["requests"];
        assert_eq!(
            requests,
            &json!({"cpu": "1500m", "memory": "4096Mi", "nvidia.com/gpu": "2"})
        );
        // No GPUs: no GPU request; a long name is shortened to fit.
        let cpu = TaskResources::default();
        let long = "x".repeat(300);
        let w = workload(&Asked {
            kind: "TrainingJob",
            name: &long,
            namespace: "n",
            uid: "u",
            queue: "q",
            count: 0,
            resources: &cpu,
        });
        assert!(
            w["spec"]["podSets"][0]["template"]["spec"]["containers"][0]["resources"]["requests"]
                .get("nvidia.com/gpu")
                .is_none()
        );
        assert_eq!(w["spec"]["podSets"][0]["count"], 1, "at least one pod");
        assert!(w["metadata"]["name"].as_str().unwrap().len() <= 253);
    }

    #[test]
    fn finishing_keeps_kueues_conditions_and_replaces_an_earlier_finish() {
        let w = with(&[("Admitted", "True"), ("Finished", "False")]);
        let now: Timestamp = "2026-12-06T10:00:00Z".parse().unwrap();
        let conditions = with_finished(&w, true, "all units succeeded", now);
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[0]["type"], "Admitted");
        assert_eq!(conditions[1]["type"], "Finished");
        assert_eq!(conditions[1]["status"], "True");
        assert_eq!(conditions[1]["reason"], "Succeeded");
        assert_eq!(conditions[1]["lastTransitionTime"], "2026-12-06T10:00:00Z");
        assert!(finished(&conditions));
        assert!(!finished(&w));
    }
}
