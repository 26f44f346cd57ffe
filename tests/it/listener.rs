//! The one HTTP server every listener uses, against real sockets on loopback: a client that
//! sends half a request is cut off within the header timeout, connections beyond the limit
//! are closed at once, bodies are capped, and the admin socket is never taken from a file
//! that is not a socket.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::{get, post};
use rostersync::server::{self, Bound, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::SimEnv;

async fn start(limits: Limits) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().route("/", get(|| async { "ok\n" })).route(
        "/echo",
        post(|body: axum::body::Bytes| async move { body.len().to_string() }),
    );
    server::spawn("test", Bound::Tcp(listener, None), app, limits);
    addr
}

/// Read until the server closes (or `wait` passes); returns what came and whether it closed.
async fn read_until_closed(s: &mut TcpStream, wait: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_requests_are_cut_off_and_excess_connections_refused() {
    let limits = Limits {
        header_read: Duration::from_millis(500),
        request: Duration::from_secs(5),
        body_bytes: 1024,
        connections: 8,
    };
    let addr = start(limits).await;
    // Eight clients send half a request line and stop: the slots are taken ...
    let mut slow = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        slow.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ... so a ninth is closed at once, answered nothing.
    let mut extra = TcpStream::connect(addr).await.expect("connect");
    let _ = extra.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (said, closed) = read_until_closed(&mut extra, Duration::from_millis(300)).await;
    assert!(closed && said.is_empty(), "beyond the limit: {said:?}");
    // The half-sent ones are closed within the header timeout (with a 408 or nothing).
    let started = Instant::now();
    for s in &mut slow {
        let (said, closed) = read_until_closed(s, Duration::from_secs(3)).await;
        assert!(closed, "a half-sent request stays open");
        assert!(!said.contains("200 OK"), "{said}");
    }
    assert!(started.elapsed() < Duration::from_secs(3));
    // With the slots free again, a whole request is served.
    let mut ok = TcpStream::connect(addr).await.expect("connect");
    ok.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let (said, _) = read_until_closed(&mut ok, Duration::from_secs(3)).await;
    assert!(said.starts_with("HTTP/1.1 200"), "{said}");
    // A kept-alive connection that falls silent is closed too.
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let (said, closed) = read_until_closed(&mut idle, Duration::from_secs(3)).await;
    assert!(said.starts_with("HTTP/1.1 200") && closed, "{said}");
    // A body over the cap is refused.
    let mut big = TcpStream::connect(addr).await.expect("connect");
    big.write_all(
        format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\nConnection: close\r\n\r\n{}",
            "a".repeat(4096)
        )
        .as_bytes(),
    )
    .await
    .expect("write");
    let (said, _) = read_until_closed(&mut big, Duration::from_secs(3)).await;
    assert!(said.starts_with("HTTP/1.1 413"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_leaves_a_file_that_is_not_a_socket_alone() {
    let sim = SimEnv::start(
        connector_sim::World::new(3, rostersync::sync::run::today()),
        "",
    )
    .await;
    let path = sim.env.write("admin.sock", "not a socket\n");
    sim.configure(&format!("[admin]\nsocket = \"{}\"\n", path.display()));
    sim.env.run(&["migrate"]).ok();
    let out = sim.env.run(&["run"]);
    let line = out.fails_with(1);
    assert!(line.contains("is not a socket"), "{line}");
    assert_eq!(
        std::fs::read_to_string(&path).expect("still there"),
        "not a socket\n"
    );
}
