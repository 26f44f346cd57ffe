//! The one HTTP client every connector uses. It owns TLS (rustls with the ring provider,
//! optional client certificate and extra trust root), timeouts, the response size cap,
//! retries with backoff and jitter that honour `Retry-After`, and redaction of secrets
//! in anything it logs.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::{Bytes, BytesMut};
pub use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretBox};

use crate::ConnectorError;
use crate::error::trim_detail;

/// How much of an error answer's body is read for its message.
pub const SNIPPET_BYTES: usize = 2048;

/// Limits for one source. Defaults suit a LAS answering a whole school in one response.
#[derive(Clone, Debug)]
pub struct HttpPolicy {
    pub connect_timeout: Duration,
    /// Longest silence between two chunks of a response.
    pub read_timeout: Duration,
    /// Longest time for one whole exchange, body included.
    pub request_timeout: Duration,
    pub max_body_bytes: u64,
    /// Attempts in all, the first included.
    pub max_attempts: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// A `Retry-After` longer than this is not waited for within a run; the run fails
    /// as unavailable and the scheduler tries again later.
    pub max_retry_after: Duration,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        HttpPolicy {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(300),
            max_body_bytes: 256 * 1024 * 1024,
            max_attempts: 4,
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

/// TLS material for one source connection.
#[derive(Default)]
pub struct TlsSettings {
    /// PEM with the client certificate (chain) and its private key, for mutual TLS.
    pub client_identity_pem: Option<SecretBox<Vec<u8>>>,
    /// PEM with one or more extra trust roots, added to the system's.
    pub extra_roots_pem: Option<Vec<u8>>,
}

/// rustls needs a process-wide crypto provider; we only ever ship *ring*.
pub fn ensure_crypto_provider() {
    // An Err means one is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    policy: HttpPolicy,
    source: Arc<str>,
    /// The client certificate, for telling a refused one from a network failure.
    identity: Option<Arc<crate::tls::Identity>>,
}

impl HttpClient {
    /// `source` names the connection in logs (`esis`, `basispoort`).
    pub fn new(source: &str, policy: HttpPolicy, tls: TlsSettings) -> Result<Self, ConnectorError> {
        ensure_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(policy.connect_timeout)
            .read_timeout(policy.read_timeout)
            .timeout(policy.request_timeout)
            .user_agent(concat!("rostersync/", env!("CARGO_PKG_VERSION")))
            // A redirect could carry the authorization header to another host.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &tls.extra_roots_pem {
            let roots =
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| ConnectorError::Config {
                    detail: format!(
                        "the extra CA certificate is not valid PEM: {}",
                        describe(&e)
                    ),
                })?;
            if roots.is_empty() {
                return Err(ConnectorError::Config {
                    detail: "the extra CA certificate file holds no certificate".into(),
                });
            }
            builder = builder.tls_certs_merge(roots);
        }
        if let Some(pem) = &tls.client_identity_pem {
            if !looks_like_pem(pem.expose_secret()) {
                return Err(ConnectorError::Config {
                    detail: "the client certificate is not PEM. A PKCS#12 file (.p12/.pfx) \
                             converts with: openssl pkcs12 -in cert.p12 -out cert.pem -nodes \
                             (then chmod 600 cert.pem)"
                        .into(),
                });
            }
            let identity = reqwest::Identity::from_pem(pem.expose_secret()).map_err(|e| {
                ConnectorError::Config {
                    detail: format!(
                        "the client certificate must be PEM with a certificate and its private key: {}",
                        describe(&e)
                    ),
                }
            })?;
            builder = builder.identity(identity);
        }
        let client = builder.build().map_err(|e| ConnectorError::Config {
            detail: format!("could not build the HTTP client: {}", describe(&e)),
        })?;
        Ok(HttpClient {
            client,
            policy,
            source: source.into(),
            identity: tls
                .client_identity_pem
                .as_ref()
                .and_then(|pem| crate::tls::Identity::from_pem(pem.expose_secret()))
                .map(Arc::new),
        })
    }

