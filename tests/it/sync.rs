//! The sync engine end to end: the simulated LAS over real HTTP on loopback, the real store
//! (SQLite file or PostgreSQL), the cycle as `rostersync sync` runs it.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use connector_api::SchoolId;
use connector_sim::{Fault, FaultPlan, SchoolKind, World};
use rostersync::store::export::{self, Export};
use rostersync::store::{Store, journal, runs};
use rostersync::sync::report::Outcome;

use crate::support::{SimEnv, count, one};

fn id(s: &str) -> SchoolId {
    s.parse().expect("school id")
}

fn world(schools: &[(&str, SchoolKind, usize)]) -> World {
    let mut w = World::new(7, rostersync::sync::run::today());
    for (s, kind, pupils) in schools {
        w.add_school(id(s), *kind, *pupils);
    }
    w
}

async fn export_of(store: &Store, school: &str) -> Export {
    export::export(store.db(), school)
        .await
        .expect("export query")
        .expect("school exists")
}

fn outcome_of(report: &rostersync::sync::cycle::CycleReport, school: &str) -> Outcome {
    report
        .schools
        .iter()
        .find(|r| r.school == school)
        .unwrap_or_else(|| panic!("no report for {school}"))
        .outcome
}

#[tokio::test]
async fn a_first_sync_loads_each_school_and_exports_the_contract() {
    let sim = SimEnv::start(
        world(&[
            ("99XA00", SchoolKind::Primary, 80),
            ("98XA00", SchoolKind::Secondary, 60),
        ]),
        "",
    )
    .await;
    let store = sim.store().await;
    let report = sim.sync(&store, false).await;
    assert_eq!(outcome_of(&report, "99XA00"), Outcome::Ok);
    assert_eq!(outcome_of(&report, "98XA00"), Outcome::Ok);
    let r = &report.schools[1];
    assert_eq!(r.school, "99XA00");
    assert_eq!(r.counts.pupils.created, 80);
    assert_eq!(r.counts.received.pupils, 80);

    let e = export_of(&store, "99XA00").await;
    assert_eq!(e.school.brin, "99XA");
    assert_eq!(e.school.dependance, "00");
    assert_eq!(
        e.school.school_year.as_deref(),
        Some(
            rostersync::model::rollover::Calendar::default()
                .live_year(rostersync::sync::run::today())
                .to_string()
                .as_str()
        )
    );
    let name = sim
        .server
        .with_world(|w| w.schools[&id("99XA00")].school.name.clone());
    assert_eq!(e.school.name, Some(name), "the configured name");
    assert_eq!(e.pupils.len(), 80);
    let group_keys: BTreeSet<&str> = e.groups.iter().map(|g| g.key.as_str()).collect();
    assert!(e.groups.iter().any(|g| g.kind == "stamgroep"));
    assert!(e.groups.iter().any(|g| g.kind == "samengesteld"));
    for p in &e.pupils {
        let g = p
            .group
            .as_deref()
            .expect("every simulated pupil has a stamgroep");
        assert!(group_keys.contains(g), "{g} is an exported group");
        assert!(p.las_key.is_some());
        assert!(p.id.parse::<i64>().is_ok());
    }
    assert!(e.pupils.iter().any(|p| p.eckid.is_some()));
    assert!(e.pupils.iter().any(|p| p.eckid.is_none()));
    let teacher = e
        .staff
        .iter()
        .find(|s| !s.groups.is_empty())
        .expect("a teacher with groups");
    assert!(!teacher.roles.is_empty());
    assert!(teacher.locked_fields.contains(&"family_name".to_owned()));

    // The JSON keys are the contract of ARCHITECTURE.md.
    let json = serde_json::to_value(&e).expect("json");
    for key in ["school", "groups", "pupils", "staff", "grants"] {
        assert!(json.get(key).is_some(), "{key}");
    }
    let pupil = &json["pupils"][0];
    for key in [
        "id",
        "las_key",
        "eckid",
        "family_name",
        "prefix",
        "given_name",
        "year_group",
        "group",
        "subgroups",
    ] {
        assert!(pupil.get(key).is_some(), "pupil.{key}");
    }
    let runs = runs::list(store.db(), None, 10).await.expect("runs");
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.outcome.as_deref() == Some("ok")));
}

