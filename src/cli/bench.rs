//! `rostersync bench`: the sync engine measured end to end, the way it runs in production:
//! real HTTP to the simulated LAS, the real store, the full cycle. Two parts:
//!
//! 1. One large school (default 1,000 pupils) with the simulator in this process: the initial
//!    load, an unchanged re-sync (the LAS sends everything again, nothing differs; the roster
//!    digest lets the run skip the load and diff), the same without the digest (the full load
//!    and diff finding nothing) and a re-sync with 2% of the pupils changed. Engine time
//!    excludes the HTTP fetch and parse.
//! 2. Many schools (default 500 × 300 pupils) served by a separate `rostersync simulate`
//!    process, so the simulator's own memory does not count: wall time and this process's
//!    peak memory at checkpoints, which must stay flat as the number of schools grows; then
//!    the OneRoster API's `dateLastModified` delta over all of them (part 3 below).
//! 3. The OneRoster API: pages of 1,000 from one school of 5,000 pupils, and the delta an app
//!    asks for after a night in which 2% of the schools changed; p50/p99 per page.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use clap::Args;
use connector_sim::{SchoolKind, SimServer, World};
use serde::Serialize;

use super::bench_api::{self, Latency, Probe};
use super::simulate::{sim_school_id, write_config};
use super::sync::Progress;
use super::{Failure, OutputFormat, table};
use crate::settings::Settings;
use crate::store::{OpenMode, Store};
use crate::sync::cycle::{self, CycleOptions, CycleReport};
use crate::sync::report::Outcome;
use crate::sync::run::{RunOptions, SchoolReport};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Pupils of the large school in part 1.
    #[arg(long, default_value_t = 1000)]
    pupils: usize,
    /// Re-syncs measured per scenario in part 1 (the median is reported).
    #[arg(long, default_value_t = 15)]
    repeat: usize,
    /// Schools in part 2 (0 skips it).
    #[arg(long, default_value_t = 500)]
    schools: usize,
    /// Pupils per school in part 2.
    #[arg(long, default_value_t = 300)]
    school_pupils: usize,
    /// Days in part 2: day 1 is the initial load; each later day the simulator moves one
    /// day on (joiners, leavers, moves, name fixes; one school in a hundred misbehaves) and
    /// the whole cycle runs again: the nightly steady state.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=365))]
    days: u32,
    /// Pupils of the school whose API pages are timed in part 3 (0 skips that part).
    #[arg(long, default_value_t = 5000)]
    api_pupils: usize,
    /// Times each API collection is paged through to the end in part 3. The delta over part 2's
    /// schools since the last 2% of day 1 is paged once: at thousands of schools it is hundreds
    /// of pages, which an app asks for once a night.
    #[arg(long, default_value_t = 30)]
    api_rounds: usize,
    /// Keep the stores in DIR instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Part 2 against PostgreSQL: a server URL (postgres://user@host/db) whose user may
    /// create databases. The bench makes a database of its own there and drops it at the
    /// end; `sync.concurrency` schools apply at once. Default: SQLite in the bench's directory.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

/// Milliseconds, as the report prints them.
fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 10_000.0).round() / 10.0
}

