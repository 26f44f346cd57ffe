//! A TLS server that refuses every client certificate with a chosen alert, as a broker or an
//! ESIS endpoint does when rostersync's certificate expired, is not registered, or is
//! missing. It counts connections, so a test can tell one check from retries in a loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::pki::Pki;

/// The alert the server answers a client certificate with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    UnknownCa,
    BadCertificate,
    CertificateExpired,
    AccessDenied,
    HandshakeFailure,
    /// Sent by any server that requires a certificate when the client has none.
    CertificateRequired,
}

impl Refusal {
    pub const ALL: [Refusal; 6] = [
        Refusal::UnknownCa,
        Refusal::BadCertificate,
        Refusal::CertificateRequired,
        Refusal::CertificateExpired,
        Refusal::AccessDenied,
        Refusal::HandshakeFailure,
    ];

    /// The alert's name in the TLS specifications.
    pub fn alert(self) -> &'static str {
        match self {
            Refusal::UnknownCa => "unknown_ca",
            Refusal::BadCertificate => "bad_certificate",
            Refusal::CertificateExpired => "certificate_expired",
            Refusal::AccessDenied => "access_denied",
            Refusal::HandshakeFailure => "handshake_failure",
            Refusal::CertificateRequired => "certificate_required",
        }
    }

    /// The verification error rustls turns into this alert.
    fn error(self) -> rustls::Error {
        let cert = |e| rustls::Error::InvalidCertificate(e);
        match self {
            Refusal::UnknownCa => cert(CertificateError::UnknownIssuer),
            Refusal::BadCertificate => cert(CertificateError::BadEncoding),
            Refusal::CertificateExpired => cert(CertificateError::Expired),
            Refusal::AccessDenied => cert(CertificateError::ApplicationVerificationFailure),
            // Not a certificate error: rustls answers it with handshake_failure. (With no
            // certificate at all, the server sends certificate_required before asking this.)
            Refusal::HandshakeFailure | Refusal::CertificateRequired => {
                rustls::Error::General("refused by the simulated server".into())
            }
        }
    }
}

#[derive(Debug)]
struct Refuser(Refusal);

impl ClientCertVerifier for Refuser {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Err(self.0.error())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(self.0.error())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(self.0.error())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The refusing server on 127.0.0.1; stops when dropped.
pub struct RefusingServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RefusingServer {
    pub async fn start(pki: &Pki, refusal: Refusal, tls13: bool) -> std::io::Result<Self> {
        let config = pki
            .refusing_server_config(Arc::new(Refuser(refusal)), tls13)
            .map_err(std::io::Error::other)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(refuse(tcp, config.clone()));
            }
        });
        Ok(RefusingServer {
            addr,
            connections,
            task,
        })
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.addr.port())
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Drive the handshake until rustls refuses, send its alert, then linger until the client
/// closes: closing at once could make the client's next write meet a reset before it read
/// the alert (with TLS 1.3 it is still sending its request).
async fn refuse(mut tcp: TcpStream, config: Arc<rustls::ServerConfig>) {
    let Ok(mut tls) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut buf = vec![0u8; 16 * 1024];
    let mut refused = false;
    loop {
        let mut out = Vec::new();
        while tls.wants_write() {
            if tls.write_tls(&mut out).is_err() {
                break;
            }
        }
        if !out.is_empty() && tcp.write_all(&out).await.is_err() {
            return;
        }
        if refused {
            break;
        }
        let n = match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut incoming = &buf[..n];
        while !incoming.is_empty() {
            if tls.read_tls(&mut incoming).is_err() {
                break;
            }
        }
        refused = tls.process_new_packets().is_err();
    }
    let linger = async { while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), linger).await;
}

impl Drop for RefusingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
