use ringrift_crds::gauntlet::PromotionGate;

use super::*;

fn none() -> BTreeMap<String, f64> {
    BTreeMap::new()
}

fn rec(wins: u64, losses: u64, draws: u64) -> Record {
    Record { wins, losses, draws }
}

fn sprt_test() -> Test {
    Test::Sprt(SprtPolicy {
        elo0: 0.0,
        elo1: 10.0,
        alpha: 0.05,
        beta: 0.05,
    })
}

fn win_rate(min_win_rate: f64, min_games: u32) -> Test {
    Test::WinRate(WinRatePolicy {
        min_win_rate,
        min_games,
    })
}

fn policy(gates: Vec<PromotionGate>) -> PromotionPolicy {
    PromotionPolicy {
        opponent: None,
        win_rate: None,
        sprt: None,
        gates,
    }
}

fn gate(name: Option<&str>, opponent: Option<&str>, win: Option<f64>, elo: Option<f64>) -> PromotionGate {
    PromotionGate {
        name: name.map(str::to_owned),
        opponent: opponent.map(str::to_owned),
        win_rate: win.map(|min_win_rate| WinRatePolicy {
            min_win_rate,
            min_games: 10,
        }),
        sprt: None,
        elo_gain: elo.map(|min_elo| EloGainPolicy {
            min_elo,
            min_games: 10,
        }),
        metric: None,
    }
}

#[test]
fn sprt_decides_early_for_a_clearly_stronger_or_weaker_candidate() {
    let t = sprt_test();
    // 300-200 (about +70 Elo) gives LLR 2.78: just short of the 2.94 bound for 0 vs 10 Elo.
    assert_eq!(
        judge(&t, &rec(300, 200, 0), 10_000, &none()).0,
        GateVerdict::Pending
    );
    assert_eq!(
        judge(&t, &rec(400, 200, 0), 10_000, &none()).0,
        GateVerdict::Passed
    );
    assert_eq!(
        judge(&t, &rec(200, 400, 0), 10_000, &none()).0,
        GateVerdict::Failed
    );
    assert_eq!(judge(&t, &rec(11, 9, 0), 10_000, &none()).0, GateVerdict::Pending);
    assert_eq!(
        judge(&t, &rec(11, 9, 0), 20, &none()).0,
        GateVerdict::Failed,
        "out of games, undecided"
    );
}

#[test]
fn win_rate_waits_for_min_games() {
    let t = win_rate(0.55, 100);
    assert_eq!(judge(&t, &rec(50, 10, 0), 100, &none()).0, GateVerdict::Pending);
    assert_eq!(judge(&t, &rec(56, 44, 0), 100, &none()).0, GateVerdict::Passed);
    assert_eq!(
        judge(&t, &rec(54, 44, 2), 100, &none()).0,
        GateVerdict::Passed,
        "two draws are one point: 0.55"
    );
    assert_eq!(
        judge(&t, &rec(54, 45, 1), 100, &none()).0,
        GateVerdict::Failed,
        "0.545"
    );
    assert_eq!(
        judge(&t, &rec(6, 4, 0), 10, &none()).0,
        GateVerdict::Passed,
        "min games capped by the games there are"
    );
}

