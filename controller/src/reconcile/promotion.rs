//! The promotion decision, without I/O: a gauntlet's gates (the `promotion.gates` of its spec,
//! or the one gate its `winRate`/`sprt` shorthand stands for), each judged on the candidate's
//! record against the gate's opponent, and the decision they make together: every gate passed
//! promotes, one failed gate rejects at once (the gauntlet stops early), else it waits.

use std::collections::BTreeMap;

use ringrift_crds::gauntlet::{
    Decision, EloGainPolicy, GateVerdict, MetricTest, PromotionPolicy, SprtPolicy, WinRatePolicy,
};

use crate::sprt::{self, Record};

/// What a gate tests.
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// A score threshold.
    WinRate(WinRatePolicy),
    /// A sequential probability ratio test.
    Sprt(SprtPolicy),
    /// A smallest Elo gain.
    EloGain(EloGainPolicy),
    /// A bound on a metric the candidate's training reported.
    Metric(MetricTest),
}

impl Test {
    fn kind(&self) -> &'static str {
        match self {
            Self::WinRate(_) => "winRate",
            Self::Sprt(_) => "sprt",
            Self::EloGain(_) => "eloGain",
            Self::Metric(_) => "metric",
        }
    }
}

/// One gate with its defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// Its name (default `<kind>-<opponent>`).
    pub name: String,
    /// The opponent whose games it reads.
    pub opponent: String,
    /// The test.
    pub test: Test,
}

/// The gates of `policy`: its `gates`, or the one its shorthand stands for; a gate without an
/// opponent reads `policy.opponent`, else `default_opponent`.
pub fn gates(policy: &PromotionPolicy, default_opponent: &str) -> Vec<Gate> {
    let fallback = policy.opponent.as_deref().unwrap_or(default_opponent);
    let gate = |name: Option<&String>, opponent: Option<&String>, test: Test| {
        if let Test::Metric(m) = &test {
            // Read before any game: no opponent.
            return Gate {
                name: name.cloned().unwrap_or_else(|| format!("metric-{}", m.name)),
                opponent: String::new(),
                test,
            };
        }
        let opponent = opponent.map_or(fallback, String::as_str).to_owned();
        Gate {
            name: name
                .cloned()
                .unwrap_or_else(|| format!("{}-{opponent}", test.kind())),
            opponent,
            test,
        }
    };
    if !policy.gates.is_empty() {
        return policy
            .gates
            .iter()
            .filter_map(|g| {
                let test = match (&g.win_rate, &g.sprt, &g.elo_gain, &g.metric) {
                    (Some(w), ..) => Test::WinRate(w.clone()),
                    (_, Some(s), ..) => Test::Sprt(s.clone()),
                    (_, _, Some(e), _) => Test::EloGain(e.clone()),
                    (.., Some(m)) => Test::Metric(m.clone()),
                    _ => return None,
                };
                Some(gate(g.name.as_ref(), g.opponent.as_ref(), test))
            })
            .collect();
    }
    match (&policy.sprt, &policy.win_rate) {
        (Some(s), _) => vec![gate(None, None, Test::Sprt(s.clone()))],
        (_, Some(w)) => vec![gate(None, None, Test::WinRate(w.clone()))],
        _ => Vec::new(),
    }
}

/// Why a policy's gates cannot be judged: none, a gate without a test, a name used twice, an
/// opponent that is not among `opponents`.
///
/// # Errors
/// The problem in words, naming the gate.
pub fn check(policy: &PromotionPolicy, gates: &[Gate], opponents: &[String]) -> Result<(), String> {
    if gates.is_empty() || gates.len() < policy.gates.len() {
        return Err(
            "spec.promotion needs winRate, sprt, or gates that each set one of winRate, sprt, eloGain or metric"
                .into(),
        );
    }
    for (i, g) in gates.iter().enumerate() {
        if gates[..i].iter().any(|h| h.name == g.name) {
            return Err(format!(
                "spec.promotion.gates: the name {:?} is used twice (set name on one of them)",
                g.name
            ));
        }
        if !matches!(g.test, Test::Metric(_)) && !opponents.contains(&g.opponent) {
            return Err(format!(
                "spec.promotion.gates: gate {:?} reads opponent {:?}, which is not one of the opponents ({})",
                g.name,
                g.opponent,
                opponents.join(", ")
            ));
        }
    }
    Ok(())
}

/// One test's verdict on `record`, with the reason in words; `total` is the most games that
/// will be played against the gate's opponent; `metrics` what the candidate's training
/// reported.
pub fn judge(
    test: &Test,
    record: &Record,
    total: u64,
    metrics: &BTreeMap<String, f64>,
) -> (GateVerdict, String) {
    let games = record.games();
    match test {
        Test::Metric(m) => metric(m, metrics),
        Test::Sprt(p) => {
            let t = sprt::sprt(record, p.elo0, p.elo1, p.alpha, p.beta);
            if t.llr >= t.upper {
                (
                    GateVerdict::Passed,
                    format!("SPRT accepted H1: LLR {:.2} >= {:.2}", t.llr, t.upper),
                )
            } else if t.llr <= t.lower {
                (
                    GateVerdict::Failed,
                    format!("SPRT accepted H0: LLR {:.2} <= {:.2}", t.llr, t.lower),
                )
            } else if games >= total {
                (
                    GateVerdict::Failed,
                    format!("SPRT undecided after all {games} games: LLR {:.2}", t.llr),
                )
            } else {
                (
                    GateVerdict::Pending,
                    format!("SPRT LLR {:.2} in ({:.2}, {:.2})", t.llr, t.lower, t.upper),
                )
            }
        }
        Test::WinRate(w) => {
            let score = record.score().unwrap_or(0.0);
            let needed = u64::from(w.min_games).min(total);
            if games < needed {
                (GateVerdict::Pending, format!("{games} of {needed} games played"))
            } else if score >= w.min_win_rate {
                (
                    GateVerdict::Passed,
                    format!("score {score:.3} >= {:.3} over {games} games", w.min_win_rate),
                )
            } else {
                (
                    GateVerdict::Failed,
                    format!("score {score:.3} < {:.3} over {games} games", w.min_win_rate),
                )
            }
        }
        Test::EloGain(e) => elo_gain(e, record, total),
    }
}

