//! `ringrift up`: the whole system on this machine. The embedded API server runs in this
//! process (over TLS, with RBAC on; state and its CA in SQLite and `pki/` under `--dir`); two
//! controller replicas and two agents run as child processes of the same binary (logs under
//! `--dir/logs`), each with its own client certificate bound to the roles the chart grants
//! ([`identities`]); the CRDs are installed, a kubeconfig is written for kubectl, the sample
//! loop is applied (unless it exists: re-running resumes) and its progress shown until it
//! finishes or Ctrl-C stops everything.

mod identities;
pub(crate) mod progress;

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use ringrift_crds::gauntlet::GauntletJob;
use ringrift_crds::model::Model;
use ringrift_crds::selfplay::SelfplayJob;
use ringrift_crds::training::TrainingJob;
use ringrift_crds::training_loop::{LoopPhase, TrainingLoop};
use tokio::process::{Child, Command};

use self::progress::View;

/// The sample loop applied by default (`examples/training-loop.yaml`).
const SAMPLE_LOOP: &str = include_str!("../../../examples/training-loop.yaml");

/// Options of `ringrift up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Where everything lives: the API server's database, the agents' data, logs, the
    /// kubeconfig. Re-running with the same directory resumes.
    #[arg(long, env = "RINGRIFT_UP_DIR", default_value = ".ringrift")]
    pub dir: PathBuf,
    /// Address of the API server. Port 0 picks a free port (the kubeconfig says which).
    #[arg(long, env = "RINGRIFT_UP_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// The TrainingLoop manifest to apply. Unset: the sample loop (examples/training-loop.yaml).
    #[arg(long = "loop", value_name = "FILE")]
    pub loop_file: Option<PathBuf>,
    /// Apply no loop: start the system and wait (apply your own with kubectl).
    #[arg(long, conflicts_with = "loop_file")]
    pub no_loop: bool,
    /// Agents to start.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub agents: u32,
    /// Controller replicas to start (one leads).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=4))]
    pub controllers: u32,
    /// Keep everything running after the loop finishes (until Ctrl-C).
    #[arg(long)]
    pub keep_running: bool,
    /// Print a line per change instead of redrawing progress bars (the default when the output
    /// is not a terminal).
    #[arg(long)]
    pub plain: bool,
}

/// A child process of `up`: a controller replica or an agent.
struct Role {
    name: String,
    child: Child,
}

/// A random secret in `path` (mode 0600), made the first time.
fn secret_file(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        ringrift_tls::files::write_private(path, secret.as_bytes())
            .with_context(|| format!("failed to write {}", path.display()))?;
    }
    Ok(())
}

/// Claims `dir` for this process: refuses when another live `ringrift up` holds it (two API
/// servers on one database would diverge). A claim left by a process that is gone is taken over.
fn claim(dir: &Path) -> anyhow::Result<PathBuf> {
    let lock = dir.join("up.pid");
    if let Ok(text) = std::fs::read_to_string(&lock)
        && let Ok(pid) = text.trim().parse::<u32>()
        && pid != std::process::id()
        && Path::new(&format!("/proc/{pid}")).exists()
    {
        bail!(
            "another `ringrift up` (pid {pid}) is using {}; stop it first (or use another --dir)",
            dir.display()
        );
    }
    std::fs::write(&lock, std::process::id().to_string())
        .with_context(|| format!("failed to write {}", lock.display()))?;
    Ok(lock)
}

