//! `rostersync rollover [status] [--school ID] [--format json]`: the summer per school.

use clap::{Args, Subcommand};
use connector_api::SchoolId;

use super::{Failure, OutputFormat, print_json, table};
use crate::settings::Settings;
use crate::store::{OpenMode, Store};
use crate::sync::summer::{self, SchoolSummer, Standing};

#[derive(Debug, Args)]
pub struct RolloverArgs {
    #[command(subcommand)]
    command: Option<RolloverCommand>,
    /// Only this school.
    #[arg(long, global = true, value_name = "ID")]
    school: Option<String>,
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

#[derive(Debug, Subcommand)]
enum RolloverCommand {
    /// Per school: next year prepared or not, since when, and what the switch will change
    /// (the default).
    Status,
}

fn row(s: &SchoolSummer, tz: chrono_tz::Tz) -> Vec<String> {
    let mut cells = vec![
        s.school.clone(),
        table::cell(s.school_year.as_ref()),
        s.next_year.clone(),
    ];
    match &s.standing {
        Standing::Prepared {
            since, changes: c, ..
        } => {
            cells.push("prepared".into());
            cells.push(since.with_timezone(&tz).format("%Y-%m-%d").to_string());
            for n in [
                c.moving_up,
                c.leaving,
                c.arriving,
                c.teachers_with_new_groups,
                c.groups_ending,
                c.groups_beginning,
            ] {
                cells.push(n.to_string());
            }
        }
        other => {
            cells.push(
                match other {
                    Standing::NotPrepared => "not prepared yet",
                    Standing::Switched => "switched early",
                    _ => "LAS not rolled over",
                }
                .into(),
            );
            cells.extend(std::iter::repeat_n("-".to_owned(), 7));
        }
    }
    cells
}

pub async fn run(settings: &Settings, args: RolloverArgs) -> Result<(), Failure> {
    let RolloverCommand::Status = args.command.unwrap_or(RolloverCommand::Status);
    let only = args
        .school
        .as_deref()
        .map(|s| s.parse::<SchoolId>().map(|id| id.to_string()))
        .transpose()
        .map_err(|e| Failure::usage(e.into()))?;
    let store = Store::open(&settings.store, OpenMode::Existing)
        .await
        .map_err(Failure::store)?;
    let calendar = settings.rollover.calendar();
    let list = summer::status(
        &store,
        &calendar,
        crate::sync::run::today(),
        only.as_deref(),
    )
    .await
    .map_err(|e| Failure::store(store.db_error(e)))?;
    if let Some(id) = &only
        && list.is_empty()
    {
        return Err(Failure::usage(anyhow::anyhow!(
            "school {id} is not linked (see `rostersync school list`)"
        )));
    }
    if args.format == OutputFormat::Json {
        return print_json(&list);
    }
    let mut t = table::Table::new(&[
        "SCHOOL",
        "NOW",
        "NEXT",
        "STATE",
        "SINCE",
        "MOVING UP",
        "LEAVING",
        "ARRIVING",
        "NEW GROUPS",
        "GROUPS END",
        "GROUPS BEGIN",
    ]);
    let tz = settings.schedule.timezone.0;
    for s in &list {
        t.row(row(s, tz));
    }
    print!("{}", t.render());
    let prepared = list
        .iter()
        .filter(|s| matches!(s.standing, Standing::Prepared { .. }))
        .count();
    println!(
        "{prepared} of {} school(s) have next year prepared. From {} each daily cycle asks \
         every LAS for it; on {} it goes live (NEW GROUPS: teachers with a group they do not \
         teach now).",
        list.len(),
        calendar.prepare_from,
        calendar.switch_on
    );
    Ok(())
}
