//! Serving HTTP/1.1 over an [`Acceptor`]: the accept loop every RingRift server shares (the API
//! server, the agents' REST API, the controller's admin port).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::serve::{AcceptError, Acceptor, ClientCert};

/// Serves HTTP/1.1 on `listener` until `shutdown` is cancelled: each accepted connection's
/// handshake (through `acceptor`) runs on its own task, then `make(client)` makes the service
/// for the connection. Connections refused at the handshake go to `refused`. After `shutdown`,
/// no new connection is taken, handshakes in progress are dropped, and open connections get
/// `grace` to finish their requests.
pub async fn serve<M, S, B>(
    listener: tokio::net::TcpListener,
    acceptor: Arc<Acceptor>,
    make: M,
    refused: impl Fn(std::net::SocketAddr, &AcceptError) + Send + Sync + 'static,
    shutdown: CancellationToken,
    grace: Duration,
) where
    M: Fn(ClientCert) -> S + Send + Sync + 'static,
    S: hyper::service::Service<hyper::Request<hyper::body::Incoming>, Response = hyper::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let (make, refused) = (Arc::new(make), Arc::new(refused));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "failed to accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (acceptor, make, refused) = (Arc::clone(&acceptor), Arc::clone(&make), Arc::clone(&refused));
                let watcher = graceful.watcher();
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    let accepted = tokio::select! {
                        accepted = acceptor.accept(stream) => accepted,
                        () = stop.cancelled() => return,
                    };
                    let accepted = match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            refused(peer, &e);
                            return;
                        }
                    };
                    let service = make(accepted.client);
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(accepted.stream), service);
                    if let Err(e) = watcher.watch(connection).await {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
}
