//! The HTTP client one agent uses to fetch from another: HTTP/1.1 over TLS on one kept-alive
//! connection per request stream, trusting exactly the certificate whose fingerprint the
//! peer's `Agent` status publishes (see [`super::pins`]); the peer token as bearer; every
//! response bounded in size. Plain HTTP only to peers that advertise it, and only when this
//! agent runs with the insecure benchmark flag too.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use ringrift_tls::trust::{Failure, TrustMetrics};
use serde::Deserialize;

use super::gate::Gate;
use super::manifest::Manifest;

/// Longest wait for a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the next piece of a response.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest manifest accepted (a 1 TiB artifact in 4 MiB chunks lists 262,144 digests).
const MAX_MANIFEST: usize = 32 * 1024 * 1024;

/// A request to a peer that failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The endpoint is not `https://host:port` (or `http://` where plain HTTP is allowed).
    #[error("endpoint {0:?} is not https://host:port")]
    Endpoint(String),
    /// A plain-HTTP endpoint, and this agent does not speak plain HTTP.
    #[error(
        "refusing plain HTTP to {0}: agents speak TLS (the peer runs with --insecure-plain-http, this agent does not)"
    )]
    Plain(String),
    /// No fingerprint to trust the peer by.
    #[error("no certificate fingerprint is published for {0} in its Agent status; not trusting it")]
    Unpinned(String),
    /// The peer is not who its Agent status says (another certificate), or does not speak TLS.
    #[error("cannot trust {0}: {1}")]
    Untrusted(String, String),
    /// No connection.
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
    /// The exchange broke off.
    #[error("request to {0} failed: {1}")]
    Broken(String, String),
    /// No answer in time.
    #[error("{0} did not answer within {1:?}")]
    Timeout(String, Duration),
    /// A status other than success.
    #[error("{0} answered {1}: {2}")]
    Status(String, u16, String),
    /// More bytes than asked for, or an unparseable manifest.
    #[error("{0} sent a malformed answer: {1}")]
    Malformed(String, String),
    /// What was received could not be kept (this agent's trouble, not the peer's).
    #[error("cannot keep what was received: {0}")]
    Local(std::io::Error),
}

/// What a holder says about an artifact.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Chunks {
    /// Its manifest.
    #[serde(flatten)]
    pub manifest: Manifest,
    /// Whether it holds the whole.
    pub complete: bool,
    /// For a partial holder, `1` per chunk held.
    #[serde(default)]
    pub have: Option<String>,
    /// How often the holder sent each chunk lately, one digit per chunk.
    #[serde(default)]
    pub sent: Option<String>,
}

impl Chunks {
    /// The chunks the holder can serve; `None` for all.
    pub fn have(&self) -> Option<Vec<bool>> {
        if self.complete {
            return None;
        }
        Some(
            self.have
                .as_deref()
                .unwrap_or("")
                .chars()
                .map(|c| c == '1')
                .collect(),
        )
    }

    /// How often the holder sent each chunk lately; `None` when it did not say (or said
    /// something that does not fit the manifest).
    pub fn sent(&self) -> Option<Vec<u8>> {
        super::sent::decode(self.sent.as_deref()?, self.manifest.len())
    }
}

/// Logs and counts a peer's trust failure, and forgets its pin (it may have a new key; the next
/// lookup reads the Agent again).
#[derive(Debug, Clone)]
pub struct Reporter {
    /// The agent's trust counter.
    pub metrics: TrustMetrics,
    /// The pins to forget the peer's in.
    pub pins: Arc<super::pins::Pins>,
}

impl Reporter {
    fn report(&self, name: &str, authority: &str, pinned: &str, failure: &Failure) {
        self.metrics.record("agent", failure.reason);
        self.pins.forget(name);
        tracing::warn!(
            peer = %name,
            %authority,
            %pinned,
            reason = failure.reason.label(),
            "cannot trust the peer agent: {}",
            failure.detail
        );
    }
}

/// How a peer is reached.
#[derive(Debug, Clone)]
enum Transport {
    /// TLS, trusting the certificate with this fingerprint.
    Pinned(String, Arc<rustls::ClientConfig>),
    /// Plain TCP (insecure benchmark mode).
    Plain,
}

/// A peer's artifact endpoint.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Agent name.
    name: String,
    /// `host:port`.
    authority: String,
    token: String,
    transport: Transport,
    reporter: Option<Reporter>,
}

/// A kept-alive connection to a peer.
#[derive(Debug)]
pub struct Conn {
    sender: SendRequest<Empty<Bytes>>,
}

