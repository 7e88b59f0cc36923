//! Holders that are not agents, for sync tests: an endpoint that serves the true manifest and
//! garbage bytes over TLS with a key pair of its own, and an `Agent` object that points at it.

// Test harness: a failed unwrap is a failed test with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::missing_panics_doc
)]

use std::io::{Read as _, Write as _};

use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use ringrift_crds::agent::Agent;
use serde_json::json;

use crate::cluster::Cluster;

/// A holder that answers with the true manifest and garbage bytes, over TLS with a key pair of
/// its own: an agent that is who its Agent status says, and serves bad data. Returns its
/// endpoint and the fingerprint of `pem` (the certificate it serves).
pub fn evil_holder(manifest: String, pem: &ringrift_tls::pki::Pem) -> (String, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let config = std::sync::Arc::new(
        rustls::ServerConfig::builder_with_provider(ringrift_tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(pem.chain().unwrap(), pem.private_key().unwrap())
            .unwrap(),
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (manifest, config) = (manifest.clone(), config.clone());
            std::thread::spawn(move || {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut stream = rustls::StreamOwned::new(conn, stream);
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request).to_lowercase();
                let body: Vec<u8> = if text.starts_with("get ")
                    && text
                        .split_whitespace()
                        .nth(1)
                        .is_some_and(|p| p.ends_with("/chunks"))
                {
                    manifest.into_bytes()
                } else {
                    // bytes=a-b: as many garbage bytes as asked.
                    let range = text
                        .split("range: bytes=")
                        .nth(1)
                        .and_then(|r| r.lines().next())
                        .unwrap_or("0-0");
                    let (a, b) = range.split_once('-').unwrap_or(("0", "0"));
                    let n =
                        b.trim().parse::<usize>().unwrap_or(0) + 1 - a.trim().parse::<usize>().unwrap_or(0);
                    vec![0x5a; n]
                };
                let head = format!(
                    "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
                stream.conn.send_close_notify();
                let _ = stream.flush();
            });
        }
    });
    (format!("https://{addr}"), pem.info().unwrap().fingerprint)
}

/// A fresh self-signed key pair for a fake holder.
pub fn key_pair() -> ringrift_tls::pki::Pem {
    ringrift_tls::pki::self_signed("fake", &["127.0.0.1".into()], ringrift_tls::now(), 86_400).unwrap()
}

/// Registers an Agent `name` whose endpoint is `endpoint`, serving the certificate with
/// `fingerprint` (no agent process behind it).
pub async fn fake_agent(cluster: &Cluster, name: &str, endpoint: &str, fingerprint: &str) {
    let agents: Api<Agent> = Api::all(cluster.client.clone());
    agents
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"apiVersion": "ringrift.ai/v1alpha1", "kind": "Agent", "metadata": {"name": name}, "spec": {}})).unwrap(),
        )
        .await
        .unwrap();
    agents
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"endpoint": endpoint, "certificateFingerprint": fingerprint}})),
        )
        .await
        .unwrap();
}
