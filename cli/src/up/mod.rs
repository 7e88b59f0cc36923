//! `ringrift up`: the whole system on this machine. The embedded API server runs in this
//! process (over TLS, with RBAC on; state and its CA in SQLite and `pki/` under `--dir`); two
//! controller replicas and two agents run as child processes of the same binary (logs under
//! `--dir/logs`), each with its own client certificate bound to the roles the chart grants
//! ([`identities`]); the CRDs are installed, a kubeconfig is written for kubectl, the sample
//! loop is applied (unless it exists: re-running resumes) and its progress shown until it
//! finishes or Ctrl-C stops everything.

pub(crate) mod identities;
pub(crate) mod progress;
pub(crate) mod roles;

use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
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
use tokio_util::sync::CancellationToken;

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
    /// The dashboard's port on 127.0.0.1 (plain HTTP; its login link is printed at start).
    /// 0: a free one.
    #[arg(long, env = "RINGRIFT_UP_DASHBOARD_PORT", default_value_t = 0)]
    pub dashboard_port: u16,
    /// Print a line per change instead of redrawing progress bars (the default when the output
    /// is not a terminal).
    #[arg(long)]
    pub plain: bool,
}

/// Claims `dir` for this process: refuses when another live `ringrift up` or `ringrift server`
/// holds it (two API servers on one database would diverge). A claim left by a process that is
/// gone is taken over.
pub(crate) fn claim(dir: &Path) -> anyhow::Result<PathBuf> {
    let lock = dir.join("up.pid");
    if let Ok(text) = std::fs::read_to_string(&lock)
        && let Ok(pid) = text.trim().parse::<u32>()
        && pid != std::process::id()
        && Path::new(&format!("/proc/{pid}")).exists()
    {
        bail!(
            "another `ringrift up` or `ringrift server` (pid {pid}) is using {}; stop it first (or use another --dir)",
            dir.display()
        );
    }
    std::fs::write(&lock, std::process::id().to_string())
        .with_context(|| format!("failed to write {}", lock.display()))?;
    Ok(lock)
}

pub(crate) async fn install_crds(client: &Client) -> anyhow::Result<()> {
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

/// `at`, or with port 0 a free port on its address (found by binding it here and letting it
/// go): where the first controller serves the dashboard.
pub(crate) fn free_address(at: std::net::SocketAddr) -> anyhow::Result<std::net::SocketAddr> {
    let free = std::net::TcpListener::bind(at)
        .with_context(|| format!("the dashboard's address {at} cannot be bound"))?;
    free.local_addr().context("no local address")
}

/// The line that gives the dashboard's login link at `base` (`http://host:port`; the link
/// works for an hour, then the login page takes the token in `dashboard-token`).
pub(crate) fn dashboard_line(secrets: &roles::Secrets, base: &str) -> anyhow::Result<String> {
    let login = ringrift_controller::dashboard::auth::login_path(
        &secrets.dashboard_token()?,
        jiff::Timestamp::now().as_second(),
    );
    Ok(format!("dashboard: {base}{login}"))
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

async fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let dir = std::path::absolute(&args.dir).with_context(|| format!("bad --dir {}", args.dir.display()))?;
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("failed to create {}", dir.display()))?;
    let training_loop = read_loop(args.loop_file.as_deref())?;
    let lock = claim(&dir)?;
    let secrets = roles::Secrets::in_dir(&dir)?;
    let api = EmbeddedApi::start(&dir, args.listen).await?;
    let client = crate::kubeclient::client(&crate::kubeclient::KubeArgs {
        kubeconfig: Some(api.kubeconfig.clone()),
    })
    .await?;
    install_crds(&client).await?;
    identities::grant(&client, "default").await?;
    println!("kubectl: export KUBECONFIG={}", api.kubeconfig.display());
    let dashboard = free_address((std::net::Ipv4Addr::LOCALHOST, args.dashboard_port).into())?;
    let mut roles = roles::start(
        &dir,
        &api.url()?,
        &secrets,
        (args.controllers, args.agents),
        &roles::Dashboard::Plain { at: dashboard },
    )?;
    println!(
        "started the API server, {} controller(s) and {} agent(s); logs in {}",
        args.controllers,
        args.agents,
        dir.join("logs").display()
    );
    println!("{}", dashboard_line(&secrets, &format!("http://{dashboard}"))?);
    if !args.no_loop {
        apply_loop(&client, &training_loop).await?;
    }
    let ended = follow(&args, &client, &training_loop, &mut roles, &dir, started).await;
    println!("stopping…");
    roles::stop(&mut roles, Duration::from_secs(20)).await;
    api.stop().await;
    let _ = std::fs::remove_file(&lock);
    match ended {
        Ended::Exited(why) => bail!("{why}"),
        Ended::Stopped if !args.no_loop => {
            println!("stopped; run `ringrift up` again (same --dir) to resume");
        }
        Ended::Stopped | Ended::Finished => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// The loop to apply: `--loop`'s file, or the sample loop.
fn read_loop(file: Option<&Path>) -> anyhow::Result<TrainingLoop> {
    let manifest = match file {
        Some(f) => {
            std::fs::read_to_string(f).with_context(|| format!("failed to read --loop {}", f.display()))?
        }
        None => SAMPLE_LOOP.to_owned(),
    };
    serde_saphyr::from_str(&manifest).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a TrainingLoop: {e}",
            file.map_or_else(|| "the sample loop".into(), |f| f.display().to_string())
        )
    })
}

