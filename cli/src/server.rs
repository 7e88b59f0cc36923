//! `ringrift server`: the control plane of a fleet without Kubernetes, for a head host. The
//! embedded API server (TLS, RBAC, state under `--dir`, port 6443 on every address by default)
//! and the controller replicas (as `ringrift up` runs them), no agents and no demo loop. GPU
//! boxes join with `ringrift join`; the command to run on them is printed at start.
//!
//! `ringrift server token create|list|delete` manages the bootstrap tokens they join with
//! (Secrets `kube-system/bootstrap-token-<id>`, as kubeadm keeps them), through the API with
//! the administrator's kubeconfig in `--dir`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use ringrift_apiserver::bootstrap::{self, Stored, Token};

use crate::up::{EmbeddedApi, claim, identities, install_crds, roles};

/// Options of `ringrift server`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServerArgs {
    /// Manage bootstrap tokens instead of running the server.
    #[command(subcommand)]
    pub command: Option<ServerCommand>,
    /// Where the state lives: the API server's database and CA, credentials, logs. Keep it
    /// across upgrades: restarting with the same directory resumes.
    #[arg(
        long,
        env = "RINGRIFT_SERVER_DIR",
        default_value = "/var/lib/ringrift-server",
        global = true
    )]
    pub dir: PathBuf,
    /// Address of the API server.
    #[arg(long, env = "RINGRIFT_SERVER_LISTEN", default_value = "0.0.0.0:6443")]
    pub listen: SocketAddr,
    /// The name or address GPU boxes reach this host by (repeatable): put in the serving
    /// certificate and in the printed join command. Default: this host's name.
    #[arg(long, env = "RINGRIFT_SERVER_ADVERTISE", value_delimiter = ',')]
    pub advertise: Vec<String>,
    /// Controller replicas (one leads).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=4))]
    pub controllers: u32,
    /// Start from this backup (`ringrift server backup`) instead of the current state, which
    /// is kept beside it. Every client then relists: versions they hold are too old to watch
    /// from, and new ones continue above every version served before.
    #[arg(long, value_name = "FILE")]
    pub restore: Option<PathBuf>,
    /// How long the client certificate of a box that joins is valid; boxes renew theirs
    /// after two thirds of it (short values are for tests).
    #[arg(long, default_value = "8760h", value_parser = crate::duration::parse, hide = true)]
    pub agent_certificate_validity: Duration,
    /// Where the web dashboard is served, over TLS with a certificate from the cluster CA
    /// (port 0: a free one); its login link is printed at start.
    #[arg(
        long,
        env = "RINGRIFT_SERVER_DASHBOARD_LISTEN",
        default_value = "0.0.0.0:8443"
    )]
    pub dashboard_listen: SocketAddr,
}

/// `ringrift server token …`.
#[derive(Debug, clap::Subcommand)]
pub enum ServerCommand {
    /// Bootstrap tokens for `ringrift join`.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Write a consistent snapshot of the state to FILE, while the server runs (as `etcdctl
    /// snapshot save`); start from it with `ringrift server --restore FILE`.
    Backup {
        /// Where to write it (must not exist).
        file: PathBuf,
    },
}

/// `ringrift server token create|list|delete`.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Make a token and print it (with the join command).
    Create {
        /// How long it works (`0s`: forever).
        #[arg(long, default_value = "24h", value_parser = crate::duration::parse)]
        ttl: Duration,
        /// How many boxes may join with it (default: any number until it expires).
        #[arg(long)]
        usages: Option<u32>,
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List the tokens: id, expiry, uses.
    List,
    /// Delete a token (by id or whole token): boxes can no longer join with it.
    Delete {
        /// The token id (the part before the dot) or the whole token.
        id: String,
    },
}

/// The URL joining boxes use.
fn join_url(args: &ServerArgs, port: u16) -> String {
    host_url(args, port)
}

