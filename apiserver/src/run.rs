//! `ringrift apiserver`: the API server as a process.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use ringrift_tls::pki::{LEAF_VALIDITY, Pem};
use ringrift_tls::serve::{Acceptor, certified_key};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::audit::AuditLog;
use crate::auth::{MASTERS, Tokens};
use crate::certs::{CertError, Certs, TlsOptions, serving_names};
use crate::http::{ApiServer, Options, serve};
use crate::store::{Store, StoreError};

/// The user name of the administrator credential in the kubeconfig the server writes.
pub const ADMIN_USER: &str = "admin";

/// Everything `ringrift apiserver` needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// The address clients reach the server at (the kubeconfig's, and a name of the serving
    /// certificate); default: the listen address, or 127.0.0.1 when listening on every one.
    pub advertise: Option<IpAddr>,
    /// TLS settings; `None` serves plain HTTP (insecure: benchmark baselines only).
    pub tls: Option<TlsOptions>,
    /// Directory of the SQLite database; none keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// The administrator's bearer token (user `admin`, group `system:masters`). Over plain
    /// HTTP with no token and no token file there is no authentication at all.
    pub token: Option<String>,
    /// A token file in the format of kube-apiserver's `--token-auth-file`.
    pub token_file: Option<PathBuf>,
    /// Enforce RBAC on users outside `system:masters`.
    pub rbac: bool,
    /// Where to append the audit log (one JSON line per API request).
    pub audit_log: Option<PathBuf>,
    /// Requests without a token are `system:anonymous`, subject to RBAC (needs `rbac`).
    pub anonymous: bool,
    /// Where to write a kubeconfig for this server, if anywhere.
    pub kubeconfig: Option<PathBuf>,
    /// Watch events kept for clients resuming from an older resourceVersion.
    pub watch_history: u64,
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Interval of watch bookmarks.
    pub bookmark_interval: Duration,
}

