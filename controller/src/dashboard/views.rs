//! What each dashboard page shows, without I/O: JSON built from the controller's caches (and,
//! for agents, what their REST API said about their GPUs). The page's script draws it.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use ringrift_crds::agent::Agent;
use ringrift_crds::gauntlet::{Decision, GauntletJob};
use ringrift_crds::model::Model;
use ringrift_crds::selfplay::SelfplayJob;
use ringrift_crds::task::{Task, TaskPhase};
use ringrift_crds::training::TrainingJob;
use ringrift_crds::training_loop::{Stage, TrainingLoop};
use serde_json::{Value, json};

use crate::reconcile::models::pairings;

/// The objects the pages are drawn from: one read of the caches.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Training loops.
    pub loops: Vec<TrainingLoop>,
    /// Selfplay jobs.
    pub selfplay: Vec<SelfplayJob>,
    /// Training jobs.
    pub training: Vec<TrainingJob>,
    /// Gauntlets.
    pub gauntlets: Vec<GauntletJob>,
    /// Models.
    pub models: Vec<Model>,
    /// Tasks.
    pub tasks: Vec<Task>,
    /// Agents.
    pub agents: Vec<Agent>,
}

fn key<K: kube::Resource>(o: &K) -> (String, String) {
    (o.namespace().unwrap_or_default(), o.name_any())
}

fn find<'a, K: kube::Resource>(items: &'a [K], ns: &str, name: &str) -> Option<&'a K> {
    items
        .iter()
        .find(|o| o.meta().name.as_deref() == Some(name) && o.namespace().as_deref() == Some(ns))
}

fn seconds_since(t: Option<&Time>, now: Timestamp) -> Option<f64> {
    let t = t?;
    let s = now.duration_since(t.0).as_secs_f64();
    (s > 0.0).then_some(s)
}

/// A stage's progress: done of total with the unit, the rate per second and the seconds left.
fn progress(done: u64, total: u64, unit: &str, job: &str, started: Option<&Time>, now: Timestamp) -> Value {
    #[allow(clippy::cast_precision_loss)]
    let rate = seconds_since(started, now)
        .map(|s| done as f64 / s)
        .filter(|r| *r > 0.0);
    #[allow(clippy::cast_precision_loss)]
    let eta = rate.map(|r| (total.saturating_sub(done) as f64 / r).round());
    json!({"job": job, "done": done, "total": total, "unit": unit, "ratePerSecond": rate, "etaSeconds": eta})
}

fn condition<'a>(conditions: &'a [Condition], kind: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == kind)
}

/// Elo with its 95% interval, as the model registry rates it.
fn rating(models: &[Model], ns: &str, name: Option<&str>) -> Value {
    let Some(status) = name
        .and_then(|n| find(models, ns, n))
        .and_then(|m| m.status.as_ref())
    else {
        return Value::Null;
    };
    json!({"elo": status.elo, "low": status.elo_low, "high": status.elo_high, "games": status.games_rated})
}

/// The progress of the stage a loop is in, from its active job.
fn loop_progress(s: &Snapshot, l: &TrainingLoop, now: Timestamp) -> Value {
    let ns = l.namespace().unwrap_or_default();
    let Some(status) = &l.status else {
        return Value::Null;
    };
    let active = &status.active_jobs;
    // The active job of the stage: its name, done of total in its unit, and when it started.
    let figures = match status.stage {
        Stage::Training => active
            .training
            .as_deref()
            .and_then(|n| find(&s.training, &ns, n))
            .and_then(|j| {
                let st = j.status.as_ref()?;
                Some((
                    j.name_any(),
                    st.step,
                    st.total_steps,
                    "steps",
                    st.start_time.as_ref(),
                ))
            }),
        Stage::Gauntlet => active
            .gauntlet
            .as_deref()
            .and_then(|n| find(&s.gauntlets, &ns, n))
            .and_then(|j| {
                let st = j.status.as_ref()?;
                Some((
                    j.name_any(),
                    st.games_done,
                    st.games_total,
                    "games",
                    st.start_time.as_ref(),
                ))
            }),
        Stage::Selfplay => active
            .selfplay
            .as_deref()
            .and_then(|n| find(&s.selfplay, &ns, n))
            .and_then(|j| {
                let st = j.status.as_ref()?;
                Some((
                    j.name_any(),
                    st.games_done,
                    st.games_total,
                    "games",
                    st.start_time.as_ref(),
                ))
            }),
        Stage::Done => None,
    };
    figures.map_or(Value::Null, |(job, done, total, unit, started)| {
        progress(done, total, unit, &job, started, now)
    })
}

