//! One error type for every connector, classified by what an operator can do about it.
//! Messages never contain credentials; details from a source are trimmed.

use std::time::Duration;

/// The broad consequence of an error, which drives retries, parking and alerts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Try again later (with backoff); the source or network is having a bad moment.
    Transient,
    /// The school's own credential is wrong or does not cover the school: park the school.
    Credentials,
    /// rostersync's own side of the connection is wrong: its identity at the source (supplier
    /// code, client certificate) or the trust it places in the source's certificate. Every
    /// school of that source is affected.
    Supplier,
    /// The credential works but lacks a right or a field.
    Access,
    /// The answer could not be trusted as data.
    BadData,
    /// Our request or configuration is wrong.
    Config,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("the source rejected the school's credential ({})", clean(.detail))]
    CredentialsRejected { detail: String },
    #[error("the source rejected rostersync's supplier identity ({})", clean(.detail))]
    SupplierRejected { detail: String },
    #[error("access denied ({})", clean(.detail))]
    AccessDenied { detail: String },
    #[error("the source is temporarily unavailable ({})", clean(.detail))]
    Unavailable {
        detail: String,
        retry_after: Option<Duration>,
    },
    #[error("no complete answer within {}s", after.as_secs())]
    Timeout { after: Duration },
    #[error("could not reach the source ({})", clean(.detail))]
    Transport { detail: String },
    #[error("the TLS connection was refused ({})", clean(.detail))]
    Tls { detail: String },
    #[error("the server's certificate is not trusted ({})", clean(.detail))]
    TlsUntrusted { detail: String },
    #[error("the response is larger than the cap of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the response ended before it was complete ({})", clean(.detail))]
    Truncated { detail: String },
    #[error("the response could not be read ({})", clean(.detail))]
    Malformed { detail: String },
    #[error("the source refused rostersync's request as invalid ({})", clean(.detail))]
    InvalidRequest { detail: String },
    #[error("the source does not support protocol version {version} ({})", clean(.detail))]
    UnsupportedVersion { version: String, detail: String },
    #[error("connector configuration: {}", clean(.detail))]
    Config { detail: String },
    #[error("the school has not given rostersync's publisher sync permission ({})", clean(.detail))]
    NoConsent { detail: String },
    #[error("the source says the school is closed")]
    SchoolClosed,
    #[error("the source says the school merged into institution {into}")]
    SchoolMerged { into: String },
}

impl ConnectorError {
    /// A stable machine-readable name, stored in run records and used as a metric label.
    pub fn class(&self) -> &'static str {
        match self {
            ConnectorError::CredentialsRejected { .. } => "credentials_rejected",
            ConnectorError::SupplierRejected { .. } => "supplier_rejected",
            ConnectorError::AccessDenied { .. } => "access_denied",
            ConnectorError::Unavailable { .. } => "unavailable",
            ConnectorError::Timeout { .. } => "timeout",
            ConnectorError::Transport { .. } => "transport",
            ConnectorError::Tls { .. } => "tls",
            ConnectorError::TlsUntrusted { .. } => "tls_untrusted",
            ConnectorError::TooLarge { .. } => "too_large",
            ConnectorError::Truncated { .. } => "truncated",
            ConnectorError::Malformed { .. } => "malformed",
            ConnectorError::InvalidRequest { .. } => "invalid_request",
            ConnectorError::UnsupportedVersion { .. } => "unsupported_version",
            ConnectorError::Config { .. } => "config",
            ConnectorError::NoConsent { .. } => "awaiting_consent",
            ConnectorError::SchoolClosed => "school_closed",
            ConnectorError::SchoolMerged { .. } => "school_merged",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            ConnectorError::CredentialsRejected { .. } => ErrorKind::Credentials,
            ConnectorError::SupplierRejected { .. }
            | ConnectorError::Tls { .. }
            | ConnectorError::TlsUntrusted { .. } => ErrorKind::Supplier,
            ConnectorError::AccessDenied { .. } | ConnectorError::NoConsent { .. } => {
                ErrorKind::Access
            }
            ConnectorError::SchoolClosed | ConnectorError::SchoolMerged { .. } => ErrorKind::Config,
            ConnectorError::Unavailable { .. }
            | ConnectorError::Timeout { .. }
            | ConnectorError::Transport { .. }
            | ConnectorError::Truncated { .. } => ErrorKind::Transient,
            ConnectorError::TooLarge { .. } | ConnectorError::Malformed { .. } => {
                ErrorKind::BadData
            }
            ConnectorError::InvalidRequest { .. }
            | ConnectorError::UnsupportedVersion { .. }
            | ConnectorError::Config { .. } => ErrorKind::Config,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.kind() == ErrorKind::Transient
    }

