//! Basispoort, the identity broker of Dutch primary education: REST v2 over mutual TLS with
//! the publisher's client certificate. A fetch checks the school's sync permission, then its
//! details (closed? merged? changed since the last good run?), and only then downloads the
//! institution's overview. Errors say whether the school, the broker or our certificate is
//! the problem; a rejected certificate is one problem of the connection, not of each school.

pub mod config;
mod snapshot;
mod wire;

use chrono::{NaiveDate, Utc};
use connector_api::http::{HttpClient, HttpPolicy, TlsSettings, Url, base_url};
use connector_api::{BoxFuture, Connector, ConnectorError, FetchOutcome, FetchRequest, SourceKind};
use reqwest::{Method, StatusCode};
use secrecy::SecretBox;
use serde::de::DeserializeOwned;

pub use config::BasispoortSettings;
pub use snapshot::snapshot;

/// Where and how to reach the broker.
pub struct BasispoortConfig {
    /// Base URL, e.g. `https://rest.basispoort.nl/`; paths start with `rest/v2/`.
    pub endpoint: Url,
    /// The publisher's certificate and private key, PEM.
    pub client_identity_pem: SecretBox<Vec<u8>>,
    /// Extra trust root, PEM (test and acceptance environments, the simulator).
    pub ca_pem: Option<Vec<u8>>,
    pub policy: HttpPolicy,
}

pub struct BasispoortConnector {
    http: HttpClient,
    base: Url,
}

impl BasispoortConnector {
    pub fn new(config: BasispoortConfig) -> Result<Self, ConnectorError> {
        let base = base_url(config.endpoint);
        let http = HttpClient::new(
            "basispoort",
            config.policy,
            TlsSettings {
                client_identity_pem: Some(config.client_identity_pem),
                extra_roots_pem: config.ca_pem,
            },
        )?;
        Ok(BasispoortConnector { http, base })
    }

    fn url(&self, path: &str) -> Result<Url, ConnectorError> {
        self.base
            .join(&format!("rest/v2/{path}"))
            .map_err(|e| ConnectorError::Config {
                detail: format!("broker endpoint cannot take the path {path}: {e}"),
            })
    }

    /// GET `path` as JSON, with retries for transient failures.
    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ConnectorError> {
        let url = self.url(path)?;
        self.http
            .retry(path, || async {
                let response = self
                    .http
                    .send(
                        self.http
                            .request(Method::GET, url.clone())
                            .header(reqwest::header::ACCEPT, "application/json"),
                    )
                    .await?;
                if response.status.is_success() {
                    let body = response.bytes().await?;
                    if body.iter().all(u8::is_ascii_whitespace) {
                        return Err(ConnectorError::Malformed {
                            detail: format!("the broker sent an empty answer to {path}"),
                        });
                    }
                    return connector_api::json::from_slice_clean(
                        &body,
                        &format!("the broker's answer to {path}"),
                    );
                }
                Err(status_error(response, path).await)
            })
            .await
    }

    /// The institutions this publisher can see.
    pub async fn institutions(&self) -> Result<Vec<i64>, ConnectorError> {
        self.get("instellingen").await
    }

    /// Whether the school gave sync permission; with `request`, ask the school for it too.
    pub async fn has_permission(
        &self,
        institution: i64,
        request: bool,
    ) -> Result<bool, ConnectorError> {
        let p: wire::Permission = self
            .get(&format!(
                "instellingen/{institution}/uitgever/synchronizationpermission?request-permission={request}"
            ))
            .await?;
        Ok(p.has_synchronization_permission)
    }

    /// Institutions that granted sync permission on `date`.
    pub async fn granted_on(&self, date: NaiveDate) -> Result<Vec<i64>, ConnectorError> {
        self.get(&format!(
            "instellingen/synchronizationpermission/toegekend/{date}"
        ))
        .await
    }

