//! Durability rules the controller and the agents share, so they never disagree:
//! - which artifacts the fleet still needs ([`Needed`]): an agent's retention never drops
//!   them, and the controller makes copies again when one of their holders is lost;
//! - in which order agents take one more copy of an artifact ([`zone_order`]): first those in
//!   a zone that holds no copy yet.

use std::collections::{BTreeMap, HashSet};

use crate::common::JobPhase;
use crate::model::Model;
use crate::selfplay::SelfplayJob;
use crate::task::Task;
use crate::training::{TrainingJob, window_parts};
use crate::training_loop::TrainingLoop;

/// The games one selfplay job recorded into a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Namespace of the job.
    pub namespace: String,
    /// The dataset it writes.
    pub dataset: String,
    /// When it finished (the Unix epoch when its job has no completion time, as the controller
    /// counts it); `None` while it runs.
    pub finished: Option<jiff::Timestamp>,
    /// Games in it.
    pub games: u64,
    /// Its game files.
    pub digests: Vec<String>,
}

/// A reader of datasets: a `TrainingLoop`'s training, or a `TrainingJob` not finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Namespace of the reader.
    pub namespace: String,
    /// The datasets it reads.
    pub datasets: Vec<String>,
    /// The newest this many games; `None` when the window is not counted in games (all kept).
    pub games: Option<u64>,
}

/// The game files inside some window: for each reader, the newest finished parts of its
/// datasets until they hold its window (as the controller picks a training job's inputs), and
/// every part still being written (it will be the newest).
pub fn in_windows(parts: &[Part], windows: &[Window]) -> HashSet<String> {
    let mut keep: HashSet<String> = parts
        .iter()
        .filter(|p| p.finished.is_none())
        .flat_map(|p| p.digests.iter().cloned())
        .collect();
    for w in windows {
        let read: Vec<&Part> = parts
            .iter()
            .filter(|p| p.finished.is_some() && p.namespace == w.namespace && w.datasets.contains(&p.dataset))
            .collect();
        for p in window_parts(w.games, read, |p| p.finished, |p| p.games) {
            keep.extend(p.digests.iter().cloned());
        }
    }
    keep
}

/// The artifacts the fleet still needs, by digest, and why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needed {
    /// Inputs of tasks not finished (on any agent: they may pull from any holder).
    pub inputs: HashSet<String>,
    /// Promoted models (the best of a loop, or once the best).
    pub promoted: HashSet<String>,
    /// Games inside some training window (the newest games of a dataset a `TrainingLoop` or an
    /// unfinished `TrainingJob` reads), and games of selfplay still running.
    pub in_window: HashSet<String>,
    /// Weights of every `Model` that exists.
    pub models: HashSet<String>,
    /// Checkpoints the attempts of unfinished `TrainingJob`s announced (a next attempt resumes
    /// from the newest).
    pub checkpoints: HashSet<String>,
}

impl Needed {
    /// Whether an artifact of this digest is needed; `games` says whether it holds games
    /// (windows hold games; models hold weights and checkpoints).
    pub fn keeps(&self, digest: &str, games: bool) -> bool {
        self.inputs.contains(digest)
            || self.promoted.contains(digest)
            || if games {
                self.in_window.contains(digest)
            } else {
                self.models.contains(digest) || self.checkpoints.contains(digest)
            }
    }