#[test]
fn elo_gain_decides_early_only_when_the_interval_is_clear_and_then_by_the_estimate() {
    let t = Test::EloGain(EloGainPolicy {
        min_elo: 50.0,
        min_games: 100,
    });
    // 600-400: Elo ~70 [48, 92]: the interval straddles 50.
    let (v, why) = judge(&t, &rec(600, 400, 0), 10_000, &none());
    assert_eq!(v, GateVerdict::Pending, "{why}");
    // 700-300: Elo ~147, interval well above 50.
    let (v, why) = judge(&t, &rec(700, 300, 0), 10_000, &none());
    assert_eq!(v, GateVerdict::Passed, "{why}");
    assert!(why.contains("all at or above 50"), "{why}");
    // Even: ~0 [-20, 20]: all below 50.
    assert_eq!(
        judge(&t, &rec(500, 500, 0), 10_000, &none()).0,
        GateVerdict::Failed
    );
    // Clear, but before min games: waits.
    assert_eq!(judge(&t, &rec(30, 0, 0), 10_000, &none()).0, GateVerdict::Pending);
    // All games played: the estimate decides.
    assert_eq!(judge(&t, &rec(600, 400, 0), 1000, &none()).0, GateVerdict::Passed);
    assert_eq!(
        judge(&t, &rec(560, 440, 0), 1000, &none()).0,
        GateVerdict::Failed,
        "~42 Elo"
    );
    assert_eq!(judge(&t, &rec(0, 0, 0), 1000, &none()).0, GateVerdict::Pending);
    // A perfect record has an infinite estimate, shown as such.
    let (v, why) = judge(&t, &rec(200, 0, 0), 200, &none());
    assert_eq!(v, GateVerdict::Passed, "{why}");
    assert!(why.contains("+inf"), "{why}");
}

#[test]
fn the_shorthand_is_one_gate_and_gates_get_their_defaults() {
    let short = PromotionPolicy {
        opponent: Some("best".into()),
        win_rate: Some(WinRatePolicy {
            min_win_rate: 0.55,
            min_games: 100,
        }),
        sprt: None,
        gates: Vec::new(),
    };
    let g = gates(&short, "random");
    assert_eq!(g.len(), 1);
    assert_eq!(
        (g[0].name.as_str(), g[0].opponent.as_str()),
        ("winRate-best", "best")
    );
    let p = policy(vec![
        gate(Some("strong"), Some("random"), Some(0.9), None),
        gate(None, Some("heuristic"), Some(0.6), None),
        gate(None, None, None, Some(0.0)),
    ]);
    let g = gates(&p, "best");
    let names: Vec<(&str, &str)> = g.iter().map(|g| (g.name.as_str(), g.opponent.as_str())).collect();
    assert_eq!(
        names,
        [
            ("strong", "random"),
            ("winRate-heuristic", "heuristic"),
            ("eloGain-best", "best")
        ]
    );
    let opponents: Vec<String> = ["best", "random", "heuristic"].map(String::from).to_vec();
    assert_eq!(check(&p, &g, &opponents), Ok(()));
    let err = check(&p, &g, &opponents[1..]).unwrap_err();
    assert!(err.contains("eloGain-best") && err.contains("\"best\""), "{err}");
    let twice = policy(vec![
        gate(None, Some("random"), Some(0.9), None),
        gate(None, Some("random"), Some(0.8), None),
    ]);
    let err = check(&twice, &gates(&twice, "random"), &opponents).unwrap_err();
    assert!(err.contains("winRate-random") && err.contains("twice"), "{err}");
    let empty = policy(vec![gate(Some("nothing"), None, None, None)]);
    assert!(
        check(&empty, &gates(&empty, "random"), &opponents).is_err(),
        "a gate without a test"
    );
    assert!(check(&policy(Vec::new()), &[], &opponents).is_err());
}

#[test]
fn every_gate_must_pass_and_one_failure_rejects_at_once() {
    let g = |name: &str| Gate {
        name: name.into(),
        opponent: "o".into(),
        test: win_rate(0.5, 1),
    };
    let v = |name: &str, verdict, reason: &str| (g(name), verdict, reason.to_owned());
    let (d, why) = decide(&[
        v("a", GateVerdict::Passed, "fine"),
        v("b", GateVerdict::Pending, "2 of 10"),
        v("c", GateVerdict::Failed, "score 0.1 < 0.6"),
    ]);
    assert_eq!(d, Decision::Reject, "decided before b is");
    assert_eq!(why, "gate c failed: score 0.1 < 0.6");
    let (d, why) = decide(&[
        v("a", GateVerdict::Passed, "fine"),
        v("b", GateVerdict::Pending, "2 of 10"),
    ]);
    assert_eq!((d, why.as_str()), (Decision::Pending, "waiting for b"));
    let (d, why) = decide(&[v("a", GateVerdict::Passed, "x"), v("b", GateVerdict::Passed, "y")]);
    assert_eq!(
        (d, why.as_str()),
        (Decision::Promote, "all 2 gates passed (a, b)")
    );
    // One gate: its own reason, as the shorthand always said.
    let (d, why) = decide(&[v("a", GateVerdict::Passed, "score 0.6 >= 0.55 over 100 games")]);
    assert_eq!(
        (d, why.as_str()),
        (Decision::Promote, "score 0.6 >= 0.55 over 100 games")
    );
    assert_eq!(decide(&[]).0, Decision::Pending);
}