    /// Say more about a failure than the HTTP client could: which CA issued a certificate we
    /// do not trust, and whether a "network" failure was really our client certificate
    /// refused after the handshake (TLS 1.3). Each asks the server once more, on its own.
    async fn explain(&self, error: ConnectorError, url: &Url) -> ConnectorError {
        match error {
            ConnectorError::TlsUntrusted { detail } => ConnectorError::TlsUntrusted {
                detail: match crate::tls::presented_issuer(url).await {
                    Some(issuer) => format!("{detail}; it is issued by {issuer}"),
                    None => detail,
                },
            },
            ConnectorError::Transport { detail } => {
                let refused = if url.scheme() == "https" {
                    crate::tls::refusal(url, self.identity.as_deref()).await
                } else {
                    None
                };
                match refused {
                    Some(e) => crate::tls::classify(&e),
                    None => ConnectorError::Transport { detail },
                }
            }
            other => other,
        }
    }

    pub fn policy(&self) -> &HttpPolicy {
        &self.policy
    }

    pub fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        self.client.request(method, url)
    }

    /// Send one request (no retry). Any status is returned; the protocol decides what it means.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Response, ConnectorError> {
        let request = request.build().map_err(|e| ConnectorError::Config {
            detail: format!("could not build the request: {}", describe(&e)),
        })?;
        tracing::debug!(
            source = %self.source,
            method = %request.method(),
            url = %redact_url(request.url()),
            headers = ?redact_headers(request.headers()),
            "Sending request."
        );
        let started = std::time::Instant::now();
        let url = request.url().clone();
        let response = match self.client.execute(request).await {
            Ok(r) => r,
            Err(e) => {
                return Err(self
                    .explain(map_reqwest_error(&e, self.policy.request_timeout), &url)
                    .await);
            }
        };
        tracing::debug!(
            source = %self.source,
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Received response headers."
        );
        if let Some(len) = response.content_length()
            && len > self.policy.max_body_bytes
        {
            return Err(ConnectorError::TooLarge {
                limit: self.policy.max_body_bytes,
            });
        }
        Ok(Response {
            status: response.status(),
            headers: response.headers().clone(),
            inner: response,
            limit: self.policy.max_body_bytes,
            read: 0,
            timeout: self.policy.request_timeout,
        })
    }

    /// Run `op` until it succeeds, fails for a reason retrying cannot fix, or the attempts
    /// run out. Waits grow exponentially with jitter; a source's `Retry-After` replaces the
    /// computed wait when it is not longer than `max_retry_after`.
    pub async fn retry<T, F, Fut>(&self, what: &str, op: F) -> Result<T, ConnectorError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ConnectorError>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.policy.min_backoff)
            .with_max_delay(self.policy.max_backoff)
            .with_max_times(self.policy.max_attempts.saturating_sub(1))
            .with_jitter();
        let max_retry_after = self.policy.max_retry_after;
        op.retry(backoff)
            .sleep(tokio::time::sleep)
            .when(move |e: &ConnectorError| {
                e.is_retryable() && e.retry_after().is_none_or(|d| d <= max_retry_after)
            })
            .adjust(|e, computed| computed.map(|d| e.retry_after().unwrap_or(d)))
            .notify(|e, wait| {
                tracing::warn!(
                    source = %self.source,
                    what,
                    error_class = e.class(),
                    wait_ms = wait.as_millis() as u64,
                    "Retrying after a transient failure."
                );
            })
            .await
    }
}

/// A response whose body is read under the size cap.
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    inner: reqwest::Response,
    limit: u64,
    read: u64,
    timeout: Duration,
}

impl Response {
    /// The wait the source asked for, in seconds or as an HTTP date.
    pub fn retry_after(&self) -> Option<Duration> {
        parse_retry_after(self.headers.get(RETRY_AFTER)?, chrono::Utc::now())
    }

