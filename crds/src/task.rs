//! `Task`: one unit of work bound to one agent.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{Artifact, NAME_PATTERN, TaskResources, WorkloadTemplate};

/// Label on every `Task` naming the agent it is bound to, so an agent can watch only its own.
pub const AGENT_LABEL: &str = "ringrift.ai/agent";
/// Label on every `Task` naming the job it belongs to.
pub const JOB_LABEL: &str = "ringrift.ai/job";

/// Annotation the controller sets with `spec.cancel`, saying why it cancelled a task.
pub const CANCEL_REASON_ANNOTATION: &str = "ringrift.ai/cancel-reason";

/// Why the controller cancelled a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CancelReason {
    /// The job was suspended; the unit runs again on resume, without using a retry.
    Suspended,
    /// Higher-priority work needed the room; the unit runs again, without using a retry.
    Preempted,
    /// No progress within `progressDeadlineSeconds`; the unit is retried.
    Stuck,
    /// Its agent stopped heartbeating; the unit runs again as a new attempt at once and this
    /// attempt never counts, even if it reports success later.
    Lost,
    /// The job finished (succeeded, failed or was decided early), or its unit went away.
    JobFinished,
    /// It succeeded, but every copy of its outputs was lost while they were still needed: it
    /// no longer counts, and its unit runs again (without using a retry).
    OutputsLost,
    /// Someone else set `spec.cancel`; counts as a failed attempt.
    User,
}

impl CancelReason {
    /// The annotation value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Suspended => "Suspended",
            Self::Preempted => "Preempted",
            Self::Stuck => "Stuck",
            Self::Lost => "Lost",
            Self::JobFinished => "JobFinished",
            Self::OutputsLost => "OutputsLost",
            Self::User => "User",
        }
    }

    /// Parses the annotation value; anything else is a cancel by someone else (`User`).
    pub fn parse(s: &str) -> Self {
        match s {
            "Suspended" => Self::Suspended,
            "Preempted" => Self::Preempted,
            "Stuck" => Self::Stuck,
            "Lost" => Self::Lost,
            "JobFinished" => Self::JobFinished,
            "OutputsLost" => Self::OutputsLost,
            _ => Self::User,
        }
    }
}