/// The dashboard's serving certificate, from the cluster CA, for the names the API server's
/// certificate has (the advertised names, this host's name, loopback) and the dashboard's own
/// address; made at every start into `<dir>/dashboard/` (key 0600).
fn dashboard_certificate(
    dir: &Path,
    args: &ServerArgs,
    at: SocketAddr,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let ca = identities::cluster_ca(&dir.join("apiserver"))?;
    let mut names: Vec<String> = args.advertise.clone();
    names.extend(ringrift_apiserver::certs::host_name());
    names.extend(["localhost".to_owned(), "127.0.0.1".to_owned()]);
    if !at.ip().is_unspecified() {
        names.push(at.ip().to_string());
    }
    names.sort();
    names.dedup();
    let pem = ca
        .serving(
            "ringrift-dashboard",
            &names,
            ringrift_tls::now(),
            ringrift_tls::pki::LEAF_VALIDITY,
        )
        .context("failed to issue the dashboard's certificate")?;
    let files = (
        dir.join("dashboard").join("tls.crt"),
        dir.join("dashboard").join("tls.key"),
    );
    std::fs::create_dir_all(dir.join("dashboard")).context("failed to create the dashboard's directory")?;
    ringrift_tls::files::write_private(&files.1, pem.key.as_bytes())
        .with_context(|| format!("failed to write {}", files.1.display()))?;
    std::fs::write(&files.0, pem.cert.as_bytes())
        .with_context(|| format!("failed to write {}", files.0.display()))?;
    Ok(files)
}

/// `https://` the first advertised name, else this host's name (the serving certificates name
/// both), and `port`.
fn host_url(args: &ServerArgs, port: u16) -> String {
    let host = args
        .advertise
        .first()
        .cloned()
        .or_else(ringrift_apiserver::certs::host_name)
        .unwrap_or_else(|| "localhost".into());
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    format!("https://{host}:{port}")
}

/// `sha256:<hex>` of the cluster CA's public key, from `dir`.
fn ca_hash(dir: &Path) -> anyhow::Result<String> {
    Ok(identities::cluster_ca(&dir.join("apiserver"))?.hash())
}

/// The join command for `token`.
fn join_command(url: &str, token: &Token, hash: &str) -> String {
    format!("ringrift join {url} --token {token} --ca-cert-hash {hash}")
}

async fn admin_client(dir: &Path) -> anyhow::Result<Client> {
    let kubeconfig = dir.join("kubeconfig");
    anyhow::ensure!(
        kubeconfig.exists(),
        "{} does not exist: is `ringrift server --dir {}` running (or has it run)?",
        kubeconfig.display(),
        dir.display()
    );
    crate::kubeclient::client(&crate::kubeclient::KubeArgs {
        kubeconfig: Some(kubeconfig),
    })
    .await
}

/// Stores the fleet's cluster key where joining agents are handed it
/// ([`bootstrap::CLUSTER_KEY_SECRET`]), readable by the administrator only.
async fn share_cluster_key(client: &Client, path: &Path) -> anyhow::Result<()> {
    let key = std::fs::read(path).with_context(|| format!("failed to read {}", path.display()))?;
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": bootstrap::CLUSTER_KEY_SECRET, "namespace": bootstrap::NAMESPACE},
        "data": {"key": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &key)},
    }))?;
    Api::<Secret>::namespaced(client.clone(), bootstrap::NAMESPACE)
        .patch(
            bootstrap::CLUSTER_KEY_SECRET,
            &kube::api::PatchParams::apply("ringrift-server").force(),
            &kube::api::Patch::Apply(&secret),
        )
        .await
        .context("failed to store the cluster key for joining agents")?;
    Ok(())
}

/// Creates a token in the API.
async fn create_token(
    client: &Client,
    ttl: Duration,
    usages: Option<u32>,
    description: &str,
) -> anyhow::Result<Token> {
    let token = Token::generate();
    let expires = (!ttl.is_zero())
        .then(|| jiff::Timestamp::now().checked_add(jiff::SignedDuration::try_from(ttl).unwrap_or_default()))
        .transpose()
        .context("--ttl is too long")?;
    let secret: Secret = serde_json::from_value(bootstrap::secret(&token, expires, usages, description))?;
    Api::<Secret>::namespaced(client.clone(), bootstrap::NAMESPACE)
        .create(&PostParams::default(), &secret)
        .await
        .context("failed to store the token")?;
    Ok(token)
}

