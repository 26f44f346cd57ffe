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
use crate::store::schools::{self, LAS_KEY};
use crate::store::sealing::MasterKey;
use crate::store::{Store, StoreError};
use crate::sync::apply::{
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
    #[serde(serialize_with = "seconds")]
    pub elapsed: Duration,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

impl CycleReport {
    /// Exit 1 when any school needs a person's attention, or waits for a broken connection.
    pub fn needs_attention(&self) -> bool {
        self.schools.iter().any(|r| r.outcome.needs_attention()) || !self.problems.is_empty()
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
    /// When the broker connection was last checked, and what was wrong with it.
    broker_checked: Option<(Instant, Option<String>)>,
}

/// How long a broker check holds before the connection is checked again.
const CHECK_EVERY: Duration = Duration::from_secs(600);

impl Connectors {
    /// What is wrong with the broker connection itself (our client certificate refused,
    /// our publisher identity unknown), checked at most every ten minutes. Such a problem is
    /// one problem, not one per school: the schools with the broker wait for it to be fixed.
    /// A transient failure is not a problem here; each school's own fetch will say so.
    pub async fn broker_problem(&mut self, settings: &Settings) -> Option<String> {
        if let Some((at, problem)) = &self.broker_checked
            && at.elapsed() < CHECK_EVERY
        {
            return problem.clone();
        }
        let connector = self.broker(settings).ok()?;
        let problem = match connector.check().await {
            Err(e) if e.kind() == connector_api::ErrorKind::Supplier => {
                let problem = format!(
                    "the broker refused rostersync's own identity: {e}; {}",
                    e.advice()
                );
                tracing::error!(error_class = e.class(), problem = %problem, "The broker connection is broken; its schools wait.");
                Some(problem)
            }
            _ => None,
        };
        self.broker_checked = Some((Instant::now(), problem.clone()));
        problem
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
                        Arc::new(sources::Limited::new(c, l.max_concurrent)) as Arc<dyn Connector>
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
                MasterKey::load_or_create(settings, store.home()).map_err(|e| e.to_string())
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
    let mut master = Master {
        settings,
        store,
        key: None,
    };
    let (mut out, mut skipped) = (Vec::new(), Vec::new());
    let mut broker_asked = false;
    for row in rows {
        let Ok(id) = row.id.parse::<SchoolId>() else {
            continue;
        };
        let config = settings.configured_school(&id);
        if row.origin == "config" && config.is_none() {
            skipped.push(Skipped {
                school: row.id.clone(),
                reason: "no longer in the configuration file; its stored data is kept \
                         (remove it with `rostersync school remove` after re-adding it, or \
                         put its [[school]] block back)"
                    .into(),
            });
            continue;
        }
        let mut sources = Vec::new();
        if let Some(las) = row.las.clone() {
            sources.push(Source {
                name: LAS,
                connector: connectors.get(settings, &las),
                credential: Some(las_credential(store, config, &mut master, &id).await),
                remote_id: None,
            });
        }
        if let Some(broker_id) = row.broker_id {
            broker_asked = true;
            if connectors.broker_problem(settings).await.is_some() {
                skipped.push(Skipped {
                    school: row.id.clone(),
                    reason: "waiting for the broker connection, which refused rostersync's \
                             identity (the problem is said once, above or in the log)"
                        .into(),
                });
                continue;
            }
            sources.push(Source {
                name: BROKER,
                connector: connectors.broker(settings),
                credential: None,
                remote_id: Some(broker_id.to_string()),
            });
        }
        if let Some(z) = config.and_then(|c| c.zermelo.as_ref()) {
            sources.push(Source {
                name: PORTAL,
                connector: connectors.portal(&row.id, z),
                credential: Some(z.token.load_string().map_err(|e| e.to_string())),
                remote_id: None,
            });
        }
        if sources.is_empty() {
            skipped.push(Skipped {
                school: row.id.clone(),
                reason: "no LAS connection and no broker id: nothing to ask yet".into(),
            });
            continue;
        }
        out.push(Target {
            sources,
            id,
            fence: None,
        });
    }
    if broker_asked {
        // `status` shows it beside the schools that wait; best effort.
        let problem = connectors.broker_problem(settings).await;
        if let Err(e) =
            crate::store::status::set_problem(store.writer(), "broker", problem.as_deref()).await
        {
            tracing::warn!(error = %store.db_error(e), "Cannot record the broker connection's state.");
        }
    }
    Ok((out, skipped))
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
    let mut report = apply::sync_school(store, target, rules, opts).await;
    for _ in 0..STORE_RETRIES {
        if !report.store_busy {
            break;
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
        report = apply::sync_school(store, target, rules, opts).await;
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
    let (targets, skipped) = targets(store, settings, opts.only.as_ref(), &mut connectors).await?;
    let problems: Vec<String> = connectors
        .broker_checked
        .and_then(|(_, p)| p)
        .into_iter()
        .collect();
    let total = targets.len();
    let mut reports = Vec::with_capacity(total);
    let mut running = futures_util::stream::iter(targets.iter())
        .map(|t| sync_patiently(store, t, &rules, &opts.run))
        .buffer_unordered(settings.sync.concurrency.max(1));
    while let Some(report) = running.next().await {
        progress(reports.len() + 1, total, &report);
        reports.push(report);
    }
    drop(running);
    reports.sort_by(|a, b| a.school.cmp(&b.school));
    let purged = if opts.run.dry_run {
        Purged::default()
    } else {
        roster::purge(store, chrono::Utc::now())
            .await
            .map_err(|e| store.db_error(e))?
    };
    Ok(CycleReport {
        schools: reports,
        skipped,
        problems,
        purged,
        elapsed: started.elapsed(),
    })
}