/// One unit of work (a batch of games, a training run) bound to one agent. Created by the
/// controller; run, and reported on, by that agent. A retry is a new `Task` with `attempt + 1`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "ringrift.ai",
    version = "v1alpha1",
    kind = "Task",
    plural = "tasks",
    namespaced,
    status = "TaskStatus",
    shortname = "rtask",
    category = "ringrift",
    doc = "One unit of work bound to one agent.",
    selectable = ".spec.agent",
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.role"),
    printcolumn(name = "Agent", type_ = "string", json_path = ".spec.agent"),
    printcolumn(name = "Attempt", type_ = "integer", json_path = ".spec.attempt"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Progress", type_ = "string", json_path = ".status.progressText"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.reason", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("!has(oldSelf.agent) || (has(self.agent) && self.agent == oldSelf.agent)")
        .message("agent cannot change once set")
        .field_path(".agent"),
    validation = Rule::new("self.role == oldSelf.role && self.job == oldSelf.job && self.workUnit == oldSelf.workUnit")
        .message("role, job and workUnit are immutable")
)]
pub struct TaskSpec {
    /// What the process does: `selfplay`, `training` or `gauntlet`; `copy` runs no process.
    pub role: Role,
    /// The job this task is a unit of.
    pub job: JobRef,
    /// Identifier of the work unit within the job, for example `games-0003`. All attempts of a
    /// unit share it; the job counts one succeeded attempt per unit.
    #[schemars(length(min = 1, max = 63))]
    pub work_unit: String,
    /// Attempt number, from 0. Cannot change.
    #[x_kube(validation = Rule::new("self == oldSelf").message("attempt is immutable"))]
    #[schemars(range(max = 1000))]
    pub attempt: u32,
    /// The agent that runs it. Set once, by the controller; cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = NAME_PATTERN))]
    pub agent: Option<String>,
    /// The resolved workload template.
    #[serde(default)]
    pub template: WorkloadTemplate,
    /// Parameters for the workload, passed as `RINGRIFT_PARAMS` (game, games, seed, opponents,
    /// hyperparameters, …).
    #[serde(default = "empty_object")]
    #[schemars(schema_with = "crate::common::free_form_object_schema")]
    pub params: serde_json::Value,
    /// What it needs on its agent.
    #[serde(default)]
    pub resources: TaskResources,
    /// UUIDs of the GPUs assigned to it on its agent (becomes `CUDA_VISIBLE_DEVICES`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub gpus: Vec<String>,
    /// Artifacts to fetch into the input directory before the process starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10_000))]
    pub inputs: Vec<Artifact>,
    /// Seconds the process may run before it is killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<u64>,
    /// Seconds without progress before the process is considered stuck and killed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub progress_deadline_seconds: Option<u64>,
    /// Asks the agent to stop the process. Defaults to false.
    #[serde(default)]
    pub cancel: bool,
    /// Copies of each output to have on distinct agents (this one's included) before the task
    /// counts as Succeeded: the agent pushes the others, fewer when fewer agents can take one.
    /// Unset: only this agent's (or one reachable agent's, when this one cannot be reached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = crate::common::MAX_REPLICAS))]
    pub replicas: Option<u32>,
    /// The name of one of `inputs`: a checkpoint an earlier attempt of the unit wrote, which
    /// the process resumes from (`RINGRIFT_RESUME_FROM` is its path in the input directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub resume_from: Option<String>,
    /// The `metadata.uid` of a Task running on the same agent and GPUs that this one follows
    /// (a hand-over: the controller binds the next task to a GPU whose task is about to end;
    /// a uid, not a name, since a Task deleted and created again keeps its name). The agent
    /// starts this one once that task's process has exited; unset, or naming a task the agent
    /// does not run, it starts at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub start_after: Option<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// What a task's process does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Role {
    /// Play games and record them.
    Selfplay,
    /// Train a model.
    Training,
    /// Play a candidate against opponents.
    Gauntlet,
    /// No process: keep one more copy of the task's inputs on its agent. The controller
    /// creates these when a needed artifact has fewer copies than its job asks for (a holder
    /// was lost); the task succeeds once the inputs are held and verified, reporting them as
    /// its outputs with its agent as holder.
    Copy,
}

/// The job a task belongs to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobRef {
    /// `SelfplayJob`, `TrainingJob` or `GauntletJob`.
    pub kind: JobKind,
    /// The job's name, in the task's namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = NAME_PATTERN))]
    pub name: String,
}

/// The kinds of job that own tasks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum JobKind {
    /// A `SelfplayJob`.
    SelfplayJob,
    /// A `TrainingJob`.
    TrainingJob,
    /// A `GauntletJob`.
    GauntletJob,
}

/// Phase of a task.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum TaskPhase {
    /// Bound, not started by its agent yet.
    #[default]
    Pending,
    /// Its agent is fetching the inputs.
    Fetching,
    /// The process runs.
    Running,
    /// The process exited 0 and its outputs are recorded.
    Succeeded,
    /// The process failed; see `failureClass` and `reason`.
    Failed,
    /// Stopped on request, by a deadline, or because the task stopped being current.
    Cancelled,
    /// Its agent stopped heartbeating; the work is rescheduled as a new attempt.
    Lost,
}

impl TaskPhase {
    /// Whether the task will not change any more.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Cancelled | Self::Lost
        )
    }
}

/// Why a task failed, for the retry policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum FailureClass {
    /// The process exited non-zero on its own: a bug or bad parameters. Retried in place.
    UserError,
    /// The process was killed by a signal it did not ask for (OOM killer and the like).
    Signal,
    /// A GPU fault (XID error, ECC error, lost device). Retried on another agent.
    GpuFault,
    /// `activeDeadlineSeconds` passed.
    DeadlineExceeded,
    /// `progressDeadlineSeconds` passed without progress.
    Stuck,
    /// An input could not be fetched or verified.
    InputUnavailable,
    /// The agent could not start or supervise the process.
    AgentError,
}

