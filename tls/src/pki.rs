//! Certificates: the cluster CA, the certificates it issues (serving certificates with their
//! names, client certificates with a user and groups as Kubernetes reads them: CN = user,
//! O = groups), self-signed serving certificates of agents and controllers, and reading any
//! certificate back ([`CertInfo`]). Times are Unix seconds passed in by the caller, so the
//! decisions ([`renewal`]) are pure.

use std::collections::BTreeSet;
use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
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

fn offset(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn random_serial() -> SerialNumber {
    let mut bytes = *uuid::Uuid::new_v4().as_bytes();
    // A positive DER integer without a leading zero byte.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

fn generate_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Generate {
        what: what.to_owned(),
        source,
    }
}

/// Whether `name` is a host name a certificate can carry: dot-separated labels of letters,
/// digits and inner hyphens (at most 63 each, 253 in all), optionally `*.` first.
pub fn valid_dns_name(name: &str) -> bool {
    let bare = name.strip_prefix("*.").unwrap_or(name);
    !bare.is_empty()
        && bare.len() <= 253
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Subject alternative names: IP addresses as such, everything else as DNS names.
fn san_types(names: &[String]) -> Result<Vec<SanType>, PkiError> {
    names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) if !valid_dns_name(n) => Err(PkiError::Name(n.clone())),
            Err(_) => n
                .clone()
                .try_into()
                .map(SanType::DnsName)
                .map_err(generate_err(&format!("the name {n:?}"))),
        })
        .collect()
}

fn leaf_params(common_name: &str, now: i64, validity: i64) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    params.not_before = offset(now - backdate(validity));
    params.not_after = offset(now + validity);
    params.serial_number = Some(random_serial());
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.use_authority_key_identifier_extension = true;
    params
}

