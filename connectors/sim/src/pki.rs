//! A throw-away PKI for the simulated broker: a test CA made at start, a server certificate
//! for loopback, and client identities for publishers (valid, expired, or from a stranger's
//! CA) so mutual TLS is exercised exactly as against the real broker.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Which client identity to issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCert {
    /// Signed by the test CA, valid now.
    Valid,
    /// Signed by the test CA, expired yesterday.
    Expired,
    /// Valid, but signed by a CA the broker does not trust.
    Stranger,
}

/// The real broker speaks TLS 1.2 only; a refused client certificate then fails in the
/// handshake itself.
static TLS12_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
static ANY_TLS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS12, &rustls::version::TLS13];

pub struct Pki {
    ca: Issuer<'static, KeyPair>,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
}

fn ca(name: &str) -> Result<(Issuer<'static, KeyPair>, rcgen::Certificate), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    Ok((Issuer::new(params, key), cert))
}

impl Pki {
    pub fn generate() -> Result<Pki, rcgen::Error> {
        let (ca, cert) = ca("rostersync simulated broker CA")?;
        Ok(Pki {
            ca,
            ca_pem: cert.pem(),
            ca_der: cert.der().clone(),
        })
    }

    /// The CA certificate a client must trust to reach the simulated broker.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A publisher identity: certificate and private key in one PEM, as the broker issues it.
    pub fn client_identity(&self, which: ClientCert) -> Result<String, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "Simulated publisher");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let now = time::OffsetDateTime::now_utc();
        let (from, until) = match which {
            ClientCert::Expired => (
                now - time::Duration::days(400),
                now - time::Duration::days(1),
            ),
            _ => (
                now - time::Duration::days(1),
                now + time::Duration::days(365),
            ),
        };
        params.not_before = from;
        params.not_after = until;
        let cert = match which {
            ClientCert::Stranger => {
                let (stranger, _) = ca("Someone else's CA")?;
                params.signed_by(&key, &stranger)?
            }
            _ => params.signed_by(&key, &self.ca)?,
        };
        Ok(format!("{}{}", cert.pem(), key.serialize_pem()))
    }

    /// The server side: a certificate for loopback, TLS 1.2 only (as the real broker), and
    /// a client certificate from the test CA required on every connection.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        self.server(true)
    }

    /// A server that asks no client certificate (the portal: its clients carry a token).
    pub fn server_config_without_client_auth(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        self.server(false)
    }

    /// A server that asks for a client certificate and refuses it with `verifier`'s error
    /// (see [`crate::refuse`]); TLS 1.2 only (the refusal is an alert in the handshake) or
    /// TLS 1.3 (the client learns of it when it reads its first answer).
    pub fn refusing_server_config(
        &self,
        verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
        tls13: bool,
    ) -> Result<Arc<rustls::ServerConfig>, String> {
        let (cert, key) = self.server_certificate()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&rustls::SupportedProtocolVersion] = if tls13 {
            &[&rustls::version::TLS13]
        } else {
            TLS12_ONLY
        };
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert], key)
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(config))
    }

    /// A certificate for loopback signed by the test CA, and its key.
    fn server_certificate(
        &self,
    ) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), String> {
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .map_err(|e| e.to_string())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "simulated broker");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &self.ca)
            .map_err(|e| e.to_string())?;
        Ok((
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        ))
    }

    fn server(&self, client_auth: bool) -> Result<Arc<rustls::ServerConfig>, String> {
        let (cert, key) = self.server_certificate()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).map_err(|e| e.to_string())?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| e.to_string())?;
        let builder = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(if client_auth { TLS12_ONLY } else { ANY_TLS })
            .map_err(|e| e.to_string())?;
        let builder = if client_auth {
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(vec![cert], key)
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(config))
    }
}