    /// Institutions that revoked sync permission on `date`.
    pub async fn revoked_on(&self, date: NaiveDate) -> Result<Vec<i64>, ConnectorError> {
        self.get(&format!(
            "instellingen/synchronizationpermission/ingetrokken/{date}"
        ))
        .await
    }

    async fn fetch_institution(
        &self,
        request: &FetchRequest,
    ) -> Result<FetchOutcome, ConnectorError> {
        let id: i64 = request
            .remote_id
            .as_deref()
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| ConnectorError::Config {
                detail: format!(
                    "school {} has no broker institution id (broker_id)",
                    request.school
                ),
            })?;
        if !self.has_permission(id, false).await? {
            return Err(ConnectorError::NoConsent {
                detail: format!("institution {id}"),
            });
        }
        let details: wire::Details = self.get(&format!("instellingen/{id}/details")).await?;
        if let Some(into) = details.gefuseerd_naar {
            return Err(ConnectorError::SchoolMerged {
                into: into.to_string(),
            });
        }
        if details.actief == Some(false) {
            return Err(ConnectorError::SchoolClosed);
        }
        let mutated = details
            .meta_result
            .as_ref()
            .and_then(|m| m.mutation_timestamp.clone());
        if mutated.is_some() && mutated == request.last_marker {
            return Ok(FetchOutcome::Unchanged);
        }
        let received_at = Utc::now();
        let overview: wire::Overview = self.get(&format!("instellingen/{id}")).await?;
        if overview.gefuseerd_naar.is_some() || overview.actief == Some(false) {
            // Changed between the two calls; the next run sees it in the details.
            return Err(ConnectorError::Unavailable {
                detail: "the institution changed state while it was read".into(),
                retry_after: None,
            });
        }
        Ok(FetchOutcome::Snapshot(Box::new(snapshot(
            overview,
            details.naam,
            received_at,
        ))))
    }
}

/// A non-2xx answer. The broker has no fixed error format: JSON with a code, or text.
async fn status_error(response: connector_api::http::Response, path: &str) -> ConnectorError {
    let status = response.status;
    let generic = response.status_error("");
    let text = response.snippet().await;
    let body: wire::ErrorBody = serde_json::from_str(&text).unwrap_or_default();
    let detail = format!(
        "HTTP {} on {path}: {}",
        status.as_u16(),
        body.message.as_deref().unwrap_or(&text)
    );
    match status {
        StatusCode::FORBIDDEN
            if body
                .code
                .as_deref()
                .is_some_and(|c| c.contains("PERMISSION")) =>
        {
            ConnectorError::NoConsent { detail }
        }
        // The certificate got through TLS but is not a publisher the broker knows.
        StatusCode::UNAUTHORIZED => ConnectorError::SupplierRejected { detail },
        StatusCode::FORBIDDEN => ConnectorError::AccessDenied { detail },
        StatusCode::NOT_FOUND => ConnectorError::Config {
            detail: format!("{detail}; the broker does not know this institution: check broker_id"),
        },
        StatusCode::BAD_REQUEST => ConnectorError::InvalidRequest { detail },
        _ => match generic {
            Some(ConnectorError::Unavailable { retry_after, .. }) => ConnectorError::Unavailable {
                detail,
                retry_after,
            },
            _ => ConnectorError::Malformed { detail },
        },
    }
}

impl Connector for BasispoortConnector {
    fn kind(&self) -> SourceKind {
        SourceKind::Broker
    }

    fn name(&self) -> &str {
        "basispoort"
    }

    fn fetch<'a>(
        &'a self,
        request: &'a FetchRequest,
    ) -> BoxFuture<'a, Result<FetchOutcome, ConnectorError>> {
        Box::pin(self.fetch_institution(request))
    }

    /// The institution list needs nothing but our certificate: if it fails for a reason of
    /// the connection, every school with the broker would fail the same way.
    fn check(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(async { self.institutions().await.map(|_| ()) })
    }
}