/// One loop's line on the fleet page.
fn loop_summary(s: &Snapshot, l: &TrainingLoop, now: Timestamp) -> Value {
    let (ns, name) = key(l);
    let status = l.status.clone().unwrap_or_default();
    let degraded = condition(&status.conditions, "Degraded").filter(|c| c.status == "True");
    json!({
        "namespace": ns,
        "name": name,
        "board": l.spec.game.board,
        "players": l.spec.game.players,
        "phase": status.phase,
        "stage": status.stage,
        "generation": status.generation,
        "maxGenerations": l.spec.max_generations,
        "pipeline": l.spec.pipeline,
        "bestModel": status.best_model,
        "best": rating(&s.models, &ns, status.best_model.as_deref()),
        "share": status.share,
        "weight": l.spec.share.weight,
        "progress": loop_progress(s, l, now),
        "degraded": degraded.map(|c| &c.message),
    })
}

/// The fleet at a glance: every loop, the agents and GPUs, tasks by phase.
pub fn overview(s: &Snapshot, now: Timestamp) -> Value {
    let mut loops: Vec<&TrainingLoop> = s.loops.iter().collect();
    loops.sort_by_key(|l| key(*l));
    let mut phases: BTreeMap<String, u64> = BTreeMap::new();
    let mut gpus_busy = 0.0;
    for t in &s.tasks {
        let phase = t.status.as_ref().map(|st| st.phase).unwrap_or_default();
        *phases.entry(format!("{phase:?}")).or_default() += 1;
        if matches!(phase, TaskPhase::Running | TaskPhase::Fetching) {
            gpus_busy += task_gpus(t);
        }
    }
    let ready = s.agents.iter().filter(|a| agent_ready(a)).count();
    let gpus: u64 = s
        .agents
        .iter()
        .filter(|a| agent_ready(a))
        .map(|a| u64::from(a.status.as_ref().map_or(0, |st| st.capacity.gpu_count)))
        .sum();
    json!({
        "loops": loops.iter().map(|l| loop_summary(s, l, now)).collect::<Vec<_>>(),
        "agents": {"total": s.agents.len(), "ready": ready},
        "gpus": {"total": gpus, "busy": (gpus_busy * 100.0).round() / 100.0},
        "tasks": phases,
        "models": s.models.len(),
    })
}

/// The GPUs a task holds: whole devices, or its fraction of one.
fn task_gpus(t: &Task) -> f64 {
    if t.spec.gpus.is_empty() {
        return 0.0;
    }
    match t.spec.resources.gpu_fraction {
        Some(f) => f64::from(f.thousandths()) / 1000.0,
        None => f64::from(u32::try_from(t.spec.gpus.len()).unwrap_or(u32::MAX)),
    }
}

/// One loop: its summary, each generation's point for the Elo chart, the promotion decisions
/// and its history; `None` when there is no such loop.
pub fn training_loop(s: &Snapshot, ns: &str, name: &str, now: Timestamp) -> Option<Value> {
    let l = find(&s.loops, ns, name)?;
    let status = l.status.clone().unwrap_or_default();
    let mut best = l.spec.initial_model.clone();
    let mut points = Vec::new();
    for record in &status.history {
        if record.decision == Decision::Promote {
            best.clone_from(&record.candidate);
        }
        let candidate = rating(&s.models, ns, record.candidate.as_deref());
        points.push(json!({
            "generation": record.generation,
            "candidate": record.candidate,
            "decision": record.decision,
            "winRate": record.win_rate,
            "candidateRating": if candidate.is_null() { json!({"elo": record.elo}) } else { candidate },
            "best": best,
            "bestRating": rating(&s.models, ns, best.as_deref()),
        }));
    }
    let gauntlet = status
        .active_jobs
        .gauntlet
        .as_deref()
        .or_else(|| status.history.last().and_then(|r| r.jobs.gauntlet.as_deref()))
        .and_then(|g| find(&s.gauntlets, ns, g))
        .map(|g| json!({"name": g.name_any(), "status": g.status}));
    Some(json!({
        "summary": loop_summary(s, l, now),
        "initialModel": l.spec.initial_model,
        "points": points,
        "history": status.history,
        "conditions": status.conditions,
        "activeJobs": status.active_jobs,
        "continuous": status.continuous,
        "lastGauntlet": gauntlet,
        "rollbacks": status.rollbacks,
    }))
}

