//! A sync of many schools: which schools, with which source and key, how many at a time,
//! and the purge of expired tombstones afterwards. Each school is its own run: one school's
//! failure never stops another's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_api::{Connector, SchoolId};
use connector_basispoort::BasispoortConnector;
use futures_util::StreamExt;
use secrecy::SecretString;
use serde::Serialize;

use crate::settings::Settings;
use crate::sources;
use crate::store::roster::{self, Purged};
use crate::store::runs::{self, HistoryPurged};
use crate::store::schools::{self, LAS_KEY};
use crate::store::sealing::{KeyUse, MasterKey};
use crate::store::{Store, StoreError};
use crate::sync::report::Outcome;
use crate::sync::run::{
    self, BROKER, LAS, PORTAL, Rules, RunOptions, SchoolReport, Source, Target,
};

#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error("school {0} is not linked (see `rostersync school list`)")]
    UnknownSchool(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CycleError {
    pub fn is_usage(&self) -> bool {
        match self {
            CycleError::UnknownSchool(_) => true,
            CycleError::Store(e) => e.is_setup(),
        }
    }
}

pub struct CycleOptions {
    /// Only this school.
    pub only: Option<SchoolId>,
    pub run: RunOptions,
}

/// A school the cycle did not ask, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub school: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    pub schools: Vec<SchoolReport>,
    pub skipped: Vec<Skipped>,
    /// Problems of a whole connection (the broker refused our certificate): said once here,
    /// and its schools are skipped.
    pub problems: Vec<String>,
    pub purged: Purged,
    /// History older than `sync.journal_days` that this cycle forgot.
    pub history: HistoryPurged,
    #[serde(serialize_with = "seconds")]
    pub elapsed: Duration,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

impl CycleReport {
    /// Exit 1 when any school needs a person's attention, or waits for a broken connection.
    pub fn needs_attention(&self) -> bool {
        self.schools.iter().any(SchoolReport::needs_attention) || !self.problems.is_empty()
    }
}

/// Connectors are built once per LAS connection and shared by its schools (one HTTP client,
/// one connection pool, one remembered protocol fallback). The daemon keeps one set until its
/// configuration is reloaded.
#[derive(Default)]
pub struct Connectors {
    built: HashMap<String, Result<Arc<dyn Connector>, String>>,
    /// Portal connections, one per school (each has its own portal).
    portals: HashMap<String, Result<Arc<dyn Connector>, String>>,
    broker: Option<Result<Arc<BasispoortConnector>, String>>,
    /// When each connection (by [`Source::connection`]) was last checked.
    checked: HashMap<String, Instant>,
    /// Problems of whole connections (by [`Source::connection`]) and when they were seen.
    problems: HashMap<String, (Instant, String)>,
}

/// How long a connection's problem holds before the connection is tried again (by the broker
/// check, or by the next school on a LAS connection).
const CHECK_EVERY: Duration = Duration::from_secs(600);

/// How the broker connection is named in problems and `status`.
pub use crate::sources::{THE_BROKER, las_connection};

impl Connectors {
    /// What is wrong with the broker connection itself (our client certificate refused,
    /// our publisher identity unknown, its certificate untrusted), checked at most every ten
    /// minutes. Such a problem is one problem, not one per school: the schools with the
    /// broker wait for it to be fixed. A transient failure is not a problem here; each
    /// school's own fetch will say so.
    pub async fn broker_problem(&mut self, settings: &Settings) -> Option<String> {
        let connector = self.broker(settings).ok()?;
        let certificate = settings
            .broker
            .as_ref()
            .map(|b| b.basispoort().client_certificate.to_string());
        self.checked_problem(THE_BROKER, connector, certificate)
            .await
    }

    /// The same for a LAS connection: its TLS (our client certificate, its server
    /// certificate) is checked once, before its schools are asked.
    pub async fn las_problem(&mut self, settings: &Settings, las: &str) -> Option<String> {
        let connector = self.get(settings, las).ok()?;
        let certificate = settings
            .las(las)
            .and_then(|l| l.client_certificate())
            .map(ToString::to_string);
        self.checked_problem(&las_connection(las), connector, certificate)
            .await
    }

    /// `connection`'s problem: as checked within the last ten minutes, or checked now.
    async fn checked_problem(
        &mut self,
        connection: &str,
        connector: Arc<dyn Connector>,
        certificate: Option<String>,
    ) -> Option<String> {
        if self
            .checked
            .get(connection)
            .is_some_and(|at| at.elapsed() < CHECK_EVERY)
        {
            return self.problem(connection).map(str::to_owned);
        }
        let problem = match connector.check().await {
            Err(e) => {
                tracing::debug!(connection, error_class = e.class(), error = %e, "A connection's check failed.");
                super::connection::problem(connection, certificate.as_deref(), &e)
            }
            Ok(()) => None,
        };
        self.checked.insert(connection.to_owned(), Instant::now());
        match &problem {
            Some(p) => self.note_problem(connection, p),
            None => {
                self.problems.remove(connection);
            }
        }
        problem
    }

    /// A problem of `connection` seen within the last ten minutes.
    pub fn problem(&self, connection: &str) -> Option<&str> {
        self.problems
            .get(connection)
            .filter(|(at, _)| at.elapsed() < CHECK_EVERY)
            .map(|(_, p)| p.as_str())
    }

    /// Remember a connection's problem (said once, at ERROR: an operator must act).
    pub fn note_problem(&mut self, connection: &str, problem: &str) {
        if self.problem(connection) != Some(problem) {
            tracing::error!(
                connection,
                problem,
                "A source connection is broken; its schools wait."
            );
        }
        self.problems
            .insert(connection.to_owned(), (Instant::now(), problem.to_owned()));
    }

    /// The first of `target`'s connections with a live problem.
    pub fn broken(&self, target: &Target) -> Option<String> {
        target
            .sources
            .iter()
            .find(|s| self.problem(&s.connection).is_some())
            .map(|s| s.connection.clone())
    }

    /// What a school's run says about its connections: a problem it met, or (a run that got
    /// its answers) that they work. Returns the connections whose state changed.
    pub fn learn(&mut self, target: &Target, report: &SchoolReport) -> Vec<String> {
        if let Some(p) = &report.connection_problem {
            let changed = self.problem(&p.connection) != Some(p.problem.as_str());
            self.note_problem(&p.connection, &p.problem);
            return if changed {
                vec![p.connection.clone()]
            } else {
                Vec::new()
            };
        }
        if !matches!(
            report.outcome,
            Outcome::Ok | Outcome::Unchanged | Outcome::Held
        ) {
            return Vec::new();
        }
        target
            .sources
            .iter()
            .filter(|s| self.problems.remove(&s.connection).is_some())
            .map(|s| s.connection.clone())
            .collect()
    }

    /// Show in `status` what is known of every connection checked; returns the problems to
    /// say.
    async fn record_problems(&self, store: &Store) -> Vec<String> {
        let mut connections: Vec<&String> = self.checked.keys().collect();
        connections.sort_unstable();
        for c in connections {
            record_problem(store, c, self.problem(c)).await;
        }
        let mut problems: Vec<(&String, &String)> = self
            .problems
            .iter()
            .filter(|(_, (at, _))| at.elapsed() < CHECK_EVERY)
            .map(|(c, (_, p))| (c, p))
            .collect();
        problems.sort();
        problems.into_iter().map(|(_, p)| p.clone()).collect()
    }

    /// The broker connection, built once.
    pub fn basispoort(&mut self, settings: &Settings) -> Result<Arc<BasispoortConnector>, String> {
        self.broker
            .get_or_insert_with(|| match &settings.broker {
                None => Err(
                    "it has a broker_id but there is no [broker] section in the \
                             configuration"
                        .into(),
                ),
                Some(b) => sources::broker_connector(b)
                    .map(Arc::new)
                    .map_err(|e| e.to_string()),
            })
            .clone()
    }

    /// A school's portal connection, built once.
    fn portal(
        &mut self,
        school: &str,
        z: &crate::settings::ZermeloSettings,
    ) -> Result<Arc<dyn Connector>, String> {
        self.portals
            .entry(school.to_owned())
            .or_insert_with(|| {
                sources::portal_connector(school, z)
                    .map(|c| Arc::new(c) as Arc<dyn Connector>)
                    .map_err(|e| e.to_string())
            })
            .clone()
    }

    fn broker(&mut self, settings: &Settings) -> Result<Arc<dyn Connector>, String> {
        self.basispoort(settings).map(|c| c as Arc<dyn Connector>)
    }

    fn get(&mut self, settings: &Settings, las: &str) -> Result<Arc<dyn Connector>, String> {
        self.built
            .entry(las.to_owned())
            .or_insert_with(|| match settings.las(las) {
                None => Err(format!(
                    "its LAS connection '{las}' is not in the configuration (known: {}); \
                     add a [[las]] block or re-link the school",
                    settings.las_names()
                )),
                Some(l) => sources::las_connector(l)
                    .map(|c| {
                        Arc::new(sources::Limited::new(c, l.max_concurrent())) as Arc<dyn Connector>
                    })
                    .map_err(|e| e.to_string()),
            })
            .clone()
    }
}

/// The master key, read once and only when a school's key is sealed in the store.
struct Master<'a> {
    settings: &'a Settings,
    store: &'a Store,
    key: Option<Result<MasterKey, String>>,
}