/// The API server, running in this process: over TLS with RBAC on, its state and CA under
/// `apiserver/`, the administrator's kubeconfig written to `kubeconfig`.
pub(crate) struct EmbeddedApi {
    pub(crate) kubeconfig: PathBuf,
    task: tokio::task::JoinHandle<Result<(), ringrift_apiserver::run::RunError>>,
    stop: CancellationToken,
}

impl EmbeddedApi {
    /// Starts the server on `listen` and waits (30 s at most) until it has written its
    /// kubeconfig, which it does once serving.
    async fn start(dir: &Path, listen: std::net::SocketAddr) -> anyhow::Result<Self> {
        Self::start_with(dir, listen, &[], None).await
    }

    /// [`Self::start`], its serving certificate also naming `sans` (the names other hosts
    /// reach it by), agents that join given certificates valid `agent_validity` (default: a
    /// year).
    pub(crate) async fn start_with(
        dir: &Path,
        listen: std::net::SocketAddr,
        sans: &[String],
        agent_validity: Option<Duration>,
    ) -> anyhow::Result<Self> {
        let defaults = ringrift_apiserver::certs::TlsOptions::default();
        let kubeconfig = dir.join("kubeconfig");
        let _ = std::fs::remove_file(&kubeconfig);
        let stop = CancellationToken::new();
        let config = ringrift_apiserver::run::Config {
            listen,
            advertise: None,
            tls: Some(ringrift_apiserver::certs::TlsOptions {
                sans: sans.to_vec(),
                agent_certificate_validity: agent_validity.unwrap_or(defaults.agent_certificate_validity),
                ..defaults
            }),
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
        let mut task = tokio::spawn(ringrift_apiserver::run::run(config, stop.clone()));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !kubeconfig.exists() {
            if task.is_finished() {
                return match (&mut task).await {
                    Ok(Err(e)) => Err(anyhow::Error::new(e).context("the API server failed to start")),
                    _ => bail!("the API server stopped at start"),
                };
            }
            if Instant::now() > deadline {
                bail!("the API server did not start within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            kubeconfig,
            task,
            stop,
        })
    }

    /// The server's URL, as its kubeconfig names it.
    pub(crate) fn url(&self) -> anyhow::Result<String> {
        kube::config::Kubeconfig::read_from(&self.kubeconfig)?
            .clusters
            .first()
            .and_then(|c| c.cluster.as_ref()?.server.clone())
            .context("the API server's kubeconfig names no server")
    }

    /// Stops the server, waiting 10 s at most.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
    }
}

/// Applies the loop once; a re-run finds it and resumes.
async fn apply_loop(client: &Client, training_loop: &TrainingLoop) -> anyhow::Result<()> {
    let ns = training_loop.namespace().unwrap_or_else(|| "default".into());
    let name = training_loop.name_any();
    let loops = Api::<TrainingLoop>::namespaced(client.clone(), &ns);
    if loops.get_opt(&name).await?.is_some() {
        println!("TrainingLoop {ns}/{name} exists: resuming it");
    } else {
        loops
            .create(&PostParams::default(), training_loop)
            .await
            .with_context(|| format!("failed to apply TrainingLoop {ns}/{name}"))?;
        println!("applied TrainingLoop {ns}/{name}");
    }
    Ok(())
}

/// How following the system ended.
enum Ended {
    /// The loop succeeded (and `--keep-running` was not given).
    Finished,
    /// Ctrl-C.
    Stopped,
    /// A controller or an agent exited: which, and where its log is.
    Exited(String),
}

/// Shows the loop's progress each second until it finishes (unless `--keep-running`), Ctrl-C,
/// or a child process exits.
async fn follow(
    args: &UpArgs,
    client: &Client,
    training_loop: &TrainingLoop,
    roles: &mut [roles::Role],
    dir: &Path,
    started: Instant,
) -> Ended {
    let ns = training_loop.namespace().unwrap_or_else(|| "default".into());
    let name = training_loop.name_any();
    let mut screen = progress::Screen::new(args.plain || !std::io::stdout().is_terminal());
    let mut finished = false;
    let ctrl_c = crate::apiserver::shutdown_on_signal();
    loop {
        tokio::select! {
            () = ctrl_c.cancelled() => return if finished { Ended::Finished } else { Ended::Stopped },
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if let Some(why) = roles::exited(roles, dir) {
            return Ended::Exited(why);
        }
        if args.no_loop {
            continue;
        }
        let view = read_view(client, &ns, &name).await;
        if let Some(frame) = screen.frame(progress::render(&view)) {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(frame.as_bytes());
            let _ = out.flush();
        }
        let phase = view
            .training_loop
            .as_ref()
            .and_then(|l| l.status.as_ref())
            .map(|s| s.phase);
        if phase == Some(LoopPhase::Succeeded) && !finished {
            finished = true;
            println!(
                "TrainingLoop {ns}/{name} finished in {:.0} s",
                started.elapsed().as_secs_f64()
            );
            for l in progress::summary(&view) {
                println!("{l}");
            }
            if !args.keep_running {
                return Ended::Finished;
            }
        }
    }
}
