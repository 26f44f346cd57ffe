//! `rostersync run` as a real process against the simulated LAS: the daily cycle and its
//! catch-up, resync --wait, the admin socket, SIGTERM, and (on PostgreSQL) two instances
//! sharing the work and taking over from each other.

use std::path::Path;
use std::time::{Duration, Instant};

use connector_sim::{SchoolKind, World};
use rostersync::store::{Store, runs};
use sea_orm::{ConnectionTrait, Statement};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Daemon, SimEnv, count};

fn world(schools: usize, pupils: usize) -> World {
    let mut w = World::new(21, rostersync::sync::run::today());
    for n in 0..schools {
        let id = format!("{:02}XA00", 10 + n);
        w.add_school(id.parse().expect("id"), SchoolKind::Primary, pupils);
    }
    w
}

/// Every run, a line each, for a failing assertion.
async fn runs_table(store: &Store) -> String {
    store
        .db()
        .query_all_raw(Statement::from_string(
            store.backend(),
            "SELECT id, school_id, trigger, COALESCE(outcome, '-'), COALESCE(error_class, '-') \
             FROM sync_run ORDER BY id"
                .to_owned(),
        ))
        .await
        .expect("runs")
        .iter()
        .map(|r| {
            let id: i64 = r.try_get_by_index(0).expect("id");
            let text = |i| r.try_get_by_index::<String>(i).expect("text");
            format!("{id} {} {} {} {}\n", text(1), text(2), text(3), text(4))
        })
        .collect()
}

