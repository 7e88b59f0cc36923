//! The generated CRDs, checked the way a cluster and its users would: structural and accepted by
//! `kubernetes-validate --strict`, every example valid, every invalid sample rejected at the
//! offending field, and the chart rendering exactly the generated CRDs.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use ringrift_apiserver::schema::{Admission, ResourceValidator};
use ringrift_e2e::{mismatches, repo_root, run, tool, yaml_documents, yaml_files};
use serde_json::Value;

fn crds() -> Vec<Value> {
    ringrift_crds::all()
        .into_iter()
        .map(|crd| serde_json::to_value(crd).unwrap())
        .collect()
}

/// Validators by kind.
fn validators() -> BTreeMap<String, ResourceValidator> {
    crds()
        .iter()
        .map(|crd| {
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_owned();
            let validator = ResourceValidator::for_crd_version(crd, ringrift_crds::VERSION)
                .unwrap_or_else(|e| panic!("CRD of {kind} is not usable: {e}"));
            (kind, validator)
        })
        .collect()
}

fn admit(validators: &BTreeMap<String, ResourceValidator>, old: Option<&Value>, new: &Value) -> Admission {
    let kind = new["kind"].as_str().expect("object has a kind");
    assert_eq!(
        new["apiVersion"],
        ringrift_crds::API_VERSION,
        "apiVersion of {kind}"
    );
    let validator = validators
        .get(kind)
        .unwrap_or_else(|| panic!("no CRD for kind {kind}"));
    let old = old.map(|o| {
        let mut o = o.clone();
        let a = validator.admit(&mut o, None);
        assert!(
            a.strict_errors().is_empty(),
            "the old object of an update must be valid: {:?}",
            a.errors
        );
        o
    });
    let mut new = new.clone();
    validator.admit(&mut new, old.as_ref())
}

#[test]
fn every_crd_is_structural_and_its_cel_rules_compile() {
    // validators() panics with the reasons when one is not.
    assert_eq!(validators().len(), 7);
}

#[test]
fn every_crd_has_status_conditions_short_names_category_and_progress_columns() {
    for crd in crds() {
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_owned();
        assert_eq!(crd["spec"]["group"], "ringrift.ai", "{kind}");
        assert!(
            crd["spec"]["names"]["categories"]
                .as_array()
                .unwrap()
                .contains(&"ringrift".into()),
            "{kind}"
        );
        assert!(
            !crd["spec"]["names"]["shortNames"].as_array().unwrap().is_empty(),
            "{kind} has short names"
        );
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1");
        assert!(
            version["subresources"]["status"].is_object(),
            "{kind} has a status subresource"
        );
        let status = &version["schema"]["openAPIV3Schema"]["properties"]["status"];
        assert_eq!(
            status["properties"]["observedGeneration"]["type"], "integer",
            "{kind}"
        );
        let conditions = &status["properties"]["conditions"];
        assert_eq!(
            conditions["x-kubernetes-list-type"], "map",
            "{kind} conditions are a list-map"
        );
        assert_eq!(
            conditions["x-kubernetes-list-map-keys"],
            serde_json::json!(["type"]),
            "{kind}"
        );
        let condition_fields = conditions["items"]["required"].as_array().unwrap();
        for field in ["type", "status", "lastTransitionTime", "reason", "message"] {
            assert!(
                condition_fields.contains(&field.into()),
                "{kind} conditions require {field}"
            );
        }
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert!(columns.contains(&"Age"), "{kind}: {columns:?}");
        assert!(
            ["Phase", "Ready", "Generation"]
                .iter()
                .any(|c| columns.contains(c)),
            "{kind} shows how far along it is: {columns:?}"
        );
    }
}

#[test]
fn agent_is_cluster_scoped_and_the_rest_namespaced() {
    for crd in crds() {
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap();
        let want = if kind == "Agent" { "Cluster" } else { "Namespaced" };
        assert_eq!(crd["spec"]["scope"], want, "{kind}");
    }
}

#[test]
fn every_committed_crd_passes_kubernetes_validate_strict() {
    let validate = tool("kubernetes-validate").unwrap();
    let dir = repo_root().join(ringrift_crds::render::CHART_CRD_DIR);
    let files = yaml_files(&dir).unwrap();
    assert_eq!(files.len(), 7, "one file per CRD in {}", dir.display());
    // The oldest Kubernetes release the types target (k8s-openapi feature v1_33) and the newest
    // the tool knows.
    for version in ["1.33.0", "1.37.0"] {
        let out = run(Command::new(&validate)
            .args(["--strict", "-k", version])
            .args(&files))
        .unwrap();
        assert!(
            out.success,
            "kubernetes-validate -k {version} failed:\n{}{}",
            out.stdout, out.stderr
        );
        let passed = format!("{}{}", out.stdout, out.stderr)
            .matches(" passed for resource customresourcedefinition/")
            .count();
        assert_eq!(
            passed, 7,
            "every CRD passed against {version}:\n{}{}",
            out.stdout, out.stderr
        );
    }
}

