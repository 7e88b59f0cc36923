//! The CA and serving certificate: kept, renewed, the operator's own, refused when half gone.

use super::*;

const NOW: i64 = 1_800_000_000;

fn temp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringrift-certs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn names(extra: &[&str]) -> BTreeSet<String> {
    let mut n = serving_names("127.0.0.1:6443".parse().unwrap(), None, &[]);
    n.extend(extra.iter().map(|s| (*s).to_owned()));
    n
}

#[test]
fn the_ca_and_serving_certificate_are_kept_across_restarts() {
    let dir = temp("keep");
    let opts = TlsOptions::default();
    let (first, pem1) = Certs::open(Some(&dir), &opts, names(&[]), NOW).unwrap();
    let (second, pem2) = Certs::open(Some(&dir), &opts, names(&[]), NOW + 60).unwrap();
    assert_eq!(first.ca().cert_pem(), second.ca().cert_pem());
    assert_eq!(pem1, pem2, "a serving certificate still good is kept");
    assert_eq!(second.serving_ca_pem(), Some(first.ca().cert_pem()));
    let mode = |f: &str| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(dir.join("pki").join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!((mode("ca.key"), mode("apiserver.key")), (0o600, 0o600));
    // A new name (--tls-san) gets a new serving certificate from the same CA.
    let (_, pem3) = Certs::open(Some(&dir), &opts, names(&["api.example"]), NOW + 120).unwrap();
    assert_ne!(pem3, pem1);
    assert!(pem3.info().unwrap().names.contains("api.example"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_serving_certificate_is_renewed_before_it_expires() {
    let opts = TlsOptions {
        serving_validity: Duration::from_secs(3 * 3600),
        ..TlsOptions::default()
    };
    let dir = temp("renew");
    let (mut certs, first) = Certs::open(Some(&dir), &opts, names(&[]), NOW).unwrap();
    assert!(certs.refresh(NOW + 3600).unwrap().is_none());
    let (renewed, why) = certs.refresh(NOW + 2 * 3600 + 60).unwrap().unwrap();
    assert!(why.contains("two thirds"), "{why}");
    assert_ne!(renewed, first);
    assert_eq!(renewed.info().unwrap().issuer, certs.ca().common_name());
    assert!(certs.ca().common_name().starts_with("ringrift-ca@"));
    // Stored: a restart serves the renewed one.
    let (_, after_restart) = Certs::open(Some(&dir), &opts, names(&[]), NOW + 2 * 3600 + 120).unwrap();
    assert_eq!(after_restart, renewed);
    assert!(certs.refresh(NOW + 2 * 3600 + 120).unwrap().is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn own_files_are_served_and_read_again_when_they_change() {
    let dir = temp("own");
    std::fs::create_dir_all(&dir).unwrap();
    let ca = Ca::generate("corp-ca", NOW).unwrap();
    let pem = ca.serving("api", &["api.corp".into()], NOW, 86400).unwrap();
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert, &pem.cert).unwrap();
    std::fs::write(&key, &pem.key).unwrap();
    let opts = TlsOptions {
        cert_file: Some(cert.clone()),
        key_file: Some(key.clone()),
        ..TlsOptions::default()
    };
    let (mut certs, served) = Certs::open(None, &opts, names(&[]), NOW).unwrap();
    assert_eq!(served, pem);
    assert_eq!(
        certs.serving_ca_pem(),
        None,
        "clients trust the operator's CA, not ours"
    );
    assert!(certs.refresh(NOW).unwrap().is_none());
    let next = ca.serving("api", &["api.corp".into()], NOW, 86400).unwrap();
    std::fs::write(&key, &next.key).unwrap();
    std::fs::write(&cert, &next.cert).unwrap();
    // Modification times have a coarse grain on some file systems: move them on.
    let later = SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&cert)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let (reloaded, why) = certs.refresh(NOW + 10).unwrap().unwrap();
    assert_eq!(reloaded, next);
    assert!(why.contains("tls.crt"), "{why}");
    // Half a pair is refused.
    let half = TlsOptions {
        cert_file: Some(cert),
        ..TlsOptions::default()
    };
    assert!(matches!(
        Certs::open(None, &half, names(&[]), NOW),
        Err(CertError::Incomplete(_))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_ca_without_its_key_is_refused_not_replaced() {
    let dir = temp("halfca");
    let opts = TlsOptions::default();
    Certs::open(Some(&dir), &opts, names(&[]), NOW).unwrap();
    std::fs::remove_file(dir.join("pki").join("ca.key")).unwrap();
    let e = Certs::open(Some(&dir), &opts, names(&[]), NOW).unwrap_err();
    assert!(
        e.to_string().contains("ca.key") && e.to_string().contains("restore"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn serving_names_cover_loopback_the_host_and_what_is_advertised() {
    let n = serving_names(
        "0.0.0.0:6443".parse().unwrap(),
        Some("198.18.0.1".parse().unwrap()),
        &["api.example".into(), " ".into()],
    );
    for want in ["localhost", "127.0.0.1", "::1", "198.18.0.1", "api.example"] {
        assert!(n.contains(want), "{want} in {n:?}");
    }
    assert!(!n.contains("0.0.0.0") && !n.contains(""));
}
