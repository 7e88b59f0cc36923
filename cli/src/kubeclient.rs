//! How the roles that talk to the API find it and trust it: `--kubeconfig`, else the usual
//! inference (`KUBECONFIG`, `~/.kube/config`, then the in-cluster service account: `token`,
//! `ca.crt` and `namespace` under `/var/run/secrets/kubernetes.io/serviceaccount`, with
//! `KUBERNETES_SERVICE_HOST`/`PORT`). kube re-reads token files and the in-cluster CA when they
//! rotate.
//!
//! Every request goes through a layer that logs each trust failure with its cause (which
//! server, which certificate or CA, which credential) and counts it
//! (`<role>_trust_failures_total{peer="apiserver"}`); the first request is a check, and a role
//! whose first connection fails trust exits with the cause.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::Context as _;
use base64::Engine as _;
use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use ringrift_tls::pki::CertInfo;
use ringrift_tls::trust::{self, Reason, TrustMetrics};

/// Connection options.
#[derive(Debug, clap::Args)]
pub struct KubeArgs {
    /// Kubeconfig file of the API server (for example the one `ringrift apiserver
    /// --write-kubeconfig` wrote). Unset: `KUBECONFIG`, `~/.kube/config`, else the in-cluster
    /// service account.
    #[arg(long, env = "RINGRIFT_KUBECONFIG", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

/// The metric label of the API server as a peer.
const PEER: &str = "apiserver";

/// Where the configuration came from, for messages.
fn load_error_hint(kubeconfig: &anyhow::Error, incluster: &kube::config::InClusterError) -> String {
    format!(
        "failed to find the API server: no usable kubeconfig ({kubeconfig:#}) and not in a cluster ({incluster}); pass --kubeconfig"
    )
}

async fn load(args: &KubeArgs) -> anyhow::Result<(kube::Config, String)> {
    if let Some(path) = &args.kubeconfig {
        let kubeconfig = Kubeconfig::read_from(path)
            .with_context(|| format!("failed to read the kubeconfig {}", path.display()))?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .with_context(|| format!("failed to load the kubeconfig {}", path.display()))?;
        return Ok((config, format!("kubeconfig {}", path.display())));
    }
    let from_file = kube::Config::from_kubeconfig(&KubeConfigOptions::default())
        .await
        .context("failed to load KUBECONFIG or ~/.kube/config");
    match from_file {
        Ok(config) => Ok((config, "KUBECONFIG or ~/.kube/config".into())),
        Err(file_error) => match kube::Config::incluster() {
            Ok(config) => Ok((config, "the in-cluster service account".into())),
            Err(e) => anyhow::bail!(load_error_hint(&file_error, &e)),
        },
    }
}

fn certificate(pem: &[u8], what: &str) -> String {
    CertInfo::from_pem(pem, what).map_or_else(|e| format!("{what} ({e})"), |c| c.describe())
}

/// Who the configuration authenticates as, in words.
fn identity(config: &kube::Config) -> String {
    let auth = &config.auth_info;
    if let Some(data) = &auth.client_certificate_data {
        let pem = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .unwrap_or_default();
        return format!(
            "client certificate {}",
            certificate(&pem, "client-certificate-data")
        );
    }
    if let Some(path) = &auth.client_certificate {
        let pem = std::fs::read(path).unwrap_or_default();
        return format!("client certificate {} from {path}", certificate(&pem, path));
    }
    if let Some(path) = &auth.token_file {
        return format!("the token in {path}");
    }
    if auth.token.is_some() {
        return "a bearer token".into();
    }
    if let Some(exec) = &auth.exec {
        return format!(
            "credentials from {}",
            exec.command.as_deref().unwrap_or("an exec plugin")
        );
    }
    "no credentials (anonymous)".into()
}

/// What the configuration trusts the server by, in words.
fn trusted(config: &kube::Config) -> String {
    if config.accept_invalid_certs {
        return "any certificate (insecure-skip-tls-verify)".into();
    }
    if let Some(path) = &config.root_cert_file {
        let pem = std::fs::read(path).unwrap_or_default();
        return format!("the CA {} from {}", certificate(&pem, "ca.crt"), path.display());
    }
    match &config.root_cert {
        Some(ders) => {
            let cas: Vec<String> = ders
                .iter()
                .map(|d| CertInfo::from_der(d).map_or_else(|_| "an unreadable CA".into(), |c| c.subject()))
                .collect();
            format!("the CA {}", cas.join(", "))
        }
        None => "the system's trusted CAs".into(),
    }
}

/// What a failure is logged with.
#[derive(Debug)]
struct ApiTrust {
    server: String,
    identity: String,
    trusted: String,
    trust: TrustMetrics,
}

impl ApiTrust {
    fn failed(&self, reason: Reason, detail: &str) {
        self.trust.record(PEER, reason);
        match reason {
            Reason::Unauthorized | Reason::Forbidden => tracing::warn!(
                server = %self.server,
                reason = reason.label(),
                credential = %self.identity,
                "the API server refused this credential: {detail}"
            ),
            _ => tracing::warn!(
                server = %self.server,
                reason = reason.label(),
                trusting = %self.trusted,
                credential = %self.identity,
                "cannot trust the API server: {detail}"
            ),
        }
    }
}

/// Logs and counts trust failures of the requests through it.
#[derive(Debug, Clone)]
struct TrustLayer(Arc<ApiTrust>);

impl<S> tower::Layer<S> for TrustLayer {
    type Service = TrustService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TrustService {
            inner,
            context: Arc::clone(&self.0),
        }
    }
}

