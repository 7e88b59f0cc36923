//! `ringrift apiserver`: the API server as a process.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::auth::Tokens;
use crate::auth::audit::AuditLog;

use crate::http::{ApiServer, Options, serve};
use crate::store::{Store, StoreError};

/// Everything `ringrift apiserver` needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Directory of the SQLite database; none keeps everything in memory.
    pub data_dir: Option<PathBuf>,
    /// The administrator's bearer token (user `admin`, group `system:masters`); with no token
    /// and no token file: no authentication.
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

/// A kubeconfig for a server at `url`, with `token` if the server requires one.
pub fn kubeconfig(url: &str, token: Option<&str>) -> String {
    // JSON strings are YAML flow scalars: quoting through serde_json escapes anything odd.
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    let user = token.map_or_else(|| "{}".to_owned(), |t| format!("{{token: {}}}", quote(t)));
    let url = quote(url);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: ringrift\n  cluster: {{server: {url}}}\n\
         users:\n- name: ringrift\n  user: {user}\ncontexts:\n- name: ringrift\n  \
         context: {{cluster: ringrift, user: ringrift, namespace: default}}\ncurrent-context: ringrift\n"
    )
}

/// Writes a file through a temporary sibling and a rename, so readers never see half of it.
fn write_atomically(path: &Path, content: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path)
}

/// Opens the store, binds, announces the address on stdout, writes the kubeconfig, and serves
/// until `shutdown` completes.
///
/// # Errors
/// When the store, the listener or the kubeconfig cannot be set up.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let Config {
        listen,
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
    let store = match &data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| RunError::DataDir {
                path: dir.clone(),
                source,
            })?;
            let path = dir.join("apiserver.db");
            Store::open(&path, watch_history)
                .await
                .map_err(|source| RunError::Store {
                    path: path.display().to_string(),
                    source,
                })?
        }
        None => Store::in_memory(watch_history)
            .await
            .map_err(|source| RunError::Store {
                path: "memory".into(),
                source,
            })?,
    };
    let mut tokens = Tokens::none();
    if let Some(token) = &token {
        tokens = tokens.with_admin(token);
    }
    if let Some(path) = &token_file {
        let text = std::fs::read_to_string(path).map_err(|e| RunError::TokenFile {
            path: path.clone(),
            source: Box::new(e),
        })?;
        tokens = tokens.parse_file(&text).map_err(|e| RunError::TokenFile {
            path: path.clone(),
            source: Box::new(e),
        })?;
    }
    let audit = match &audit_log {
        Some(path) => Some(Arc::new(AuditLog::open(path).map_err(|source| {
            RunError::AuditLog {
                path: path.clone(),
                source,
            }
        })?)),
        None => None,
    };
    let auth = tokens.enabled();
    let options = Options {
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
    let url = format!("http://{address}");
    if let Some(path) = &kubeconfig_path {
        write_atomically(path, &kubeconfig(&url, token.as_deref())).map_err(|source| {
            RunError::Kubeconfig {
                path: path.clone(),
                source,
            }
        })?;
    }
    println!("ringrift apiserver listening on {url}");
    tracing::info!(%url, data_dir = ?data_dir, auth, rbac, audit_log = ?audit_log, "serving");
    serve(listener, server, shutdown).await;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_is_valid_yaml_for_kubectl() {
        let text = kubeconfig("http://127.0.0.1:1234", Some("s3\"cret"));
        let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(doc["clusters"][0]["cluster"]["server"], "http://127.0.0.1:1234");
        assert_eq!(doc["users"][0]["user"]["token"], "s3\"cret");
        assert_eq!(doc["current-context"], "ringrift");
        let open: serde_json::Value = serde_saphyr::from_str(&kubeconfig("http://x", None)).unwrap();
        assert!(open["users"][0]["user"].as_object().unwrap().is_empty());
    }
}