#[test]
fn kubernetes_validate_catches_a_broken_crd() {
    // The check above can fail: a CRD with a misspelt field is refused under --strict.
    let validate = tool("kubernetes-validate").unwrap();
    let mut crd = crds().remove(0);
    crd["spec"]["scoep"] = "Namespaced".into();
    let path = std::env::temp_dir().join(format!("ringrift-broken-crd-{}.yaml", std::process::id()));
    std::fs::write(&path, serde_json::to_string(&crd).unwrap()).unwrap();
    let out = run(Command::new(&validate)
        .args(["--strict", "-k", "1.33.0"])
        .arg(&path))
    .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(
        !out.success,
        "a CRD with an unknown field must fail:\n{}{}",
        out.stdout, out.stderr
    );
}

#[test]
fn every_example_is_valid_and_every_user_facing_kind_has_one() {
    let validators = validators();
    let mut kinds = Vec::new();
    for file in yaml_files(&repo_root().join("examples")).unwrap() {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in yaml_documents(&text).unwrap() {
            let admission = admit(&validators, None, &doc);
            let errors: Vec<String> = admission
                .strict_errors()
                .iter()
                .map(ToString::to_string)
                .collect();
            assert!(
                errors.is_empty(),
                "{} is invalid:\n  {}",
                file.display(),
                errors.join("\n  ")
            );
            kinds.push(doc["kind"].as_str().unwrap().to_owned());
            typed_round_trip(&file, &doc);
        }
    }
    for kind in ["SelfplayJob", "TrainingJob", "GauntletJob", "TrainingLoop"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "examples/ has a {kind}: {kinds:?}"
        );
    }
    let gauntlets =
        yaml_documents(&std::fs::read_to_string(repo_root().join("examples/gauntlet-sprt.yaml")).unwrap());
    assert!(
        gauntlets.unwrap()[0]["spec"]["promotion"]["sprt"].is_object(),
        "the gauntlet example uses SPRT"
    );
}

/// The example also reads into the Rust types, and nothing is lost on the way.
fn typed_round_trip(file: &Path, doc: &Value) {
    fn check<K: serde::de::DeserializeOwned + serde::Serialize>(file: &Path, doc: &Value) {
        let typed: K = serde_json::from_value(doc.clone())
            .unwrap_or_else(|e| panic!("{} does not read into the Rust type: {e}", file.display()));
        let back = serde_json::to_value(&typed).unwrap();
        let lost = mismatches(&doc["spec"], &back["spec"], "spec");
        assert!(
            lost.is_empty(),
            "{}: the typed form loses or changes {lost:?}",
            file.display()
        );
    }
    match doc["kind"].as_str().unwrap() {
        "SelfplayJob" => check::<ringrift_crds::SelfplayJob>(file, doc),
        "TrainingJob" => check::<ringrift_crds::TrainingJob>(file, doc),
        "GauntletJob" => check::<ringrift_crds::GauntletJob>(file, doc),
        "TrainingLoop" => check::<ringrift_crds::TrainingLoop>(file, doc),
        other => panic!("no typed check for {other}"),
    }
}

struct Fixture {
    name: String,
    expect_path: String,
    expect_message: String,
    docs: Vec<Value>,
}

fn invalid_fixtures() -> Vec<Fixture> {
    let dir = repo_root().join("tests/fixtures/invalid");
    yaml_files(&dir)
        .unwrap()
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            let header = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
                    .unwrap_or_else(|| panic!("{} has no `# {key}:` line", file.display()))
                    .to_owned()
            };
            Fixture {
                name: file.file_name().unwrap().to_string_lossy().into_owned(),
                expect_path: header("expect"),
                expect_message: header("message"),
                docs: yaml_documents(&text).unwrap(),
            }
        })
        .collect()
}

