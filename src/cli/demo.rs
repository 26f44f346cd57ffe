//! `rostersync demo`: the whole product in a minute. A simulated LAS and broker on loopback, a SQLite
//! store in a temporary (or given) directory, a first sync, one simulated night (joiners,
//! leavers, moves, a renamed pupil, an ECK-iD that arrives), one school whose LAS breaks and
//! one whose LAS suddenly lists 30% fewer pupils, a second sync, and what happened, explained.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use connector_sim::{Fault, FaultPlan, SchoolKind, SimServer, World};
use serde::Serialize;

use super::simulate::{sim_school_id, write_config};
use super::sync::{Progress, cycle_failure, render};
use super::{Failure, OutputFormat};
use crate::settings::Settings;
use crate::store::journal::{self, Change};
use crate::store::{OpenMode, Store};
use crate::sync::cycle::{self, CycleOptions, CycleReport};
use crate::sync::report::Outcome;
use crate::sync::run::RunOptions;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the store and configuration in DIR (default: a temporary directory, removed after).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Primary schools (one secondary school is added).
    #[arg(long, default_value_t = 4)]
    schools: usize,
    /// Pupils per school.
    #[arg(long, default_value_t = 240)]
    pupils: usize,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

#[derive(Serialize)]
struct DemoReport {
    dir: Option<PathBuf>,
    first: CycleReport,
    second: CycleReport,
}

pub async fn run(args: DemoArgs) -> Result<(), Failure> {
    let temp = match &args.dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("rostersync-demo-")
                .tempdir()
                .context("cannot create a temporary directory")
                .map_err(Failure::failed)?,
        ),
    };
    let dir = match (&args.dir, &temp) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.path().to_owned(),
        (None, None) => unreachable!("a directory is always chosen above"),
    };
    let table = args.format == OutputFormat::Table;
    let say = |text: &str| {
        if table {
            println!("{text}");
        }
    };

    let today = crate::sync::run::today();
    let mut world = World::new(2026, today);
    let primary = args.schools.max(3);
    for n in 0..primary {
        world.add_school(
            sim_school_id(SchoolKind::Primary, n),
            SchoolKind::Primary,
            args.pupils,
        );
    }
    world.add_school(
        sim_school_id(SchoolKind::Secondary, 0),
        SchoolKind::Secondary,
        args.pupils,
    );
    let server = SimServer::start(world, 0)
        .await
        .context("cannot start the simulated LAS on 127.0.0.1")
        .map_err(Failure::failed)?;
    let config = write_config(&dir, &server).map_err(Failure::failed)?;
    let settings = Settings::load(Some(&config)).map_err(|e| Failure::failed(e.into()))?;
    let store = Store::open(&settings.store, OpenMode::Create)
        .await
        .map_err(Failure::store)?;
    store.migrate().await.map_err(Failure::store)?;

    say(&format!(
        "rostersync demo: {} simulated schools ({} pupils each), LAS on {}, broker (mutual \
         TLS) on {} for the {primary} primary schools, a Zermelo portal for the secondary \
         school, store {}.\n",
        primary + 1,
        args.pupils,
        server.uwlr_url(),
        server.broker_url(),
        store.shown()
    ));
    say("Day 1: the first sync loads every school.");
    let first = sync(&store, &settings, args.format).await?;
    if table {
        print!("{}", render(&first));
    }

    // One night passes. One LAS breaks; another suddenly lists 30% fewer pupils.
    let broken = sim_school_id(SchoolKind::Primary, 1);
    let shrunk = sim_school_id(SchoolKind::Primary, 2);
    let (day, lost) = server.with_world(|w| {
        let day = w.advance_day();
        w.set_fault(
            &broken,
            Some(FaultPlan {
                fault: Fault::Malformed,
                remaining: None,
            }),
        );
        (day, w.lose_pupils(&shrunk, 0.3))
    });
    say(&format!(
        "\nDay 2: overnight {} pupils joined, {} left, {} moved group, {} got a corrected name and \
         {} received an ECK-iD. School {broken}'s LAS now answers with broken XML; school \
         {shrunk}'s LAS suddenly lists {lost} fewer pupils.",
        day.joined, day.left, day.moved, day.renamed, day.eckids_arrived
    ));
    let second = sync(&store, &settings, args.format).await?;
    if table {
        print!("{}", render(&second));
        explain(&store, &second).await?;
        summer(&dir).await?;
        match &temp {
            Some(_) => println!(
                "\nThe store was in a temporary directory and is gone now; `rostersync demo --dir DIR` keeps it \
                 (then try `rostersync --config DIR/rostersync.toml runs`)."
            ),
            None => println!(
                "\nEverything is in {}: try `rostersync --config {} runs`, `... runs show N`, \
                 `... changes --run N`, `... export --school {}`.",
                dir.display(),
                config.display(),
                sim_school_id(SchoolKind::Primary, 0)
            ),
        }
    } else {
        super::print_json(&DemoReport {
            dir: args.dir.clone(),
            first,
            second,
        })?;
    }
    Ok(())
}

