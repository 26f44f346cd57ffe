//! `rostersync run`: the daemon. A UTC ticker (tokio-cron-scheduler, once a minute) only
//! decides whether the daily cycle is due and enqueues it; workers claim jobs from the table
//! and sync one school each; the admin API serves health, metrics and resyncs; systemd hears
//! READY, STATUS, WATCHDOG (only while the ticker really ticks) and STOPPING.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use chrono::{Timelike, Utc};
use connector_api::SchoolId;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{Mutex, RwLock, watch};

use crate::model::SchoolStatus;
use crate::model::schedule::Daily;
use crate::settings::Settings;
use crate::store::entities::daemon_instance;
use crate::store::queue::{self, Job, JobState};
use crate::store::{Store, schools};
use crate::sync::cycle::{self, Connectors};
use crate::sync::report::Outcome;
use crate::sync::run::{self, Rules, RunOptions, SchoolReport};

/// A job that lost its worker this many times fails instead of being tried again.
const MAX_ATTEMPTS: i32 = 8;
/// How often an idle worker looks for work.
const POLL: Duration = Duration::from_secs(1);
/// A daemon whose heartbeat is older than this is not running.
pub const ALIVE: Duration = Duration::from_secs(90);
/// How long in-flight schools may take to finish after SIGTERM before they are rolled back.
const STOP_GRACE: Duration = Duration::from_secs(60);

/// Everything the daemon's tasks share.
pub struct Daemon {
    pub store: Store,
    settings: Arc<RwLock<Arc<Settings>>>,
    config: Option<PathBuf>,
    connectors: Mutex<Connectors>,
    pub instance: String,
    /// Unix time of the ticker's last tick: readiness and the watchdog depend on it.
    pub last_tick: Arc<AtomicI64>,
    pub metrics: PrometheusHandle,
    /// How long a claimed job is ours without a heartbeat (`sync.lease_seconds`).
    lease: Duration,
    stop: watch::Sender<bool>,
    /// A daily cycle is being worked off; its summary line is logged when it is done.
    cycle_open: AtomicBool,
}

impl Daemon {
    pub async fn settings(&self) -> Arc<Settings> {
        self.settings.read().await.clone()
    }

    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// The ticker ticked within the last three minutes.
    pub fn ticking(&self) -> bool {
        crate::admin::ticked_lately(&self.last_tick)
    }

    /// What the admin API may see and do: the store, the metrics, the ticker's last tick and
    /// the configuration in force; never the daemon itself.
    fn admin_state(&self) -> crate::admin::AdminState {
        crate::admin::AdminState {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            last_tick: self.last_tick.clone(),
            settings: self.settings.clone(),
        }
    }

    fn daily(settings: &Settings) -> Option<Daily> {
        Some(settings.schedule.cycle())
    }