#[test]
fn every_invalid_sample_is_rejected_at_the_offending_field() {
    let validators = validators();
    let fixtures = invalid_fixtures();
    assert!(fixtures.len() >= 20, "one sample per rule: {}", fixtures.len());
    let mut failures = Vec::new();
    for f in &fixtures {
        let (old, new) = match f.docs.as_slice() {
            [new] => (None, new),
            [old, new] => (Some(old), new),
            _ => panic!("{}: one document (create) or two (update: old, new)", f.name),
        };
        let errors = admit(&validators, old, new).strict_errors();
        let hit = errors
            .iter()
            .any(|e| e.path == f.expect_path && e.to_string().contains(&f.expect_message));
        if !hit {
            failures.push(format!(
                "{}: expected an error at {} containing {:?}, got {:?}",
                f.name,
                f.expect_path,
                f.expect_message,
                errors.iter().map(ToString::to_string).collect::<Vec<_>>()
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn allowed_transitions_pass() {
    // The immutability rules do not get in the way of what the controller and agents do.
    let validators = validators();
    let task = |agent: Option<&str>, phase: &str| {
        let mut t = serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "Task", "metadata": {"name": "t"},
            "spec": {"role": "selfplay", "job": {"kind": "SelfplayJob", "name": "j"}, "workUnit": "games-0001", "attempt": 0},
            "status": {"phase": phase}
        });
        if let Some(agent) = agent {
            t["spec"]["agent"] = agent.into();
        }
        t
    };
    let binding = admit(
        &validators,
        Some(&task(None, "Pending")),
        &task(Some("node-a"), "Pending"),
    );
    assert!(
        binding.errors.is_empty(),
        "binding an unbound task: {:?}",
        binding.errors
    );
    let progress = admit(
        &validators,
        Some(&task(Some("node-a"), "Pending")),
        &task(Some("node-a"), "Running"),
    );
    assert!(
        progress.errors.is_empty(),
        "status changes: {:?}",
        progress.errors
    );
    let mut cancelled = task(Some("node-a"), "Running");
    cancelled["spec"]["cancel"] = true.into();
    let cancel = admit(&validators, Some(&task(Some("node-a"), "Running")), &cancelled);
    assert!(cancel.errors.is_empty(), "asking to cancel: {:?}", cancel.errors);
}

#[test]
fn defaults_are_applied_as_documented() {
    let validators = validators();
    let mut job = serde_json::json!({
        "apiVersion": "ringrift.ai/v1alpha1", "kind": "SelfplayJob", "metadata": {"name": "d"},
        "spec": {"game": {"board": "connect4"}, "games": 10, "output": {"dataset": "d"}}
    });
    let admission = validators["SelfplayJob"].admit(&mut job, None);
    assert!(admission.errors.is_empty(), "{:?}", admission.errors);
    let spec = &job["spec"];
    assert_eq!(spec["game"]["players"], 2);
    assert_eq!(spec["gamesPerTask"], 100);
    assert_eq!(spec["simulations"], 64);
    assert_eq!(spec["resources"]["cpuMillis"], 1000);
    assert_eq!(spec["resources"]["memoryMiB"], 512);
    assert_eq!(spec["resources"]["gpus"], 0);
    assert_eq!(spec["runPolicy"]["backoffLimit"], 3);
    assert_eq!(spec["runPolicy"]["suspend"], false);
}

/// Numbers by value, so YAML's `0` and `0.0` (and Helm's round trip of `4.0` to `4`) compare
/// equal.
fn numbers_as_f64(value: Value) -> Value {
    match value {
        Value::Number(n) => n.as_f64().map_or(Value::Null, Value::from),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, numbers_as_f64(v))).collect()),
        Value::Array(items) => Value::Array(items.into_iter().map(numbers_as_f64).collect()),
        other => other,
    }
}

#[test]
fn the_chart_renders_exactly_the_generated_crds_and_keeps_them_on_uninstall() {
    let helm = tool("helm").unwrap();
    let chart = repo_root().join("charts/ringrift");
    let out = run(Command::new(&helm).args(["template", "ringrift"]).arg(&chart)).unwrap();
    assert!(out.success, "helm template failed:\n{}", out.stderr);
    let rendered: BTreeMap<String, Value> = yaml_documents(&out.stdout)
        .unwrap()
        .into_iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .map(|d| (d["metadata"]["name"].as_str().unwrap().to_owned(), d))
        .collect();
    let generated = crds();
    assert_eq!(rendered.len(), generated.len());
    for mut crd in generated {
        let name = crd["metadata"]["name"].as_str().unwrap().to_owned();
        let mut got = rendered
            .get(&name)
            .unwrap_or_else(|| panic!("{name} not rendered"))
            .clone();
        assert_eq!(
            got["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{name}"
        );
        got["metadata"].as_object_mut().unwrap().remove("annotations");
        crd["metadata"].as_object_mut().unwrap().remove("annotations");
        assert!(
            numbers_as_f64(got) == numbers_as_f64(crd),
            "{name} renders differently from the types"
        );
    }
    let off = run(Command::new(&helm)
        .args(["template", "ringrift", "--set", "crds.install=false"])
        .arg(&chart))
    .unwrap();
    assert!(off.success, "{}", off.stderr);
    assert!(
        !off.stdout.contains("CustomResourceDefinition"),
        "crds.install=false renders no CRD"
    );
}