    /// What the API's objects say is needed: the inputs of unfinished `Task`s, every `Model`'s
    /// weights (promoted or not), the games in the window of every `TrainingLoop` and every
    /// unfinished `TrainingJob`, the games of selfplay still running, and the checkpoints of
    /// unfinished `TrainingJob`s' attempts. A failed selfplay job's games are in no dataset a
    /// training reads.
    pub fn from_objects(
        tasks: &[impl std::borrow::Borrow<Task>],
        models: &[Model],
        selfplay: &[SelfplayJob],
        loops: &[TrainingLoop],
        training: &[TrainingJob],
    ) -> Self {
        let mut needed = Self::default();
        for t in tasks.iter().map(std::borrow::Borrow::borrow) {
            if !t.status.as_ref().is_some_and(|s| s.phase.is_finished()) {
                needed
                    .inputs
                    .extend(t.spec.inputs.iter().map(|a| a.digest.clone()));
            }
        }
        for m in models {
            if m.status.as_ref().is_some_and(|s| s.promoted) {
                needed.promoted.insert(m.spec.digest.clone());
            }
            needed.models.insert(m.spec.digest.clone());
        }
        let namespace = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            m.namespace.clone().unwrap_or_default()
        };
        let parts: Vec<Part> = selfplay
            .iter()
            .filter_map(|j| {
                let s = j.status.as_ref()?;
                if s.phase == JobPhase::Failed {
                    return None;
                }
                let finished = (s.phase == JobPhase::Succeeded).then(|| {
                    s.completion_time
                        .as_ref()
                        .map_or(jiff::Timestamp::UNIX_EPOCH, |t| t.0)
                });
                Some(Part {
                    namespace: namespace(&j.metadata),
                    dataset: j.spec.output.dataset.clone(),
                    finished,
                    games: s.games_done,
                    digests: s.outputs.iter().map(|a| a.digest.clone()).collect(),
                })
            })
            .collect();
        let mut windows: Vec<Window> = loops
            .iter()
            .map(|l| Window {
                namespace: namespace(&l.metadata),
                datasets: vec![l.metadata.name.clone().unwrap_or_default()],
                games: l.spec.training.settings.window.games,
            })
            .collect();
        let unfinished: HashSet<(String, String)> = training
            .iter()
            .filter(|t| !t.status.as_ref().is_some_and(|s| s.phase.is_finished()))
            .map(|t| {
                (
                    namespace(&t.metadata),
                    t.metadata.name.clone().unwrap_or_default(),
                )
            })
            .collect();
        for t in tasks.iter().map(std::borrow::Borrow::borrow) {
            let job = (namespace(&t.metadata), t.spec.job.name.clone());
            if t.spec.job.kind == crate::task::JobKind::TrainingJob
                && unfinished.contains(&job)
                && let Some(c) = t.status.as_ref().and_then(|s| s.checkpoint.as_ref())
            {
                needed.checkpoints.insert(c.digest.clone());
            }
        }
        for t in training {
            if !t.status.as_ref().is_some_and(|s| s.phase.is_finished()) {
                windows.push(Window {
                    namespace: namespace(&t.metadata),
                    datasets: t.spec.datasets.clone(),
                    games: t.spec.settings.window.games,
                });
            }
        }
        needed.in_window = in_windows(&parts, &windows);
        needed
    }
}

