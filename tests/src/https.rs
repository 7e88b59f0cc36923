//! A minimal HTTP/1.1 client for raw requests (one connection each), so tests can send exactly
//! the bytes they mean, malformed ones included, over TLS as every server here speaks it:
//! trusting a CA and presenting a client certificate (the API server, from its kubeconfig),
//! trusting a pinned fingerprint (an agent, a controller's admin port), or trusting anything (as
//! the kubelet's HTTPS probes do). Plain TCP only to show that plain HTTP is refused.

// Test harness: a failed unwrap is a failed test with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::missing_panics_doc
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use ringrift_tls::pki::Pem;
use rustls::ClientConfig;

/// What the API server's kubeconfig says: where it is, its CA, the admin's certificate.
#[derive(Debug, Clone)]
pub struct Kubeconfig {
    /// `https://host:port`.
    pub server: String,
    /// The CA bundle, PEM.
    pub ca: Option<String>,
    /// The client certificate, when the user has one.
    pub identity: Option<Pem>,
    /// The bearer token, when the user has one.
    pub token: Option<String>,
}

impl Kubeconfig {
    /// Reads the first cluster and user of a kubeconfig file.
    ///
    /// # Errors
    /// When it cannot be read or parsed.
    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("failed to read {}: {e}", path.display()))?;
        let doc: serde_json::Value =
            serde_saphyr::from_str(&text).map_err(|e| format!("failed to parse {}: {e}", path.display()))?;
        let decode = |v: &serde_json::Value| {
            v.as_str().and_then(|s| {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
            })
        };
        let cluster = &doc["clusters"][0]["cluster"];
        let user = &doc["users"][0]["user"];
        let identity = match (
            decode(&user["client-certificate-data"]),
            decode(&user["client-key-data"]),
        ) {
            (Some(cert), Some(key)) => Some(Pem { cert, key }),
            _ => None,
        };
        Ok(Self {
            server: cluster["server"].as_str().unwrap_or_default().to_owned(),
            ca: decode(&cluster["certificate-authority-data"]),
            identity,
            token: user["token"].as_str().map(str::to_owned),
        })
    }
}

/// The URL and certificate fingerprint a server announces on stdout (`ringrift agent <name>:
/// REST on https://… (certificate sha256:…)`, and the controller's admin port likewise).
///
/// # Panics
/// When the line says otherwise.
pub fn announced_endpoint(line: &str) -> (String, String) {
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("https://"))
        .unwrap_or_else(|| panic!("no https:// URL in {line:?}"))
        .to_owned();
    let fingerprint = line
        .split_whitespace()
        .find_map(|w| w.trim_end_matches(')').strip_prefix("sha256:"))
        .map_or_else(
            || panic!("no certificate fingerprint in {line:?}"),
            |h| format!("sha256:{h}"),
        );
    (url, fingerprint)
}

/// A raw HTTP/1.1 client for one server.
#[derive(Debug, Clone)]
pub struct HttpClient {
    address: String,
    tls: Option<Arc<ClientConfig>>,
}

/// `host:port` of a URL (`https://host:port/...`) or of a bare `host:port`.
pub fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

impl HttpClient {
    /// Plain TCP: only to show a TLS port refuses it.
    pub fn plain(url: &str) -> Self {
        Self {
            address: authority(url),
            tls: None,
        }
    }

    /// The same server, presenting no client certificate (a token may still be sent).
    #[must_use]
    pub fn without_identity(&self, kubeconfig: &Kubeconfig) -> Self {
        let ca = kubeconfig.ca.as_deref().unwrap_or_default();
        Self {
            address: self.address.clone(),
            tls: ringrift_tls::client::with_ca(ca.as_bytes(), None).ok(),
        }
    }

    /// TLS trusting the CA and presenting the identity of `kubeconfig`.
    ///
    /// # Errors
    /// When the CA or identity is unusable.
    pub fn from_kubeconfig(kubeconfig: &Kubeconfig) -> Result<Self, String> {
        let ca = kubeconfig.ca.as_deref().ok_or("the kubeconfig has no CA")?;
        let config = ringrift_tls::client::with_ca(ca.as_bytes(), kubeconfig.identity.as_ref())
            .map_err(|e| e.to_string())?;
        Ok(Self {
            address: authority(&kubeconfig.server),
            tls: Some(config),
        })
    }