/// The cluster's certificate authority: signs the API server's serving certificate and the
/// client certificates of people and components.
pub struct Ca {
    common_name: String,
    cert_pem: String,
    key_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("hash", &self.hash())
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// A new CA named `common_name`, valid from `now` for [`CA_VALIDITY`].
    ///
    /// # Errors
    /// When the key or certificate cannot be made.
    pub fn generate(common_name: &str, now: i64) -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(generate_err("the CA key"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = offset(now - backdate(CA_VALIDITY));
        params.not_after = offset(now + CA_VALIDITY);
        params.serial_number = Some(random_serial());
        let cert = params
            .self_signed(&key)
            .map_err(generate_err("the CA certificate"))?;
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        Ok(Self {
            common_name: common_name.to_owned(),
            cert_der: cert.der().clone(),
            cert_pem,
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA of `cert_pem` with its key `key_pem` (as [`Self::cert_pem`] and
    /// [`Self::key_pem`] wrote them, or a CA of the user's own).
    ///
    /// # Errors
    /// When either does not parse, or the certificate is no CA.
    pub fn from_pem(cert_pem: &str, key_pem: &str, what: &str) -> Result<Self, PkiError> {
        let cert_der = certificates(cert_pem.as_bytes(), what)?
            .into_iter()
            .next()
            .ok_or_else(|| PkiError::Certificate {
                what: what.to_owned(),
                reason: "no certificate".into(),
            })?;
        let info = CertInfo::from_der(&cert_der)?;
        if !info.is_ca {
            return Err(PkiError::Certificate {
                what: what.to_owned(),
                reason: format!("{} is not a CA certificate", info.subject()),
            });
        }
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::Key {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| PkiError::Certificate {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            common_name: info.common_names.first().cloned().unwrap_or_default(),
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
            cert_der,
            issuer,
        })
    }

    /// Its common name: the issuer of what it signs.
    pub fn common_name(&self) -> &str {
        &self.common_name
    }

    /// The CA certificate, PEM: what clients trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// `sha256:<hex>` of the CA certificate's public key (its SubjectPublicKeyInfo), as kubeadm's
    /// `--discovery-token-ca-cert-hash` pins a cluster CA.
    pub fn hash(&self) -> String {
        spki_hash(&self.cert_der).unwrap_or_default()
    }

    /// A serving certificate for `names` (DNS names and IP addresses), valid from `now` for
    /// `validity` seconds.
    ///
    /// # Errors
    /// When a name is not a valid DNS name or the certificate cannot be made.
    pub fn serving(
        &self,
        common_name: &str,
        names: &[String],
        now: i64,
        validity: i64,
    ) -> Result<Pem, PkiError> {
        let key = KeyPair::generate().map_err(generate_err("a serving key"))?;
        let mut params = leaf_params(common_name, now, validity);
        params.subject_alt_names = san_types(names)?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(generate_err("a serving certificate"))?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// A client certificate for `user` in `group` (CN = user, O = group, as Kubernetes reads
    /// them), valid from `now` for `validity` seconds. One group at most: rcgen writes one
    /// value per attribute type, and every identity this project issues needs one.
    ///
    /// # Errors
    /// When the certificate cannot be made.
    pub fn client(&self, user: &str, group: Option<&str>, now: i64, validity: i64) -> Result<Pem, PkiError> {
        let key = KeyPair::generate().map_err(generate_err("a client key"))?;
        let mut params = leaf_params(user, now, validity);
        if let Some(group) = group {
            params.distinguished_name.push(DnType::OrganizationName, group);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(generate_err("a client certificate"))?;
        Ok(Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }
}

/// A self-signed serving certificate for `names`: the key pair of one agent or controller,
/// trusted by its fingerprint rather than by a CA.
///
/// # Errors
/// When a name is not a valid DNS name or the certificate cannot be made.
pub fn self_signed(common_name: &str, names: &[String], now: i64, validity: i64) -> Result<Pem, PkiError> {
    let key = KeyPair::generate().map_err(generate_err("a serving key"))?;
    let mut params = leaf_params(common_name, now, validity);
    params.subject_alt_names = san_types(names)?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .self_signed(&key)
        .map_err(generate_err("a self-signed certificate"))?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_ca_issues_serving_and_client_certificates_that_read_back() {
        let ca = Ca::generate("ringrift-ca", NOW).unwrap();
        let info = CertInfo::from_pem(ca.cert_pem().as_bytes(), "ca").unwrap();
        assert!(info.is_ca);
        assert_eq!(info.common_names, ["ringrift-ca"]);
        assert_eq!(info.not_after - info.not_before, CA_VALIDITY + BACKDATE);
        assert_eq!(ca.common_name(), "ringrift-ca");
        // A short-lived certificate is backdated by a tenth of its validity, not 5 minutes.
        let short = self_signed("s", &[], NOW, 60).unwrap().info().unwrap();
        assert_eq!((short.not_before, short.not_after), (NOW - 6, NOW + 60));

        let serving = ca
            .serving(
                "apiserver",
                &["localhost".into(), "127.0.0.1".into(), "::1".into()],
                NOW,
                DAY,
            )
            .unwrap();
        let s = serving.info().unwrap();
        assert_eq!(s.names, names(&["localhost", "127.0.0.1", "::1"]));
        assert_eq!(s.issuer, "ringrift-ca");
        assert!(!s.is_ca);

        let client = ca
            .client("ringrift:agent:a1", Some("ringrift:agents"), NOW, DAY)
            .unwrap();
        let c = client.info().unwrap();
        assert_eq!(c.common_names, ["ringrift:agent:a1"]);
        assert_eq!(c.organizations, ["ringrift:agents"]);
        assert_eq!(c.subject(), "CN=ringrift:agent:a1");
        assert!(client.private_key().is_ok());
        assert!(
            !format!("{client:?}").contains("PRIVATE"),
            "Debug never shows the key"
        );
    }

    #[test]
    fn a_ca_read_back_from_pem_signs_as_the_same_issuer() {
        let ca = Ca::generate("ringrift-ca", NOW).unwrap();
        let again = Ca::from_pem(ca.cert_pem(), ca.key_pem(), "pki/ca.crt").unwrap();
        assert_eq!(again.hash(), ca.hash());
        assert_eq!(again.common_name(), "ringrift-ca");
        assert!(ca.hash().starts_with("sha256:") && ca.hash().len() == 7 + 64);
        let leaf = again.serving("x", &["localhost".into()], NOW, DAY).unwrap();
        assert_eq!(leaf.info().unwrap().issuer, "ringrift-ca");
        // A leaf is no CA.
        let e = Ca::from_pem(&leaf.cert, &leaf.key, "leaf.crt").unwrap_err();
        assert!(
            e.to_string().contains("leaf.crt") && e.to_string().contains("not a CA"),
            "{e}"
        );
    }

    #[test]
    fn garbage_is_refused_with_the_file_named() {
        let e = certificates(b"not pem", "/etc/x.crt").unwrap_err();
        assert!(e.to_string().contains("/etc/x.crt"), "{e}");
        let e = private_key(
            b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
            "k.pem",
        )
        .unwrap_err();
        assert!(e.to_string().contains("k.pem"), "{e}");
        assert!(CertInfo::from_der(b"\x30\x03\x02\x01\x00").is_err());
        let e = self_signed("x", &["bad name!".into()], NOW, DAY).unwrap_err();
        assert!(e.to_string().contains("bad name!"), "{e}");
        for good in ["localhost", "node-1.example", "*.svc.cluster.local", "a"] {
            assert!(valid_dns_name(good), "{good}");
        }
        for bad in ["", "-a", "a-", "a..b", "a_b", "*", &"x".repeat(64)] {
            assert!(!valid_dns_name(bad), "{bad}");
        }
    }

    #[test]
    fn fingerprints_are_of_the_whole_certificate() {
        let a = self_signed("agent-a", &["10.0.0.1".into()], NOW, DAY).unwrap();
        let b = self_signed("agent-a", &["10.0.0.1".into()], NOW, DAY).unwrap();
        let (ia, ib) = (a.info().unwrap(), b.info().unwrap());
        assert_ne!(ia.fingerprint, ib.fingerprint, "a new key is a new fingerprint");
        assert_eq!(ia.fingerprint, fingerprint(&a.chain().unwrap()[0]));
    }

    #[test]
    fn validity_is_explained() {
        let c = self_signed("x", &[], NOW, DAY).unwrap().info().unwrap();
        assert_eq!(c.invalid_at(NOW), None);
        assert!(c.invalid_at(NOW + 2 * DAY).unwrap().contains("expired at"));
        assert!(c.invalid_at(NOW - DAY).unwrap().contains("not valid before"));
        assert!(
            c.describe().starts_with("CN=x (issued by CN=x, valid 20"),
            "{}",
            c.describe()
        );
    }

    #[test]
    fn renewal_after_two_thirds_of_the_lifetime_or_for_missing_names_or_another_issuer() {
        let ca = Ca::generate("ca-1", NOW).unwrap();
        let cert = ca
            .serving("s", &["localhost".into(), "10.0.0.1".into()], NOW, 300 * DAY)
            .unwrap()
            .info()
            .unwrap();
        let want = names(&["localhost"]);
        assert_eq!(renewal(&cert, &want, Some("ca-1"), NOW), None);
        assert_eq!(renewal(&cert, &want, Some("ca-1"), NOW + 199 * DAY), None);
        assert!(
            renewal(&cert, &want, Some("ca-1"), NOW + 201 * DAY)
                .unwrap()
                .contains("two thirds")
        );
        assert!(
            renewal(&cert, &names(&["localhost", "node-7"]), None, NOW)
                .unwrap()
                .contains("node-7")
        );
        assert!(
            renewal(&cert, &want, Some("ca-2"), NOW)
                .unwrap()
                .contains("CN=ca-1")
        );
        assert!(renew_at(&cert) > NOW + 199 * DAY && renew_at(&cert) <= NOW + 201 * DAY);
    }
}