#[derive(Debug, Serialize)]
struct Scenario {
    name: &'static str,
    runs: usize,
    /// Median fetch (HTTP + streaming parse) time.
    fetch_ms: f64,
    /// Median engine time: health, load, merge, diff, brakes, apply, commit.
    engine_ms: f64,
    engine_min_ms: f64,
    engine_max_ms: f64,
    /// Median of fetch + parse + engine: what the school's run took end to end.
    total_ms: f64,
    changes: usize,
    /// The target applies to the engine's median.
    target_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Checkpoint {
    schools: usize,
    peak_rss_mib: f64,
}

#[derive(Debug, Serialize)]
struct ManySchools {
    schools: usize,
    pupils_per_school: usize,
    seconds: f64,
    schools_per_second: f64,
    outcomes_ok: usize,
    checkpoints: Vec<Checkpoint>,
    target_seconds: f64,
    /// Per kind of write transaction: how many, and the longest wait for and hold of the
    /// write lock (SQLite has one writer: the longest hold is what every other write waits).
    store_writes:
        std::collections::BTreeMap<crate::store::WriteKind, crate::store::write::WriteCost>,
    /// The SQLite settings in force on the writer connection.
    store_settings: Vec<(String, String)>,
    /// The OneRoster delta an app asks for after the cycle: what the last 2% of the schools
    /// changed, and a poll that finds nothing new.
    api_delta: Vec<Latency>,
    /// Each day's cycle: day 1 the initial load, then the nights.
    days: Vec<Day>,
    /// The store on disk after the last day (SQLite: the file and its WAL), per live pupil.
    store_bytes_per_pupil: f64,
}

/// One day's full cycle in part 2.
#[derive(Debug, Serialize)]
struct Day {
    day: u32,
    seconds: f64,
    schools: usize,
    ok: usize,
    unchanged: usize,
    frozen: usize,
    failed: usize,
    /// Pupils the sources sent.
    pupils: usize,
    schools_per_second: f64,
    pupils_per_second: f64,
    /// Peak RSS of this (the syncing) process during the day's cycle.
    peak_rss_mib: f64,
    /// Records created, updated and removed, and memberships added and removed.
    changed: usize,
    /// The store on disk after the day, and its journal rows.
    store_bytes: u64,
    journal_rows: i64,
    /// Seconds the runs held the write lock during the day: on SQLite the one writer's busy
    /// time, so a day close to it waits on the writer, a day far above it on the rest.
    write_lock_held_seconds: f64,
    /// A school's run, the median: asking its sources (with the wait for a connection's
    /// free slot), and everything else (judging, loading, diffing, waiting for and holding
    /// the write lock).
    fetch_ms_p50: f64,
    engine_ms_p50: f64,
}

#[derive(Debug, Serialize)]
struct BenchReport {
    store: &'static str,
    concurrency: usize,
    large_school: Vec<Scenario>,
    many_schools: Option<ManySchools>,
    api_school: Vec<Latency>,
}

fn scenario(
    name: &'static str,
    reports: &[SchoolReport],
    target_ms: Option<f64>,
) -> Result<Scenario, Failure> {
    scenario_of(name, reports, |r| r.engine_time, target_ms)
}

/// A scenario measured by `time` of each report (the engine time, or a part of it).
fn scenario_of(
    name: &'static str,
    reports: &[SchoolReport],
    time: impl Fn(&SchoolReport) -> Duration,
    target_ms: Option<f64>,
) -> Result<Scenario, Failure> {
    if let Some(bad) = reports
        .iter()
        .find(|r| !matches!(r.outcome, Outcome::Ok | Outcome::Held))
    {
        return Err(Failure::failed(anyhow!(
            "benchmark run of school {} ended {}: {}",
            bad.school,
            bad.outcome.as_str(),
            bad.message.as_deref().unwrap_or("-")
        )));
    }
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    let engine: Vec<Duration> = reports.iter().map(&time).collect();
    Ok(Scenario {
        name,
        runs: reports.len(),
        fetch_ms: ms(median(reports.iter().map(|r| r.fetch_time).collect())),
        engine_ms: ms(median(engine.clone())),
        engine_min_ms: ms(engine.iter().copied().min().unwrap_or_default()),
        engine_max_ms: ms(engine.iter().copied().max().unwrap_or_default()),
        total_ms: ms(median(
            reports
                .iter()
                .map(|r| r.fetch_time + r.engine_time)
                .collect(),
        )),
        changes: reports
            .iter()
            .map(|r| r.counts.created() + r.counts.updated() + r.counts.removed())
            .sum::<usize>()
            / reports.len().max(1),
        target_ms,
    })
}

async fn one_cycle(store: &Store, settings: &Settings) -> Result<CycleReport, Failure> {
    cycle::run(
        store,
        settings,
        &CycleOptions {
            only: None,
            run: RunOptions {
                trigger: "bench".into(),
                dry_run: false,
                allow_removals: true,
                today: crate::sync::run::today(),
            },
        },
        |_, _, _| {},
    )
    .await
    .map_err(super::sync::cycle_failure)
}

async fn open_store(settings: &Settings) -> Result<Store, Failure> {
    let store = Store::open(&settings.store, OpenMode::Create)
        .await
        .map_err(Failure::store)?;
    store.migrate().await.map_err(Failure::store)?;
    Ok(store)
}

async fn large_school(args: &BenchArgs, dir: &Path) -> Result<Vec<Scenario>, Failure> {
    let school = sim_school_id(SchoolKind::Primary, 0);
    let mut world = World::new(4242, crate::sync::run::today());
    world.add_school(school.clone(), SchoolKind::Primary, args.pupils);
    // Staff in proportion: 80 for 1,000 pupils (the LAS's and the broker's together).
    if let Some(s) = world.schools.get_mut(&school) {
        let want = args.pupils * 8 / 100;
        let have = s.school.teachers.len() + 2;
        let mut rng = fastrand::Rng::with_seed(7);
        s.school.add_teachers(&mut rng, want.saturating_sub(have));
    }
    let server = SimServer::start(world, 0)
        .await
        .context("cannot start the simulated LAS")
        .map_err(Failure::failed)?;
    let config = write_config(dir, &server).map_err(Failure::failed)?;
    let settings = Settings::load(Some(&config)).map_err(|e| Failure::failed(e.into()))?;
    let store = open_store(&settings).await?;

    let initial = one_cycle(&store, &settings).await?;
    let mut unchanged = Vec::new();
    let mut full_diff = Vec::new();
    let mut changed = Vec::new();
    for round in 0..args.repeat {
        // The LAS sends everything again (a new change date defeats geenwijzigingen).
        server.with_world(|w| {
            if let Some(s) = w.schools.get_mut(&school) {
                s.changed_at = chrono::Utc::now();
            }
        });
        unchanged.extend(one_cycle(&store, &settings).await?.schools);
        // The same again with the digest forgotten: the full load and diff, finding nothing.
        server.with_world(|w| {
            if let Some(s) = w.schools.get_mut(&school) {
                s.changed_at = chrono::Utc::now();
            }
        });
        crate::store::schools::set_digest(store.writer(), &school.to_string(), None)
            .await
            .map_err(|e| Failure::failed(store.db_error(e).into()))?;
        full_diff.extend(one_cycle(&store, &settings).await?.schools);
        // 2% of the pupils change: half move group, half get a corrected name.
        server.with_world(|w| {
            let Some(s) = w.schools.get_mut(&school) else {
                return;
            };
            let groups: Vec<String> = s
                .school
                .groups
                .iter()
                .filter(|g| !g.composed)
                .map(|g| g.key.clone())
                .collect();
            // And one teacher moves to another group: the grants change too.
            let t = round % s.school.teachers.len();
            if let Some(link) = s.school.teachers[t].groups.first_mut() {
                link.0 = groups[(round * 7 + 3) % groups.len()].clone();
            }
            let n = s.school.pupils.len();
            let count = (n / 50).max(2);
            for i in 0..count {
                let at = (round * 97 + i * 31) % n;
                let p = &mut s.school.pupils[at];
                if i % 2 == 0 {
                    p.group = groups[(round + i) % groups.len()].clone();
                } else {
                    p.person.given = format!("{}{}", p.person.given, i % 10);
                }
            }
            s.changed_at = chrono::Utc::now();
        });
        changed.extend(one_cycle(&store, &settings).await?.schools);
    }
    Ok(vec![
        scenario("initial load", &initial.schools, None)?,
        // The target is on the full path: the digest shortcut below it is only a bonus.
        scenario("unchanged re-sync", &unchanged, None)?,
        scenario("unchanged, full load + diff", &full_diff, Some(30.0))?,
        scenario("2% changed re-sync", &changed, None)?,
        Scenario {
            name: "  of which grants",
            changes: changed
                .iter()
                .map(|r| {
                    let g = r.counts.grants;
                    g.granted + g.restored + g.pending + g.revoked
                })
                .sum::<usize>()
                / changed.len().max(1),
            ..scenario_of("grants", &changed, |r| r.rights_time, Some(10.0))?
        },
    ])
}

/// This process's peak resident memory (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| (kb / 1024.0 * 10.0).round() / 10.0)
        .unwrap_or(0.0)
}

