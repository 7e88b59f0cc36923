//! A minimal HTTP/1.1 client for the benchmarks: one kept-alive connection per worker, over TLS
//! (trusting the server's CA, presenting the kubeconfig's client certificate) or, for the
//! insecure baseline, plain TCP.

use std::sync::Arc;

use anyhow::Context as _;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Where the server is and how to speak to it.
#[derive(Clone)]
pub struct Target {
    /// `host:port`.
    pub address: String,
    /// TLS, or plain when none.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Target {
    /// The server, CA and client certificate of the kubeconfig at `path`.
    ///
    /// # Errors
    /// When it cannot be read or names no usable server.
    pub fn from_kubeconfig(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).context("failed to read the kubeconfig")?;
        let doc: serde_json::Value =
            serde_saphyr::from_str(&text).context("failed to parse the kubeconfig")?;
        let cluster = &doc["clusters"][0]["cluster"];
        let user = &doc["users"][0]["user"];
        let server = cluster["server"]
            .as_str()
            .context("the kubeconfig names no server")?;
        let (scheme, rest) = server.split_once("://").context("the server is not a URL")?;
        let address = rest.trim_end_matches('/').to_owned();
        if scheme == "http" {
            return Ok(Self { address, tls: None });
        }
        let decode = |v: &serde_json::Value| -> anyhow::Result<Option<Vec<u8>>> {
            v.as_str()
                .map(|s| base64::engine::general_purpose::STANDARD.decode(s.trim()))
                .transpose()
                .context("bad base64 in the kubeconfig")
        };
        let ca = decode(&cluster["certificate-authority-data"])?.context("the kubeconfig has no CA data")?;
        let identity = match (
            decode(&user["client-certificate-data"])?,
            decode(&user["client-key-data"])?,
        ) {
            (Some(cert), Some(key)) => Some(ringrift_tls::pki::Pem {
                cert: String::from_utf8(cert)?,
                key: String::from_utf8(key)?,
            }),
            _ => None,
        };
        let tls = ringrift_tls::client::with_ca(&ca, identity.as_ref())?;
        Ok(Self {
            address,
            tls: Some(tls),
        })
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// One connection to the API server.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Connection {
    /// Opens a connection to `target`.
    pub async fn open(target: &Target) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(&target.address).await?;
        stream.set_nodelay(true)?;
        let sender = if let Some(config) = &target.tls {
            let host = target
                .address
                .rsplit_once(':')
                .map_or(target.address.as_str(), |(h, _)| h);
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(ringrift_tls::pin::server_name(host), stream)
                .await?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            sender
        } else {
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            sender
        };
        Ok(Self {
            sender,
            host: target.address.clone(),
        })
    }

    fn request(&self, method: Method, path: &str, body: Vec<u8>) -> anyhow::Result<Request<Full<Bytes>>> {
        Ok(Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?)
    }

    /// Sends a request and reads the whole response.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        self.sender.ready().await?;
        let response = self
            .sender
            .send_request(self.request(method, path, body)?)
            .await?;
        let status = response.status();
        Ok((status, response.into_body().collect().await?.to_bytes()))
    }

    /// Starts a request whose response streams (a watch); returns its body.
    pub async fn stream(&mut self, path: &str) -> anyhow::Result<hyper::body::Incoming> {
        self.sender.ready().await?;
        let response = self
            .sender
            .send_request(self.request(Method::GET, path, Vec::new())?)
            .await?;
        anyhow::ensure!(
            response.status() == StatusCode::OK,
            "watch answered {}",
            response.status()
        );
        Ok(response.into_body())
    }
}
