//! `rostersync simulate`: serve a generated world of schools as a real LAS on loopback, for
//! trying rostersync out, load tests and support. `--write-config` writes a configuration
//! (and key files) that points rostersync at it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use connector_api::SchoolId;
use connector_sim::{Fault, FaultPlan, SchoolKind, SimServer, World};

use crate::model::rollover::MonthDay;

use super::{Failure, table};

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Primary schools to generate.
    #[arg(long, default_value_t = 3)]
    primary: usize,
    /// Secondary schools to generate.
    #[arg(long, default_value_t = 1)]
    secondary: usize,
    /// Pupils per school.
    #[arg(long, default_value_t = 200)]
    pupils: usize,
    /// Seed of the generated world: the same seed gives the same schools.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The simulated date (YYYY-MM-DD); default today.
    #[arg(long)]
    date: Option<chrono::NaiveDate>,
    /// Let one simulated day pass every this many seconds (joiners, leavers, moves, ...).
    #[arg(long, value_name = "SECONDS")]
    day_every: Option<u64>,
    /// On each SIGUSR1 (a day passes, see below), one school in a hundred answers with
    /// broken XML that day (its sync freezes it; the others carry on): the benchmark's days.
    #[arg(long)]
    daily_faults: bool,
    /// Write rostersync.toml and key files for this simulator into DIR.
    #[arg(long, value_name = "DIR")]
    write_config: Option<PathBuf>,
    /// Make a school misbehave: SCHOOL=FAULT, where FAULT is a UWLR fault code
    /// (Client.AutorisatieOngeldig, Server.InterneFout, ...), unavailable, slow, truncated,
    /// malformed, geengegevens or geenwijzigingen. May be repeated.
    #[arg(long, value_name = "SCHOOL=FAULT", value_parser = parse_fault)]
    fault: Vec<(SchoolId, Fault)>,
    /// The summer: the share of schools whose LAS has next school year prepared (answers a
    /// request for it) from `--prepared-from`.
    #[arg(long, default_value_t = 0.5, value_name = "SHARE")]
    prepared_share: f64,
    /// From this day (MM-DD) the prepared schools answer for next year.
    #[arg(long, default_value = "06-01", value_name = "MM-DD")]
    prepared_from: MonthDay,
    /// The share of schools whose LAS rolls over late: it answers for the old year until
    /// `--late-until` (then rostersync keeps them frozen, "settles by itself").
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    late_share: f64,
    #[arg(long, default_value = "08-15", value_name = "MM-DD")]
    late_until: MonthDay,
    /// The share of schools whose LAS rolls over early, answering for next year from
    /// `--early-from`.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    early_share: f64,
    #[arg(long, default_value = "07-15", value_name = "MM-DD")]
    early_from: MonthDay,
}

/// The summer's days of the school year the simulator is in.
fn summer(args: &SimulateArgs, year: connector_api::SchoolYear) -> connector_sim::SummerMix {
    // 29 February in a year without it is the day after 28 February.
    let on = |d: MonthDay| {
        let y = year.start_year() + 1;
        chrono::NaiveDate::from_ymd_opt(y, d.month, d.day)
            .or_else(|| chrono::NaiveDate::from_ymd_opt(y, 3, 1))
            .unwrap_or_default()
    };
    connector_sim::SummerMix {
        late: args.late_share,
        late_until: on(args.late_until),
        early: args.early_share,
        early_from: on(args.early_from),
        prepared: args.prepared_share,
        prepared_from: on(args.prepared_from),
    }
}

fn parse_fault(text: &str) -> Result<(SchoolId, Fault), String> {
    let (school, fault) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not SCHOOL=FAULT"))?;
    let school: SchoolId = school.parse().map_err(|e| format!("{e}"))?;
    let fault = match fault {
        "unavailable" => Fault::Unavailable { retry_after: 30 },
        "slow" => Fault::Slow(std::time::Duration::from_secs(90)),
        "truncated" => Fault::Truncated,
        "malformed" => Fault::Malformed,
        "geengegevens" => Fault::NoData,
        "geenwijzigingen" => Fault::Unchanged,
        "hostile" => Fault::HostileKey,
        "hostile-error" => Fault::HostileError,
        code if code.starts_with("Client.") || code.starts_with("Server.") => {
            Fault::Soap(code.to_owned())
        }
        other => {
            return Err(format!(
                "unknown fault '{other}': use a UWLR fault code such as Client.AutorisatieOngeldig, \
                 or unavailable, slow, truncated, malformed, geengegevens, geenwijzigingen, \
                 hostile, hostile-error"
            ));
        }
    };
    Ok((school, fault))
}

