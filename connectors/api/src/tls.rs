//! TLS failures read from rustls's own error types, never from message text: whether the
//! server refused rostersync's client certificate (an alert it sent), or rostersync refused
//! the server's certificate (and then which CA issued it, so the operator knows what to
//! trust). Both are problems of the connection, not of a school.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{AlertDescription, CertificateError, DigitallySignedStruct, SignatureScheme};

use crate::ConnectorError;

/// The rustls error somewhere in `err`'s chain. tokio-rustls hands rustls errors up inside an
/// `io::Error`, whose `source()` skips the error it wraps, so that one is looked into too.
pub(crate) fn find_rustls_error<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        current = match e.downcast_ref::<std::io::Error>() {
            // io::Errors nest (hyper wraps tokio-rustls's): look into each.
            Some(io) => match io.get_ref() {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => e.source(),
            },
            None => e.source(),
        };
    }
    None
}

/// A TLS failure as an operator can act on it.
pub(crate) fn classify(err: &rustls::Error) -> ConnectorError {
    match err {
        rustls::Error::AlertReceived(alert) => ConnectorError::Tls {
            detail: format!(
                "the server ended the TLS handshake with the alert {}: {}",
                alert_name(*alert),
                alert_meaning(*alert)
            ),
        },
        rustls::Error::InvalidCertificate(e) => ConnectorError::TlsUntrusted {
            detail: untrusted_meaning(e).to_owned(),
        },
        rustls::Error::NoCertificatesPresented => ConnectorError::TlsUntrusted {
            detail: "the server presented no certificate".into(),
        },
        other => ConnectorError::Tls {
            detail: format!("the TLS handshake failed: {other}"),
        },
    }
}

/// The alert's name as the TLS specifications write it.
pub fn alert_name(alert: AlertDescription) -> String {
    let known = match alert {
        AlertDescription::HandshakeFailure => "handshake_failure",
        AlertDescription::BadCertificate => "bad_certificate",
        AlertDescription::UnsupportedCertificate => "unsupported_certificate",
        AlertDescription::CertificateRevoked => "certificate_revoked",
        AlertDescription::CertificateExpired => "certificate_expired",
        AlertDescription::CertificateUnknown => "certificate_unknown",
        AlertDescription::UnknownCA => "unknown_ca",
        AlertDescription::AccessDenied => "access_denied",
        AlertDescription::DecryptError => "decrypt_error",
        AlertDescription::ProtocolVersion => "protocol_version",
        AlertDescription::InsufficientSecurity => "insufficient_security",
        AlertDescription::CertificateRequired => "certificate_required",
        AlertDescription::IllegalParameter => "illegal_parameter",
        AlertDescription::InternalError => "internal_error",
        AlertDescription::UnrecognisedName => "unrecognized_name",
        _ => "",
    };
    if known.is_empty() {
        format!("{alert:?}")
    } else {
        known.to_owned()
    }
}

fn alert_meaning(alert: AlertDescription) -> &'static str {
    match alert {
        AlertDescription::UnknownCA => {
            "it does not trust the CA that issued rostersync's client certificate"
        }
        AlertDescription::CertificateExpired => {
            "it says rostersync's client certificate has expired or is not valid yet"
        }
        AlertDescription::CertificateRevoked => {
            "it says rostersync's client certificate is revoked"
        }
        AlertDescription::CertificateRequired => {
            "it requires a client certificate and none was sent: configure this connection's \
             client_certificate"
        }
        AlertDescription::AccessDenied => {
            "it knows rostersync's client certificate but does not grant it access"
        }
        AlertDescription::BadCertificate
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateUnknown
        | AlertDescription::DecryptError => "it cannot use rostersync's client certificate",
        AlertDescription::ProtocolVersion | AlertDescription::InsufficientSecurity => {
            "it has no TLS version or cipher in common with rostersync"
        }
        _ => "it refused rostersync's client certificate or TLS settings",
    }
}

fn untrusted_meaning(e: &CertificateError) -> &'static str {
    match e {
        CertificateError::UnknownIssuer => {
            "rostersync does not trust the CA that issued the server's certificate"
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            "the server's certificate has expired (the source must renew it)"
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet (check this machine's clock)"
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            "the server's certificate is not valid for the host name in the endpoint"
        }
        CertificateError::Revoked => "the server's certificate is revoked",
        _ => "the server's certificate is not acceptable",
    }
}

