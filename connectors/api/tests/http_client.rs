//! The shared HTTP client against a real loopback server serving canned raw responses.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use connector_api::ConnectorError;
use connector_api::http::{HttpClient, HttpPolicy, TlsSettings};
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves `responses` in order, one per connection (the last one repeats), and counts hits.
async fn serve(responses: Vec<Vec<u8>>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let body = responses[n.min(responses.len() - 1)].clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(&body).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    (format!("http://{addr}/"), hits)
}

fn client(policy: HttpPolicy) -> HttpClient {
    HttpClient::new("test", policy, TlsSettings::default()).expect("client builds")
}

fn quick_policy() -> HttpPolicy {
    HttpPolicy {
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        ..HttpPolicy::default()
    }
}

async fn fetch(c: &HttpClient, url: &str) -> Result<bytes::Bytes, ConnectorError> {
    c.retry("test fetch", || async {
        let resp = c
            .send(c.request(Method::GET, url.parse().expect("url")))
            .await?;
        if let Some(err) = resp.status_error("") {
            return Err(err);
        }
        resp.bytes().await
    })
    .await
}

#[tokio::test]
async fn a_503_with_retry_after_is_retried_until_it_succeeds() {
    let (url, hits) = serve(vec![
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n".to_vec(),
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
    ])
    .await;
    let body = fetch(&client(quick_policy()), &url)
        .await
        .expect("second try succeeds");
    assert_eq!(&body[..], b"hello");
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_retry_after_beyond_the_limit_fails_at_once_as_unavailable() {
    let (url, hits) = serve(vec![
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3600\r\nContent-Length: 0\r\n\r\n"
            .to_vec(),
    ])
    .await;
    let err = fetch(&client(quick_policy()), &url)
        .await
        .expect_err("fails");
    assert_eq!(err.class(), "unavailable");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn attempts_are_bounded() {
    let (url, hits) = serve(vec![
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n".to_vec(),
    ])
    .await;
    let policy = HttpPolicy {
        max_attempts: 3,
        ..quick_policy()
    };
    let err = fetch(&client(policy), &url).await.expect_err("fails");
    assert!(err.is_retryable());
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_body_over_the_cap_is_refused_whether_announced_or_not() {
    let policy = HttpPolicy {
        max_body_bytes: 10,
        ..quick_policy()
    };
    let announced = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n01234567890123456789".to_vec();
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n01234567\r\n8\r\n89012345\r\n0\r\n\r\n".to_vec();
    for raw in [announced, chunked] {
        let (url, _) = serve(vec![raw]).await;
        let err = fetch(&client(policy.clone()), &url)
            .await
            .expect_err("too large");
        assert!(
            matches!(err, ConnectorError::TooLarge { limit: 10 }),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn a_truncated_body_is_an_error_not_partial_data() {
    let policy = HttpPolicy {
        max_attempts: 1,
        ..quick_policy()
    };
    let (url, _) = serve(vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly a part".to_vec(),
    ])
    .await;
    let err = fetch(&client(policy), &url).await.expect_err("truncated");
    assert_eq!(err.class(), "truncated", "{err:?}");
}

#[tokio::test]
async fn a_refused_connection_is_transport_and_names_no_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let policy = HttpPolicy {
        max_attempts: 1,
        ..quick_policy()
    };
    let url = format!("http://{addr}/x?access_token=s3cret");
    let err = fetch(&client(policy), &url).await.expect_err("refused");
    assert_eq!(err.class(), "transport");
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

#[tokio::test]
async fn unauthorized_is_a_credentials_problem() {
    let (url, hits) = serve(vec![
        b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_vec(),
    ])
    .await;
    let err = fetch(&client(quick_policy()), &url).await.expect_err("401");
    assert_eq!(err.class(), "credentials_rejected");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "a rejected credential is not retried"
    );
}

#[tokio::test]
async fn an_error_body_is_read_no_further_than_its_snippet() {
    // A 500 that announces 100 MB, sends 8 KB and then nothing: the error is said from the
    // first bytes at once, not after the body (or the read timeout).
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let mut buf = vec![0u8; 8192];
        let _ = sock.read(&mut buf).await;
        let mut head =
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 100000000\r\n\r\n".to_vec();
        head.extend(std::iter::repeat_n(b'x', 8192));
        let _ = sock.write_all(&head).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let c = client(HttpPolicy {
        read_timeout: Duration::from_secs(30),
        ..quick_policy()
    });
    let started = std::time::Instant::now();
    let response = c
        .send(c.request(Method::GET, format!("http://{addr}/").parse().expect("url")))
        .await
        .expect("headers arrive");
    let snippet = tokio::time::timeout(Duration::from_secs(5), response.snippet())
        .await
        .expect("the snippet does not wait for the whole body");
    assert!(snippet.chars().count() <= 301, "{}", snippet.len());
    assert!(started.elapsed() < Duration::from_secs(5));
}