/// The candidates to take one more copy of an artifact, best first: those that do not hold it
/// yet (`holders`), in a zone no holder is in first, then those with no zone, then those in a
/// zone that already has a copy; within each, starting at `offset` (so successive artifacts
/// spread over the candidates). `zones` maps agent names to their `ringrift.ai/zone`.
pub fn zone_order<'a, T>(
    candidates: &'a [T],
    name: impl Fn(&T) -> &str,
    holders: &[String],
    offset: usize,
    zones: &BTreeMap<String, String>,
) -> Vec<&'a T> {
    let fresh: Vec<&T> = candidates
        .iter()
        .filter(|c| !holders.iter().any(|h| h == name(c)))
        .collect();
    if fresh.is_empty() {
        return fresh;
    }
    let start = offset % fresh.len();
    let mut order: Vec<&T> = fresh[start..].iter().chain(&fresh[..start]).copied().collect();
    let covered: Vec<&String> = holders.iter().filter_map(|h| zones.get(h)).collect();
    order.sort_by_key(|c| match zones.get(name(c)) {
        Some(z) if !covered.contains(&z) => 0,
        None => 1,
        Some(_) => 2,
    });
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[&str]) -> HashSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn part(ns: &str, dataset: &str, finished: Option<&str>, games: u64, digest: &str) -> Part {
        Part {
            namespace: ns.into(),
            dataset: dataset.into(),
            finished: finished.map(|f| f.parse().unwrap()),
            games,
            digests: vec![digest.into()],
        }
    }

    #[test]
    fn windows_hold_the_newest_games_of_the_datasets_they_read() {
        let parts = vec![
            part("ns", "c4", Some("2026-01-01T00:00:00Z"), 100, "oldest"),
            part("ns", "c4", Some("2026-01-03T00:00:00Z"), 100, "newer"),
            part("ns", "c4", Some("2026-01-02T00:00:00Z"), 100, "older"),
            part("ns", "c4", None, 0, "running"),
            part("ns", "other", Some("2026-01-05T00:00:00Z"), 100, "unread"),
            part(
                "elsewhere",
                "c4",
                Some("2026-01-05T00:00:00Z"),
                100,
                "other-namespace",
            ),
        ];
        let window = |games| Window {
            namespace: "ns".into(),
            datasets: vec!["c4".into()],
            games,
        };
        // 150 games: the newest part (100) is not enough, the next one completes the window.
        assert_eq!(
            in_windows(&parts, &[window(Some(150))]),
            set(&["running", "newer", "older"])
        );
        assert_eq!(
            in_windows(&parts, &[window(Some(100))]),
            set(&["running", "newer"])
        );
        assert_eq!(
            in_windows(&parts, &[window(None)]),
            set(&["running", "newer", "older", "oldest"]),
            "a window not counted in games keeps the dataset"
        );
        // No reader: only what is being written stays.
        assert_eq!(in_windows(&parts, &[]), set(&["running"]));
        // Two readers: the union.
        let other = Window {
            namespace: "ns".into(),
            datasets: vec!["other".into()],
            games: Some(1),
        };
        assert_eq!(
            in_windows(&parts, &[window(Some(1)), other]),
            set(&["running", "newer", "unread"])
        );
    }

    #[test]
    fn parts_are_ordered_by_time_as_the_controller_orders_them() {
        // As text, "…00.5Z" sorts before "…00Z"; in time it is later, and it is what the
        // controller's training reads.
        let parts = vec![
            part("ns", "c4", Some("2026-01-01T00:00:00Z"), 100, "earlier"),
            part("ns", "c4", Some("2026-01-01T00:00:00.5Z"), 100, "later"),
        ];
        let window = Window {
            namespace: "ns".into(),
            datasets: vec!["c4".into()],
            games: Some(100),
        };
        assert_eq!(in_windows(&parts, &[window]), set(&["later"]));
    }

    #[test]
    fn windows_hold_games_and_models_hold_weights() {
        let needed = Needed {
            inputs: set(&["input"]),
            promoted: set(&["best"]),
            in_window: set(&["window"]),
            models: set(&["weights"]),
            checkpoints: set(&["checkpoint"]),
        };
        for games in [true, false] {
            assert!(needed.keeps("input", games));
            assert!(needed.keeps("best", games));
            assert!(!needed.keeps("stale", games));
        }
        assert!(needed.keeps("checkpoint", false) && !needed.keeps("checkpoint", true));
        assert!(needed.keeps("window", true));
        assert!(!needed.keeps("window", false), "windows hold games only");
        assert!(needed.keeps("weights", false));
        assert!(!needed.keeps("weights", true), "models hold weights only");
    }

    fn object<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_objects_say_what_is_needed() {
        let game = serde_json::json!({"board": "square8", "players": 2});
        let digest = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let output =
            |c: char| serde_json::json!({"name": "g", "kind": "games", "digest": digest(c), "sizeBytes": 1});
        let selfplay = |name: &str, phase: &str, c: char, at: &str| -> SelfplayJob {
            object(serde_json::json!({
                "apiVersion": "ringrift.ai/v1alpha1", "kind": "SelfplayJob",
                "metadata": {"name": name, "namespace": "ns"},
                "spec": {"game": game, "games": 10, "output": {"dataset": "loop"}},
                "status": {"phase": phase, "gamesDone": 10, "completionTime": at, "outputs": [output(c)]}
            }))
        };
        let jobs = vec![
            selfplay("old", "Succeeded", 'a', "2026-01-01T00:00:00Z"),
            selfplay("new", "Succeeded", 'b', "2026-01-02T00:00:00Z"),
            selfplay("broken", "Failed", 'c', "2026-01-03T00:00:00Z"),
        ];
        let lp: TrainingLoop = object(serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "TrainingLoop",
            "metadata": {"name": "loop", "namespace": "ns"},
            "spec": {"game": game, "selfplay": {"games": 10}, "training": {"window": {"games": 10}}, "gauntlet": {"promotion": {}}}
        }));
        let model = |name: &str, c: char, promoted: bool| -> Model {
            object(serde_json::json!({
                "apiVersion": "ringrift.ai/v1alpha1", "kind": "Model",
                "metadata": {"name": name, "namespace": "ns"},
                "spec": {"game": game, "digest": digest(c), "sizeBytes": 1, "generation": 1},
                "status": {"promoted": promoted}
            }))
        };
        let task = |phase: &str, c: char| -> Task {
            object(serde_json::json!({
                "apiVersion": "ringrift.ai/v1alpha1", "kind": "Task",
                "metadata": {"name": format!("t-{c}"), "namespace": "ns"},
                "spec": {"role": "training", "job": {"kind": "TrainingJob", "name": "t"},
                         "workUnit": "train", "attempt": 0, "inputs": [output(c)]},
                "status": {"phase": phase}
            }))
        };
        let needed = Needed::from_objects(
            &[task("Running", 'd'), task("Succeeded", 'e')],
            &[model("m1", 'f', true), model("m2", '0', false)],
            &jobs,
            &[lp],
            &[],
        );
        assert_eq!(
            needed.inputs,
            set(&[&digest('d')]),
            "a finished task needs nothing"
        );
        assert_eq!(needed.promoted, set(&[&digest('f')]));
        assert_eq!(needed.models, set(&[&digest('f'), &digest('0')]));
        assert_eq!(
            needed.in_window,
            set(&[&digest('b')]),
            "the loop's window of 10 games holds the newest part; a failed job's games are in none"
        );
    }

    #[test]
    fn checkpoints_are_needed_while_their_training_job_is_unfinished() {
        let digest = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let task = |job: &str, phase: &str, c: char| -> Task {
            object(serde_json::json!({
                "apiVersion": "ringrift.ai/v1alpha1", "kind": "Task",
                "metadata": {"name": format!("{job}-{c}"), "namespace": "ns"},
                "spec": {"role": "training", "job": {"kind": "TrainingJob", "name": job},
                         "workUnit": "train", "attempt": 0},
                "status": {"phase": phase, "checkpoint": {"name": "c", "kind": "checkpoint",
                           "digest": digest(c), "sizeBytes": 1}}
            }))
        };
        let training = |name: &str, phase: &str| -> TrainingJob {
            object(serde_json::json!({
                "apiVersion": "ringrift.ai/v1alpha1", "kind": "TrainingJob",
                "metadata": {"name": name, "namespace": "ns"},
                "spec": {"game": {"board": "square8"}, "datasets": ["d"], "window": {"games": 5},
                         "output": {"model": "m"}},
                "status": {"phase": phase}
            }))
        };
        let needed = Needed::from_objects(
            &[task("running", "Failed", 'a'), task("done", "Failed", 'b')],
            &[],
            &[],
            &[],
            &[training("running", "Running"), training("done", "Succeeded")],
        );
        assert_eq!(
            needed.checkpoints,
            set(&[&digest('a')]),
            "a failed attempt's, while its job runs"
        );
        assert!(needed.keeps(&digest('a'), false) && !needed.keeps(&digest('b'), false));
    }

    #[test]
    fn copies_go_first_to_zones_without_one() {
        let names: Vec<String> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let zones: BTreeMap<String, String> = [("a", "z1"), ("b", "z1"), ("c", "z2"), ("d", "z1")]
            .iter()
            .map(|(n, z)| ((*n).to_owned(), (*z).to_owned()))
            .collect();
        let order = |holders: &[&str], offset| -> Vec<String> {
            let holders: Vec<String> = holders.iter().map(|s| (*s).to_owned()).collect();
            zone_order(&names, String::as_str, &holders, offset, &zones)
                .into_iter()
                .cloned()
                .collect()
        };
        // A holds a copy in z1: z2 first, then the agent without a zone, then z1.
        assert_eq!(order(&["a"], 0), ["c", "e", "b", "d"]);
        // The offset turns the order within each class.
        assert_eq!(order(&["a"], 1), ["c", "e", "d", "b"]);
        assert!(order(&["a", "b", "c", "d", "e"], 0).is_empty());
    }
}
