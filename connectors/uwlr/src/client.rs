//! The UWLR connector: one LAS connection (vendor endpoint + supplier identity) that fetches
//! schools with their own keys, all-in-one or getrapt, streaming each answer into the parser.

use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use chrono::Utc;
use connector_api::http::{HttpClient, HttpPolicy, Response, TlsSettings, Url, sensitive_header};
use connector_api::{BoxFuture, Connector, ConnectorError, FetchOutcome, FetchRequest, SourceKind};
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderName};
use secrecy::{ExposeSecret, SecretString};

use crate::fault;
use crate::integrity;
use crate::parse::{Answer, ParseError, Parsed, parse_answer};
use crate::request::{self, GroupRef, Operation};

/// How a LAS hands over a school (`transfer` in the configuration).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum Transfer {
    /// `HaalLeerlinggegevens`: everything in one answer.
    #[default]
    #[serde(rename = "alles-in-een")]
    AllInOne,
    /// `HaalStructuur`, then `HaalLeerlingen` and `HaalLeerkrachten` for its groups.
    #[serde(rename = "getrapt")]
    Getrapt,
}

pub struct UwlrSettings {
    pub name: String,
    pub endpoint: Url,
    pub klantnaam: String,
    pub klantcode: SecretString,
    /// `2.2` or `2.3`.
    pub xsd_version: String,
    /// `gegevenssetid`, e.g. Magister's `Smalle-set-VO`.
    pub data_set: Option<String>,
    pub transfer: Transfer,
    /// Extra HTTP headers (the Iddink hub's subscription key); values are treated as secrets.
    pub headers: Vec<(String, SecretString)>,
    pub policy: HttpPolicy,
    pub tls: TlsSettings,
}

pub struct UwlrConnector {
    settings: UwlrSettings,
    http: HttpClient,
    /// Set once the LAS refused 2.3: every later request of this process asks for 2.2.
    fell_back: AtomicBool,
}