    /// The next piece of the body, or `None` at its end. Fails once the cap is passed, so
    /// a caller streaming the body never holds more than one chunk beyond what it keeps.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, ConnectorError> {
        let chunk = self
            .inner
            .chunk()
            .await
            .map_err(|e| map_reqwest_error(&e, self.timeout))?;
        if let Some(c) = &chunk {
            self.read += c.len() as u64;
            if self.read > self.limit {
                return Err(ConnectorError::TooLarge { limit: self.limit });
            }
        }
        Ok(chunk)
    }

    /// The whole body, under the cap.
    pub async fn bytes(mut self) -> Result<Bytes, ConnectorError> {
        let mut buf = BytesMut::new();
        while let Some(chunk) = self.next_chunk().await? {
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    /// The first bytes of a body as text, for error details; reading stops after
    /// [`SNIPPET_BYTES`] (an error page may be as large as the source likes).
    pub async fn snippet(mut self) -> String {
        let mut buf = BytesMut::new();
        while buf.len() < SNIPPET_BYTES {
            match self.next_chunk().await {
                Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
                Ok(None) => break,
                Err(e) => return e.to_string(),
            }
        }
        trim_detail(&String::from_utf8_lossy(
            &buf[..buf.len().min(SNIPPET_BYTES)],
        ))
    }

    /// The common reading of an HTTP status outside the protocol's own error format:
    /// 401 credential, 403 access, 408/429/5xx transient. `None` for anything else.
    pub fn status_error(&self, detail: &str) -> Option<ConnectorError> {
        let detail = format!("HTTP {}: {}", self.status.as_u16(), trim_detail(detail));
        match self.status {
            StatusCode::UNAUTHORIZED => Some(ConnectorError::CredentialsRejected { detail }),
            StatusCode::FORBIDDEN => Some(ConnectorError::AccessDenied { detail }),
            StatusCode::REQUEST_TIMEOUT
            | StatusCode::TOO_MANY_REQUESTS
            | StatusCode::INTERNAL_SERVER_ERROR
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => Some(ConnectorError::Unavailable {
                detail,
                retry_after: self.retry_after(),
            }),
            s if s.is_server_error() => Some(ConnectorError::Unavailable {
                detail,
                retry_after: self.retry_after(),
            }),
            _ => None,
        }
    }
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

fn parse_retry_after(value: &HeaderValue, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - now;
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// A reqwest error as one of ours, by the types in its chain (rustls's for TLS). The URL is
/// stripped first: it may carry a token.
fn map_reqwest_error(err: &reqwest::Error, timeout: Duration) -> ConnectorError {
    if let Some(tls) = crate::tls::find_rustls_error(err) {
        return crate::tls::classify(tls);
    }
    let detail = describe(err);
    if err.is_timeout() {
        return ConnectorError::Timeout { after: timeout };
    }
    if ended_early(err) {
        // The source was reached and its answer broke off (over TLS: closed without
        // close_notify): the answer is incomplete, not the source unreachable.
        return ConnectorError::Truncated { detail };
    }
    if err.is_connect() || err.is_request() {
        return ConnectorError::Transport { detail };
    }
    if err.is_body() || err.is_decode() {
        return ConnectorError::Truncated { detail };
    }
    ConnectorError::Transport { detail }
}

/// Whether an `UnexpectedEof` is among `err`'s causes (looking into nested io::Errors).
fn ended_early(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        current = match e.downcast_ref::<std::io::Error>() {
            Some(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => return true,
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static))
                .or_else(|| e.source()),
            None => e.source(),
        };
    }
    false
}

/// An error and its causes on one line, without any URL.
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        let text = match e.downcast_ref::<reqwest::Error>() {
            Some(r) => {
                let mut r = clone_without_url(r);
                r.truncate(200);
                r
            }
            None => e.to_string(),
        };
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = e.source();
    }
    trim_detail(&parts.join(": "))
}

