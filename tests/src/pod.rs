//! Running a `ringrift` role as it runs in a pod, for real: in a private mount namespace
//! (`unshare --mount`, as root) where a tmpfs over `/run` (`/var/run` on this kind of host) holds
//! the service account's `token`, `ca.crt` and `namespace` at their standard path, with
//! `KUBERNETES_SERVICE_HOST`/`PORT` set, no kubeconfig anywhere (`KUBECONFIG` unset, an empty
//! `HOME`), so the role finds the API server through the in-cluster configuration. Nothing is
//! created on the host: the tmpfs exists only in the role's namespace, and goes with it.

// Test harness: a failed unwrap is a failed test with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::missing_panics_doc
)]

use std::path::{Path, PathBuf};

use crate::role::RoleProcess;

/// The standard service-account directory.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// What a pod's service account mounts and the environment the kubelet sets.
#[derive(Debug, Clone)]
pub struct Pod {
    /// `KUBERNETES_SERVICE_HOST`.
    pub host: String,
    /// `KUBERNETES_SERVICE_PORT`.
    pub port: u16,
    /// The token file's content.
    pub token: String,
    /// The CA bundle, PEM.
    pub ca: String,
    /// The pod's namespace.
    pub namespace: String,
    /// More environment variables (the downward API's).
    pub env: Vec<(String, String)>,
}

/// Sets the service account up and execs the role (its arguments follow the script).
const SCRIPT: &str = r#"set -eu
run=$(readlink -f /var/run)
mount -t tmpfs -o mode=0755 ringrift-pod "$run"
d=/var/run/secrets/kubernetes.io/serviceaccount
mkdir -p "$d"
cp "$POD_TOKEN_FILE" "$d/token"
cp "$POD_CA_FILE" "$d/ca.crt"
printf %s "$POD_NAMESPACE_NAME" > "$d/namespace"
unset POD_TOKEN_FILE POD_CA_FILE POD_NAMESPACE_NAME
exec "$@"
"#;

impl Pod {
    /// Starts `ringrift <args>` in this pod (log in `<dir>/<name>.log`) and waits for its
    /// stdout line starting with `ready_prefix`.
    ///
    /// # Errors
    /// When it cannot start or does not announce itself in time.
    pub fn start(
        &self,
        dir: &Path,
        name: &str,
        args: &[String],
        ready_prefix: &str,
    ) -> Result<RoleProcess, String> {
        let files = dir.join(format!("pod-{name}"));
        std::fs::create_dir_all(&files).map_err(|e| e.to_string())?;
        let (token, ca, home) = (files.join("token"), files.join("ca.crt"), files.join("home"));
        std::fs::write(&token, &self.token).map_err(|e| e.to_string())?;
        std::fs::write(&ca, &self.ca).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
        let bin = crate::process::ringrift_bin()?;
        let mut command: Vec<String> = vec![
            "--mount".into(),
            "--propagation".into(),
            "private".into(),
            "--".into(),
            "/bin/sh".into(),
            "-c".into(),
            SCRIPT.into(),
            "sh".into(),
            bin.display().to_string(),
        ];
        command.extend(args.iter().cloned());
        let mut env: Vec<(String, String)> = vec![
            ("KUBERNETES_SERVICE_HOST".into(), self.host.clone()),
            ("KUBERNETES_SERVICE_PORT".into(), self.port.to_string()),
            ("HOME".into(), home.display().to_string()),
            ("POD_TOKEN_FILE".into(), token.display().to_string()),
            ("POD_CA_FILE".into(), ca.display().to_string()),
            ("POD_NAMESPACE_NAME".into(), self.namespace.clone()),
            ("RINGRIFT_LOG".into(), "info,ringrift_controller=debug".into()),
        ];
        env.extend(self.env.iter().cloned());
        RoleProcess::start_program(
            dir,
            name,
            Path::new("unshare"),
            &command,
            ready_prefix,
            &env,
            &["KUBECONFIG", "RINGRIFT_KUBECONFIG"],
        )
    }
}

/// The service-account directory as the role with `pid` sees it (through its mount
/// namespace): where a rotated token is written. `/var/run` is resolved first: an absolute
/// symlink met under `/proc/<pid>/root` would lead back to this process's own `/run`.
pub fn service_account_of(pid: u32) -> PathBuf {
    let run = std::fs::canonicalize("/var/run").unwrap_or_else(|_| PathBuf::from("/var/run"));
    let rest = SERVICE_ACCOUNT_DIR.trim_start_matches("/var/run/");
    PathBuf::from(format!("/proc/{pid}/root{}", run.display())).join(rest)
}

/// Replaces the token of the role with `pid`, as the kubelet rotates a projected token: a new
/// file renamed over the old one.
///
/// # Errors
/// When the files cannot be written.
pub fn rotate_token(pid: u32, token: &str) -> std::io::Result<()> {
    let dir = service_account_of(pid);
    let next = dir.join("..token.next");
    std::fs::write(&next, token)?;
    std::fs::rename(&next, dir.join("token"))
}
