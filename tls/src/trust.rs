//! Trust failures, explained and counted: an unknown CA, an expired certificate, a name or
//! fingerprint that does not match, a server that does not speak TLS, a refused credential.
//! [`classify`] finds the cause anywhere in an error's chain (rustls errors travel inside
//! `std::io::Error`s, whose `source()` skips them); [`TrustMetrics`] counts them per peer and
//! reason, with bounded labels.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rustls::CertificateError;
use rustls::pki_types::UnixTime;

use crate::pin::PinMismatch;
use crate::pki::CertInfo;

/// Why trust failed; the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The certificate is not signed by a CA the client trusts.
    UnknownAuthority,
    /// The certificate has expired.
    Expired,
    /// The certificate is not valid yet (a clock behind).
    NotYetValid,
    /// The certificate is not valid for the name dialled.
    WrongName,
    /// The certificate is not the pinned one.
    FingerprintMismatch,
    /// The certificate is malformed, badly signed, or for another purpose.
    BadCertificate,
    /// The other side rejected our certificate.
    CertificateRejected,
    /// The other side does not speak TLS.
    NotTls,
    /// 401: the credential was not accepted.
    Unauthorized,
    /// 403: the credential may not do this.
    Forbidden,
    /// Another handshake failure.
    Handshake,
}

impl Reason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::UnknownAuthority => "unknown_authority",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongName => "wrong_name",
            Self::FingerprintMismatch => "fingerprint_mismatch",
            Self::BadCertificate => "bad_certificate",
            Self::CertificateRejected => "certificate_rejected",
            Self::NotTls => "not_tls",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Handshake => "handshake",
        }
    }
}

/// A trust failure: why, in a label and in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The category.
    pub reason: Reason,
    /// What happened, for people.
    pub detail: String,
}

fn unix_text(t: UnixTime) -> String {
    i64::try_from(t.as_secs())
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map_or_else(|| t.as_secs().to_string(), |t| t.to_string())
}

fn reason_of(error: &rustls::Error) -> Reason {
    use rustls::AlertDescription as A;
    match error {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => Reason::UnknownAuthority,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => Reason::Expired,
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                Reason::NotYetValid
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                Reason::WrongName
            }
            CertificateError::Other(other) if other.0.downcast_ref::<PinMismatch>().is_some() => {
                Reason::FingerprintMismatch
            }
            _ => Reason::BadCertificate,
        },
        rustls::Error::AlertReceived(
            A::BadCertificate
            | A::UnknownCA
            | A::CertificateExpired
            | A::CertificateRequired
            | A::CertificateRevoked
            | A::CertificateUnknown
            | A::AccessDenied,
        ) => Reason::CertificateRejected,
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => Reason::NotTls,
        _ => Reason::Handshake,
    }
}

/// A rustls error in words, with what `presented` (when known) says about the certificate.
pub fn describe_rustls(error: &rustls::Error, presented: Option<&CertInfo>) -> String {
    let cert = presented.map_or_else(|| "the certificate".to_owned(), CertInfo::describe);
    match error {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                format!("{cert} is signed by an unknown certificate authority")
            }
            CertificateError::ExpiredContext { time, not_after } => format!(
                "{cert} has expired: valid until {}, and it is {} now",
                unix_text(*not_after),
                unix_text(*time)
            ),
            CertificateError::Expired => format!("{cert} has expired"),
            CertificateError::NotValidYetContext { time, not_before } => format!(
                "{cert} is not valid yet: valid from {}, and it is {} now (is a clock behind?)",
                unix_text(*not_before),
                unix_text(*time)
            ),
            CertificateError::NotValidYet => format!("{cert} is not valid yet"),
            CertificateError::NotValidForNameContext { expected, presented } => format!(
                "{cert} is valid for {}, not for {}",
                presented.join(", "),
                expected.to_str()
            ),
            CertificateError::NotValidForName => format!("{cert} is not valid for the name dialled"),
            CertificateError::BadSignature => format!(
                "{cert} names a trusted CA as its issuer but that CA did not sign it (another CA of the same name?)"
            ),
            CertificateError::Other(other) => match other.0.downcast_ref::<PinMismatch>() {
                Some(m) => m.to_string(),
                None => format!("{cert} was refused: {other}"),
            },
            other => format!("{cert} was refused: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => {
            format!("the other side rejected this side's certificate or credentials (TLS alert {alert:?})")
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            format!("the other side does not speak TLS (plain HTTP?): {error}")
        }
        other => other.to_string(),
    }
}

