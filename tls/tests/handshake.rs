//! Real handshakes on loopback: pinned clients, client certificates checked after the
//! handshake, plain HTTP answered, certificates replaced while serving.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use ringrift_tls::pki::{Ca, DAY, Pem, self_signed};
use ringrift_tls::serve::{AcceptError, Acceptor, ClientCert, certified_key, roots};
use ringrift_tls::trust::{Reason, classify};
use ringrift_tls::{client, now, pin};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Serves one connection: completes the handshake, answers "hello" on TLS, and reports what
/// the acceptor saw.
async fn serve_once(
    acceptor: Arc<Acceptor>,
) -> (String, tokio::task::JoinHandle<Result<ClientCert, String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        match acceptor.accept(tcp).await {
            Ok(mut accepted) => {
                let _ = accepted.stream.write_all(b"hello").await;
                let _ = accepted.stream.shutdown().await;
                Ok(accepted.client)
            }
            Err(e) => Err(match e {
                AcceptError::PlainHttp => "plain".to_owned(),
                other => other.to_string(),
            }),
        }
    });
    (addr, task)
}

fn agent_cert() -> Pem {
    self_signed("agent-a", &["127.0.0.1".into()], now(), DAY).unwrap()
}

#[tokio::test]
async fn a_pinned_client_trusts_exactly_the_pinned_certificate() {
    let pem = agent_cert();
    let fp = pem.info().unwrap().fingerprint;
    let acceptor = Arc::new(Acceptor::new(certified_key(&pem, "agent").unwrap(), None).unwrap());

    let (addr, server) = serve_once(acceptor.clone()).await;
    let config = pin::client_config(&fp).unwrap();
    let mut stream = pin::connect(&addr, config, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    let mut got = String::new();
    stream.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "hello");
    assert_eq!(server.await.unwrap(), Ok(ClientCert::None));

    // Another agent's fingerprint: refused, and the cause is found in the chain.
    let other = agent_cert().info().unwrap().fingerprint;
    let (addr, _server) = serve_once(acceptor).await;
    let e = pin::connect(
        &addr,
        pin::client_config(&other).unwrap(),
        std::time::Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    let failure = classify(&e).unwrap();
    assert_eq!(failure.reason, Reason::FingerprintMismatch);
    assert!(
        failure.detail.contains(&fp) && failure.detail.contains(&other),
        "{}",
        failure.detail
    );
}

#[tokio::test]
async fn the_certificate_a_server_presents_can_be_read_to_explain_a_failure() {
    let pem = agent_cert();
    let acceptor = Arc::new(Acceptor::new(certified_key(&pem, "agent").unwrap(), None).unwrap());
    let (addr, _server) = serve_once(acceptor).await;
    let seen = pin::presented(&addr, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(seen, pem.info().unwrap());
}

#[tokio::test]
async fn plain_http_on_a_tls_port_is_answered_400_and_closed() {
    let acceptor = Arc::new(Acceptor::new(certified_key(&agent_cert(), "agent").unwrap(), None).unwrap());
    let (addr, server) = serve_once(acceptor).await;
    let mut tcp = TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.0 400 Bad Request"), "{answer}");
    assert!(
        answer.contains("Client sent an HTTP request to an HTTPS server."),
        "{answer}"
    );
    assert_eq!(server.await.unwrap(), Err("plain".to_owned()));
}

#[tokio::test]
async fn a_tls_client_of_a_plain_server_learns_it_is_not_tls() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 512];
        let _ = tcp.read(&mut buf).await;
        let _ = tcp
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await;
    });
    let e = pin::connect(
        &addr,
        pin::client_config(&agent_cert().info().unwrap().fingerprint).unwrap(),
        std::time::Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert_eq!(classify(&e).unwrap().reason, Reason::NotTls, "{e}");
}