#[derive(Debug, Clone)]
struct TrustService<S> {
    inner: S,
    context: Arc<ApiTrust>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, B> tower::Service<hyper::Request<kube::client::Body>> for TrustService<S>
where
    S: tower::Service<hyper::Request<kube::client::Body>, Response = hyper::Response<B>, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = hyper::Response<B>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: hyper::Request<kube::client::Body>) -> Self::Future {
        let what = format!("{} {}", request.method(), request.uri().path());
        let future = self.inner.call(request);
        let context = Arc::clone(&self.context);
        Box::pin(async move {
            let result = future.await;
            match &result {
                Ok(response) => {
                    let code = response.status().as_u16();
                    if let Some(f) = trust::of_status(code, &format!("{code} on {what}")) {
                        context.failed(f.reason, &f.detail);
                    }
                }
                Err(e) => {
                    if let Some(f) = trust::classify(&**e) {
                        context.failed(f.reason, &f.detail);
                    }
                }
            }
            result
        })
    }
}

/// `host:port` of a URL.
fn authority(url: &hyper::Uri) -> Option<String> {
    let host = url.host()?;
    let port = url
        .port_u16()
        .unwrap_or(if url.scheme_str() == Some("http") { 80 } else { 443 });
    Some(if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// The first request: fails on a trust failure (with the certificate the server presented) or
/// a refused credential; anything else (the server still starting) is left to the role's
/// retries.
async fn check(client: &kube::Client, config: &kube::Config, source: &str) -> anyhow::Result<()> {
    let server = config.cluster_url.to_string();
    match client.list_core_api_versions().await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 401 => anyhow::bail!(
            "the API server {server} refused {} from {source}: 401 {}",
            identity(config),
            status.message
        ),
        Err(e) => {
            let Some(failure) = trust::classify(&e) else {
                tracing::warn!(%server, error = %e, "the API server did not answer yet; retrying as the work goes");
                return Ok(());
            };
            let presented = match authority(&config.cluster_url) {
                Some(a) => ringrift_tls::pin::presented(&a, std::time::Duration::from_secs(5))
                    .await
                    .map_or_else(|_| String::new(), |c| format!("; it presented {}", c.describe())),
                None => String::new(),
            };
            anyhow::bail!(
                "cannot trust the API server {server} ({}): {}{presented}; {source} trusts {}",
                failure.reason.label(),
                failure.detail,
                trusted(config)
            )
        }
    }
}

/// A client for the API server, and the counter of its trust failures (to register in the
/// role's metrics).
///
/// # Errors
/// When no configuration is found or usable, or the first connection fails trust.
pub async fn connect(args: &KubeArgs) -> anyhow::Result<(kube::Client, TrustMetrics)> {
    ringrift_tls::install_default_provider();
    let (config, source) = load(args).await?;
    let trust = TrustMetrics::default();
    let context = ApiTrust {
        server: config.cluster_url.to_string(),
        identity: identity(&config),
        trusted: trusted(&config),
        trust: trust.clone(),
    };
    tracing::debug!(server = %context.server, credential = %context.identity, trusting = %context.trusted, %source, "API server");
    let client = ClientBuilder::try_from(config.clone())
        .with_context(|| format!("failed to build the API client from {source}"))?
        .with_layer(&TrustLayer(Arc::new(context)))
        .build();
    check(&client, &config, &source).await?;
    Ok((client, trust))
}

/// A client for the API server (see [`connect`]).
///
/// # Errors
/// As [`connect`].
pub async fn client(args: &KubeArgs) -> anyhow::Result<kube::Client> {
    Ok(connect(args).await?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_of_urls() {
        let a = |u: &str| authority(&u.parse().unwrap());
        assert_eq!(a("https://127.0.0.1:6443").as_deref(), Some("127.0.0.1:6443"));
        assert_eq!(a("https://api.example").as_deref(), Some("api.example:443"));
        assert_eq!(a("https://[::1]:6443/").as_deref(), Some("[::1]:6443"));
    }

    #[test]
    fn credentials_and_cas_are_described() {
        let ca = ringrift_tls::pki::Ca::generate("ringrift-ca", ringrift_tls::now()).unwrap();
        let pem = ca.client("alice", None, ringrift_tls::now(), 3600).unwrap();
        let mut config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
        config.auth_info.client_certificate_data =
            Some(base64::engine::general_purpose::STANDARD.encode(&pem.cert));
        config.root_cert = Some(vec![ca.cert_der().to_vec()]);
        assert!(identity(&config).starts_with("client certificate CN=alice (issued by CN=ringrift-ca"));
        assert_eq!(trusted(&config), "the CA CN=ringrift-ca");
        config.auth_info.client_certificate_data = None;
        config.auth_info.token_file = Some("/var/run/secrets/kubernetes.io/serviceaccount/token".into());
        assert_eq!(
            identity(&config),
            "the token in /var/run/secrets/kubernetes.io/serviceaccount/token"
        );
        config.accept_invalid_certs = true;
        assert!(trusted(&config).contains("insecure-skip-tls-verify"));
    }
}