/// The summer in a few lines: one school on 31 July of this school year, its LAS with next
/// year prepared; `rollover status`; the switch on 1 August.
async fn summer(dir: &std::path::Path) -> Result<(), Failure> {
    use crate::sync::summer::Standing;
    let calendar = crate::model::rollover::Calendar::default();
    let end = calendar.live_year(crate::sync::run::today()).start_year() + 1;
    let day = |m, d| chrono::NaiveDate::from_ymd_opt(end, m, d).unwrap_or_default();
    let mut world = World::new(7, day(7, 31));
    let id = sim_school_id(SchoolKind::Primary, 0);
    world.add_school(id.clone(), SchoolKind::Primary, 120);
    world.set_summer(&id, connector_sim::Summer::OnTime, Some(day(6, 1)));
    let server = SimServer::start(world, 0)
        .await
        .context("cannot start the simulated LAS on 127.0.0.1")
        .map_err(Failure::failed)?;
    let config = write_config(&dir.join("summer"), &server).map_err(Failure::failed)?;
    let settings = Settings::load(Some(&config)).map_err(|e| Failure::failed(e.into()))?;
    let store = Store::open(&settings.store, OpenMode::Create)
        .await
        .map_err(Failure::store)?;
    store.migrate().await.map_err(Failure::store)?;
    sync_on(&store, &settings, OutputFormat::Json, day(7, 31)).await?;
    let list = crate::sync::summer::status(&store, &calendar, day(7, 31), None)
        .await
        .map_err(|e| Failure::store(store.db_error(e)))?;
    if let Some(Standing::Prepared { changes: c, .. }) = list.first().map(|s| &s.standing) {
        println!(
            "\nThe summer: on 31 July {end} school {id}'s LAS has next year prepared. \
             `rostersync rollover status`: {} pupils move up, {} leave, {} arrive, {} teachers \
             get another group.",
            c.moving_up, c.leaving, c.arriving, c.teachers_with_new_groups
        );
    }
    server.with_world(|w| w.advance_day());
    let switch = sync_on(&store, &settings, OutputFormat::Json, day(8, 1)).await?;
    if let Some(r) = switch.schools.first() {
        println!(
            "1 August: run {} ({}) {}",
            r.run.unwrap_or_default(),
            r.outcome.as_str(),
            r.message.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

async fn sync(
    store: &Store,
    settings: &Settings,
    format: OutputFormat,
) -> Result<CycleReport, Failure> {
    sync_on(store, settings, format, crate::sync::run::today()).await
}

async fn sync_on(
    store: &Store,
    settings: &Settings,
    format: OutputFormat,
    today: chrono::NaiveDate,
) -> Result<CycleReport, Failure> {
    let progress = Progress::new(format, "syncing");
    let report = cycle::run(
        store,
        settings,
        &CycleOptions {
            only: None,
            run: RunOptions {
                trigger: "demo".into(),
                dry_run: false,
                allow_removals: false,
                today,
            },
        },
        |done, total, r| progress.school(done, total, r),
    )
    .await
    .map_err(cycle_failure)?;
    progress.done();
    Ok(report)
}

/// A few journal lines that show why things changed, one of each kind where there is one.
async fn explain(store: &Store, report: &CycleReport) -> Result<(), Failure> {
    let Some(ok) = report.schools.iter().find(|r| r.outcome == Outcome::Ok) else {
        return Ok(());
    };
    let Some(run) = ok.run else { return Ok(()) };
    let changes = journal::of_run(store.db(), run)
        .await
        .map_err(|e| Failure::failed(store.db_error(e).into()))?;
    let pick = |op: &str, field: Option<&str>| -> Option<&Change> {
        changes
            .iter()
            .find(|c| c.operation == op && (field.is_none() || c.field.as_deref() == field))
    };
    let examples = [
        pick("update", Some("family_name")),
        pick("join", None),
        pick("link-key", Some("eckid")),
        pick("create", None),
        pick("remove", None),
    ];
    println!(
        "\nFrom the journal of run {run} (school {}), `rostersync changes --run {run}` shows all:",
        ok.school
    );
    for c in examples.into_iter().flatten() {
        let what = match (&c.field, &c.old_value, &c.new_value) {
            (Some(f), Some(o), Some(n)) => format!("{f}: {o} -> {}", short(n)),
            (Some(f), None, Some(n)) => format!("{f}: {}", short(n)),
            (Some(f), Some(o), None) => format!("{f}: {o} removed"),
            (None, _, Some(n)) => short(n),
            _ => String::new(),
        };
        println!(
            "  {} {} {:<8} {}  [{}: {}]",
            c.entity,
            c.entity_id.map(|i| i.to_string()).unwrap_or_default(),
            c.operation,
            what,
            c.source,
            c.rule
        );
    }
    who_sees_what(store, report).await?;
    for r in &report.schools {
        match r.outcome {
            Outcome::Held => println!(
                "\nSchool {} kept its pupils: the brakes held {} removal(s) of run {}. If they are \
                 real: `rostersync approve --run {}`.",
                r.school,
                r.counts.held(),
                r.run.unwrap_or_default(),
                r.run.unwrap_or_default()
            ),
            Outcome::Frozen => println!(
                "School {} is frozen: its stored roster stayed exactly as it was, and the run says why.",
                r.school
            ),
            _ => {}
        }
    }
    Ok(())
}

/// The rights of one primary school in a few lines: how many see what, and one example.
async fn who_sees_what(store: &Store, report: &CycleReport) -> Result<(), Failure> {
    let Some(school) = report
        .schools
        .iter()
        .find(|r| r.outcome == Outcome::Ok && r.school.starts_with("99"))
    else {
        return Ok(());
    };
    let Some(export) = crate::store::export::export(store.db(), &school.school)
        .await
        .map_err(|e| Failure::failed(store.db_error(e).into()))?
    else {
        return Ok(());
    };
    let level = |l: &str| export.grants.iter().filter(|g| g.level == l).count();
    let pending = export
        .grants
        .iter()
        .flat_map(|g| &g.reasons)
        .filter(|r| r.contains("pending"))
        .count();
    println!(
        "
Who sees what in school {} (`rostersync permissions PERSON` explains one person): of \
         {} staff, {} see the whole school, {} their groups, {} their own account only; {} \
         grant(s) wait out their grace period.",
        school.school,
        export.staff.len(),
        level("school"),
        level("related"),
        level("own"),
        pending
    );
    if let Some(g) = export
        .grants
        .iter()
        .find(|g| g.reasons.iter().any(|r| r.contains("pending")))
        .or_else(|| export.grants.iter().find(|g| g.level == "related"))
    {
        println!("  person {} sees {}:", g.staff, g.groups.join(", "));
        for r in &g.reasons {
            println!("    {r}");
        }
    }
    Ok(())
}

/// ECK-iDs are long; the start says enough in a summary.
fn short(s: &str) -> String {
    if s.chars().count() > 48 {
        format!("{}…", s.chars().take(45).collect::<String>())
    } else {
        s.to_owned()
    }
}