impl Master<'_> {
    fn get(&mut self) -> Result<&MasterKey, String> {
        let (settings, store) = (self.settings, self.store);
        self.key
            .get_or_insert_with(|| {
                MasterKey::load(settings, store, KeyUse::Read).map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// Which schools to run, each with its source and key.
pub async fn targets(
    store: &Store,
    settings: &Settings,
    only: Option<&SchoolId>,
    connectors: &mut Connectors,
) -> Result<(Vec<Target>, Vec<Skipped>), CycleError> {
    let rows = match only {
        Some(id) => match schools::row(store, &id.to_string()).await? {
            Some(row) => vec![row],
            None => return Err(CycleError::UnknownSchool(id.to_string())),
        },
        None => schools::rows(store).await?,
    };
    let mut gather = Gather {
        store,
        settings,
        connectors,
        master: Master {
            settings,
            store,
            key: None,
        },
        broker_asked: false,
        asked_las: std::collections::BTreeSet::new(),
    };
    let (mut out, mut skipped) = (Vec::new(), Vec::new());
    for row in rows {
        let Ok(id) = row.id.parse::<SchoolId>() else {
            continue;
        };
        match gather.target(&row, id).await {
            Ok(t) => out.push(t),
            Err(s) => skipped.push(s),
        }
    }
    gather.record_problems().await;
    Ok((out, skipped))
}

/// Builds a cycle's targets, and remembers which connections it asked about.
struct Gather<'a> {
    store: &'a Store,
    settings: &'a Settings,
    connectors: &'a mut Connectors,
    master: Master<'a>,
    broker_asked: bool,
    asked_las: std::collections::BTreeSet<String>,
}

impl Gather<'_> {
    /// One school's target, or why it is skipped this time.
    async fn target(
        &mut self,
        row: &crate::store::entities::school::Model,
        id: SchoolId,
    ) -> Result<Target, Skipped> {
        let config = self.settings.configured_school(&id);
        if row.origin == "config" && config.is_none() {
            return Err(Skipped {
                school: row.id.clone(),
                reason: "no longer in the configuration file; its stored data is kept \
                         (remove it with `rostersync school remove` after re-adding it, or \
                         put its [[school]] block back)"
                    .into(),
            });
        }
        let mut sources = Vec::new();
        if let Some(las) = &row.las {
            sources.push(self.las(row, las, config, &id).await?);
        }
        if let Some(broker_id) = row.broker_id {
            sources.push(self.broker(row, broker_id).await?);
        }
        if let Some(z) = config.and_then(|c| c.zermelo.as_ref()) {
            sources.push(Source {
                name: PORTAL,
                connector: self.connectors.portal(&row.id, z),
                credential: Some(z.token.load_string().map_err(|e| e.to_string())),
                remote_id: None,
                connection: format!("the Zermelo portal of school {}", row.id),
                certificate: None,
            });
        }
        if sources.is_empty() {
            return Err(Skipped {
                school: row.id.clone(),
                reason: "no LAS connection and no broker id: nothing to ask yet".into(),
            });
        }
        Ok(Target {
            sources,
            id,
            fence: None,
            frozen_by: row.frozen_by.clone(),
        })
    }

    /// The school's LAS, unless its connection has a problem the school must wait out.
    async fn las(
        &mut self,
        row: &crate::store::entities::school::Model,
        las: &str,
        config: Option<&crate::settings::SchoolSettings>,
        id: &SchoolId,
    ) -> Result<Source, Skipped> {
        self.asked_las.insert(las.to_owned());
        let connection = las_connection(las);
        if self
            .connectors
            .las_problem(self.settings, las)
            .await
            .is_some()
        {
            return Err(waiting(&row.id, &connection));
        }
        Ok(Source {
            name: LAS,
            connector: self.connectors.get(self.settings, las),
            credential: Some(las_credential(self.store, config, &mut self.master, id).await),
            remote_id: None,
            certificate: self
                .settings
                .las(las)
                .and_then(|l| l.client_certificate())
                .map(ToString::to_string),
            connection,
        })
    }

    /// The broker, unless its connection has a problem the school must wait out.
    async fn broker(
        &mut self,
        row: &crate::store::entities::school::Model,
        broker_id: i64,
    ) -> Result<Source, Skipped> {
        self.broker_asked = true;
        if self
            .connectors
            .broker_problem(self.settings)
            .await
            .is_some()
        {
            return Err(waiting(&row.id, THE_BROKER));
        }
        Ok(Source {
            name: BROKER,
            connector: self.connectors.broker(self.settings),
            credential: None,
            remote_id: Some(broker_id.to_string()),
            connection: THE_BROKER.to_owned(),
            certificate: self
                .settings
                .broker
                .as_ref()
                .map(|b| b.basispoort().client_certificate.to_string()),
        })
    }

    /// `status` shows each asked connection's problem beside the schools that wait for it.
    async fn record_problems(self) {
        if self.broker_asked {
            let problem = self.connectors.broker_problem(self.settings).await;
            record_problem(self.store, THE_BROKER, problem.as_deref()).await;
        }
        for las in &self.asked_las {
            let connection = las_connection(las);
            record_problem(
                self.store,
                &connection,
                self.connectors.problem(&connection),
            )
            .await;
        }
    }
}

/// A school that waits for its connection's problem to be fixed (the problem itself is said
/// once, not again per school).
fn waiting(school: &str, connection: &str) -> Skipped {
    Skipped {
        school: school.to_owned(),
        reason: format!(
            "waiting for {connection}, whose problem is said once (above, in `status` and in \
             the log)"
        ),
    }
}

/// Show (or clear) a connection's problem in `status`; best effort.
pub async fn record_problem(store: &Store, connection: &str, problem: Option<&str>) {
    use crate::store::status::set_problem;
    let mut result = set_problem(store.writer(), connection, problem).await;
    if connection == THE_BROKER {
        // Versions before 0.2 recorded the broker's problem under this name.
        result = result.and(set_problem(store.writer(), "broker", None).await);
    }
    if let Err(e) = result {
        tracing::warn!(error = %store.db_error(e), connection, "Cannot record a connection's state.");
    }
}

/// The school's authorization key: from the configuration, or sealed in the store.
async fn las_credential(
    store: &Store,
    config: Option<&crate::settings::SchoolSettings>,
    master: &mut Master<'_>,
    id: &SchoolId,
) -> Result<SecretString, String> {
    match config.and_then(|c| c.key.as_ref()) {
        Some(reference) => reference.load_string().map_err(|e| e.to_string()),
        None => match master.get() {
            Err(e) => Err(e),
            Ok(key) => match schools::load_secret(store, key, id, LAS_KEY).await {
                Ok(Some(k)) => Ok(k),
                Ok(None) => Err(format!(
                    "no key is stored; add one with `rostersync school set-key {id} --key-file FILE`"
                )),
                Err(e) => Err(e.to_string()),
            },
        },
    }
}

/// How often `sync` tries a school again within the run when the store was busy, and the
/// first wait (doubling).
const STORE_RETRIES: u32 = 3;
const STORE_RETRY_WAIT: Duration = Duration::from_millis(500);

/// One school's run; a run that failed only because the store was busy is tried again within
/// this cycle a few times (each attempt has its own run record) before it is reported.
async fn sync_patiently(
    store: &Store,
    target: &Target,
    rules: &Rules,
    opts: &RunOptions,
) -> SchoolReport {
    let mut wait = STORE_RETRY_WAIT;
    let mut report = run::sync_school(store, target, rules, opts).await;
    for _ in 0..STORE_RETRIES {
        if !report.store_busy {
            break;
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
        report = run::sync_school(store, target, rules, opts).await;
    }
    report
}

/// Run every school (or one), `settings.sync.concurrency` at a time; `progress` hears of
/// each school as it finishes. Afterwards, purge tombstones whose retention ended.
pub async fn run(
    store: &Store,
    settings: &Settings,
    opts: &CycleOptions,
    mut progress: impl FnMut(usize, usize, &SchoolReport),
) -> Result<CycleReport, CycleError> {
    let started = Instant::now();
    let rules = Rules::from_settings(settings);
    schools::ensure_config_rows(store, settings).await?;
    let mut connectors = Connectors::default();
    let (targets, mut skipped) =
        targets(store, settings, opts.only.as_ref(), &mut connectors).await?;
    // Shared by the schools running at once: the first to meet a broken connection makes
    // the others on it wait. The lock is never held across an await.
    let connectors = std::sync::Mutex::new(connectors);
    let total = targets.len();
    let mut reports = Vec::with_capacity(total);
    let (rules, run) = (Arc::new(rules), Arc::new(opts.run.clone()));
    let mut running = futures_util::stream::iter(targets.into_iter().map(Arc::new))
        .map(|t| {
            let connectors = &connectors;
            let (rules, run) = (rules.clone(), run.clone());
            async move {
                let broken = lock(connectors).broken(&t);
                match broken {
                    Some(connection) => Ran::Waited(waiting(&t.id.to_string(), &connection)),
                    None => {
                        let report = on_own_task(store.clone(), t.clone(), rules, run).await;
                        Ran::Report(t, Box::new(report))
                    }
                }
            }
        })
        .buffer_unordered(settings.sync.concurrency.max(1));
    while let Some(ran) = running.next().await {
        match ran {
            Ran::Report(target, report) => {
                lock(&connectors).learn(&target, &report);
                crate::memory::give_back();
                progress(reports.len() + 1, total, &report);
                reports.push(*report);
            }
            Ran::Waited(s) => skipped.push(s),
        }
    }
    drop(running);
    let connectors = connectors.into_inner().unwrap_or_else(|p| p.into_inner());
    let problems = connectors.record_problems(store).await;
    reports.sort_by(|a, b| a.school.cmp(&b.school));
    skipped.sort_by(|a, b| a.school.cmp(&b.school));
    let (purged, history) = if opts.run.dry_run {
        (Purged::default(), HistoryPurged::default())
    } else {
        purge(store, settings)
            .await
            .map_err(|e| store.db_error(e))?
    };
    crate::memory::give_back_now();
    Ok(CycleReport {
        schools: reports,
        skipped,
        problems,
        purged,
        history,
        elapsed: started.elapsed(),
    })
}

/// How long the purge at the end of a cycle waits out a busy store (another program holding
/// the write lock) before the cycle reports it as failed.
const PURGE_PATIENCE: Duration = Duration::from_secs(60);

/// What a cycle forgets when it is done: tombstones whose retention ended, and history older
/// than `sync.journal_days`. Tried again while the store is busy: every school of the cycle
/// has already been applied and reported, and a lock that outlasts the busy timeout once
/// (a backup, a command beside the daemon) must not fail the whole cycle at its last step.
/// Both steps can run again: a second try purges what the first left, and the counts add up
/// over the tries (each step counts a chunk once it is committed).
pub async fn purge(
    store: &Store,
    settings: &Settings,
) -> Result<(Purged, HistoryPurged), sea_orm::DbErr> {
    use backon::BackoffBuilder;
    let mut purged = Purged::default();
    let mut history = HistoryPurged::default();
    let mut waits = crate::store::busy_backoff(PURGE_PATIENCE).build();
    loop {
        let now = chrono::Utc::now();
        let before = now - chrono::Duration::days(i64::from(settings.sync.journal_days));
        let tried = match roster::purge(store, now, &mut purged).await {
            Ok(()) => runs::purge_history(store, before, &mut history).await,
            Err(e) => Err(e),
        };
        let e = match tried {
            Ok(()) => return Ok((purged, history)),
            Err(e) => e,
        };
        let Some(wait) = waits.next().filter(|_| crate::store::is_contention(&e)) else {
            return Err(e);
        };
        tracing::info!(error = %e, wait_ms = wait.as_millis() as u64, "The store is busy; the purge at the end of the cycle waits and tries again.");
        tokio::time::sleep(wait).await;
    }
}

/// One school of a cycle: its run, or why it waited.
enum Ran {
    Report(Arc<Target>, Box<SchoolReport>),
    Waited(Skipped),
}

/// One school's run on a task of its own, so the schools running at once parse, merge and
/// diff on every core: polled within the cycle's one task they took turns on one (the other
/// core idled 40% of a 1,000-school bench). Dropping the cycle still stops them.
async fn on_own_task(
    store: Store,
    target: Arc<Target>,
    rules: Arc<Rules>,
    opts: Arc<RunOptions>,
) -> SchoolReport {
    use tracing::Instrument;
    // The cycle's span goes along: the school's log lines stay in it.
    let task = AbortOnDrop(tokio::spawn(
        async move { sync_patiently(&store, &target, &rules, &opts).await }.in_current_span(),
    ));
    match task.await {
        Ok(report) => report,
        // A panic in a school's run ends the cycle as it did before the run had a task.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// A task that is stopped when its handle is dropped (tokio's own handle lets it run on).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn lock(connectors: &std::sync::Mutex<Connectors>) -> std::sync::MutexGuard<'_, Connectors> {
    connectors.lock().unwrap_or_else(|p| p.into_inner())
}