/// Which CA issued the certificate `url`'s server presents: asked on a connection of its
/// own, after a normal one refused the certificate. Nothing is sent over it but the
/// handshake, so accepting any certificate there risks nothing.
pub(crate) async fn presented_issuer(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?.to_owned();
    let port = url.port_or_known_default()?;
    let captured = Arc::new(Capture::default());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .dangerous()
    .with_custom_certificate_verifier(captured.clone())
    .with_no_client_auth();
    let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned()).ok()?;
    let probe = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .ok()?;
        // The handshake may still fail (the server wants a client certificate): what we
        // came for arrived before that.
        let _ = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await;
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(5), probe)
        .await
        .ok()??;
    let der = captured.end_entity.lock().ok()?.clone()?;
    issuer_name(&der)
}

/// rostersync's client identity, parsed once for [`refusal`].
pub(crate) struct Identity {
    certs: Vec<CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl Identity {
    /// The certificates and key of a PEM identity; `None` when it holds no pair (reqwest,
    /// which reads the same PEM, says what is wrong with it).
    pub(crate) fn from_pem(pem: &[u8]) -> Option<Identity> {
        use rustls::pki_types::pem::PemObject;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .filter_map(Result::ok)
            .collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(pem).ok()?;
        (!certs.is_empty()).then_some(Identity { certs, key })
    }
}

/// Whether `url`'s server refuses rostersync's client certificate, asked on a connection of
/// its own: the handshake, then a moment's wait for an alert. Needed because with TLS 1.3
/// the refusal arrives after the client's side of the handshake is done, and the HTTP client
/// may then only say its request was cancelled. Nothing is sent but the handshake.
pub(crate) async fn refusal(
    url: &reqwest::Url,
    identity: Option<&Identity>,
) -> Option<rustls::Error> {
    use tokio::io::AsyncReadExt;
    let host = url.host_str()?.to_owned();
    let port = url.port_or_known_default()?;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(Capture::default()));
    let config = match identity {
        Some(i) => builder
            .with_client_auth_cert(i.certs.clone(), i.key.clone_key())
            .ok()?,
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from(host.trim_matches(['[', ']']).to_owned()).ok()?;
    let probe = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .ok()?;
        let mut tls = match tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
        {
            Ok(tls) => tls,
            Err(e) => return find_rustls_error(&e).cloned(),
        };
        let mut byte = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(2), tls.read(&mut byte)).await {
            Ok(Err(e)) => find_rustls_error(&e).cloned(),
            _ => None,
        }
    };
    tokio::time::timeout(Duration::from_secs(5), probe)
        .await
        .ok()
        .flatten()
        .filter(|e| matches!(e, rustls::Error::AlertReceived(_)))
}

/// Keeps the server's certificate and accepts it: only for [`presented_issuer`] and
/// [`refusal`], which send nothing over the connection.
#[derive(Debug, Default)]
struct Capture {
    end_entity: Mutex<Option<Vec<u8>>>,
}

