//! Undo a run: an approve of held removals that turned out wrong, a group move, a run that
//! later runs touched (refused without --force), an undo of an undo, a dry run; and freezing
//! a school so the next sync does not re-apply the source's mistake.

use connector_sim::{SchoolKind, World};
use rostersync::store::export::{self, Export};
use rostersync::store::{Store, runs};

use crate::support::{SimEnv, count};

const SCHOOL: &str = "10XA00";

fn world() -> World {
    let mut w = World::new(55, rostersync::sync::run::today());
    w.add_school(SCHOOL.parse().expect("id"), SchoolKind::Primary, 60);
    w
}

async fn roster(store: &Store) -> Export {
    export::export(store.db(), SCHOOL)
        .await
        .expect("export")
        .expect("school")
}

fn at_source<T>(sim: &SimEnv, f: impl FnOnce(&mut connector_sim::SimSchool) -> T) -> T {
    sim.server.with_world(|w| {
        let s = w
            .schools
            .get_mut(&SCHOOL.parse().expect("id"))
            .expect("school");
        s.changed_at = chrono::Utc::now();
        f(&mut s.school)
    })
}

async fn newest_run(store: &Store) -> runs::Run {
    runs::list(store.db(), Some(SCHOOL), 1)
        .await
        .expect("runs")
        .into_iter()
        .next()
        .expect("a run")
}