/// School ids of generated schools: primary schools 99SA00, 99SB00, ... and secondary schools
/// 98AA00, 98AB00, ...; after 676 letter pairs the digits step down by two (97.., 96..), so
/// tens of thousands of schools get distinct ids.
pub fn sim_school_id(kind: SchoolKind, n: usize) -> SchoolId {
    let (top, offset) = match kind {
        SchoolKind::Primary => (99, 18 * 26),
        SchoolKind::Secondary => (98, 0),
    };
    let digits = top - 2 * (n / 676);
    let pair = (n + offset) % 676;
    let a = (b'A' + (pair / 26) as u8) as char;
    let b = (b'A' + (pair % 26) as u8) as char;
    SchoolId::new(&format!("{digits:02}{a}{b}"), "00").expect("generated BRINs are valid")
}

/// Write `path` (mode 0600) whole or not at all: a reader polling for it (a test, the bench)
/// sees either no file or the complete one, never half of it.
fn write_private(path: &Path, content: &str) -> std::io::Result<()> {
    let partial = path.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(&partial)?.write_all(content.as_bytes())?;
    std::fs::rename(&partial, path)
}

/// A configuration that points rostersync at `server`, with the keys in files beside it.
pub fn write_config(dir: &Path, server: &SimServer) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir.join("keys"))
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    let (klantnaam, klantcode, schools) =
        server.with_world(|w| (w.klantnaam.clone(), w.klantcode.clone(), w.access()));
    write_private(&dir.join("klantcode"), &format!("{klantcode}\n"))?;
    // The simulated broker's CA and a publisher certificate from it: valid while this
    // simulator runs (a new CA is made at every start).
    let identity = server
        .pki
        .client_identity(connector_sim::ClientCert::Valid)
        .context("cannot issue a client certificate for the simulated broker")?;
    write_private(&dir.join("broker.pem"), &identity)?;
    write_private(&dir.join("broker-ca.pem"), server.pki.ca_pem())?;
    let mut toml = format!(
        "# Written by `rostersync simulate`: a configuration for the simulated LAS at {url},\n\
         # the simulated broker at {broker} and the secondary schools' simulated portals.\n\
         [store]\nurl = \"sqlite://{d}/rostersync.db?mode=rwc\"\n\n\
         [[las]]\nname = \"sim\"\nkind = \"uwlr\"\nendpoint = \"{url}\"\nklantnaam = \"{klantnaam}\"\n\
         klantcode = {{ file = \"{d}/klantcode\" }}\n\n\
         [broker]\nkind = \"basispoort\"\nendpoint = \"{broker}\"\n\
         client_certificate = {{ file = \"{d}/broker.pem\" }}\nca_certificate = {{ file = \"{d}/broker-ca.pem\" }}\n",
        url = server.uwlr_url(),
        broker = server.broker_url(),
        d = dir.display(),
    );
    for school in schools {
        let (id, name, key) = (school.id.to_string(), &school.name, &school.key);
        // Basispoort serves primary education, Zermelo secondary schools.
        let broker_id = school
            .broker_id
            .filter(|_| school.kind == SchoolKind::Primary);
        let key_path = dir.join("keys").join(&id);
        write_private(&key_path, &format!("{key}\n"))?;
        toml.push_str(&format!(
            "\n[[school]]\nid = \"{id}\"\nname = \"{name}\"\nlas = \"sim\"\nkey = {{ file = \"{}\" }}\n",
            key_path.display()
        ));
        if let Some(b) = broker_id {
            toml.push_str(&format!("broker_id = {b}\n"));
        }
        if let Some(t) = &school.portal_token {
            let token_path = dir.join("keys").join(format!("{id}-zermelo"));
            write_private(&token_path, &format!("{t}\n"))?;
            toml.push_str(&format!(
                "zermelo = {{ portal = \"{}\", token = {{ file = \"{}\" }}, ca_certificate = {{ file = \"{}/broker-ca.pem\" }} }}\n",
                server.portal_url(&school.id),
                token_path.display(),
                dir.display()
            ));
        }
    }
    let path = dir.join("rostersync.toml");
    write_private(&path, &toml)?;
    Ok(path)
}

