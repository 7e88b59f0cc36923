//! How the roles that talk to the API find it: `--kubeconfig`, else the usual inference
//! (`KUBECONFIG`, `~/.kube/config`, in-cluster).

use std::path::PathBuf;

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// Connection options.
#[derive(Debug, clap::Args)]
pub struct KubeArgs {
    /// Kubeconfig file of the API server (for example the one `ringrift apiserver
    /// --write-kubeconfig` wrote). Unset: `KUBECONFIG`, `~/.kube/config` or in-cluster.
    #[arg(long, env = "RINGRIFT_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

/// A client for the API server.
///
/// # Errors
/// When the kubeconfig cannot be read or names no usable cluster.
pub async fn client(args: &KubeArgs) -> anyhow::Result<kube::Client> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .with_context(|| format!("failed to read the kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("failed to load the kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("failed to find the API server: pass --kubeconfig")?,
    };
    kube::Client::try_from(config).context("failed to build the API client")
}