/// `host:port` of `endpoint` after `scheme`.
fn authority_of<'a>(endpoint: &'a str, scheme: &str) -> Option<&'a str> {
    endpoint
        .strip_prefix(scheme)
        .map(|a| a.trim_end_matches('/'))
        .filter(|a| !a.is_empty() && !a.contains('/') && a.contains(':'))
}

impl Peer {
    /// The agent `name` at `endpoint` (`https://host:port`, as in its `Agent` status), trusted
    /// by `fingerprint`. `http://` endpoints only with `allow_plain`.
    ///
    /// # Errors
    /// [`FetchError::Endpoint`], [`FetchError::Plain`], [`FetchError::Unpinned`].
    pub fn new(
        name: &str,
        endpoint: &str,
        fingerprint: Option<&str>,
        token: &str,
        allow_plain: bool,
    ) -> Result<Self, FetchError> {
        let (authority, transport) = if let Some(a) = authority_of(endpoint, "https://") {
            let fp = fingerprint
                .filter(|f| ringrift_tls::pin::valid(f))
                .ok_or_else(|| FetchError::Unpinned(name.to_owned()))?;
            let config = ringrift_tls::pin::client_config(fp)
                .map_err(|e| FetchError::Connect(a.to_owned(), e.to_string()))?;
            (a, Transport::Pinned(fp.to_owned(), config))
        } else if let Some(a) = authority_of(endpoint, "http://") {
            if !allow_plain {
                return Err(FetchError::Plain(endpoint.to_owned()));
            }
            (a, Transport::Plain)
        } else {
            return Err(FetchError::Endpoint(endpoint.to_owned()));
        };
        Ok(Self {
            name: name.to_owned(),
            authority: authority.to_owned(),
            token: token.to_owned(),
            transport,
            reporter: None,
        })
    }

    /// Reports trust failures through `reporter`.
    #[must_use]
    pub fn with_reporter(mut self, reporter: Reporter) -> Self {
        self.reporter = Some(reporter);
        self
    }