fn spawn(exe: &Path, dir: &Path, name: &str, args: &[String]) -> anyhow::Result<Role> {
    let log_path = dir.join("logs").join(format!("{name}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("failed to open {}", log_path.display()))?;
    let child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("failed to start {name}"))?;
    Ok(Role {
        name: name.to_owned(),
        child,
    })
}

/// SIGTERM to each, then SIGKILL to those still running after `grace`.
async fn stop(roles: &mut [Role], grace: Duration) {
    for r in roles.iter() {
        if let Some(pid) = r
            .child
            .id()
            .and_then(|p| rustix::process::Pid::from_raw(p.cast_signed()))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
    let deadline = tokio::time::Instant::now() + grace;
    for r in roles.iter_mut() {
        if tokio::time::timeout_at(deadline, r.child.wait()).await.is_err() {
            eprintln!(
                "ringrift up: {} did not stop within {grace:?}; killing it",
                r.name
            );
            let _ = r.child.kill().await;
        }
    }
}

async fn install_crds(client: &Client) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in ringrift_crds::all() {
        let name = crd.name_any();
        match api.get_opt(&name).await? {
            None => {
                api.create(&PostParams::default(), &crd)
                    .await
                    .with_context(|| format!("failed to install the CRD {name}"))?;
            }
            Some(existing) => {
                let mut updated = crd.clone();
                updated.metadata.resource_version = existing.metadata.resource_version;
                api.replace(&name, &PostParams::default(), &updated)
                    .await
                    .with_context(|| format!("failed to update the CRD {name}"))?;
            }
        }
    }
    Ok(())
}

/// Reads the loop's objects for the progress display.
pub(crate) async fn read_view(client: &Client, ns: &str, name: &str) -> View {
    let lp = Api::<TrainingLoop>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten();
    let selector = format!(
        "{}={name}",
        ringrift_controller::reconcile::training_loop::LOOP_LABEL
    );
    let params = ListParams::default().labels(&selector);
    macro_rules! list {
        ($k:ty) => {
            Api::<$k>::namespaced(client.clone(), ns)
                .list(&params)
                .await
                .map(|l| l.items)
                .unwrap_or_default()
        };
    }
    View {
        training_loop: lp,
        selfplay: list!(SelfplayJob),
        training: list!(TrainingJob),
        gauntlet: list!(GauntletJob),
        models: Api::<Model>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default(),
    }
}

/// Runs `ringrift up`.
pub(crate) fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    crate::runtime()?.block_on(up(args))
}