    /// Schools that granted the broker's sync permission today are synced now, not at the
    /// next daily cycle: the broker's daily list of granted institutions says which.
    async fn consent_news(&self, settings: &Settings) {
        if settings.broker.is_none() {
            return;
        }
        let connector = match self.connectors.lock().await.basispoort(settings) {
            Ok(c) => c,
            Err(_) => return, // Each school's run says what is wrong with the connection.
        };
        let granted = match connector.granted_on(crate::sync::run::today()).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error_class = e.class(), error = %e, "Cannot read today's granted permissions from the broker; trying again later.");
                return;
            }
        };
        let rows = match schools::rows(&self.store).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot list the schools.");
                return;
            }
        };
        for school in newly_granted(&rows, &granted) {
            match queue::enqueue(self.store.writer(), &school, "consent", Utc::now(), None).await {
                Ok(q) if !q.joined => {
                    tracing::info!(school = %school, "The school granted sync permission; syncing it now.")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(school = %school, error = %self.store.db_error(e), "Cannot enqueue a school that granted permission.")
                }
            }
        }
    }

    /// One tick: is a daily cycle due (or missed while we were down)? Enqueue it once.
    /// Every quarter of an hour, also look for schools that granted permission.
    async fn tick(&self) {
        let now = Utc::now();
        self.last_tick.store(now.timestamp(), Ordering::Relaxed);
        metrics::gauge!("rostersync_ticker_last_tick_timestamp_seconds")
            .set(now.timestamp() as f64);
        self.metrics.run_upkeep();
        let settings = self.settings().await;
        if let Err(e) = self.heartbeat().await {
            tracing::warn!(error = %e, "Cannot record this instance's heartbeat; retrying next tick.");
        }
        if now.minute().is_multiple_of(15) {
            self.consent_news(&settings).await;
        }
        let Some(daily) = Self::daily(&settings) else {
            return;
        };
        let last = match queue::last_cycle(self.store.db()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %self.store.db_error(e), "Cannot read the last cycle from the store; check the store. The cycle waits.");
                return;
            }
        };
        let Some(date) = daily.due(now, last) else {
            tracing::debug!(last = ?last, "No cycle due.");
            return;
        };
        let rows = match schools::rows(&self.store).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "Cannot list the schools; check the store. The cycle waits.");
                return;
            }
        };
        let slot = daily.slot(date);
        let jobs: Vec<(String, chrono::DateTime<Utc>)> = rows
            .iter()
            .filter(|r| r.las.is_some() || r.broker_id.is_some() || r.zermelo_portal.is_some())
            .map(|r| {
                let offset = chrono::Duration::from_std(daily.offset(&r.id)).unwrap_or_default();
                (r.id.clone(), slot + offset)
            })
            .collect();
        match queue::enqueue_cycle(&self.store, date, &jobs).await {
            Ok(0) => {}
            Ok(n) => {
                self.cycle_open.store(true, Ordering::Relaxed);
                tracing::info!(
                    date = %date,
                    schools = n,
                    catch_up = slot < now - chrono::Duration::minutes(5),
                    "Daily cycle enqueued."
                );
            }
            Err(e) => {
                tracing::error!(error = %self.store.db_error(e), "Cannot enqueue the daily cycle; retrying next tick.")
            }
        }
        self.status().await;
    }

    async fn heartbeat(&self) -> Result<(), sea_orm::DbErr> {
        queue::instance_alive(
            self.store.writer(),
            &self.instance,
            &hostname(),
            std::process::id(),
        )
        .await
    }

    /// Close a claimed job. A job that is no longer ours (its lease expired and another
    /// worker took it) or a store that cannot be written is said: the lease runs out and the
    /// job is handed on, so nothing is lost, but an operator should know why it ran twice.
    async fn close(&self, job: &Job, state: JobState, run: Option<i64>, why: Option<String>) {
        let school = &job.school_id;
        match queue::finish(self.store.writer(), job.id, &self.instance, state, run, why).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    school,
                    job = job.id,
                    "A finished job was no longer this instance's (its lease expired); another worker runs the school."
                )
            }
            Err(e) => {
                tracing::warn!(school, job = job.id, error = %self.store.db_error(e), "Cannot close a finished job; its lease will expire and the school runs again.")
            }
        }
    }

    /// Hand back jobs whose worker stopped answering, every half lease.
    async fn reap(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        loop {
            match queue::reap(self.store.writer(), MAX_ATTEMPTS).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    jobs = n,
                    "Took back jobs whose worker stopped answering; they run again."
                ),
                Err(e) => {
                    tracing::warn!(error = %self.store.db_error(e), "Cannot reap expired leases.")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.lease / 2) => {}
                _ = stop.changed() => break,
            }
        }
    }

    /// Tell systemd what we are doing, in one line.
    async fn status(&self) {
        let open = queue::open(self.store.db())
            .await
            .map(|j| j.len())
            .unwrap_or(0);
        let settings = self.settings().await;
        let next = Self::daily(&settings)
            .map(|d| {
                d.next(Utc::now())
                    .with_timezone(&d.tz)
                    .format("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_default();
        let failing = crate::store::status::list(self.store.db())
            .await
            .map(|l| {
                l.iter()
                    .filter(|s| s.state != SchoolStatus::Active.as_str())
                    .count()
            })
            .unwrap_or(0);
        metrics::gauge!("rostersync_jobs_open").set(open as f64);
        let next_year = settings
            .rollover
            .calendar()
            .live_year(crate::sync::run::today())
            .next()
            .to_string();
        if let Ok(n) = crate::store::prepared::count(self.store.db(), &next_year).await {
            metrics::gauge!("rostersync_schools_prepared").set(n as f64);
        }
        let text = if open > 0 {
            format!("syncing: {open} school(s) queued or running; {failing} frozen or parked")
        } else {
            format!("idle; next cycle {next}; {failing} school(s) frozen or parked")
        };
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&text)]);
    }

    /// Claim and run jobs until told to stop.
    async fn work(self: Arc<Self>, worker: usize) {
        let mut stop = self.stop.subscribe();
        loop {
            if self.stopping() {
                break;
            }
            match queue::claim(&self.store, &self.instance, self.lease).await {
                Ok(Some(job)) => self.run_job(job).await,
                Ok(None) => {
                    tokio::select! {
                        _ = tokio::time::sleep(POLL) => {}
                        _ = stop.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(worker, error = %self.store.db_error(e), "Cannot claim work; trying again shortly.");
                    tokio::time::sleep(POLL * 5).await;
                }
            }
        }
    }

    async fn run_job(self: &Arc<Self>, job: Job) {
        let settings = self.settings().await;
        let Ok(id) = job.school_id.parse::<SchoolId>() else {
            self.close(&job, JobState::Failed, None, Some("not a school id".into()))
                .await;
            return;
        };
        let target = {
            let mut connectors = self.connectors.lock().await;
            cycle::targets(&self.store, &settings, Some(&id), &mut connectors).await
        };
        let mut target = match target {
            Ok((mut t, skipped)) => match t.pop() {
                Some(t) => t,
                None => {
                    let why = skipped
                        .first()
                        .map(|s| s.reason.clone())
                        .unwrap_or_else(|| "nothing to sync".into());
                    self.close(&job, JobState::Done, None, Some(why)).await;
                    return;
                }
            },
            Err(e) => {
                self.close(&job, JobState::Failed, None, Some(e.to_string()))
                    .await;
                return;
            }
        };
        target.fence = job.fence;
        // Keep the lease while the school runs.
        let beat = {
            let me = self.clone();
            let job_id = job.id;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(me.lease / 4).await;
                    match queue::heartbeat(me.store.writer(), job_id, &me.instance, me.lease).await
                    {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => {
                            tracing::warn!(error = %me.store.db_error(e), "Cannot extend a lease.")
                        }
                    }
                }
            })
        };
        let report = run::sync_school(
            &self.store,
            &target,
            &Rules::from_settings(&settings),
            &RunOptions {
                trigger: job.trigger.clone(),
                dry_run: false,
                allow_removals: false,
                today: crate::sync::run::today(),
            },
        )
        .await;
        beat.abort();
        record(&report);
        // A broken connection makes the next schools on it wait; a school that got its
        // answers shows it works again.
        let changed = self.connectors.lock().await.learn(&target, &report);
        for connection in changed {
            let problem = self
                .connectors
                .lock()
                .await
                .problem(&connection)
                .map(str::to_owned);
            cycle::record_problem(&self.store, &connection, problem.as_deref()).await;
        }
        let state = if report.outcome == Outcome::Failed {
            JobState::Failed
        } else {
            JobState::Done
        };
        self.close(&job, state, report.run, report.message.clone())
            .await;
        self.retry_later(&job, &report, &settings).await;
        self.maybe_close_cycle().await;
    }

    /// A transient failure is tried again later the same day, each time waiting twice as long.
    async fn retry_later(&self, job: &Job, report: &SchoolReport, settings: &Settings) {
        let tries = u32::try_from(job.attempts).unwrap_or(u32::MAX);
        if !report.retry {
            return;
        }
        if tries > settings.schedule.retries {
            tracing::warn!(school = %report.school, retries = settings.schedule.retries, "No retries left today; the next daily cycle tries the school again.");
            return;
        }
        let wait = u64::from(settings.schedule.retry_minutes)
            * 60
            * 2u64.pow(tries.saturating_sub(1).min(10));
        let due = Utc::now() + chrono::Duration::seconds(wait as i64);
        match queue::enqueue(self.store.writer(), &report.school, "retry", due, None).await {
            Ok(q) if !q.joined => {
                // Carry the count, so the retries of one cycle are bounded.
                if let Err(e) =
                    queue::carry_attempts(self.store.writer(), q.job, job.attempts).await
                {
                    tracing::warn!(school = %report.school, error = %self.store.db_error(e), "Cannot carry a job's attempts to its retry; it may be retried more often today.");
                }
                metrics::counter!("rostersync_retries_total").increment(1);
                tracing::warn!(school = %report.school, retry_in_minutes = wait / 60, "School will be tried again.");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(school = %report.school, error = %self.store.db_error(e), "Cannot schedule a retry.")
            }
        }
    }

    /// When the last job of a daily cycle is done, log one line with the cycle's totals.
    async fn maybe_close_cycle(&self) {
        if !self.cycle_open.load(Ordering::Relaxed) {
            return;
        }
        let Ok(open) = queue::open(self.store.db()).await else {
            return;
        };
        if open.iter().any(|j| j.trigger == "schedule") {
            return;
        }
        if !self.cycle_open.swap(false, Ordering::Relaxed) {
            return;
        }
        // The cycle is worked off: leavers whose retention ended go for good now, and so does
        // history older than sync.journal_days.
        let settings = self.settings().await;
        match cycle::purge(&self.store, &settings).await {
            Ok((p, h)) => {
                if p.persons + p.groups > 0 {
                    tracing::info!(
                        persons = p.persons,
                        groups = p.groups,
                        "Purged tombstones whose retention ended."
                    );
                }
                if h.runs + h.journal + h.jobs > 0 {
                    tracing::info!(
                        runs = h.runs,
                        journal = h.journal,
                        jobs = h.jobs,
                        "Forgot history older than sync.journal_days."
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %self.store.db_error(e), "Cannot purge expired tombstones; the next cycle tries again.")
            }
        }
        if let Ok(list) = crate::store::status::list(self.store.db()).await {
            let by = |o: Outcome| {
                list.iter()
                    .filter(|s| s.last_outcome.as_deref() == Some(o.as_str()))
                    .count()
            };
            tracing::info!(
                schools = list.len(),
                ok = by(Outcome::Ok),
                unchanged = by(Outcome::Unchanged),
                held = by(Outcome::Held),
                frozen = by(Outcome::Frozen),
                parked = by(Outcome::Parked),
                failed = by(Outcome::Failed),
                "Daily cycle finished."
            );
        }
        self.status().await;
    }

    /// SIGHUP: load the configuration again; keep the old one if the new one is invalid.
    async fn reload(&self) {
        match Settings::load(self.config.as_deref()) {
            Ok(new) => {
                if let Err(e) = schools::ensure_config_rows(&self.store, &new).await {
                    tracing::error!(error = %e, "Configuration reloaded but its schools cannot be stored; keeping the old configuration.");
                    return;
                }
                *self.settings.write().await = Arc::new(new);
                *self.connectors.lock().await = Connectors::default();
                tracing::info!("Configuration reloaded.");
            }
            Err(e) => {
                tracing::error!(error = %e, "The new configuration is invalid; keeping the old one. Fix it and send SIGHUP again.")
            }
        }
    }
}

