//! `ringrift join URL --token <id>.<secret> --ca-cert-hash sha256:<hex>`: a GPU box joins the
//! fleet of a `ringrift server`, in kubeadm's model, then runs the agent.
//!
//! 1. Reads the server's CA (`/ringrift/v1/cluster-info`, public) and checks the SHA-256 of its
//!    public key against `--ca-cert-hash`. Nothing secret is sent before this check passes.
//! 2. Over TLS that now trusts only that CA: sends the bootstrap token and a certificate
//!    signing request for a key made here (the key never leaves the box), and gets back a
//!    client certificate for `ringrift:agent:<name>` (node-restricted: it may write only its
//!    own objects).
//! 3. Writes `<data-dir>/kubeconfig` (mode 0600) and runs the agent with it. Run again with the
//!    same data directory, it resumes with the stored credential (no token needed).

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use ringrift_apiserver::run::{Credential, kubeconfig};
use ringrift_tls::pki::Pem;
use serde_json::{Value, json};

use crate::agent::AgentArgs;

/// Options of `ringrift join`.
#[derive(Debug, clap::Args)]
pub struct JoinArgs {
    /// The server, `https://HOST:6443`, as `ringrift server` prints it.
    pub url: String,
    /// The bootstrap token, `<id>.<secret>` (`ringrift server token create`). Not needed to
    /// resume a box that joined already.
    #[arg(long, env = "RINGRIFT_JOIN_TOKEN")]
    pub token: Option<String>,
    /// `sha256:<hex>` of the server CA's public key, as `ringrift server` prints it: the CA is
    /// trusted only if it matches.
    #[arg(long, env = "RINGRIFT_CA_CERT_HASH")]
    pub ca_cert_hash: Option<String>,
    /// Print a systemd unit that runs this command (and so the agent), then exit.
    #[arg(long)]
    pub print_systemd_unit: bool,
    #[command(flatten)]
    pub agent: AgentArgs,
}

/// `host:port` of `https://host[:port][/]` (port 6443 when none is given).
///
/// # Errors
/// When the URL is not `https://`.
pub fn authority(url: &str) -> anyhow::Result<String> {
    let rest = url.strip_prefix("https://").with_context(|| {
        format!("the server URL {url:?} must be https://HOST:PORT, as `ringrift server` prints it")
    })?;
    let host_port = rest.split('/').next().unwrap_or(rest);
    anyhow::ensure!(!host_port.is_empty(), "the server URL {url:?} names no host");
    // `[::1]` has colons but no port; `[::1]:7443` and `head:7443` end in one.
    let has_port = host_port
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
    Ok(if has_port {
        host_port.to_owned()
    } else {
        format!("{host_port}:6443")
    })
}

/// The hash as `sha256:<64 lowercase hex>`.
///
/// # Errors
/// When it is not one.
pub fn normalize_hash(hash: &str) -> anyhow::Result<String> {
    let hex = hash
        .trim()
        .strip_prefix("sha256:")
        .unwrap_or(hash.trim())
        .to_ascii_lowercase();
    anyhow::ensure!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "--ca-cert-hash {hash:?} is not sha256:<64 hex digits>, as `ringrift server` prints it"
    );
    Ok(format!("sha256:{hex}"))
}

