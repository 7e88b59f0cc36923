//! What `ringrift up` shows: the loop's generation and stage with a progress bar for the stage's
//! job, the best model and its Elo, and one line per finished generation. Pure: built from the
//! objects, so it is tested without a terminal.

use ringrift_crds::gauntlet::GauntletJob;
use ringrift_crds::model::Model;
use ringrift_crds::selfplay::SelfplayJob;
use ringrift_crds::training::TrainingJob;
use ringrift_crds::training_loop::{Stage, TrainingLoop};

/// The loop's objects, as read from the API.
#[derive(Debug, Default)]
pub struct View {
    /// The loop.
    pub training_loop: Option<TrainingLoop>,
    /// Its selfplay jobs.
    pub selfplay: Vec<SelfplayJob>,
    /// Its training jobs.
    pub training: Vec<TrainingJob>,
    /// Its gauntlets.
    pub gauntlet: Vec<GauntletJob>,
    /// The namespace's models.
    pub models: Vec<Model>,
}

/// A bar of `width` cells, `done` of `total` filled.
pub fn bar(done: u64, total: u64, width: usize) -> String {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_precision_loss,
        clippy::cast_sign_loss
    )] // a few cells, never negative
    let filled = if total == 0 {
        0
    } else {
        ((done.min(total) as f64 / total as f64) * width as f64).round() as usize
    };
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}

fn named<'a, K: kube::ResourceExt>(items: &'a [K], name: Option<&String>) -> Option<&'a K> {
    let name = name?;
    items.iter().find(|k| k.name_any() == *name)
}

fn elo_text(model: Option<&Model>) -> String {
    let Some(s) = model.and_then(|m| m.status.as_ref()) else {
        return "not rated yet".into();
    };
    match (s.elo, s.elo_low, s.elo_high) {
        (Some(e), Some(l), Some(h)) => format!("Elo {e:.0} [{l:.0}, {h:.0}] over {} games", s.games_rated),
        (Some(e), _, _) => format!("Elo {e:.0}"),
        _ => "not rated yet".into(),
    }
}

/// The lines to show.
pub fn render(view: &View) -> Vec<String> {
    let Some(lp) = &view.training_loop else {
        return vec!["waiting for the training loop to appear…".into()];
    };
    let name = kube::ResourceExt::name_any(lp);
    let status = lp.status.clone().unwrap_or_default();
    let max = lp
        .spec
        .max_generations
        .map_or_else(|| "∞".to_owned(), |m| m.to_string());
    let share = status.share.as_ref().map_or_else(String::new, |s| {
        format!(
            ", fleet share {} of {:.2} GPUs{}",
            s.used_gpus,
            s.entitled_gpus,
            if s.waiting > 0 {
                format!(" ({} units waiting)", s.waiting)
            } else {
                String::new()
            }
        )
    });
    let mut lines = vec![format!(
        "TrainingLoop {name}: {:?}, generation {}/{max}, stage {:?}{share}",
        status.phase, status.generation, status.stage
    )];
    let active = &status.active_jobs;
    let stage_line = match status.stage {
        Stage::Selfplay => named(&view.selfplay, active.selfplay.as_ref()).map(|j| {
            let s = j.status.clone().unwrap_or_default();
            format!(
                "  selfplay  {} {}/{} games  {:.1} games/s",
                bar(s.games_done, s.games_total.max(j.spec.settings.games), 30),
                s.games_done,
                s.games_total.max(j.spec.settings.games),
                s.games_per_second.unwrap_or(0.0)
            )
        }),
        Stage::Training => named(&view.training, active.training.as_ref()).map(|j| {
            let s = j.status.clone().unwrap_or_default();
            let total = s.total_steps.max(j.spec.settings.hyperparameters.steps);
            format!(
                "  training  {} {}/{} steps  loss {}",
                bar(s.step, total, 30),
                s.step,
                total,
                s.loss.map_or_else(|| "-".into(), |l| format!("{l:.3}"))
            )
        }),
        Stage::Gauntlet => named(&view.gauntlet, active.gauntlet.as_ref()).map(|j| {
            let s = j.status.clone().unwrap_or_default();
            let total = s.games_total.max(1);
            let per: Vec<String> = s
                .results
                .iter()
                .map(|r| format!("{} {}-{}-{}", r.name, r.wins, r.losses, r.draws))
                .collect();
            format!(
                "  gauntlet  {} {}/{} games  {}",
                bar(s.games_done, total, 30),
                s.games_done,
                total,
                per.join(", ")
            )
        }),
        Stage::Done => None,
    };
    if status.stage != Stage::Done {
        lines.push(stage_line.unwrap_or_else(|| "  starting the stage's job…".into()));
    }
    let best = status.best_model.as_ref();
    lines.push(match best {
        Some(b) => format!("  best model {b}: {}", elo_text(named(&view.models, Some(b)))),
        None => "  best model: none yet (generation 1 plays the untrained search)".into(),
    });
    for h in &status.history {
        lines.push(format!(
            "  generation {}: {} {:?}, score {} against the deciding opponent, {} games recorded{}",
            h.generation,
            h.candidate.clone().unwrap_or_default(),
            h.decision,
            h.win_rate.map_or_else(|| "-".into(), |w| format!("{w:.2}")),
            h.games,
            h.elo.map_or_else(String::new, |e| format!(", Elo {e:.0}")),
        ));
    }
    if let Some(c) = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded" && c.status == "True")
    {
        lines.push(format!("  DEGRADED {}: {}", c.reason, c.message));
    }
    lines
}