/// The tokens stored, usable or not.
async fn tokens(client: &Client) -> anyhow::Result<Vec<Stored>> {
    let secrets = Api::<Secret>::namespaced(client.clone(), bootstrap::NAMESPACE)
        .list(&ListParams::default().fields(&format!("type={}", bootstrap::SECRET_TYPE)))
        .await
        .context("failed to list the tokens")?;
    Ok(secrets
        .items
        .iter()
        .filter_map(|s| serde_json::to_value(s).ok())
        .filter_map(|v| Stored::from_secret(&v))
        .collect())
}

/// Deletes expired tokens (kubeadm's token cleaner does the same): the banner makes one at every
/// start, and they would pile up.
async fn prune_expired(client: &Client) {
    let Ok(stored) = tokens(client).await else { return };
    let api = Api::<Secret>::namespaced(client.clone(), bootstrap::NAMESPACE);
    let now = jiff::Timestamp::now();
    for t in stored.iter().filter(|t| t.expires.is_some_and(|e| e <= now)) {
        let name = format!("{}{}", bootstrap::NAME_PREFIX, t.id);
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(token = t.id, "deleted an expired bootstrap token"),
            Err(e) => tracing::warn!(token = t.id, error = %e, "failed to delete an expired bootstrap token"),
        }
    }
}

async fn token_command(dir: &Path, advertise: &[String], command: TokenCommand) -> anyhow::Result<()> {
    let client = admin_client(dir).await?;
    // The URL the running server printed (its port may have been chosen at start).
    let url = std::fs::read_to_string(dir.join("join-url")).unwrap_or_else(|_| {
        format!(
            "https://{}:6443",
            advertise.first().map_or("HEAD", String::as_str)
        )
    });
    match command {
        TokenCommand::Create {
            ttl,
            usages,
            description,
        } => {
            let token = create_token(&client, ttl, usages, &description).await?;
            println!("{token}");
            eprintln!("join with: {}", join_command(&url, &token, &ca_hash(dir)?));
        }
        TokenCommand::List => {
            println!("{:<8} {:<22} {:<8} DESCRIPTION", "ID", "EXPIRES", "USES");
            for t in tokens(&client).await? {
                let expires = t.expires.map_or_else(
                    || "never".to_owned(),
                    |e| e.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                );
                let uses = match t.usage_limit {
                    Some(limit) => format!("{}/{limit}", t.usages),
                    None => t.usages.to_string(),
                };
                println!("{:<8} {expires:<22} {uses:<8} {}", t.id, t.description);
            }
        }
        TokenCommand::Delete { id } => {
            let id = id.split('.').next().unwrap_or(&id).to_owned();
            Api::<Secret>::namespaced(client, bootstrap::NAMESPACE)
                .delete(
                    &format!("{}{id}", bootstrap::NAME_PREFIX),
                    &DeleteParams::default(),
                )
                .await
                .with_context(|| format!("failed to delete token {id}"))?;
            println!("deleted token {id}");
        }
    }
    Ok(())
}

