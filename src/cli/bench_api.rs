//! `rostersync bench`, part 3: the OneRoster API as an app uses it. Real HTTP on loopback to
//! the API served from this process, a token from `/oauth/token`, every page followed by its
//! `Link: rel="next"` to the end; each page timed from request to the last byte of its body.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use serde::Serialize;

use super::Failure;
use crate::settings::{ApiClient, SecretRef, Settings};
use crate::store::Store;

/// One kind of request, paged to the end `rounds` times.
pub struct Probe {
    pub name: &'static str,
    /// Path and query under the OneRoster base.
    pub path: String,
    pub rounds: usize,
    /// At most this many pages a round (`None`: to the end).
    pub pages: Option<usize>,
}

/// What the pages of one probe took.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub name: &'static str,
    pub pages: usize,
    /// Records per round (the collection's `X-Total-Count`).
    pub records: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub target_ms: f64,
}

/// The bar: p99 under 50 ms per page on SQLite on a 2-core machine.
const TARGET_MS: f64 = 50.0;

/// The `q`-quantile of sorted durations, in milliseconds.
fn quantile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    (sorted[at].as_secs_f64() * 10_000.0).round() / 10.0
}

/// Serve the API over `store` on a loopback port with one all-seeing client (its secret in
/// `dir`), and time `probes` against it.
pub async fn measure(
    settings: &Settings,
    store: Store,
    dir: &Path,
    probes: &[Probe],
) -> Result<Vec<Latency>, Failure> {
    let (root, token) = start(settings, store, dir).await.map_err(Failure::failed)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("cannot build the HTTP client")
        .map_err(Failure::failed)?;
    let mut out = Vec::new();
    for p in probes {
        let mut times = Vec::new();
        let mut records = 0;
        for _ in 0..p.rounds {
            let url = format!("{root}{}{}", crate::api::BASE, p.path);
            records = pages(&client, &token, url, p.pages, &mut times)
                .await
                .map_err(Failure::failed)?;
        }
        times.sort();
        out.push(Latency {
            name: p.name,
            pages: times.len(),
            records,
            p50_ms: quantile(&times, 0.5),
            p99_ms: quantile(&times, 0.99),
            max_ms: quantile(&times, 1.0),
            target_ms: TARGET_MS,
        });
    }
    Ok(out)
}

/// The API on 127.0.0.1:0: its root URL and a bearer token.
async fn start(settings: &Settings, store: Store, dir: &Path) -> anyhow::Result<(String, String)> {
    let secret = dir.join("bench-api-secret");
    write_private(&secret, "bench-secret\n")?;
    let mut s = settings.clone();
    s.api.listen = Some(([127, 0, 0, 1], 0).into());
    s.api.certificate = None;
    s.api.private_key = None;
    s.api.client = vec![ApiClient {
        id: "bench".into(),
        secret: SecretRef::File(secret),
        schools: vec!["*".into()],
        scopes: crate::settings::API_SCOPES.map(str::to_owned).to_vec(),
    }];
    let addr = crate::api::serve(&s, store)
        .await?
        .ok_or_else(|| anyhow!("the API did not start"))?;
    let root = format!("http://{addr}");
    connector_api::http::ensure_crypto_provider();
    let answer = reqwest::Client::new()
        .post(format!("{root}/oauth/token"))
        .basic_auth("bench", Some("bench-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .context("cannot ask the API for a token")?
        .bytes()
        .await?;
    let body: serde_json::Value = serde_json::from_slice(&answer).context("the token answer")?;
    let token = body["access_token"]
        .as_str()
        .ok_or_else(|| anyhow!("the API gave no token: {body}"))?;
    Ok((root, token.to_owned()))
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// Follow `url` page by page to the end (or `most` pages), pushing each page's time; the
/// collection's total.
async fn pages(
    client: &reqwest::Client,
    token: &str,
    mut url: String,
    most: Option<usize>,
    times: &mut Vec<Duration>,
) -> anyhow::Result<u64> {
    let mut total = 0;
    for _ in 0..most.unwrap_or(usize::MAX) {
        let started = Instant::now();
        let r = client.get(&url).bearer_auth(token).send().await?;
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.bytes().await?;
        times.push(started.elapsed());
        if !status.is_success() {
            return Err(anyhow!(
                "{url} answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ));
        }
        total = headers
            .get("x-total-count")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(total);
        match next_link(&headers) {
            Some(next) => url = next,
            None => return Ok(total),
        }
    }
    Ok(total)
}

/// The `rel="next"` target of a `Link` header.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let links = headers.get("link")?.to_str().ok()?;
    links
        .split(", ")
        .find(|l| l.ends_with("rel=\"next\""))
        .and_then(|l| l.split_once('>'))
        .map(|(u, _)| u.trim_start_matches('<').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_taken_from_the_top() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&d, 0.5), 50.0);
        assert_eq!(quantile(&d, 0.99), 99.0);
        assert_eq!(quantile(&d, 1.0), 100.0);
        assert_eq!(quantile(&[], 0.99), 0.0);
    }

    #[test]
    fn the_next_link_is_found_among_the_others() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            "link",
            "<http://a/x?offset=0>; rel=\"first\", <http://a/x?offset=10>; rel=\"next\""
                .parse()
                .expect("header"),
        );
        assert_eq!(next_link(&h).as_deref(), Some("http://a/x?offset=10"));
        h.insert(
            "link",
            "<http://a/x?offset=0>; rel=\"first\""
                .parse()
                .expect("header"),
        );
        assert_eq!(next_link(&h), None);
    }
}