impl UwlrConnector {
    pub fn new(settings: UwlrSettings) -> Result<Self, ConnectorError> {
        let tls = TlsSettings {
            client_identity_pem: settings.tls.client_identity_pem.as_ref().map(|p| {
                secrecy::SecretBox::new(Box::new(secrecy::ExposeSecret::expose_secret(p).clone()))
            }),
            extra_roots_pem: settings.tls.extra_roots_pem.clone(),
        };
        for (name, _) in &settings.headers {
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| ConnectorError::Config {
                detail: format!("'{name}' is not a valid HTTP header name"),
            })?;
        }
        let http = HttpClient::new(&settings.name, settings.policy.clone(), tls)?;
        Ok(UwlrConnector {
            settings,
            http,
            fell_back: AtomicBool::new(false),
        })
    }

    fn version(&self) -> &str {
        if self.fell_back.load(Ordering::Relaxed) {
            "2.2"
        } else {
            &self.settings.xsd_version
        }
    }

    /// One operation, retried on transient failures, with the one-time 2.3 → 2.2 fallback.
    async fn call(&self, op: &Operation, req: &FetchRequest) -> Result<Reply, ConnectorError> {
        match self.call_version(op, req, self.version()).await {
            Err(ConnectorError::UnsupportedVersion { .. }) if self.version() == "2.3" => {
                tracing::warn!(
                    las = %self.settings.name,
                    school = %req.school,
                    "The LAS refused UWLR 2.3; falling back to 2.2. Set xsd_version = \"2.2\" for this connection."
                );
                self.fell_back.store(true, Ordering::Relaxed);
                self.call_version(op, req, "2.2").await
            }
            other => other,
        }
    }

    async fn call_version(
        &self,
        op: &Operation,
        req: &FetchRequest,
        version: &str,
    ) -> Result<Reply, ConnectorError> {
        let key = req
            .credential
            .as_ref()
            .ok_or_else(|| ConnectorError::Config {
                detail: format!("school {} has no authorization key", req.school),
            })?;
        let since = match op {
            Operation::AllInOne => req.last_received,
            // A getrapt transfer is fetched whole: a partial "unchanged" would leave gaps.
            _ => None,
        };
        let body = request::envelope(
            op,
            &request::Params {
                klantnaam: &self.settings.klantnaam,
                klantcode: &self.settings.klantcode,
                key,
                brin: req.school.brin(),
                dependance: req.school.dependance(),
                school_year: req.school_year,
                xsd_version: version,
                data_set: self.settings.data_set.as_deref(),
                since,
            },
        );
        let body = Bytes::from(body);
        self.http
            .retry(op.soap_action().as_str(), || async {
                let mut builder = self
                    .http
                    .request(Method::POST, self.settings.endpoint.clone())
                    .header(CONTENT_TYPE, "text/xml; charset=utf-8")
                    .header("SOAPAction", op.soap_action())
                    .body(body.clone());
                for (name, value) in &self.settings.headers {
                    builder = builder.header(
                        name.as_str(),
                        sensitive_header(secrecy::ExposeSecret::expose_secret(value))?,
                    );
                }
                let response = self.http.send(builder).await?;
                read_answer(response, version).await
            })
            .await
    }

    /// What this connection sends that is secret besides the school's key: errors must not
    /// repeat it (`ConnectorError::without_secrets`).
    fn secrets(&self) -> Vec<&str> {
        let mut out = vec![self.settings.klantcode.expose_secret()];
        out.extend(self.settings.headers.iter().map(|(_, v)| v.expose_secret()));
        out
    }

    async fn fetch_school(&self, req: &FetchRequest) -> Result<FetchOutcome, ConnectorError> {
        let parsed = match self.settings.transfer {
            Transfer::AllInOne => match self.call(&Operation::AllInOne, req).await? {
                Reply::Data(p) => {
                    let mut p = *p;
                    integrity::check(&mut p, &HashSet::new());
                    p
                }
                Reply::Unchanged => return Ok(FetchOutcome::Unchanged),
                Reply::NoData => return Ok(no_data()),
            },
            Transfer::Getrapt => match self.fetch_getrapt(req).await? {
                Some(p) => p,
                None => return Ok(no_data()),
            },
        };
        check_school(&parsed, req)?;
        Ok(FetchOutcome::Snapshot(Box::new(
            parsed.into_snapshot(Utc::now()),
        )))
    }

    async fn fetch_getrapt(&self, req: &FetchRequest) -> Result<Option<Parsed>, ConnectorError> {
        let mut structure = match self.call(&Operation::Structure, req).await? {
            Reply::Data(p) => *p,
            Reply::NoData | Reply::Unchanged => return Ok(None),
        };
        // Every group, plus the keyless reference that asks for people bound to none
        // (an IB'er without groups is only found that way).
        let mut refs: Vec<GroupRef> = structure
            .groups
            .iter()
            .map(|g| match g.kind {
                connector_api::GroupKind::Stamgroep => GroupRef::Group(Some(g.key.clone())),
                connector_api::GroupKind::Samengesteld => GroupRef::Composed(Some(g.key.clone())),
            })
            .collect();
        refs.push(GroupRef::Group(None));
        for op in [Operation::Pupils(refs.clone()), Operation::Teachers(refs)] {
            match self.call(&op, req).await? {
                Reply::Data(p) => {
                    structure.pupils.extend(p.pupils);
                    structure.staff.extend(p.staff);
                    structure.rejects.extend(p.rejects);
                }
                // No pupils or teachers in any group: an empty list, not a missing school.
                Reply::NoData | Reply::Unchanged => {}
            }
        }
        integrity::check(&mut structure, &HashSet::new());
        Ok(Some(structure))
    }
}

fn no_data() -> FetchOutcome {
    FetchOutcome::NoData {
        detail: "the LAS answered geengegevens: it has no data for this school".into(),
    }
}

/// An answer after faults were turned into errors.
enum Reply {
    Data(Box<Parsed>),
    Unchanged,
    NoData,
}

/// The answer must be about the school that was asked for.
fn check_school(parsed: &Parsed, req: &FetchRequest) -> Result<(), ConnectorError> {
    if let Some(brin) = &parsed.school.brin
        && !brin.eq_ignore_ascii_case(req.school.brin())
    {
        return Err(ConnectorError::Malformed {
            detail: format!(
                "the LAS answered for BRIN {brin} when school {} was asked for",
                req.school
            ),
        });
    }
    Ok(())
}

