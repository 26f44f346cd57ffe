//! The broker as the configuration file describes it (`[broker]` with
//! `kind = "basispoort"`): endpoint, rostersync's client certificate, limits, and how long a
//! school's data is kept after it revokes its sync permission.

use std::time::Duration;

use connector_api::config::{BuildError, display_redacted, https_url, trust_root, within};
use connector_api::http::{HttpPolicy, Url};
use connector_api::secret::SecretRef;
use serde::{Deserialize, Serialize};

use crate::{BasispoortConfig, BasispoortConnector};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasispoortSettings {
    #[serde(deserialize_with = "https_url", serialize_with = "display_redacted")]
    pub endpoint: Url,
    pub client_certificate: SecretRef,
    pub ca_certificate: Option<SecretRef>,
    /// Longest time for one request to the broker, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
    /// Largest answer accepted, in MiB (an institution's overview is read whole).
    #[serde(default = "default_max_response")]
    pub max_response_mb: u64,
    /// After a school revokes its sync permission, its data is kept this many days (a
    /// mistake can be undone by granting again), then deleted.
    #[serde(default = "default_offboarding_days")]
    pub offboarding_days: u32,
}

fn default_timeout() -> u64 {
    120
}

/// JSON is read whole: a few MiB is a large school.
fn default_max_response() -> u64 {
    8
}

fn default_offboarding_days() -> u32 {
    30
}

impl BasispoortSettings {
    /// What the file must get right beyond its types; the message starts with the key.
    pub fn check(&self) -> Result<(), String> {
        within("timeout_seconds", self.timeout_seconds, 1..=3600)?;
        within("offboarding_days", self.offboarding_days, 1..=365)?;
        within("max_response_mb", self.max_response_mb, 1..=1024)
    }

    /// Every secret it names, by key.
    pub fn secrets(&self) -> Vec<(String, &SecretRef)> {
        let mut refs = vec![("client_certificate".to_owned(), &self.client_certificate)];
        if let Some(c) = &self.ca_certificate {
            refs.push(("ca_certificate".to_owned(), c));
        }
        refs
    }

    /// The connector, with its client certificate read now.
    pub fn build(&self) -> Result<BasispoortConnector, BuildError> {
        Ok(BasispoortConnector::new(BasispoortConfig {
            endpoint: self.endpoint.clone(),
            client_identity_pem: self.client_certificate.load_bytes()?,
            ca_pem: trust_root(self.ca_certificate.as_ref())?,
            policy: HttpPolicy {
                request_timeout: Duration::from_secs(self.timeout_seconds),
                max_body_bytes: self.max_response_mb * 1024 * 1024,
                ..HttpPolicy::default()
            },
        })?)
    }
}