#[tokio::test]
async fn client_certificates_are_verified_after_the_handshake() {
    let ca = Ca::generate("cluster-ca", now()).unwrap();
    let serving = ca
        .serving("apiserver", &["127.0.0.1".into()], now(), DAY)
        .unwrap();
    let client_roots = roots([(ca.cert_pem().as_bytes(), "ca")]).unwrap();
    let acceptor =
        Arc::new(Acceptor::new(certified_key(&serving, "serving").unwrap(), Some(client_roots)).unwrap());

    let connect = |identity: Option<Pem>, acceptor: Arc<Acceptor>, ca_pem: String| async move {
        let (addr, server) = serve_once(acceptor).await;
        let config = client::with_ca(ca_pem.as_bytes(), identity.as_ref()).unwrap();
        let tcp = TcpStream::connect(&addr).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(pin::server_name("127.0.0.1"), tcp)
            .await
            .unwrap();
        let mut got = String::new();
        let _ = tls.read_to_string(&mut got).await;
        server.await.unwrap().unwrap()
    };

    // Signed by the CA: the user and group read from it.
    let alice = ca.client("alice", Some("ops"), now(), DAY).unwrap();
    match connect(Some(alice), acceptor.clone(), ca.cert_pem().to_owned()).await {
        ClientCert::Verified(info) => {
            assert_eq!(info.common_names, ["alice"]);
            assert_eq!(info.organizations, ["ops"]);
        }
        other => panic!("{other:?}"),
    }
    // No certificate: fine (a token may follow).
    assert_eq!(
        connect(None, acceptor.clone(), ca.cert_pem().to_owned()).await,
        ClientCert::None
    );
    // Expired: the handshake completes, the certificate is rejected with the reason.
    let expired = ca.client("bob", None, now() - 10 * DAY, DAY).unwrap();
    match connect(Some(expired), acceptor.clone(), ca.cert_pem().to_owned()).await {
        ClientCert::Rejected { subject, reason } => {
            assert_eq!(subject, "CN=bob");
            assert!(reason.contains("expired"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Signed by another CA.
    let stranger = Ca::generate("other-ca", now())
        .unwrap()
        .client("mallory", None, now(), DAY)
        .unwrap();
    match connect(Some(stranger), acceptor, ca.cert_pem().to_owned()).await {
        ClientCert::Rejected { subject, reason } => {
            assert_eq!(subject, "CN=mallory");
            assert!(reason.contains("unknown certificate authority"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_replaced_certificate_is_served_to_new_connections() {
    let first = agent_cert();
    let second = agent_cert();
    let acceptor = Arc::new(Acceptor::new(certified_key(&first, "first").unwrap(), None).unwrap());
    acceptor.replace_certificate(certified_key(&second, "second").unwrap());
    let (addr, _server) = serve_once(acceptor.clone()).await;
    let fp = second.info().unwrap().fingerprint;
    pin::connect(
        &addr,
        pin::client_config(&fp).unwrap(),
        std::time::Duration::from_secs(5),
    )
    .await
    .expect("the new certificate is served");
    // A key that is not the certificate's is refused when set up.
    let mismatched = Pem {
        cert: first.cert.clone(),
        key: second.key.clone(),
    };
    let e = certified_key(&mismatched, "mismatched pair").unwrap_err();
    assert!(e.to_string().contains("mismatched pair"), "{e}");
}

/// Every handshake agrees on X25519 (ring's provider would start with P-384, several times
/// dearer), and a second connection to the same pinned peer resumes the first one's session.
#[tokio::test]
async fn handshakes_use_x25519_and_the_next_connection_to_a_peer_resumes() {
    let pem = agent_cert();
    let fp = pem.info().unwrap().fingerprint;
    let acceptor = Arc::new(Acceptor::new(certified_key(&pem, "agent").unwrap(), None).unwrap());
    let config = pin::client_config(&fp).unwrap();
    assert!(
        Arc::ptr_eq(&config, &pin::client_config(&fp).unwrap()),
        "one configuration (and session cache) per pin"
    );
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let (addr, server) = serve_once(acceptor.clone()).await;
        let mut stream = pin::connect(&addr, config.clone(), std::time::Duration::from_secs(5))
            .await
            .unwrap();
        let mut got = String::new();
        stream.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "hello");
        server.await.unwrap().unwrap();
        let conn = stream.get_ref().1;
        assert_eq!(
            conn.negotiated_key_exchange_group()
                .map(rustls::crypto::SupportedKxGroup::name),
            Some(rustls::NamedGroup::X25519)
        );
        kinds.push(conn.handshake_kind());
    }
    assert_eq!(
        kinds,
        [
            Some(rustls::HandshakeKind::Full),
            Some(rustls::HandshakeKind::Resumed)
        ]
    );
}
