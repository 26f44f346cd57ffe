//! A busy store: another connection holds the write lock longer than the busy timeout while
//! schools sync. Every school still ends `ok` (tried again within the run), and every attempt,
//! also one that failed before its run record existed, leaves a run record saying why.

use std::path::Path;
use std::time::{Duration, Instant};

use connector_sim::{SchoolKind, World};
use sea_orm::sqlx::{Connection, Executor};

use crate::support::{Run, SimEnv, count};

fn world(schools: usize, pupils: usize) -> World {
    let mut w = World::new(77, rostersync::sync::run::today());
    for n in 0..schools {
        let id = format!("{:02}XB00", 10 + n);
        w.add_school(id.parse().expect("id"), SchoolKind::Primary, pupils);
    }
    w
}

/// A connection of its own that holds the store's write lock until released.
enum Holder {
    Sqlite(sea_orm::sqlx::SqliteConnection),
    Postgres(sea_orm::sqlx::PgConnection),
}

impl Holder {
    /// Take the lock every rostersync write needs: SQLite's write lock, or on PostgreSQL a
    /// lock on `sync_run` that keeps any run record from being written.
    async fn take(url: &str) -> Holder {
        if url.starts_with("sqlite:") {
            let mut c = sea_orm::sqlx::SqliteConnection::connect(url)
                .await
                .expect("a second connection to the SQLite store");
            c.execute("BEGIN IMMEDIATE").await.expect("take the lock");
            Holder::Sqlite(c)
        } else {
            let mut c = sea_orm::sqlx::PgConnection::connect(url)
                .await
                .expect("a second connection to PostgreSQL");
            c.execute("BEGIN").await.expect("begin");
            c.execute("LOCK TABLE sync_run IN EXCLUSIVE MODE")
                .await
                .expect("take the lock");
            Holder::Postgres(c)
        }
    }

    /// Take a lock the purge cannot pass: SQLite's write lock, or on PostgreSQL every table
    /// the purge reads (a purge with nothing to delete takes no row lock at all).
    async fn take_from_purge(url: &str) -> Holder {
        let mut holder = Holder::take(url).await;
        if let Holder::Postgres(c) = &mut holder {
            c.execute("LOCK TABLE person, roster_group IN ACCESS EXCLUSIVE MODE")
                .await
                .expect("take the lock");
        }
        holder
    }

    async fn release(self) {
        match self {
            Holder::Sqlite(mut c) => c.execute("ROLLBACK").await.map(drop),
            Holder::Postgres(mut c) => c.execute("ROLLBACK").await.map(drop),
        }
        .expect("release the lock");
    }
}

async fn wait_for_file(path: &Path, child: &mut std::process::Child) {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "rostersync ended before its first run"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "no pause");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `rostersync sync --format json` paused before its first run; the caller holds the lock.
fn start_sync(sim: &SimEnv, pause: &Path) -> std::process::Child {
    sim.env.spawn(
        &["--log-format", "json", "sync", "--format", "json"],
        &[
            (
                "ROSTERSYNC_TEST_PAUSE_BEFORE_RUN",
                pause.to_str().expect("path"),
            ),
            ("ROSTERSYNC__STORE__BUSY_TIMEOUT_MS", "200"),
            ("RUST_LOG", "info"),
        ],
    )
}

fn finished(child: std::process::Child) -> Run {
    Run::from(child.wait_with_output().expect("rostersync finishes"))
}