/// The model lineage of a namespace (every namespace when `ns` is `None`): a forest, each
/// model under its parent, roots first by name. A parent that is not a Model here (an initial
/// model from elsewhere) makes its children roots; a cycle in malformed objects is cut.
pub fn lineage(s: &Snapshot, ns: Option<&str>) -> Value {
    let models: Vec<&Model> = s
        .models
        .iter()
        .filter(|m| ns.is_none_or(|n| m.namespace().as_deref() == Some(n)))
        .collect();
    let names: BTreeSet<(String, String)> = models.iter().map(|m| key(*m)).collect();
    let mut children: BTreeMap<(String, String), Vec<&Model>> = BTreeMap::new();
    let mut roots = Vec::new();
    for m in &models {
        let (mns, _) = key(*m);
        match &m.spec.parent {
            Some(p) if names.contains(&(mns.clone(), p.clone())) && p != &m.name_any() => {
                children.entry((mns, p.clone())).or_default().push(m);
            }
            _ => roots.push(*m),
        }
    }
    let promoted: BTreeSet<(String, String)> = s
        .loops
        .iter()
        .flat_map(|l| {
            let ns = l.namespace().unwrap_or_default();
            l.status
                .iter()
                .flat_map(|st| &st.history)
                .filter(|r| r.decision == Decision::Promote)
                .filter_map(move |r| Some((ns.clone(), r.candidate.clone()?)))
        })
        .collect();
    let tree = Tree {
        children: &children,
        promoted: &promoted,
    };
    let mut seen = BTreeSet::new();
    let mut trees: Vec<Value> = roots.iter().map(|m| tree.node(m, &mut seen)).collect();
    // Models only reachable through a cycle are shown as roots, once.
    for m in &models {
        if !seen.contains(&key(*m)) {
            trees.push(tree.node(m, &mut seen));
        }
    }
    json!({"roots": trees})
}

/// The lineage's edges and which models a loop promoted.
struct Tree<'a> {
    children: &'a BTreeMap<(String, String), Vec<&'a Model>>,
    promoted: &'a BTreeSet<(String, String)>,
}

impl Tree<'_> {
    fn node(&self, m: &Model, seen: &mut BTreeSet<(String, String)>) -> Value {
        let k = key(m);
        seen.insert(k.clone());
        let status = m.status.clone().unwrap_or_default();
        let mut kids: Vec<&Model> = self.children.get(&k).cloned().unwrap_or_default();
        kids.sort_by_key(|c| (c.spec.generation, c.name_any()));
        let mut nodes = Vec::new();
        for c in kids {
            if !seen.contains(&key(c)) {
                nodes.push(self.node(c, seen));
            }
        }
        json!({
            "namespace": k.0,
            "name": k.1,
            "generation": m.spec.generation,
            "loop": m.spec.training_loop,
            "elo": status.elo,
            "low": status.elo_low,
            "high": status.elo_high,
            "best": status.promoted,
            "promoted": self.promoted.contains(&k),
            "children": nodes,
        })
    }
}

/// The matchup matrix of each rating pool (namespace, board, player count): every pair that played, with
/// the wins, losses and draws of the row's player against the column's.
pub fn matchups(s: &Snapshot) -> Value {
    let mut pools = Vec::new();
    for ((ns, board, players), games) in pairings(&s.gauntlets) {
        let mut cells: BTreeMap<(String, String), [u64; 3]> = BTreeMap::new();
        let mut names = BTreeSet::new();
        for p in games {
            let r = &p.record;
            for (a, b, w, l) in [(&p.a, &p.b, r.wins, r.losses), (&p.b, &p.a, r.losses, r.wins)] {
                let cell = cells.entry((a.clone(), b.clone())).or_default();
                cell[0] += w;
                cell[1] += l;
                cell[2] += r.draws;
            }
            names.insert(p.a);
            names.insert(p.b);
        }
        let results: Vec<Value> = cells
            .into_iter()
            .map(|((a, b), [w, l, d])| json!({"row": a, "column": b, "wins": w, "losses": l, "draws": d}))
            .collect();
        pools.push(
            json!({"namespace": ns, "board": board, "seats": players, "players": names, "results": results}),
        );
    }
    json!({"pools": pools})
}

