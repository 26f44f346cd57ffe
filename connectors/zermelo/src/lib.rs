//! Zermelo, the scheduling portal of secondary schools: REST v3 at
//! `https://{portal}.zportal.nl/api/v3/` with the school's API token as a Bearer header.
//! Every request names its `fields` (partner tokens see only the fields the school granted);
//! pupils are asked per department, so no single request risks the portal's 60 s cut-off.

pub mod config;
mod snapshot;
mod wire;

use chrono::Utc;
use connector_api::http::{HttpClient, HttpPolicy, TlsSettings, Url, base_url};
use connector_api::{BoxFuture, Connector, ConnectorError, FetchOutcome, FetchRequest, SourceKind};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

pub use config::ZermeloSettings;
pub use snapshot::{Portal, snapshot};

const SISY_FIELDS: &str = "id,schoolName,archived";
const DEPARTMENT_FIELDS: &str = "id,code,teamLeaderUserCodes,deanUserCodes";
const GROUP_FIELDS: &str =
    "id,departmentOfBranch,name,extendedName,yearOfEducation,isMainGroup,mentorUserCodes";
const STUDENT_FIELDS: &str = "student,firstName,prefix,lastName,mainGroup,groupInDepartments";
const EMPLOYEE_FIELDS: &str = "userCode,firstName,prefix,lastName,email";
// Team leaders and deans come with their departments, so only the whole-school functions
// are asked of the users.
const USER_FIELDS: &str = "code,somUUID,magisterUUID,isSchoolLeader,isApplicationManager";

pub struct ZermeloConfig {
    /// The school's API base, e.g. `https://school.zportal.nl/api/v3/`.
    pub portal: Url,
    /// Extra trust root, PEM (test environments, the simulator).
    pub ca_pem: Option<Vec<u8>>,
    pub policy: HttpPolicy,
}

pub struct ZermeloConnector {
    http: HttpClient,
    base: Url,
}

impl ZermeloConnector {
    pub fn new(config: ZermeloConfig) -> Result<Self, ConnectorError> {
        let base = base_url(config.portal);
        let http = HttpClient::new(
            "zermelo",
            config.policy,
            TlsSettings {
                client_identity_pem: None,
                extra_roots_pem: config.ca_pem,
            },
        )?;
        Ok(ZermeloConnector { http, base })
    }

    /// GET `endpoint` with `query` and `fields`; the envelope's data.
    async fn get<T: DeserializeOwned>(
        &self,
        token: &SecretString,
        endpoint: &str,
        query: &[(&str, String)],
        fields: &str,
    ) -> Result<Vec<T>, ConnectorError> {
        let mut url = self
            .base
            .join(endpoint)
            .map_err(|e| ConnectorError::Config {
                detail: format!("portal URL cannot take {endpoint}: {e}"),
            })?;
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
            q.append_pair("fields", fields);
        }
        self.http
            .retry(endpoint, || async {
                let response = self
                    .http
                    .send(
                        self.http
                            .request(Method::GET, url.clone())
                            .bearer_auth(token.expose_secret())
                            .header(reqwest::header::ACCEPT, "application/json"),
                    )
                    .await?;
                let status = response.status;
                if !status.is_success() {
                    return Err(status_error(response, endpoint, fields).await);
                }
                let body = response.bytes().await?;
                let envelope: wire::Envelope<T> = connector_api::json::from_slice_clean(
                    &body,
                    &format!("the portal's answer to {endpoint}"),
                )?;
                match envelope.response.status {
                    Some(s) if s >= 400 => Err(ConnectorError::Malformed {
                        detail: format!(
                            "the portal answered {endpoint} with status {s} inside a successful \
                             response: {}",
                            envelope.response.message
                        ),
                    }),
                    _ => Ok(envelope.response.data),
                }
            })
            .await
    }

    async fn fetch_school(&self, request: &FetchRequest) -> Result<FetchOutcome, ConnectorError> {
        let token = request
            .credential
            .as_ref()
            .ok_or_else(|| ConnectorError::Config {
                detail: format!("school {} has no portal token", request.school),
            })?;
        let year = request.school_year.start_year().to_string();
        let received_at = Utc::now();
        // The token's expiry, to warn ahead of it. A partner may not be granted this
        // endpoint; then the expiry is simply unknown. A refused token fails here already,
        // and says when it expired if an earlier run saw the date.
        let expires = match self
            .get::<wire::Token>(token, "tokens/~current", &[], "expires")
            .await
        {
            Ok(t) => t
                .first()
                .and_then(|t| t.expires)
                .and_then(|s| chrono::DateTime::from_timestamp(s, 0)),
            Err(ConnectorError::CredentialsRejected { detail }) => {
                return Err(ConnectorError::CredentialsRejected {
                    detail: match known_expiry(request) {
                        Some(at) if at <= received_at => {
                            format!("{detail}; the token expired on {}", at.format("%Y-%m-%d"))
                        }
                        Some(at) => format!(
                            "{detail}; it would have expired on {}, so it was revoked",
                            at.format("%Y-%m-%d")
                        ),
                        None => detail,
                    },
                });
            }
            Err(_) => None,
        };
        let years: Vec<wire::SchoolInSchoolYear> = self
            .get(
                token,
                "schoolsinschoolyears",
                &[("year", year.clone()), ("archived", "false".into())],
                SISY_FIELDS,
            )
            .await?;
        let years: Vec<&wire::SchoolInSchoolYear> = years.iter().filter(|y| !y.archived).collect();
        if years.is_empty() {
            return Ok(FetchOutcome::NoData {
                detail: format!(
                    "the portal has no school in school year {} (is the token's project the \
                     current year?)",
                    request.school_year
                ),
            });
        }
        let mut portal = Portal {
            name: years.iter().find_map(|y| y.school_name.clone()),
            ..Portal::default()
        };
        for sisy in &years {
            let by_year = [("schoolInSchoolYear", sisy.id.to_string())];
            let departments: Vec<wire::Department> = self
                .get(token, "departmentsofbranches", &by_year, DEPARTMENT_FIELDS)
                .await?;
            portal.groups.extend(
                self.get::<wire::Group>(token, "groupindepartments", &by_year, GROUP_FIELDS)
                    .await?,
            );
            // One request per department: no request grows with the whole school.
            for d in &departments {
                portal.students.extend(
                    self.get::<wire::StudentInDepartment>(
                        token,
                        "studentsindepartments",
                        &[("departmentOfBranch", d.id.to_string())],
                        STUDENT_FIELDS,
                    )
                    .await?,
                );
            }
            portal.departments.extend(departments);
            portal.employees.extend(
                self.get::<wire::Employee>(
                    token,
                    "employees",
                    &[
                        ("schoolInSchoolYear", sisy.id.to_string()),
                        ("archived", "false".into()),
                    ],
                    EMPLOYEE_FIELDS,
                )
                .await?,
            );
            portal.users.extend(
                self.get::<wire::User>(token, "users", &by_year, USER_FIELDS)
                    .await?,
            );
        }
        let mut snap = snapshot(portal, received_at);
        snap.credential_expires = expires;
        // The portal has no change marker; the token's expiry takes its place, so the next
        // run can say when a refused token expired.
        snap.marker = expires.map(|e| e.to_rfc3339());
        Ok(FetchOutcome::Snapshot(Box::new(snap)))
    }
}