/// The rustls error in `error`'s chain, if any.
fn find_rustls<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        // io::Error's source() skips the error it wraps: look inside.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            && let Some(r) = find_rustls(inner)
        {
            return Some(r);
        }
        current = e.source();
    }
    None
}

/// The trust failure somewhere in `error`'s chain, if it is one.
pub fn classify(error: &(dyn std::error::Error + 'static)) -> Option<Failure> {
    let r = find_rustls(error)?;
    Some(Failure {
        reason: reason_of(r),
        detail: describe_rustls(r, None),
    })
}

/// A refused credential: the failure for HTTP status `code` (401 or 403), if it is one.
pub fn of_status(code: u16, message: &str) -> Option<Failure> {
    let reason = match code {
        401 => Reason::Unauthorized,
        403 => Reason::Forbidden,
        _ => return None,
    };
    Some(Failure {
        reason,
        detail: message.to_owned(),
    })
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labels {
    peer: String,
    reason: String,
}

/// Trust failures counted by peer (`apiserver`, `agent`, …) and reason.
#[derive(Clone, Debug, Default)]
pub struct TrustMetrics {
    failures: Family<Labels, Counter>,
}

impl TrustMetrics {
    /// Registers the counter (`<prefix>_trust_failures_total`) in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "trust_failures",
            "Connections or requests refused for trust: certificates (unknown authority, expired, wrong name or fingerprint, not TLS) and credentials (401, 403), by peer and reason",
            self.failures.clone(),
        );
    }

    /// Counts one failure with `peer`.
    pub fn record(&self, peer: &str, reason: Reason) {
        self.failures
            .get_or_create(&Labels {
                peer: peer.to_owned(),
                reason: reason.label().to_owned(),
            })
            .inc();
    }

    /// How many failures of `reason` with `peer` were counted.
    pub fn count(&self, peer: &str, reason: Reason) -> u64 {
        self.failures
            .get_or_create(&Labels {
                peer: peer.to_owned(),
                reason: reason.label().to_owned(),
            })
            .get()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("request failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn causes_are_found_inside_io_errors() {
        let rustls = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let outer = Outer(std::io::Error::new(std::io::ErrorKind::InvalidData, rustls));
        let f = classify(&outer).unwrap();
        assert_eq!(f.reason, Reason::UnknownAuthority);
        assert!(f.detail.contains("unknown certificate authority"), "{}", f.detail);
        let plain = Outer(std::io::Error::other("connection refused"));
        assert_eq!(classify(&plain), None);
    }

    #[test]
    fn each_cause_has_its_reason_and_words() {
        let cases = [
            (
                rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
                    time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_900_000_000)),
                    not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_000)),
                }),
                Reason::Expired,
                "valid until 2027-01-15",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                    expected: rustls::pki_types::ServerName::try_from("api.example").unwrap(),
                    presented: vec!["DnsName(\"localhost\")".into()],
                }),
                Reason::WrongName,
                "not for api.example",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
                    PinMismatch {
                        pinned: "sha256:aa".into(),
                        presented: "sha256:bb".into(),
                    },
                )))),
                Reason::FingerprintMismatch,
                "not the pinned sha256:aa",
            ),
            (
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                Reason::NotTls,
                "does not speak TLS",
            ),
            (
                rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
                Reason::CertificateRejected,
                "rejected this side's certificate",
            ),
        ];
        for (error, reason, words) in cases {
            let f = classify(&error).unwrap();
            assert_eq!(f.reason, reason, "{error:?}");
            assert!(f.detail.contains(words), "{}", f.detail);
        }
        assert_eq!(
            of_status(401, "Unauthorized").unwrap().reason,
            Reason::Unauthorized
        );
        assert_eq!(of_status(403, "no").unwrap().reason, Reason::Forbidden);
        assert_eq!(of_status(404, "no"), None);
    }

    #[test]
    fn failures_are_counted_by_peer_and_reason() {
        let m = TrustMetrics::default();
        let mut registry = Registry::with_prefix("ringrift_agent");
        m.register(&mut registry);
        m.record("agent", Reason::FingerprintMismatch);
        m.record("agent", Reason::FingerprintMismatch);
        m.record("apiserver", Reason::Unauthorized);
        assert_eq!(m.count("agent", Reason::FingerprintMismatch), 2);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains(
                r#"ringrift_agent_trust_failures_total{peer="agent",reason="fingerprint_mismatch"} 2"#
            ),
            "{text}"
        );
    }
}