#[tokio::test]
async fn a_night_of_changes_is_applied_once_and_journaled() {
    let school = id("99XA00");
    let sim = SimEnv::start(world(&[("99XA00", SchoolKind::Primary, 120)]), "").await;
    let store = sim.store().await;
    sim.sync(&store, false).await;
    let before = export_of(&store, "99XA00").await;

    // A pupil moves group, another leaves, a third receives an ECK-iD.
    let (mover, target, leaver, newcomer_eckid) = sim.server.with_world(|w| {
        let s = w.schools.get_mut(&school).expect("school");
        let stamgroepen: Vec<String> = s
            .school
            .groups
            .iter()
            .filter(|g| !g.composed)
            .map(|g| g.key.clone())
            .collect();
        let mover = s.school.pupils[0].person.key.clone();
        let target = stamgroepen
            .iter()
            .find(|g| **g != s.school.pupils[0].group)
            .expect("another stamgroep")
            .clone();
        s.school.pupils[0].group = target.clone();
        let leaver = s.school.pupils.remove(1).person.key;
        let p = s
            .school
            .pupils
            .iter_mut()
            .find(|p| p.person.eckid.is_none())
            .expect("a pupil without ECK-iD");
        let eckid = format!("https://ketenid.nl/201703/{}", "ab".repeat(64));
        p.person.eckid = Some(eckid.clone());
        s.changed_at = chrono::Utc::now();
        (mover, target, leaver, (p.person.key.clone(), eckid))
    });
    let report = sim.sync(&store, false).await;
    let r = &report.schools[0];
    assert_eq!(r.outcome, Outcome::Ok, "{:?}", r.message);
    assert_eq!(r.counts.pupils.created, 0);
    assert_eq!(r.counts.pupils.removed, 1);
    assert_eq!(
        r.counts.pupils.updated, 2,
        "the mover and the ECK-iD, nothing else"
    );
    let after = export_of(&store, "99XA00").await;
    assert_eq!(after.pupils.len(), before.pupils.len() - 1);

    let find = |e: &Export, key: &str| {
        e.pupils
            .iter()
            .find(|p| p.las_key.as_deref() == Some(key))
            .cloned()
    };
    let moved = find(&after, &mover).expect("the mover is still there");
    assert_eq!(moved.group.as_deref(), Some(target.as_str()));
    let was = find(&before, &mover).expect("the mover was there");
    assert_eq!(moved.id, was.id, "same person, same id");
    let changes = journal::of_person(store.db(), moved.id.parse().expect("id"))
        .await
        .expect("journal");
    let ops: Vec<(&str, Option<&str>)> = changes
        .iter()
        .filter(|c| c.run_id == r.run)
        .map(|c| (c.operation.as_str(), c.field.as_deref()))
        .collect();
    assert!(ops.contains(&("join", Some(target.as_str()))), "{ops:?}");
    assert!(ops.contains(&("leave", was.group.as_deref())), "{ops:?}");
    assert!(
        changes
            .iter()
            .all(|c| !c.rule.is_empty() && c.source == "las")
    );

    // The ECK-iD links to the known pupil: same id, no duplicate.
    let (key, eckid) = newcomer_eckid;
    let linked = find(&after, &key).expect("still there");
    assert_eq!(linked.eckid.as_deref(), Some(eckid.as_str()));
    assert_eq!(Some(linked.id.clone()), find(&before, &key).map(|p| p.id));
    assert_eq!(
        after
            .pupils
            .iter()
            .filter(|p| p.las_key.as_deref() == Some(&key))
            .count(),
        1
    );
    let found = journal::find_person(store.db(), &eckid)
        .await
        .expect("by key");
    assert_eq!(found.len(), 1, "the ECK-iD names one person");

    // The leaver is a tombstone: gone from the export, kept in the store until purge.
    assert!(find(&after, &leaver).is_none());
    let gone = find(&before, &leaver).expect("was there").id;
    assert_eq!(
        count(
            &store,
            &format!("SELECT COUNT(*) FROM person WHERE id = {gone} AND removed_at IS NOT NULL AND purge_after IS NOT NULL")
        )
        .await,
        1
    );

    // The same answer again changes nothing.
    sim.server.with_world(|w| {
        w.schools.get_mut(&school).expect("school").changed_at = chrono::Utc::now();
    });
    let again = sim.sync(&store, false).await;
    let c = &again.schools[0].counts;
    assert_eq!(again.schools[0].outcome, Outcome::Ok);
    assert_eq!(
        (c.created(), c.updated(), c.removed()),
        (0, 0, 0),
        "a re-run is idempotent"
    );
}

#[tokio::test]
async fn leavers_are_purged_with_their_history_when_retention_ends() {
    let school = id("99XA00");
    let sim = SimEnv::start(
        world(&[("99XA00", SchoolKind::Primary, 40)]),
        "[sync]\nretention_days = 0\n",
    )
    .await;
    let store = sim.store().await;
    sim.sync(&store, false).await;
    let leaver = sim.server.with_world(|w| {
        let s = w.schools.get_mut(&school).expect("school");
        s.changed_at = chrono::Utc::now();
        s.school.pupils.remove(0).person.key
    });
    let before = export_of(&store, "99XA00").await;
    let gone: i64 = before
        .pupils
        .iter()
        .find(|p| p.las_key.as_deref() == Some(&leaver))
        .expect("leaver exported before")
        .id
        .parse()
        .expect("id");
    let history = rostersync::store::journal::of_person(store.db(), gone).await;
    assert!(
        !history.expect("history").is_empty(),
        "its create, at least"
    );
    let report = sim.sync(&store, false).await;
    assert_eq!(report.purged.persons, 1, "purged at the end of the cycle");
    let history = rostersync::store::journal::of_person(store.db(), gone).await;
    assert_eq!(history.expect("history"), []);
    assert_eq!(
        count(
            &store,
            &format!("SELECT COUNT(*) FROM person WHERE id = {gone}")
        )
        .await,
        0
    );
    for table in ["change_entry", "membership", "person_role"] {
        assert_eq!(
            count(
                &store,
                &format!("SELECT COUNT(*) FROM {table} WHERE person_id = {gone}")
            )
            .await,
            0,
            "{table} still names the purged pupil"
        );
    }
    assert_eq!(
        count(
            &store,
            &format!("SELECT COUNT(*) FROM person WHERE las_key = '{leaver}'")
        )
        .await,
        0
    );
}

