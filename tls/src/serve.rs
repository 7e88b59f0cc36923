//! Serving over TLS: an [`Acceptor`] turns each accepted TCP connection into a TLS stream (or,
//! only behind a flag named insecure, a plain one), with
//!
//! - a serving certificate that can be replaced while serving (renewal);
//! - client certificates requested but not required: a presented chain is checked after the
//!   handshake against the client CAs, and the outcome ([`ClientCert`]) travels with the
//!   connection, so a bad certificate becomes a 401 that says why (as kube-apiserver answers)
//!   instead of a bare handshake failure;
//! - a plain-HTTP request on a TLS port answered `400 Client sent an HTTP request to an HTTPS
//!   server.` (Go's words, which kubectl users know) and closed;
//! - the handshake bounded in time, done on the connection's own task, never in the accept loop.

use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::DistinguishedName;
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;

use crate::pki::{CertInfo, Pem};
use crate::verify::Signatures;

/// How long a client may take to complete the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Go's answer to plain HTTP on a TLS port.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// A server that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The certificate or key does not parse.
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    /// rustls refused the key, the pair, or the client CAs.
    #[error("failed to set up TLS with {what}: {source}")]
    Rustls {
        /// What was being set up.
        what: String,
        /// Why.
        #[source]
        source: rustls::Error,
    },
}

/// A certificate chain and its key, ready to serve.
///
/// # Errors
/// When either does not parse, or the key is not the certificate's.
pub fn certified_key(pem: &Pem, what: &str) -> Result<Arc<CertifiedKey>, ServeError> {
    let chain = pem.chain()?;
    let key = pem.private_key()?;
    CertifiedKey::from_der(chain, key, &crate::provider())
        .map(Arc::new)
        .map_err(|source| ServeError::Rustls {
            what: what.to_owned(),
            source,
        })
}

/// The serving certificate, replaceable while serving.
#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        ))
    }
}

/// Asks for a client certificate (naming the accepted CAs, so clients such as kubectl pick the
/// right one), checks its proof of possession in the handshake, and leaves the chain's trust
/// to [`Acceptor::accept`].
#[derive(Debug)]
struct RequestClientCert {
    hints: Vec<DistinguishedName>,
    signatures: Signatures,
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.signatures.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.signatures.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.schemes()
    }
}

/// What a client proved about itself with a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCert {
    /// None presented.
    None,
    /// Presented and signed by a client CA, valid now.
    Verified(Arc<CertInfo>),
    /// Presented but not trusted.
    Rejected {
        /// The certificate's subject, when it parses.
        subject: String,
        /// Why, in words.
        reason: String,
    },
}

enum Mode {
    Plain,
    Tls {
        config: Arc<ServerConfig>,
        resolver: Arc<Resolver>,
        clients: Option<Arc<dyn ClientCertVerifier>>,
    },
}

/// Turns accepted TCP connections into TLS (or, when insecure, plain) streams.
pub struct Acceptor {
    mode: Mode,
}

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptor")
            .field("tls", &self.is_tls())
            .finish_non_exhaustive()
    }
}

/// Why a connection was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The client spoke plain HTTP; it was told so.
    #[error("the client sent plain HTTP to this TLS port (answered 400)")]
    PlainHttp,
    /// The handshake failed.
    #[error("TLS handshake failed: {0}")]
    Handshake(#[source] std::io::Error),
    /// The client did not finish the handshake in time.
    #[error("the client did not finish the TLS handshake within {HANDSHAKE_TIMEOUT:?}")]
    Timeout,
}

/// An accepted connection.
#[derive(Debug)]
pub struct Accepted {
    /// The stream to serve.
    pub stream: Stream,
    /// The client's certificate, if it presented one.
    pub client: ClientCert,
}

impl Acceptor {
    /// Serves `key` over TLS; with `client_roots`, client certificates signed by them
    /// authenticate.
    ///
    /// # Errors
    /// When rustls refuses the configuration.
    pub fn new(key: Arc<CertifiedKey>, client_roots: Option<RootCertStore>) -> Result<Self, ServeError> {
        let provider = crate::provider();
        let resolver = Arc::new(Resolver {
            current: RwLock::new(key),
        });
        let rustls_error = |what: &str| {
            let what = what.to_owned();
            move |source| ServeError::Rustls { what, source }
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(rustls_error("the protocol versions"))?;
        let (builder, clients) = match client_roots {
            Some(roots) => {
                let roots = Arc::new(roots);
                let checker = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .build()
                    .map_err(|e| ServeError::Rustls {
                        what: "the client CAs".into(),
                        source: rustls::Error::General(e.to_string()),
                    })?;
                let request = Arc::new(RequestClientCert {
                    hints: roots.subjects(),
                    signatures: Signatures::new(provider.clone()),
                });
                (builder.with_client_cert_verifier(request), Some(checker))
            }
            None => (builder.with_no_client_auth(), None),
        };
        let mut config = builder.with_cert_resolver(resolver.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            mode: Mode::Tls {
                config: Arc::new(config),
                resolver,
                clients,
            },
        })
    }