fn clone_without_url(err: &reqwest::Error) -> String {
    // reqwest prints "... for url (https://...)"; cut that part off.
    let text = err.to_string();
    match text.find(" for url (") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

const SENSITIVE_HEADERS: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "iddinkhub-subscription-key",
    "x-api-key",
];

/// Mark a header value that carries a secret, so nothing that prints it shows it.
pub fn sensitive_header(value: &str) -> Result<HeaderValue, ConnectorError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| ConnectorError::Config {
        detail: "a header value contains characters HTTP does not allow".into(),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Headers as `name: value` pairs with secrets replaced, for debug logs.
pub fn redact_headers(headers: &HeaderMap) -> Vec<String> {
    headers
        .iter()
        .map(|(name, value)| {
            if is_sensitive(name) || value.is_sensitive() {
                format!("{name}: [redacted]")
            } else {
                format!("{name}: {}", value.to_str().unwrap_or("[binary]"))
            }
        })
        .collect()
}

fn is_sensitive(name: &HeaderName) -> bool {
    let n = name.as_str();
    SENSITIVE_HEADERS.contains(&n) || n.contains("token") || n.contains("key")
}

/// A REST base URL that relative paths can be joined to: without its final `/`, `join`
/// would replace the last segment instead of adding to it.
pub fn base_url(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

/// A URL for logs: query parameters that look like secrets are replaced, user info dropped.
pub fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    if shown.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                let secret = ["token", "key", "secret", "code", "password", "sleutel"]
                    .iter()
                    .any(|w| lower.contains(w));
                let value = if secret {
                    "[redacted]".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), value)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_secrets() {
        let url: Url = "https://u:p@school.zportal.nl/api/v3/users?access_token=abc123&fields=code"
            .parse()
            .expect("valid url");
        let shown = redact_url(&url);
        assert!(!shown.contains("abc123"), "{shown}");
        assert!(!shown.contains("u:p"), "{shown}");
        assert!(shown.contains("fields=code"), "{shown}");
    }

    #[test]
    fn headers_lose_their_secrets() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer s3cret"));
        headers.insert(
            "iddinkhub-subscription-key",
            HeaderValue::from_static("k3y"),
        );
        headers.insert("x-custom", sensitive_header("hidden").expect("valid"));
        headers.insert(
            "soapaction",
            HeaderValue::from_static("HaalLeerlinggegevens"),
        );
        let shown = redact_headers(&headers).join("\n");
        for secret in ["s3cret", "k3y", "hidden"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("HaalLeerlinggegevens"));
    }

    #[test]
    fn a_pkcs12_identity_is_refused_with_how_to_convert_it() {
        // A PKCS#12 file is DER: it starts with a SEQUENCE tag, no PEM armour.
        let der = vec![0x30, 0x82, 0x0a, 0x1b, 0x02, 0x01, 0x03];
        let tls = TlsSettings {
            client_identity_pem: Some(SecretBox::new(Box::new(der))),
            extra_roots_pem: None,
        };
        let err = HttpClient::new("esis", HttpPolicy::default(), tls)
            .err()
            .expect("refused");
        assert_eq!(err.class(), "config");
        assert!(err.to_string().contains("openssl pkcs12"), "{err}");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .expect("valid")
            .with_timezone(&chrono::Utc);
        let secs = HeaderValue::from_static("7");
        assert_eq!(parse_retry_after(&secs, now), Some(Duration::from_secs(7)));
        let date = HeaderValue::from_static("Sun, 22 Nov 2026 10:00:30 GMT");
        assert_eq!(parse_retry_after(&date, now), Some(Duration::from_secs(30)));
        let past = HeaderValue::from_static("Sun, 22 Nov 2026 09:00:00 GMT");
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(&HeaderValue::from_static("soon"), now),
            None
        );
    }
}
