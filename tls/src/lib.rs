//! TLS for every connection RingRift makes or serves (DESIGN.md §12).
//!
//! - [`pki`]: the cluster CA, the certificates it issues (serving, and client certificates that
//!   carry a user and groups), self-signed serving certificates, reading certificates back, and
//!   when to renew one.
//! - [`serve`]: an acceptor that speaks only TLS (plain HTTP is answered 400 and closed), with a
//!   serving certificate replaceable while serving and client certificates checked after the
//!   handshake; [`http`]: the HTTP/1.1 accept loop over it that every server shares.
//! - [`pin`]: calling an agent, trusting exactly the certificate whose fingerprint its `Agent`
//!   status publishes.
//! - [`trust`]: trust failures found in an error chain, explained, and counted.
//! - [`client`]: client configurations that trust a CA and may present a certificate.
//! - [`files`]: keys written 0600, atomically.
//! - [`secret`]: constant-time comparison of secrets and bearer tokens.
//! - [`verify`]: the handshake signature checks every certificate verifier shares.
//!
//! One crypto provider for the whole workspace: ring ([`provider`]). Everything here passes it
//! explicitly; [`install_default_provider`] makes it the process default for libraries that ask
//! rustls for one (kube-client).

pub mod client;
pub mod files;
pub mod http;
pub mod pin;
pub mod pki;
pub mod secret;
pub mod serve;
pub mod trust;
pub mod verify;

use std::sync::Arc;

/// ring's provider. rustls 0.23.48 deprecates it because ring has no post-quantum key exchange
/// (X25519MLKEM768, which aws-lc-rs has); ring is still the provider chosen for this workspace,
/// for its build (no cmake, no C toolchain run per build) — docs/architecture.md records the
/// trade. This is the one place that names it.
///
/// Key exchange prefers X25519, as Go's crypto/tls and OpenSSL do: ring's provider lists P-384
/// first, whose generic code made every handshake several times dearer (a swarm opens a
/// connection to each holder; `bench sync` showed it in the profile). P-256 and P-384 stay
/// accepted for peers that offer only those.
#[allow(deprecated)]
fn ring() -> rustls::crypto::CryptoProvider {
    use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
    rustls::crypto::CryptoProvider {
        kx_groups: vec![X25519, SECP256R1, SECP384R1],
        ..rustls::crypto::ring::default_provider()
    }
}

/// The crypto provider of every TLS connection: ring.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(ring())
}

/// Makes ring the process-wide default provider (for libraries that build their own rustls
/// configurations). Idempotent.
pub fn install_default_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = ring().install_default();
    }
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
