//! The CRD YAML committed in the chart must be exactly what the types generate.

// Test code: a failed unwrap or a panic is a failed test with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ringrift_crds::render::{self, CHART_CRD_DIR, REGENERATE_COMMAND, RenderedCrd};

fn chart_crd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(CHART_CRD_DIR)
}

/// Compares generated files with a directory; returns one line per difference.
fn drift(expected: &[RenderedCrd], dir: &Path) -> Vec<String> {
    let mut committed: BTreeMap<String, String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    let mut problems = Vec::new();
    for file in expected {
        match committed.remove(&file.file_name) {
            None => problems.push(format!("{} is missing", file.file_name)),
            Some(content) if content != file.content => {
                let line = content
                    .lines()
                    .zip(file.content.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or_else(|| content.lines().count().min(file.content.lines().count()))
                    + 1;
                problems.push(format!(
                    "{} differs from the types (first at line {line})",
                    file.file_name
                ));
            }
            Some(_) => {}
        }
    }
    problems.extend(
        committed
            .keys()
            .map(|name| format!("{name} is stale: no type generates it")),
    );
    problems
}

#[test]
fn committed_crds_match_the_types() {
    let expected = render::render_all().unwrap();
    let problems = drift(&expected, &chart_crd_dir());
    assert!(
        problems.is_empty(),
        "the CRD YAML in {CHART_CRD_DIR} has drifted from the types in crds/:\n  {}\nregenerate it with:\n  {REGENERATE_COMMAND}",
        problems.join("\n  ")
    );
}

#[test]
fn a_field_added_without_regenerating_is_caught() {
    // Simulate adding a field to SelfplayJobSpec: the schema gains a property, the committed
    // files do not.
    let mut crds = ringrift_crds::all();
    let selfplay = crds
        .iter_mut()
        .find(|c| c.spec.names.kind == "SelfplayJob")
        .unwrap();
    let spec = selfplay.spec.versions[0]
        .schema
        .as_mut()
        .and_then(|s| s.open_api_v3_schema.as_mut())
        .and_then(|s| s.properties.as_mut())
        .and_then(|p| p.get_mut("spec"))
        .unwrap();
    spec.properties.as_mut().unwrap().insert(
        "newField".into(),
        k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps {
            type_: Some("string".into()),
            ..Default::default()
        },
    );
    let mut expected = render::render_all().unwrap();
    let changed = expected
        .iter_mut()
        .find(|f| f.file_name == "selfplayjobs.ringrift.ai.yaml")
        .unwrap();
    changed.content = format!("# header\n{}", render::to_yaml(selfplay).unwrap());
    let problems = drift(&expected, &chart_crd_dir());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("selfplayjobs.ringrift.ai.yaml differs"),
        "{problems:?}"
    );
}

#[test]
fn missing_and_stale_files_are_caught() {
    let dir = std::env::temp_dir().join(format!("ringrift-drift-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let expected = render::render_all().unwrap();
    for file in expected.iter().skip(1) {
        std::fs::write(dir.join(&file.file_name), &file.content).unwrap();
    }
    std::fs::write(dir.join("oldkinds.ringrift.ai.yaml"), "kind: Gone\n").unwrap();
    let problems = drift(&expected, &dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        problems,
        [
            format!("{} is missing", expected[0].file_name),
            "oldkinds.ringrift.ai.yaml is stale: no type generates it".to_owned()
        ]
    );
}
