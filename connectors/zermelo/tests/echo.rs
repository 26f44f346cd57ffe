//! A portal may repeat the token it refuses in its error message; the error rostersync keeps
//! (stored with the run, logged, shown in the console) must not.

use std::time::Duration;

use connector_api::http::HttpPolicy;
use connector_api::{Connector, FetchRequest, SchoolYear};
use connector_zermelo::{ZermeloConfig, ZermeloConnector};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TOKEN: &str = "tok-7f3a9c1e55d24b0e";

/// Answer every request with 401 and a Zermelo error envelope that quotes the token.
async fn portal_that_echoes_the_token() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                let _ = sock.read(&mut buf).await;
                let body = format!(
                    "{{\"response\":{{\"status\":401,\"message\":\"token {TOKEN} has expired\",\
                     \"details\":\"Bearer {TOKEN}\",\"data\":[]}}}}"
                );
                let head = format!(
                    "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    format!("http://{addr}/api/v3/")
}

#[tokio::test]
async fn a_token_the_portal_repeats_is_not_in_the_error() {
    let connector = ZermeloConnector::new(ZermeloConfig {
        portal: portal_that_echoes_the_token().await.parse().expect("url"),
        ca_pem: None,
        policy: HttpPolicy {
            max_attempts: 1,
            request_timeout: Duration::from_secs(5),
            ..HttpPolicy::default()
        },
    })
    .expect("connector");
    let request = FetchRequest {
        school: "99XX00".parse().expect("id"),
        school_year: SchoolYear::starting(2024),
        credential: Some(SecretString::from(TOKEN)),
        remote_id: None,
        last_received: None,
        last_marker: None,
    };
    let err = connector.fetch(&request).await.expect_err("refused");
    let shown = err.to_string();
    assert_eq!(err.class(), "credentials_rejected", "{shown}");
    assert!(!shown.contains(TOKEN), "{shown}");
    assert!(shown.contains("has expired"), "the rest stays: {shown}");
}
