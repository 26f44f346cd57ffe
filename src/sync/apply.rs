//! One school's run, the imperative shell around the pure core: fetch, judge, then in ONE
//! transaction load what is stored, merge, diff, brake, write the rows, the journal, the held
//! changes, the source's new baseline and the run record. A failure anywhere before the
//! commit leaves the school exactly as it was; the run record then says what happened.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use connector_api::{
    Connector, ConnectorError, ErrorKind, FetchOutcome, FetchRequest, SchoolId, SchoolYear,
    Snapshot,
};
use sea_orm::DbErr;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::rights::Rights;
use crate::store::roster::{self, ApplyContext};
use crate::store::schools::{self, SchoolState};
use crate::store::source_state::{self, Received};
use crate::store::{Store, WriteKind, WriteTxn, grants, held, runs};
use crate::sync::brakes::{self, BrakeRules, HeldRemoval, Stored};
use crate::sync::diff::{DiffOptions, Plan, StoredPerson, diff};
use crate::sync::digest;
use crate::sync::health::{self, Baseline, Distrust, HealthRules, Verdict};
use crate::sync::merge::{Conflict, merge};
use crate::sync::report::{Counts, Outcome, ReceivedCounts};

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
}

impl Rules {
    pub fn from_settings(settings: &crate::settings::Settings) -> Rules {
        let s = &settings.sync;
        Rules {
            rights: Rights::from_settings(&settings.rights),
            offboarding: chrono::Duration::days(i64::from(
                settings.broker.as_ref().map_or(30, |b| b.offboarding_days),
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
}

/// A problem of a whole source connection, found by one school's run.
#[derive(Debug, Clone)]
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

/// The decision of a run before anything is written.
struct Decided {
    outcome: Outcome,
    counts: Counts,
    error_class: Option<String>,
    message: Option<String>,
    retry: bool,
    rights_time: Duration,
    connection_problem: Option<ConnectionProblem>,
}

impl Decided {
    fn new(outcome: Outcome) -> Decided {
        Decided {
            outcome,
            counts: Counts::default(),
            error_class: None,
            message: None,
            retry: false,
            rights_time: Duration::ZERO,
            connection_problem: None,
        }
    }

    fn because(mut self, class: &str, message: String) -> Decided {
        self.error_class = Some(class.to_owned());
        self.message = Some(message);
        self
    }
}

/// What the sources sent: the people and groups of the first (the LAS where there is one),
/// and every source's rejected records.
fn received_counts(snapshots: &[&Snapshot]) -> ReceivedCounts {
    let Some(first) = snapshots.first() else {
        return ReceivedCounts::default();
    };
    ReceivedCounts {
        pupils: first.pupils.len(),
        staff: first.staff.len(),
        groups: first.groups.len(),
        rejected: snapshots.iter().map(|s| s.rejects.len()).sum(),
    }
}

/// Today in the schools' own time zone (the school year turns on 1 August there).
pub fn today() -> chrono::NaiveDate {
    Utc::now()
        .with_timezone(&chrono_tz::Europe::Amsterdam)
        .date_naive()
}

/// The school year a source should answer for today.
pub fn expected_year() -> SchoolYear {
    SchoolYear::containing(today())
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
    use backon::{ExponentialBuilder, Retryable};
    let write = || async {
        let id = match run {
            Some(id) => id,
            None => runs::start(store.writer(), school, &opts.trigger, opts.dry_run).await?,
        };
        runs::finish(store.writer(), id, finish(d)).await?;
        Ok::<i64, DbErr>(id)
    };
    let backoff = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_total_delay(Some(RECORD_PATIENCE))
        .without_max_times()
        .with_jitter();
    match write.retry(backoff).when(crate::store::is_contention).await {
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

/// One source as this run asks it.
struct Ask<'a> {
    source: &'a Source,
    connector: Arc<dyn Connector>,
    state: Option<source_state::SourceState>,
    request: FetchRequest,
    fingerprint: Option<String>,
}

impl Ask<'_> {
    /// "school 99XX00" for the LAS, "school 99XX00, broker" for another source: the LAS is
    /// the default, so its messages stay as short as they were.
    fn subject(&self, school: &str) -> String {
        if self.source.name == LAS {
            format!("school {school}")
        } else {
            format!("school {school}, {}", self.source.name)
        }
    }

    fn baseline(&self) -> Baseline {
        let count = |n: Option<i32>| n.map(|n| n.max(0) as u32);
        Baseline {
            pupils: count(self.state.as_ref().and_then(|s| s.pupil_count)),
            staff: count(self.state.as_ref().and_then(|s| s.staff_count)),
        }
    }

    /// Ask again without any "since": the merge needs this source's whole answer.
    async fn refetch(&mut self) -> Result<FetchOutcome, ConnectorError> {
        self.request.last_marker = None;
        self.request.last_received = None;
        self.connector.fetch(&self.request).await
    }
}

async fn run(
    store: &Store,
    target: &Target,
    rules: &Rules,
    opts: &RunOptions,
    report: &mut SchoolReport,
) -> Result<Decided, RunError> {
    let db = store.db();
    let school = report.school.clone();
    #[cfg(debug_assertions)]
    pause_before_run().await;
    let run = runs::start(store.writer(), &school, &opts.trigger, opts.dry_run).await?;
    report.run = Some(run);
    if let Some(who) = &target.frozen_by {
        let d = Decided::new(Outcome::Frozen).because(
            "frozen_by_operator",
            format!(
                "school {school} is frozen by {who}: its roster is kept as it is and nothing \
                 was fetched; `rostersync school unfreeze {school}` lets it be synced again"
            ),
        );
        return end(store, run, d).await;
    }
    if target.sources.is_empty() {
        let d = Decided::new(Outcome::Failed).because(
            "config",
            format!("school {school} has no source: give it a LAS connection or a broker_id"),
        );
        return end(store, run, d).await;
    }

    let mut asks = Vec::with_capacity(target.sources.len());
    for source in &target.sources {
        let state = source_state::load(db, &school, source.name).await?;
        let connector = match &source.connector {
            Ok(c) => c.clone(),
            Err(why) => {
                let d = Decided::new(Outcome::Failed)
                    .because("config", format!("school {school}: {why}"));
                return end(store, run, d).await;
            }
        };
        let credential = match &source.credential {
            None => None,
            Some(Ok(c)) => Some(c.clone()),
            Some(Err(why)) => {
                let d = Decided::new(Outcome::Failed).because(
                    "credential_unreadable",
                    format!("school {school}: the authorization key cannot be read: {why}"),
                );
                return end(store, run, d).await;
            }
        };
        let fingerprint = credential
            .as_ref()
            .map(|c| source_state::fingerprint(&school, c.expose_secret()));
        if let (Some(s), Some(fp)) = (&state, &fingerprint)
            && s.parked_fingerprint.as_deref() == Some(fp.as_str())
        {
            let since = s
                .parked_at
                .map(|t| t.format(" since %Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default();
            let what = if source.name == PORTAL {
                "its portal token changes: ask the school for a new Zermelo token and put it \
                 in the token file"
                    .to_owned()
            } else {
                format!(
                    "its key changes: `rostersync school set-key {school}` (or update the key file)"
                )
            };
            let d = Decided::new(Outcome::Parked).because(
                "credentials_rejected",
                format!(
                    "school {school} is parked{since}: {}. It is not asked again until {what}",
                    s.parked_reason.as_deref().unwrap_or("its key was rejected")
                ),
            );
            return end(store, run, d).await;
        }
        let request = FetchRequest {
            school: target.id.clone(),
            school_year: expected_year(),
            credential,
            remote_id: source.remote_id.clone(),
            last_received: state.as_ref().and_then(|s| s.last_received_at),
            last_marker: state.as_ref().and_then(|s| s.marker.clone()),
        };
        asks.push(Ask {
            source,
            connector,
            state,
            request,
            fingerprint,
        });
    }

    let asked_at = Utc::now();
    let fetch_started = Instant::now();
    let mut fetched: Vec<Result<FetchOutcome, ConnectorError>> =
        futures_util::future::join_all(asks.iter().map(|a| a.connector.fetch(&a.request))).await;
    let mut notes = Vec::new();
    let mut merger = None;
    for (ask, got) in asks.iter_mut().zip(fetched.iter_mut()) {
        // A merged institution is followed within the run: same school, new id, no duplicate.
        // The new id is recorded in the run's own transaction (fenced, journaled), and not
        // at all by a dry run.
        if let Err(ConnectorError::SchoolMerged { into }) = got
            && let Ok(new_id) = into.parse::<i64>()
        {
            merger = Some(Merger {
                from: ask.request.remote_id.clone().unwrap_or_default(),
                into: new_id,
            });
            ask.request.remote_id = Some(new_id.to_string());
            *got = ask.refetch().await;
        }
    }
    let ctx = RunCtx {
        store,
        run,
        school: &school,
        fence: target.fence,
        rules,
        opts,
        merger,
    };
    if fetched
        .iter()
        .any(|f| matches!(f, Ok(FetchOutcome::Snapshot(_))))
    {
        for (ask, got) in asks.iter_mut().zip(fetched.iter_mut()) {
            if matches!(got, Ok(FetchOutcome::Unchanged)) {
                *got = ask.refetch().await;
            }
        }
    }
    report.fetch_time = fetch_started.elapsed();

    // Without the broker's permission nothing is synced, whatever the LAS says.
    if let Some(i) = fetched
        .iter()
        .position(|f| matches!(f, Err(ConnectorError::NoConsent { .. })))
    {
        return no_consent(&ctx, &asks[i]).await;
    }

    let mut verdicts: Vec<Verdict> = asks
        .iter()
        .zip(&fetched)
        .map(|(a, f)| health::judge(f, a.baseline(), a.request.school_year, &rules.health))
        .collect();
    if opts.allow_removals {
        for v in &mut verdicts {
            if matches!(
                v,
                Verdict::Untrustworthy(Distrust::Collapsed { .. } | Distrust::Empty { .. })
            ) {
                // The operator looked and says the drop is real.
                *v = Verdict::Trusted;
            }
        }
    }

    // The first untrustworthy source (the LAS before the broker) freezes the school.
    if let Some(i) = verdicts
        .iter()
        .position(|v| matches!(v, Verdict::Untrustworthy(_)))
    {
        let Verdict::Untrustworthy(why) = &verdicts[i] else {
            unreachable!("position() found an untrustworthy verdict")
        };
        let ask = &asks[i];
        let got = &fetched[i];
        return untrusted(&ctx, ask, got, why).await;
    }

    if fetched
        .iter()
        .all(|f| matches!(f, Ok(FetchOutcome::Unchanged)))
    {
        let mut d = Decided::new(Outcome::Unchanged);
        if !opts.dry_run {
            let txn = ctx.write_txn().await?;
            for ask in &asks {
                source_state::record_unchanged(&txn, &school, ask.source.name, Utc::now()).await?;
            }
            // Nothing changed, but a grant's grace period may have ended.
            refresh_grants(&txn, &ctx, false, &mut d).await?;
            schools::set_state(&txn, &school, active(None, None)).await?;
            ctx.record_merger(&txn, &mut d).await?;
            runs::finish(&txn, run, finish(&d)).await?;
            txn.commit().await?;
        } else {
            ctx.say_merger(&mut d);
            runs::finish(store.writer(), run, finish(&d)).await?;
        }
        return Ok(d);
    }

    let mut snapshots = Vec::with_capacity(asks.len());
    for (ask, got) in asks.iter().zip(fetched) {
        match got {
            Ok(FetchOutcome::Snapshot(s)) => snapshots.push((ask.source.name, *s)),
            // A source that says "unchanged" to a request without any "since", or a verdict
            // that trusted something without data: nothing is written.
            _ => {
                let d = Decided::new(Outcome::Frozen).because(
                    "no_full_answer",
                    format!(
                        "{}: the source gave no full answer when asked for one; stored data \
                         is kept. Report this to the source's vendor if it lasts",
                        ask.subject(&school)
                    ),
                );
                return end(store, run, d).await;
            }
        }
    }
    // A credential the source says will expire soon: say so while there is time.
    for (name, snap) in &snapshots {
        if let Some(at) = snap.credential_expires
            && at - Utc::now() < CREDENTIAL_WARNING
        {
            tracing::warn!(school = %school, source = name, expires = %at.format("%Y-%m-%d"), "A school's credential expires soon.");
            notes.push(format!(
                "its {name} token expires on {}: ask the school for a new one before then",
                at.format("%Y-%m-%d")
            ));
        }
    }
    apply_snapshots(&ctx, &snapshots, asked_at, &notes).await
}

/// A source's answer cannot be trusted: keep the school as it is, say why, and park the
/// school when its own credential was rejected.
async fn untrusted(
    ctx: &RunCtx<'_>,
    ask: &Ask<'_>,
    fetched: &Result<FetchOutcome, ConnectorError>,
    why: &Distrust,
) -> Result<Decided, RunError> {
    let school = ctx.school;
    let parked = is_credentials(fetched) && ask.fingerprint.is_some();
    let outcome = if parked {
        Outcome::Parked
    } else {
        Outcome::Frozen
    };
    let d = Decided::new(outcome).because(
        why.class(),
        format!("{}: {}", ask.subject(school), why.explain()),
    );
    let d = Decided {
        retry: matches!(
            why,
            Distrust::FetchFailed {
                retryable: true,
                ..
            }
        ),
        counts: Counts {
            received: match fetched {
                Ok(FetchOutcome::Snapshot(s)) => received_counts(&[s]),
                _ => ReceivedCounts::default(),
            },
            ..Counts::default()
        },
        ..d
    };
    let mut d = d;
    if let Err(e) = fetched {
        let source = ask.source;
        d.connection_problem =
            super::connection::problem(&source.connection, source.certificate.as_deref(), e).map(
                |problem| ConnectionProblem {
                    connection: source.connection.clone(),
                    problem,
                },
            );
    }
    let txn = ctx.write_txn().await?;
    if ctx.opts.dry_run {
        ctx.say_merger(&mut d);
    } else {
        // The sources are not trusted, so the facts stand as stored; only grace periods
        // run out, and never for a whole-school grant.
        refresh_grants(&txn, ctx, true, &mut d).await?;
        if let (Err(e), Some(fp)) = (fetched, &ask.fingerprint)
            && e.kind() == ErrorKind::Credentials
        {
            source_state::park(
                &txn,
                school,
                ask.source.name,
                &e.to_string(),
                fp,
                Utc::now(),
            )
            .await?;
        }
        schools::set_state(
            &txn,
            school,
            inactive(if parked { "parked" } else { "frozen" }, &d),
        )
        .await?;
        ctx.record_merger(&txn, &mut d).await?;
    }
    runs::finish(&txn, ctx.run, finish(&d)).await?;
    txn.commit().await?;
    Ok(d)
}

/// The broker has no sync permission from the school. Never granted: the school waits for
/// it. Granted before: the school is offboarded deliberately: its data is kept for the grace
/// period (granting again resumes the sync), then deleted.
async fn no_consent(ctx: &RunCtx<'_>, ask: &Ask<'_>) -> Result<Decided, RunError> {
    let (school, rules, opts) = (ctx.school, ctx.rules, ctx.opts);
    let txn = ctx.write_txn().await?;
    let row = schools::row_in(&txn, school).await?;
    let now = Utc::now();
    let state = row.as_ref().map(|r| r.state.as_str()).unwrap_or("");
    let since = row.as_ref().and_then(|r| r.state_since).unwrap_or(now);
    let was_synced = ask
        .state
        .as_ref()
        .is_some_and(|s| s.last_success_at.is_some());
    let days = rules.offboarding.num_days();
    let (class, new_state, message) = if state == OFFBOARDING && since + rules.offboarding <= now {
        let purged = if opts.dry_run {
            roster::Purged::default()
        } else {
            roster::offboard(&txn, school).await?
        };
        (
            "offboarded",
            AWAITING_CONSENT,
            format!(
                "school {school} revoked rostersync's sync permission on {}; after {days} days \
                 its data was deleted ({} people, {} groups). It is synced again once the \
                 school grants permission in the broker",
                since.format("%Y-%m-%d"),
                purged.persons,
                purged.groups
            ),
        )
    } else if state == OFFBOARDING || was_synced {
        let started = if state == OFFBOARDING { since } else { now };
        (
            "consent_revoked",
            OFFBOARDING,
            format!(
                "school {school} revoked rostersync's sync permission in the broker on {}; \
                 nothing is synced, and its data is deleted on {} unless the school grants \
                 permission again before then",
                started.format("%Y-%m-%d"),
                (started + rules.offboarding).format("%Y-%m-%d")
            ),
        )
    } else {
        (
            "awaiting_consent",
            AWAITING_CONSENT,
            format!(
                "school {school} has not given rostersync's publisher sync permission in the \
                 broker yet; it is not synced until it does (ask the school's ICT coordinator)"
            ),
        )
    };
    let mut d = Decided::new(Outcome::NoConsent).because(class, message);
    if opts.dry_run {
        ctx.say_merger(&mut d);
    } else {
        schools::set_state(&txn, school, inactive(new_state, &d)).await?;
        ctx.record_merger(&txn, &mut d).await?;
    }
    runs::finish(&txn, ctx.run, finish(&d)).await?;
    txn.commit().await?;
    Ok(d)
}

/// Derive the school's grants from what is stored now, in the run's transaction.
async fn refresh_grants(
    txn: &WriteTxn,
    ctx: &RunCtx<'_>,
    frozen: bool,
    d: &mut Decided,
) -> Result<(), DbErr> {
    let started = Instant::now();
    d.counts.grants = grants::refresh(
        txn,
        ctx.school,
        Some(ctx.run),
        &ctx.rules.rights,
        frozen,
        Utc::now(),
    )
    .await?;
    d.rights_time = started.elapsed();
    Ok(())
}

/// School states of the consent lifecycle.
pub const AWAITING_CONSENT: &str = "awaiting_consent";
pub const OFFBOARDING: &str = "offboarding";

/// The broker said the school's institution merged into another one.
#[derive(Debug, Clone)]
struct Merger {
    from: String,
    into: i64,
}

/// What every writer of a run needs: where, which run, under which lease, by which rules.
struct RunCtx<'a> {
    store: &'a Store,
    run: i64,
    school: &'a str,
    fence: Option<i64>,
    rules: &'a Rules,
    opts: &'a RunOptions,
    /// Followed within this run; recorded by whichever writer commits it.
    merger: Option<Merger>,
}

impl RunCtx<'_> {
    /// A transaction that writes for the school. Its first statement takes the school's row
    /// lock and checks the fence, so on PostgreSQL concurrent runs of one school queue on the
    /// row and a run whose lease was lost writes nothing.
    async fn write_txn(&self) -> Result<WriteTxn, RunError> {
        let txn = self.store.begin_write(WriteKind::Apply).await?;
        if !schools::lock_for_apply(&txn, self.school, self.fence).await? {
            return Err(RunError::LeaseLost);
        }
        Ok(txn)
    }

    /// Record a merger in the run's transaction: the school follows the new institution id,
    /// journaled as a change of the school, and the run's message says so.
    async fn record_merger(&self, txn: &WriteTxn, d: &mut Decided) -> Result<(), DbErr> {
        let Some(m) = &self.merger else {
            return Ok(());
        };
        schools::follow_merger(txn, self.school, Some(self.run), &m.from, m.into).await?;
        self.say_merger(d);
        Ok(())
    }

    /// Say what the merger means for the operator (a dry run only says it).
    fn say_merger(&self, d: &mut Decided) {
        let Some(Merger { from, into }) = &self.merger else {
            return;
        };
        let follows = if self.opts.dry_run {
            "a run that is not a dry run will follow"
        } else {
            "rostersync follows"
        };
        let note = format!(
            "institution {from} merged into {into} at the broker; {follows} {into} now (where \
             the school is in the configuration file, set its broker_id to {into})"
        );
        d.message = Some(match d.message.take() {
            Some(m) => format!("{m}; {note}"),
            None => format!("school {}: {note}", self.school),
        });
    }
}

fn is_credentials(fetched: &Result<FetchOutcome, ConnectorError>) -> bool {
    matches!(fetched, Err(e) if e.kind() == ErrorKind::Credentials)
}

fn active(school_year: Option<String>, name: Option<String>) -> SchoolState<'static> {
    SchoolState {
        state: "active",
        reason: None,
        school_year,
        name,
    }
}

/// A school not synced this time, and why (the run's message).
fn inactive<'a>(state: &'a str, d: &Decided) -> SchoolState<'a> {
    SchoolState {
        state,
        reason: d.message.clone(),
        school_year: None,
        name: None,
    }
}

/// What applying `snapshot` to the stored roster would do: the plan after the brakes, what
/// they held, the decision, and the stored persons the plan was computed against.
struct Computed {
    plan: Plan,
    held: Vec<HeldRemoval>,
    decided: Decided,
    stored: Vec<StoredPerson>,
    /// Where the sources disagreed; the owner's value is in the plan.
    conflicts: Vec<Conflict>,
}

async fn compute(
    txn: &WriteTxn,
    run: i64,
    school: &str,
    snapshots: &[&Snapshot],
    rules: &Rules,
    opts: &RunOptions,
) -> Result<Computed, RunError> {
    let (groups, persons) = roster::load(txn, school).await?;
    let merged = merge(snapshots);
    let mut plan = diff(
        &merged.state,
        &groups,
        &persons,
        &DiffOptions {
            frozen: false,
            protected_las_keys: merged.protected_las_keys.clone(),
            match_staff_email: true,
            confirmed_eckids: merged.confirmed_eckids.clone(),
        },
    );
    let (held, decisions) = brakes::hold(
        &mut plan,
        Stored::of(&groups, &persons),
        &rules.brakes,
        opts.allow_removals,
    );
    let counts = Counts::of(
        &plan,
        &held,
        received_counts(snapshots),
        merged.conflicts.len(),
    );
    let reasons: Vec<String> = decisions
        .into_iter()
        .filter_map(|(_, d)| match d {
            brakes::Decision::Hold { reason, .. } => Some(reason),
            brakes::Decision::Apply => None,
        })
        .collect();
    let mut d = Decided::new(if held.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Held
    });
    d.counts = counts;
    if !reasons.is_empty() {
        d = d.because(
            "brakes",
            format!(
                "school {school}: {}",
                reasons
                    .join("; ")
                    .replace("--run N", &format!("--run {run}"))
            ),
        );
    } else if counts.identity_conflicts > 0 {
        d.message = Some(format!(
            "school {school}: {} person(s) the sources name differently than what is stored \
             (a changed ECK-iD, or keys of two people); nothing was merged for them. See \
             `rostersync changes --run {run}`; if an ECK-iD changed for the same person, \
             `rostersync person relink PERSON --accept-source`",
            counts.identity_conflicts
        ));
    } else if counts.received.rejected > 0 {
        d.message = Some(format!(
            "school {school}: the source sent {} record(s) that could not be used (see \
             `rostersync changes --run {run}`); what is stored for them was kept",
            counts.received.rejected
        ));
    }
    Ok(Computed {
        plan,
        held,
        decided: d,
        stored: persons,
        conflicts: merged.conflicts,
    })
}

