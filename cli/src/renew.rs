//! Renewing a joined agent's client certificate before it expires, as kubelets rotate theirs:
//! after two thirds of its lifetime, a new key is made on the box and a signing request for it
//! is sent to `POST /ringrift/v1/renew` over TLS authenticated by the current certificate; the
//! new certificate and key replace the old ones in `<data-dir>/kubeconfig` (mode 0600, written
//! whole, then renamed). `ringrift join` renews at start when it is due, and while the agent
//! runs it renews at the due time and restarts the agent on the new credential (running tasks
//! are adopted, as after any restart).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use hyper::{Method, StatusCode};
use ringrift_tls::pki::{CertInfo, Pem};
use serde_json::{Value, json};

/// What a joined box's kubeconfig holds.
#[derive(Debug, Clone)]
pub struct Credential {
    /// The server URL.
    pub url: String,
    /// The cluster CA, PEM.
    pub ca: String,
    /// The agent's certificate and key, PEM.
    pub identity: Pem,
}

/// Reads the kubeconfig `ringrift join` wrote.
///
/// # Errors
/// When it cannot be read or lacks one of its parts.
pub fn read(path: &Path) -> anyhow::Result<Credential> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let doc: Value =
        serde_saphyr::from_str(&text).with_context(|| format!("{} is not a kubeconfig", path.display()))?;
    let field = |pointer: &str| -> anyhow::Result<String> {
        doc.pointer(pointer)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("{} has no {pointer}", path.display()))
    };
    let decode = |pointer: &str| -> anyhow::Result<String> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(field(pointer)?)
            .with_context(|| format!("{pointer} in {} is not base64", path.display()))?;
        String::from_utf8(bytes).with_context(|| format!("{pointer} in {} is not PEM", path.display()))
    };
    Ok(Credential {
        url: field("/clusters/0/cluster/server")?,
        ca: decode("/clusters/0/cluster/certificate-authority-data")?,
        identity: Pem {
            cert: decode("/users/0/user/client-certificate-data")?,
            key: decode("/users/0/user/client-key-data")?,
        },
    })
}

/// What the certificate in `credential` says.
///
/// # Errors
/// When it does not parse.
pub fn info(credential: &Credential) -> anyhow::Result<CertInfo> {
    let der =
        ringrift_tls::pki::certificates(credential.identity.cert.as_bytes(), "the agent's certificate")?
            .into_iter()
            .next()
            .context("the kubeconfig holds no certificate")?;
    Ok(CertInfo::from_der(&der)?)
}

/// When, in Unix seconds, the certificate is to be renewed: after two thirds of its lifetime.
pub fn due(cert: &CertInfo) -> i64 {
    ringrift_tls::pki::renew_at(cert)
}

/// How long to wait before trying a failed renewal again (pure): a tenth of the time left,
/// between 10 s and 10 minutes.
pub fn retry_after(not_after: i64, now: i64) -> Duration {
    let left = u64::try_from((not_after - now).max(0)).unwrap_or(0);
    Duration::from_secs((left / 10).clamp(10, 600))
}

/// Renews the certificate in the kubeconfig at `path` now; returns the new certificate's end.
///
/// # Errors
/// When the server cannot be reached or refuses, or the file cannot be written (the old one is
/// then left as it was).
pub async fn renew(path: &Path, name: &str) -> anyhow::Result<i64> {
    let credential = read(path)?;
    let authority = crate::join::authority(&credential.url)?;
    let (key, request) = ringrift_tls::pki::signing_request(&ringrift_crds::identity::agent_user(name))?;
    let trusted = ringrift_tls::client::with_ca(credential.ca.as_bytes(), Some(&credential.identity))?;
    let (status, answer) = crate::join::call(
        &authority,
        trusted,
        Method::POST,
        "/ringrift/v1/renew",
        None,
        Some(&json!({"certificateSigningRequest": request})),
    )
    .await?;
    if status != StatusCode::OK {
        let message = answer["message"].as_str().unwrap_or("no reason given");
        anyhow::bail!("the server refused to renew the certificate of {name} ({status}): {message}");
    }
    let cert = answer["certificate"]
        .as_str()
        .context("the server's answer holds no certificate")?
        .to_owned();
    let renewed = Credential {
        identity: Pem { cert, key },
        ..credential
    };
    let not_after = info(&renewed)?.not_after;
    crate::join::write_kubeconfig(path, &renewed.url, &renewed.ca, &renewed.identity)?;
    Ok(not_after)
}

