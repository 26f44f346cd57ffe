//! `run` (the daemon), `resync` (ask the daemon for one school now) and `status`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use chrono::Utc;
use clap::Args;
use connector_api::SchoolId;
use metrics_exporter_prometheus::PrometheusBuilder;

use super::{Failure, OutputFormat, table};
use crate::jobs::daemon;
use crate::settings::Settings;
use crate::store::queue;
use crate::store::{OpenMode, Store, runs, status};
use crate::sync::report::Counts;

#[derive(Debug, Args)]
pub struct ResyncArgs {
    #[arg(long, value_name = "ID")]
    school: String,
    /// Wait for the run and print what it did.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

async fn open(settings: &Settings) -> Result<Store, Failure> {
    Store::open(&settings.store, OpenMode::Existing)
        .await
        .map_err(Failure::store)
}

pub async fn run(settings: Settings, config: Option<PathBuf>) -> Result<(), Failure> {
    let store = open(&settings).await?;
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| Failure::failed(anyhow!("cannot set up metrics: {e}")))?;
    crate::record_build_info();
    // The apps' API beside the daemon, when `[api] listen` is set.
    crate::api::serve(&settings, store.clone())
        .await
        .map_err(Failure::failed)?;
    daemon::run(settings, config, store, metrics)
        .await
        .map_err(Failure::failed)
}

/// `rostersync serve`: the apps' API alone, without scheduler or workers (a read replica on
/// a shared PostgreSQL, or beside a daemon on another machine).
pub async fn serve(settings: Settings) -> Result<(), Failure> {
    if settings.api.listen.is_none() {
        return Err(Failure::usage(anyhow!(
            "`serve` needs [api] listen = \"ADDR:PORT\" (and [[api.client]] blocks) in the \
             configuration"
        )));
    }
    if settings.api.client.is_empty() {
        tracing::warn!("No [[api.client]] is configured: every request will be refused.");
    }
    // Before anything listens: a SIGTERM while starting stops it gracefully (the socket is
    // removed), not by the default action.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| Failure::failed(anyhow!("cannot listen for SIGTERM: {e}")))?;
    let store = open(&settings).await?;
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| Failure::failed(anyhow!("cannot set up metrics: {e}")))?;
    crate::record_build_info();
    // Health and metrics on the admin socket, as the daemon has them.
    let home = store.home().to_owned();
    let socket = crate::admin::listen(
        crate::admin::replica_router(store.clone(), metrics),
        None,
        &settings,
        &home,
    )
    .await
    .map_err(Failure::failed)?;
    let addr = crate::api::serve(&settings, store)
        .await
        .map_err(Failure::failed)?
        .ok_or_else(|| Failure::usage(anyhow!("[api] listen is not set")))?;
    let scheme = if settings.api.certificate.is_some() {
        "https"
    } else {
        "http"
    };
    println!(
        "OneRoster API listening on {scheme}://{addr}{}",
        crate::api::BASE
    );
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    socket.remove();
    Ok(())
}

