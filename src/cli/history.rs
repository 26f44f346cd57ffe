//! What happened: `runs`, `runs show N`, `changes --run N | --person ID`, `approve --run N`,
//! and `export --school ID`.

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use connector_api::SchoolId;
use serde::Serialize;

use super::{Failure, OutputFormat, table};
use crate::settings::Settings;
use crate::store::journal::{self, Change};
use crate::store::runs::{self, Run};
use crate::store::{OpenMode, Store, export, held};
use crate::sync::report::Counts;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RunsArgs {
    #[command(subcommand)]
    show: Option<RunsCommand>,
    /// Only runs of this school.
    #[arg(long, value_name = "ID")]
    school: Option<String>,
    /// How many of the newest runs.
    #[arg(long, default_value_t = 50)]
    limit: u64,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

#[derive(Debug, Subcommand)]
enum RunsCommand {
    /// One run in full: outcome, why, counts per kind and operation, held changes.
    Show {
        run: i64,
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["run", "person"])))]
pub struct ChangesArgs {
    /// Every change a run made.
    #[arg(long)]
    run: Option<i64>,
    /// Every change to one person: the id `export` prints, or any of their keys.
    #[arg(long, value_name = "ID")]
    person: Option<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The run whose held removals to apply.
    #[arg(long)]
    run: i64,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long, value_name = "ID")]
    school: String,
    /// A school year such as 2027-2028: the live one (the default), or next year as the LAS
    /// has it prepared in the summer (not live: ids of pupils who are new then are `new:KEY`).
    #[arg(long, value_name = "YEAR")]
    school_year: Option<String>,
    /// The only format: JSON as documented in ARCHITECTURE.md.
    #[arg(long, value_enum, default_value_t = ExportFormat::Json)]
    format: ExportFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    Json,
}

async fn open(settings: &Settings) -> Result<Store, Failure> {
    Store::open(&settings.store, OpenMode::Existing)
        .await
        .map_err(Failure::store)
}

fn db_failure(store: &Store) -> impl Fn(sea_orm::DbErr) -> Failure + '_ {
    |e| Failure::failed(store.db_error(e).into())
}