/// One HTTP/1.1 request over TLS (`config`) to `authority`: the status and the body as JSON.
pub(crate) async fn call(
    authority: &str,
    config: std::sync::Arc<rustls::ClientConfig>,
    method: Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> anyhow::Result<(StatusCode, Value)> {
    let stream = ringrift_tls::pin::connect(authority, config, Duration::from_secs(15))
        .await
        .map_err(|e| match ringrift_tls::trust::classify(&e) {
            Some(f) => anyhow::anyhow!(
                "the server at {authority} is not the one the CA hash names ({}): {}",
                f.reason.label(),
                f.detail
            ),
            None => anyhow::anyhow!("cannot reach the server at {authority}: {e}"),
        })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", authority)
        .header("content-type", "application/json");
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let response = tokio::time::timeout(
        Duration::from_secs(30),
        sender.send_request(request.body(Full::new(bytes))?),
    )
    .await
    .with_context(|| format!("the server at {authority} did not answer within 30 s"))??;
    let status = response.status();
    let text = response.into_body().collect().await?.to_bytes();
    let value =
        serde_json::from_slice(&text).unwrap_or_else(|_| json!({"message": String::from_utf8_lossy(&text)}));
    Ok((status, value))
}

/// Trades the bootstrap token for this agent's credential: the CA (PEM) and the identity.
///
/// # Errors
/// A wrong CA hash, an unreachable server, or the server's refusal, said plainly.
pub async fn exchange(url: &str, token: &str, ca_cert_hash: &str, name: &str) -> anyhow::Result<Joined> {
    let authority = authority(url)?;
    let wanted = normalize_hash(ca_cert_hash)?;
    // 1. The CA, read without trusting anyone: public data, checked against the hash.
    let (status, info) = call(
        &authority,
        ringrift_tls::pin::discovery_config()?,
        Method::GET,
        "/ringrift/v1/cluster-info",
        None,
        None,
    )
    .await?;
    anyhow::ensure!(
        status == StatusCode::OK,
        "{url} does not offer joining ({status}): is it a `ringrift server` over TLS?"
    );
    let ca_pem = info["caCertificate"]
        .as_str()
        .context("the server's cluster-info holds no CA certificate")?
        .to_owned();
    let ca_der = ringrift_tls::pki::certificates(ca_pem.as_bytes(), "the server's CA")?
        .into_iter()
        .next()
        .context("the server's cluster-info holds no CA certificate")?;
    let got = ringrift_tls::pki::spki_hash(&ca_der)?;
    anyhow::ensure!(
        got == wanted,
        "the server's CA does not match --ca-cert-hash: it has {got}, you gave {wanted}. Check the hash \
         `ringrift server` printed; if it is right, this is not that server"
    );
    // 2. The token and a request for our own key, to the server that CA vouches for.
    let (key, request) = ringrift_tls::pki::signing_request(&ringrift_crds::identity::agent_user(name))?;
    let trusted = ringrift_tls::client::with_ca(ca_pem.as_bytes(), None)?;
    let body = json!({"name": name, "certificateSigningRequest": request});
    let (status, answer) = call(
        &authority,
        trusted,
        Method::POST,
        "/ringrift/v1/join",
        Some(token),
        Some(&body),
    )
    .await?;
    if status != StatusCode::OK {
        let message = answer["message"].as_str().unwrap_or("no reason given");
        anyhow::bail!("the server refused to let {name} join ({status}): {message}");
    }
    let cert = answer["certificate"]
        .as_str()
        .context("the server's answer holds no certificate")?
        .to_owned();
    let cluster_key = match answer["clusterKey"].as_str() {
        Some(b64) => Some(
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)
                .context("the server's cluster key is not base64")?,
        ),
        None => None,
    };
    Ok(Joined {
        ca: ca_pem,
        identity: Pem { cert, key },
        cluster_key,
    })
}

/// What joining gives a box.
pub struct Joined {
    /// The cluster CA, PEM.
    pub ca: String,
    /// The agent's client certificate and key.
    pub identity: Pem,
    /// The fleet's cluster key (gossip and fetches between agents), when the server has one.
    pub cluster_key: Option<Vec<u8>>,
}

/// A systemd unit running `ringrift join` with these arguments.
fn systemd_unit(exe: &Path, args: &[String]) -> String {
    let quoted: Vec<String> = args
        .iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@".contains(c))
            {
                a.clone()
            } else {
                format!("\"{}\"", a.replace('\\', "\\\\").replace('"', "\\\""))
            }
        })
        .collect();
    format!(
        "[Unit]\nDescription=RingRift agent (joined to a ringrift server)\nWants=network-online.target\n\
         After=network-online.target\n\n[Service]\nExecStart={} {}\n{}\
         Restart=always\nRestartSec=5\nKillMode=process\nTimeoutStopSec=30\nLimitNOFILE=65536\n\n\
         [Install]\nWantedBy=multi-user.target\n",
        exe.display(),
        quoted.join(" "),
        ringrift_agent::ALLOCATOR_ENV
            .iter()
            .fold(String::new(), |mut out, (k, v)| {
                let _ = writeln!(out, "Environment={k}={v}");
                out
            })
    )
}