/// Renews at start when the certificate is due (or past due); the caller goes on with whatever
/// the kubeconfig then holds. An expired certificate that cannot be renewed is an error that
/// says how to join again.
///
/// # Errors
/// Only when the certificate has expired and could not be renewed.
pub async fn at_start(path: &Path, name: &str) -> anyhow::Result<()> {
    let cert = info(&read(path)?)?;
    let now = ringrift_tls::now();
    if now < due(&cert) {
        return Ok(());
    }
    match renew(path, name).await {
        Ok(until) => {
            println!(
                "ringrift join: renewed the certificate of {name} (valid until {})",
                unix_text(until)
            );
            Ok(())
        }
        Err(e) if now < cert.not_after => {
            eprintln!(
                "ringrift join: the certificate of {name} is due for renewal, which failed ({e:#}); going on with it until {}",
                unix_text(cert.not_after)
            );
            Ok(())
        }
        Err(e) => Err(e.context(format!(
            "the agent's certificate in {} expired at {} and could not be renewed; join again with a new token (`ringrift server token create`), after removing that file",
            path.display(),
            unix_text(cert.not_after)
        ))),
    }
}

/// Waits until the certificate is due, then renews it (trying again after failures); returns
/// once the kubeconfig holds the new one.
pub async fn when_due(path: PathBuf, name: String) {
    loop {
        let cert = match read(&path).and_then(|c| info(&c)) {
            Ok(cert) => cert,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the agent's certificate to renew it");
                tokio::time::sleep(Duration::from_secs(600)).await;
                continue;
            }
        };
        let wait = u64::try_from(due(&cert) - ringrift_tls::now()).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(wait)).await;
        match renew(&path, &name).await {
            Ok(until) => {
                tracing::info!(agent = %name, until = %unix_text(until), "renewed the agent's certificate; restarting the agent on it");
                return;
            }
            Err(e) => {
                let retry = retry_after(cert.not_after, ringrift_tls::now());
                tracing::warn!(agent = %name, error = %e, ?retry, "renewing the agent's certificate failed; trying again");
                tokio::time::sleep(retry).await;
            }
        }
    }
}

fn unix_text(unix: i64) -> String {
    jiff::Timestamp::from_second(unix).map_or_else(|_| unix.to_string(), |t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_renewals_are_retried_within_the_time_left() {
        assert_eq!(retry_after(1000, 0), Duration::from_secs(100));
        assert_eq!(retry_after(50, 0), Duration::from_secs(10), "at least 10 s");
        assert_eq!(
            retry_after(0, 100),
            Duration::from_secs(10),
            "expired: still 10 s"
        );
        assert_eq!(
            retry_after(365 * 86_400, 0),
            Duration::from_secs(600),
            "at most 10 minutes"
        );
    }

    #[test]
    fn a_written_kubeconfig_reads_back() {
        let dir = std::env::temp_dir().join(format!("renew-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("kubeconfig");
        let ca = ringrift_tls::pki::Ca::generate("test-ca", ringrift_tls::now()).unwrap();
        let identity = ca
            .client(
                "ringrift:agent:box",
                Some("ringrift:agents"),
                ringrift_tls::now(),
                3000,
            )
            .unwrap();
        crate::join::write_kubeconfig(&path, "https://198.18.0.1:6443", ca.cert_pem(), &identity).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.url, "https://198.18.0.1:6443");
        assert_eq!(back.ca, ca.cert_pem());
        assert_eq!(back.identity, identity);
        let cert = info(&back).unwrap();
        assert!(due(&cert) > ringrift_tls::now() && due(&cert) < cert.not_after);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
