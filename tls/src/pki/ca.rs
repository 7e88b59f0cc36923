//! The cluster CA and the certificates it issues; self-signed serving certificates.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;

use super::{CA_VALIDITY, CertInfo, Pem, PkiError, backdate, certificates, spki_hash};

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

impl Ca {
    /// Signs the key of a certificate signing request as a client certificate for `user` in
    /// `group`, valid from `now` for `validity` seconds. Only the request's public key is
    /// used (its signature proves the requester holds the key); the subject and every other
    /// attribute come from the CA's side, so a requester cannot ask for another identity.
    ///
    /// # Errors
    /// [`PkiError::Certificate`] when the request does not parse or its signature does not
    /// verify; [`PkiError::Generate`] when the certificate cannot be made.
    pub fn sign_client_request(
        &self,
        request_pem: &str,
        user: &str,
        group: Option<&str>,
        now: i64,
        validity: i64,
    ) -> Result<String, PkiError> {
        let mut request = rcgen::CertificateSigningRequestParams::from_pem(request_pem).map_err(|e| {
            PkiError::Certificate {
                what: "the certificate signing request".into(),
                reason: e.to_string(),
            }
        })?;
        let mut params = leaf_params(user, now, validity);
        if let Some(group) = group {
            params.distinguished_name.push(DnType::OrganizationName, group);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        request.params = params;
        let cert = request
            .signed_by(&self.issuer)
            .map_err(generate_err("a client certificate"))?;
        Ok(cert.pem())
    }
}

/// A new key pair and a certificate signing request for it (PEM both): what a joining agent
/// sends, keeping its key. The request names `subject`; the CA decides the identity anyway.
///
/// # Errors
/// When the key or request cannot be made.
pub fn signing_request(subject: &str) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate().map_err(generate_err("a client key"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, subject);
    params.distinguished_name = dn;
    let request = params
        .serialize_request(&key)
        .map_err(generate_err("a certificate signing request"))?;
    let pem = request
        .pem()
        .map_err(generate_err("a certificate signing request"))?;
    Ok((key.serialize_pem(), pem))
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
