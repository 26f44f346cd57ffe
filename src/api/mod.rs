//! The apps' API: OneRoster 1.2 Rostering (REST/JSON) under `/ims/oneroster/rostering/v1p2`,
//! what OneRoster cannot say under `/rostersync/v1`, and OAuth 2.0 client credentials at
//! `POST /oauth/token`. Read-only; a client sees only its schools (another school's record
//! is 404, never 403). Served by the daemon when `[api] listen` is set, and by
//! `rostersync serve`.

pub mod auth;
mod handlers;
pub mod model;
pub mod query;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use serde_json::json;

use crate::model::rollover::Calendar;
use crate::server::Peer;
use crate::settings::Settings;
use crate::store::Store;
use auth::{Auth, Client, Refusal, Schools};

/// Where OneRoster lives.
pub const BASE: &str = "/ims/oneroster/rostering/v1p2";

/// What every request needs: the store, the clients, how `href`s start.
pub struct Api {
    pub store: Store,
    pub auth: Auth,
    /// `https://roster.example.nl` when configured; else the request's own Host.
    public_url: Option<String>,
    tls: bool,
    /// When a school year begins: its session's dates, and the live year of a school that
    /// has not been synced yet.
    pub(crate) calendar: Calendar,
}

impl Api {
    pub fn new(settings: &Settings, store: Store) -> anyhow::Result<Api> {
        let clients = settings
            .api
            .client
            .iter()
            .map(Client::load)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!(e))?;
        Ok(Api {
            store,
            auth: Auth::new(
                clients,
                std::time::Duration::from_secs(settings.api.token_seconds),
            ),
            public_url: settings
                .api
                .public_url
                .as_ref()
                .map(|u| u.as_str().trim_end_matches('/').to_owned()),
            tls: settings.api.certificate.is_some(),
            calendar: settings.rollover.calendar(),
        })
    }

    /// The live school year today.
    pub(crate) fn live_year(&self) -> connector_api::SchoolYear {
        self.calendar.live_year(crate::sync::run::today())
    }

    /// The start of every `href` in an answer to a request with `headers`.
    fn base(&self, headers: &HeaderMap) -> model::Base {
        let root = self.public_url.clone().unwrap_or_else(|| {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| h.chars().all(|c| c.is_ascii_graphic()))
                .unwrap_or("localhost");
            format!("{}://{host}", if self.tls { "https" } else { "http" })
        });
        model::Base(format!("{root}{BASE}"))
    }
}

/// What a valid token lets a request do.
#[derive(Debug, Clone)]
pub struct Access {
    pub client: String,
    pub schools: Schools,
    pub scopes: BTreeSet<String>,
}

/// Which scope an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A collection or one record: roster-core or roster.
    Core,
    /// The nested collections: roster.
    Roster,
    Demographics,
}

const CORE: &str = "https://purl.imsglobal.org/spec/or/v1p2/scope/roster-core.readonly";
const ROSTER: &str = "https://purl.imsglobal.org/spec/or/v1p2/scope/roster.readonly";
const DEMOGRAPHICS: &str =
    "https://purl.imsglobal.org/spec/or/v1p2/scope/roster-demographics.readonly";

/// A token without the scope an endpoint needs: 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfScope;

impl IntoResponse for OutOfScope {
    fn into_response(self) -> Response {
        imsx(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the token's scopes do not include this endpoint's",
        )
    }
}

impl Access {
    fn may(&self, need: Need) -> Result<(), OutOfScope> {
        let ok = match need {
            Need::Core => self.scopes.contains(CORE) || self.scopes.contains(ROSTER),
            Need::Roster => self.scopes.contains(ROSTER),
            Need::Demographics => self.scopes.contains(DEMOGRAPHICS),
        };
        if ok { Ok(()) } else { Err(OutOfScope) }
    }
}

/// The spec's error body.
pub fn imsx(status: StatusCode, minor: &str, description: &str) -> Response {
    let body = json!({
        "imsx_codeMajor": "failure",
        "imsx_severity": "error",
        "imsx_description": description,
        "imsx_CodeMinor": { "imsx_codeMinorField": [
            { "imsx_codeMinorFieldName": "TargetEndSystem", "imsx_codeMinorFieldValue": minor }
        ]},
    });
    let mut r = (status, Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"rostersync\""),
        );
    }
    r
}

pub fn not_found() -> Response {
    imsx(
        StatusCode::NOT_FOUND,
        "unknownobject",
        "there is no such record (or it is not one of this client's schools)",
    )
}

pub fn router(api: Arc<Api>) -> Router {
    let guarded = handlers::routes()
        .layer(middleware::from_fn_with_state(api.clone(), bearer))
        .layer(middleware::from_fn(count));
    Router::new()
        .route("/oauth/token", post(token))
        .merge(guarded)
        .fallback(|| async { not_found() })
        .with_state(api)
}

