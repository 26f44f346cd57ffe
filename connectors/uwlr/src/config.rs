//! A UWLR connection as the configuration file describes it (`[[las]]` with
//! `kind = "uwlr"`): endpoint, supplier identity, transfer style and limits, checked when the
//! file is read and built into a connector when first needed (secrets are read then).

use std::collections::BTreeMap;
use std::time::Duration;

use connector_api::config::{BuildError, display_redacted, https_url, trust_root, within};
use connector_api::http::{HttpPolicy, TlsSettings, Url};
use connector_api::secret::SecretRef;
use serde::{Deserialize, Serialize};

use crate::client::{Transfer, UwlrConnector, UwlrSettings};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UwlrConfig {
    pub name: String,
    #[serde(deserialize_with = "https_url", serialize_with = "display_redacted")]
    pub endpoint: Url,
    #[serde(default = "default_xsd_version")]
    pub xsd_version: String,
    pub klantnaam: String,
    pub klantcode: SecretRef,
    pub client_certificate: Option<SecretRef>,
    pub ca_certificate: Option<SecretRef>,
    /// `alles-in-een` (HaalLeerlinggegevens) or `getrapt` (structure, pupils, teachers).
    #[serde(default)]
    pub transfer: Transfer,
    /// `gegevenssetid` to send, e.g. `Smalle-set-VO` for Magister.
    pub gegevenssetid: Option<String>,
    /// Extra HTTP headers, e.g. the Iddink hub's `IddinkHub-Subscription-Key`; values are secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, SecretRef>,
    /// Longest time for one answer, body included.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Largest answer accepted, in MiB; a larger one fails the fetch (never partial data).
    #[serde(default = "default_max_response")]
    pub max_response_mb: u64,
    /// Schools fetched from this connection at the same time (vendors throttle per client).
    #[serde(default = "default_concurrency")]
    pub max_concurrent: usize,
}

fn default_xsd_version() -> String {
    "2.2".to_owned()
}

fn default_timeout() -> u64 {
    300
}

fn default_max_response() -> u64 {
    256
}

fn default_concurrency() -> usize {
    2
}

impl UwlrConfig {
    /// What the file must get right beyond its types; the message starts with the key.
    pub fn check(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("name must not be empty".into());
        }
        if !["2.2", "2.3"].contains(&self.xsd_version.as_str()) {
            return Err(format!(
                "xsd_version: '{}' is not supported; use \"2.2\" or \"2.3\"",
                self.xsd_version
            ));
        }
        if self.klantnaam.is_empty() || self.klantnaam.chars().count() > 64 {
            return Err("klantnaam must be 1 to 64 characters".into());
        }
        within("timeout_seconds", self.timeout_seconds, 1..=3600)?;
        within("max_concurrent", self.max_concurrent, 1..=64)?;
        within("max_response_mb", self.max_response_mb, 1..=4096)
    }

    /// Every secret it names, by key.
    pub fn secrets(&self) -> Vec<(String, &SecretRef)> {
        let mut refs = vec![("klantcode".to_owned(), &self.klantcode)];
        if let Some(c) = &self.client_certificate {
            refs.push(("client_certificate".to_owned(), c));
        }
        if let Some(c) = &self.ca_certificate {
            refs.push(("ca_certificate".to_owned(), c));
        }
        for (name, h) in &self.headers {
            refs.push((format!("headers.{name}"), h));
        }
        refs
    }

    /// The connector, with its secrets read now.
    pub fn build(&self) -> Result<UwlrConnector, BuildError> {
        let client_identity_pem = self
            .client_certificate
            .as_ref()
            .map(SecretRef::load_bytes)
            .transpose()?;
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            headers.push((name.clone(), value.load_string()?));
        }
        Ok(UwlrConnector::new(UwlrSettings {
            name: self.name.clone(),
            endpoint: self.endpoint.clone(),
            klantnaam: self.klantnaam.clone(),
            klantcode: self.klantcode.load_string()?,
            xsd_version: self.xsd_version.clone(),
            data_set: self.gegevenssetid.clone(),
            transfer: self.transfer,
            headers,
            policy: HttpPolicy {
                request_timeout: Duration::from_secs(self.timeout_seconds),
                max_body_bytes: self.max_response_mb * 1024 * 1024,
                ..HttpPolicy::default()
            },
            tls: TlsSettings {
                client_identity_pem,
                extra_roots_pem: trust_root(self.ca_certificate.as_ref())?,
            },
        })?)
    }
}