fn outcomes(out: &Run) -> Vec<(String, String)> {
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON report");
    report["schools"]
        .as_array()
        .expect("schools")
        .iter()
        .map(|s| {
            (
                s["school"].as_str().expect("school").to_owned(),
                s["outcome"].as_str().expect("outcome").to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_cannot_start_its_record_is_recorded_once_the_store_answers() {
    let sim = SimEnv::start(world(1, 30), "").await;
    sim.env.run(&["migrate"]).ok();
    let store = sim.store().await;
    let pause = sim.env.path("paused");
    let mut child = start_sync(&sim, &pause);
    wait_for_file(&pause, &mut child).await;
    let holder = Holder::take(&sim.env.store_url).await;
    std::fs::remove_file(&pause).expect("let the run go on");
    // Far longer than the busy timeout: the run's record cannot even be opened.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    holder.release().await;
    let out = finished(child);
    out.ok();
    assert_eq!(outcomes(&out), [("10XB00".to_owned(), "ok".to_owned())]);

    // The failed attempt has its record, with the cause and what happens next ...
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM sync_run WHERE outcome = 'failed' AND error_class = 'store_busy' \
             AND finished_at IS NOT NULL AND message LIKE '%store was busy%tries it again%'"
        )
        .await,
        1,
        "{}",
        out.all_output()
    );
    // ... and the attempt that followed it applied the school.
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM sync_run WHERE outcome = 'ok'").await,
        1
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM sync_run WHERE outcome IS NULL"
        )
        .await,
        0
    );
    // One WARN line carrying the store's own error, by its class.
    let warned: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| {
            l.contains("\"level\":\"WARN\"") && l.contains("\"error_class\":\"store_busy\"")
        })
        .collect();
    assert_eq!(warned.len(), 1, "{}", out.stderr);
    let cause = if sim.env.is_postgres() {
        "lock timeout"
    } else {
        "database is locked"
    };
    assert!(warned[0].contains(cause), "{}", warned[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_schools_ride_out_a_writer_that_holds_the_lock_too_long() {
    // SQLite only: its one write lock is what the schools queue for.
    let sim = SimEnv::start_on(world(16, 25), "", true).await;
    sim.env.run(&["migrate"]).ok();
    let store = sim.store().await;
    let pause = sim.env.path("paused");
    let mut child = start_sync(&sim, &pause);
    wait_for_file(&pause, &mut child).await;
    // Two holds of a second each, five times the busy timeout, while four schools at a
    // time want to write.
    for round in 0..2 {
        let holder = Holder::take(&sim.env.store_url).await;
        if round == 0 {
            std::fs::remove_file(&pause).expect("let the runs go on");
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        holder.release().await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let out = finished(child);
    out.ok();
    let got = outcomes(&out);
    assert_eq!(got.len(), 16);
    assert!(got.iter().all(|(_, o)| o == "ok"), "{got:?}");
    let busy = count(
        &store,
        "SELECT COUNT(*) FROM sync_run WHERE error_class = 'store_busy'",
    )
    .await;
    assert!(busy >= 1, "the lock was met: {}", out.stderr);
    // Every attempt has a finished record: the 16 that applied and each that was busy.
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM sync_run WHERE outcome IS NULL"
        )
        .await,
        0
    );
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM sync_run").await,
        16 + busy
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(DISTINCT school_id) FROM sync_run WHERE outcome = 'ok'"
        )
        .await,
        16
    );
}

/// The store opened in this process with a busy timeout of 200 ms, and the settings that say so.
async fn impatient_store(
    sim: &SimEnv,
) -> (rostersync::store::Store, rostersync::settings::Settings) {
    let mut settings = sim.env.settings();
    settings.store.busy_timeout_ms = 200;
    let store =
        rostersync::store::Store::open(&settings.store, rostersync::store::OpenMode::Create)
            .await
            .expect("store opens");
    store.migrate().await.expect("store migrates");
    (store, settings)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_purge_that_ends_a_cycle_waits_out_a_lock_held_past_the_busy_timeout() {
    // Every school of a cycle is applied before the purge; a writer that holds the lock at
    // that moment once failed the whole `sync`.
    let sim = SimEnv::start(world(1, 10), "").await;
    let (store, settings) = impatient_store(&sim).await;
    let holder = Holder::take_from_purge(&sim.env.store_url).await;
    let purge = tokio::spawn(async move {
        rostersync::sync::cycle::purge(&store, &settings)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    });
    // Five times the busy timeout: the purge is still waiting, not failed.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!purge.is_finished(), "{:?}", purge.await);
    holder.release().await;
    purge
        .await
        .expect("the purge's task")
        .expect("the purge ran once the store was free");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_that_waits_part_way_counts_what_it_purged_before_it_waited() {
    // PostgreSQL locks rows: a lock on the last tombstone lets the purge commit its first
    // chunk and stops its second, so the purge waits part-way. SQLite's lock is the whole
    // file: a purge there waits before a chunk, as the test above shows.
    let sim = SimEnv::start(world(1, 600), "").await;
    if !sim.env.is_postgres() {
        return;
    }
    let (store, settings) = impatient_store(&sim).await;
    sim.sync(&store, false).await;
    let persons = count(&store, "SELECT COUNT(*) FROM person").await;
    assert!(persons > 500, "more than one chunk of persons: {persons}");
    let long_ago = "2020-04-01T00:00:00Z".parse().expect("a moment");
    let sql = "UPDATE person SET removed_at = {at}, purge_after = {at}";
    crate::support::set_moment(&store, sql, long_ago).await;
    let mut holder = sea_orm::sqlx::PgConnection::connect(&sim.env.store_url)
        .await
        .expect("a second connection to PostgreSQL");
    holder.execute("BEGIN").await.expect("begin");
    holder
        .execute("SELECT id FROM person WHERE id = (SELECT MAX(id) FROM person) FOR UPDATE")
        .await
        .expect("lock the last tombstone");
    let purging = store.clone();
    let purge = tokio::spawn(async move {
        rostersync::sync::cycle::purge(&purging, &settings)
            .await
            .map_err(|e| e.to_string())
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!purge.is_finished(), "{:?}", purge.await);
    let left = count(&store, "SELECT COUNT(*) FROM person").await;
    assert!(left > 0 && left < persons, "the first chunk went: {left}");
    holder.execute("ROLLBACK").await.expect("release the lock");
    let (purged, _) = purge
        .await
        .expect("the purge's task")
        .expect("the purge ran once the row was free");
    assert_eq!(purged.persons as i64, persons, "every chunk is counted");
    assert_eq!(count(&store, "SELECT COUNT(*) FROM person").await, 0);
}
