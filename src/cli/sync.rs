//! `rostersync sync`: one run of every school (or one) in this process, with progress on a
//! terminal and a summary table at the end (or the report as JSON).

use std::io::{IsTerminal, Write};

use clap::Args;
use connector_api::SchoolId;

use super::{Failure, OutputFormat, table};
use crate::settings::Settings;
use crate::store::{OpenMode, Store};
use crate::sync::cycle::{self, CycleError, CycleOptions, CycleReport};
use crate::sync::report::{KindCounts, Outcome};
use crate::sync::run::{RunOptions, SchoolReport};

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Only this school (99XX00, 99XX or 99XX.00).
    #[arg(long, value_name = "ID")]
    school: Option<String>,
    /// Fetch and compute everything, record the run, change nothing in the roster.
    #[arg(long)]
    dry_run: bool,
    /// Apply removals the brakes or the collapse check would hold (you checked they are real).
    #[arg(long)]
    allow_removals: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

pub fn cycle_failure(e: CycleError) -> Failure {
    if e.is_usage() {
        Failure::usage(e.into())
    } else {
        Failure::failed(e.into())
    }
}

/// A progress line on stderr that rewrites itself; only on a terminal.
pub struct Progress {
    on: bool,
    what: &'static str,
}

impl Progress {
    pub fn new(format: OutputFormat, what: &'static str) -> Progress {
        Progress {
            on: format == OutputFormat::Table && std::io::stderr().is_terminal(),
            what,
        }
    }

    pub fn school(&self, done: usize, total: usize, r: &SchoolReport) {
        if self.on {
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[2K{} {done}/{total}: {} {}",
                self.what,
                r.school,
                r.outcome.as_str()
            );
            let _ = err.flush();
        }
    }

    pub fn done(&self) {
        if self.on {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }
}

pub async fn run(settings: &Settings, args: SyncArgs) -> Result<(), Failure> {
    let only = args
        .school
        .as_deref()
        .map(|s| s.parse::<SchoolId>())
        .transpose()
        .map_err(|e| Failure::usage(e.into()))?;
    let store = Store::open(&settings.store, OpenMode::Existing)
        .await
        .map_err(Failure::store)?;
    let progress = Progress::new(args.format, "syncing");
    let report = cycle::run(
        &store,
        settings,
        &CycleOptions {
            only,
            run: RunOptions {
                trigger: "cli".into(),
                dry_run: args.dry_run,
                allow_removals: args.allow_removals,
                today: crate::sync::run::today(),
            },
        },
        |done, total, r| progress.school(done, total, r),
    )
    .await
    .map_err(cycle_failure)?;
    progress.done();
    match args.format {
        OutputFormat::Json => super::print_json(&report)?,
        OutputFormat::Table => print!("{}", render(&report)),
    }
    if let Some(p) = report.problems.first() {
        return Err(Failure::failed(anyhow::anyhow!(
            "{p}; {} school(s) wait for it",
            report.skipped.len()
        )));
    }
    if report.needs_attention() {
        return Err(Failure::failed(anyhow::anyhow!(
            "{} of {} school run(s) need attention (see above, or `rostersync runs`)",
            report
                .schools
                .iter()
                .filter(|r| r.needs_attention())
                .count(),
            report.schools.len()
        )));
    }
    Ok(())
}

/// `+3 ~1 -0` (created, updated, removed) and `(2 held)` when something was held.
pub fn kind_cell(k: &KindCounts) -> String {
    let mut s = format!("+{} ~{} -{}", k.created, k.updated, k.removed);
    if k.held > 0 {
        s.push_str(&format!(" ({} held)", k.held));
    }
    s
}

/// The summary table of a cycle and one line per school that has something to say.
pub fn render(report: &CycleReport) -> String {
    let mut t = table::Table::new(&[
        "SCHOOL",
        "OUTCOME",
        "PUPILS",
        "STAFF",
        "GROUPS",
        "MEMBERSHIPS",
        "RUN",
        "TIME",
    ]);
    for r in &report.schools {
        let c = &r.counts;
        let mut links = format!("+{} -{}", c.memberships.added, c.memberships.removed);
        if c.memberships.held > 0 {
            links.push_str(&format!(" ({} held)", c.memberships.held));
        }
        let frozen = matches!(
            r.outcome,
            Outcome::Frozen
                | Outcome::Parked
                | Outcome::Failed
                | Outcome::Unchanged
                | Outcome::NoConsent
        );
        let cells = |k: &KindCounts| {
            if frozen { "-".to_owned() } else { kind_cell(k) }
        };
        t.row(vec![
            r.school.clone(),
            format!(
                "{}{}",
                r.outcome.as_str(),
                if r.dry_run { " (dry run)" } else { "" }
            ),
            cells(&c.pupils),
            cells(&c.staff),
            cells(&c.groups),
            if frozen { "-".into() } else { links },
            table::cell(r.run),
            format!("{:.2}s", (r.fetch_time + r.engine_time).as_secs_f64()),
        ]);
    }
    let mut out = t.render();
    for r in &report.schools {
        if let Some(m) = &r.message {
            out.push_str(&format!("{} {}: {m}\n", r.school, r.outcome.as_str()));
        }
    }
    for p in &report.problems {
        out.push_str(&format!("PROBLEM: {p}\n"));
    }
    for s in &report.skipped {
        out.push_str(&format!("{} skipped: {}\n", s.school, s.reason));
    }
    let count = |o: Outcome| report.schools.iter().filter(|r| r.outcome == o).count();
    let mut parts = Vec::new();
    for o in [
        Outcome::Ok,
        Outcome::Unchanged,
        Outcome::Held,
        Outcome::Frozen,
        Outcome::Parked,
        Outcome::NoConsent,
        Outcome::Failed,
    ] {
        let n = count(o);
        if n > 0 {
            parts.push(format!("{n} {}", o.as_str()));
        }
    }
    out.push_str(&format!(
        "{} school(s) in {:.1} s{}{}.\n",
        report.schools.len(),
        report.elapsed.as_secs_f64(),
        if parts.is_empty() { "" } else { ": " },
        parts.join(", ")
    ));
    let h = &report.history;
    if h.runs + h.journal > 0 {
        out.push_str(&format!(
            "Forgot {} run record(s) and {} journal entries older than sync.journal_days.\n",
            h.runs, h.journal
        ));
    }
    if report.purged.persons + report.purged.groups > 0 {
        out.push_str(&format!(
            "Purged {} person(s) and {} group(s) whose retention period ended.\n",
            report.purged.persons, report.purged.groups
        ));
    }
    if report.schools.is_empty() && report.skipped.is_empty() {
        out.push_str(
            "No schools to sync: add [[school]] blocks to the configuration or use `rostersync school add`.\n",
        );
    }
    out
}