/// Whether an agent's `Ready` condition is `True`.
pub fn agent_ready(a: &Agent) -> bool {
    a.status
        .as_ref()
        .and_then(|s| condition(&s.conditions, "Ready"))
        .is_some_and(|c| c.status == "True")
}

/// A task's line in lists.
fn task_line(t: &Task, now: Timestamp) -> Value {
    let status = t.status.clone().unwrap_or_default();
    json!({
        "namespace": t.namespace().unwrap_or_default(),
        "name": t.name_any(),
        "role": t.spec.role,
        "job": t.spec.job,
        "agent": t.spec.agent,
        "gpus": t.spec.gpus,
        "phase": status.phase,
        "progress": status.progress,
        "progressText": status.progress_text,
        "runningSeconds": status
            .start_time
            .as_ref()
            .map(|start| status.completion_time.as_ref().map_or(now, |end| end.0).duration_since(start.0).as_secs_f64().max(0.0).round()),
        "finished": status.completion_time.is_some(),
    })
}

/// Every agent: its conditions, GPUs (with utilization and memory where its REST API answered,
/// in `live`, by agent name) and the tasks running on it.
pub fn agents(s: &Snapshot, live: &BTreeMap<String, Value>, now: Timestamp) -> Value {
    let mut by_agent: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for t in &s.tasks {
        let phase = t.status.as_ref().map(|st| st.phase).unwrap_or_default();
        if let (Some(agent), true) = (
            t.spec.agent.as_deref(),
            matches!(
                phase,
                TaskPhase::Pending | TaskPhase::Fetching | TaskPhase::Running
            ),
        ) {
            by_agent.entry(agent).or_default().push(task_line(t, now));
        }
    }
    let mut list: Vec<&Agent> = s.agents.iter().collect();
    list.sort_by_key(|a| a.name_any());
    let items: Vec<Value> = list
        .into_iter()
        .map(|a| {
            let name = a.name_any();
            let status = a.status.clone().unwrap_or_default();
            let live = live.get(&name).cloned().unwrap_or(Value::Null);
            let gpus: Vec<Value> = status
                .capacity
                .gpus
                .iter()
                .map(|g| {
                    let sample = live["gpus"]
                        .as_array()
                        .and_then(|l| l.iter().find(|x| x["uuid"] == g.uuid.as_str()));
                    json!({
                        "index": g.index,
                        "uuid": g.uuid,
                        "product": g.product,
                        "memoryMib": g.memory_mib,
                        "health": g.health,
                        "healthMessage": g.health_message,
                        "utilizationPct": sample.map(|x| x["utilizationPct"].clone()),
                        "memoryUsedMib": sample.map(|x| x["memoryUsedMib"].clone()),
                    })
                })
                .collect();
            json!({
                "name": name,
                "ready": agent_ready(a),
                "zone": a.labels().get(ringrift_crds::identity::ZONE_LABEL),
                "unschedulable": a.spec.unschedulable,
                "capacity": {
                    "cpuMillis": status.capacity.cpu_millis,
                    "memoryMib": status.capacity.memory_mib,
                    "diskMib": status.capacity.disk_mib,
                },
                "simulated": status.capacity.simulated,
                "version": status.version,
                "conditions": status.conditions,
                "gpus": gpus,
                "live": live.get("error").map_or(Value::Null, |e| json!({"error": e})),
                "tasks": by_agent.remove(name.as_str()).unwrap_or_default(),
            })
        })
        .collect();
    json!({"items": items})
}

/// One task, whole, with its line.
pub fn task(s: &Snapshot, ns: &str, name: &str, now: Timestamp) -> Option<Value> {
    let t = find(&s.tasks, ns, name)?;
    Some(json!({"line": task_line(t, now), "spec": t.spec, "status": t.status}))
}

/// The tasks of a job (newest attempt last), for drilling down from a loop.
pub fn job_tasks(s: &Snapshot, ns: &str, job: &str, now: Timestamp) -> Value {
    let mut tasks: Vec<&Task> = s
        .tasks
        .iter()
        .filter(|t| t.namespace().as_deref() == Some(ns) && t.spec.job.name == job)
        .collect();
    tasks.sort_by_key(|t| (t.spec.work_unit.clone(), t.spec.attempt));
    json!({"items": tasks.into_iter().map(|t| task_line(t, now)).collect::<Vec<_>>()})
}

#[cfg(test)]
#[path = "views_tests.rs"]
mod tests;