/// Progress as the workload last reported it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub total: u64,
    /// What is counted: `games`, `steps`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// Observed state of a `Task`, written by its agent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pending, Fetching, Running, Succeeded, Failed, Cancelled or Lost.
    #[serde(default)]
    pub phase: TaskPhase,
    /// Conditions, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::common::conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The attempt this status reports on (fencing: a status for another attempt is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Latest progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// `done/total unit`, for display.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_text: Option<String>,
    /// Latest metrics the workload reported (loss, games/s, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
    /// Process exit code, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Signal that ended the process, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Classification of a failure, for the retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_class: Option<FailureClass>,
    /// One-word reason for the phase, in CamelCase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Details for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Files the task produced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<Artifact>,
    /// The workload's `result.json` (for a gauntlet: wins, losses, draws per opponent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::common::free_form_object_schema")]
    pub result: Option<serde_json::Value>,
    /// When the process started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When progress was last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_progress_time: Option<Time>,
    /// When the task finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Bytes of inputs its agent pulled from other agents for it (inputs already held there
    /// count nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_fetched: Option<u64>,
    /// Bytes of its outputs pushed to other agents as copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_pushed: Option<u64>,
    /// The newest checkpoint the process announced (`@ringrift {"checkpoint": …}`), kept in the
    /// agent's store (and pushed to other agents) whatever becomes of the attempt: the next
    /// attempt of its unit resumes from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Artifact>,
}

/// What one write of a Task's status sets: each field that is present replaces the status's;
/// absent ones are kept. The agent reports an attempt's start, progress and end with these (and
/// records the final one locally, to write again after a restart), so every status write is
/// typed. Serialized, it is the JSON of the status fields it sets.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusUpdate {
    /// See [`TaskStatus::phase`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<TaskPhase>,
    /// See [`TaskStatus::progress`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// See [`TaskStatus::progress_text`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_text: Option<String>,
    /// See [`TaskStatus::metrics`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<BTreeMap<String, f64>>,
    /// See [`TaskStatus::exit_code`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// See [`TaskStatus::signal`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// See [`TaskStatus::failure_class`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_class: Option<FailureClass>,
    /// See [`TaskStatus::reason`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// See [`TaskStatus::message`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// See [`TaskStatus::outputs`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<Artifact>>,
    /// See [`TaskStatus::result`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// See [`TaskStatus::start_time`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// See [`TaskStatus::last_progress_time`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_progress_time: Option<Time>,
    /// See [`TaskStatus::completion_time`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// See [`TaskStatus::bytes_fetched`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_fetched: Option<u64>,
    /// See [`TaskStatus::bytes_pushed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_pushed: Option<u64>,
    /// See [`TaskStatus::checkpoint`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Artifact>,
}

impl StatusUpdate {
    /// Sets the fields this update carries on `status`.
    pub fn apply(&self, status: &mut TaskStatus) {
        fn set<T: Clone>(to: &mut Option<T>, from: Option<&T>) {
            if let Some(v) = from {
                *to = Some(v.clone());
            }
        }
        if let Some(phase) = self.phase {
            status.phase = phase;
        }
        if let Some(metrics) = &self.metrics {
            status.metrics.clone_from(metrics);
        }
        if let Some(outputs) = &self.outputs {
            status.outputs.clone_from(outputs);
        }
        set(&mut status.progress, self.progress.as_ref());
        set(&mut status.checkpoint, self.checkpoint.as_ref());
        set(&mut status.progress_text, self.progress_text.as_ref());
        set(&mut status.exit_code, self.exit_code.as_ref());
        set(&mut status.signal, self.signal.as_ref());
        set(&mut status.failure_class, self.failure_class.as_ref());
        set(&mut status.reason, self.reason.as_ref());
        set(&mut status.message, self.message.as_ref());
        set(&mut status.result, self.result.as_ref());
        set(&mut status.start_time, self.start_time.as_ref());
        set(&mut status.last_progress_time, self.last_progress_time.as_ref());
        set(&mut status.completion_time, self.completion_time.as_ref());
        set(&mut status.bytes_fetched, self.bytes_fetched.as_ref());
        set(&mut status.bytes_pushed, self.bytes_pushed.as_ref());
    }
}