impl ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut slot) = self.end_entity.lock() {
            *slot = Some(end_entity.to_vec());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// One DER element: its tag, its content, and what follows it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;

/// The fields of a DER certificate's `TBSCertificate` from the serial number on (the
/// optional `[0]` version skipped): serial number, signature algorithm, issuer, validity, ...
fn tbs_fields(der: &[u8]) -> Option<&[u8]> {
    let (SEQUENCE, cert, _) = der_element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = der_element(cert)? else {
        return None;
    };
    match der_element(tbs)? {
        (0xa0, _, after) => Some(after),
        _ => Some(tbs),
    }
}

/// The issuer of a DER certificate, as `CN=..., O=...` (the parts that name a CA).
pub(crate) fn issuer_name(der: &[u8]) -> Option<String> {
    let rest = tbs_fields(der)?;
    let (_, _, rest) = der_element(rest)?; // serial number
    let (_, _, rest) = der_element(rest)?; // signature algorithm
    let (SEQUENCE, mut name, _) = der_element(rest)? else {
        return None;
    };
    let mut parts = Vec::new();
    while !name.is_empty() {
        let (_, rdn, next) = der_element(name)?;
        name = next;
        let (_, atv, _) = der_element(rdn)?;
        let (_, oid, value) = der_element(atv)?;
        let label = match oid {
            [0x55, 0x04, 0x03] => "CN",
            [0x55, 0x04, 0x0a] => "O",
            [0x55, 0x04, 0x0b] => "OU",
            [0x55, 0x04, 0x06] => "C",
            _ => continue,
        };
        let (tag, text, _) = der_element(value)?;
        let text = if tag == 0x1e {
            // BMPString: UTF-16 big-endian.
            let units: Vec<u16> = text
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        } else {
            String::from_utf8_lossy(text).into_owned()
        };
        // A hostile server's name must not steer a terminal.
        let clean: String = text.chars().filter(|c| !c.is_control()).collect();
        parts.push(format!("{label}={clean}"));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// When a DER certificate stops being valid (its `notAfter`).
pub fn not_after(der: &[u8]) -> Option<chrono::DateTime<chrono::Utc>> {
    let mut rest = tbs_fields(der)?;
    // Serial number, signature algorithm, issuer, then the validity.
    for _ in 0..3 {
        rest = der_element(rest)?.2;
    }
    let (SEQUENCE, validity, _) = der_element(rest)? else {
        return None;
    };
    let (_, _, rest) = der_element(validity)?; // notBefore
    let (tag, text, _) = der_element(rest)?;
    let text = std::str::from_utf8(text).ok()?;
    // UTCTime has two digits of year (50..99 are 19xx), GeneralizedTime four.
    let full = match tag {
        0x17 if text.len() == 13 => {
            let century = if text[..2].parse::<u32>().ok()? >= 50 {
                "19"
            } else {
                "20"
            };
            format!("{century}{text}")
        }
        0x18 if text.len() == 15 => text.to_owned(),
        _ => return None,
    };
    chrono::NaiveDateTime::parse_from_str(&full, "%Y%m%d%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

/// When the first certificate of a PEM file (a client identity's own, which comes first)
/// expires; `None` when it holds no readable certificate.
pub fn pem_expiry(pem: &[u8]) -> Option<chrono::DateTime<chrono::Utc>> {
    use rustls::pki_types::pem::PemObject;
    let first = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    not_after(first.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_say_whose_certificate_was_refused() {
        let e = classify(&rustls::Error::AlertReceived(AlertDescription::UnknownCA));
        assert_eq!(e.class(), "tls");
        assert_eq!(e.kind(), crate::ErrorKind::Supplier);
        assert!(e.to_string().contains("unknown_ca"), "{e}");
        assert!(e.to_string().contains("client certificate"), "{e}");
        let e = classify(&rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired,
        ));
        assert!(e.to_string().contains("client_certificate"), "{e}");
    }

    #[test]
    fn a_server_certificate_we_do_not_trust_is_ours_to_fix() {
        let e = classify(&rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert_eq!(e.class(), "tls_untrusted");
        assert_eq!(e.kind(), crate::ErrorKind::Supplier);
        assert!(e.advice().contains("ca_certificate"), "{}", e.advice());
    }

    #[test]
    fn an_io_error_carrying_a_rustls_error_is_found() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::AccessDenied),
        );
        let found = find_rustls_error(&io).expect("found inside the io::Error");
        assert_eq!(
            *found,
            rustls::Error::AlertReceived(AlertDescription::AccessDenied)
        );
        let nested = std::io::Error::other(io);
        assert!(
            find_rustls_error(&nested).is_some(),
            "found two io::Errors deep"
        );
        let plain = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(find_rustls_error(&plain).is_none());
    }

    #[test]
    fn der_lengths_past_the_input_are_refused() {
        assert!(der_element(&[0x30, 0x05, 0x01]).is_none());
        assert!(der_element(&[0x30, 0x82, 0xff]).is_none());
        assert!(issuer_name(&[0x30, 0x00]).is_none());
        assert!(issuer_name(b"not a certificate").is_none());
    }
}