/// A failure to start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The store could not be opened.
    #[error("failed to open the store in {path}")]
    Store {
        /// The database path, or `memory`.
        path: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// The data directory could not be created.
    #[error("failed to create the data directory {path}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The address could not be bound.
    #[error("failed to listen on {address}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The token file could not be read.
    #[error("failed to read the token file {path}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The audit log could not be opened.
    #[error("failed to open the audit log {path}")]
    AuditLog {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The certificates could not be set up.
    #[error("failed to set up TLS")]
    Tls {
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The kubeconfig could not be written.
    #[error("failed to write the kubeconfig {path}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// How a kubeconfig's user authenticates.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// Not at all (anonymous, or an open plain-HTTP server).
    None,
    /// A bearer token.
    Token(&'a str),
    /// A bearer token read from a file (read again when it changes).
    TokenFile(&'a Path),
    /// A client certificate and its key.
    Certificate(&'a Pem),
}

/// A kubeconfig for a server at `url` that trusts the CA bundle `ca_pem` (when given; else the
/// system's roots) and authenticates with `credential`.
pub fn kubeconfig(url: &str, ca_pem: Option<&str>, credential: Credential<'_>) -> String {
    // JSON strings are YAML flow scalars: quoting through serde_json escapes anything odd.
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    let b64 = |s: &str| quote(&base64::engine::general_purpose::STANDARD.encode(s));
    let user = match credential {
        Credential::None => "{}".to_owned(),
        Credential::Token(t) => format!("{{token: {}}}", quote(t)),
        Credential::TokenFile(p) => format!("{{tokenFile: {}}}", quote(&p.display().to_string())),
        Credential::Certificate(pem) => format!(
            "{{client-certificate-data: {}, client-key-data: {}}}",
            b64(&pem.cert),
            b64(&pem.key)
        ),
    };
    let ca = ca_pem.map_or_else(String::new, |ca| {
        format!(", certificate-authority-data: {}", b64(ca))
    });
    let url = quote(url);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: ringrift\n  cluster: {{server: {url}{ca}}}\n\
         users:\n- name: ringrift\n  user: {user}\ncontexts:\n- name: ringrift\n  \
         context: {{cluster: ringrift, user: ringrift, namespace: default}}\ncurrent-context: ringrift\n"
    )
}

/// The cluster CA's files in a data directory (`pki/ca.crt`, `pki/ca.key`), for tools that
/// issue credentials next to a running server (`ringrift up`).
pub fn ca_files(data_dir: &Path) -> (PathBuf, PathBuf) {
    let pki = data_dir.join("pki");
    (pki.join("ca.crt"), pki.join("ca.key"))
}

/// The URL clients reach a server bound to `bound` at.
fn url_of(scheme: &str, bound: SocketAddr, advertise: Option<IpAddr>) -> String {
    let ip = advertise.unwrap_or(if bound.ip().is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        bound.ip()
    });
    format!("{scheme}://{}", SocketAddr::new(ip, bound.port()))
}

fn tls_error(e: impl std::error::Error + Send + Sync + 'static) -> RunError {
    RunError::Tls { source: Box::new(e) }
}

/// The acceptor for `tls` and, with TLS, the certificates to keep current.
fn acceptor(
    tls: Option<&TlsOptions>,
    data_dir: Option<&Path>,
    listen: SocketAddr,
    advertise: Option<IpAddr>,
) -> Result<(Acceptor, Option<Certs>), RunError> {
    let Some(options) = tls else {
        tracing::warn!(
            "serving plain HTTP (--insecure-plain-http): credentials cross the network in clear text"
        );
        return Ok((Acceptor::insecure_plain(), None));
    };
    let names = serving_names(listen, advertise, &options.sans);
    let (certs, serving) = Certs::open(data_dir, options, names, ringrift_tls::now()).map_err(tls_error)?;
    let key = certified_key(&serving, "the serving certificate").map_err(tls_error)?;
    let roots = certs.client_roots().map_err(tls_error)?;
    if let Ok(info) = serving.info() {
        tracing::info!(certificate = %info.describe(), names = ?info.names, "serving TLS");
    }
    Ok((Acceptor::new(key, Some(roots)).map_err(tls_error)?, Some(certs)))
}

/// Checks the serving certificate every `every` and serves a renewed (or changed) one to new
/// connections, until `stop`.
async fn keep_current(mut certs: Certs, acceptor: Arc<Acceptor>, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = stop.cancelled() => return,
        }
        match certs.refresh(ringrift_tls::now()) {
            Ok(None) => {}
            Ok(Some((pem, why))) => match certified_key(&pem, "the new serving certificate") {
                Ok(key) => {
                    acceptor.replace_certificate(key);
                    let described = pem.info().map(|i| i.describe()).unwrap_or_default();
                    tracing::info!(certificate = %described, "serving a new certificate: {why}");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the new serving certificate is unusable; keeping the current one");
                }
            },
            Err(e) => tracing::warn!(error = %e, "failed to renew the serving certificate; retrying"),
        }
    }
}

/// Writes the kubeconfig for `url` with an administrator credential: a client certificate
/// from the cluster CA over TLS, the admin token (if any) over plain HTTP.
fn write_kubeconfig(
    path: &Path,
    url: &str,
    certs: Option<&Certs>,
    token: Option<&str>,
) -> Result<(), RunError> {
    let kubeconfig_error = |source| RunError::Kubeconfig {
        path: path.to_owned(),
        source,
    };
    let text = match certs {
        Some(certs) => {
            let admin = certs
                .ca()
                .client(ADMIN_USER, Some(MASTERS), ringrift_tls::now(), LEAF_VALIDITY)
                .map_err(|e| tls_error(CertError::from(e)))?;
            kubeconfig(url, certs.serving_ca_pem(), Credential::Certificate(&admin))
        }
        None => kubeconfig(url, None, token.map_or(Credential::None, Credential::Token)),
    };
    ringrift_tls::files::write_private(path, text.as_bytes()).map_err(kubeconfig_error)
}

/// Opens the store, binds, announces the address on stdout, writes the kubeconfig, and serves
/// until `shutdown` completes.
///
/// # Errors
/// When the store, the certificates, the listener or the kubeconfig cannot be set up.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let Config {
        listen,
        advertise,
        tls,
        data_dir,
        token,
        token_file,
        rbac,
        audit_log,
        anonymous,
        kubeconfig: kubeconfig_path,
        watch_history,
        max_body,
        bookmark_interval,
    } = config;
    let store = open_store(data_dir.as_deref(), watch_history).await?;
    let tokens = load_tokens(token.as_deref(), token_file.as_deref())?;
    let audit = match &audit_log {
        Some(path) => Some(Arc::new(AuditLog::open(path).map_err(|source| {
            RunError::AuditLog {
                path: path.clone(),
                source,
            }
        })?)),
        None => None,
    };
    let (acceptor, certs) = acceptor(tls.as_ref(), data_dir.as_deref(), listen, advertise)?;
    let signer = certs
        .as_ref()
        .map(Certs::signer)
        .transpose()
        .map_err(tls_error)?
        .map(Arc::new);
    let agent_cert_validity = tls.as_ref().map_or(crate::bootstrap::AGENT_CERT_VALIDITY, |t| {
        i64::try_from(t.agent_certificate_validity.as_secs()).unwrap_or(i64::MAX)
    });
    let options = Options {
        signer,
        agent_cert_validity,
        open: certs.is_none() && !tokens.enabled(),
        tokens,
        rbac,
        audit,
        anonymous,
        max_body,
        bookmark_interval,
    };
    let server = ApiServer::new(store, options)
        .await
        .map_err(|source| RunError::Store {
            path: "startup".into(),
            source,
        })?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| RunError::Listen {
            address: listen,
            source,
        })?;
    let address = listener.local_addr().map_err(|source| RunError::Listen {
        address: listen,
        source,
    })?;
    let url = url_of(acceptor.scheme(), address, advertise);
    if let Some(path) = &kubeconfig_path {
        write_kubeconfig(path, &url, certs.as_ref(), token.as_deref())?;
    }
    let acceptor = Arc::new(acceptor);
    let tasks = TaskTracker::new();
    if let (Some(certs), Some(options)) = (certs, &tls) {
        tasks.spawn(keep_current(
            certs,
            acceptor.clone(),
            options.renew_check,
            shutdown.clone(),
        ));
    }
    tasks.close();
    println!("ringrift apiserver listening on {url}");
    tracing::info!(%url, data_dir = ?data_dir, rbac, audit_log = ?audit_log, "serving");
    serve(listener, acceptor, Arc::clone(&server), shutdown).await;
    server.finish_background(Duration::from_secs(5)).await;
    tasks.wait().await;
    tracing::info!("stopped");
    Ok(())
}