/// Metrics of one school run.
pub fn record(r: &SchoolReport) {
    metrics::counter!("rostersync_runs_total", "outcome" => r.outcome.as_str()).increment(1);
    metrics::histogram!("rostersync_fetch_seconds").record(r.fetch_time.as_secs_f64());
    if matches!(r.outcome, Outcome::Ok | Outcome::Held | Outcome::Unchanged) {
        metrics::gauge!("rostersync_last_success_timestamp_seconds", "school" => r.school.clone())
            .set(Utc::now().timestamp() as f64);
    }
    let c = &r.counts;
    for (kind, k) in [
        ("pupils", c.pupils),
        ("staff", c.staff),
        ("groups", c.groups),
    ] {
        for (op, n) in [
            ("create", k.created),
            ("update", k.updated),
            ("remove", k.removed),
            ("hold", k.held),
        ] {
            if n > 0 {
                metrics::counter!("rostersync_records_changed_total", "kind" => kind, "operation" => op)
                    .increment(n as u64);
            }
        }
    }
    if c.held() > 0 {
        metrics::counter!("rostersync_held_changes_total").increment(c.held() as u64);
    }
    let g = c.grants;
    for (change, n) in [
        ("granted", g.granted),
        ("restored", g.restored),
        ("pending", g.pending),
        ("revoked", g.revoked),
    ] {
        if n > 0 {
            metrics::counter!("rostersync_grant_changes_total", "change" => change)
                .increment(n as u64);
        }
    }
    if c.conflicts > 0 {
        metrics::counter!("rostersync_source_conflicts_total").increment(c.conflicts as u64);
    }
    // Unresolved identity conflicts as of the school's last diff (an unchanged run did none).
    if matches!(r.outcome, Outcome::Ok | Outcome::Held) {
        metrics::gauge!("rostersync_identity_conflicts", "school" => r.school.clone())
            .set(c.identity_conflicts as f64);
    }
}