    /// How long the source asked us to wait, when it said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ConnectorError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// What an operator should do, in one sentence.
    pub fn advice(&self) -> &'static str {
        match self {
            ConnectorError::CredentialsRejected { .. } => {
                "ask the school for a new authorization key (or token) and store it with \
                 `rostersync school set-key`"
            }
            ConnectorError::SupplierRejected { .. } => {
                "check the supplier credentials of this source connection (klantnaam/klantcode \
                 or client certificate); every school on it is affected"
            }
            ConnectorError::Tls { .. } => {
                "check this connection's client certificate (expiry, chain, whether the source \
                 registered it); every school on this connection is affected"
            }
            ConnectorError::TlsUntrusted { .. } => {
                "add the CA that issued the server's certificate as this connection's \
                 ca_certificate (or have the source fix its certificate); every school on this \
                 connection is affected"
            }
            ConnectorError::AccessDenied { .. } => {
                "ask the school to grant the missing right or field to rostersync's account"
            }
            ConnectorError::Unavailable { .. }
            | ConnectorError::Timeout { .. }
            | ConnectorError::Transport { .. }
            | ConnectorError::Truncated { .. } => {
                "nothing yet: rostersync retries later; act only if it keeps failing"
            }
            ConnectorError::TooLarge { .. } => {
                "raise the response size cap of this source if the school is really this large"
            }
            ConnectorError::Malformed { .. } => {
                "report the malformed answer to the source's vendor; stored data is unchanged"
            }
            ConnectorError::InvalidRequest { .. } => {
                "report this to the rostersync maintainers with the run id: the request was refused"
            }
            ConnectorError::UnsupportedVersion { .. } => {
                "set the protocol version the source supports in the connection's configuration"
            }
            ConnectorError::Config { .. } => "fix the connection's configuration",
            ConnectorError::NoConsent { .. } => {
                "ask the school to grant rostersync's publisher sync permission in the broker; \
                 the school is synced once it has"
            }
            ConnectorError::SchoolClosed => {
                "confirm with the school, then remove its link with `rostersync school remove`"
            }
            ConnectorError::SchoolMerged { .. } => {
                "nothing if the link follows the merger on its own; else set the school's \
                 broker_id to the new institution"
            }
        }
    }
}

impl ConnectorError {
    /// The same error with each of `secrets` replaced by `[redacted]` wherever its detail
    /// repeats it, as sent or XML-escaped. A source may echo what it was sent: a fault that
    /// quotes the key it refuses, a gateway's error page that shows the request. Each connector
    /// applies this to everything it returns, with every secret it sends; details reach run
    /// records, logs and the console.
    pub fn without_secrets(mut self, secrets: &[&str]) -> ConnectorError {
        if let Some(detail) = self.detail_mut() {
            *detail = redact_text(detail, secrets);
        }
        self
    }