/// A metric's bound: passed or failed at once (a metric never reported fails).
pub fn metric(m: &MetricTest, metrics: &BTreeMap<String, f64>) -> (GateVerdict, String) {
    let Some(value) = metrics.get(&m.name).copied() else {
        return (GateVerdict::Failed, format!("{} was not reported", m.name));
    };
    if let Some(min) = m.min.filter(|min| value.is_nan() || value < *min) {
        return (GateVerdict::Failed, format!("{} {value:.4} < {min}", m.name));
    }
    if let Some(max) = m.max.filter(|max| value.is_nan() || value > *max) {
        return (GateVerdict::Failed, format!("{} {value:.4} > {max}", m.name));
    }
    let bounds = match (m.min, m.max) {
        (Some(lo), Some(hi)) => format!("within [{lo}, {hi}]"),
        (Some(lo), None) => format!(">= {lo}"),
        (None, Some(hi)) => format!("<= {hi}"),
        (None, None) => "unbounded".into(),
    };
    (GateVerdict::Passed, format!("{} {value:.4} {bounds}", m.name))
}

fn elo_gain(e: &EloGainPolicy, record: &Record, total: u64) -> (GateVerdict, String) {
    let games = record.games();
    let Some(est) = sprt::elo(record) else {
        return (GateVerdict::Pending, "no game played yet".into());
    };
    let shown = |v: f64| {
        if v.is_finite() {
            format!("{v:.0}")
        } else if v > 0.0 {
            "+inf".into()
        } else {
            "-inf".into()
        }
    };
    let interval = format!(
        "Elo {} [{}, {}] over {games} games",
        shown(est.diff),
        shown(est.low),
        shown(est.high)
    );
    let needed = u64::from(e.min_games).min(total);
    if games >= needed && est.low >= e.min_elo {
        return (
            GateVerdict::Passed,
            format!("{interval}: all at or above {:.0}", e.min_elo),
        );
    }
    if games >= needed && est.high < e.min_elo {
        return (
            GateVerdict::Failed,
            format!("{interval}: all below {:.0}", e.min_elo),
        );
    }
    if games >= total {
        return if est.diff >= e.min_elo {
            (
                GateVerdict::Passed,
                format!("{interval}: estimate at or above {:.0}", e.min_elo),
            )
        } else {
            (
                GateVerdict::Failed,
                format!("{interval}: estimate below {:.0}", e.min_elo),
            )
        };
    }
    (
        GateVerdict::Pending,
        format!("{interval}; needs {:.0}", e.min_elo),
    )
}

/// The first of a loop's training gates that the selfplay's `metrics` fail: its name (given,
/// else `metric-<name>`) and why.
pub fn failed_training_gate(
    gates: &[ringrift_crds::training_loop::TrainingGate],
    metrics: &BTreeMap<String, f64>,
) -> Option<(String, String)> {
    gates.iter().find_map(|g| {
        let (verdict, reason) = metric(&g.metric, metrics);
        (verdict == GateVerdict::Failed).then(|| {
            let name = g
                .name
                .clone()
                .unwrap_or_else(|| format!("metric-{}", g.metric.name));
            (name, reason)
        })
    })
}

/// The decision the gates' verdicts make, with the reason: one gate's own reason when it is the
/// only gate; else which gate failed, or that all passed, or which are still open.
pub fn decide(verdicts: &[(Gate, GateVerdict, String)]) -> (Decision, String) {
    if verdicts.is_empty() {
        return (Decision::Pending, "no promotion gate".into());
    }
    if let [(_, verdict, reason)] = verdicts {
        let decision = match verdict {
            GateVerdict::Passed => Decision::Promote,
            GateVerdict::Failed => Decision::Reject,
            GateVerdict::Pending => Decision::Pending,
        };
        return (decision, reason.clone());
    }
    if let Some((gate, _, reason)) = verdicts.iter().find(|(_, v, _)| *v == GateVerdict::Failed) {
        return (Decision::Reject, format!("gate {} failed: {reason}", gate.name));
    }
    let open: Vec<&str> = verdicts
        .iter()
        .filter(|(_, v, _)| *v == GateVerdict::Pending)
        .map(|(g, _, _)| g.name.as_str())
        .collect();
    if open.is_empty() {
        let names: Vec<&str> = verdicts.iter().map(|(g, _, _)| g.name.as_str()).collect();
        return (
            Decision::Promote,
            format!("all {} gates passed ({})", verdicts.len(), names.join(", ")),
        );
    }
    (Decision::Pending, format!("waiting for {}", open.join(", ")))
}

#[cfg(test)]
#[path = "promotion_tests.rs"]
mod tests;