/// Times are shown in the schedule's time zone: that is where the operators are.
fn local(settings: &Settings, t: DateTime<Utc>) -> String {
    t.with_timezone(&settings.schedule.timezone.0)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A run as `--format json` prints it.
#[derive(Debug, Serialize)]
struct RunOut {
    id: i64,
    school: String,
    trigger: String,
    dry_run: bool,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    outcome: String,
    error_class: Option<String>,
    message: Option<String>,
    counts: Counts,
}

fn run_out(r: &Run) -> RunOut {
    RunOut {
        id: r.id,
        school: r.school_id.clone(),
        trigger: r.trigger.clone(),
        dry_run: r.dry_run,
        started_at: r.started_at,
        finished_at: r.finished_at,
        outcome: runs::shown_outcome(r).to_owned(),
        error_class: r.error_class.clone(),
        message: r.message.clone(),
        counts: Counts::parse(&r.counts),
    }
}

fn duration(r: &Run) -> String {
    r.finished_at
        .map(|f| format!("{:.2}s", (f - r.started_at).as_seconds_f64()))
        .unwrap_or_else(|| "-".into())
}

pub async fn runs(settings: &Settings, args: RunsArgs) -> Result<(), Failure> {
    if let Some(RunsCommand::Show { run, format }) = args.show {
        return show(settings, run, format).await;
    }
    let school = args
        .school
        .as_deref()
        .map(|s| s.parse::<SchoolId>().map(|id| id.to_string()))
        .transpose()
        .map_err(|e| Failure::usage(e.into()))?;
    let store = open(settings).await?;
    let list = runs::list(store.db(), school.as_deref(), args.limit)
        .await
        .map_err(db_failure(&store))?;
    if args.format == OutputFormat::Json {
        return super::print_json(&list.iter().map(run_out).collect::<Vec<_>>());
    }
    let mut t = table::Table::new(&[
        "RUN", "SCHOOL", "TRIGGER", "STARTED", "TOOK", "OUTCOME", "CREATED", "UPDATED", "REMOVED",
        "HELD",
    ]);
    for r in &list {
        let c = Counts::parse(&r.counts);
        t.row(vec![
            r.id.to_string(),
            r.school_id.clone(),
            r.trigger.clone(),
            local(settings, r.started_at),
            duration(r),
            format!(
                "{}{}",
                runs::shown_outcome(r),
                if r.dry_run { " (dry run)" } else { "" }
            ),
            c.created().to_string(),
            c.updated().to_string(),
            c.removed().to_string(),
            c.held().to_string(),
        ]);
    }
    print!("{}", t.render());
    if list.is_empty() {
        println!("No runs yet: `rostersync sync` runs every school once.");
    } else {
        println!("`rostersync runs show N` tells what a run did and why.");
    }
    Ok(())
}

async fn show(settings: &Settings, id: i64, format: OutputFormat) -> Result<(), Failure> {
    let store = open(settings).await?;
    let Some(r) = runs::get(store.db(), id)
        .await
        .map_err(db_failure(&store))?
    else {
        return Err(Failure::usage(anyhow!(
            "there is no run {id} (see `rostersync runs`)"
        )));
    };
    let held = held::of_run(store.db(), id)
        .await
        .map_err(db_failure(&store))?;
    let changes = journal::of_run(store.db(), id)
        .await
        .map_err(db_failure(&store))?;
    if format == OutputFormat::Json {
        #[derive(Serialize)]
        struct Shown {
            #[serde(flatten)]
            run: RunOut,
            held: Vec<HeldOut>,
            journal_entries: usize,
        }
        #[derive(Serialize)]
        struct HeldOut {
            kind: String,
            entity_id: Option<i64>,
            detail: serde_json::Value,
            state: String,
        }
        return super::print_json(&Shown {
            run: run_out(&r),
            held: held
                .iter()
                .map(|h| HeldOut {
                    kind: h.kind.clone(),
                    entity_id: h.entity_id,
                    detail: serde_json::from_str(&h.detail).unwrap_or_default(),
                    state: h.state.clone(),
                })
                .collect(),
            journal_entries: changes.len(),
        });
    }
    let c = Counts::parse(&r.counts);
    println!(
        "Run {} of school {} ({}{})",
        r.id,
        r.school_id,
        r.trigger,
        if r.dry_run { ", dry run" } else { "" }
    );
    println!(
        "Started   {} ({}), took {}",
        local(settings, r.started_at),
        settings.schedule.timezone,
        duration(&r)
    );
    println!(
        "Outcome   {}{}",
        runs::shown_outcome(&r),
        r.error_class
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    );
    if r.outcome.is_none() {
        println!(
            "          The run never recorded an outcome: the process stopped mid-run (or is \
             still running). Nothing of an unfinished run is applied."
        );
    }
    if let Some(m) = &r.message {
        println!("Why       {m}");
    }
    println!(
        "Received  {} pupils, {} staff, {} groups, {} rejected",
        c.received.pupils, c.received.staff, c.received.groups, c.received.rejected
    );
    let mut t = table::Table::new(&["", "CREATED", "UPDATED", "REMOVED", "HELD"]);
    for (name, k) in [
        ("pupils", c.pupils),
        ("staff", c.staff),
        ("groups", c.groups),
    ] {
        t.row(vec![
            name.into(),
            k.created.to_string(),
            k.updated.to_string(),
            k.removed.to_string(),
            k.held.to_string(),
        ]);
    }
    t.row(vec![
        "memberships".into(),
        c.memberships.added.to_string(),
        "-".into(),
        c.memberships.removed.to_string(),
        c.memberships.held.to_string(),
    ]);
    println!();
    print!("{}", t.render());
    if c.conflicts > 0 {
        println!("{} identity conflict(s): see the journal.", c.conflicts);
    }
    if !held.is_empty() {
        let waiting = held.iter().filter(|h| h.state == held::HELD).count();
        println!();
        if waiting > 0 {
            println!(
                "{waiting} removal(s) held by the brakes. If they are real: `rostersync approve --run {id}`"
            );
        } else {
            println!(
                "{} removal(s) were held; they are {} now.",
                held.len(),
                held[0].state
            );
        }
    }
    println!();
    println!(
        "{} journal entr{}{}",
        changes.len(),
        if changes.len() == 1 { "y" } else { "ies" },
        if changes.is_empty() {
            String::new()
        } else {
            format!(": `rostersync changes --run {id}`")
        }
    );
    Ok(())
}

fn print_changes(
    settings: &Settings,
    changes: &[Change],
    format: OutputFormat,
) -> Result<(), Failure> {
    if format == OutputFormat::Json {
        #[derive(Serialize)]
        struct Out<'a> {
            /// None for a run's create, which the person's row keeps.
            id: Option<i64>,
            run: Option<i64>,
            school: &'a str,
            at: DateTime<Utc>,
            entity: &'a str,
            entity_id: Option<i64>,
            person: Option<i64>,
            operation: &'a str,
            field: Option<&'a str>,
            old: Option<&'a str>,
            new: Option<&'a str>,
            source: &'a str,
            rule: &'a str,
        }
        return super::print_json(
            &changes
                .iter()
                .map(|c| Out {
                    id: c.id,
                    run: c.run_id,
                    school: &c.school_id,
                    at: c.at.at(),
                    entity: &c.entity,
                    entity_id: c.entity_id,
                    person: c.person_id,
                    operation: &c.operation,
                    field: c.field.as_deref(),
                    old: c.old_value.as_deref(),
                    new: c.new_value.as_deref(),
                    source: &c.source,
                    rule: &c.rule,
                })
                .collect::<Vec<_>>(),
        );
    }
    let mut t = table::Table::new(&[
        "AT", "RUN", "SCHOOL", "ENTITY", "ID", "CHANGE", "FIELD", "OLD", "NEW", "SOURCE", "RULE",
    ]);
    for c in changes {
        t.row(vec![
            local(settings, c.at.at()),
            table::cell(c.run_id),
            c.school_id.clone(),
            c.entity.clone(),
            table::cell(c.entity_id),
            c.operation.clone(),
            table::cell(c.field.as_ref()),
            table::cell(c.old_value.as_ref()),
            table::cell(c.new_value.as_ref()),
            c.source.clone(),
            c.rule.clone(),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

pub async fn changes(settings: &Settings, args: ChangesArgs) -> Result<(), Failure> {
    let store = open(settings).await?;
    let list = match (args.run, &args.person) {
        (Some(run), _) => {
            if runs::get(store.db(), run)
                .await
                .map_err(db_failure(&store))?
                .is_none()
            {
                return Err(Failure::usage(anyhow!(
                    "there is no run {run} (see `rostersync runs`)"
                )));
            }
            journal::of_run(store.db(), run)
                .await
                .map_err(db_failure(&store))?
        }
        (None, Some(who)) => {
            let found = journal::find_person(store.db(), who)
                .await
                .map_err(db_failure(&store))?;
            match found.as_slice() {
                [] => {
                    return Err(Failure::usage(anyhow!(
                        "no person has the id or key '{who}' (ids are in `rostersync export`; \
                         a purged leaver has no history left)"
                    )));
                }
                [p] => journal::of_person(store.db(), p.id)
                    .await
                    .map_err(db_failure(&store))?,
                many => {
                    let ids: Vec<String> = many
                        .iter()
                        .map(|p| format!("{} (school {})", p.id, p.school_id))
                        .collect();
                    return Err(Failure::usage(anyhow!(
                        "'{who}' names {} persons: {}; give the id",
                        many.len(),
                        ids.join(", ")
                    )));
                }
            }
        }
        (None, None) => return Err(Failure::usage(anyhow!("give --run N or --person ID"))),
    };
    print_changes(settings, &list, args.format)
}

pub async fn approve(settings: &Settings, args: ApproveArgs) -> Result<(), Failure> {
    use crate::sync::approve::{ApproveError, approve};
    let store = open(settings).await?;
    let rules = crate::sync::run::Rules::from_settings(settings);
    match approve(&store, &rules, args.run, &super::operator()).await {
        Ok(done) => {
            println!("{}", done.said());
            Ok(())
        }
        Err(ApproveError::Store(e)) => Err(Failure::store(e)),
        Err(e) => Err(Failure::usage(e.into())),
    }
}

pub async fn export(settings: &Settings, args: ExportArgs) -> Result<(), Failure> {
    let ExportFormat::Json = args.format;
    let school = args
        .school
        .parse::<SchoolId>()
        .map_err(|e| Failure::usage(e.into()))?
        .to_string();
    let store = open(settings).await?;
    if let Some(year) = &args.school_year {
        let rights = crate::permissions::Rights::from_settings(&settings.rights);
        return match crate::sync::summer::export_year(&store, &school, year, &rights.rules)
            .await
            .map_err(db_failure(&store))?
        {
            Ok(e) => super::print_json(&e),
            Err(why) => Err(Failure::usage(anyhow!(why))),
        };
    }
    match export::export(store.db(), &school)
        .await
        .map_err(db_failure(&store))?
    {
        Some(e) => super::print_json(&e),
        None => Err(Failure::usage(anyhow!(
            "school {school} has no data in the store yet (see `rostersync school list`; \
             `rostersync sync --school {school}` fetches it)"
        ))),
    }
}
