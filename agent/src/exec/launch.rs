//! The process a task runs as, under the workload contract (pure, apart from reading the
//! agent's own environment).

use std::path::{Path, PathBuf};

use kube::ResourceExt as _;
use ringrift_crds::task::{Role, Task};

/// Everything needed to start a task's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Program (the template's first word, or the demo workload).
    pub program: String,
    /// Arguments.
    pub args: Vec<String>,
    /// Variables to set (template first, then the contract's, which win).
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: PathBuf,
}

/// The role's name in `RINGRIFT_ROLE`.
pub fn role_name(role: Role) -> &'static str {
    match role {
        Role::Selfplay => "selfplay",
        Role::Training => "training",
        Role::Gauntlet => "gauntlet",
        Role::Copy => "copy",
    }
}

/// Resolves a task's process. `exe` is the `ringrift` binary (the demo workload when the
/// template names no command); `dir` is the attempt's directory.
pub fn launch(exe: &Path, task: &Task, dir: &Path) -> Launch {
    let template = &task.spec.template;
    let (program, mut args) = match template.command.split_first() {
        Some((program, rest)) => (program.clone(), rest.to_vec()),
        None => (exe.display().to_string(), vec!["workload".to_owned()]),
    };
    args.extend(template.args.iter().cloned());
    let mut env: Vec<(String, String)> = template
        .env
        .iter()
        .filter(|(k, _)| !is_contract(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let contract = [
        ("RINGRIFT_ROLE", role_name(task.spec.role).to_owned()),
        ("RINGRIFT_TASK", task.name_any()),
        ("RINGRIFT_NAMESPACE", task.namespace().unwrap_or_default()),
        ("RINGRIFT_ATTEMPT", task.spec.attempt.to_string()),
        ("RINGRIFT_PARAMS", task.spec.params.to_string()),
        ("RINGRIFT_INPUT_DIR", dir.join("input").display().to_string()),
        ("RINGRIFT_OUTPUT_DIR", dir.join("output").display().to_string()),
        ("CUDA_VISIBLE_DEVICES", task.spec.gpus.join(",")),
    ];
    env.extend(contract.into_iter().map(|(k, v)| (k.to_owned(), v)));
    if let Some(name) = task
        .spec
        .resume_from
        .as_deref()
        .filter(|n| crate::progress::checkpoint_path_ok(n) && !n.contains('/'))
    {
        // An earlier attempt's checkpoint, fetched with the inputs.
        env.push((
            "RINGRIFT_RESUME_FROM".to_owned(),
            dir.join("input").join(name).display().to_string(),
        ));
    }
    let work = dir.join("work");
    let cwd = match &template.working_dir {
        Some(d) if Path::new(d).is_absolute() => PathBuf::from(d),
        Some(d) => work.join(d),
        None => work,
    };
    Launch {
        program,
        args,
        env,
        cwd,
    }
}

fn is_contract(key: &str) -> bool {
    key.starts_with("RINGRIFT_") || key == "CUDA_VISIBLE_DEVICES"
}

/// Variables of the agent's own environment that a task must not inherit: the agent's
/// configuration and secrets (`RINGRIFT_*`, such as its token) and GPU selection.
pub fn inherited_to_remove() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| is_contract(k) || k == "NVIDIA_VISIBLE_DEVICES")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::needless_pass_by_value)]
    fn task(template: serde_json::Value) -> Task {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ringrift.ai/v1alpha1", "kind": "Task",
            "metadata": {"name": "j-u3-1", "namespace": "ns", "uid": "u"},
            "spec": {"role": "training", "job": {"kind": "TrainingJob", "name": "j"}, "workUnit": "u3",
                     "attempt": 1, "agent": "a1", "template": template,
                     "params": {"steps": 10}, "gpus": ["GPU-a", "GPU-b"]}
        }))
        .unwrap()
    }

    #[test]
    fn the_contract_variables_are_set_and_win() {
        let t = task(serde_json::json!({
            "command": ["python", "train.py"], "args": ["--fast"],
            "env": {"FOO": "bar", "RINGRIFT_ROLE": "evil", "CUDA_VISIBLE_DEVICES": "0"}
        }));
        let l = launch(Path::new("/bin/ringrift"), &t, Path::new("/data/t"));
        assert_eq!(l.program, "python");
        assert_eq!(l.args, vec!["train.py", "--fast"]);
        let get = |k: &str| {
            l.env
                .iter()
                .filter(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("FOO"), vec!["bar"]);
        assert_eq!(get("RINGRIFT_ROLE"), vec!["training"]);
        assert_eq!(get("RINGRIFT_ATTEMPT"), vec!["1"]);
        assert_eq!(get("RINGRIFT_TASK"), vec!["j-u3-1"]);
        assert_eq!(get("RINGRIFT_PARAMS"), vec![r#"{"steps":10}"#]);
        assert_eq!(get("RINGRIFT_INPUT_DIR"), vec!["/data/t/input"]);
        assert_eq!(get("RINGRIFT_OUTPUT_DIR"), vec!["/data/t/output"]);
        assert_eq!(get("CUDA_VISIBLE_DEVICES"), vec!["GPU-a,GPU-b"]);
        assert_eq!(l.cwd, PathBuf::from("/data/t/work"));
    }

    #[test]
    fn no_command_runs_the_demo_workload() {
        let l = launch(
            Path::new("/bin/ringrift"),
            &task(serde_json::json!({"args": ["--seed", "1"]})),
            Path::new("/d"),
        );
        assert_eq!(l.program, "/bin/ringrift");
        assert_eq!(l.args, vec!["workload", "--seed", "1"]);
    }

    #[test]
    fn working_directories() {
        let rel = launch(
            Path::new("/x"),
            &task(serde_json::json!({"workingDir": "sub"})),
            Path::new("/d"),
        );
        assert_eq!(rel.cwd, PathBuf::from("/d/work/sub"));
        let abs = launch(
            Path::new("/x"),
            &task(serde_json::json!({"workingDir": "/srv"})),
            Path::new("/d"),
        );
        assert_eq!(abs.cwd, PathBuf::from("/srv"));
    }
}
