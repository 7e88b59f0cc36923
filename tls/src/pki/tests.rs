//! Issuing certificates and reading them back.

use std::collections::BTreeSet;

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

#[test]
fn a_signing_request_gets_the_identity_the_ca_decides_and_keeps_its_key() {
    let ca = Ca::generate("ringrift-ca", NOW).unwrap();
    let (key, request) = signing_request("ringrift:agent:someone-else").unwrap();
    let cert = ca
        .sign_client_request(
            &request,
            "ringrift:agent:gpu-1",
            Some("ringrift:agents"),
            NOW,
            DAY,
        )
        .unwrap();
    let info = CertInfo::from_pem(cert.as_bytes(), "issued").unwrap();
    assert_eq!(
        info.common_names,
        ["ringrift:agent:gpu-1"],
        "the CA names it, not the request"
    );
    assert_eq!(info.organizations, ["ringrift:agents"]);
    assert_eq!(info.issuer, "ringrift-ca");
    // The certificate is for the requester's own key.
    let pem = Pem { cert, key };
    assert!(pem.chain().is_ok() && pem.private_key().is_ok());
    let issued_key = rcgen::KeyPair::from_pem(&pem.key).unwrap();
    let chain = pem.chain().unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
    assert_eq!(
        parsed.public_key().raw,
        rcgen::PublicKeyData::subject_public_key_info(&issued_key)
    );
    // A request that is not one, or whose signature does not verify, is refused.
    assert!(ca.sign_client_request("garbage", "u", None, NOW, DAY).is_err());
    // The same request with one byte of its signed subject changed.
    let (_, marked) = signing_request("zzzzzzzz").unwrap();
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(marked.as_bytes())
        .map(|d: rustls::pki_types::CertificateSigningRequestDer<'_>| d.as_ref().to_vec())
        .unwrap();
    let at = der.windows(8).position(|w| w == b"zzzzzzzz").unwrap();
    let mut changed = der.clone();
    changed[at] = b'y';
    let tampered = format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &changed)
    );
    let e = ca
        .sign_client_request(&tampered, "u", None, NOW, DAY)
        .unwrap_err();
    assert!(e.to_string().contains("signature"), "{e}");
}
