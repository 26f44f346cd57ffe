//! One school's run, the imperative shell around the pure core: fetch, judge, then in ONE
//! transaction load what is stored, merge, diff, brake, write the rows, the journal, the held
//! changes, the source's new baseline and the run record. A failure anywhere before the
//! commit leaves the school exactly as it was; the run record then says what happened.

mod apply;
mod ask;
pub mod decide;
pub mod prepare;
mod write;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use connector_api::{Connector, FetchOutcome, SchoolId, Snapshot};
use sea_orm::DbErr;
use secrecy::SecretString;
use serde::Serialize;

use crate::permissions::Rights;
use crate::store::{Store, runs};
use crate::sync::brakes::BrakeRules;
use crate::sync::health::{Baseline, HealthRules, Years};
use crate::sync::report::{Counts, Outcome};
use ask::Ask;
use decide::{Decided, Decision};
use write::RunCtx;

/// The source name of a LAS in `source_state`.
pub const LAS: &str = "las";
/// The source name of the identity broker in `source_state`.
pub const BROKER: &str = "broker";
/// The source name of the scheduling portal in `source_state`.
pub const PORTAL: &str = "portal";

/// The rules a run applies, from `[sync]`.
#[derive(Debug, Clone)]
pub struct Rules {
    pub health: HealthRules,
    pub brakes: BrakeRules,
    /// How long tombstones are kept before the purge.
    pub retention: chrono::Duration,
    /// How long a school's data is kept after it revoked the broker's sync permission.
    pub offboarding: chrono::Duration,
    /// How staff rights are derived.
    pub rights: Rights,
    /// When next year is asked for and goes live.
    pub calendar: crate::model::rollover::Calendar,
}

impl Rules {
    pub fn from_settings(settings: &crate::settings::Settings) -> Rules {
        let s = &settings.sync;
        Rules {
            rights: Rights::from_settings(&settings.rights),
            offboarding: chrono::Duration::days(i64::from(
                settings
                    .broker
                    .as_ref()
                    .map_or(30, |b| b.basispoort().offboarding_days),
            )),
            health: HealthRules {
                collapse_ratio: s.collapse_ratio,
                collapse_min_baseline: s.collapse_min_pupils,
            },
            brakes: BrakeRules {
                max_share: s.brake_max_share,
                max_count: s.brake_max_count,
            },
            retention: chrono::Duration::days(i64::from(s.retention_days)),
            calendar: settings.rollover.calendar(),
        }
    }
}

/// How this run was asked for.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `cli`, `schedule`, `manual`, `demo`, `bench`.
    pub trigger: String,
    /// Compute and record what would happen; write nothing to the roster.
    pub dry_run: bool,
    /// Release the brakes and the collapse check for this run (the operator checked).
    pub allow_removals: bool,
    /// The local date the run counts as today (which school year is live); `today()`
    /// except in tests that walk through a summer.
    pub today: chrono::NaiveDate,
}

/// One source of a school's roster.
pub struct Source {
    /// Its row in `source_state`: `las` or `broker`.
    pub name: &'static str,
    /// The connector to ask, or why there is none (a connection that is not configured or
    /// cannot be built).
    pub connector: Result<Arc<dyn Connector>, String>,
    /// The school's own credential at this source, or why it could not be read; `None`
    /// where rostersync's own identity is enough (the broker knows us by our certificate).
    pub credential: Option<Result<SecretString, String>>,
    /// The school's id at the source when it is not the BRIN (the broker's institution id).
    pub remote_id: Option<String>,
    /// The connection as an operator knows it: `the broker`, `the LAS connection 'esis'`.
    pub connection: String,
    /// Where the connection's client certificate is configured, when it has one.
    pub certificate: Option<String>,
}

/// A school and the sources to ask, the LAS first.
pub struct Target {
    pub id: SchoolId,
    pub sources: Vec<Source>,
    /// The fence of the lease this run holds (daemon workers); `None` for `rostersync sync`.
    pub fence: Option<i64>,
    /// Who froze the school's roster (`school freeze`): the run changes nothing.
    pub frozen_by: Option<String>,
}

/// How long before a credential expires a run starts to warn.
const CREDENTIAL_WARNING: chrono::Duration = chrono::Duration::days(30);

/// Why a run ended before it could decide: the store failed, or the run's lease was lost to
/// another worker (then it must not write, and the other run counts).
#[derive(Debug)]
pub enum RunError {
    Db(DbErr),
    LeaseLost,
}

