//! The agent's serving key pair: generated into `<data-dir>/tls/` (`agent.crt`, `agent.key`
//! 0600) the first time, kept across restarts, one per agent (never one shared by a
//! DaemonSet's pods). Self-signed: whoever calls the agent trusts exactly this certificate, by
//! the fingerprint the agent publishes in its `Agent` status, read through the API. A new pair
//! is made when the names change or two thirds of its ten years have passed; to rotate the key
//! by hand, remove the directory and restart (the new fingerprint is published at
//! registration, and peers read it again when the old one stops matching).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;

use ringrift_tls::pki::{self, CA_VALIDITY, CertInfo, Pem};

/// The key pair and its fingerprint.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Certificate and key.
    pub pem: Pem,
    /// `sha256:<hex>` of the certificate.
    pub fingerprint: String,
}

/// Why the key pair could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or written.
    #[error(transparent)]
    File(#[from] ringrift_tls::files::FileError),
    /// A certificate could not be made or read.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// The serving setup failed.
    #[error(transparent)]
    Serve(#[from] ringrift_tls::serve::ServeError),
}

/// The names the certificate carries: loopback, the listen address (unless it is every
/// address) and the advertised endpoint's host. Pinning does not look at them; they are for
/// people reading the certificate and for tools that check names.
pub fn names(listen: SocketAddr, endpoint: &str) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    if !listen.ip().is_unspecified() {
        names.insert(listen.ip().to_string());
    }
    let host = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let host = host
        .rsplit_once(':')
        .map_or(host, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.parse::<std::net::IpAddr>().is_ok() || pki::valid_dns_name(host) {
        names.insert(host.to_owned());
    }
    names
}

fn read(path: &Path) -> Result<String, TlsError> {
    Ok(ringrift_tls::files::read(path)?)
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), TlsError> {
    Ok(ringrift_tls::files::store(path, text, private)?)
}

/// The agent's key pair for `names`: the stored one while it is good, else a new one (stored).
///
/// # Errors
/// [`TlsError`] naming the file at fault.
pub fn load_or_create(
    data_dir: &Path,
    agent: &str,
    names: &BTreeSet<String>,
    now: i64,
) -> Result<Identity, TlsError> {
    let dir = data_dir.join("tls");
    let (cert, key) = (dir.join("agent.crt"), dir.join("agent.key"));
    if cert.exists() && key.exists() {
        let pem = Pem {
            cert: read(&cert)?,
            key: read(&key)?,
        };
        match CertInfo::from_pem(pem.cert.as_bytes(), &cert.display().to_string()) {
            Ok(info) if pem.private_key().is_ok() => match pki::renewal(&info, names, None, now) {
                None => {
                    return Ok(Identity {
                        fingerprint: info.fingerprint,
                        pem,
                    });
                }
                Some(why) => tracing::info!(cert = %cert.display(), "making a new serving key pair: {why}"),
            },
            Ok(_) => {
                tracing::warn!(key = %key.display(), "the stored key is unreadable; making a new key pair");
            }
            Err(e) => {
                tracing::warn!(error = %e, "the stored certificate is unreadable; making a new key pair");
            }
        }
    }
    let list: Vec<String> = names.iter().cloned().collect();
    let pem = pki::self_signed(&format!("ringrift-agent-{agent}"), &list, now, CA_VALIDITY)?;
    write(&key, &pem.key, true)?;
    write(&cert, &pem.cert, false)?;
    let info = pem.info()?;
    tracing::info!(cert = %cert.display(), fingerprint = %info.fingerprint, "generated the agent's serving key pair");
    Ok(Identity {
        fingerprint: info.fingerprint,
        pem,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn the_key_pair_is_kept_until_its_names_change() {
        let dir = std::env::temp_dir().join(format!("ringrift-agent-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let n = names("0.0.0.0:8770".parse().unwrap(), "https://10.0.0.5:8770");
        assert!(n.contains("10.0.0.5") && n.contains("localhost") && !n.contains("0.0.0.0"));
        let first = load_or_create(&dir, "a", &n, NOW).unwrap();
        let again = load_or_create(&dir, "a", &n, NOW + 3600).unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
        assert!(ringrift_tls::pin::valid(&first.fingerprint));
        let mode = std::fs::metadata(dir.join("tls/agent.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let moved = names("0.0.0.0:8770".parse().unwrap(), "https://node-7.example:8770");
        let other = load_or_create(&dir, "a", &moved, NOW + 7200).unwrap();
        assert_ne!(other.fingerprint, first.fingerprint);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn endpoint_hosts_become_names() {
        let n = names("127.0.0.1:1".parse().unwrap(), "https://[::1]:8770/");
        assert!(n.contains("::1") && n.contains("127.0.0.1"));
        let n = names("127.0.0.1:1".parse().unwrap(), "not a url");
        assert_eq!(n.len(), 3);
    }
}