/// The token's expiry as the last good run saw it.
fn known_expiry(request: &FetchRequest) -> Option<chrono::DateTime<Utc>> {
    token_expiry(request.last_marker.as_deref())
}

/// The portal token's expiry from the marker a good run left (the portal has no change
/// marker, so the expiry is kept in its place).
pub fn token_expiry(marker: Option<&str>) -> Option<chrono::DateTime<Utc>> {
    marker
        .and_then(|m| chrono::DateTime::parse_from_rfc3339(m).ok())
        .map(|d| d.with_timezone(&Utc))
}

/// A non-2xx answer, with the envelope's message where there is one.
async fn status_error(
    response: connector_api::http::Response,
    endpoint: &str,
    fields: &str,
) -> ConnectorError {
    let status = response.status;
    let generic = response.status_error("");
    let text = response.snippet().await;
    let said = serde_json::from_str::<wire::ErrorEnvelope>(&text)
        .map(|e| {
            [e.response.message, e.response.details]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(": ")
        })
        .unwrap_or(text);
    match status {
        StatusCode::UNAUTHORIZED => ConnectorError::CredentialsRejected {
            detail: format!(
                "the portal refused the school's API token ({said}): it expired or was revoked"
            ),
        },
        StatusCode::FORBIDDEN => ConnectorError::AccessDenied {
            detail: format!(
                "the portal refused {endpoint} (fields {fields}): {said}; the school must grant \
                 rostersync's partner read access to it (Beheer › Partners)"
            ),
        },
        StatusCode::NOT_FOUND => ConnectorError::Config {
            detail: format!("the portal does not know {endpoint} ({said}): check the portal URL"),
        },
        StatusCode::BAD_REQUEST => ConnectorError::InvalidRequest {
            detail: format!("{endpoint}: {said}"),
        },
        _ => match generic {
            Some(ConnectorError::Unavailable { retry_after, .. }) => ConnectorError::Unavailable {
                detail: format!("HTTP {} on {endpoint}: {said}", status.as_u16()),
                retry_after,
            },
            _ => ConnectorError::Malformed {
                detail: format!("HTTP {} on {endpoint}: {said}", status.as_u16()),
            },
        },
    }
}

impl Connector for ZermeloConnector {
    fn kind(&self) -> SourceKind {
        SourceKind::Portal
    }

    fn name(&self) -> &str {
        "zermelo"
    }

    fn fetch<'a>(
        &'a self,
        request: &'a FetchRequest,
    ) -> BoxFuture<'a, Result<FetchOutcome, ConnectorError>> {
        Box::pin(async move {
            // The portal may repeat the token it refuses: errors must not.
            let token = request.credential.as_ref().map(ExposeSecret::expose_secret);
            self.fetch_school(request)
                .await
                .map_err(|e| e.without_secrets(token.as_slice()))
        })
    }
}