/// Runs `ringrift server` (or one of its token commands).
pub(crate) fn run(mut args: ServerArgs) -> anyhow::Result<ExitCode> {
    let dir = std::path::absolute(&args.dir).with_context(|| format!("bad --dir {}", args.dir.display()))?;
    let runtime = crate::runtime()?;
    match args.command.take() {
        Some(ServerCommand::Token(command)) => {
            runtime.block_on(token_command(&dir, &args.advertise, command))?;
            Ok(ExitCode::SUCCESS)
        }
        Some(ServerCommand::Backup { file }) => {
            let database = database(&dir);
            anyhow::ensure!(database.exists(), "no state in {} to back up", dir.display());
            anyhow::ensure!(!file.exists(), "{} exists; give a new file", file.display());
            let at = runtime
                .block_on(ringrift_apiserver::store::backup::backup(&database, &file))
                .with_context(|| format!("failed to back up {} to {}", database.display(), file.display()))?;
            println!(
                "backed up {} at resourceVersion {at} to {}",
                dir.display(),
                file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        None => runtime.block_on(serve(&args, &dir)),
    }
}

/// The API server's database in `dir`.
fn database(dir: &Path) -> PathBuf {
    dir.join("apiserver").join("apiserver.db")
}

async fn serve(args: &ServerArgs, dir: &Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("failed to create {}", dir.display()))?;
    let lock = claim(dir)?;
    if let Some(file) = &args.restore {
        std::fs::create_dir_all(dir.join("apiserver"))?;
        let r = ringrift_apiserver::store::backup::restore(&database(dir), file)
            .await
            .with_context(|| format!("failed to restore from {}", file.display()))?;
        println!(
            "restored {} (at resourceVersion {}); versions continue at {} (above the {} served before){}",
            file.display(),
            r.backup_revision,
            r.continues_at,
            r.replaced_revision,
            r.kept
                .map(|k| format!("; the replaced state is kept in {}", k.display()))
                .unwrap_or_default()
        );
    }
    let secrets = roles::Secrets::in_dir(dir)?;
    let api = EmbeddedApi::start_with(
        dir,
        args.listen,
        &args.advertise,
        Some(args.agent_certificate_validity),
    )
    .await?;
    let port = api
        .url()?
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(args.listen.port());
    let url = &join_url(args, port);
    std::fs::write(dir.join("join-url"), url)
        .with_context(|| format!("failed to write {}", dir.join("join-url").display()))?;
    let client = crate::kubeclient::client(&crate::kubeclient::KubeArgs {
        kubeconfig: Some(api.kubeconfig.clone()),
    })
    .await?;
    install_crds(&client).await?;
    identities::grant(&client, "default").await?;
    share_cluster_key(&client, &secrets.cluster_key_path()).await?;
    let dashboard = crate::up::free_address(args.dashboard_listen)?;
    let files = dashboard_certificate(dir, args, dashboard)?;
    let mut roles = roles::start(
        dir,
        &api.url()?,
        &secrets,
        (args.controllers, 0),
        &roles::Dashboard::Tls { at: dashboard, files },
    )?;
    prune_expired(&client).await;
    // As `kubeadm init`: a fresh token for the banner, valid for a day (stored tokens are
    // never printed back).
    let token = create_token(
        &client,
        Duration::from_secs(24 * 3600),
        None,
        "printed by ringrift server at start",
    )
    .await?;
    println!(
        "ringrift server: serving {url} (state in {}, logs in {})",
        dir.display(),
        dir.join("logs").display()
    );
    println!("kubectl: export KUBECONFIG={}", api.kubeconfig.display());
    let base = host_url(args, dashboard.port());
    std::fs::write(dir.join("dashboard-url"), format!("{base}/\n"))
        .with_context(|| format!("failed to write {}", dir.join("dashboard-url").display()))?;
    println!(
        "{} (its certificate is from the cluster CA, {})",
        crate::up::dashboard_line(&secrets, &base)?,
        ringrift_apiserver::run::ca_files(&dir.join("apiserver"))
            .0
            .display()
    );
    println!("join a GPU box (this token works for 24 h; `ringrift server token create` makes more):");
    println!("  {}", join_command(url, &token, &ca_hash(dir)?));
    let stop = crate::apiserver::shutdown_on_signal();
    let ended = loop {
        tokio::select! {
            () = stop.cancelled() => break None,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if let Some(why) = roles::exited(&mut roles, dir) {
            break Some(why);
        }
    };
    println!("stopping…");
    roles::stop(&mut roles, Duration::from_secs(20)).await;
    api.stop().await;
    let _ = std::fs::remove_file(&lock);
    if let Some(why) = ended {
        bail!("{why}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_join_command_names_the_advertised_host_and_port() {
        let args = |advertise: &[&str], listen: &str| ServerArgs {
            command: None,
            dir: PathBuf::from("/tmp/x"),
            listen: listen.parse().unwrap(),
            advertise: advertise.iter().map(|s| (*s).to_owned()).collect(),
            controllers: 2,
            restore: None,
            agent_certificate_validity: Duration::from_secs(3600),
            dashboard_listen: "127.0.0.1:0".parse().unwrap(),
        };
        assert_eq!(
            join_url(&args(&["head.example", "198.18.0.2"], "0.0.0.0:6443"), 6443),
            "https://head.example:6443"
        );
        assert_eq!(
            join_url(&args(&["2001:db8::1"], "[::]:0"), 7443),
            "https://[2001:db8::1]:7443"
        );
        let token = Token::parse("abcdef.0123456789abcdef").unwrap();
        assert_eq!(
            join_command("https://h:6443", &token, "sha256:ab"),
            "ringrift join https://h:6443 --token abcdef.0123456789abcdef --ca-cert-hash sha256:ab"
        );
    }
}