/// Schools waiting for the broker's permission (or offboarding) whose institution is in
/// today's granted list.
fn newly_granted(rows: &[crate::store::entities::school::Model], granted: &[i64]) -> Vec<String> {
    rows.iter()
        .filter(|r| SchoolStatus::parse(&r.state).is_some_and(SchoolStatus::wants_consent))
        .filter(|r| r.broker_id.is_some_and(|b| granted.contains(&b)))
        .map(|r| r.id.clone())
        .collect()
}

fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Whether a daemon is alive on this store, and which.
pub async fn alive(store: &Store) -> Result<Option<daemon_instance::Model>, sea_orm::DbErr> {
    queue::live_instance(store.db(), ALIVE).await
}

/// Run the daemon until SIGTERM or SIGINT.
pub async fn run(
    settings: Settings,
    config: Option<PathBuf>,
    store: Store,
    metrics: PrometheusHandle,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::signal::unix::{SignalKind, signal};
    // Before anything runs: a SIGTERM that arrives while the daemon starts must stop it
    // gracefully, not kill it with the default action.
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    schools::ensure_config_rows(&store, &settings).await?;
    let (stop, _) = watch::channel(false);
    let workers = settings.sync.concurrency.max(1);
    let lease = Duration::from_secs(settings.sync.lease_seconds.max(2));
    let daemon = Arc::new(Daemon {
        store,
        settings: Arc::new(RwLock::new(Arc::new(settings))),
        config,
        connectors: Mutex::new(Connectors::default()),
        instance: format!(
            "{}-{}-{:04x}",
            hostname(),
            std::process::id(),
            fastrand_u16()
        ),
        last_tick: Arc::new(AtomicI64::new(0)),
        metrics,
        lease,
        stop,
        cycle_open: AtomicBool::new(false),
    });
    // The socket first: a second instance started by mistake stops before it takes any work.
    let admin = {
        let settings = daemon.settings().await;
        crate::admin::serve(daemon.admin_state(), &settings).await?
    };
    if let Err(e) = daemon.heartbeat().await {
        admin.remove();
        return Err(e).context("cannot register this instance in the store");
    }

    let (mut scheduler, ticker) = start_ticker(&daemon).await?;
    let mut pool = tokio::task::JoinSet::new();
    for n in 0..workers {
        pool.spawn(daemon.clone().work(n));
    }
    let reaper = tokio::spawn(daemon.clone().reap());
    let watchdog = spawn_watchdog(&daemon);
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tracing::info!(instance = %daemon.instance, workers, socket = %admin.path.display(), "rostersync is running.");
    daemon.status().await;

    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => daemon.reload().await,
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    tracing::info!("Stopping: no new schools are started; running ones may finish.");
    let _ = daemon.stop.send(true);
    let _ = scheduler.shutdown().await;
    ticker.abort();
    reaper.abort();
    if let Some(w) = watchdog {
        w.abort();
    }
    let finished = tokio::time::timeout(STOP_GRACE, async {
        while pool.join_next().await.is_some() {}
    })
    .await;
    if finished.is_err() {
        // Dropping the runs rolls their transactions back: nothing is half-applied, and the
        // expired leases send the schools to the next instance or the next start.
        tracing::warn!("Schools still running after the grace period were rolled back.");
        pool.abort_all();
    }
    admin.remove();
    // Checked out: `resync` must not wait for an instance that is gone.
    if let Err(e) = queue::instance_gone(daemon.store.writer(), &daemon.instance).await {
        tracing::warn!(error = %daemon.store.db_error(e), "Cannot check this instance out of the store; `resync` may wait for it until its heartbeat is old.");
    }
    tracing::info!("rostersync stopped.");
    Ok(())
}

