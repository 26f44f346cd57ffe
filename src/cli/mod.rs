//! The command line: parsing, dispatch, exit codes and output formats.
//! Exit 0 ok, 1 a run failed or was held, 2 bad usage or configuration.

mod assets;
#[cfg(feature = "simulator")]
mod bench;
#[cfg(feature = "simulator")]
mod bench_api;
mod check;
mod daemon;
#[cfg(feature = "simulator")]
mod demo;
mod history;
mod init;
mod local;
mod permissions;
mod rollover;
mod school;
#[cfg(feature = "simulator")]
mod simulate;
mod sync;
mod table;
mod undo;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;

use crate::settings::{LogFormat, Settings};
use crate::store::{OpenMode, Store, StoreError};

#[derive(Debug, Parser)]
#[command(
    name = "rostersync",
    version = crate::LONG_VERSION,
    about = "Roster synchronization for Dutch schools: LAS (UWLR), Basispoort and Zermelo into one store.",
    propagate_version = true
)]
pub struct Cli {
    /// Configuration file (TOML). Without it: /etc/rostersync/rostersync.toml when it exists,
    /// else the built-in defaults; `ROSTERSYNC__SECTION__KEY` variables apply on top.
    #[arg(long, global = true, env = "ROSTERSYNC_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log format; `auto` picks journald under systemd, text on a terminal, JSON otherwise.
    #[arg(long, global = true, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the store or bring its schema up to date.
    Migrate(MigrateArgs),
    /// First-run setup on a server: the master key as a systemd credential, a starter
    /// configuration, check-config, the store, and what to do next. Safe to run again.
    Init(init::InitArgs),
    /// The man pages and shell completions, for packaging.
    #[command(hide = true)]
    Assets(assets::AssetsArgs),
    /// Validate the configuration, read every secret it names, and print it (secrets as references).
    CheckConfig {
        /// Also ask every LAS once for every school and report what happened.
        #[arg(long)]
        online: bool,
    },
    /// Manage the schools rostersync serves.
    School {
        #[command(subcommand)]
        action: school::SchoolCommand,
    },
    /// The daemon: the daily cycle, workers, the admin API (and the apps' API when
    /// `[api] listen` is set); runs until SIGTERM.
    Run,
    /// The apps' API (OneRoster 1.2) alone, without scheduler or workers; runs until SIGTERM.
    Serve,
    /// Ask the running daemon to sync one school now.
    Resync(daemon::ResyncArgs),
    /// Every school: state, last run, last success, what is stored, what waits for approval.
    Status(daemon::StatusArgs),
    /// People added and edited by hand; fields a source owns are locked.
    Person {
        #[command(subcommand)]
        action: local::PersonCommand,
    },
    /// Groups added and edited by hand; groups a source supplies are locked.
    Group {
        #[command(subcommand)]
        action: local::GroupCommand,
    },
    /// Each group a person can see, at which level, and why (rule, source fact, since when).
    Permissions(permissions::PermissionsArgs),
    /// Can this staff member see this pupil? yes (exit 0) or no (exit 1), with the reason.
    Can(permissions::CanArgs),
    /// Grants made by hand: kept by every sync.
    Grant {
        #[command(subcommand)]
        action: permissions::GrantCommand,
    },
    /// Sync every school (or one) now, in this process, and print what changed.
    Sync(sync::SyncArgs),
    /// Print a school's current roster as JSON.
    Export(history::ExportArgs),
    /// Run history: outcome and counts per kind and operation; `runs show N` for one run.
    Runs(history::RunsArgs),
    /// The journal: what changed, old and new value, source and the rule that decided it.
    Changes(history::ChangesArgs),
    /// Apply the removals the brakes held in a run.
    Approve(history::ApproveArgs),
    /// Put back what a run applied, as a run of its own (the journal says what).
    Undo(undo::UndoArgs),
    /// The summer: per school, next school year prepared or not and what the switch will
    /// change.
    Rollover(rollover::RolloverArgs),
    /// Serve simulated schools as a real LAS on 127.0.0.1 (for trying out, tests and support).
    #[cfg(feature = "simulator")]
    Simulate(simulate::SimulateArgs),
    /// A full demonstration: simulated LAS, a temporary SQLite store, two days of syncs.
    #[cfg(feature = "simulator")]
    Demo(demo::DemoArgs),
    /// Measure the sync engine end to end against the simulator (SQLite in a temporary directory).
    #[cfg(feature = "simulator")]
    Bench(bench::BenchArgs),
}

impl Command {
    /// Commands that do not read the configuration file at start.
    pub fn stands_alone(&self) -> bool {
        matches!(self, Command::Init(_) | Command::Assets(_))
    }