/// Stream the body into the parser on a blocking thread, a few chunks at a time, so memory
/// stays bounded by one record and the channel, not by the size of the answer.
async fn read_answer(mut response: Response, version: &str) -> Result<Reply, ConnectorError> {
    let status = response.status;
    let xml = response
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("xml"));
    // SOAP answers come as 200, faults as 500; anything else is read by its status.
    if !(status.is_success() || (status.as_u16() == 500 && xml)) {
        let retry_after = response.retry_after();
        let snippet = response.snippet().await;
        return Err(match status.as_u16() {
            404 => ConnectorError::Config {
                detail: format!("HTTP 404 from the LAS: check the endpoint URL ({snippet})"),
            },
            401 | 403 => ConnectorError::SupplierRejected {
                detail: format!(
                    "HTTP {} before any SOAP processing (gateway key or client certificate?): {snippet}",
                    status.as_u16()
                ),
            },
            s if s == 429 || s >= 500 => ConnectorError::Unavailable {
                detail: format!("HTTP {s}: {snippet}"),
                retry_after,
            },
            s => ConnectorError::InvalidRequest {
                detail: format!("HTTP {s}: {snippet}"),
            },
        });
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, ()>>(8);
    let parser = tokio::task::spawn_blocking(move || {
        // The parser keeps its own window: a buffer in between would copy every byte twice.
        parse_answer(ChunkReader {
            rx,
            current: Bytes::new(),
        })
    });
    let mut transport = None;
    loop {
        match response.next_chunk().await {
            Ok(Some(chunk)) => {
                if tx.send(Ok(chunk)).await.is_err() {
                    break; // The parser stopped early (an error); it says why.
                }
            }
            Ok(None) => break,
            Err(e) => {
                transport = Some(e);
                let _ = tx.send(Err(())).await;
                break;
            }
        }
    }
    drop(tx);
    let parsed = parser.await.map_err(|e| ConnectorError::Malformed {
        detail: format!("the parser stopped unexpectedly: {e}"),
    })?;
    if let Some(e) = transport {
        return Err(e);
    }
    match parsed {
        Ok(Answer::Fault { code, message }) => Err(fault::to_error(&code, &message, version)),
        Ok(_) if !status.is_success() => Err(ConnectorError::Unavailable {
            detail: "HTTP 500 with an answer that is not a SOAP fault".into(),
            retry_after: None,
        }),
        Ok(Answer::Data(p)) => Ok(Reply::Data(p)),
        Ok(Answer::Unchanged) => Ok(Reply::Unchanged),
        Ok(Answer::NoData) => Ok(Reply::NoData),
        Err(ParseError::Io(e)) => Err(ConnectorError::Truncated {
            detail: e.to_string(),
        }),
        Err(e) if status.as_u16() == 500 => Err(ConnectorError::Unavailable {
            detail: format!("HTTP 500 with an unreadable body: {e}"),
            retry_after: None,
        }),
        Err(e) => Err(ConnectorError::Malformed {
            detail: e.to_string(),
        }),
    }
}

/// The body's chunks as a `Read`, fed from the async side through a bounded channel.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, ()>>,
    current: Bytes,
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(())) => {
                    return Err(std::io::Error::other("the response body broke off"));
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

impl Connector for UwlrConnector {
    fn kind(&self) -> SourceKind {
        SourceKind::Las
    }

    fn name(&self) -> &str {
        &self.settings.name
    }

    fn fetch<'a>(
        &'a self,
        request: &'a FetchRequest,
    ) -> BoxFuture<'a, Result<FetchOutcome, ConnectorError>> {
        Box::pin(async move {
            self.fetch_school(request).await.map_err(|e| {
                let mut secrets = self.secrets();
                secrets.extend(request.credential.as_ref().map(ExposeSecret::expose_secret));
                e.without_secrets(&secrets)
            })
        })
    }

    /// The connection's TLS, once: a GET of the endpoint (no school, no key) on a connection
    /// of its own. Any HTTP answer means the handshake, our client certificate included,
    /// was accepted; only a failure to get one is an error.
    fn check(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(async move {
            let url = self.settings.endpoint.clone();
            let response = self.http.send(self.http.request(Method::GET, url)).await?;
            drop(response);
            Ok(())
        })
    }
}