    fn detail_mut(&mut self) -> Option<&mut String> {
        match self {
            ConnectorError::CredentialsRejected { detail }
            | ConnectorError::SupplierRejected { detail }
            | ConnectorError::AccessDenied { detail }
            | ConnectorError::Unavailable { detail, .. }
            | ConnectorError::Transport { detail }
            | ConnectorError::Tls { detail }
            | ConnectorError::TlsUntrusted { detail }
            | ConnectorError::Truncated { detail }
            | ConnectorError::Malformed { detail }
            | ConnectorError::InvalidRequest { detail }
            | ConnectorError::UnsupportedVersion { detail, .. }
            | ConnectorError::Config { detail }
            | ConnectorError::NoConsent { detail } => Some(detail),
            ConnectorError::Timeout { .. }
            | ConnectorError::TooLarge { .. }
            | ConnectorError::SchoolClosed
            | ConnectorError::SchoolMerged { .. } => None,
        }
    }
}

/// Secrets shorter than this are left alone: replacing every "42" would garble the text and
/// hide nothing worth hiding (keys and tokens are far longer).
const MIN_SECRET: usize = 4;

/// `text` with every occurrence of each secret (as it is, and as XML writes it) replaced.
fn redact_text(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| s.chars().count() >= MIN_SECRET) {
        for form in [(*secret).to_owned(), xml_escaped(secret)] {
            if out.contains(&form) {
                out = out.replace(&form, "[redacted]");
            }
        }
    }
    out
}

fn xml_escaped(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// Cut a source-provided detail to a readable length on a character boundary.
pub(crate) fn trim_detail(detail: &str) -> String {
    clean(detail)
}

/// A source's text as it may be shown: one line, at most 300 characters, and no control
/// character left as it is (a hostile source could otherwise clear an operator's terminal
/// or rewrite its title): each is written as an escape such as `\u{1b}`. Every detail of a
/// [`ConnectorError`] is shown through this.
pub fn clean(detail: &str) -> String {
    const MAX: usize = 300;
    let one_line: String = detail.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(one_line.len());
    for (n, c) in one_line.chars().enumerate() {
        if n == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_a_source_repeats_is_redacted_in_every_form() {
        let key = "KEY-1234&<abc>";
        let e = ConnectorError::CredentialsRejected {
            detail: format!(
                "sleutel {key} onbekend; request was <key>KEY-1234&amp;&lt;abc&gt;</key>"
            ),
        }
        .without_secrets(&[key, "", "42"]);
        let shown = e.to_string();
        assert!(!shown.contains("KEY-1234"), "{shown}");
        assert_eq!(shown.matches("[redacted]").count(), 2, "{shown}");
        assert!(shown.contains("onbekend"), "the rest stays: {shown}");
        // Too short to be a secret worth garbling the text for.
        let e = ConnectorError::Transport {
            detail: "port 42".into(),
        }
        .without_secrets(&["42"]);
        assert!(e.to_string().contains("port 42"));
        // Errors without a detail pass through.
        let e = ConnectorError::SchoolClosed.without_secrets(&[key]);
        assert_eq!(e.class(), "school_closed");
    }

    #[test]
    fn transient_errors_are_retryable_and_others_not() {
        let transient = ConnectorError::Unavailable {
            detail: "503".into(),
            retry_after: Some(Duration::from_secs(7)),
        };
        assert!(transient.is_retryable());
        assert_eq!(transient.retry_after(), Some(Duration::from_secs(7)));
        let key = ConnectorError::CredentialsRejected {
            detail: "Autorisatie is ongeldig".into(),
        };
        assert!(!key.is_retryable());
        assert_eq!(key.kind(), ErrorKind::Credentials);
        assert_eq!(key.class(), "credentials_rejected");
    }

    #[test]
    fn control_characters_from_a_source_are_shown_escaped() {
        let e = ConnectorError::Malformed {
            detail: "\u{1b}[2J\u{1b}]0;pwned\u{7}bad".into(),
        };
        let shown = e.to_string();
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        assert!(shown.contains("\\u{1b}[2J"), "{shown}");
    }

    #[test]
    fn details_are_trimmed_to_one_line() {
        let long = "a\nb ".repeat(400);
        let t = trim_detail(&long);
        assert!(!t.contains('\n'));
        assert!(t.chars().count() <= 301);
    }
}
