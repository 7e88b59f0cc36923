//! Reading a certificate back, and when one must be issued again.

use std::collections::BTreeSet;
use std::net::IpAddr;

use sha2::{Digest as _, Sha256};

use super::{PkiError, certificates, fingerprint};

/// `sha256:<hex>` of a certificate's SubjectPublicKeyInfo.
///
/// # Errors
/// When the certificate does not parse.
pub fn spki_hash(der: &[u8]) -> Result<String, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::Certificate {
        what: "DER".into(),
        reason: e.to_string(),
    })?;
    Ok(format!(
        "sha256:{}",
        hex::encode(Sha256::digest(cert.tbs_certificate.subject_pki.raw))
    ))
}

/// What a certificate says, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's common names (the user, for a client certificate).
    pub common_names: Vec<String>,
    /// The subject's organizations (the groups, for a client certificate).
    pub organizations: Vec<String>,
    /// The issuer's common name.
    pub issuer: String,
    /// Valid from (Unix seconds).
    pub not_before: i64,
    /// Valid until (Unix seconds).
    pub not_after: i64,
    /// DNS names and IP addresses it is valid for.
    pub names: BTreeSet<String>,
    /// Whether it is a CA.
    pub is_ca: bool,
    /// `sha256:<hex>` of the whole certificate.
    pub fingerprint: String,
}

fn unix_text(unix: i64) -> String {
    jiff::Timestamp::from_second(unix).map_or_else(|_| unix.to_string(), |t| t.to_string())
}

impl CertInfo {
    /// Reads a DER certificate.
    ///
    /// # Errors
    /// [`PkiError::Certificate`] when it does not parse.
    pub fn from_der(der: &[u8]) -> Result<Self, PkiError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::Certificate {
            what: "DER".into(),
            reason: e.to_string(),
        })?;
        let texts = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
            it.filter_map(|a| a.as_str().ok().map(str::to_owned))
                .collect::<Vec<_>>()
        };
        let mut names = BTreeSet::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    x509_parser::extensions::GeneralName::DNSName(d) => {
                        names.insert((*d).to_owned());
                    }
                    x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                        let ip = match bytes.len() {
                            4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                            16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                            _ => None,
                        };
                        if let Some(ip) = ip {
                            names.insert(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(Self {
            common_names: texts(&mut cert.subject().iter_common_name()),
            organizations: texts(&mut cert.subject().iter_organization()),
            issuer: texts(&mut cert.issuer().iter_common_name())
                .into_iter()
                .next()
                .unwrap_or_default(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            names,
            is_ca: cert.is_ca(),
            fingerprint: fingerprint(der),
        })
    }

    /// The first certificate of a PEM bundle.
    ///
    /// # Errors
    /// When there is none or it does not parse.
    pub fn from_pem(pem: &[u8], what: &str) -> Result<Self, PkiError> {
        let chain = certificates(pem, what)?;
        let leaf = chain.first().ok_or_else(|| PkiError::Certificate {
            what: what.to_owned(),
            reason: "no certificate".into(),
        })?;
        Self::from_der(leaf).map_err(|e| match e {
            PkiError::Certificate { reason, .. } => PkiError::Certificate {
                what: what.to_owned(),
                reason,
            },
            other => other,
        })
    }

    /// `CN=<name>` (or the fingerprint when it has no common name).
    pub fn subject(&self) -> String {
        self.common_names
            .first()
            .map_or_else(|| self.fingerprint.clone(), |cn| format!("CN={cn}"))
    }

    /// One line for logs and errors: subject, issuer, validity.
    pub fn describe(&self) -> String {
        format!(
            "{} (issued by CN={}, valid {} to {})",
            self.subject(),
            self.issuer,
            unix_text(self.not_before),
            unix_text(self.not_after)
        )
    }

    /// Why it is not valid at `now`, if it is not.
    pub fn invalid_at(&self, now: i64) -> Option<String> {
        if now < self.not_before {
            Some(format!(
                "{} is not valid before {}",
                self.subject(),
                unix_text(self.not_before)
            ))
        } else if now > self.not_after {
            Some(format!(
                "{} expired at {}",
                self.subject(),
                unix_text(self.not_after)
            ))
        } else {
            None
        }
    }
}

/// Why a serving certificate must be issued again, if it must: it lacks one of `wanted` names,
/// was issued by another CA than `issuer` (when given), or has passed two thirds of its
/// lifetime at `now` (kubelets rotate theirs at 70–90 %).
pub fn renewal(cert: &CertInfo, wanted: &BTreeSet<String>, issuer: Option<&str>, now: i64) -> Option<String> {
    let missing: Vec<&String> = wanted.difference(&cert.names).collect();
    if !missing.is_empty() {
        return Some(format!(
            "it lacks the names {}",
            missing.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    if let Some(ca) = issuer
        && cert.issuer != ca
    {
        return Some(format!("it was issued by CN={}, not by CN={ca}", cert.issuer));
    }
    let lifetime = (cert.not_after - cert.not_before).max(0);
    let renew_at = cert.not_before + lifetime * 2 / 3;
    if now >= renew_at {
        return Some(format!(
            "it expires at {} (renewed after two thirds of its lifetime)",
            unix_text(cert.not_after)
        ));
    }
    None
}

/// When [`renewal`] will next say a certificate must be renewed for its age alone.
pub fn renew_at(cert: &CertInfo) -> i64 {
    cert.not_before + (cert.not_after - cert.not_before).max(0) * 2 / 3
}