/// Wait until `sql` counts at least `n`.
async fn until(store: &Store, sql: &str, n: i64, what: &str, daemon: &Daemon) {
    let started = Instant::now();
    while count(store, sql).await < n {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{what} did not happen; daemon log:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until `sql` counts nothing.
async fn until_none(store: &Store, sql: &str, daemon: &Daemon) {
    let started = Instant::now();
    while count(store, sql).await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{sql} never reached 0; daemon log:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const SCHEDULED_RUNS: &str =
    "SELECT COUNT(*) FROM sync_run WHERE trigger = 'schedule' AND outcome IS NOT NULL";

/// One HTTP/1.0 request over a unix socket: status and body.
pub async fn http(socket: &Path, method: &str, path: &str) -> (u16, String) {
    let mut s = tokio::net::UnixStream::connect(socket)
        .await
        .expect("admin socket accepts");
    s.write_all(
        format!("{method} {path} HTTP/1.0\r\nHost: rostersync\r\nContent-Length: 0\r\n\r\n")
            .as_bytes(),
    )
    .await
    .expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("response");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or("")
        .to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_the_cycle_once_catches_up_and_answers_admins() {
    let sim = SimEnv::start(world(3, 30), "").await;
    let socket = sim.env.path("admin.sock");
    sim.configure(&format!("[admin]\nsocket = \"{}\"\n", socket.display()));
    sim.env.run(&["migrate"]).ok();
    let store = sim.store().await;

    // First start: no cycle has run yet, so today's runs now.
    let daemon = Daemon::start(&sim, "first", &[]);
    until(&store, SCHEDULED_RUNS, 3, "the first cycle", &daemon).await;
    assert!(daemon.log().contains("Daily cycle enqueued."));

    // A second instance on the same socket is refused and leaves the first one's socket alone.
    let mut second = Daemon::start(&sim, "second", &[]);
    let code = second.child.wait().expect("second exits").code();
    assert_eq!(code, Some(1), "{}", second.log());
    assert!(
        second
            .log()
            .contains("another rostersync instance is listening on"),
        "{}",
        second.log()
    );
    drop(second);
    assert_eq!(http(&socket, "GET", "/healthz").await.0, 200);

    // An admin asks for one school now and waits for the answer.
    let resync = sim.env.run(&["resync", "--school", "10XA00", "--wait"]);
    resync.ok();
    assert!(resync.stdout.contains("Run "), "{}", resync.stdout);
    assert!(
        resync.stdout.contains("of school 10XA00"),
        "{}",
        resync.stdout
    );

    let (code, body) = http(&socket, "GET", "/readyz").await;
    assert_eq!(code, 200, "{body}");
    let (code, metrics) = http(&socket, "GET", "/metrics").await;
    assert_eq!(code, 200);
    // Prometheus text: comments, or `name{labels} value` with a number.
    for line in metrics
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (name, value) = line.rsplit_once(' ').expect("name and value");
        assert!(value.parse::<f64>().is_ok(), "not a number in {line}");
        assert!(
            name.chars().next().is_some_and(|c| c.is_ascii_alphabetic()),
            "{line}"
        );
    }
    assert!(
        metrics.contains("rostersync_runs_total{outcome=\"ok\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("rostersync_grant_changes_total{change=\"granted\"}"),
        "{metrics}"
    );
    let (code, schools) = http(&socket, "GET", "/schools").await;
    assert_eq!(code, 200);
    let schools: serde_json::Value = serde_json::from_str(&schools).expect("JSON");
    assert_eq!(schools.as_array().expect("list").len(), 3);
    let (code, _) = http(&socket, "POST", "/schools/11XA00/resync").await;
    assert_eq!(code, 202);
    let (code, _) = http(&socket, "POST", "/schools/19ZZ00/resync").await;
    assert_eq!(code, 404);
    let status = sim.env.run(&["status"]);
    status.ok();
    assert!(
        status.stdout.contains("10XA00  active"),
        "{}",
        status.stdout
    );

    // SIGHUP: a new school in the configuration is served without a restart ...
    let admin = format!("[admin]\nsocket = \"{}\"\n", socket.display());
    sim.server.with_world(|w| {
        w.add_school("13XA00".parse().expect("id"), SchoolKind::Primary, 20);
    });
    sim.configure(&admin);
    daemon.signal("-HUP");
    let started = Instant::now();
    while !daemon.log().contains("Configuration reloaded.") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sim.env
        .run(&["resync", "--school", "13XA00", "--wait"])
        .ok();
    // ... and a broken one is refused while the old one goes on.
    std::fs::write(&sim.env.config, "[store\nurl = ").expect("break the configuration");
    daemon.signal("-HUP");
    let started = Instant::now();
    while !daemon.log().contains("keeping the old one") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, _) = http(&socket, "GET", "/readyz").await;
    assert_eq!(code, 200);
    sim.configure(&admin);
    assert_eq!(daemon.stop().await, 0);

    // A restart the same day runs nothing again: once its first tick has looked, ...
    let again = Daemon::start(&sim, "second", &[("RUST_LOG", "info,rostersync=debug")]);
    again.running().await;
    again.said("No cycle due.").await;
    assert_eq!(count(&store, SCHEDULED_RUNS).await, 3, "{}", again.log());
    assert_eq!(again.stop().await, 0);

    // ... but a cycle missed while the daemon was down is caught up.
    store
        .writer()
        .execute_raw(Statement::from_string(
            store.backend(),
            format!(
                "UPDATE store_meta SET value = '{}' WHERE key = 'last_cycle'",
                rostersync::sync::run::today()
                    .pred_opt()
                    .expect("yesterday")
                    .pred_opt()
                    .expect("the day before")
            ),
        ))
        .await
        .expect("pretend the daemon was down");
    let third = Daemon::start(&sim, "third", &[]);
    until(
        &store,
        SCHEDULED_RUNS,
        7,
        "the catch-up of all four",
        &third,
    )
    .await;
    assert!(third.log().contains("catch_up"));
    assert_eq!(third.stop().await, 0);
    assert!(!socket.exists(), "the socket is removed on stop");
    let no_daemon = sim.env.run(&["resync", "--school", "10XA00"]);
    assert!(no_daemon.fails_with(1).contains("no rostersync daemon"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_running_school_finish() {
    let sim = SimEnv::start(world(1, 40), "").await;
    let socket = sim.env.path("admin.sock");
    sim.configure(&format!("[admin]\nsocket = \"{}\"\n", socket.display()));
    sim.env.run(&["migrate"]).ok();
    let store = sim.store().await;
    let marker = sim.env.path("applying");
    let daemon = Daemon::start(
        &sim,
        "term",
        &[
            (
                "ROSTERSYNC_TEST_PAUSE_BEFORE_COMMIT",
                marker.to_str().expect("path"),
            ),
            ("ROSTERSYNC_TEST_PAUSE_SECONDS", "3"),
        ],
    );
    let started = Instant::now();
    while !marker.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Stop while the school's transaction is open: it finishes, then the daemon exits.
    assert_eq!(daemon.stop().await, 0);
    let all = runs::list(store.db(), None, 10).await.expect("runs");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].outcome.as_deref(), Some("ok"));
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM person WHERE kind = 'pupil'").await,
        40
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM sync_job WHERE state IN ('pending', 'running')"
        )
        .await,
        0
    );
}

/// Several instances on one PostgreSQL: each school exactly once per cycle, and a school whose
/// instance dies mid-run is completed by another once the lease expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_share_the_work_and_take_over() {
    if crate::support::postgres_admin_url().is_none() {
        eprintln!("SKIP two_daemons_share_the_work_and_take_over: needs ROSTERSYNC_TEST_POSTGRES");
        return;
    }
    let sim = SimEnv::start(world(50, 15), "[sync]\nlease_seconds = 8\n").await;
    sim.env.run(&["migrate"]).ok();
    let store = sim.store().await;
    // Each instance on a machine has its own admin socket (under systemd: its own unit).
    let (sock_a, sock_b) = (sim.env.path("a.sock"), sim.env.path("b.sock"));
    let a = Daemon::start(
        &sim,
        "a",
        &[("ROSTERSYNC__ADMIN__SOCKET", sock_a.to_str().expect("path"))],
    );
    let b = Daemon::start(
        &sim,
        "b",
        &[("ROSTERSYNC__ADMIN__SOCKET", sock_b.to_str().expect("path"))],
    );
    until(&store, SCHEDULED_RUNS, 50, "50 scheduled runs", &a).await;
    // Every job closed: nothing is still on its way to run a school twice.
    until_none(
        &store,
        "SELECT COUNT(*) FROM sync_job WHERE state IN ('pending', 'running')",
        &a,
    )
    .await;
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM (SELECT school_id FROM sync_run WHERE trigger = 'schedule' \
             GROUP BY school_id HAVING COUNT(*) = 1) once"
        )
        .await,
        50,
        "every school exactly once:\n{}\n{}",
        a.log(),
        b.log()
    );
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM sync_run").await,
        50,
        "no other run:\n{}",
        runs_table(&store).await
    );
    assert_eq!(a.stop().await, 0);
    assert_eq!(b.stop().await, 0);

    // Instance c dies holding a school mid-apply; instance d completes it after the lease.
    let marker = sim.env.path("applying");
    let c = Daemon::start(
        &sim,
        "c",
        &[(
            "ROSTERSYNC_TEST_PAUSE_BEFORE_COMMIT",
            marker.to_str().expect("path"),
        )],
    );
    sim.server.with_world(|w| {
        w.advance_day();
    });
    c.running().await;
    let resync = sim.env.run(&["resync", "--school", "10XA00"]);
    resync.ok();
    let started = Instant::now();
    while !marker.exists() {
        assert!(started.elapsed() < Duration::from_secs(60), "{}", c.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(c); // SIGKILL
    let d = Daemon::start(&sim, "d", &[]);
    until(
        &store,
        "SELECT COUNT(*) FROM sync_run WHERE trigger = 'manual' AND outcome = 'ok'",
        1,
        "the take-over",
        &d,
    )
    .await;
    assert!(d.log().contains("Took back jobs"), "{}", d.log());
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM sync_run WHERE trigger = 'manual' AND outcome IS NULL"
        )
        .await,
        1,
        "the dead instance's run stays unfinished: nothing of it was applied"
    );
    assert_eq!(d.stop().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_is_tried_again_later_the_same_day() {
    use connector_sim::{Fault, FaultPlan};
    let sim = SimEnv::start(world(2, 20), "").await;
    let socket = sim.env.path("admin.sock");
    sim.configure(&format!(
        "[admin]\nsocket = \"{}\"\n[schedule]\nretry_minutes = 1\nretries = 2\n",
        socket.display()
    ));
    sim.env.run(&["migrate"]).ok();
    sim.server.with_world(|w| {
        w.set_fault(
            &"11XA00".parse().expect("id"),
            Some(FaultPlan {
                fault: Fault::Soap("Server.TijdelijkNietBeschikbaar".into()),
                remaining: None,
            }),
        );
    });
    let store = sim.store().await;
    let daemon = Daemon::start(&sim, "retry", &[]);
    until(&store, SCHEDULED_RUNS, 2, "the cycle", &daemon).await;

    // Each retry waits twice as long as the one before, and there are `retries` of them.
    let retry_job = "SELECT COUNT(*) FROM sync_job WHERE trigger = 'retry' AND state = 'pending' \
                     AND school_id = '11XA00'";
    for (n, minutes) in [(1, 1), (2, 2)] {
        until(&store, retry_job, 1, "a retry queued", &daemon).await;
        // The job is in the table a moment before the line is in the log.
        let said = format!("\"retry_in_minutes\":{minutes}");
        let started = Instant::now();
        while !daemon.log().contains(&said) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "retry {n} waits {minutes} min:\n{}",
                daemon.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Bring the retry forward instead of waiting for it.
        store
            .writer()
            .execute_unprepared(
                "UPDATE sync_job SET due_at = created_at WHERE trigger = 'retry' \
                 AND state = 'pending'",
            )
            .await
            .expect("bring the retry forward");
        until(
            &store,
            "SELECT COUNT(*) FROM sync_run WHERE trigger = 'retry' AND outcome IS NOT NULL",
            n,
            "the retry ran",
            &daemon,
        )
        .await;
    }
    // The last retry failed too: nothing more is queued today, and the school says why.
    daemon.said("No retries left today").await;
    assert_eq!(count(&store, retry_job).await, 0, "{}", daemon.log());
    let status = sim.env.run(&["status"]);
    assert!(status.stdout.contains("11XA00"), "{}", status.stdout);
    assert_eq!(daemon.stop().await, 0);
    let other = runs::list(store.db(), Some("10XA00"), 10)
        .await
        .expect("runs");
    assert_eq!(other.len(), 1, "the healthy school ran once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_purges_expired_tombstones_when_its_cycle_is_done() {
    let sim = SimEnv::start(world(1, 25), "").await;
    let socket = sim.env.path("admin.sock");
    sim.configure(&format!(
        "[admin]\nsocket = \"{}\"\n[sync]\nretention_days = 0\n",
        socket.display()
    ));
    sim.env.run(&["migrate"]).ok();
    // The school is loaded once by hand; then a pupil leaves before the daemon's cycle.
    sim.env.run(&["sync"]).ok();
    let store = sim.store().await;
    let school: connector_api::SchoolId = "10XA00".parse().expect("id");
    let leaver = sim.server.with_world(|w| {
        let s = w.schools.get_mut(&school).expect("school");
        s.changed_at = chrono::Utc::now();
        s.school.pupils.remove(0).person.key
    });
    let stored = format!("SELECT COUNT(*) FROM person WHERE las_key = '{leaver}'");
    assert_eq!(count(&store, &stored).await, 1);

    let daemon = Daemon::start(&sim, "purge", &[]);
    until(&store, SCHEDULED_RUNS, 1, "the cycle", &daemon).await;
    let started = Instant::now();
    while !daemon
        .log()
        .contains("Purged tombstones whose retention ended.")
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no purge after the cycle:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        count(&store, &stored).await,
        0,
        "the leaver is gone for good"
    );
    assert_eq!(daemon.stop().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_undoes_a_run_as_the_command_does() {
    let sim = SimEnv::start(world(1, 20), "").await;
    let socket = sim.env.path("admin.sock");
    sim.configure(&format!("[admin]\nsocket = \"{}\"\n", socket.display()));
    sim.env.run(&["migrate"]).ok();
    let store = sim.store().await;
    let daemon = Daemon::start(&sim, "undo", &[]);
    until(&store, SCHEDULED_RUNS, 1, "the cycle", &daemon).await;
    let run = runs::list(store.db(), None, 1).await.expect("runs")[0].id;

    let (code, body) = http(&socket, "POST", &format!("/runs/{run}/undo?dry_run=true")).await;
    assert_eq!(code, 200, "{body}");
    let plan: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(plan["dry_run"], true);
    assert!(plan["run"].is_null(), "a dry run records nothing");
    assert!(
        !plan["plan"]["reverts"]
            .as_array()
            .expect("reverts")
            .is_empty()
    );

    let (code, body) = http(&socket, "POST", &format!("/runs/{run}/undo")).await;
    assert_eq!(code, 200, "{body}");
    let done: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(done["counts"]["pupils"]["removed"], 20);
    let (code, body) = http(&socket, "POST", "/runs/987654/undo").await;
    assert_eq!(code, 404, "{body}");
    // Undoing the same run again finds the records changed since (by the undo): refused.
    let (code, body) = http(&socket, "POST", &format!("/runs/{run}/undo")).await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(daemon.stop().await, 0);
}
