//! Problems of a whole connection rather than of one school: the source refused rostersync's
//! own identity (supplier code, client certificate) or rostersync refused the source's
//! certificate. Such a problem is said once, naming the connection and the certificate, and
//! the schools on that connection wait instead of each failing on its own. Pure.

use connector_api::{ConnectorError, ErrorKind};

/// The one sentence for `e` when it is a problem of `connection` (`the broker`, `the LAS
/// connection 'esis'`) rather than of a school; `certificate` is where the connection's
/// client certificate is configured, when it has one.
pub fn problem(connection: &str, certificate: Option<&str>, e: &ConnectorError) -> Option<String> {
    if e.kind() != ErrorKind::Supplier {
        return None;
    }
    let what = match e {
        ConnectorError::TlsUntrusted { .. } => {
            format!("rostersync does not trust the certificate of {connection}")
        }
        _ => format!("{connection} refused rostersync's own identity"),
    };
    let cert = match (e, certificate) {
        (ConnectorError::Tls { .. }, Some(c)) => format!(" (its client certificate: {c})"),
        (ConnectorError::Tls { .. }, None) => {
            " (it has no client_certificate configured)".to_owned()
        }
        _ => String::new(),
    };
    Some(format!("{what}: {e}; {}{cert}", e.advice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_certificate_is_the_connections_problem_and_names_the_certificate() {
        let e = ConnectorError::Tls {
            detail: "the server ended the TLS handshake with the alert unknown_ca".into(),
        };
        let p = problem("the LAS connection 'esis'", Some("file /etc/esis.pem"), &e)
            .expect("a problem of the connection");
        assert!(p.starts_with("the LAS connection 'esis' refused rostersync's own identity"));
        assert!(p.contains("unknown_ca"), "{p}");
        assert!(
            p.ends_with("(its client certificate: file /etc/esis.pem)"),
            "{p}"
        );
        let none = problem("the broker", None, &e).expect("problem");
        assert!(none.contains("no client_certificate configured"), "{none}");
    }

    #[test]
    fn an_untrusted_server_is_ours_to_fix_and_a_schools_own_failure_is_not_a_connection_problem() {
        let e = ConnectorError::TlsUntrusted {
            detail: "rostersync does not trust the CA; it is issued by CN=Test CA".into(),
        };
        let p = problem("the broker", Some("file /b.pem"), &e).expect("problem");
        assert!(p.starts_with("rostersync does not trust the certificate of the broker"));
        assert!(
            p.contains("CN=Test CA") && p.contains("ca_certificate"),
            "{p}"
        );
        for school_only in [
            ConnectorError::CredentialsRejected {
                detail: "Autorisatie".into(),
            },
            ConnectorError::Transport {
                detail: "reset".into(),
            },
            ConnectorError::Malformed {
                detail: "xml".into(),
            },
        ] {
            assert!(problem("the broker", None, &school_only).is_none());
        }
        let supplier = ConnectorError::SupplierRejected {
            detail: "OngeldigeKlantIdentificatie".into(),
        };
        assert!(problem("the LAS connection 'esis'", None, &supplier).is_some());
    }
}