/// Start measuring the peak from here (Linux: writing 5 to clear_refs resets VmHWM). Without
/// it the peak would include everything before, and memory would look flat by construction.
fn reset_peak_rss() -> Result<(), Failure> {
    std::fs::write("/proc/self/clear_refs", "5")
        .context("cannot reset the peak memory counter (/proc/self/clear_refs)")
        .map_err(Failure::failed)
}

/// A `rostersync simulate` child, stopped when dropped.
struct Simulator(Child);

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A PostgreSQL database of the bench's own on the server `--store` names.
struct ScratchDatabase {
    server: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    async fn create(server: &str) -> Result<ScratchDatabase, Failure> {
        use sea_orm::ConnectionTrait;
        if !(server.starts_with("postgres://") || server.starts_with("postgresql://")) {
            return Err(Failure::usage(anyhow!(
                "--store takes a PostgreSQL server URL (postgres://user@host/db); SQLite is \
                 the default"
            )));
        }
        let name = format!("rostersync_bench_{}", std::process::id());
        let (base, _) = server.rsplit_once('/').ok_or_else(|| {
            Failure::usage(anyhow!(
                "--store: the URL names no database (postgres://user@host/db)"
            ))
        })?;
        let admin = sea_orm::Database::connect(server)
            .await
            .map_err(|e| Failure::failed(anyhow!("--store: cannot connect: {e}")))?;
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .map_err(|e| Failure::failed(anyhow!("--store: cannot create database {name}: {e}")))?;
        Ok(ScratchDatabase {
            server: server.to_owned(),
            url: format!("{base}/{name}"),
            name,
        })
    }

