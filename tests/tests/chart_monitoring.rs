//! The chart's Grafana dashboard and Prometheus alerts: off by default, on by their values;
//! the dashboard holds to the schema of the fields it uses; every metric any of their PromQL
//! names is one the controller, the agents or the API server exports; and the alerts pass
//! `promtool check rules` and `promtool test rules` (tests/fixtures/alerts-test.yaml: each
//! fires on the series that should raise it, after its `for`).

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use ringrift_e2e::chart::{objects, template};
use ringrift_e2e::{repo_root, tool};
use serde::Deserialize;
use serde_json::Value;

/// The dashboard, as far as its fields are used: anything else is refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)] // read by serde: the schema is the check
struct Dashboard {
    uid: String,
    title: String,
    description: String,
    tags: Vec<String>,
    schema_version: u32,
    version: u32,
    editable: bool,
    refresh: String,
    time: Value,
    timezone: String,
    templating: Value,
    annotations: Value,
    panels: Vec<Panel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct Panel {
    id: u32,
    title: String,
    #[serde(rename = "type")]
    kind: PanelKind,
    datasource: Datasource,
    grid_pos: GridPos,
    field_config: Value,
    options: Value,
    targets: Vec<Target>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum PanelKind {
    Timeseries,
    Stat,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Datasource {
    #[serde(rename = "type")]
    kind: String,
    uid: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GridPos {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)]
struct Target {
    ref_id: String,
    expr: String,
    legend_format: String,
    datasource: Datasource,
}

fn file(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap()
}

fn dashboard() -> Dashboard {
    serde_json::from_str(&file("charts/ringrift/files/monitoring/dashboard.json")).unwrap()
}

fn alert_exprs() -> Vec<(String, String)> {
    let rules: Value = serde_saphyr::from_str(&file("charts/ringrift/files/monitoring/alerts.yaml")).unwrap();
    rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().iter())
        .map(|r| {
            (
                r["alert"].as_str().unwrap().to_owned(),
                r["expr"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// PromQL's binary operators, modifiers and aggregations (an aggregation may come before its
/// `by` list, not its parenthesis).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
];

/// The metric names a PromQL expression reads: identifiers outside label matchers, ranges and
/// grouping lists that are not functions, aggregations or keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut outside = String::new();
    let mut depth = 0i32;
    for c in expr.chars() {
        match c {
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            '"' => {}
            _ if depth == 0 => outside.push(c),
            _ => {}
        }
    }
    let chars: Vec<char> = outside.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut skip_group = false;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if ["by", "without", "on", "ignoring", "group_left", "group_right"].contains(&word.as_str()) {
                skip_group = true;
            } else if next != Some(&'(') && !KEYWORDS.contains(&word.as_str()) {
                names.insert(word);
            }
            continue;
        }
        if c == '(' && skip_group {
            // A grouping list: label names, not metrics.
            while i < chars.len() && chars[i] != ')' {
                i += 1;
            }
            skip_group = false;
        }
        i += 1;
    }
    names
}

/// The controller's metrics with a sample in every family (an empty family is not encoded).
fn controller_text() -> String {
    use ringrift_controller::runtime::metrics::{KindLabels, LoopLabels, Metrics};
    let m = Metrics::default();
    let shares = [(
        "TrainingLoop/default/l".to_owned(),
        ringrift_controller::plan::placement::Standing::default(),
    )];
    m.shares(&shares.into_iter().collect(), &std::collections::HashSet::new());
    m.agents(
        &[("a1".to_owned(), true, false)],
        &std::collections::HashSet::new(),
    );
    let labels = LoopLabels {
        namespace: "default".into(),
        training_loop: "l".into(),
    };
    m.training_loop(&labels, Some((1, false, Some(1000.0))));
    m.generation_bytes_moved.get_or_create(&labels).inc();
    m.error("SelfplayJob", "conflict");
    let kind = KindLabels {
        kind: "SelfplayJob".into(),
    };
    m.reconciles.get_or_create(&kind).inc();
    m.tasks_created.get_or_create(&kind).inc();
    m.encode()
}

/// The agent's metrics with a sample in every family the dashboard and the alerts read.
fn agent_text() -> String {
    use ringrift_agent::detect::simulate::{SimulatedGpus, SimulatedSource};
    use ringrift_agent::detect::{GpuSource, Host, Inventory};
    let m = ringrift_agent::metrics::Metrics::default();
    let mut gpus = SimulatedSource::new(
        SimulatedGpus {
            count: 1,
            product: "NVIDIA H100 80GB HBM3".into(),
            memory_mib: 81_559,
        },
        "a1",
    );
    let source: &mut dyn GpuSource = &mut gpus;
    m.observe("a1", &Inventory::take(source, Host::default()));
    // Simulated GPUs report no utilization: set it as NVML would.
    m.gpu_util
        .get_or_create(&ringrift_agent::metrics::GpuLabels {
            gpu: "0".into(),
            UUID: "GPU-0".into(),
            modelName: "NVIDIA H100 80GB HBM3".into(),
            Hostname: "a1".into(),
        })
        .set(50.0);
    m.tasks_finished
        .get_or_create(&ringrift_agent::metrics::PhaseLabels {
            phase: "Succeeded".into(),
        })
        .inc();
    m.sync.moved("in", "background", 1);
    m.encode()
}

/// Every sample name the project's components export, from their registries' text (a
/// counter's samples end `_total`, a histogram's `_bucket`, `_sum` and `_count`).
fn exported() -> BTreeSet<String> {
    let texts = [
        controller_text(),
        agent_text(),
        ringrift_apiserver::http::metrics::Metrics::default().render(),
    ];
    let mut names = BTreeSet::new();
    for line in texts.iter().flat_map(|t| t.lines()) {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        match kind {
            "counter" => {
                names.insert(format!("{}_total", name.trim_end_matches("_total")));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

#[test]
fn promql_names_are_read_as_metrics() {
    assert_eq!(
        metric_names("sum by (phase) (rate(ringrift_agent_tasks_finished_total{phase!=\"x\"}[5m]))"),
        BTreeSet::from(["ringrift_agent_tasks_finished_total".to_owned()])
    );
    assert_eq!(
        metric_names("(sum(a_b) or vector(0)) < 1 and on (agent) c == bool 0"),
        BTreeSet::from(["a_b".to_owned(), "c".to_owned()])
    );
}

#[test]
fn every_metric_the_dashboard_and_the_alerts_read_is_exported() {
    let exported = exported();
    assert!(
        exported.contains("ringrift_controller_loop_degraded"),
        "{exported:?}"
    );
    let mut read: Vec<(String, String)> = alert_exprs();
    for panel in dashboard().panels {
        read.extend(panel.targets.into_iter().map(|t| (panel.title.clone(), t.expr)));
    }
    for (what, expr) in read {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "{what}: {expr} reads no metric");
        for name in names {
            assert!(
                exported.contains(&name),
                "{what}: {name} (in {expr}) is not exported by any component"
            );
        }
    }
}

#[test]
fn the_dashboard_holds_to_its_schema() {
    let d = dashboard();
    assert_eq!(d.uid, "ringrift-fleet");
    let mut ids = BTreeSet::new();
    for p in &d.panels {
        assert!(ids.insert(p.id), "panel id {} twice", p.id);
        assert!(
            p.grid_pos.x + p.grid_pos.w <= 24,
            "{}: wider than the grid",
            p.title
        );
        assert!(p.grid_pos.h > 0 && p.grid_pos.w > 0);
        assert!(!p.targets.is_empty(), "{}: no query", p.title);
        let refs: BTreeSet<&str> = p.targets.iter().map(|t| t.ref_id.as_str()).collect();
        assert_eq!(refs.len(), p.targets.len(), "{}: refIds repeat", p.title);
    }
    // No two panels overlap.
    for (i, a) in d.panels.iter().enumerate() {
        for b in &d.panels[i + 1..] {
            let (a, b) = (&a.grid_pos, &b.grid_pos);
            let apart = a.x + a.w <= b.x || b.x + b.w <= a.x || a.y + a.h <= b.y || b.y + b.h <= a.y;
            assert!(apart, "panels overlap: {a:?} {b:?}");
        }
    }
    // The figures the issue names are there.
    let titles: Vec<&str> = d.panels.iter().map(|p| p.title.as_str()).collect();
    for wanted in ["GPU", "Tasks", "generation", "Elo", "transfers", "latency"] {
        assert!(
            titles.iter().any(|t| t.contains(wanted)),
            "a panel on {wanted}: {titles:?}"
        );
    }
}

#[test]
fn the_chart_ships_both_only_when_asked() {
    let off = objects(&template(&[]).unwrap());
    assert!(!off.iter().any(|o| o["kind"] == "PrometheusRule"));
    assert!(
        !off.iter()
            .any(|o| o["metadata"]["labels"]["grafana_dashboard"].is_string())
    );
    let on = objects(
        &template(&[
            "--set",
            "metrics.grafanaDashboard.enabled=true",
            "--set",
            "metrics.grafanaDashboard.folder=RingRift",
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--set",
            "metrics.prometheusRule.labels.release=prometheus",
        ])
        .unwrap(),
    );
    let cm = on
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["labels"]["grafana_dashboard"] == "1")
        .expect("the dashboard ConfigMap");
    assert_eq!(cm["metadata"]["annotations"]["grafana_folder"], "RingRift");
    let shipped: Value = serde_json::from_str(cm["data"]["ringrift-fleet.json"].as_str().unwrap()).unwrap();
    let in_repo: Value =
        serde_json::from_str(&file("charts/ringrift/files/monitoring/dashboard.json")).unwrap();
    assert_eq!(shipped, in_repo);
    let rule = on
        .iter()
        .find(|o| o["kind"] == "PrometheusRule")
        .expect("the PrometheusRule");
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
    let alerts: Value =
        serde_saphyr::from_str(&file("charts/ringrift/files/monitoring/alerts.yaml")).unwrap();
    assert_eq!(
        rule["spec"]["groups"], alerts["groups"],
        "the rules as the file has them"
    );
}

#[test]
fn promtool_checks_and_unit_tests_the_alerts() {
    let promtool = tool("promtool").unwrap();
    let dir = tempfile_dir();
    std::fs::copy(
        repo_root().join("charts/ringrift/files/monitoring/alerts.yaml"),
        dir.join("alerts.yaml"),
    )
    .unwrap();
    std::fs::copy(
        repo_root().join("tests/fixtures/alerts-test.yaml"),
        dir.join("alerts-test.yaml"),
    )
    .unwrap();
    for args in [
        ["check", "rules", "alerts.yaml"],
        ["test", "rules", "alerts-test.yaml"],
    ] {
        let out = std::process::Command::new(&promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "promtool {args:?}: {text}");
        assert!(text.contains("SUCCESS"), "{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ringrift-promtool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