    /// `host:port`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    async fn connect(&self) -> Result<Conn, FetchError> {
        Ok(Conn {
            sender: self.open().await?,
        })
    }

    /// A new connection, for requests whose bodies are `B`.
    async fn open<B>(&self) -> Result<SendRequest<B>, FetchError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        match &self.transport {
            Transport::Pinned(pinned, config) => {
                let stream = ringrift_tls::pin::connect(&self.authority, Arc::clone(config), CONNECT_TIMEOUT)
                    .await
                    .map_err(|e| self.connect_failed(pinned, &e))?;
                self.handshake(stream).await
            }
            Transport::Plain => {
                let stream =
                    tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&self.authority))
                        .await
                        .map_err(|_| FetchError::Timeout(self.authority.clone(), CONNECT_TIMEOUT))?
                        .map_err(|e| FetchError::Connect(self.authority.clone(), e.to_string()))?;
                let _ = stream.set_nodelay(true);
                self.handshake(stream).await
            }
        }
    }

    /// HTTP/1.1 over `stream`, its connection driven on a task of its own.
    async fn handshake<S, B>(&self, stream: S) -> Result<SendRequest<B>, FetchError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| FetchError::Connect(self.authority.clone(), e.to_string()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// The error of a failed TLS connection; a trust failure is reported.
    fn connect_failed(&self, pinned: &str, e: &ringrift_tls::pin::ConnectError) -> FetchError {
        match ringrift_tls::trust::classify(e) {
            Some(failure) => {
                if let Some(r) = &self.reporter {
                    r.report(&self.name, &self.authority, pinned, &failure);
                }
                FetchError::Untrusted(self.authority.clone(), failure.detail)
            }
            None => match e {
                ringrift_tls::pin::ConnectError::Timeout { within, .. } => {
                    FetchError::Timeout(self.authority.clone(), *within)
                }
                other => FetchError::Connect(self.authority.clone(), other.to_string()),
            },
        }
    }

    async fn send(
        &self,
        conn: &mut Option<Conn>,
        path: &str,
        range: Option<&Range<u64>>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, FetchError> {
        if conn.as_ref().is_none_or(|c| c.sender.is_closed()) {
            *conn = Some(self.connect().await?);
        }
        let Some(c) = conn.as_mut() else {
            return Err(FetchError::Broken(self.authority.clone(), "no connection".into()));
        };
        let broken = |e: hyper::Error| FetchError::Broken(self.authority.clone(), e.to_string());
        c.sender.ready().await.map_err(broken)?;
        let mut request = hyper::Request::get(path)
            .header("host", &self.authority)
            .header("authorization", format!("Bearer {}", self.token));
        if let Some(r) = range {
            request = request.header("range", format!("bytes={}-{}", r.start, r.end.saturating_sub(1)));
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| FetchError::Broken(self.authority.clone(), e.to_string()))?;
        let response = tokio::time::timeout(READ_TIMEOUT, c.sender.send_request(request))
            .await
            .map_err(|_| FetchError::Timeout(self.authority.clone(), READ_TIMEOUT))?
            .map_err(|e| {
                *conn = None;
                broken(e)
            })?;
        Ok(response)
    }

    /// Hands each piece of a body of at most `max` bytes to `each`, taking it from `gate`'s
    /// bandwidth first; returns the bytes read.
    async fn frames(
        &self,
        response: hyper::Response<hyper::body::Incoming>,
        max: usize,
        gate: Option<&Gate>,
        mut each: impl FnMut(&[u8]) -> Result<(), FetchError>,
    ) -> Result<usize, FetchError> {
        let mut body = response.into_body();
        let mut read = 0usize;
        loop {
            let frame = tokio::time::timeout(READ_TIMEOUT, body.frame())
                .await
                .map_err(|_| FetchError::Timeout(self.authority.clone(), READ_TIMEOUT))?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| FetchError::Broken(self.authority.clone(), e.to_string()))?;
            let Ok(data) = frame.into_data() else { continue };
            if read + data.len() > max {
                return Err(FetchError::Malformed(
                    self.authority.clone(),
                    format!("more than the {max} bytes asked for"),
                ));
            }
            if let Some(g) = gate {
                g.throttle(data.len() as u64).await;
            }
            read += data.len();
            each(&data)?;
        }
        Ok(read)
    }

    /// Reads a body of at most `max` bytes.
    async fn body(
        &self,
        response: hyper::Response<hyper::body::Incoming>,
        max: usize,
    ) -> Result<Vec<u8>, FetchError> {
        let mut out = Vec::new();
        self.frames(response, max, None, |data| {
            out.extend_from_slice(data);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    async fn check_status(
        &self,
        response: hyper::Response<hyper::body::Incoming>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, FetchError> {
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        let text = self.body(response, 4096).await.unwrap_or_default();
        Err(FetchError::Status(
            self.authority.clone(),
            status,
            String::from_utf8_lossy(&text).into_owned(),
        ))
    }

    /// The holder's manifest of `digest` (and which chunks it holds).
    ///
    /// # Errors
    /// [`FetchError`].
    pub async fn chunks(&self, conn: &mut Option<Conn>, digest: &str) -> Result<Chunks, FetchError> {
        let response = self
            .send(conn, &format!("/v1/artifacts/{digest}/chunks"), None)
            .await?;
        let response = self.check_status(response).await?;
        let body = self.body(response, MAX_MANIFEST).await?;
        serde_json::from_slice(&body)
            .map_err(|e| FetchError::Malformed(self.authority.clone(), e.to_string()))
    }

    /// Bytes `range` of `digest`, exactly that many, handed to `sink` piece by piece as they
    /// arrive (within `gate`'s bandwidth).
    ///
    /// # Errors
    /// [`FetchError`]; a short body is [`FetchError::Broken`], an error of `sink`
    /// [`FetchError::Local`].
    pub async fn range(
        &self,
        conn: &mut Option<Conn>,
        digest: &str,
        range: Range<u64>,
        gate: &Gate,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(), FetchError> {
        let want = usize::try_from(range.end - range.start).unwrap_or(usize::MAX);
        let response = self
            .send(conn, &format!("/v1/artifacts/{digest}"), Some(&range))
            .await?;
        let response = self.check_status(response).await?;
        let read = self
            .frames(response, want, Some(gate), |data| {
                sink(data).map_err(FetchError::Local)
            })
            .await;
        match read {
            Ok(n) if n == want => Ok(()),
            Ok(n) => {
                *conn = None;
                Err(FetchError::Broken(
                    self.authority.clone(),
                    format!("short body: {n} of {want} bytes"),
                ))
            }
            Err(e) => {
                *conn = None;
                Err(e)
            }
        }
    }
}

/// A file's content as a request body, read in [`PUSH_BLOCK`] pieces.
fn file_body(
    file: tokio::fs::File,
) -> http_body_util::StreamBody<impl futures_util::Stream<Item = std::io::Result<hyper::body::Frame<Bytes>>>>
{
    use tokio::io::AsyncReadExt as _;
    let pieces = futures_util::stream::try_unfold(file, |mut file| async move {
        let mut block = vec![0u8; PUSH_BLOCK];
        let n = file.read(&mut block).await?;
        if n == 0 {
            return Ok(None);
        }
        block.truncate(n);
        Ok(Some((hyper::body::Frame::data(Bytes::from(block)), file)))
    });
    http_body_util::StreamBody::new(pieces)
}

/// Size of the pieces a pushed file is read and sent in.
const PUSH_BLOCK: usize = 1024 * 1024;
/// Longest wait for the answer to a push once its body is sent (the receiver syncs the file and
/// indexes it).
const PUSH_ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

impl Peer {
    /// Pushes the content of `artifact`, stored at `path`, to the peer (`PUT
    /// /v1/artifacts/{digest}`), which keeps it when the bytes are the digest.
    ///
    /// # Errors
    /// [`FetchError`]; a refusal is [`FetchError::Status`].
    pub async fn push(
        &self,
        artifact: &ringrift_crds::common::Artifact,
        path: &std::path::Path,
    ) -> Result<(), FetchError> {
        let file = tokio::fs::File::open(path).await.map_err(FetchError::Local)?;
        let length = file.metadata().await.map_err(FetchError::Local)?.len();
        let mut sender = self.open().await?;
        let broken = |e: &dyn std::fmt::Display| FetchError::Broken(self.authority.clone(), e.to_string());
        sender.ready().await.map_err(|e| broken(&e))?;
        let query = format!(
            "name={}&kind={}",
            percent(&artifact.name),
            crate::artifacts::kind_name(artifact.kind)
        );
        let request = hyper::Request::put(format!("/v1/artifacts/{}?{query}", artifact.digest))
            .header("host", &self.authority)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-length", length)
            .header("content-type", "application/octet-stream")
            .body(file_body(file))
            .map_err(|e| broken(&e))?;
        let response = tokio::time::timeout(PUSH_ANSWER_TIMEOUT, sender.send_request(request))
            .await
            .map_err(|_| FetchError::Timeout(self.authority.clone(), PUSH_ANSWER_TIMEOUT))?
            .map_err(|e| broken(&e))?;
        self.check_status(response).await.map(|_| ())
    }
}

/// `value` for a URL query: unreserved characters as they are, every other byte `%XX`.
fn percent(value: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(percent("games-0001.jsonl"), "games-0001.jsonl");
        assert_eq!(percent("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn endpoints() {
        let fp = format!("sha256:{}", "ab".repeat(32));
        let peer = |endpoint: &str, fp: Option<&str>, plain: bool| Peer::new("a", endpoint, fp, "t", plain);
        assert_eq!(
            peer("https://10.0.0.1:8770", Some(&fp), false)
                .unwrap()
                .authority(),
            "10.0.0.1:8770"
        );
        assert_eq!(peer("https://h:1/", Some(&fp), false).unwrap().authority(), "h:1");
        assert!(matches!(
            peer("https://h:1", None, false),
            Err(FetchError::Unpinned(_))
        ));
        assert!(matches!(
            peer("https://h:1", Some("sha256:short"), false),
            Err(FetchError::Unpinned(_))
        ));
        assert!(matches!(
            peer("http://h:1", Some(&fp), false),
            Err(FetchError::Plain(_))
        ));
        assert_eq!(peer("http://h:1", None, true).unwrap().authority(), "h:1");
        for bad in ["h:1", "https://", "https://h", "https://h:1/x", "ftp://h:1"] {
            assert!(
                matches!(peer(bad, Some(&fp), true), Err(FetchError::Endpoint(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn have_lists() {
        let c: Chunks = serde_json::from_str(
            r#"{"digest":"d","sizeBytes":9,"chunkSize":4,"chunks":["a","b","c"],"complete":false,"have":"101"}"#,
        )
        .unwrap();
        assert_eq!(c.have(), Some(vec![true, false, true]));
        let whole: Chunks =
            serde_json::from_str(r#"{"digest":"d","sizeBytes":0,"chunkSize":4,"chunks":[],"complete":true}"#)
                .unwrap();
        assert_eq!(whole.have(), None);
        assert_eq!(whole.sent(), None, "not reported");
        assert_eq!(c.sent(), None, "not reported");
        let reported: Chunks = serde_json::from_str(
            r#"{"digest":"d","sizeBytes":9,"chunkSize":4,"chunks":["a","b","c"],"complete":true,"sent":"201"}"#,
        )
        .unwrap();
        assert_eq!(reported.sent(), Some(vec![2, 0, 1]));
        let misfit: Chunks = serde_json::from_str(
            r#"{"digest":"d","sizeBytes":9,"chunkSize":4,"chunks":["a","b","c"],"complete":true,"sent":"20"}"#,
        )
        .unwrap();
        assert_eq!(
            misfit.sent(),
            None,
            "a report that does not fit the manifest is ignored"
        );
    }
}