    async fn drop_database(self) -> Result<(), Failure> {
        use sea_orm::ConnectionTrait;
        let admin = sea_orm::Database::connect(&self.server)
            .await
            .map_err(|e| Failure::failed(anyhow!("--store: cannot connect: {e}")))?;
        admin
            .execute_unprepared(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .map_err(|e| {
                Failure::failed(anyhow!("--store: cannot drop database {}: {e}", self.name))
            })?;
        Ok(())
    }
}

/// Part 2's simulator, started in its own process, and the configuration it wrote.
async fn start_simulator(
    args: &BenchArgs,
    sim_dir: &Path,
) -> Result<(Simulator, Settings), Failure> {
    let exe = std::env::current_exe()
        .context("cannot find the rostersync binary to start the simulator")
        .map_err(Failure::failed)?;
    let mut child = Simulator(
        Command::new(exe)
            .args([
                "--log-format",
                "json",
                "simulate",
                "--primary",
                &args.schools.to_string(),
                "--secondary",
                "0",
                "--pupils",
                &args.school_pupils.to_string(),
                "--seed",
                "5",
                "--daily-faults",
                "--write-config",
            ])
            .arg(sim_dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start `rostersync simulate`")
            .map_err(Failure::failed)?,
    );
    let config = sim_dir.join("rostersync.toml");
    let started = Instant::now();
    while !config.exists() {
        if let Ok(Some(status)) = child.0.try_wait() {
            return Err(Failure::failed(anyhow!(
                "the simulator stopped before it was ready ({status})"
            )));
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err(Failure::failed(anyhow!(
                "the simulator did not start within 5 minutes"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The file appears before it is complete; a parse error means: not yet.
    let settings = loop {
        match Settings::load(Some(&config)) {
            Ok(s) if s.school.len() == args.schools => break s,
            _ if started.elapsed() > Duration::from_secs(300) => {
                return Err(Failure::failed(anyhow!(
                    "the simulator's configuration at {} is incomplete",
                    config.display()
                )));
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    Ok((child, settings))
}

/// Part 2: many schools, day by day. Against PostgreSQL in a database of its own, dropped
/// afterwards whether the measuring went well or not.
async fn many_schools(
    args: &BenchArgs,
    dir: &Path,
    progress: &Progress,
) -> Result<ManySchools, Failure> {
    let sim_dir = dir.join("many");
    let (mut child, mut settings) = start_simulator(args, &sim_dir).await?;
    let Some(url) = &args.store else {
        return measure_many(args, dir, progress, &settings, &mut child).await;
    };
    let db = ScratchDatabase::create(url).await?;
    settings.store.url = db.url.clone();
    let measured = measure_many(args, dir, progress, &settings, &mut child).await;
    let dropped = db.drop_database().await;
    let measured = measured?;
    dropped.map(|()| measured)
}

/// Part 2 in the store `settings` name: day 1 the initial load, then each night.
async fn measure_many(
    args: &BenchArgs,
    dir: &Path,
    progress: &Progress,
    settings: &Settings,
    child: &mut Simulator,
) -> Result<ManySchools, Failure> {
    let sim_dir = dir.join("many");
    let sim_dir = sim_dir.as_path();
    let store = open_store(settings).await?;
    reset_peak_rss()?;
    let marks: Vec<usize> = [args.schools / 5, args.schools / 2, args.schools]
        .into_iter()
        .filter(|m| *m > 0)
        .collect();
    let mut checkpoints = Vec::new();
    // The API delta is since the moment the last 2% of the schools were still to come.
    let delta_from = args.schools - (args.schools / 50).max(1);
    let mut since = None;
    let started = Instant::now();
    let report = cycle::run(&store, settings, &bench_cycle(), |done, total, r| {
        progress.school(done, total, r);
        if done == delta_from {
            since = Some(chrono::Utc::now());
        }
        if marks.contains(&done) {
            checkpoints.push(Checkpoint {
                schools: done,
                peak_rss_mib: peak_rss_mib(),
            });
        }
    })
    .await
    .map_err(super::sync::cycle_failure)?;
    progress.done();
    let seconds = started.elapsed().as_secs_f64();
    let mut days = vec![day_of(1, &report, seconds, &store, Duration::ZERO).await?];
    for day in 2..=args.days {
        child.pass_day(sim_dir, day - 1).await?;
        statistics_of_a_day_later(&store).await?;
        reset_peak_rss()?;
        let held_before = apply_held(&store);
        let started = Instant::now();
        let report = cycle::run(&store, settings, &bench_cycle(), |done, total, r| {
            progress.school(done, total, r)
        })
        .await
        .map_err(super::sync::cycle_failure)?;
        progress.done();
        let seconds = started.elapsed().as_secs_f64();
        days.push(day_of(day, &report, seconds, &store, held_before).await?);
    }
    let store_bytes_per_pupil = bytes_per_pupil(&store).await?;
    let store_settings = sqlite_pragmas(&store).await;
    // The delta an app asks since the moment the last 2% of the schools were still to come
    // on day 1: their whole initial load, and every later day's changes. Measured after the
    // days, so the API server in this process does not count in the days' memory.
    let api_delta = api_delta(args, settings, store.clone(), dir, since).await?;
    let writes = store.write_stats().snapshot();
    // The store's connections close before its database can be dropped.
    drop(store);
    Ok(ManySchools {
        schools: report.schools.len(),
        pupils_per_school: args.school_pupils,
        seconds: (seconds * 100.0).round() / 100.0,
        schools_per_second: (report.schools.len() as f64 / seconds * 10.0).round() / 10.0,
        outcomes_ok: report
            .schools
            .iter()
            .filter(|r| r.outcome == Outcome::Ok)
            .count(),
        checkpoints,
        target_seconds: 60.0,
        store_writes: writes,
        store_settings,
        api_delta,
        days,
        store_bytes_per_pupil,
    })
}

/// A day is a night later, and on PostgreSQL autovacuum has long analyzed the tables the day
/// before filled. Without this, day 2 ran with whatever statistics autovacuum had reached in
/// the seconds since day 1: none after a fast first load (day 2 took 20 s instead of 11), some
/// after a slow one, so the figure measured autovacuum's timing and not the night. SQLite
/// keeps no statistics of its own unless asked, and rostersync does not ask.
async fn statistics_of_a_day_later(store: &Store) -> Result<(), Failure> {
    use sea_orm::ConnectionTrait;
    if store.backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    store
        .writer()
        .execute_unprepared("ANALYZE")
        .await
        .map(drop)
        .map_err(|e| Failure::failed(store.db_error(e).into()))
}

/// Part 2 day by day: the initial load, then the nights.
fn days_table(days: &[Day]) -> String {
    let mut t = super::table::Table::new(&[
        "DAY",
        "SECONDS",
        "SCHOOLS/S",
        "PUPILS/S",
        "OK",
        "UNCHANGED",
        "FROZEN",
        "FAILED",
        "CHANGED",
        "WRITE LOCK",
        "PEAK RSS",
        "STORE",
        "JOURNAL",
    ]);
    for d in days {
        t.row(vec![
            d.day.to_string(),
            format!("{:.1}", d.seconds),
            format!("{:.1}", d.schools_per_second),
            format!("{:.0}", d.pupils_per_second),
            d.ok.to_string(),
            d.unchanged.to_string(),
            d.frozen.to_string(),
            d.failed.to_string(),
            d.changed.to_string(),
            format!("{:.1} s", d.write_lock_held_seconds),
            format!("{:.1} MiB", d.peak_rss_mib),
            format!("{:.1} MiB", d.store_bytes as f64 / 1_048_576.0),
            d.journal_rows.to_string(),
        ]);
    }
    format!("\n{}", t.render())
}

/// How the bench asks for a cycle.
fn bench_cycle() -> CycleOptions {
    CycleOptions {
        only: None,
        run: RunOptions {
            trigger: "bench".into(),
            dry_run: false,
            allow_removals: false,
            today: crate::sync::run::today(),
        },
    }
}

impl Simulator {
    /// Ask the simulator for the next day (SIGUSR1) and wait until it says `passed` days
    /// have passed.
    async fn pass_day(&mut self, dir: &Path, passed: u32) -> Result<(), Failure> {
        let pid = rustix::process::Pid::from_raw(self.0.id() as i32)
            .ok_or_else(|| Failure::failed(anyhow!("the simulator has no process id")))?;
        rustix::process::kill_process(pid, rustix::process::Signal::USR1)
            .context("cannot signal the simulator")
            .map_err(Failure::failed)?;
        let started = Instant::now();
        let file = dir.join("day");
        loop {
            let said = std::fs::read_to_string(&file).unwrap_or_default();
            if said.trim() == passed.to_string() {
                return Ok(());
            }
            if let Ok(Some(status)) = self.0.try_wait() {
                return Err(Failure::failed(anyhow!("the simulator stopped ({status})")));
            }
            if started.elapsed() > Duration::from_secs(300) {
                return Err(Failure::failed(anyhow!(
                    "the simulator did not pass a day within 5 minutes"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A day's figures from its cycle report.
async fn day_of(
    day: u32,
    report: &cycle::CycleReport,
    seconds: f64,
    store: &crate::store::Store,
    held_before: Duration,
) -> Result<Day, Failure> {
    let by = |o: Outcome| report.schools.iter().filter(|r| r.outcome == o).count();
    let pupils: usize = report
        .schools
        .iter()
        .map(|r| r.counts.received.pupils)
        .sum();
    let changed: usize = report.schools.iter().map(|r| r.counts.changed()).sum();
    let per_second = |n: usize| ((n as f64 / seconds.max(1e-9)) * 10.0).round() / 10.0;
    Ok(Day {
        day,
        seconds: (seconds * 100.0).round() / 100.0,
        schools: report.schools.len(),
        ok: by(Outcome::Ok),
        unchanged: by(Outcome::Unchanged),
        frozen: by(Outcome::Frozen),
        failed: by(Outcome::Failed),
        pupils,
        schools_per_second: per_second(report.schools.len()),
        pupils_per_second: per_second(pupils),
        peak_rss_mib: peak_rss_mib(),
        changed,
        store_bytes: store_bytes(store).await?,
        journal_rows: count_rows(store, "SELECT COUNT(*) FROM change_entry").await?,
        write_lock_held_seconds: ((apply_held(store) - held_before).as_secs_f64() * 10.0).round()
            / 10.0,
        fetch_ms_p50: median_ms(report.schools.iter().map(|r| r.fetch_time)),
        engine_ms_p50: median_ms(report.schools.iter().map(|r| r.engine_time)),
    })
}

fn median_ms(times: impl Iterator<Item = Duration>) -> f64 {
    let mut ms: Vec<f64> = times.map(|t| t.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    ms.get(ms.len() / 2)
        .map_or(0.0, |m| (m * 10.0).round() / 10.0)
}

/// How long the runs held the write lock in all since the store was opened.
fn apply_held(store: &crate::store::Store) -> Duration {
    let by_kind = store.write_stats().snapshot();
    by_kind
        .get(&crate::store::WriteKind::Apply)
        .map(|c| c.total_hold)
        .unwrap_or_default()
}

/// The store's size on disk: SQLite's file and WAL; PostgreSQL's database.
async fn store_bytes(store: &crate::store::Store) -> Result<u64, Failure> {
    if store.backend() == sea_orm::DbBackend::Postgres {
        let n = count_rows(store, "SELECT pg_database_size(current_database())").await?;
        return Ok(u64::try_from(n).unwrap_or(0));
    }
    let file = |suffix: &str| {
        std::fs::metadata(format!("{}{suffix}", store.shown()))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    Ok(file("") + file("-wal"))
}

/// Store bytes per live pupil.
async fn bytes_per_pupil(store: &crate::store::Store) -> Result<f64, Failure> {
    let pupils = count_rows(
        store,
        "SELECT COUNT(*) FROM person WHERE kind = 'pupil' AND removed_at IS NULL",
    )
    .await?;
    let bytes = store_bytes(store).await? as f64;
    Ok((bytes / pupils.max(1) as f64).round())
}

async fn count_rows(store: &crate::store::Store, sql: &str) -> Result<i64, Failure> {
    use sea_orm::ConnectionTrait;
    let row = store
        .db()
        .query_one_raw(sea_orm::Statement::from_string(store.backend(), sql))
        .await
        .map_err(|e| Failure::failed(store.db_error(e).into()))?;
    row.and_then(|r| r.try_get_by_index::<i64>(0).ok())
        .ok_or_else(|| Failure::failed(anyhow!("`{sql}` gave no number")))
}

/// Time the deltas an app asks for after the night: since `since` (the last 2% of schools
/// were applied after it), and since now (nothing new: the frequent poll).
async fn api_delta(
    args: &BenchArgs,
    settings: &Settings,
    store: Store,
    dir: &Path,
    since: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Vec<Latency>, Failure> {
    let Some(since) = since else {
        return Ok(Vec::new());
    };
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let delta = |what: &str, t: &str| format!("/{what}?limit=1000&filter=dateLastModified>'{t}'");
    let (t, now) = (at(since), at(chrono::Utc::now()));
    let rounds = args.api_rounds.max(1);
    // Once: its pages are already many samples, and each page costs in proportion to the whole
    // delta (offset paging), so 30 rounds over 8,000 schools would run for hours.
    let once = 1;
    let probes = [
        Probe {
            name: "delta users, 2% of schools",
            path: delta("users", &t),
            rounds: once,
            pages: None,
        },
        Probe {
            name: "delta classes",
            path: delta("classes", &t),
            rounds: once,
            pages: None,
        },
        Probe {
            name: "delta enrollments",
            path: delta("enrollments", &t),
            rounds: once,
            pages: None,
        },
        Probe {
            name: "delta users, nothing new",
            path: delta("users", &now),
            rounds: rounds * 3,
            pages: None,
        },
        Probe {
            name: "delta enrollments, nothing new",
            path: delta("enrollments", &now),
            rounds: rounds * 3,
            pages: None,
        },
        // An app's first pull of everything, followed by its next links: the first pages
        // stand for the rest (each reads from where the last ended).
        Probe {
            name: "full pull users, 20 pages",
            path: "/users?limit=1000".into(),
            rounds: once,
            pages: Some(20),
        },
        Probe {
            name: "full pull enrollments, 20 pages",
            path: "/enrollments?limit=1000".into(),
            rounds: once,
            pages: Some(20),
        },
    ];
    bench_api::measure(settings, store, dir, &probes).await
}

/// One school of `api_pupils` pupils, synced once, then paged through by an app.
async fn api_school(args: &BenchArgs, dir: &Path) -> Result<Vec<Latency>, Failure> {
    if args.api_pupils == 0 {
        return Ok(Vec::new());
    }
    let school = sim_school_id(SchoolKind::Primary, 0);
    let mut world = World::new(77, crate::sync::run::today());
    world.add_school(school.clone(), SchoolKind::Primary, args.api_pupils);
    if let Some(s) = world.schools.get_mut(&school) {
        let want = args.api_pupils * 8 / 100;
        let have = s.school.teachers.len() + 2;
        let mut rng = fastrand::Rng::with_seed(7);
        s.school.add_teachers(&mut rng, want.saturating_sub(have));
    }
    let server = SimServer::start(world, 0)
        .await
        .context("cannot start the simulated LAS")
        .map_err(Failure::failed)?;
    let config = write_config(dir, &server).map_err(Failure::failed)?;
    let settings = Settings::load(Some(&config)).map_err(|e| Failure::failed(e.into()))?;
    let store = open_store(&settings).await?;
    let first = one_cycle(&store, &settings).await?;
    scenario("api school load", &first.schools, None)?;
    let rounds = args.api_rounds.max(1);
    let page = |what: &str| format!("/{what}?limit=1000");
    let probes = [
        Probe {
            name: "users, pages of 1,000",
            path: page("users"),
            rounds,
            pages: None,
        },
        Probe {
            name: "students by familyName",
            path: format!("{}&sort=familyName", page("students")),
            rounds,
            pages: None,
        },
        Probe {
            name: "classes",
            path: page("classes"),
            rounds,
            pages: None,
        },
        Probe {
            name: "enrollments, pages of 1,000",
            path: page("enrollments"),
            rounds,
            pages: None,
        },
    ];
    bench_api::measure(&settings, store, dir, &probes).await
}

fn latency_table(rows: &[Latency]) -> String {
    let mut t = table::Table::new(&["REQUEST", "PAGES", "RECORDS", "P50", "P99", "MAX", "TARGET"]);
    for l in rows {
        t.row(vec![
            l.name.into(),
            l.pages.to_string(),
            l.records.to_string(),
            format!("{:.1} ms", l.p50_ms),
            format!("{:.1} ms", l.p99_ms),
            format!("{:.1} ms", l.max_ms),
            format!(
                "p99 < {:.0} ms {}",
                l.target_ms,
                if l.p99_ms < l.target_ms {
                    "met"
                } else {
                    "MISSED"
                }
            ),
        ]);
    }
    t.render()
}

/// The PRAGMAs that decide how SQLite's writer behaves, as the writer connection has them.
async fn sqlite_pragmas(store: &Store) -> Vec<(String, String)> {
    use sea_orm::ConnectionTrait;
    if store.backend() != sea_orm::DbBackend::Sqlite {
        return Vec::new();
    }
    let mut out = Vec::new();
    for name in [
        "journal_mode",
        "synchronous",
        "busy_timeout",
        "wal_autocheckpoint",
        "cache_size",
    ] {
        let got = store
            .writer()
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Sqlite,
                format!("PRAGMA {name}"),
            ))
            .await;
        let value = match got {
            Ok(Some(row)) => row
                .try_get_by_index::<String>(0)
                .or_else(|_| row.try_get_by_index::<i64>(0).map(|n| n.to_string()))
                .unwrap_or_default(),
            _ => String::new(),
        };
        out.push((name.to_owned(), value));
    }
    out
}

pub async fn run(args: BenchArgs) -> Result<(), Failure> {
    let temp;
    let dir: PathBuf = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)
                .with_context(|| format!("cannot create {}", d.display()))
                .map_err(Failure::usage)?;
            d.clone()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("rostersync-bench-")
                .tempdir()
                .context("cannot create a temporary directory")
                .map_err(Failure::failed)?;
            temp.path().to_owned()
        }
    };
    let table_out = args.format == OutputFormat::Table;
    if table_out {
        println!(
            "Part 1: one school of {} pupils and {} staff, {} re-syncs per scenario (SQLite, {}).",
            args.pupils,
            args.pupils * 8 / 100,
            args.repeat,
            dir.display()
        );
    }
    let large = large_school(&args, &dir.join("large")).await?;
    if table_out {
        let mut t = table::Table::new(&[
            "SCENARIO",
            "RUNS",
            "CHANGES",
            "FETCH+PARSE",
            "ENGINE (MEDIAN)",
            "MIN",
            "MAX",
            "TOTAL",
            "TARGET",
        ]);
        for s in &large {
            t.row(vec![
                s.name.into(),
                s.runs.to_string(),
                s.changes.to_string(),
                format!("{:.1} ms", s.fetch_ms),
                format!("{:.1} ms", s.engine_ms),
                format!("{:.1} ms", s.engine_min_ms),
                format!("{:.1} ms", s.engine_max_ms),
                format!("{:.1} ms", s.total_ms),
                s.target_ms
                    .map(|t| {
                        format!(
                            "< {t:.0} ms {}",
                            if s.engine_ms < t { "met" } else { "MISSED" }
                        )
                    })
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
        print!("{}", t.render());
    }
    let many = if args.schools > 0 {
        if table_out {
            println!(
                "\nPart 2: {} schools of {} pupils through a separate simulator process.",
                args.schools, args.school_pupils
            );
        }
        let progress = Progress::new(args.format, "bench");
        Some(many_schools(&args, &dir, &progress).await?)
    } else {
        None
    };
    let concurrency = crate::settings::Settings::load(None)
        .map(|s| s.sync.concurrency)
        .unwrap_or(4);
    if let Some(m) = &many
        && table_out
    {
        println!(
            "{} schools ({} ok) in {:.1} s, {:.1} schools/s (target < {:.0} s: {}).",
            m.schools,
            m.outcomes_ok,
            m.seconds,
            m.schools_per_second,
            m.target_seconds,
            // Fast is no success when schools failed: the target needs every school ok.
            if m.seconds < m.target_seconds && m.outcomes_ok == m.schools {
                "met"
            } else {
                "MISSED"
            }
        );
        let marks: Vec<String> = m
            .checkpoints
            .iter()
            .map(|c| format!("{} MiB after {} schools", c.peak_rss_mib, c.schools))
            .collect();
        println!("Peak memory of this process: {}.", marks.join(", "));
        let writes: Vec<String> = m
            .store_writes
            .iter()
            .map(|(kind, c)| {
                format!(
                    "{} {}× (longest wait {:.1} ms, hold {:.1} ms; held {:.1} s in all)",
                    kind.as_str(),
                    c.transactions,
                    c.longest_wait.as_secs_f64() * 1000.0,
                    c.longest_hold.as_secs_f64() * 1000.0,
                    c.total_hold.as_secs_f64()
                )
            })
            .collect();
        println!("Write transactions: {}.", writes.join("; "));
        let pragmas: Vec<String> = m
            .store_settings
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !pragmas.is_empty() {
            println!("SQLite: {}.", pragmas.join(", "));
        }
        print!("{}", days_table(&m.days));
        println!(
            "Store after day {}: {:.0} bytes per live pupil ({}).",
            m.days.len(),
            m.store_bytes_per_pupil,
            if args.store.is_some() {
                "pg_database_size"
            } else {
                "file and WAL"
            }
        );
        if !m.api_delta.is_empty() {
            println!(
                "\nThe OneRoster API over these {} schools: the delta since the last 2% of day 1 (and later days), and a full pull's first pages:",
                m.schools
            );
            print!("{}", latency_table(&m.api_delta));
        }
    }
    if table_out && args.api_pupils > 0 {
        println!(
            "\nPart 3: the OneRoster API over one school of {} pupils, each collection paged to the end {} times (loopback HTTP).",
            args.api_pupils, args.api_rounds
        );
    }
    let api = api_school(&args, &dir.join("api")).await?;
    if table_out && !api.is_empty() {
        print!("{}", latency_table(&api));
    }
    if !table_out {
        super::print_json(&BenchReport {
            store: if args.store.is_some() {
                "postgres"
            } else {
                "sqlite"
            },
            concurrency,
            large_school: large,
            many_schools: many,
            api_school: api,
        })?;
    }
    Ok(())
}
