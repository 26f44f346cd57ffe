//! `rostersync undo --run N [--dry-run] [--force]`: put back what run N applied, as a run of
//! its own; refused when later changes touch the same records (unless `--force`) or when a
//! record was purged since.

use clap::Args;

use super::{Failure, OutputFormat, operator, table};
use crate::settings::Settings;
use crate::store::{OpenMode, Store};
use crate::sync::run::Rules;
use crate::sync::undo::{self, UndoError, UndoReport, UndoRequest};

#[derive(Debug, Args)]
pub struct UndoArgs {
    /// The run to undo.
    #[arg(long)]
    run: i64,
    /// Print what would be put back; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Undo even when later runs or edits changed the same records (they are overwritten).
    #[arg(long)]
    force: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

pub fn undo_failure(e: UndoError) -> Failure {
    match e {
        UndoError::Store(s) => Failure::store(s),
        e if e.is_usage() => Failure::usage(e.into()),
        e => Failure::failed(e.into()),
    }
}

pub async fn run(settings: &Settings, args: UndoArgs) -> Result<(), Failure> {
    let store = Store::open(&settings.store, OpenMode::Existing)
        .await
        .map_err(Failure::store)?;
    let report = undo::undo(
        &store,
        &Rules::from_settings(settings),
        &UndoRequest {
            run: args.run,
            dry_run: args.dry_run,
            force: args.force,
            by: operator(),
        },
    )
    .await
    .map_err(undo_failure)?;
    match args.format {
        OutputFormat::Json => super::print_json(&report)?,
        OutputFormat::Table => print!("{}", render(&report)),
    }
    if report.dry_run && !report.obstacles.later.is_empty() && !args.force {
        return Err(Failure::failed(anyhow::anyhow!(
            "later changes touch the same records (listed above): an undo without --force \
             would be refused"
        )));
    }
    Ok(())
}

fn render(r: &UndoReport) -> String {
    let mut t = table::Table::new(&["PUT BACK"]);
    for revert in &r.plan.reverts {
        t.row(vec![revert.describe()]);
    }
    let mut out = t.render();
    for left in &r.plan.left {
        out.push_str(&format!("left as it is: {left}\n"));
    }
    for later in &r.obstacles.later {
        out.push_str(&format!("later: {}\n", later.said()));
    }
    match r.run {
        Some(run) => out.push_str(&format!("Run {run} {}.\n", r.message)),
        None => out.push_str(&format!("{}; nothing was changed.\n", r.message)),
    }
    out
}
