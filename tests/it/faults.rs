//! Faults on the wire: a loopback TCP proxy between rostersync and the simulator that resets
//! a connection after N bytes, stalls mid-body, or closes without TLS's close_notify. Each
//! ends in its class, the school frozen and marked for a retry, and nothing stored changed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use connector_sim::{SchoolKind, World};
use rostersync::store::export;
use rostersync::sync::report::Outcome;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{SimEnv, count};

/// What the proxy does once it has passed the given number of bytes from the server to the
/// client.
#[derive(Debug, Clone, Copy)]
enum Misbehave {
    /// Abort the client's connection (a TCP reset).
    Reset(usize),
    /// Stop passing anything on, and keep the connection open.
    Stall(usize),
    /// Close the client's connection cleanly at the TCP level; over TLS that is a close
    /// without close_notify.
    Close(usize),
}

impl Misbehave {
    fn after(self) -> usize {
        match self {
            Misbehave::Reset(n) | Misbehave::Stall(n) | Misbehave::Close(n) => n,
        }
    }
}

struct Proxy {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr, how: Misbehave) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(pipe(client, upstream, how));
            }
        });
        Proxy {
            addr,
            connections,
            task,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(client: TcpStream, upstream: SocketAddr, how: Misbehave) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    if matches!(how, Misbehave::Reset(_)) {
        // Closing with a zero linger sends a reset instead of a FIN.
        let _ = client.set_zero_linger();
    }
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upward = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    let mut passed = 0;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match server_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let room = how.after().saturating_sub(passed).min(n);
        if client_write.write_all(&buf[..room]).await.is_err() {
            break;
        }
        passed += room;
        if room < n {
            match how {
                Misbehave::Stall(_) => {
                    // Hold both ends open until the client gives up.
                    tokio::time::sleep(Duration::from_secs(600)).await;
                }
                Misbehave::Close(_) => {
                    let _ = client_write.shutdown().await;
                }
                Misbehave::Reset(_) => {}
            }
            break;
        }
    }
    upward.abort();
}

fn world() -> World {
    let mut w = World::new(31, rostersync::sync::run::today());
    w.add_school("10XA00".parse().expect("id"), SchoolKind::Primary, 60);
    w
}

/// Load the school, let a day pass at the source, then sync through `how`: the school must
/// end frozen with `classes`, marked for a retry, its stored roster untouched.
async fn through(how: Misbehave, broker: bool, classes: &[&str]) {
    let (sim, store) = SimEnv::start_linked(world(), broker, false).await;
    let first = sim.sync(&store, false).await;
    assert_eq!(first.schools[0].outcome, Outcome::Ok, "{first:?}");
    let before = export::export(store.db(), "10XA00").await.expect("export");
    sim.server.with_world(|w| {
        w.advance_day();
    });

    let (url, scheme) = if broker {
        (sim.server.broker_url(), "https")
    } else {
        (sim.server.uwlr_url(), "http")
    };
    let upstream: SocketAddr = url
        .trim_start_matches(&format!("{scheme}://"))
        .split('/')
        .next()
        .expect("host:port")
        .parse()
        .expect("socket address");
    let proxy = Proxy::start(upstream, how).await;
    let config = std::fs::read_to_string(&sim.env.config).expect("config");
    let mut via = config.replace(&upstream.to_string(), &proxy.addr.to_string());
    if matches!(how, Misbehave::Stall(_)) {
        // A short limit for the whole answer: the stalled body runs into it.
        via = via.replace("name = \"sim\"\n", "name = \"sim\"\ntimeout_seconds = 2\n");
    }
    assert_ne!(via, config, "the proxy is in the configuration");
    std::fs::write(&sim.env.config, via).expect("write config");

    let report = sim.sync(&store, false).await;
    let r = &report.schools[0];
    assert_eq!(r.outcome, Outcome::Frozen, "{how:?}: {r:?}");
    let class = r.error_class.as_deref().unwrap_or("-");
    assert!(
        classes.contains(&class),
        "{how:?}: {class}: {:?}",
        r.message
    );
    assert!(r.retry, "{how:?}: a transient fault is tried again later");
    assert!(proxy.connections.load(Ordering::SeqCst) >= 1);
    let after = export::export(store.db(), "10XA00").await.expect("export");
    assert_eq!(after, before, "{how:?}: nothing stored changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_las_connection_reset_mid_body_freezes_the_school_for_a_retry() {
    through(Misbehave::Reset(3000), false, &["truncated", "transport"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_las_that_stalls_mid_body_times_out() {
    through(Misbehave::Stall(3000), false, &["timeout"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_closes_without_close_notify_is_a_truncated_answer() {
    through(Misbehave::Close(6000), true, &["truncated"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_connection_reset_is_transient() {
    through(Misbehave::Reset(6000), true, &["truncated", "transport"]).await;
}

/// Everything an operator would look at after a hostile answer, as one text.
fn operator_views(sim: &SimEnv, run: i64) -> String {
    let run = run.to_string();
    [
        vec!["status"],
        vec!["runs"],
        vec!["runs", "show", run.as_str()],
        vec!["changes", "--run", run.as_str()],
    ]
    .iter()
    .map(|args| sim.env.run(args).all_output())
    .collect::<Vec<_>>()
    .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_source_cannot_steer_an_operators_terminal() {
    use connector_sim::{Fault, FaultPlan};
    for fault in [Fault::HostileKey, Fault::HostileError] {
        let (sim, store) = SimEnv::start_linked(world(), false, false).await;
        sim.server.with_world(|w| {
            w.set_fault(
                &"10XA00".parse().expect("id"),
                Some(FaultPlan {
                    fault: fault.clone(),
                    remaining: None,
                }),
            )
        });
        let report = sim.sync(&store, false).await;
        let r = &report.schools[0];
        assert_eq!(r.outcome, Outcome::Frozen, "{fault:?}: {r:?}");
        let message = r.message.clone().unwrap_or_default();
        assert!(
            !message.chars().any(char::is_control),
            "{fault:?}: {message:?}"
        );
        let shown = operator_views(&sim, r.run.expect("run"));
        assert!(
            !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
            "{fault:?}: a control character reached the terminal:\n{shown:?}"
        );
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM person").await,
            0,
            "{fault:?}: nothing of the answer was stored"
        );
    }
}