impl From<DbErr> for RunError {
    fn from(e: DbErr) -> RunError {
        RunError::Db(e)
    }
}

/// What one school's run did, for the summary table, `--format json` and tests.
#[derive(Debug, Clone, Serialize)]
pub struct SchoolReport {
    pub school: String,
    pub run: Option<i64>,
    pub outcome: Outcome,
    pub dry_run: bool,
    pub counts: Counts,
    pub error_class: Option<String>,
    /// What happened and what to do, when there is something to say.
    pub message: Option<String>,
    /// The failure is transient: the daemon tries the school again later the same day.
    pub retry: bool,
    /// The run failed because the store was busy: worth trying again within seconds.
    #[serde(skip)]
    pub store_busy: bool,
    /// The source's connection itself is broken (our certificate refused, its certificate
    /// untrusted): the other schools on it should wait instead of failing one by one.
    #[serde(skip)]
    pub connection_problem: Option<ConnectionProblem>,
    #[serde(serialize_with = "millis")]
    pub fetch_time: Duration,
    /// Everything but the fetch: judging, loading, diffing and writing.
    #[serde(serialize_with = "millis")]
    pub engine_time: Duration,
    /// The part of `engine_time` spent deriving and storing the school's grants.
    #[serde(serialize_with = "millis")]
    pub rights_time: Duration,
    /// In the weeks before the switch: what asking the LAS for next year gave.
    #[serde(skip)]
    pub prepared: Option<prepare::Preparing>,
}

/// A problem of a whole source connection, found by one school's run.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionProblem {
    /// The connection, as in [`Source::connection`].
    pub connection: String,
    /// What is wrong and what to do, in one sentence.
    pub problem: String,
}

impl SchoolReport {
    /// The run's outcome needs a person, or it left identity conflicts only a person can
    /// resolve (`person relink`).
    pub fn needs_attention(&self) -> bool {
        self.outcome.needs_attention() || self.counts.identity_conflicts > 0
    }
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Today in the schools' own time zone (the school year turns on 1 August there).
pub fn today() -> chrono::NaiveDate {
    Utc::now()
        .with_timezone(&chrono_tz::Europe::Amsterdam)
        .date_naive()
}

/// Sync one school. Never fails: every failure ends up in the report and, where the store
/// can still be written, in the run record.
pub async fn sync_school(
    store: &Store,
    target: &Target,
    rules: &Rules,
    opts: &RunOptions,
) -> SchoolReport {
    let started = Instant::now();
    let school = target.id.to_string();
    let mut report = SchoolReport {
        school: school.clone(),
        run: None,
        outcome: Outcome::Failed,
        dry_run: opts.dry_run,
        counts: Counts::default(),
        error_class: None,
        message: None,
        retry: false,
        store_busy: false,
        connection_problem: None,
        fetch_time: Duration::ZERO,
        engine_time: Duration::ZERO,
        rights_time: Duration::ZERO,
        prepared: None,
    };
    let decided = match run(store, target, rules, opts, &mut report).await {
        Ok(d) => d,
        Err(e) => {
            report.store_busy = matches!(&e, RunError::Db(e) if crate::store::is_contention(e));
            let d = run_failed(store, &school, e);
            report.run = record_failure(store, &school, opts, report.run, &d).await;
            d
        }
    };
    // Next year is asked for only of a LAS that answered well today.
    if matches!(
        decided.outcome,
        Outcome::Ok | Outcome::Held | Outcome::Unchanged
    ) {
        let asked = Instant::now();
        report.prepared = prepare::next_year(store, target, rules, opts).await;
        // Asking is fetching: the engine's time stays the engine's.
        report.fetch_time += asked.elapsed();
    }
    report.outcome = decided.outcome;
    report.counts = decided.counts;
    report.error_class = decided.error_class;
    report.message = decided.message;
    report.retry = decided.retry;
    report.rights_time = decided.rights_time;
    report.connection_problem = decided.connection_problem;
    report.engine_time = started.elapsed().saturating_sub(report.fetch_time);
    log_summary(&report);
    report
}

/// What a run that ended in an error decided: nothing was applied. Contention (SQLite busy,
/// a PostgreSQL lock timeout or lost connection) is transient: the school is tried again.
fn run_failed(store: &Store, school: &str, e: RunError) -> Decided {
    match e {
        RunError::LeaseLost => Decided::new(Outcome::Failed).because(
            "lease_lost",
            format!(
                "school {school}: another instance took this school over (this one stopped \
                 answering for too long); nothing of this run was applied, the other run counts"
            ),
        ),
        RunError::Db(e) if crate::store::is_contention(&e) => {
            let error = store.db_error(e);
            tracing::warn!(school, error_class = "store_busy", error = %error, "A school's run met a busy store; nothing of it was applied, it is tried again.");
            let mut d = Decided::new(Outcome::Failed).because(
                "store_busy",
                format!(
                    "school {school}: the store was busy ({error}); nothing of this run was \
                     applied and rostersync tries it again. If this keeps happening, look for \
                     another program holding the store's write lock"
                ),
            );
            d.retry = true;
            d
        }
        RunError::Db(e) => {
            let error = store.db_error(e);
            tracing::warn!(school, error_class = "store", error = %error, "A school's run failed in the store; nothing of it was applied.");
            Decided::new(Outcome::Failed).because(
                "store",
                format!(
                    "the store failed during the run ({error}); nothing of this run was \
                     applied. Check the store, then run `rostersync sync --school {school}` again"
                ),
            )
        }
    }
}

/// How long a failed run keeps trying to write its own record while the store is busy.
const RECORD_PATIENCE: Duration = Duration::from_secs(60);

/// Write the record of a run that failed, so `runs`, `status` and the metrics hear of it even
/// when the failure came before the run record existed: retried while the store is busy,
/// for up to a minute. Returns the run's id when there is a record.
async fn record_failure(
    store: &Store,
    school: &str,
    opts: &RunOptions,
    run: Option<i64>,
    d: &Decided,
) -> Option<i64> {
    use backon::Retryable;
    let write = || async {
        let id = match run {
            Some(id) => id,
            None => runs::start(store.writer(), school, &opts.trigger, opts.dry_run).await?,
        };
        runs::finish(store.writer(), id, finish(d)).await?;
        Ok::<i64, DbErr>(id)
    };
    match write
        .retry(crate::store::busy_backoff(RECORD_PATIENCE))
        .when(crate::store::is_contention)
        .await
    {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::error!(school, error = %store.db_error(e), "Cannot record a failed run in the store; check the store.");
            run
        }
    }
}