async fn open_store(data_dir: Option<&Path>, watch_history: u64) -> Result<Store, RunError> {
    match data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| RunError::DataDir {
                path: dir.to_owned(),
                source,
            })?;
            let path = dir.join("apiserver.db");
            Store::open(&path, watch_history)
                .await
                .map_err(|source| RunError::Store {
                    path: path.display().to_string(),
                    source,
                })
        }
        None => Store::in_memory(watch_history)
            .await
            .map_err(|source| RunError::Store {
                path: "memory".into(),
                source,
            }),
    }
}

fn load_tokens(token: Option<&str>, token_file: Option<&Path>) -> Result<Tokens, RunError> {
    let mut tokens = Tokens::none();
    if let Some(token) = token {
        tokens = tokens.with_admin(token);
    }
    if let Some(path) = token_file {
        let text = std::fs::read_to_string(path).map_err(|e| RunError::TokenFile {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
        tokens = tokens.parse_file(&text).map_err(|e| RunError::TokenFile {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfigs_are_valid_yaml_for_kubectl() {
        let text = kubeconfig(
            "https://127.0.0.1:1234",
            Some("CA PEM"),
            Credential::Token("s3\"cret"),
        );
        let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(doc["clusters"][0]["cluster"]["server"], "https://127.0.0.1:1234");
        let ca = doc["clusters"][0]["cluster"]["certificate-authority-data"]
            .as_str()
            .unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD.decode(ca).unwrap(),
            b"CA PEM"
        );
        assert_eq!(doc["users"][0]["user"]["token"], "s3\"cret");
        assert_eq!(doc["current-context"], "ringrift");
        let open: serde_json::Value =
            serde_saphyr::from_str(&kubeconfig("http://x", None, Credential::None)).unwrap();
        assert!(open["users"][0]["user"].as_object().unwrap().is_empty());
        assert!(
            open["clusters"][0]["cluster"]
                .get("certificate-authority-data")
                .is_none()
        );
        let pem = Pem {
            cert: "CERT".into(),
            key: "KEY".into(),
        };
        let with_cert: serde_json::Value =
            serde_saphyr::from_str(&kubeconfig("https://x", None, Credential::Certificate(&pem))).unwrap();
        assert_eq!(with_cert["users"][0]["user"]["client-key-data"], "S0VZ");
        let file: serde_json::Value = serde_saphyr::from_str(&kubeconfig(
            "https://x",
            None,
            Credential::TokenFile(Path::new("/var/run/token")),
        ))
        .unwrap();
        assert_eq!(file["users"][0]["user"]["tokenFile"], "/var/run/token");
    }

    #[test]
    fn urls_name_a_reachable_address() {
        let bound: SocketAddr = "0.0.0.0:6443".parse().unwrap();
        assert_eq!(url_of("https", bound, None), "https://127.0.0.1:6443");
        assert_eq!(
            url_of("https", bound, Some("198.18.0.1".parse().unwrap())),
            "https://198.18.0.1:6443"
        );
        assert_eq!(url_of("http", "[::1]:1".parse().unwrap(), None), "http://[::1]:1");
    }
}