    /// TLS to `url` trusting the CA certificate `ca_pem`, presenting no client certificate.
    ///
    /// # Errors
    /// When the CA is unusable.
    pub fn trusting(url: &str, ca_pem: &str) -> Result<Self, String> {
        Ok(Self {
            address: authority(url),
            tls: Some(ringrift_tls::client::with_ca(ca_pem.as_bytes(), None).map_err(|e| e.to_string())?),
        })
    }

    /// TLS trusting exactly the certificate with `fingerprint`.
    ///
    /// # Errors
    /// When the configuration cannot be built.
    pub fn pinned(url: &str, fingerprint: &str) -> Result<Self, String> {
        Ok(Self {
            address: authority(url),
            tls: Some(ringrift_tls::pin::client_config(fingerprint).map_err(|e| e.to_string())?),
        })
    }

    /// TLS trusting any certificate, as the kubelet's HTTPS probes do.
    pub fn unverified(url: &str) -> Self {
        let config = ringrift_tls::pin::discovery_config().ok();
        Self {
            address: authority(url),
            tls: config,
        }
    }

    /// `host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A raw HTTP/1.1 request; returns the status code and body.
    ///
    /// # Errors
    /// When the connection or the handshake fails.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, String), String> {
        let address = self.address.as_str();
        let tcp = TcpStream::connect(address).map_err(|e| format!("failed to connect to {address}: {e}"))?;
        tcp.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            request.extend([*name, ": ", *value, "\r\n"]);
        }
        request.push_str("\r\n");
        let response = if let Some(config) = &self.tls {
            let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
            let conn =
                rustls::ClientConnection::new(Arc::clone(config), ringrift_tls::pin::server_name(host))
                    .map_err(|e| e.to_string())?;
            let socket = tcp.try_clone().map_err(|e| e.to_string())?;
            let mut stream = rustls::StreamOwned::new(conn, tcp);
            exchange(&mut stream, request.as_bytes(), body, &socket)?
        } else {
            let socket = tcp.try_clone().map_err(|e| e.to_string())?;
            let mut tcp = tcp;
            exchange(&mut tcp, request.as_bytes(), body, &socket)?
        };
        let text = String::from_utf8_lossy(&response).into_owned();
        let code = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("no HTTP status in {text:?}"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Ok((code, body))
    }
}

/// Bodies above this size are sent only after a short look for an early answer (a 413 for a
/// declared length over the limit): a server that answers and closes while a large body is
/// still being written resets the connection, and the reset can swallow its answer.
const EARLY_ANSWER_ABOVE: usize = 64 * 1024;

/// Sends the request and reads the response until the server closes. A server may answer (413,
/// say) and close before the whole body is sent: a failed write is only an error if no
/// response comes back either.
fn exchange(
    stream: &mut (impl Read + Write),
    head: &[u8],
    body: &[u8],
    tcp: &TcpStream,
) -> Result<Vec<u8>, String> {
    let mut response = Vec::new();
    let mut sent = stream.write_all(head).and_then(|()| stream.flush());
    if sent.is_ok() && body.len() > EARLY_ANSWER_ABOVE {
        let _ = tcp.set_read_timeout(Some(Duration::from_millis(300)));
        let mut first = [0u8; 4096];
        match stream.read(&mut first) {
            Ok(n) if n > 0 => response.extend_from_slice(&first[..n]),
            _ => {}
        }
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
    }
    if response.is_empty() && sent.is_ok() {
        sent = stream.write_all(body).and_then(|()| stream.flush());
    }
    let read = stream.read_to_end(&mut response);
    if response.is_empty() {
        if let Err(e) = sent {
            return Err(format!("failed to send: {e}"));
        }
        if let Err(e) = read {
            return Err(format!("failed to read the answer: {e}"));
        }
    }
    Ok(response)
}