fn finish(d: &Decided) -> runs::Finish<'_> {
    runs::Finish {
        outcome: d.outcome.as_str(),
        error_class: d.error_class.as_deref(),
        message: d.message.clone(),
        counts: serde_json::to_value(d.counts).unwrap_or_default(),
    }
}

/// The one INFO line per school run. Numbers and classes only: never a name or a key.
fn log_summary(r: &SchoolReport) {
    let c = &r.counts;
    tracing::info!(
        school = %r.school,
        run = r.run,
        outcome = r.outcome.as_str(),
        dry_run = r.dry_run,
        error_class = r.error_class.as_deref(),
        pupils_created = c.pupils.created,
        pupils_updated = c.pupils.updated,
        pupils_removed = c.pupils.removed,
        staff_created = c.staff.created,
        staff_updated = c.staff.updated,
        staff_removed = c.staff.removed,
        groups_created = c.groups.created,
        groups_updated = c.groups.updated,
        groups_removed = c.groups.removed,
        memberships_added = c.memberships.added,
        memberships_removed = c.memberships.removed,
        held = c.held(),
        rejected = c.received.rejected,
        conflicts = c.conflicts,
        fetch_ms = r.fetch_time.as_millis() as u64,
        engine_ms = r.engine_time.as_millis() as u64,
        "School run finished."
    );
}

/// Close the run early with `d` (nothing was written to the roster).
async fn end(store: &Store, run: i64, d: Decided) -> Result<Decided, RunError> {
    runs::finish(store.writer(), run, finish(&d)).await?;
    Ok(d)
}

