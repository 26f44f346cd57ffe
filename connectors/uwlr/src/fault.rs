//! UWLR fault codes and what they mean for rostersync.

use connector_api::ConnectorError;

/// Map a fault's dotted code (`Client.AutorisatieOngeldig`) and text to our error classes.
pub fn to_error(code: &str, message: &str, xsd_version: &str) -> ConnectorError {
    // A fault string can be long (a stack trace) or hostile: shown cleaned and cut short.
    let detail = connector_api::clean(&if message.is_empty() {
        code.to_owned()
    } else {
        format!("{code}: {message}")
    });
    match code {
        "Client.AutorisatieOngeldig" => ConnectorError::CredentialsRejected { detail },
        "Client.OngeldigeKlantIdentificatie" => ConnectorError::SupplierRejected { detail },
        "Client.XsdVersieOngeldig" => ConnectorError::UnsupportedVersion {
            version: xsd_version.to_owned(),
            detail,
        },
        "Client.OngeldigBericht" => ConnectorError::InvalidRequest { detail },
        "Server.InterneFout" | "Server.TijdelijkNietBeschikbaar" => ConnectorError::Unavailable {
            detail,
            retry_after: None,
        },
        c if c.starts_with("Server") => ConnectorError::Unavailable {
            detail,
            retry_after: None,
        },
        _ => ConnectorError::InvalidRequest { detail },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_or_hostile_fault_string_is_cut_short_and_made_visible() {
        let long = format!("\u{1b}[2J{}", "stack frame ".repeat(400));
        let e = to_error("Server.InterneFout", &long, "2.2");
        let shown = e.to_string();
        assert!(
            shown.chars().count() < 400,
            "{} characters",
            shown.chars().count()
        );
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
    }

    #[test]
    fn each_fault_code_has_its_class() {
        let cases = [
            ("Client.AutorisatieOngeldig", "credentials_rejected"),
            ("Client.OngeldigeKlantIdentificatie", "supplier_rejected"),
            ("Client.XsdVersieOngeldig", "unsupported_version"),
            ("Client.OngeldigBericht", "invalid_request"),
            ("Server.InterneFout", "unavailable"),
            ("Server.TijdelijkNietBeschikbaar", "unavailable"),
            ("Server.Iets", "unavailable"),
            ("Client.Iets", "invalid_request"),
        ];
        for (code, class) in cases {
            assert_eq!(to_error(code, "x", "2.2").class(), class, "{code}");
        }
        assert!(to_error("Server.InterneFout", "", "2.2").is_retryable());
    }
}