/// The purge deletes what a run loads (tombstones come back when a leaver returns): it raises
/// the version of each school it purged from, and of no other.
#[tokio::test]
async fn the_purge_raises_the_roster_version_of_the_schools_it_purged_from() {
    let sim = SimEnv::start(
        world(&[
            ("99XA00", SchoolKind::Primary, 30),
            ("99XC00", SchoolKind::Primary, 30),
        ]),
        "",
    )
    .await;
    let store = sim.store().await;
    sim.sync(&store, false).await;
    let version = |school: &str| format!("SELECT roster_version FROM school WHERE id = '{school}'");
    let (a, c) = (
        count(&store, &version("99XA00")).await,
        count(&store, &version("99XC00")).await,
    );
    // One pupil of the first school left long ago.
    let sql = "UPDATE person SET removed_at = {at}, purge_after = {at} WHERE id = \
               (SELECT MIN(id) FROM person WHERE school_id = '99XA00' AND kind = 'pupil')";
    let long_ago = "2020-04-01T00:00:00Z".parse().expect("a moment");
    crate::support::set_moment(&store, sql, long_ago).await;
    let mut purged = rostersync::store::roster::Purged::default();
    rostersync::store::roster::purge(&store, chrono::Utc::now(), &mut purged)
        .await
        .expect("purge");
    assert_eq!(purged.persons, 1);
    assert_eq!(count(&store, &version("99XA00")).await, a + 1);
    assert_eq!(count(&store, &version("99XC00")).await, c);
}

#[tokio::test]
async fn geenwijzigingen_writes_nothing() {
    let sim = SimEnv::start(world(&[("99XA00", SchoolKind::Primary, 50)]), "").await;
    let store = sim.store().await;
    sim.sync(&store, false).await;
    let snapshot = |store: &Store| {
        let store = store.clone();
        async move {
            (
                count(&store, "SELECT COUNT(*) FROM change_entry").await,
                count(&store, "SELECT COUNT(*) FROM person").await,
                count(&store, "SELECT COUNT(*) FROM membership").await,
                export_of(&store, "99XA00").await,
            )
        }
    };
    let before = snapshot(&store).await;
    let updated_before = count(
        &store,
        "SELECT COUNT(*) FROM person WHERE updated_at = (SELECT MAX(updated_at) FROM person)",
    )
    .await;
    // Nothing changed at the LAS since the last answer: it says so.
    let report = sim.sync(&store, false).await;
    assert_eq!(report.schools[0].outcome, Outcome::Unchanged);
    assert_eq!(snapshot(&store).await, before);
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM person WHERE updated_at = (SELECT MAX(updated_at) FROM person)"
        )
        .await,
        updated_before
    );
    // And so does a LAS that answers geenwijzigingen whatever it is asked.
    sim.server.with_world(|w| {
        w.advance_day();
        w.set_fault(
            &id("99XA00"),
            Some(FaultPlan {
                fault: Fault::Unchanged,
                remaining: None,
            }),
        );
    });
    let report = sim.sync(&store, false).await;
    assert_eq!(report.schools[0].outcome, Outcome::Unchanged);
    assert_eq!(snapshot(&store).await, before);
}

#[tokio::test]
async fn a_broken_or_empty_answer_freezes_only_that_school() {
    let sim = SimEnv::start(
        world(&[
            ("99XA00", SchoolKind::Primary, 40),
            ("99XB00", SchoolKind::Primary, 40),
            ("99XC00", SchoolKind::Primary, 40),
        ]),
        "",
    )
    .await;
    let store = sim.store().await;
    sim.sync(&store, false).await;
    let a = export_of(&store, "99XA00").await;
    let b = export_of(&store, "99XB00").await;
    sim.server.with_world(|w| {
        w.advance_day();
        w.set_fault(
            &id("99XA00"),
            Some(FaultPlan {
                fault: Fault::Malformed,
                remaining: None,
            }),
        );
        w.set_fault(
            &id("99XB00"),
            Some(FaultPlan {
                fault: Fault::NoData,
                remaining: None,
            }),
        );
    });
    let report = sim.sync(&store, false).await;
    assert_eq!(outcome_of(&report, "99XA00"), Outcome::Frozen);
    assert_eq!(outcome_of(&report, "99XB00"), Outcome::Frozen);
    assert_eq!(outcome_of(&report, "99XC00"), Outcome::Ok);
    assert!(report.needs_attention());
    let ra = &report.schools[0];
    assert_eq!(ra.error_class.as_deref(), Some("malformed"));
    let msg = ra.message.as_deref().expect("a message");
    assert!(msg.contains("99XA00"), "{msg}");
    assert_eq!(report.schools[1].error_class.as_deref(), Some("no_data"));
    assert_eq!(export_of(&store, "99XA00").await, a, "frozen: unchanged");
    assert_eq!(export_of(&store, "99XB00").await, b, "frozen: unchanged");
    let run = runs::get(store.db(), ra.run.expect("run id"))
        .await
        .expect("query")
        .expect("run record");
    assert_eq!(run.outcome.as_deref(), Some("frozen"));
    assert_eq!(run.error_class.as_deref(), Some("malformed"));
    assert!(run.message.expect("message").contains("vendor"));
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM school WHERE state = 'frozen'").await,
        2
    );
}

