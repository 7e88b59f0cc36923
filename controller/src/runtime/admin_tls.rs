//! The admin port's certificate: the operator's files (`--admin-tls-cert-file`,
//! `--admin-tls-key-file`, for example a cert-manager Secret; read again every minute when they
//! change), or else a self-signed certificate made at start. Probes and Prometheus connect
//! without checking it (the chart's ServiceMonitor says `insecureSkipVerify` unless a
//! certificate is given); what `/metrics` protects is behind the metrics token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ringrift_tls::pki::{self, LEAF_VALIDITY, Pem};
use ringrift_tls::serve::{Acceptor, certified_key};
use tokio_util::sync::CancellationToken;

/// The admin port's certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
#[error("failed to set up TLS on the admin port: {0}")]
pub struct AdminTlsError(String);

fn read_pair(cert: &PathBuf, key: &PathBuf) -> Result<Pem, String> {
    let read =
        |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| format!("failed to read {}: {e}", p.display()));
    Ok(Pem {
        cert: read(cert)?,
        key: read(key)?,
    })
}

fn modified(files: &(PathBuf, PathBuf)) -> (Option<SystemTime>, Option<SystemTime>) {
    let at = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (at(&files.0), at(&files.1))
}

/// The acceptor of the admin port bound at `bound`, and the served certificate's fingerprint.
///
/// # Errors
/// [`AdminTlsError`] when the files cannot be read or the certificate made.
pub(super) fn acceptor(
    files: Option<&(PathBuf, PathBuf)>,
    bound: SocketAddr,
) -> Result<(Acceptor, String), AdminTlsError> {
    let pem = if let Some((cert, key)) = files {
        read_pair(cert, key).map_err(AdminTlsError)?
    } else {
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
        if !bound.ip().is_unspecified() {
            names.push(bound.ip().to_string());
        }
        pki::self_signed("ringrift-controller", &names, ringrift_tls::now(), LEAF_VALIDITY)
            .map_err(|e| AdminTlsError(e.to_string()))?
    };
    let fingerprint = pem.info().map_err(|e| AdminTlsError(e.to_string()))?.fingerprint;
    let key =
        certified_key(&pem, "the admin port's certificate").map_err(|e| AdminTlsError(e.to_string()))?;
    let acceptor = Acceptor::new(key, None).map_err(|e| AdminTlsError(e.to_string()))?;
    Ok((acceptor, fingerprint))
}

/// Serves the files' new certificate whenever they change (checked every minute).
pub(super) async fn keep_current(
    files: (PathBuf, PathBuf),
    acceptor: Arc<Acceptor>,
    stop: CancellationToken,
) {
    let mut seen = modified(&files);
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
            () = stop.cancelled() => return,
        }
        let now = modified(&files);
        if now == seen {
            continue;
        }
        match read_pair(&files.0, &files.1).and_then(|pem| {
            certified_key(&pem, "the admin port's new certificate").map_err(|e| e.to_string())
        }) {
            Ok(key) => {
                acceptor.replace_certificate(key);
                seen = now;
                tracing::info!(cert = %files.0.display(), "serving the admin port's new certificate");
            }
            Err(e) => {
                tracing::warn!(error = %e, "the admin port's new certificate is unusable; keeping the current one");
            }
        }
    }
}