    /// The demo and the bench explain themselves on stdout; their per-school log lines would
    /// only interleave.
    pub fn explains_itself(&self) -> bool {
        #[cfg(feature = "simulator")]
        if matches!(self, Command::Demo(_) | Command::Bench(_)) {
            return true;
        }
        false
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// Why a command failed, and with which exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl Failure {
    /// Bad usage or configuration: exit 2.
    pub fn usage(error: anyhow::Error) -> Self {
        Failure { code: 2, error }
    }

    /// The work itself failed: exit 1.
    pub fn failed(error: anyhow::Error) -> Self {
        Failure { code: 1, error }
    }

    pub fn store(e: StoreError) -> Self {
        if e.is_setup() {
            Failure::usage(e.into())
        } else {
            Failure::failed(e.into())
        }
    }
}

/// The one person `text` names.
pub async fn one_person(
    store: &Store,
    text: &str,
) -> Result<crate::store::entities::person::Model, Failure> {
    let found = crate::store::journal::find_person(store.db(), text)
        .await
        .map_err(|e| Failure::store(store.db_error(e)))?;
    match found.as_slice() {
        [] => Err(Failure::failed(anyhow::anyhow!(
            "no person has the id or key '{text}' (ids are in `rostersync export`)"
        ))),
        [p] => Ok(p.clone()),
        many => Err(Failure::usage(anyhow::anyhow!(
            "'{text}' names {} persons ({}); give the id",
            many.len(),
            many.iter()
                .map(|p| format!("{} at {}", p.id, p.school_id))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Who is at the keyboard, for the journal and resync requests.
pub fn operator() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "cli".into())
}

pub fn print_json<T: Serialize>(value: &T) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::failed(anyhow::anyhow!("cannot encode the output as JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

pub async fn run(
    settings: Settings,
    config: Option<PathBuf>,
    command: Command,
) -> Result<(), Failure> {
    match command {
        Command::Run => daemon::run(settings, config).await,
        Command::Serve => daemon::serve(settings).await,
        Command::Resync(args) => daemon::resync(&settings, args).await,
        Command::Status(args) => daemon::status(&settings, args).await,
        Command::Migrate(args) => migrate(&settings, &args).await,
        Command::Init(args) => init::run(config, &args).await,
        Command::Assets(args) => assets::run(&args),
        Command::CheckConfig { online } => check::run(&settings, online).await,
        Command::School { action } => school::run(&settings, action).await,
        Command::Person { action } => local::person(&settings, action).await,
        Command::Group { action } => local::group(&settings, action).await,
        Command::Permissions(args) => permissions::permissions(&settings, args).await,
        Command::Can(args) => permissions::can(&settings, args).await,
        Command::Grant { action } => permissions::grant(&settings, action).await,
        Command::Sync(args) => sync::run(&settings, args).await,
        Command::Export(args) => history::export(&settings, args).await,
        Command::Runs(args) => history::runs(&settings, args).await,
        Command::Changes(args) => history::changes(&settings, args).await,
        Command::Approve(args) => history::approve(&settings, args).await,
        Command::Undo(args) => undo::run(&settings, args).await,
        Command::Rollover(args) => rollover::run(&settings, args).await,
        #[cfg(feature = "simulator")]
        Command::Simulate(args) => simulate::run(args).await,
        #[cfg(feature = "simulator")]
        Command::Demo(args) => demo::run(args).await,
        #[cfg(feature = "simulator")]
        Command::Bench(args) => bench::run(args).await,
    }
}

/// Root migrating a SQLite store (`init`, a package upgrade) must not leave files the
/// service's user cannot open: the store and its WAL files that root owns go to the owner of
/// their directory. Never through a link.
fn give_store_files_to_their_directory(store: &Store) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let dir = std::fs::metadata(store.home())?;
    if dir.uid() == 0 {
        return Ok(());
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let path = PathBuf::from(format!("{}{suffix}", store.shown()));
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() && m.uid() == 0 => {
                std::os::unix::fs::lchown(&path, Some(dir.uid()), Some(dir.gid())).map_err(
                    |e| {
                        anyhow::anyhow!(
                            "cannot give {} to its directory's owner: {e}",
                            path.display()
                        )
                    },
                )?;
            }
            _ => {}
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// What a package upgrade runs: migrate only when `store.migrate_on_upgrade = true`, else
    /// say what to run. Exit 0 when the store is current (or not created yet), 3 when it is
    /// still behind (then the package does not restart the daemon).
    #[arg(long)]
    on_upgrade: bool,
}

/// `migrate --on-upgrade`'s exit code when the store stays behind.
const EXIT_BEHIND: u8 = 3;

async fn migrate(settings: &Settings, args: &MigrateArgs) -> Result<(), Failure> {
    if args.on_upgrade {
        match Store::open(&settings.store, OpenMode::Existing).await {
            Ok(store) => {
                println!("The store at {} is up to date.", store.shown());
                return Ok(());
            }
            Err(StoreError::Missing(shown)) => {
                println!(
                    "No store at {shown} yet: nothing to migrate (`rostersync init` makes it)."
                );
                return Ok(());
            }
            Err(StoreError::Behind { shown, pending }) if !settings.store.migrate_on_upgrade => {
                return Err(Failure {
                    code: EXIT_BEHIND,
                    error: anyhow::anyhow!(
                        "the store at {shown} needs {pending} migration(s) for this version; the \
                         running daemon was left alone. Back the store up, run `rostersync \
                         migrate` as root, then `systemctl restart rostersync` (or set \
                         store.migrate_on_upgrade = true to let upgrades do it)"
                    ),
                });
            }
            Err(StoreError::Behind { .. }) => {}
            Err(e) => return Err(Failure::store(e)),
        }
    }
    let store = Store::open(&settings.store, OpenMode::Create)
        .await
        .map_err(Failure::store)?;
    let applied = store.migrate().await.map_err(Failure::store)?;
    if store.backend() == sea_orm::DbBackend::Sqlite {
        give_store_files_to_their_directory(&store).map_err(Failure::failed)?;
    }
    if applied.is_empty() {
        println!("The store at {} is up to date.", store.shown());
    } else {
        tracing::info!(
            store = store.shown(),
            applied = applied.len(),
            "Store migrated."
        );
        println!(
            "Applied {} migration(s) to the store at {}: {}.",
            applied.len(),
            store.shown(),
            applied.join(", ")
        );
    }
    Ok(())
}