/// Runs `ringrift join`.
pub(crate) fn run(mut args: JoinArgs) -> anyhow::Result<ExitCode> {
    if args.print_systemd_unit {
        let exe = std::env::current_exe().context("cannot find the ringrift executable")?;
        let passed: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| a != "--print-systemd-unit")
            .collect();
        print!("{}", systemd_unit(&exe, &passed));
        return Ok(ExitCode::SUCCESS);
    }
    anyhow::ensure!(
        args.agent.kube.kubeconfig.is_none(),
        "`ringrift join` writes its own kubeconfig (in --data-dir); drop --kubeconfig, or run `ringrift agent` instead"
    );
    let name = args.agent.name.clone().unwrap_or_else(crate::agent::default_name);
    anyhow::ensure!(
        crate::agent::valid_name(&name) && !name.contains('.') && name.len() <= 63,
        "--name {name:?}: an agent that joins is named by a DNS label (a-z, 0-9 and '-', at most 63)"
    );
    let data_dir = args.agent.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create --data-dir {}", data_dir.display()))?;
    let path = data_dir.join("kubeconfig");
    if path.exists() {
        println!(
            "ringrift join: {name} joined before; using the credential in {}",
            path.display()
        );
    } else {
        let token = args
            .token
            .as_deref()
            .context("--token is needed to join (`ringrift server token create` makes one)")?;
        let hash = args
            .ca_cert_hash
            .as_deref()
            .context("--ca-cert-hash is needed to join (`ringrift server` prints it)")?;
        ringrift_apiserver::bootstrap::Token::parse(token).map_err(|e| anyhow::anyhow!("--token: {e}"))?;
        let joined = crate::runtime()?.block_on(exchange(&args.url, token, hash, &name))?;
        write_kubeconfig(&path, &args.url, &joined.ca, &joined.identity)?;
        if let Some(key) = &joined.cluster_key {
            let key_file = data_dir.join("cluster-key");
            ringrift_tls::files::write_private(&key_file, key)
                .with_context(|| format!("cannot write {}", key_file.display()))?;
        }
        println!(
            "ringrift join: {name} joined {}; credential in {}",
            args.url,
            path.display()
        );
    }
    // The fleet's cluster key, as joining stored it, unless one was given.
    let key_file = data_dir.join("cluster-key");
    if args.agent.sync.cluster_key_file.is_none() && key_file.exists() {
        args.agent.sync.cluster_key_file = Some(key_file);
    }
    // A certificate due for renewal is renewed before the agent starts, and while it runs at
    // the due time; the agent then starts again on it.
    crate::runtime()?.block_on(crate::renew::at_start(&path, &name))?;
    args.agent.kube.kubeconfig = Some(path.clone());
    args.agent.name = Some(name.clone());
    let restart: crate::agent::Restart = Box::pin(crate::renew::when_due(path, name));
    match crate::agent::run_agent_until(args.agent, Some(restart))? {
        crate::agent::Ended::Stopped => Ok(ExitCode::SUCCESS),
        crate::agent::Ended::Restart => {
            // The same command again, in this process: it finds the new credential.
            use std::os::unix::process::CommandExt as _;
            let exe = std::env::current_exe().context("cannot find the ringrift executable")?;
            let error = std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .exec();
            Err(anyhow::Error::new(error)
                .context("cannot start the agent again after renewing its certificate"))
        }
    }
}

pub(crate) fn write_kubeconfig(path: &Path, url: &str, ca: &str, identity: &Pem) -> anyhow::Result<()> {
    let text = kubeconfig(
        url.trim_end_matches('/'),
        Some(ca),
        Credential::Certificate(identity),
    );
    ringrift_tls::files::write_private(path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_hashes_are_read_as_the_server_prints_them() {
        assert_eq!(authority("https://head:6443").unwrap(), "head:6443");
        assert_eq!(authority("https://198.18.0.2").unwrap(), "198.18.0.2:6443");
        assert_eq!(authority("https://head:7443/").unwrap(), "head:7443");
        assert_eq!(authority("https://[::1]").unwrap(), "[::1]:6443");
        assert_eq!(authority("https://[::1]:7443").unwrap(), "[::1]:7443");
        assert!(
            authority("http://head:6443")
                .unwrap_err()
                .to_string()
                .contains("https://HOST:PORT")
        );
        assert!(authority("head:6443").is_err());
        let hex = "AB".repeat(32);
        assert_eq!(
            normalize_hash(&format!("sha256:{hex}")).unwrap(),
            format!("sha256:{}", hex.to_lowercase())
        );
        assert_eq!(
            normalize_hash(&hex).unwrap(),
            format!("sha256:{}", hex.to_lowercase())
        );
        assert!(
            normalize_hash("sha256:abc")
                .unwrap_err()
                .to_string()
                .contains("--ca-cert-hash")
        );
    }

    #[test]
    fn the_unit_runs_the_same_command() {
        let unit = systemd_unit(
            Path::new("/usr/local/bin/ringrift"),
            &[
                "join".into(),
                "https://head:6443".into(),
                "--token".into(),
                "abcdef.0123456789abcdef".into(),
                "--name".into(),
                "gpu 1".into(),
            ],
        );
        assert!(unit.contains("ExecStart=/usr/local/bin/ringrift join https://head:6443 --token abcdef.0123456789abcdef --name \"gpu 1\"\n"), "{unit}");
        assert!(unit.contains("\nRestart=always\n") && unit.contains("WantedBy=multi-user.target"));
        assert!(
            unit.contains("\nEnvironment=RINGRIFT_ALLOCATOR=system\n")
                && unit.contains("\nEnvironment=MIMALLOC_ARENA_EAGER_COMMIT=0\n"),
            "{unit}"
        );
        assert!(
            unit.contains("KillMode=process"),
            "tasks outlive an agent restart: only the agent is stopped"
        );
    }
}