/// The ticker: once a minute in UTC it only sends a tick; all decisions are the daemon's
/// (local due times with chrono-tz). The first tick is now: a cycle missed while the daemon
/// was down is caught up. Returns the scheduler and the task that handles the ticks.
async fn start_ticker(
    daemon: &Arc<Daemon>,
) -> anyhow::Result<(
    tokio_cron_scheduler::JobScheduler,
    tokio::task::JoinHandle<()>,
)> {
    use anyhow::Context;
    let (tick_tx, mut ticks) = tokio::sync::mpsc::channel::<()>(4);
    let scheduler = tokio_cron_scheduler::JobScheduler::new()
        .await
        .context("cannot start the ticker")?;
    scheduler
        .add(
            tokio_cron_scheduler::Job::new_async("0 * * * * *", move |_, _| {
                let tx = tick_tx.clone();
                Box::pin(async move {
                    // A full channel means ticks are queued already: dropping one is fine.
                    let _ = tx.try_send(());
                })
            })
            .context("cannot create the ticker's job")?,
        )
        .await
        .context("cannot add the ticker's job")?;
    scheduler.start().await.context("cannot start the ticker")?;
    let d = daemon.clone();
    let ticker = tokio::spawn(async move {
        d.tick().await;
        while ticks.recv().await.is_some() {
            d.tick().await;
        }
    });
    Ok((scheduler, ticker))
}

