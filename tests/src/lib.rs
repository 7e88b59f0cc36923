//! Helpers shared by the end-to-end tests: where the repository and the pinned test tools are,
//! reading YAML fixtures, and running the real binaries ([`process`]).

pub mod agent;
pub mod api;
pub mod chart;
pub mod chart_install;
pub mod cluster;
pub mod holders;
pub mod https;
pub mod kubectl;
pub mod pod;
pub mod process;
pub mod role;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// Path of a pinned test tool (`kubectl`, `helm`, `kubernetes-validate`), installed into
/// `.tools/bin` by `scripts/install-tools.sh`; `RINGRIFT_TOOLS_BIN` points elsewhere.
///
/// # Errors
/// When the tool is not installed, with the command that installs it.
pub fn tool(name: &str) -> Result<PathBuf, String> {
    let dir = std::env::var_os("RINGRIFT_TOOLS_BIN")
        .map_or_else(|| repo_root().join(".tools").join("bin"), PathBuf::from);
    let path = dir.join(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{name} is not installed at {}: run scripts/install-tools.sh (scripts/test.sh runs it) \
             to install the pinned test tools",
            path.display()
        ))
    }
}

/// Output of a finished command.
#[derive(Debug)]
pub struct Output {
    /// Whether it exited 0.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// Runs a command to completion and captures its output.
///
/// # Errors
/// When the command cannot be started.
pub fn run(command: &mut Command) -> Result<Output, String> {
    let out = command
        .output()
        .map_err(|e| format!("failed to run {command:?}: {e}"))?;
    Ok(Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Parses a YAML stream into JSON values, one per document.
///
/// # Errors
/// When the YAML does not parse.
pub fn yaml_documents(text: &str) -> Result<Vec<serde_json::Value>, String> {
    serde_saphyr::from_multiple::<serde_json::Value>(text)
        .map(|docs| docs.into_iter().filter(|d| !d.is_null()).collect())
        .map_err(|e| format!("failed to parse YAML: {e}"))
}

/// YAML files in a directory, sorted by name.
///
/// # Errors
/// When the directory cannot be read.
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("failed to read {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Paths where `expected` has a value that `actual` lacks or differs in; fields only `actual`
/// has (defaults filled in) do not count. Numbers compare by value, so YAML's `0` and `0.0`
/// (and Helm's round trip of `4.0` to `4`) are equal.
pub fn mismatches(expected: &serde_json::Value, actual: &serde_json::Value, path: &str) -> Vec<String> {
    use serde_json::Value;
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .flat_map(|(k, v)| mismatches(v, a.get(k).unwrap_or(&Value::Null), &format!("{path}.{k}")))
            .collect(),
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => e
            .iter()
            .zip(a)
            .enumerate()
            .flat_map(|(i, (e, a))| mismatches(e, a, &format!("{path}[{i}]")))
            .collect(),
        (Value::Number(e), Value::Number(a)) if e.as_f64() == a.as_f64() => Vec::new(),
        (e, a) if e == a => Vec::new(),
        _ => vec![path.to_owned()],
    }
}