pub async fn resync(settings: &Settings, args: ResyncArgs) -> Result<(), Failure> {
    let id = args
        .school
        .parse::<SchoolId>()
        .map_err(|e| Failure::usage(e.into()))?
        .to_string();
    let store = open(settings).await?;
    let db_err = |e| Failure::failed(store.db_error(e).into());
    if crate::store::schools::row(&store, &id)
        .await
        .map_err(Failure::store)?
        .is_none()
    {
        return Err(Failure::usage(anyhow!(
            "school {id} is not linked (see `rostersync school list`)"
        )));
    }
    let Some(instance) = daemon::alive(&store).await.map_err(db_err)? else {
        return Err(Failure::failed(anyhow!(
            "no rostersync daemon is running against this store (none has checked in for {} s); \
             start it (`systemctl start rostersync`) or sync in this process with \
             `rostersync sync --school {id}`",
            daemon::ALIVE.as_secs()
        )));
    };
    let who = super::operator();
    let q = queue::enqueue(store.writer(), &id, "manual", Utc::now(), Some(&who))
        .await
        .map_err(db_err)?;
    println!(
        "{} job {} for school {id} (daemon {}).",
        if q.joined {
            "Joined the waiting or running"
        } else {
            "Queued"
        },
        q.job,
        instance.id
    );
    if !args.wait {
        return Ok(());
    }
    let started = Instant::now();
    loop {
        let job = queue::get(store.db(), q.job).await.map_err(db_err)?;
        match job {
            Some(j) if queue::JobState::parse(&j.state).is_some_and(queue::JobState::is_closed) => {
                let Some(run) = j.run_id else {
                    let why = j.last_error.unwrap_or_else(|| "no run was recorded".into());
                    return Err(Failure::failed(anyhow!(
                        "job {} for school {id}: {why}",
                        j.id
                    )));
                };
                let r = runs::get(store.db(), run)
                    .await
                    .map_err(db_err)?
                    .ok_or_else(|| Failure::failed(anyhow!("run {run} is gone")))?;
                let c = Counts::parse(&r.counts);
                println!(
                    "Run {run} of school {id}: {} (created {}, updated {}, removed {}, held {}).",
                    runs::shown_outcome(&r),
                    c.created(),
                    c.updated(),
                    c.removed(),
                    c.held()
                );
                if let Some(m) = &r.message {
                    println!("{m}");
                }
                return match r.outcome.as_deref() {
                    Some("ok") | Some("unchanged") => Ok(()),
                    other => Err(Failure::failed(anyhow!(
                        "school {id} ended {} (see `rostersync runs show {run}`)",
                        other.unwrap_or("unfinished")
                    ))),
                };
            }
            Some(_) => {}
            None => return Err(Failure::failed(anyhow!("job {} disappeared", q.job))),
        }
        if started.elapsed() > Duration::from_secs(args.timeout) {
            return Err(Failure::failed(anyhow!(
                "job {} for school {id} has not finished after {} s; it goes on in the daemon \
                 (`rostersync runs --school {id}`)",
                q.job,
                args.timeout
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub async fn status(settings: &Settings, args: StatusArgs) -> Result<(), Failure> {
    let store = open(settings).await?;
    let list = status::list(store.db())
        .await
        .map_err(|e| Failure::failed(store.db_error(e).into()))?;
    if args.format == OutputFormat::Json {
        return super::print_json(&list);
    }
    let tz = settings.schedule.timezone.0;
    let when = |t: Option<chrono::DateTime<Utc>>| {
        t.map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|| "-".into())
    };
    let mut t = table::Table::new(&[
        "SCHOOL",
        "STATE",
        "LAST RUN",
        "OUTCOME",
        "LAST SUCCESS",
        "PUPILS",
        "STAFF",
        "GROUPS",
        "HELD",
        "CONFLICTS",
    ]);
    for s in &list {
        t.row(vec![
            s.id.clone(),
            s.state.clone(),
            when(s.last_run_at),
            table::cell(s.last_outcome.as_ref()),
            when(s.last_success_at),
            s.pupils.to_string(),
            s.staff.to_string(),
            s.groups.to_string(),
            match s.held_run {
                Some(run) => format!("{} (run {run})", s.held),
                None => "0".into(),
            },
            s.identity_conflicts.to_string(),
        ]);
    }
    for p in status::problems(store.db()).await.unwrap_or_default() {
        println!(
            "PROBLEM with {} since {}: {}",
            p.connection,
            when(p.since),
            p.problem
        );
    }
    for problem in crate::sources::client_certificates(settings)
        .iter()
        .filter_map(|c| c.problem(Utc::now()))
    {
        println!("PROBLEM: {problem}");
    }
    print!("{}", t.render());
    for s in &list {
        for said in s.attention() {
            println!("{} {said}", s.id);
        }
    }
    match daemon::alive(&store).await {
        Ok(Some(d)) => println!(
            "Daemon {} last checked in at {}.",
            d.id,
            when(Some(d.heartbeat_at))
        ),
        Ok(None) => println!("No daemon is running against this store."),
        Err(_) => {}
    }
    Ok(())
}