/// systemd's watchdog, fed only while the ticker really ticks (so a hung daemon is restarted).
fn spawn_watchdog(daemon: &Arc<Daemon>) -> Option<tokio::task::JoinHandle<()>> {
    let timeout = sd_notify::watchdog_enabled()?;
    let every = timeout / 2;
    let d = daemon.clone();
    Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if d.ticking() {
                // Nothing to do if systemd cannot be told: it restarts us when it misses it.
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
        }
    }))
}

fn fastrand_u16() -> u16 {
    let t = Utc::now().timestamp_subsec_nanos();
    (t ^ std::process::id()) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, state: &str, broker_id: Option<i64>) -> crate::store::entities::school::Model {
        let now = Utc::now();
        crate::store::entities::school::Model {
            id: id.into(),
            brin: id[..4].into(),
            dependance: id[4..].into(),
            name: None,
            origin: "config".into(),
            las: None,
            broker_id,
            zermelo_portal: None,
            state: state.into(),
            state_reason: None,
            state_since: None,
            school_year: None,
            fence: 0,
            created_at: now,
            updated_at: now,
            roster_digest: None,
            frozen_by: None,
            frozen_at: None,
            sourced_id: None,
            roster_version: 0,
        }
    }

    #[test]
    fn only_schools_waiting_for_a_permission_granted_today_are_synced_early() {
        let rows = [
            row("10XA00", "awaiting_consent", Some(1)),
            row("11XA00", "offboarding", Some(2)),
            row("12XA00", "active", Some(3)),
            row("13XA00", "awaiting_consent", Some(4)),
            row("14XA00", "awaiting_consent", None),
        ];
        assert_eq!(newly_granted(&rows, &[1, 2, 3]), ["10XA00", "11XA00"]);
        assert!(newly_granted(&rows, &[]).is_empty());
    }
}
