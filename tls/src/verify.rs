//! Checking a handshake's signature with the provider's algorithms: what every certificate
//! verifier here shares. They differ only in which certificates they trust (a pinned one, a
//! client CA's, any while a certificate is read to explain a failure); the proof that the
//! other side holds the certificate's key is checked the same way by all.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The signature checks of one crypto provider.
#[derive(Debug, Clone)]
pub struct Signatures(Arc<CryptoProvider>);

impl Signatures {
    /// The checks of `provider`.
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        Self(provider)
    }

    /// A TLS 1.2 handshake signature.
    ///
    /// # Errors
    /// When it does not verify.
    pub fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    /// A TLS 1.3 handshake signature.
    ///
    /// # Errors
    /// When it does not verify.
    pub fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    /// The schemes it checks.
    pub fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
