//! Every HTTP listener (the admin socket, the admin TCP listener, the apps' API) is served
//! here, with the same defences: a client must send its request headers within a few seconds
//! (also between requests on a kept-alive connection), a request must be answered within a
//! minute, bodies are capped, and connections beyond a limit are refused at once, so slow or
//! many clients cannot hold the daemon's sockets and file descriptors.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// What every listener allows a client.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// To send a request's headers, and the longest silence before the next request on a
    /// kept-alive connection.
    pub header_read: Duration,
    /// To answer one request.
    pub request: Duration,
    /// The largest request body.
    pub body_bytes: usize,
    /// Open connections of one listener; more are closed as soon as they are accepted.
    pub connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read: Duration::from_secs(10),
            request: Duration::from_secs(60),
            body_bytes: 64 * 1024,
            connections: 128,
        }
    }
}

/// Who is on the other end, for handlers that rate-limit or log by address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Tcp(SocketAddr),
    /// The admin socket: access is by file permission.
    Local,
}

/// A bound listener: TCP (plain or with TLS) or a unix socket.
pub enum Bound {
    Tcp(TcpListener, Option<TlsAcceptor>),
    Unix(UnixListener),
}

/// Serve `app` on `bound` until the task is aborted. `name` labels its log lines and metrics.
pub fn spawn(
    name: &'static str,
    bound: Bound,
    app: Router,
    limits: Limits,
) -> tokio::task::JoinHandle<()> {
    let app =
        app.layer(DefaultBodyLimit::max(limits.body_bytes))
            .layer(middleware::from_fn_with_state(
                limits.request,
                answer_within,
            ));
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.connections));
    tokio::spawn(async move {
        loop {
            let accepted = match &bound {
                Bound::Tcp(l, _) => l.accept().await.map(|(s, a)| Conn::Tcp(s, a)),
                Bound::Unix(l) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
            };
            let conn = match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(listener = name, error = %e, "Cannot accept a connection.");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                metrics::counter!("rostersync_http_connections_refused_total", "listener" => name)
                    .increment(1);
                drop(conn);
                continue;
            };
            let tls = match &bound {
                Bound::Tcp(_, tls) => tls.clone(),
                Bound::Unix(_) => None,
            };
            let app = app.clone();
            tokio::spawn(async move {
                conn.serve(app, tls, limits).await;
                drop(slot);
            });
        }
    })
}

enum Conn {
    Tcp(tokio::net::TcpStream, SocketAddr),
    Unix(tokio::net::UnixStream),
}

impl Conn {
    async fn serve(self, app: Router, tls: Option<TlsAcceptor>, limits: Limits) {
        match self {
            Conn::Unix(s) => http(s, Peer::Local, app, limits).await,
            Conn::Tcp(s, addr) => match tls {
                None => http(s, Peer::Tcp(addr), app, limits).await,
                Some(acceptor) => {
                    // The handshake is bounded like a request's headers.
                    match tokio::time::timeout(limits.header_read, acceptor.accept(s)).await {
                        Ok(Ok(s)) => http(s, Peer::Tcp(addr), app, limits).await,
                        _ => tracing::debug!(peer = %addr, "A TLS handshake failed or stalled."),
                    }
                }
            },
        }
    }
}

/// One HTTP/1.1 connection with the header-read (and idle) timeout.
async fn http<S>(stream: S, peer: Peer, app: Router, limits: Limits)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(peer);
        app.clone().oneshot(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .keep_alive(true);
    if let Err(e) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(error = %e, "An HTTP connection ended with an error.");
    }
}

/// A handler that takes longer than the limit is answered 503 (its work is dropped).
async fn answer_within(
    axum::extract::State(limit): axum::extract::State<Duration>,
    req: Request,
    next: Next,
) -> Response {
    let answered = tokio::time::timeout(limit, next.run(req)).await;
    // A page of thousands of records (and SQLite's sort behind it) frees megabytes.
    crate::memory::give_back();
    match answered {
        Ok(r) => r,
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the request took too long; try again\n",
        )
            .into_response(),
    }
}

/// A TLS acceptor from PEM files: the certificate chain and its private key.
pub fn tls_acceptor(certificate: &[u8], private_key: &[u8]) -> Result<TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(certificate)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the certificate is not PEM: {e}"))?;
    if chain.is_empty() {
        return Err("the certificate file holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(private_key)
        .map_err(|e| format!("the private key is not PEM: {e}"))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Whether `addr` is only reachable from this machine.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Bind a unix socket that nobody but the owner and group can reach from its first moment:
/// the umask is narrowed around `bind`, so there is no window at default permissions.
pub fn bind_private_socket(path: &Path) -> std::io::Result<UnixListener> {
    use rustix::fs::Mode;
    // The umask is process-wide: a file another thread creates meanwhile is only made more
    // private by it.
    let old = rustix::process::umask(Mode::from_raw_mode(0o117));
    let bound = UnixListener::bind(path);
    rustix::process::umask(old);
    bound
}
