//! Client configurations for calling a server whose CA is known (the API server, from a
//! kubeconfig's CA data), optionally presenting a client certificate.

use std::sync::Arc;

use rustls::ClientConfig;

use crate::pki::Pem;
use crate::serve::{ServeError, roots};

/// Trusts the CAs in `ca_pem` (a PEM bundle) and presents `identity` when given.
///
/// # Errors
/// When the CA bundle or the identity does not parse, or rustls refuses them.
pub fn with_ca(ca_pem: &[u8], identity: Option<&Pem>) -> Result<Arc<ClientConfig>, ServeError> {
    let provider = crate::provider();
    let rustls_error = |what: &str| {
        let what = what.to_owned();
        move |source| ServeError::Rustls { what, source }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(rustls_error("the protocol versions"))?
        .with_root_certificates(roots([(ca_pem, "the CA bundle")])?);
    let mut config = match identity {
        Some(pem) => builder
            .with_client_auth_cert(pem.chain()?, pem.private_key()?)
            .map_err(rustls_error("the client certificate"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