/// The final summary: every generation's gauntlet, opponent by opponent.
pub fn summary(view: &View) -> Vec<String> {
    let Some(lp) = &view.training_loop else {
        return Vec::new();
    };
    let status = lp.status.clone().unwrap_or_default();
    let mut lines = Vec::new();
    for h in &status.history {
        let Some(g) = named(&view.gauntlet, h.jobs.gauntlet.as_ref()) else {
            continue;
        };
        let results: Vec<String> = g
            .status
            .iter()
            .flat_map(|s| &s.results)
            .map(|r| {
                format!(
                    "{} {}-{}-{} ({})",
                    r.name,
                    r.wins,
                    r.losses,
                    r.draws,
                    r.win_rate.map_or_else(|| "-".into(), |w| format!("{w:.2}"))
                )
            })
            .collect();
        lines.push(format!(
            "  generation {} {} {:?}: {} (won-lost-drawn, score){}",
            h.generation,
            h.candidate.clone().unwrap_or_default(),
            h.decision,
            results.join(", "),
            h.reason.as_ref().map_or_else(String::new, |r| format!("; {r}"))
        ));
    }
    lines
}

/// What is on the terminal: the last lines shown, to show only a change.
#[derive(Debug, Default)]
pub struct Screen {
    /// A line per change (a log), not bars redrawn in place.
    plain: bool,
    /// The lines last shown (redrawing moves the cursor up over them).
    last: Vec<String>,
}

impl Screen {
    /// A screen that redraws in place, or (`plain`) prints only the lines that changed.
    pub fn new(plain: bool) -> Self {
        Self {
            plain,
            ..Self::default()
        }
    }

