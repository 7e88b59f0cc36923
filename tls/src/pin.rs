//! Calling an agent: its serving certificate is trusted by its SHA-256 fingerprint, which the
//! caller read from the agent's `Agent` status through the API it already trusts. No CA, no
//! names, no validity dates: the key pair is the agent's identity.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::pki::fingerprint;
use crate::verify::Signatures;

/// A presented certificate whose fingerprint is not the pinned one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the certificate presented has fingerprint {presented}, not the pinned {pinned}")]
pub struct PinMismatch {
    /// The pin.
    pub pinned: String,
    /// What came.
    pub presented: String,
}

/// Whether `s` is a fingerprint as [`fingerprint`] writes them.
pub fn valid(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Trusts the certificate with `fingerprint`, or (none) any certificate; either way the
/// handshake's signatures are checked with the presented key.
#[derive(Debug)]
struct Pinned {
    fingerprint: Option<String>,
    signatures: Signatures,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(pinned) = &self.fingerprint else {
            return Ok(ServerCertVerified::assertion());
        };
        let presented = fingerprint(end_entity);
        if presented == *pinned {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch {
                    pinned: pinned.clone(),
                    presented,
                }))),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.schemes()
    }
}

/// Configurations made by [`client_config`], by fingerprint, kept so that connections to the
/// same peer share one session cache: the second connection resumes the first one's TLS
/// session (no certificate, no signature to make or check), which matters when a pull opens a
/// connection to each of a swarm's holders. Bounded: emptied when it reaches [`KEPT_CONFIGS`].
static CONFIGS: std::sync::Mutex<Option<std::collections::HashMap<String, Arc<ClientConfig>>>> =
    std::sync::Mutex::new(None);

/// How many pinned configurations [`CONFIGS`] holds at most (one per peer certificate).
const KEPT_CONFIGS: usize = 4096;

/// A client configuration that trusts exactly the certificate with `fingerprint`; the same one
/// for the same fingerprint, so its sessions resume. A resumed session was made with a server
/// that showed that certificate (the cache is per configuration, hence per pin).
///
/// # Errors
/// Only if the crypto provider supports no protocol version (never for ring).
pub fn client_config(fingerprint: &str) -> Result<Arc<ClientConfig>, rustls::Error> {
    let mut kept = CONFIGS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let kept = kept.get_or_insert_with(std::collections::HashMap::new);
    if let Some(config) = kept.get(fingerprint) {
        return Ok(config.clone());
    }
    let config = new_client_config(fingerprint)?;
    if kept.len() >= KEPT_CONFIGS {
        kept.clear();
    }
    kept.insert(fingerprint.to_owned(), config.clone());
    Ok(config)
}

fn new_client_config(fingerprint: &str) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = crate::provider();
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            fingerprint: Some(fingerprint.to_owned()),
            signatures: Signatures::new(provider),
        }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration that trusts any server: only for reading public data whose
/// integrity the caller checks itself, as `ringrift join` reads the cluster CA and then checks
/// it against the hash it was given. Send nothing secret over it.
///
/// # Errors
/// Only if the crypto provider supports no protocol version (never for ring).
pub fn discovery_config() -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = crate::provider();
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            fingerprint: None,
            signatures: Signatures::new(provider),
        }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The name to send in the handshake for `host` (an IP address or a DNS name; pinning ignores
/// it, but the handshake needs one).
pub fn server_name(host: &str) -> ServerName<'static> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned())
        .unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()))
}

/// A failed connection to a pinned peer.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// TCP did not connect.
    #[error("cannot connect to {authority}: {source}")]
    Tcp {
        /// `host:port`.
        authority: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The handshake failed (a pin mismatch among other causes; see [`crate::trust::classify`]).
    #[error("TLS handshake with {authority} failed: {source}")]
    Handshake {
        /// `host:port`.
        authority: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("{authority} did not answer within {within:?}")]
    Timeout {
        /// `host:port`.
        authority: String,
        /// The limit.
        within: Duration,
    },
}

/// Connects to `authority` (`host:port`) over TLS, trusting only the certificate `config`
/// pins, within `timeout` for TCP and the handshake together.
///
/// # Errors
/// [`ConnectError`].
pub async fn connect(
    authority: &str,
    config: Arc<ClientConfig>,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, ConnectError> {
    let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
    let attempt = async {
        let tcp = TcpStream::connect(authority)
            .await
            .map_err(|source| ConnectError::Tcp {
                authority: authority.to_owned(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        tokio_rustls::TlsConnector::from(config)
            .connect(server_name(host), tcp)
            .await
            .map_err(|source| ConnectError::Handshake {
                authority: authority.to_owned(),
                source,
            })
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| ConnectError::Timeout {
            authority: authority.to_owned(),
            within: timeout,
        })?
}

/// Records the certificate a server presents and ends the handshake there.
#[derive(Debug)]
struct Capture {
    seen: std::sync::Mutex<Option<Vec<u8>>>,
    signatures: Signatures,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(end_entity.to_vec());
        Err(rustls::Error::General("certificate captured".into()))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("certificate captured".into()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("certificate captured".into()))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.schemes()
    }
}

/// The certificate `authority` (`host:port`) presents, read without trusting it and without
/// sending anything but a TLS hello: to explain why a connection was not trusted.
///
/// # Errors
/// When nothing answers, or the answer is not a TLS server's certificate.
pub async fn presented(authority: &str, timeout: Duration) -> Result<crate::pki::CertInfo, ConnectError> {
    let provider = crate::provider();
    let capture = Arc::new(Capture {
        seen: std::sync::Mutex::new(None),
        signatures: Signatures::new(provider.clone()),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Handshake {
            authority: authority.to_owned(),
            source: std::io::Error::other(e),
        })?
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let handshake = connect(authority, Arc::new(config), timeout).await;
    let seen = capture
        .seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    match (seen, handshake) {
        (Some(der), _) => crate::pki::CertInfo::from_der(&der).map_err(|e| ConnectError::Handshake {
            authority: authority.to_owned(),
            source: std::io::Error::other(e),
        }),
        (None, Err(e)) => Err(e),
        (None, Ok(_)) => Err(ConnectError::Handshake {
            authority: authority.to_owned(),
            source: std::io::Error::other("no certificate presented"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_checked_for_shape() {
        assert!(valid(&format!("sha256:{}", "ab".repeat(32))));
        for bad in [
            "",
            "sha256:",
            &format!("sha1:{}", "ab".repeat(32)),
            &format!("sha256:{}", "AB".repeat(32)),
            &format!("sha256:{}", "ab".repeat(31)),
        ] {
            assert!(!valid(bad), "{bad}");
        }
    }

    #[test]
    fn server_names_for_hosts_and_addresses() {
        assert!(matches!(server_name("10.0.0.1"), ServerName::IpAddress(_)));
        assert!(matches!(server_name("[::1]"), ServerName::IpAddress(_)));
        assert!(matches!(server_name("node-1.example"), ServerName::DnsName(_)));
    }
}