/// The trusted path: everything from loading the stored roster to the run record happens in
/// one transaction, so a crash at any point leaves the school as it was. When the sources say
/// exactly what they said at the last full apply, loading and diffing are skipped.
async fn apply_snapshots(
    rc: &RunCtx<'_>,
    sources: &[(&'static str, Snapshot)],
    asked_at: chrono::DateTime<Utc>,
    notes: &[String],
) -> Result<Decided, RunError> {
    let (store, run, school, rules, opts) = (rc.store, rc.run, rc.school, rc.rules, rc.opts);
    let snapshots: Vec<&Snapshot> = sources.iter().map(|(_, s)| s).collect();
    let txn = rc.write_txn().await?;
    let digest = digest::of(&snapshots);
    let last = schools::digest(&txn, school).await?;
    let same = last.as_deref() == Some(digest.as_str());
    let Computed {
        plan,
        held,
        decided: d,
        stored,
        conflicts,
    } = if same {
        tracing::debug!(
            school,
            "The sources say what they said at the last full apply; skipping load and diff."
        );
        let mut d = Decided::new(Outcome::Ok);
        d.counts.received = received_counts(&snapshots);
        Computed {
            plan: Plan::default(),
            held: Vec::new(),
            decided: d,
            stored: Vec::new(),
            conflicts: Vec::new(),
        }
    } else {
        compute(&txn, run, school, &snapshots, rules, opts).await?
    };
    if opts.dry_run {
        txn.rollback().await?;
        let mut d = d;
        rc.say_merger(&mut d);
        runs::finish(store.writer(), run, finish(&d)).await?;
        return Ok(d);
    }
    let now = Utc::now();
    let ctx = ApplyContext {
        school,
        now,
        retention: rules.retention,
        run: Some(run),
    };
    if !same {
        roster::apply(&txn, &ctx, &plan, &stored).await?;
        for s in &snapshots {
            roster::journal_rejects(&txn, &ctx, s.source.into(), &s.rejects).await?;
        }
        roster::journal_conflicts(&txn, &ctx, &conflicts).await?;
    }
    let mut d = d;
    refresh_grants(&txn, rc, false, &mut d).await?;
    // Only a run applied in full may be skipped next time; a held one must decide again, and
    // so must one with identity conflicts (they are said on every run until resolved).
    let complete = d.outcome == Outcome::Ok && d.counts.identity_conflicts == 0;
    schools::set_digest(&txn, school, complete.then_some(digest)).await?;
    if held.is_empty() {
        held::supersede(&txn, school).await?;
    } else {
        held::hold(&txn, run, school, &held).await?;
    }
    for (name, snapshot) in sources {
        source_state::record_received(
            &txn,
            school,
            name,
            &Received {
                asked_at,
                pupils: snapshot.pupils.len(),
                staff: snapshot.staff.len(),
                groups: snapshot.groups.len(),
                school_year: snapshot.school_year.clone(),
                marker: snapshot.marker.clone(),
            },
            now,
        )
        .await?;
    }
    if d.counts.identity_conflicts > 0 {
        // Ask in full next time, so the conflict is decided (and said) again, not hidden
        // behind "nothing changed".
        source_state::forget_markers(&txn, school).await?;
    }
    let first = snapshots.first().copied();
    let year = snapshots.iter().find_map(|s| s.school_year.clone());
    schools::set_state(
        &txn,
        school,
        active(year, first.and_then(|s| s.school_name.clone())),
    )
    .await?;
    if !notes.is_empty() {
        let said = d
            .message
            .take()
            .map(|m| format!("; {m}"))
            .unwrap_or_default();
        d.message = Some(format!("school {school}: {}{said}", notes.join("; ")));
    }
    rc.record_merger(&txn, &mut d).await?;
    runs::finish(&txn, run, finish(&d)).await?;
    #[cfg(debug_assertions)]
    pause_before_commit().await;
    txn.commit().await?;
    Ok(d)
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