/// The number in "Run N ..." that `approve` and `undo` print first.
fn run_number(stdout: &str) -> i64 {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Run "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no run number in {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_removal_is_undone_and_the_undo_can_be_undone() {
    let (sim, store) = SimEnv::start_linked(world(), false, false).await;
    sim.sync(&store, false).await;
    at_source(&sim, |s| s.pupils.truncate(40));
    let held = sim.sync(&store, false).await;
    let held_run = held.schools[0].run.expect("run");
    assert_eq!(
        held.schools[0].counts.pupils.held, 20,
        "the brakes hold them"
    );
    let before = roster(&store).await;
    assert_eq!(before.pupils.len(), 60);

    let approve = sim.env.run(&["approve", "--run", &held_run.to_string()]);
    let approval = run_number(&approve.ok().stdout);
    let approved = roster(&store).await;
    assert_eq!(approved.pupils.len(), 40);

    // The approval was a mistake: put everything back.
    let undo = sim.env.run(&["undo", "--run", &approval.to_string()]);
    undo.ok();
    assert!(undo.stdout.contains("school freeze"), "{}", undo.stdout);
    let undone = run_number(&undo.stdout);
    assert_eq!(
        roster(&store).await,
        before,
        "every pupil back with the same id, groups and grants as before"
    );
    let record = runs::get(store.db(), undone)
        .await
        .expect("run")
        .expect("recorded");
    assert_eq!(record.trigger, "undo");
    assert_eq!(record.outcome.as_deref(), Some("ok"));
    assert!(record.finished_at.is_some());
    assert_eq!(
        count(
            &store,
            &format!(
                "SELECT COUNT(*) FROM change_entry WHERE run_id = {undone} AND operation = \
                 'restore' AND rule LIKE 'undo of run {approval}, by %'"
            )
        )
        .await,
        20,
        "the undo is journaled, a line per pupil"
    );

    // Undoing the undo applies the approval again.
    let again = sim.env.run(&["undo", "--run", &undone.to_string()]);
    again.ok();
    assert_eq!(roster(&store).await, approved);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_move_is_undone_once_later_changes_are_accepted() {
    let (sim, store) = SimEnv::start_linked(world(), false, false).await;
    sim.sync(&store, false).await;
    let (pupil, from, to) = at_source(&sim, |s| {
        let to = s
            .groups
            .iter()
            .find(|g| !g.composed && g.key != s.pupils[0].group)
            .expect("another group")
            .key
            .clone();
        let p = &mut s.pupils[0];
        let from = std::mem::replace(&mut p.group, to.clone());
        (p.person.key.clone(), from, to)
    });
    sim.sync(&store, false).await;
    let moved = newest_run(&store).await.id;
    let group_of = |e: &Export| {
        e.pupils
            .iter()
            .find(|p| p.las_key.as_deref() == Some(pupil.as_str()))
            .and_then(|p| p.group.clone())
    };
    let after_move = roster(&store).await;
    assert_eq!(group_of(&after_move).as_deref(), Some(to.as_str()));

    // A dry run says what it would do and changes nothing.
    let runs_before = count(&store, "SELECT COUNT(*) FROM sync_run").await;
    let dry = sim
        .env
        .run(&["undo", "--run", &moved.to_string(), "--dry-run"]);
    dry.ok();
    assert!(
        dry.stdout.contains(&format!("back into {from}")),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains(&format!("out of {to}")),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("nothing was changed"), "{}", dry.stdout);
    assert_eq!(roster(&store).await, after_move);
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM sync_run").await,
        runs_before
    );

    // A later run touches the same pupil: the undo is refused, naming that run ...
    at_source(&sim, |s| {
        s.pupils[0].person.given.push('a');
    });
    sim.sync(&store, false).await;
    let later = newest_run(&store).await.id;
    let refused = sim.env.run(&["undo", "--run", &moved.to_string()]);
    let line = refused.fails_with(1);
    assert!(
        line.contains(&format!("run {later} (1 change(s))")),
        "{line}"
    );
    assert!(line.contains("--force"), "{line}");
    // ... and with --force it goes ahead: the pupil is back in its old group.
    sim.env
        .run(&["undo", "--run", &moved.to_string(), "--force"])
        .ok();
    assert_eq!(
        group_of(&roster(&store).await).as_deref(),
        Some(from.as_str())
    );

    // Frozen, the school keeps the undone roster although the source still says otherwise.
    sim.env.run(&["school", "freeze", SCHOOL]).ok();
    let out = sim.env.run(&["sync"]);
    out.fails_with(1);
    assert!(out.stdout.contains("frozen by"), "{}", out.stdout);
    assert_eq!(
        group_of(&roster(&store).await).as_deref(),
        Some(from.as_str())
    );
    let status = sim.env.run(&["status"]);
    assert!(
        status
            .stdout
            .contains(&format!("{SCHOOL} frozen: frozen by")),
        "{}",
        status.stdout
    );
    sim.env.run(&["school", "unfreeze", SCHOOL]).ok();
    sim.env.run(&["sync"]).ok();
    assert_eq!(
        group_of(&roster(&store).await).as_deref(),
        Some(to.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_cannot_be_undone_is_refused_with_the_reason() {
    let (sim, store) = SimEnv::start_linked(world(), false, false).await;
    sim.sync(&store, false).await;
    let first = newest_run(&store).await.id;
    let unknown = sim.env.run(&["undo", "--run", "987654"]);
    assert!(unknown.fails_with(2).contains("there is no run 987654"));
    // A dry run of sync applied nothing.
    sim.env.run(&["sync", "--dry-run"]).ok();
    let dry = newest_run(&store).await.id;
    let line = sim
        .env
        .run(&["undo", "--run", &dry.to_string()])
        .fails_with(1);
    assert!(line.contains("it was a dry run"), "{line}");
    // The first load can be undone: every pupil goes (and can come back).
    let undo = sim
        .env
        .run(&["undo", "--run", &first.to_string(), "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&undo.ok().stdout).expect("JSON");
    assert_eq!(report["counts"]["pupils"]["removed"], 60);
    assert!(roster(&store).await.pupils.is_empty());
}

/// A night that only brought a new pupil has no journal row of its own (the pupil's row keeps
/// the create), yet a later change to that pupil still stands in its undo's way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_only_created_a_pupil_still_sees_later_changes() {
    let (sim, store) = SimEnv::start_linked(world(), false, false).await;
    sim.sync(&store, false).await;
    at_source(&sim, |s| {
        let mut p = s.pupils[0].clone();
        p.person.key = "NEW-0001".into();
        p.person.eckid = None;
        s.pupils.push(p);
    });
    sim.sync(&store, false).await;
    let joined = newest_run(&store).await.id;
    let rows = format!("SELECT COUNT(*) FROM change_entry WHERE run_id = {joined}");
    assert_eq!(
        count(&store, &rows).await,
        0,
        "only a create, kept in the person"
    );
    let new_pupil = |e: &Export| {
        e.pupils
            .iter()
            .any(|p| p.las_key.as_deref() == Some("NEW-0001"))
    };
    assert!(new_pupil(&roster(&store).await));
    at_source(&sim, |s| {
        s.pupils
            .last_mut()
            .expect("the new pupil")
            .person
            .given
            .push('a');
    });
    sim.sync(&store, false).await;
    let later = newest_run(&store).await.id;
    let refused = sim.env.run(&["undo", "--run", &joined.to_string()]);
    let line = refused.fails_with(1);
    assert!(
        line.contains(&format!("run {later} (1 change(s))")),
        "{line}"
    );
    sim.env
        .run(&["undo", "--run", &joined.to_string(), "--force"])
        .ok();
    assert!(
        !new_pupil(&roster(&store).await),
        "the undo removed the pupil"
    );
}
