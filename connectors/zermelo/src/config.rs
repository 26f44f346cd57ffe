//! A school's Zermelo portal as the configuration file describes it (`zermelo = { ... }` in a
//! `[[school]]` block): the portal's address and the school's token.

use connector_api::config::{BuildError, display_redacted, https_url, trust_root, within};
use connector_api::http::{HttpPolicy, Url};
use connector_api::secret::SecretRef;
use serde::{Deserialize, Serialize};

use crate::{ZermeloConfig, ZermeloConnector};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ZermeloSettings {
    #[serde(deserialize_with = "https_url", serialize_with = "display_redacted")]
    pub portal: Url,
    pub token: SecretRef,
    /// Extra trust root for the portal (test environments).
    pub ca_certificate: Option<SecretRef>,
    /// Largest answer to one request accepted, in MiB.
    #[serde(default = "default_max_response")]
    pub max_response_mb: u64,
}

/// JSON is read whole: a few MiB is a large school.
fn default_max_response() -> u64 {
    8
}

impl ZermeloSettings {
    /// What the file must get right beyond its types; the message starts with the key.
    pub fn check(&self) -> Result<(), String> {
        within("max_response_mb", self.max_response_mb, 1..=1024)
    }

    /// Every secret it names, by key.
    pub fn secrets(&self) -> Vec<(String, &SecretRef)> {
        let mut refs = vec![("token".to_owned(), &self.token)];
        if let Some(c) = &self.ca_certificate {
            refs.push(("ca_certificate".to_owned(), c));
        }
        refs
    }

    /// The connector; the token travels with each request (it is the school's).
    pub fn build(&self) -> Result<ZermeloConnector, BuildError> {
        Ok(ZermeloConnector::new(ZermeloConfig {
            portal: self.portal.clone(),
            ca_pem: trust_root(self.ca_certificate.as_ref())?,
            policy: HttpPolicy {
                max_body_bytes: self.max_response_mb * 1024 * 1024,
                ..HttpPolicy::default()
            },
        })?)
    }
}