#[allow(clippy::too_many_lines)] // the steps of bringing the system up, in order
async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let dir = std::path::absolute(&args.dir).with_context(|| format!("bad --dir {}", args.dir.display()))?;
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("failed to create {}", dir.display()))?;
    let manifest = match &args.loop_file {
        Some(f) => {
            std::fs::read_to_string(f).with_context(|| format!("failed to read --loop {}", f.display()))?
        }
        None => SAMPLE_LOOP.to_owned(),
    };
    let training_loop: TrainingLoop = serde_saphyr::from_str(&manifest).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a TrainingLoop: {e}",
            args.loop_file
                .as_ref()
                .map_or_else(|| "the sample loop".into(), |f| f.display().to_string())
        )
    })?;
    let ns = training_loop.namespace().unwrap_or_else(|| "default".into());
    let loop_name = training_loop.name_any();
    let lock = claim(&dir)?;
    let token_file = dir.join("agent-token");
    let key_file = dir.join("cluster-key");
    let metrics_token_file = dir.join("metrics-token");
    for file in [&token_file, &key_file, &metrics_token_file] {
        secret_file(file)?;
    }

    // The API server, in this process.
    let kubeconfig = dir.join("kubeconfig");
    let _ = std::fs::remove_file(&kubeconfig);
    let (stop_api, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = ringrift_apiserver::run::Config {
        listen: args.listen,
        advertise: None,
        tls: Some(ringrift_apiserver::certs::TlsOptions::default()),
        data_dir: Some(dir.join("apiserver")),
        token: None,
        token_file: None,
        rbac: true,
        audit_log: None,
        anonymous: false,
        kubeconfig: Some(kubeconfig.clone()),
        watch_history: 10_000,
        max_body: ringrift_apiserver::http::DEFAULT_MAX_BODY,
        bookmark_interval: Duration::from_secs(10),
    };
    let mut api = tokio::spawn(ringrift_apiserver::run::run(config, async {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !kubeconfig.exists() {
        if api.is_finished() {
            return match (&mut api).await {
                Ok(Err(e)) => Err(anyhow::Error::new(e).context("the API server failed to start")),
                _ => bail!("the API server stopped at start"),
            };
        }
        if Instant::now() > deadline {
            bail!("the API server did not start within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = crate::kubeclient::client(&crate::kubeclient::KubeArgs {
        kubeconfig: Some(kubeconfig.clone()),
    })
    .await?;
    install_crds(&client).await?;
    identities::grant(&client, "default").await?;
    println!("kubectl: export KUBECONFIG={}", kubeconfig.display());

    // Controllers and agents, as child processes, each with a credential of its own.
    let exe = std::env::current_exe().context("cannot find the ringrift executable")?;
    let ca = identities::cluster_ca(&dir.join("apiserver"))?;
    let url = kube::config::Kubeconfig::read_from(&kubeconfig)?
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref()?.server.clone())
        .context("the API server's kubeconfig names no server")?;
    let credentials = dir.join("credentials");
    let metrics_token = metrics_token_file.display().to_string();
    let mut roles = Vec::new();
    for i in 1..=args.controllers {
        let name = format!("controller-{i}");
        let kc = identities::credential(&ca, &url, &credentials, identities::Identity::Controller(&name))?;
        let kc = kc.display().to_string();
        let a = [
            "controller",
            "--kubeconfig",
            &kc,
            "--identity",
            &name,
            "--admin-listen",
            "127.0.0.1:0",
            "--metrics-token-file",
            &metrics_token,
        ];
        roles.push(spawn(&exe, &dir, &name, &a.map(String::from))?);
    }
    for i in 1..=args.agents {
        let name = format!("agent-{i}");
        let data = dir.join(&name).display().to_string();
        let kc = identities::credential(&ca, &url, &credentials, identities::Identity::Agent(&name))?;
        let kc = kc.display().to_string();
        let a = [
            "agent",
            "--kubeconfig",
            &kc,
            "--metrics-token-file",
            &metrics_token,
            "--name",
            &name,
            "--data-dir",
            &data,
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            &token_file.display().to_string(),
            "--cluster-key-file",
            &key_file.display().to_string(),
            "--gossip-listen",
            "127.0.0.1:0",
        ];
        roles.push(spawn(&exe, &dir, &name, &a.map(String::from))?);
    }
    println!(
        "started the API server, {} controller(s) and {} agent(s); logs in {}",
        args.controllers,
        args.agents,
        dir.join("logs").display()
    );

    // The loop: applied once; a re-run finds it and resumes.
    if !args.no_loop {
        let loops = Api::<TrainingLoop>::namespaced(client.clone(), &ns);
        if loops.get_opt(&loop_name).await?.is_some() {
            println!("TrainingLoop {ns}/{loop_name} exists: resuming it");
        } else {
            loops
                .create(&PostParams::default(), &training_loop)
                .await
                .with_context(|| format!("failed to apply TrainingLoop {ns}/{loop_name}"))?;
            println!("applied TrainingLoop {ns}/{loop_name}");
        }
    }

    // Progress until the loop finishes or Ctrl-C.
    let plain = args.plain || !std::io::stdout().is_terminal();
    let mut shown = 0usize;
    let mut last: Vec<String> = Vec::new();
    let mut finished = false;
    let ctrl_c = crate::apiserver::shutdown_signal();
    tokio::pin!(ctrl_c);
    let mut exited: Option<String> = None;
    loop {
        tokio::select! {
            () = &mut ctrl_c => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        for r in &mut roles {
            if let Ok(Some(status)) = r.child.try_wait() {
                exited = Some(format!(
                    "{} exited ({status}); see {}",
                    r.name,
                    dir.join("logs").join(format!("{}.log", r.name)).display()
                ));
            }
        }
        if exited.is_some() {
            break;
        }
        if args.no_loop {
            continue;
        }
        let view = read_view(&client, &ns, &loop_name).await;
        let lines = progress::render(&view);
        if lines != last {
            let mut out = std::io::stdout().lock();
            if plain {
                // Only what changed, so a log stays readable.
                for l in lines.iter().filter(|l| !last.contains(l)) {
                    let _ = writeln!(out, "{l}");
                }
            } else {
                if shown > 0 {
                    let _ = write!(out, "\x1b[{shown}A\x1b[J");
                }
                for l in &lines {
                    let _ = writeln!(out, "{l}");
                }
                shown = lines.len();
            }
            let _ = out.flush();
            last = lines;
        }
        let phase = view
            .training_loop
            .as_ref()
            .and_then(|l| l.status.as_ref())
            .map(|s| s.phase);
        if phase == Some(LoopPhase::Succeeded) && !finished {
            finished = true;
            println!(
                "TrainingLoop {ns}/{loop_name} finished in {:.0} s",
                started.elapsed().as_secs_f64()
            );
            for l in progress::summary(&view) {
                println!("{l}");
            }
            if !args.keep_running {
                break;
            }
        }
    }
    println!("stopping…");
    stop(&mut roles, Duration::from_secs(20)).await;
    let _ = stop_api.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), api).await;
    let _ = std::fs::remove_file(&lock);
    if let Some(why) = exited {
        bail!("{why}");
    }
    if !finished && !args.no_loop {
        println!("stopped; run `ringrift up` again (same --dir) to resume");
    }
    Ok(ExitCode::SUCCESS)
}