#[test]
fn a_metric_gate_is_decided_at_once_from_what_training_reported() {
    let t = |min: Option<f64>, max: Option<f64>| {
        Test::Metric(MetricTest {
            name: "holdout_loss".into(),
            min,
            max,
        })
    };
    let reported = BTreeMap::from([("holdout_loss".to_owned(), 2.4)]);
    let (v, why) = judge(&t(None, Some(2.5)), &rec(0, 0, 0), 100, &reported);
    assert_eq!(
        (v, why.as_str()),
        (GateVerdict::Passed, "holdout_loss 2.4000 <= 2.5")
    );
    let (v, why) = judge(&t(None, Some(2.0)), &rec(0, 0, 0), 100, &reported);
    assert_eq!(
        (v, why.as_str()),
        (GateVerdict::Failed, "holdout_loss 2.4000 > 2")
    );
    assert_eq!(
        judge(&t(Some(2.5), None), &rec(0, 0, 0), 100, &reported).0,
        GateVerdict::Failed
    );
    assert_eq!(
        judge(&t(Some(1.0), Some(3.0)), &rec(0, 0, 0), 100, &reported).0,
        GateVerdict::Passed
    );
    let (v, why) = judge(&t(None, Some(2.5)), &rec(0, 0, 0), 100, &none());
    assert_eq!(
        (v, why.as_str()),
        (GateVerdict::Failed, "holdout_loss was not reported")
    );
    let nan = BTreeMap::from([("holdout_loss".to_owned(), f64::NAN)]);
    assert_eq!(
        judge(&t(None, Some(2.5)), &rec(0, 0, 0), 100, &nan).0,
        GateVerdict::Failed
    );
    // A metric gate has no opponent, and its default name is the metric's.
    let p = policy(vec![PromotionGate {
        name: None,
        opponent: None,
        win_rate: None,
        sprt: None,
        elo_gain: None,
        metric: Some(MetricTest {
            name: "holdout_loss".into(),
            min: None,
            max: Some(2.5),
        }),
    }]);
    let g = gates(&p, "best");
    assert_eq!(
        (g[0].name.as_str(), g[0].opponent.as_str()),
        ("metric-holdout_loss", "")
    );
    assert_eq!(check(&p, &g, &[]), Ok(()));
}

#[test]
fn the_first_failed_training_gate_names_itself() {
    use ringrift_crds::training_loop::TrainingGate;
    let gate = |name: Option<&str>, metric: &str, max: f64| TrainingGate {
        name: name.map(str::to_owned),
        metric: MetricTest {
            name: metric.into(),
            min: None,
            max: Some(max),
        },
    };
    let gates = [
        gate(None, "draw_rate", 0.5),
        gate(Some("short-games"), "mean_moves", 30.0),
    ];
    let m = |d: f64, l: f64| BTreeMap::from([("draw_rate".to_owned(), d), ("mean_moves".to_owned(), l)]);
    assert_eq!(failed_training_gate(&gates, &m(0.1, 20.0)), None);
    assert_eq!(
        failed_training_gate(&gates, &m(0.9, 40.0)),
        Some(("metric-draw_rate".into(), "draw_rate 0.9000 > 0.5".into()))
    );
    assert_eq!(
        failed_training_gate(&gates, &m(0.1, 40.0)).map(|(n, _)| n),
        Some("short-games".into())
    );
    assert_eq!(failed_training_gate(&[], &none()), None);
}