    /// Plain HTTP: no TLS at all. Only behind flags whose names say insecure (benchmark
    /// baselines).
    pub fn insecure_plain() -> Self {
        Self { mode: Mode::Plain }
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.mode, Mode::Tls { .. })
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.is_tls() { "https" } else { "http" }
    }

    /// Serves `key` to new connections from now on (open ones keep theirs).
    pub fn replace_certificate(&self, key: Arc<CertifiedKey>) {
        if let Mode::Tls { resolver, .. } = &self.mode {
            *resolver
                .current
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = key;
        }
    }

    /// The certificate served now.
    pub fn certificate(&self) -> Option<Arc<CertifiedKey>> {
        match &self.mode {
            Mode::Tls { resolver, .. } => Some(Arc::clone(
                &resolver
                    .current
                    .read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            )),
            Mode::Plain => None,
        }
    }

    /// Completes the handshake of one accepted connection (call it on the connection's own
    /// task).
    ///
    /// # Errors
    /// [`AcceptError`]; a plain-HTTP client has been answered already.
    pub async fn accept(&self, mut tcp: TcpStream) -> Result<Accepted, AcceptError> {
        let Mode::Tls { config, clients, .. } = &self.mode else {
            return Ok(Accepted {
                stream: Stream::Plain(tcp),
                client: ClientCert::None,
            });
        };
        let handshake = async {
            let mut first = [0u8; 1];
            let n = tcp.peek(&mut first).await.map_err(AcceptError::Handshake)?;
            // A TLS record starts with 0x16 (handshake); an HTTP request with a method name.
            if n == 1 && first[0].is_ascii_uppercase() {
                let _ = tcp.write_all(PLAIN_HTTP_ANSWER).await;
                let _ = tcp.shutdown().await;
                return Err(AcceptError::PlainHttp);
            }
            tokio_rustls::TlsAcceptor::from(Arc::clone(config))
                .accept(tcp)
                .await
                .map_err(AcceptError::Handshake)
        };
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
            .await
            .map_err(|_| AcceptError::Timeout)??;
        let client = match (tls.get_ref().1.peer_certificates(), clients) {
            (Some([leaf, intermediates @ ..]), Some(checker)) => {
                check_client(checker.as_ref(), leaf, intermediates)
            }
            _ => ClientCert::None,
        };
        Ok(Accepted {
            stream: Stream::Tls(Box::new(tls)),
            client,
        })
    }
}

fn check_client(
    checker: &dyn ClientCertVerifier,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> ClientCert {
    let info = CertInfo::from_der(leaf);
    let subject = info
        .as_ref()
        .map_or_else(|_| "an unreadable certificate".to_owned(), CertInfo::subject);
    match (
        checker.verify_client_cert(leaf, intermediates, UnixTime::now()),
        info,
    ) {
        (Ok(_), Ok(info)) => ClientCert::Verified(Arc::new(info)),
        (Ok(_), Err(e)) => ClientCert::Rejected {
            subject,
            reason: e.to_string(),
        },
        (Err(e), info) => ClientCert::Rejected {
            reason: crate::trust::describe_rustls(&e, info.ok().as_ref()),
            subject,
        },
    }
}

/// An accepted connection's stream: TLS, or plain when insecure.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Root certificates from PEM bundles, for [`Acceptor::new`].
///
/// # Errors
/// When a bundle holds no certificate or one rustls refuses.
pub fn roots<'a>(
    bundles: impl IntoIterator<Item = (&'a [u8], &'a str)>,
) -> Result<RootCertStore, ServeError> {
    let mut store = RootCertStore::empty();
    for (pem, what) in bundles {
        for der in crate::pki::certificates(pem, what)? {
            store.add(der).map_err(|source| ServeError::Rustls {
                what: what.to_owned(),
                source,
            })?;
        }
    }
    Ok(store)
}
