//! What every connector's configuration shares: endpoints that must be HTTPS, URLs shown
//! without passwords, extra trust roots, and the error of building a connector from its
//! configuration. Each connector crate owns its own `Deserialize` configuration with a
//! `build()`; rostersync's settings only choose between them by `kind`.

use serde::{Deserialize, Deserializer};

use crate::ConnectorError;
use crate::http::Url;
use crate::secret::{SecretError, SecretRef};

/// Why a connector could not be made from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A secret it names cannot be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The connector refused what it was given (a client certificate that does not parse).
    #[error(transparent)]
    Connector(#[from] ConnectorError),
}

/// A URL for messages and printed configuration: a password in it becomes `***`. Text that
/// is no URL keeps only what follows its last `@`.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => url.rsplit('@').next().unwrap_or("").to_owned(),
    }
}

/// Serialize a value as text, with any password in it redacted.
pub fn display_redacted<T: std::fmt::Display, S: serde::Serializer>(
    v: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(&v.to_string()))
}

/// Endpoints must be HTTPS; plain HTTP only to loopback (the simulator, a local proxy).
pub fn https_url<'de, D: Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
    let raw = String::deserialize(d)?;
    let s = redact_url(&raw);
    let url: Url = raw
        .parse()
        .map_err(|e| serde::de::Error::custom(format!("'{s}' is not a URL: {e}")))?;
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        _ => Err(serde::de::Error::custom(format!(
            "'{s}' must be an https:// URL (plain http is only allowed to loopback)"
        ))),
    }
}

/// An extra trust root (a CA certificate is no secret, so it leaves its wrapper).
pub fn trust_root(reference: Option<&SecretRef>) -> Result<Option<Vec<u8>>, SecretError> {
    reference.map(SecretRef::load_public_bytes).transpose()
}

/// A number that must lie in `range`: the message names the key as the file spells it.
pub fn within<T: PartialOrd + std::fmt::Display>(
    key: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<(), String> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{key} must be between {} and {}",
            range.start(),
            range.end()
        ))
    }
}