pub async fn run(args: SimulateArgs) -> Result<(), Failure> {
    let date = args.date.unwrap_or_else(crate::sync::run::today);
    let mut world = World::new(args.seed, date);
    for n in 0..args.primary {
        world.add_school(
            sim_school_id(SchoolKind::Primary, n),
            SchoolKind::Primary,
            args.pupils,
        );
    }
    for n in 0..args.secondary {
        world.add_school(
            sim_school_id(SchoolKind::Secondary, n),
            SchoolKind::Secondary,
            args.pupils,
        );
    }
    world.mix_summer(summer(&args, world.school_year()));
    for (school, fault) in &args.fault {
        if !world.schools.contains_key(school) {
            return Err(Failure::usage(anyhow::anyhow!(
                "--fault names school {school}, which the simulator does not have"
            )));
        }
        world.set_fault(
            school,
            Some(FaultPlan {
                fault: fault.clone(),
                remaining: None,
            }),
        );
    }
    let server = SimServer::start(world, args.port)
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))
        .map_err(Failure::usage)?;
    let mut t = table::Table::new(&["SCHOOL", "NAME", "PUPILS", "GROUPS", "STAFF"]);
    server.with_world(|w| {
        for s in w.schools.values() {
            t.row(vec![
                s.school.id.to_string(),
                s.school.name.clone(),
                s.school.pupils.len().to_string(),
                s.school.groups.len().to_string(),
                s.school.teachers.len().to_string(),
            ]);
        }
    });
    print!("{}", t.render());
    println!("UWLR endpoint: {}", server.uwlr_url());
    if let Some(dir) = &args.write_config {
        let path = write_config(dir, &server).map_err(Failure::failed)?;
        println!(
            "Configuration: {} (try: rostersync --config {} check-config --online)",
            path.display(),
            path.display()
        );
    }
    println!("Simulated date {date}. Stop with Ctrl-C.");
    let _ = std::io::stdout().flush();
    tracing::info!(url = %server.uwlr_url(), "Simulator running.");
    let mut days = args
        .day_every
        .map(|s| tokio::time::interval(std::time::Duration::from_secs(s.max(1))));
    if let Some(i) = days.as_mut() {
        i.tick().await; // The first tick is immediate.
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")
        .map_err(Failure::failed)?;
    // SIGUSR1: a day passes now (what `rostersync bench --days` sends between its cycles).
    let mut usr1 = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())
        .context("cannot listen for SIGUSR1")
        .map_err(Failure::failed)?;
    let mut passed = 0;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = async { match days.as_mut() { Some(i) => { i.tick().await; } None => std::future::pending::<()>().await } } => {
                let report = server.with_world(|w| w.advance_day());
                tracing::info!(joined = report.joined, left = report.left, moved = report.moved, rollover = report.rollover, "Simulated day passed.");
            }
            _ = usr1.recv() => {
                passed += 1;
                pass_day(&server, &args, passed).map_err(Failure::failed)?;
            }
        }
    }
    tracing::info!("Simulator stopped.");
    Ok(())
}

/// A day passes on request: the world moves on, one school in a hundred misbehaves today
/// with `--daily-faults`, and `DIR/day` (with `--write-config DIR`) says how many days have
/// passed, written last, so a waiting benchmark knows the day is ready.
fn pass_day(server: &SimServer, args: &SimulateArgs, passed: u32) -> anyhow::Result<()> {
    let report = server.with_world(|w| {
        let report = w.advance_day();
        if args.daily_faults {
            let ids: Vec<SchoolId> = w.schools.keys().cloned().collect();
            for (i, id) in ids.iter().enumerate() {
                // A different school each day, one in a hundred (at least one).
                let faulty = i % 100 == passed as usize % 100 % ids.len().max(1);
                let plan = faulty.then_some(FaultPlan {
                    fault: Fault::Malformed,
                    remaining: None,
                });
                w.set_fault(id, plan);
            }
        }
        report
    });
    tracing::info!(
        day = passed,
        joined = report.joined,
        left = report.left,
        moved = report.moved,
        "Simulated day passed on request."
    );
    if let Some(dir) = &args.write_config {
        write_private(&dir.join("day"), &format!("{passed}\n"))
            .with_context(|| format!("cannot write {}", dir.join("day").display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_school_ids_are_distinct() {
        let mut seen = std::collections::BTreeSet::new();
        for kind in [SchoolKind::Primary, SchoolKind::Secondary] {
            for n in 0..8000 {
                assert!(seen.insert(sim_school_id(kind, n)), "{kind:?} {n} repeats");
            }
        }
        assert_eq!(sim_school_id(SchoolKind::Primary, 0).to_string(), "99SA00");
        assert_eq!(sim_school_id(SchoolKind::Primary, 1).to_string(), "99SB00");
        assert_eq!(
            sim_school_id(SchoolKind::Secondary, 0).to_string(),
            "98AA00"
        );
    }
}