/// The shell of a run: open its record, prepare and send the requests, decide (a pure
/// function of the answers), and hand the decision to its writer.
async fn run(
    store: &Store,
    target: &Target,
    rules: &Rules,
    opts: &RunOptions,
    report: &mut SchoolReport,
) -> Result<Decided, RunError> {
    let school = report.school.clone();
    #[cfg(debug_assertions)]
    pause_before_run().await;
    let run = runs::start(store.writer(), &school, &opts.trigger, opts.dry_run).await?;
    report.run = Some(run);
    let years = Years {
        live: rules.calendar.live_year(opts.today),
        early: rules.calendar.early_year(opts.today),
    };
    let mut asks = match ask::prepare(store, target, &school, years.live).await? {
        Ok(asks) => asks,
        Err(stop) => return end(store, run, stop).await,
    };
    let asked_at = Utc::now();
    let fetch_started = Instant::now();
    let (fetched, merger) = ask::fetch(&mut asks).await;
    report.fetch_time = fetch_started.elapsed();
    let ctx = RunCtx {
        store,
        run,
        school: &school,
        fence: target.fence,
        rules,
        opts,
        merger,
    };
    let baselines: Vec<Baseline> = asks.iter().map(Ask::baseline).collect();
    let verdicts = decide::verdicts(
        &fetched,
        &baselines,
        years,
        &rules.health,
        opts.allow_removals,
    );
    match decide::decide(&fetched, &verdicts) {
        Decision::NoConsent { source } => write::no_consent(&ctx, &asks[source]).await,
        Decision::Untrusted { source, why } => {
            write::untrusted(&ctx, &asks[source], &fetched[source], why).await
        }
        Decision::Unchanged => write::unchanged(&ctx, &asks).await,
        Decision::NoFullAnswer { source } => {
            let d = decide::no_full_answer(&asks[source].subject(&school));
            end(store, run, d).await
        }
        Decision::Apply => {
            let snapshots: Vec<(&'static str, Snapshot)> = asks
                .iter()
                .zip(fetched)
                .filter_map(|(a, f)| match f {
                    Ok(FetchOutcome::Snapshot(s)) => Some((a.source.name, *s)),
                    _ => None,
                })
                .collect();
            let notes = expiry_notes(&school, &snapshots, Utc::now());
            apply::apply_snapshots(&ctx, &snapshots, asked_at, &notes).await
        }
    }
}

/// A credential a source says will expire soon: say so while there is time.
fn expiry_notes(
    school: &str,
    snapshots: &[(&'static str, Snapshot)],
    now: chrono::DateTime<Utc>,
) -> Vec<String> {
    let mut notes = Vec::new();
    for (name, snap) in snapshots {
        if let Some(at) = snap.credential_expires
            && at - now < CREDENTIAL_WARNING
        {
            tracing::warn!(school, source = name, expires = %at.format("%Y-%m-%d"), "A school's credential expires soon.");
            notes.push(format!(
                "its {name} token expires on {}: ask the school for a new one before then",
                at.format("%Y-%m-%d")
            ));
        }
    }
    notes
}

/// Debug builds only, for the tests of a busy store: with
/// `ROSTERSYNC_TEST_PAUSE_BEFORE_RUN=FILE` the first run of the process writes FILE before it
/// opens its run record and waits until FILE is gone, so a test can take the store's write
/// lock at exactly that moment.
#[cfg(debug_assertions)]
async fn pause_before_run() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static PAUSED: AtomicBool = AtomicBool::new(false);
    let Some(path) = std::env::var_os("ROSTERSYNC_TEST_PAUSE_BEFORE_RUN") else {
        return;
    };
    if PAUSED.swap(true, Ordering::SeqCst) {
        return;
    }
    let _ = std::fs::write(&path, b"pausing\n");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::path::Path::new(&path).exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Debug builds only, for the test of a writer that comes between a run's plan and its write:
/// with `ROSTERSYNC_TEST_PAUSE_BEFORE_WRITE=FILE` an apply that computed its plan writes FILE
/// before it takes the write lock and waits until FILE is gone.
#[cfg(debug_assertions)]
async fn pause_before_write() {
    let Some(path) = std::env::var_os("ROSTERSYNC_TEST_PAUSE_BEFORE_WRITE") else {
        return;
    };
    let _ = std::fs::write(&path, b"computed\n");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::path::Path::new(&path).exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Debug builds only, for the crash test: with `ROSTERSYNC_TEST_PAUSE_BEFORE_COMMIT=FILE` an
/// apply writes FILE when everything but the commit is done and then waits, so a test can
/// kill or stop the process at exactly the worst moment (`ROSTERSYNC_TEST_PAUSE_SECONDS`: how
/// long, default 120).
#[cfg(debug_assertions)]
async fn pause_before_commit() {
    if let Some(path) = std::env::var_os("ROSTERSYNC_TEST_PAUSE_BEFORE_COMMIT") {
        let _ = std::fs::write(&path, b"applying\n");
        let seconds = std::env::var("ROSTERSYNC_TEST_PAUSE_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120);
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }
}