#[tokio::test]
async fn a_rejected_key_parks_the_school_until_the_key_changes() {
    let school = id("99XA00");
    let sim = SimEnv::start(world(&[("99XA00", SchoolKind::Primary, 30)]), "").await;
    let store = sim.store().await;
    let right = sim.server.with_world(|w| w.schools[&school].key.clone());
    sim.env.write("key-99XA00", "SIM-wrong-key\n");
    let report = sim.sync(&store, false).await;
    assert_eq!(report.schools[0].outcome, Outcome::Parked);
    assert_eq!(
        report.schools[0].error_class.as_deref(),
        Some("credentials_rejected")
    );
    let asked = sim.server.with_world(|w| w.schools[&school].requests);
    let report = sim.sync(&store, false).await;
    assert_eq!(report.schools[0].outcome, Outcome::Parked);
    let msg = report.schools[0].message.clone().expect("message");
    assert!(msg.contains("set-key"), "{msg}");
    assert!(!msg.contains("SIM-wrong-key"), "no key in messages: {msg}");
    assert_eq!(
        sim.server.with_world(|w| w.schools[&school].requests),
        asked,
        "a parked school is not asked again"
    );
    sim.env.write("key-99XA00", &format!("{right}\n"));
    let report = sim.sync(&store, false).await;
    assert_eq!(report.schools[0].outcome, Outcome::Ok);
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM school WHERE state = 'active'").await,
        1
    );
}

