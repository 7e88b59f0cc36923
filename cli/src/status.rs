//! `ringrift status`: the training loops of a namespace with their progress (as `ringrift up`
//! shows it), the agents and their readiness; `--watch` redraws every second.

use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use kube::api::ListParams;
use kube::{Api, ResourceExt};
use ringrift_crds::agent::Agent;
use ringrift_crds::training_loop::TrainingLoop;

use crate::kubeclient::{self, KubeArgs};
use crate::up::{progress, read_view};

/// Options of `ringrift status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub kube: KubeArgs,
    /// The namespace of the loops.
    #[arg(short, long, env = "RINGRIFT_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Redraw every second until Ctrl-C.
    #[arg(short, long)]
    pub watch: bool,
}

async fn lines(client: &kube::Client, ns: &str) -> anyhow::Result<Vec<String>> {
    let loops = Api::<TrainingLoop>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| anyhow::anyhow!("failed to list TrainingLoops in {ns}: {e}"))?;
    let mut out = Vec::new();
    for lp in &loops.items {
        out.extend(progress::render(&read_view(client, ns, &lp.name_any()).await));
    }
    if loops.items.is_empty() {
        out.push(format!("no TrainingLoop in namespace {ns}"));
    }
    let agents = Api::<Agent>::all(client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let ready = agents
        .iter()
        .filter(|a| {
            a.status
                .iter()
                .flat_map(|s| &s.conditions)
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
        .count();
    out.push(format!("agents: {ready} ready of {}", agents.len()));
    Ok(out)
}

/// Runs `ringrift status`.
pub(crate) fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    crate::runtime()?.block_on(async {
        let client = kubeclient::client(&args.kube).await?;
        let tty = std::io::stdout().is_terminal();
        let mut shown = 0;
        let stop = crate::apiserver::shutdown_on_signal();
        loop {
            let text = lines(&client, &args.namespace).await?;
            let mut out = std::io::stdout().lock();
            if args.watch && tty && shown > 0 {
                let _ = write!(out, "\x1b[{shown}A\x1b[J");
            }
            for l in &text {
                let _ = writeln!(out, "{l}");
            }
            shown = text.len();
            drop(out);
            if !args.watch {
                return Ok(ExitCode::SUCCESS);
            }
            tokio::select! {
                () = stop.cancelled() => return Ok(ExitCode::SUCCESS),
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    })
}
