//! Certificates: the cluster CA and what it issues ([`Ca`]: serving certificates with their
//! names, client certificates with a user and a group as Kubernetes reads them: CN = user,
//! O = group), self-signed serving certificates of agents and controllers ([`self_signed`]), and
//! reading any certificate back ([`CertInfo`]) with when to issue it again ([`renewal`]). Times
//! are Unix seconds passed in by the caller, so the decisions are pure.

mod ca;
mod info;

pub use ca::{Ca, self_signed, signing_request, valid_dns_name};
pub use info::{CertInfo, renew_at, renewal, spki_hash};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};

/// One day, in seconds.
pub const DAY: i64 = 24 * 60 * 60;
/// How long the cluster CA is valid (kubeadm's: ten years).
pub const CA_VALIDITY: i64 = 10 * 365 * DAY;
/// How long an issued or self-signed serving or client certificate is valid (kubeadm's: one
/// year).
pub const LEAF_VALIDITY: i64 = 365 * DAY;
/// Leeway for clocks that run a little behind the issuer's: a certificate is valid from this
/// long before it was made (at most a tenth of its validity, so short-lived ones stay short).
const BACKDATE: i64 = 5 * 60;

fn backdate(validity: i64) -> i64 {
    BACKDATE.min(validity / 10)
}

/// A certificate problem.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen could not make a key or certificate.
    #[error("failed to generate {what}: {source}")]
    Generate {
        /// What was being made.
        what: String,
        /// Why.
        #[source]
        source: rcgen::Error,
    },
    /// A PEM file holds no certificate, or one that does not parse.
    #[error("failed to read the certificate {what}: {reason}")]
    Certificate {
        /// Which (a path or a description).
        what: String,
        /// Why.
        reason: String,
    },
    /// A name that is neither an IP address nor a host name.
    #[error("{0:?} is neither an IP address nor a host name (letters, digits, '-' and '.')")]
    Name(String),
    /// A PEM file holds no usable private key.
    #[error("failed to read the private key {what}: {reason}")]
    Key {
        /// Which.
        what: String,
        /// Why.
        reason: String,
    },
}

/// A certificate (or a chain, leaf first) and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Pem {
    /// The certificate chain.
    pub cert: String,
    /// The private key (PKCS#8).
    pub key: String,
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Pem")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl Pem {
    /// The certificates, leaf first.
    ///
    /// # Errors
    /// [`PkiError::Certificate`] when there is none or one is not PEM.
    pub fn chain(&self) -> Result<Vec<CertificateDer<'static>>, PkiError> {
        certificates(self.cert.as_bytes(), "in memory")
    }

    /// The private key.
    ///
    /// # Errors
    /// [`PkiError::Key`] when there is none.
    pub fn private_key(&self) -> Result<PrivateKeyDer<'static>, PkiError> {
        private_key(self.key.as_bytes(), "in memory")
    }

    /// What the leaf certificate says.
    ///
    /// # Errors
    /// When it does not parse.
    pub fn info(&self) -> Result<CertInfo, PkiError> {
        let chain = self.chain()?;
        let leaf = chain.first().ok_or_else(|| PkiError::Certificate {
            what: "in memory".into(),
            reason: "no certificate".into(),
        })?;
        CertInfo::from_der(leaf)
    }
}

/// Every certificate in a PEM bundle, in order.
///
/// # Errors
/// [`PkiError::Certificate`] naming `what` when the bundle holds none or a bad one.
pub fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| PkiError::Certificate {
        what: what.to_owned(),
        reason: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(PkiError::Certificate {
            what: what.to_owned(),
            reason: "no PEM CERTIFICATE block in it".into(),
        });
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
/// [`PkiError::Key`] naming `what`.
pub fn private_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| PkiError::Key {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

/// `sha256:<hex>` of DER bytes: the fingerprint of a certificate.
pub fn fingerprint(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

#[cfg(test)]
mod tests;
