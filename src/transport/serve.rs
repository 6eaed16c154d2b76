//! The accept loop both ports use: a bounded number of connections, each in its own task
//! (a slow client holds only its own), TLS handshakes and request headers under a
//! timeout, HTTP/1.1 and HTTP/2 by hyper, and a graceful stop.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::metrics::transport::{self as transport_metrics, OpenConnection};
use crate::rpc::envelope::error_response;
use crate::rpc::error::{RpcError, INTERNAL_ERROR};

/// Default for `--max-connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default for `--header-read-timeout-ms` (also bounds a TLS handshake).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for `--max-streams-per-connection` (HTTP/2; HTTP/1.1 runs one at a time).
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 64;
/// How many over-limit connections at once get a written refusal; past that they are
/// closed without one.
const REFUSALS_AT_ONCE: usize = 64;
/// How long open connections get to finish their requests when the node stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Connection-level limits of one port.
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Connections served at once; more get HTTP 503 and are closed.
    pub max_connections: usize,
    /// Time to complete a TLS handshake and to send a request's headers.
    pub header_read_timeout: Duration,
    /// Concurrent HTTP/2 streams on one connection.
    pub max_streams_per_connection: u32,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_streams_per_connection: DEFAULT_MAX_STREAMS_PER_CONNECTION,
        }
    }
}

/// What the transport knows about a request's connection; every request carries it as an
/// extension.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionInfo {
    /// The client's address.
    pub remote: SocketAddr,
    /// The client presented a certificate that the port's CA verified.
    pub verified_client_cert: bool,
}

/// One port: its listener, optional TLS, limits and routes.
pub struct Port {
    /// `api` or `peer` (metrics and logs).
    pub name: &'static str,
    /// The bound listener.
    pub listener: TcpListener,
    /// TLS, or plain HTTP.
    pub tls: Option<Arc<ServerConfig>>,
    /// Connection limits.
    pub limits: ConnectionLimits,
    /// The routes.
    pub router: Router,
}

/// Serves `port` until `shutdown` resolves, then lets open connections finish (bounded).
pub async fn serve(port: Port, shutdown: impl Future<Output = ()> + Send) -> io::Result<()> {
    let Port {
        name,
        listener,
        tls,
        limits,
        router,
    } = port;
    let acceptor = tls.map(TlsAcceptor::from);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(REFUSALS_AT_ONCE));
    let graceful = GracefulShutdown::new();
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    http.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams_per_connection);
    let http = Arc::new(http);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (tcp, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: say so, let the system breathe.
                tracing::warn!(port = name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            transport_metrics::refused("connections");
            if let Ok(refusal) = refusals.clone().try_acquire_owned() {
                let acceptor = acceptor.clone();
                let (max, timeout) = (limits.max_connections, limits.header_read_timeout);
                tokio::spawn(async move {
                    refuse_connection(tcp, acceptor, max, timeout).await;
                    drop(refusal);
                });
            }
            continue;
        };
        let watcher = graceful.watcher();
        let (acceptor, http, router) = (acceptor.clone(), http.clone(), router.clone());
        let timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let _open = OpenConnection::start(name);
            let _permit = permit;
            match acceptor {
                None => {
                    let info = ConnectionInfo {
                        remote,
                        verified_client_cert: false,
                    };
                    let conn = http.serve_connection(TokioIo::new(tcp), service(router, info));
                    let _ = watcher.watch(conn.into_owned()).await;
                }
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            transport_metrics::refused("handshake");
                            tracing::debug!(port = name, %remote, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            transport_metrics::refused("handshake");
                            return;
                        }
                    };
                    let info = ConnectionInfo {
                        remote,
                        verified_client_cert: tls.get_ref().1.peer_certificates().is_some(),
                    };
                    let conn = http.serve_connection(TokioIo::new(tls), service(router, info));
                    let _ = watcher.watch(conn.into_owned()).await;
                }
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!(
            port = name,
            "connections still open after the drain timeout; closing them"
        );
    }
    Ok(())
}

/// The router as a hyper service, every request tagged with its connection.
fn service(
    router: Router,
    info: ConnectionInfo,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = tower::util::Oneshot<Router, Request<Body>>,
> + Clone {
    hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(info);
        router.clone().oneshot(request.map(Body::new))
    })
}

/// Answers one over-limit connection with HTTP 503 and a JSON-RPC error, then closes it.
async fn refuse_connection(
    tcp: TcpStream,
    acceptor: Option<TlsAcceptor>,
    max_connections: usize,
    timeout: Duration,
) {
    let reason = format!(
        "too many connections: this node serves {max_connections} at once (--max-connections); retry shortly"
    );
    let _ = tokio::time::timeout(timeout, async move {
        match acceptor {
            None => write_refusal(tcp, &reason).await,
            Some(acceptor) => {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    write_refusal(tls, &reason).await;
                }
            }
        }
    })
    .await;
}

async fn write_refusal<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, reason: &str) {
    let body = error_response(
        serde_json::Value::Null,
        &RpcError::new(INTERNAL_ERROR, reason),
    )
    .to_string();
    let status = StatusCode::SERVICE_UNAVAILABLE;
    let head = format!(
        "HTTP/1.1 {} {}\r\n{}: application/json\r\n{}: {}\r\n{}: 1\r\nconnection: close\r\n\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        header::CONTENT_TYPE,
        header::CONTENT_LENGTH,
        body.len(),
        header::RETRY_AFTER,
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream.shutdown().await;
}