    /// The text that turns what is shown into `lines`: nothing when they are what is shown;
    /// plain, the new lines only (a log stays readable); else the cursor moved up over the
    /// last frame, which is cleared, and every line.
    pub fn frame(&mut self, lines: Vec<String>) -> Option<String> {
        if lines == self.last {
            return None;
        }
        let out = if self.plain {
            lines
                .iter()
                .filter(|l| !self.last.contains(l))
                .fold(String::new(), |out, l| out + l + "\n")
        } else {
            // Up over the last frame, cleared to the end of the screen.
            let up = if self.last.is_empty() {
                String::new()
            } else {
                format!("\x1b[{}A\x1b[J", self.last.len())
            };
            lines.iter().fold(up, |out, l| out + l + "\n")
        };
        self.last = lines;
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_terminal_is_redrawn_over_the_last_frame_only_when_it_changes() {
        let mut screen = Screen::new(false);
        assert_eq!(screen.frame(lines(&["a", "b"])).unwrap(), "a\nb\n");
        assert_eq!(screen.frame(lines(&["a", "b"])), None);
        assert_eq!(
            screen.frame(lines(&["a", "c", "d"])).unwrap(),
            "\x1b[2A\x1b[Ja\nc\nd\n"
        );
        assert_eq!(screen.frame(lines(&["e"])).unwrap(), "\x1b[3A\x1b[Je\n");
    }

    #[test]
    fn a_log_gets_only_the_lines_that_changed() {
        let mut screen = Screen::new(true);
        assert_eq!(screen.frame(lines(&["a", "b"])).unwrap(), "a\nb\n");
        assert_eq!(screen.frame(lines(&["a", "b"])), None);
        assert_eq!(screen.frame(lines(&["a", "c"])).unwrap(), "c\n");
    }

    #[test]
    fn bars_fill_in_proportion() {
        assert_eq!(bar(0, 10, 10), "[----------]");
        assert_eq!(bar(5, 10, 10), "[#####-----]");
        assert_eq!(bar(12, 10, 4), "[####]");
        assert_eq!(bar(3, 0, 4), "[----]");
    }

    #[test]
    fn a_loop_in_training_with_history() {
        let lp: TrainingLoop = serde_json::from_value(serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "TrainingLoop",
            "metadata": {"name": "c4", "namespace": "default"},
            "spec": {"game": {"board": "connect4"}, "maxGenerations": 3, "selfplay": {"games": 10},
                     "training": {"window": {"games": 10}, "hyperparameters": {"steps": 100}},
                     "gauntlet": {"gamesPerOpponent": 10, "promotion": {}}},
            "status": {"phase": "Running", "generation": 2, "stage": "Training", "bestModel": "c4-g001",
                       "activeJobs": {"training": "c4-g002-train"},
                       "history": [{"generation": 1, "candidate": "c4-g001", "decision": "Promote",
                                    "winRate": 0.97, "elo": 410.0, "games": 10}]}
        }))
        .unwrap();
        let training: TrainingJob = serde_json::from_value(serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": "c4-g002-train", "namespace": "default"},
            "spec": {"game": {"board": "connect4"}, "datasets": ["c4"], "window": {"games": 10},
                     "hyperparameters": {"steps": 100}, "output": {"model": "c4-g002"}},
            "status": {"step": 50, "totalSteps": 100, "loss": 1.5}
        }))
        .unwrap();
        let lines = render(&View {
            training_loop: Some(lp),
            training: vec![training],
            ..View::default()
        });
        assert_eq!(
            lines[0],
            "TrainingLoop c4: Running, generation 2/3, stage Training"
        );
        assert!(
            lines[1].contains("[###############---------------] 50/100 steps  loss 1.500"),
            "{lines:?}"
        );
        assert!(
            lines[2].contains("best model c4-g001: not rated yet"),
            "{lines:?}"
        );
        assert!(
            lines[3].contains("generation 1: c4-g001 Promote, score 0.97"),
            "{lines:?}"
        );
        assert!(lines[3].ends_with("Elo 410"), "{lines:?}");
    }

    #[test]
    fn the_first_line_shows_the_fleet_share() {
        let lp: TrainingLoop = serde_json::from_value(serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "TrainingLoop",
            "metadata": {"name": "c4", "namespace": "default"},
            "spec": {"game": {"board": "connect4"}, "selfplay": {"games": 10},
                     "training": {"window": {"games": 10}}, "gauntlet": {"promotion": {}}},
            "status": {"phase": "Running", "generation": 1, "stage": "Selfplay",
                       "share": {"entitledGPUs": 2.5, "entitledCPUMillis": 4000, "usedGPUs": 3,
                                 "usedCPUMillis": 3000, "waiting": 7}}
        }))
        .unwrap();
        let lines = render(&View {
            training_loop: Some(lp),
            ..View::default()
        });
        assert_eq!(
            lines[0],
            "TrainingLoop c4: Running, generation 1/∞, stage Selfplay, fleet share 3 of 2.50 GPUs (7 units waiting)"
        );
    }
}