#[tokio::test]
async fn a_dry_run_computes_everything_and_writes_no_roster() {
    let sim = SimEnv::start(world(&[("99XA00", SchoolKind::Primary, 30)]), "").await;
    let store = sim.store().await;
    let report = rostersync::sync::cycle::run(
        &store,
        &sim.env.settings(),
        &rostersync::sync::cycle::CycleOptions {
            only: Some(id("99XA00")),
            run: rostersync::sync::run::RunOptions {
                trigger: "test".into(),
                dry_run: true,
                allow_removals: false,
                today: rostersync::sync::run::today(),
            },
        },
        |_, _, _| {},
    )
    .await
    .expect("cycle");
    assert_eq!(report.schools[0].counts.pupils.created, 30);
    assert!(report.schools[0].dry_run);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM person").await, 0);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM change_entry").await, 0);
    let run = runs::list(store.db(), None, 1).await.expect("runs");
    assert!(run[0].dry_run);
    assert_eq!(run[0].outcome.as_deref(), Some("ok"));
    // The next real run still sees everything as new.
    let report = sim.sync(&store, false).await;
    assert_eq!(report.schools[0].counts.pupils.created, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_percent_drop_is_held_until_approved() {
    let school = id("99XA00");
    let sim = SimEnv::start(world(&[("99XA00", SchoolKind::Primary, 100)]), "").await;
    let store = sim.store().await;
    sim.sync(&store, false).await;
    let day = sim.server.with_world(|w| {
        let lost = w.lose_pupils(&school, 0.3);
        assert_eq!(lost, 30);
        // Joiners arrive after the loss, so they are part of the answer.
        w.advance_day()
    });
    let report = sim.sync(&store, false).await;
    let r = &report.schools[0];
    assert_eq!(r.outcome, Outcome::Held, "{:?}", r.message);
    assert_eq!(r.counts.pupils.created, day.joined, "adds still apply");
    assert_eq!(r.counts.pupils.removed, 0);
    assert_eq!(r.counts.pupils.held, 30 + day.left);
    let msg = r.message.as_deref().expect("why");
    let run = r.run.expect("run");
    assert!(msg.contains(&format!("approve --run {run}")), "{msg}");
    let held = export_of(&store, "99XA00").await;
    assert_eq!(held.pupils.len(), 100 + day.joined, "nothing removed yet");

    // The operator checked: approve through the command line.
    let env = &sim.env;
    let version = "SELECT roster_version FROM school WHERE id = '99XA00'";
    let before_approval = count(&store, version).await;
    let out = env.run(&["approve", "--run", &run.to_string()]);
    out.ok();
    assert!(
        count(&store, version).await > before_approval,
        "an approval changes the roster: a run that computed before it must compute again"
    );
    assert!(
        out.stdout.contains(&format!("{} pupil(s)", 30 + day.left)),
        "{}",
        out.stdout
    );
    let after = export_of(&store, "99XA00").await;
    assert_eq!(after.pupils.len(), 70 - day.left + day.joined);
    let again = env.run(&["approve", "--run", &run.to_string()]);
    let line = again.fails_with(2);
    assert!(line.contains("already approved"), "{line}");

    // Every approved removal is journaled under the approval's own run.
    let latest = runs::list(store.db(), None, 1).await.expect("runs");
    assert_eq!(latest[0].trigger, "approve");
    let journal = journal::of_run(store.db(), latest[0].id)
        .await
        .expect("journal");
    assert_eq!(
        journal.iter().filter(|c| c.operation == "remove").count(),
        30 + day.left
    );
    assert!(journal[0].rule.contains(&format!("run {run}")));

    // The next run with the same answer agrees with the store: nothing to hold or change.
    sim.server.with_world(|w| {
        w.schools.get_mut(&school).expect("school").changed_at = chrono::Utc::now();
    });
    let report = sim.sync(&store, false).await;
    let c = &report.schools[0].counts;
    assert_eq!(report.schools[0].outcome, Outcome::Ok);
    assert_eq!((c.created(), c.removed(), c.held()), (0, 0, 0));
}

#[tokio::test]
async fn held_removals_are_superseded_when_the_pupils_come_back() {
    let school = id("99XA00");
    let sim = SimEnv::start(world(&[("99XA00", SchoolKind::Primary, 100)]), "").await;
    let store = sim.store().await;
    sim.sync(&store, false).await;
    let whole = sim.server.with_world(|w| {
        let before = w.schools[&school].school.clone();
        w.lose_pupils(&school, 0.3);
        before
    });
    let report = sim.sync(&store, false).await;
    assert_eq!(report.schools[0].outcome, Outcome::Held);
    let run = report.schools[0].run.expect("run");
    let waiting = "SELECT COUNT(*) FROM held_change WHERE state = 'held'";
    assert_eq!(count(&store, waiting).await, 30);

    // The LAS sends them again: nothing is held now, and what waited is moot.
    sim.server.with_world(|w| {
        let state = w.schools.get_mut(&school).expect("school");
        state.school = whole;
        state.changed_at = chrono::Utc::now();
    });
    let report = sim.sync(&store, false).await;
    assert_eq!(report.schools[0].outcome, Outcome::Ok);
    assert_eq!(count(&store, waiting).await, 0);
    let superseded = "SELECT COUNT(*) FROM held_change WHERE state = 'superseded'";
    assert_eq!(count(&store, superseded).await, 30);
    let line = sim
        .env
        .run(&["approve", "--run", &run.to_string()])
        .fails_with(2);
    assert!(line.contains("superseded"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_apply_leaves_the_store_as_it_was() {
    let school = id("99XA00");
    let sim = SimEnv::start(world(&[("99XA00", SchoolKind::Primary, 300)]), "").await;
    let store = sim.store().await;
    sim.sync(&store, false).await;
    let before = export_of(&store, "99XA00").await;
    let journal_before = count(&store, "SELECT COUNT(*) FROM change_entry").await;
    sim.server.with_world(|w| {
        w.advance_day();
        w.lose_pupils(&school, 0.05);
    });

    let marker = sim.env.path("applying");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rostersync"))
        .arg("sync")
        .env("ROSTERSYNC_CONFIG", &sim.env.config)
        .env("ROSTERSYNC_TEST_PAUSE_BEFORE_COMMIT", &marker)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sync starts");
    let started = Instant::now();
    while !marker.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the apply never reached its commit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // SIGKILL: no destructor, no rollback by us; the database must take care of it.
    child.kill().expect("kill -9");
    child.wait().expect("reaped");

    assert_eq!(export_of(&store, "99XA00").await, before);
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM change_entry").await,
        journal_before
    );
    let cut = runs::list(store.db(), None, 1).await.expect("runs");
    assert_eq!(runs::shown_outcome(&cut[0]), "interrupted");

    // The next run completes.
    let report = sim.sync(&store, false).await;
    assert_eq!(report.schools[0].outcome, Outcome::Ok);
    assert_ne!(export_of(&store, "99XA00").await, before);
}

/// A run computes its plan before it takes the write lock. A hand edit of the same school in
/// between must neither be lost under the run's stale rows nor stop the run: the run sees the
/// school's roster version moved and computes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_while_a_run_computes_is_kept_and_the_run_computes_again() {
    let school = id("99XB00");
    let sim = SimEnv::start(world(&[("99XB00", SchoolKind::Primary, 60)]), "").await;
    let store = sim.store().await;
    sim.sync(&store, false).await;
    // The night renames one pupil: the run will rewrite that pupil's row.
    let (key, renamed) = sim.server.with_world(|w| {
        w.advance_day();
        let p = w.schools[&school]
            .school
            .pupils
            .iter()
            .find(|p| {
                p.person
                    .family
                    .as_deref()
                    .is_some_and(|f| f.ends_with("-Hoek"))
            })
            .expect("a renamed pupil");
        (
            p.person.key.clone(),
            p.person.family.clone().expect("family"),
        )
    });
    let person = one(
        &store,
        &format!("SELECT CAST(id AS TEXT) FROM person WHERE las_key = '{key}'"),
    )
    .await
    .expect("the renamed pupil is stored");

    let marker = sim.env.path("computed");
    let mut child = sim.env.spawn(
        &["sync"],
        &[(
            "ROSTERSYNC_TEST_PAUSE_BEFORE_WRITE",
            marker.to_str().expect("path"),
        )],
    );
    let started = Instant::now();
    while !marker.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the run never computed its plan"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // No source sends a pupil's e-mail: an administrator may set it.
    sim.env
        .run(&["person", "set", &person, "email=ouder@example.nl"])
        .ok();
    std::fs::remove_file(&marker).expect("let the run go on");
    let status = child.wait().expect("the run ends");
    assert!(status.success(), "the run failed: {status}");

    let row = |field: &str| format!("SELECT {field} FROM person WHERE id = {person}");
    assert_eq!(
        one(&store, &row("email")).await.as_deref(),
        Some("ouder@example.nl")
    );
    assert_eq!(one(&store, &row("family_name")).await, Some(renamed));
    let runs = runs::list(store.db(), None, 1).await.expect("runs");
    assert_eq!(runs::shown_outcome(&runs[0]), "ok");
}

/// Both backends must end up with the same roster. Runs in the PostgreSQL pass of the suite
/// (it needs both); on SQLite alone there is nothing to compare with.
#[tokio::test]
async fn sqlite_and_postgres_give_the_same_export() {
    if crate::support::postgres_admin_url().is_none() {
        return;
    }
    let schools = [
        ("99XA00", SchoolKind::Primary, 90),
        ("98XA00", SchoolKind::Secondary, 70),
    ];
    let mut exports = Vec::new();
    for sqlite in [false, true] {
        let sim = SimEnv::start_on(world(&schools), "[sync]\nconcurrency = 1\n", sqlite).await;
        let store = sim.store().await;
        sim.sync(&store, false).await;
        sim.server.with_world(|w| {
            w.advance_day();
        });
        sim.sync(&store, false).await;
        let mut both = Vec::new();
        for (s, _, _) in &schools {
            both.push(export_of(&store, s).await);
        }
        exports.push(both);
    }
    assert_eq!(exports[0], exports[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_tell_what_happened() {
    let sim = SimEnv::start(
        world(&[
            ("99XA00", SchoolKind::Primary, 40),
            ("99XB00", SchoolKind::Primary, 40),
        ]),
        "",
    )
    .await;
    let env = &sim.env;
    env.run(&["migrate"]).ok();
    let out = env.run(&["sync"]);
    out.ok();
    assert!(out.stdout.contains("99XA00  ok"), "{}", out.stdout);
    assert!(out.stdout.contains("+40 ~0 -0"), "{}", out.stdout);
    crate::support::assert_no_secret(&out.all_output(), "sync output");

    sim.server.with_world(|w| {
        w.advance_day();
        w.set_fault(
            &id("99XB00"),
            Some(FaultPlan {
                fault: Fault::Soap("Server.InterneFout".into()),
                remaining: None,
            }),
        );
    });
    let out = env.run(&["sync", "--format", "json"]);
    let line = out.fails_with(1);
    assert!(line.contains("1 of 2"), "{line}");
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("stdout is JSON");
    assert_eq!(json["schools"][0]["outcome"], "ok");
    assert_eq!(json["schools"][1]["outcome"], "frozen");
    let frozen_run = json["schools"][1]["run"].as_i64().expect("run id");
    // Logs are JSON lines on stderr when piped: one summary line per school run, no names.
    let summaries: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("School run finished."))
        .collect();
    assert_eq!(summaries.len(), 2, "{}", out.stderr);
    let export = env.run(&["export", "--school", "99XA00"]);
    export.ok();
    let roster: serde_json::Value = serde_json::from_str(&export.stdout).expect("export JSON");
    let pupil = &roster["pupils"][0];
    let family = pupil["family_name"].as_str().unwrap_or("Jansen").to_owned();
    assert!(
        !out.stderr.contains(&format!("\"{family}\"")),
        "a name reached the log: {family}"
    );

    let list = env.run(&["runs"]);
    list.ok();
    assert!(list.stdout.contains("frozen"), "{}", list.stdout);
    let show = env.run(&["runs", "show", &frozen_run.to_string()]);
    show.ok();
    assert!(show.stdout.contains("Outcome   frozen"), "{}", show.stdout);
    assert!(show.stdout.contains("Why"), "{}", show.stdout);
    let ok_run = json["schools"][0]["run"].as_i64().expect("run id");
    let changes = env.run(&["changes", "--run", &ok_run.to_string(), "--format", "json"]);
    changes.ok();
    let entries: serde_json::Value = serde_json::from_str(&changes.stdout).expect("JSON");
    assert!(!entries.as_array().expect("a list").is_empty());
    let pid = pupil["id"].as_str().expect("id");
    let person = env.run(&["changes", "--person", pid]);
    person.ok();
    assert!(person.stdout.contains("create"), "{}", person.stdout);
    // A LAS key is only unique within a school: the simulated schools share L1001.
    let shared = env.run(&["changes", "--person", "L1001"]);
    assert!(shared.fails_with(2).contains("names 2 persons"));
    let nobody = env.run(&["changes", "--person", "nobody-has-this-key"]);
    assert!(nobody.fails_with(2).contains("no person"));
    let none = env.run(&["runs", "show", "9999"]);
    assert!(none.fails_with(2).contains("no run 9999"));
    let unknown = env.run(&["sync", "--school", "11ZZ00"]);
    assert!(unknown.fails_with(2).contains("not linked"));
}

#[test]
fn the_demo_shows_a_frozen_and_a_held_school() {
    let env = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rostersync"))
        .args(["demo", "--pupils", "80", "--dir"])
        .arg(env.path())
        .env_remove("ROSTERSYNC_CONFIG")
        .output()
        .expect("demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Day 1"), "{stdout}");
    assert!(stdout.contains(" frozen "), "{stdout}");
    assert!(stdout.contains(" held "), "{stdout}");
    assert!(stdout.contains("approve --run"), "{stdout}");
    assert!(stdout.contains("From the journal"), "{stdout}");
    assert!(
        env.path().join("rostersync.db").exists(),
        "--dir keeps the store"
    );
}

/// `rostersync bench ARGS --format json --dir DIR`, succeeded, its report.
fn bench(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rostersync"))
        .arg("bench")
        .args(args)
        .args(["--format", "json", "--dir"])
        .arg(dir.path())
        .env_remove("ROSTERSYNC_CONFIG")
        .output()
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).expect("JSON on stdout")
}

#[test]
fn the_bench_measures_both_parts() {
    let report = bench(&[
        "--pupils",
        "120",
        "--repeat",
        "2",
        "--schools",
        "6",
        "--school-pupils",
        "30",
        "--api-pupils",
        "150",
        "--api-rounds",
        "2",
    ]);
    let large = report["large_school"].as_array().expect("scenarios");
    assert_eq!(large.len(), 5);
    assert!(large[0]["changes"].as_u64().expect("count") >= 120);
    assert_eq!(large[1]["changes"], 0, "unchanged means unchanged");
    assert!(large[3]["changes"].as_u64().expect("count") > 0);
    // A teacher moves in each changed round: the grants change too, and are timed.
    assert!(
        large[4]["changes"].as_u64().expect("count") > 0,
        "{}",
        large[4]
    );
    assert!(large[4]["engine_ms"].as_f64().expect("ms") > 0.0);
    // The target is on the full load and diff, not on the digest shortcut; every scenario
    // reports its end-to-end total too.
    assert!(large[1]["target_ms"].is_null(), "{}", large[1]);
    assert_eq!(large[2]["target_ms"], 30.0, "{}", large[2]);
    for s in large {
        assert!(
            s["total_ms"].as_f64().expect("total") >= s["engine_ms"].as_f64().expect("engine"),
            "{s}"
        );
    }
    let many = &report["many_schools"];
    // Write transactions were measured, the longest hold per kind.
    assert!(
        many["store_writes"]["apply"]["transactions"]
            .as_u64()
            .expect("n")
            >= 6
    );
    assert_eq!(many["schools"], 6);
    assert_eq!(many["outcomes_ok"], 6);
    assert!(!many["checkpoints"].as_array().expect("marks").is_empty());
    // Two days by default: the initial load, then a night of changes with every school
    // synced again; the store's size per pupil is reported.
    let days = many["days"].as_array().expect("days");
    assert_eq!(days.len(), 2, "{many}");
    assert_eq!(days[1]["day"], 2);
    assert_eq!(days[1]["schools"], 6);
    assert!(days[1]["changed"].as_u64().expect("n") > 0, "{}", days[1]);
    assert!(days[1]["changed"].as_u64() < days[0]["changed"].as_u64());
    // The write lock was held on each day, and never longer than the day lasted.
    for d in days {
        let held = d["write_lock_held_seconds"].as_f64().expect("held");
        assert!(
            held >= 0.0 && held <= d["seconds"].as_f64().expect("s") + 0.1,
            "{d}"
        );
    }
    assert!(many["store_bytes_per_pupil"].as_f64().expect("bytes") > 0.0);
    // The API part: the night's delta found the last school's records, the quiet poll none,
    // a full pull's first pages everyone, and the single school was paged to the end, every
    // page timed.
    let delta = many["api_delta"].as_array().expect("delta probes");
    assert_eq!(delta.len(), 7);
    let pupils = 6 * many["pupils_per_school"].as_u64().expect("pupils");
    assert!(
        delta[5]["records"].as_u64().expect("n") > pupils,
        "{}",
        delta[5]
    );
    assert!(
        delta[6]["records"].as_u64().expect("n") >= pupils,
        "{}",
        delta[6]
    );
    assert!(
        delta[0]["records"].as_u64().expect("n") >= 30,
        "{}",
        delta[0]
    );
    assert_eq!(delta[3]["records"], 0, "{}", delta[3]);
    let api = report["api_school"].as_array().expect("API probes");
    assert!(
        api[0]["records"].as_u64().expect("n") >= 150 + 150 * 8 / 100,
        "{}",
        api[0]
    );
    // The delta since the last 2% and the full pull are paged once; the rest
    // `--api-rounds` times.
    for p in api.iter().chain(&delta[3..5]) {
        assert!(p["pages"].as_u64().expect("pages") >= 2, "{p}");
    }
    for p in api.iter().chain(delta) {
        assert!(p["pages"].as_u64().expect("pages") >= 1, "{p}");
        assert!(p["p99_ms"].as_f64().expect("ms") >= p["p50_ms"].as_f64().expect("ms"));
    }
}

#[tokio::test]
async fn history_older_than_journal_days_is_forgotten_but_each_schools_latest_run_stays() {
    let sim = SimEnv::start(
        world(&[
            ("99XA00", SchoolKind::Primary, 20),
            ("99XB00", SchoolKind::Primary, 20),
        ]),
        "[sync]\njournal_days = 400\n",
    )
    .await;
    let store = sim.store().await;
    sim.sync(&store, false).await;
    sim.sync(&store, false).await;
    let runs_before = count(&store, "SELECT COUNT(*) FROM sync_run").await;
    assert_eq!(runs_before, 4);
    let old = chrono::Utc::now() - chrono::Duration::days(401);
    // The first cycle (both schools) is 401 days old; so is 99XB00's second run, which is
    // that school's latest and must stay.
    crate::support::set_time(
        &store,
        "UPDATE sync_run SET started_at = {at} WHERE id IN (SELECT MIN(id) FROM sync_run GROUP BY school_id) OR school_id = '99XB00'",
        old,
    )
    .await;
    crate::support::set_moment(
        &store,
        "UPDATE change_entry SET at = {at} WHERE run_id IN (SELECT MIN(id) FROM sync_run GROUP BY school_id)",
        old,
    )
    .await;
    let first_runs: Vec<i64> = vec![
        count(
            &store,
            "SELECT MIN(id) FROM sync_run WHERE school_id = '99XA00'",
        )
        .await,
        count(
            &store,
            "SELECT MIN(id) FROM sync_run WHERE school_id = '99XB00'",
        )
        .await,
    ];
    let latest_b = count(
        &store,
        "SELECT MAX(id) FROM sync_run WHERE school_id = '99XB00'",
    )
    .await;
    let journal_of_first = count(
        &store,
        &format!(
            "SELECT COUNT(*) FROM change_entry WHERE run_id IN ({}, {})",
            first_runs[0], first_runs[1]
        ),
    )
    .await;
    assert!(journal_of_first > 0, "the first cycle created the roster");
    let pupil = count(
        &store,
        "SELECT MIN(id) FROM person WHERE school_id = '99XA00' AND kind = 'pupil'",
    )
    .await;
    let creates_of = |history: &[rostersync::store::journal::Change]| {
        history.iter().filter(|c| c.operation == "create").count()
    };
    let history = rostersync::store::journal::of_person(store.db(), pupil).await;
    assert_eq!(creates_of(&history.expect("history")), 1);
    let (_, history) = rostersync::sync::cycle::purge(&store, &sim.env.settings())
        .await
        .expect("purge");
    assert_eq!(history.runs, 2, "{history:?}");
    assert_eq!(history.journal as i64, journal_of_first);
    for run in &first_runs {
        assert_eq!(
            count(
                &store,
                &format!("SELECT COUNT(*) FROM sync_run WHERE id = {run}")
            )
            .await,
            0,
            "run {run} is older than journal_days"
        );
    }
    // 99XB00's second run is old too, but it is the school's latest: kept. 99XA00's second
    // run is recent: kept.
    assert_eq!(
        count(
            &store,
            &format!("SELECT COUNT(*) FROM sync_run WHERE id = {latest_b}")
        )
        .await,
        1
    );
    assert_eq!(count(&store, "SELECT COUNT(*) FROM sync_run").await, 2);
    // The pupil's create went with its run, though the person's row still names the run.
    let history = rostersync::store::journal::of_person(store.db(), pupil).await;
    assert_eq!(creates_of(&history.expect("history")), 0);
    // The next cycle purges too, and says so: 99XB00's old run goes once it is no longer
    // the school's latest.
    let report = sim.sync(&store, false).await;
    assert_eq!(report.history.runs, 1, "{:?}", report.history);
    assert_eq!(
        count(
            &store,
            &format!("SELECT COUNT(*) FROM sync_run WHERE id = {latest_b}")
        )
        .await,
        0
    );
    // What a person was is still explained by what remains: the roster itself is untouched.
    let exported = export_of(&store, "99XA00").await;
    assert_eq!(exported.pupils.len(), 20);
}

#[tokio::test]
async fn the_bench_runs_its_many_schools_against_postgresql() {
    let Some(server) = crate::support::postgres_admin_url() else {
        eprintln!(
            "SKIP the_bench_runs_its_many_schools_against_postgresql: needs ROSTERSYNC_TEST_POSTGRES"
        );
        return;
    };
    let report = bench(&[
        "--pupils",
        "60",
        "--repeat",
        "1",
        "--schools",
        "4",
        "--school-pupils",
        "30",
        "--api-pupils",
        "0",
        "--store",
        &server,
    ]);
    assert_eq!(report["store"], "postgres");
    let many = &report["many_schools"];
    assert_eq!(many["outcomes_ok"], 4);
    assert_eq!(many["days"].as_array().expect("days").len(), 2);
    assert!(many["store_bytes_per_pupil"].as_f64().expect("bytes") > 0.0);
    // Its own database is gone again.
    let left = crate::support::postgres_databases(&server, "rostersync_bench_").await;
    assert!(left.is_empty(), "{left:?}");
}