/// Requests counted by route and status (no record, no client secret, ever logged).
async fn count(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let response = next.run(req).await;
    metrics::counter!(
        "rostersync_api_requests_total",
        "route" => route,
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    metrics::histogram!("rostersync_api_request_seconds").record(started.elapsed().as_secs_f64());
    response
}

/// Every API request needs a live bearer token.
async fn bearer(State(api): State<Arc<Api>>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(grant) = token.and_then(|t| api.auth.check(t)) else {
        return imsx(
            StatusCode::UNAUTHORIZED,
            "unauthorisedrequest",
            "a valid bearer token is required: POST /oauth/token with the client's credentials",
        );
    };
    let Some(client) = api.auth.client(&grant.client) else {
        return imsx(
            StatusCode::UNAUTHORIZED,
            "unauthorisedrequest",
            "unknown client",
        );
    };
    req.extensions_mut().insert(Access {
        client: grant.client.clone(),
        schools: client.schools.clone(),
        scopes: grant.scopes,
    });
    next.run(req).await
}

/// The client's address, for the limit on failed sign-ins.
fn address(req_peer: Option<&Peer>) -> IpAddr {
    match req_peer {
        Some(Peer::Tcp(a)) => a.ip(),
        _ => IpAddr::from([127, 0, 0, 1]),
    }
}

/// `POST /oauth/token`: client credentials by HTTP Basic or form fields.
async fn token(State(api): State<Arc<Api>>, req: Request) -> Response {
    let from = address(req.extensions().get::<Peer>());
    let basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(basic_credentials);
    let body = match axum::body::to_bytes(req.into_body(), 16 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "unreadable body",
            );
        }
    };
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    if field("grant_type").as_deref() != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        );
    }
    let Some((id, secret)) = basic.or_else(|| Some((field("client_id")?, field("client_secret")?)))
    else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "give the client's id and secret (HTTP Basic, or client_id and client_secret)",
        );
    };
    match api
        .auth
        .issue(&id, &secret, &field("scope").unwrap_or_default(), from)
    {
        Ok((token, scopes)) => {
            let mut r = Json(json!({
                "access_token": token,
                "token_type": "bearer",
                "expires_in": api.auth.lifetime().as_secs(),
                "scope": scopes.into_iter().collect::<Vec<_>>().join(" "),
            }))
            .into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(Refusal::BadClient) => {
            let shown: String = id.chars().filter(|c| !c.is_control()).take(64).collect();
            tracing::warn!(client = %shown, address = %from, "An API sign-in failed: unknown client or wrong secret.");
            metrics::counter!("rostersync_api_sign_in_failures_total").increment(1);
            oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "unknown client or wrong secret",
            )
        }
        Err(Refusal::TooMany(wait)) => {
            let mut r = oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                "slow_down",
                "too many failed sign-ins from this address; wait",
            );
            if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Err(Refusal::NoRandom) => {
            tracing::error!(
                "The system's random source failed: no API token can be issued. Check the kernel's entropy source (getrandom)."
            );
            oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "no token can be issued now; try again later",
            )
        }
        Err(Refusal::BadScope(s)) => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &format!("the client was not given the scope {s}"),
        ),
    }
}

/// RFC 6749's error answer.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"rostersync\""),
        );
    }
    r
}

/// `Basic base64(id:secret)`, both parts form-decoded as RFC 6749 asks.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = base64_decode(encoded.trim())?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unform = |s: &str| {
        serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
            .ok()
            .and_then(|v| v.into_iter().next().map(|(_, v)| v))
    };
    Some((unform(id)?, unform(secret)?))
}

/// Standard base64 (with or without padding).
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut buf, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Serve the API on `[api] listen` (TLS when configured) until the task is aborted.
pub async fn serve(
    settings: &Settings,
    store: Store,
) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let Some(addr) = settings.api.listen else {
        return Ok(None);
    };
    let api = Arc::new(Api::new(settings, store)?);
    let tls = match (&settings.api.certificate, &settings.api.private_key) {
        (Some(c), Some(k)) => {
            let c = c.load_bytes().context("api.certificate cannot be read")?;
            let k = k.load_bytes().context("api.private_key cannot be read")?;
            use secrecy::ExposeSecret;
            Some(
                crate::server::tls_acceptor(c.expose_secret(), k.expose_secret())
                    .map_err(|e| anyhow::anyhow!("api TLS: {e}"))?,
            )
        }
        _ => None,
    };
    if tls.is_none() && !crate::server::is_loopback(&addr) {
        tracing::warn!(%addr, "The API serves plain HTTP beyond this machine: put it behind a TLS-terminating proxy (client secrets and pupil data cross the network).");
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr().unwrap_or(addr);
    let limits = crate::server::Limits {
        body_bytes: 16 * 1024,
        ..crate::server::Limits::default()
    };
    crate::server::spawn(
        "api",
        crate::server::Bound::Tcp(listener, tls),
        router(api),
        limits,
    );
    tracing::info!(addr = %bound, "OneRoster API listening.");
    Ok(Some(bound))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_decoded_and_form_unescaped() {
        // "learning-platform:s3cr%3At" (a ':' in the secret, form-encoded).
        let header = "Basic bGVhcm5pbmctcGxhdGZvcm06czNjciUzQXQ=";
        assert_eq!(
            basic_credentials(header),
            Some(("learning-platform".into(), "s3cr:t".into()))
        );
        assert_eq!(basic_credentials("Bearer x"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }
}