impl Task {
    /// Why the task was cancelled: none unless `spec.cancel` is set; a reason the controller did
    /// not write (or none) reads as [`CancelReason::User`]. The controller and the agent both
    /// read it here.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.spec.cancel.then(|| {
            self.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(CANCEL_REASON_ANNOTATION))
                .map_or(CancelReason::User, |s| CancelReason::parse(s))
        })
    }

    /// Whether the controller gave up on this attempt because its agent was lost (cancelled as
    /// `Lost`, or marked `Lost` in its status): nothing the attempt does may count.
    pub fn is_lost(&self) -> bool {
        self.cancel_reason() == Some(CancelReason::Lost)
            || self.status.as_ref().is_some_and(|s| s.phase == TaskPhase::Lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_update_sets_what_it_carries_and_keeps_the_rest() {
        let mut status = TaskStatus {
            phase: TaskPhase::Running,
            attempt: Some(2),
            message: Some("running on a1".into()),
            progress_text: Some("3/10 games".into()),
            ..TaskStatus::default()
        };
        let update = StatusUpdate {
            phase: Some(TaskPhase::Succeeded),
            exit_code: Some(0),
            metrics: Some(BTreeMap::from([("loss".to_owned(), 0.5)])),
            ..StatusUpdate::default()
        };
        update.apply(&mut status);
        assert_eq!(status.phase, TaskPhase::Succeeded);
        assert_eq!(status.exit_code, Some(0));
        assert_eq!(status.attempt, Some(2));
        assert_eq!(status.message.as_deref(), Some("running on a1"));
        assert_eq!(status.progress_text.as_deref(), Some("3/10 games"));
        assert_eq!(status.metrics.get("loss"), Some(&0.5));
    }

    /// An outcome an agent recorded before updates were typed (a JSON object of status fields)
    /// still reads: it is the same JSON.
    #[test]
    fn a_recorded_update_reads_back_as_the_status_fields_it_sets() {
        let recorded = r#"{"phase":"Failed","reason":"Error","message":"exited with code 3","exitCode":3,
            "failureClass":"UserError","completionTime":"2026-12-05T12:00:00.123456789Z","progressText":"1/2 games",
            "progress":{"done":1,"total":2,"unit":"games"}}"#;
        let update: StatusUpdate = serde_json::from_str(recorded).unwrap();
        assert_eq!(update.phase, Some(TaskPhase::Failed));
        assert_eq!(update.failure_class, Some(FailureClass::UserError));
        assert_eq!(update.exit_code, Some(3));
        assert!(update.completion_time.is_some());
        let json = serde_json::to_value(&update).unwrap();
        assert_eq!(json["reason"], "Error");
        assert!(
            json.get("outputs").is_none() && json.get("startTime").is_none(),
            "{json}"
        );
    }

    fn task(cancel: bool, reason: Option<&str>, phase: TaskPhase) -> Task {
        let mut t: Task = serde_json::from_value(serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "Task", "metadata": {"name": "t"},
            "spec": {"role": "selfplay", "job": {"kind": "SelfplayJob", "name": "j"}, "workUnit": "u0", "attempt": 0}
        }))
        .unwrap();
        t.spec.cancel = cancel;
        t.metadata.annotations =
            reason.map(|r| BTreeMap::from([(CANCEL_REASON_ANNOTATION.to_owned(), r.to_owned())]));
        t.status = Some(TaskStatus {
            phase,
            ..TaskStatus::default()
        });
        t
    }

    #[test]
    fn the_cancel_reason_is_read_the_same_way_by_controller_and_agent() {
        for reason in [
            CancelReason::Suspended,
            CancelReason::Preempted,
            CancelReason::Stuck,
            CancelReason::Lost,
            CancelReason::JobFinished,
            CancelReason::User,
        ] {
            assert_eq!(CancelReason::parse(reason.as_str()), reason);
            let t = task(true, Some(reason.as_str()), TaskPhase::Running);
            assert_eq!(t.cancel_reason(), Some(reason));
            assert_eq!(t.is_lost(), reason == CancelReason::Lost);
        }
        assert_eq!(
            task(true, None, TaskPhase::Running).cancel_reason(),
            Some(CancelReason::User)
        );
        assert_eq!(
            task(true, Some("Whatever"), TaskPhase::Running).cancel_reason(),
            Some(CancelReason::User)
        );
        // Not cancelled: the annotation alone means nothing; a Lost status still is lost.
        assert_eq!(
            task(false, Some("Lost"), TaskPhase::Running).cancel_reason(),
            None
        );
        assert!(!task(false, Some("Lost"), TaskPhase::Running).is_lost());
        assert!(task(false, None, TaskPhase::Lost).is_lost());
    }
}
