//! The whole system as processes for the controller benchmarks: an API server (with its data
//! in a temporary directory; HTTPS, or plain HTTP for the insecure baseline), controllers and
//! simulated agents, each the real `ringrift` binary. Everything is killed and removed when
//! dropped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

/// One `ringrift` process, killed (and reaped) when dropped.
#[derive(Debug)]
pub struct Process {
    /// The child.
    pub child: std::process::Child,
}

impl Process {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and waits for it to be gone.
    pub fn kill(&mut self) {
        crate::harness::reap(&mut self.child);
    }

    /// SIGTERM.
    ///
    /// # Errors
    /// When the signal cannot be sent.
    pub fn terminate(&self) -> anyhow::Result<()> {
        Ok(crate::harness::terminate(self.pid())?)
    }

    /// Waits at most `within` for it to exit.
    ///
    /// # Errors
    /// When it still runs after `within`.
    pub async fn exited(&mut self, within: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "process {} still runs after {within:?}",
                self.pid()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        crate::harness::reap(&mut self.child);
    }
}

/// Starts `ringrift <args>` (its stderr inherited, its log level `RINGRIFT_BENCH_LOG` or
/// `warn`) and waits (60 s at most) for a stdout line starting with `prefix`.
async fn spawn(args: &[String], prefix: &str) -> anyhow::Result<Process> {
    let exe = std::env::current_exe().context("failed to find the ringrift binary")?;
    let mut command = std::process::Command::new(exe);
    if args.first().is_some_and(|role| role == "agent") {
        ringrift_agent::allocator_env(&mut command);
    }
    command
        .args(args)
        .env(
            "RINGRIFT_LOG",
            std::env::var("RINGRIFT_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stderr(Stdio::inherit());
    let (what, prefix) = (format!("ringrift {}", args[0]), prefix.to_owned());
    let announced = tokio::task::spawn_blocking(move || {
        crate::harness::spawn_announced(&mut command, &what, &prefix, Duration::from_secs(60))
    })
    .await??;
    Ok(Process {
        child: announced.child,
    })
}

/// An API server with the CRDs installed.
pub struct Fleet {
    dir: PathBuf,
    /// Its kubeconfig.
    pub kubeconfig: PathBuf,
    /// A client.
    pub client: kube::Client,
    _apiserver: Process,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Fleet {
    /// Starts the API server (over plain HTTP when `insecure_plain_http`) and installs the
    /// CRDs.
    ///
    /// # Errors
    /// When it cannot start.
    pub async fn start(name: &str, insecure_plain_http: bool) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("ringrift-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).context("failed to create the bench directory")?;
        let kubeconfig = dir.join("kubeconfig");
        let args: Vec<String> = vec![
            "apiserver".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            dir.join("data").display().to_string(),
            "--write-kubeconfig".into(),
            kubeconfig.display().to_string(),
        ];
        let mut args = args;
        if insecure_plain_http {
            args.push("--insecure-plain-http".into());
        }
        let apiserver = spawn(&args, "ringrift apiserver listening").await?;
        let config = Kubeconfig::read_from(&kubeconfig).context("failed to read the kubeconfig")?;
        let config = kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default()).await?;
        let client = kube::Client::try_from(config)?;
        let crds: Api<
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        > = Api::all(client.clone());
        for crd in ringrift_crds::all() {
            crds.create(&PostParams::default(), &crd)
                .await
                .context("failed to install a CRD")?;
        }
        Ok(Self {
            dir,
            kubeconfig,
            client,
            _apiserver: apiserver,
        })
    }

    /// The bench's scratch directory (removed when the fleet is dropped).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Starts a controller with extra arguments.
    ///
    /// # Errors
    /// When it cannot start.
    pub async fn controller(&self, identity: &str, extra: &[&str]) -> anyhow::Result<Process> {
        let mut args: Vec<String> = vec![
            "controller".into(),
            "--kubeconfig".into(),
            self.kubeconfig.display().to_string(),
            "--admin-listen".into(),
            "127.0.0.1:0".into(),
            "--identity".into(),
            identity.into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        spawn(&args, "ringrift controller").await
    }

    /// Starts one real agent named `name` (data in the bench directory) with extra arguments.
    ///
    /// # Errors
    /// When it cannot start.
    pub async fn agent(&self, name: &str, extra: &[&str]) -> anyhow::Result<Process> {
        let data = self.dir.join(format!("agent-{name}"));
        let mut args: Vec<String> = vec![
            "agent".into(),
            "--kubeconfig".into(),
            self.kubeconfig.display().to_string(),
            "--name".into(),
            name.into(),
            "--data-dir".into(),
            data.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        spawn(&args, "ringrift agent").await
    }

    /// Starts `count` simulated agents with `gpus` GPUs each.
    ///
    /// # Errors
    /// When they cannot start.
    pub async fn agents(&self, count: usize, gpus: u32) -> anyhow::Result<Process> {
        let args: Vec<String> = vec![
            "sim-agents".into(),
            "--kubeconfig".into(),
            self.kubeconfig.display().to_string(),
            "--count".into(),
            count.to_string(),
            "--gpus".into(),
            gpus.to_string(),
            "--heartbeat".into(),
            "10s".into(),
            "--heartbeat-lease".into(),
            "60s".into(),
        ];
        spawn(&args, "ringrift sim-agents").await
    }
}
