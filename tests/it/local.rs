//! People and groups added and edited by hand: locked fields are refused with their owner
//! named and nothing changed; free fields are accepted and survive syncs; a local record a
//! source later supplies is adopted without a duplicate.

use connector_sim::{SchoolKind, World};
use rostersync::store::Store;

use crate::support::{SimEnv, count, one};

fn id(s: &str) -> connector_api::SchoolId {
    s.parse().expect("school id")
}

/// `rostersync person add` in the primary school.
fn add_person(sim: &SimEnv, kind: &str, rest: &[&str]) -> crate::support::Run {
    let mut args = vec!["person", "add", "--school", "10XA00", "--kind", kind];
    args.extend_from_slice(rest);
    sim.env.run(&args)
}

/// A primary school with the broker and a secondary school with its LAS only.
async fn schools() -> (SimEnv, Store) {
    let mut w = World::new(13, rostersync::sync::run::today());
    w.add_school(id("10XA00"), SchoolKind::Primary, 30);
    w.add_school(id("20XA00"), SchoolKind::Secondary, 30);
    SimEnv::start_linked(w, true, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_fields_are_refused_with_their_owner_and_free_ones_accepted() {
    let (sim, store) = schools().await;
    // The secondary school has no broker: only primary schools are linked to it.
    sim.server.with_world(|w| {
        let b = w.broker_id(&id("20XA00")).expect("registered");
        w.broker.institutions.remove(&b);
    });
    sim.configure("");
    sim.env.run(&["sync"]).ok();

    let teacher = |school: &str| {
        format!(
            "SELECT CAST(MIN(p.id) AS TEXT) FROM person p WHERE p.school_id = '{school}' \
             AND p.kind = 'staff' AND p.email IS NOT NULL AND p.origin = 'source'"
        )
    };
    let broker_teacher = one(&store, &teacher("10XA00")).await.expect("a teacher");
    let las_teacher = one(&store, &teacher("20XA00")).await.expect("a teacher");
    let journal = "SELECT COUNT(*) FROM change_entry WHERE operation = 'edit'";
    for (person, owner) in [
        (&broker_teacher, "broker (Basispoort)"),
        (&las_teacher, "LAS"),
    ] {
        for field in ["family_name", "given_name", "email"] {
            let before = one(
                &store,
                &format!("SELECT {field} FROM person WHERE id = {person}"),
            )
            .await;
            let out = sim
                .env
                .run(&["person", "set", person, &format!("{field}=x@y.z")]);
            let line = out.fails_with(1);
            assert!(
                line.contains(&format!("person {person}: {field} is owned by the {owner}")),
                "{line}"
            );
            let after = one(
                &store,
                &format!("SELECT {field} FROM person WHERE id = {person}"),
            )
            .await;
            assert_eq!(before, after, "nothing changed");
        }
        // One locked field refuses the whole edit, free ones included.
        let out = sim.env.run(&[
            "person",
            "set",
            person,
            "end_date=2027-07-31",
            "family_name=X",
        ]);
        out.fails_with(1);
        assert_eq!(count(&store, journal).await, 0);
    }
    // A field no source supplies is free: set, journaled, and kept by the next sync.
    sim.env
        .run(&["person", "set", &broker_teacher, "end_date=2027-07-31"])
        .ok();
    assert_eq!(count(&store, journal).await, 1);
    sim.server.with_world(|w| {
        w.advance_day();
    });
    sim.env.run(&["sync"]).ok();
    assert_eq!(
        one(
            &store,
            &format!("SELECT CAST(end_date AS TEXT) FROM person WHERE id = {broker_teacher}")
        )
        .await
        .as_deref(),
        Some("2027-07-31")
    );
    let changes = sim.env.run(&["changes", "--person", &broker_teacher]);
    assert!(changes.stdout.contains("end_date"), "{}", changes.stdout);

    // Bad input never reaches the store.
    let out = sim
        .env
        .run(&["person", "set", &broker_teacher, "end_date=soon"]);
    assert!(out.fails_with(2).contains("end_date"));
    let out = sim
        .env
        .run(&["person", "set", &broker_teacher, "shoe_size=42"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = sim
        .env
        .run(&["person", "set", "999999", "end_date=2027-07-31"]);
    assert!(
        out.fails_with(1)
            .contains("no person has the id or key '999999'")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_account_is_adopted_by_the_source_without_a_duplicate() {
    let (sim, store) = schools().await;
    // Before the first sync an admin created accounts by hand: a teacher known by e-mail
    // only, and a pupil known by its LAS key. Both get a field no source sends.
    let (email, pupil_key) = sim.server.with_world(|w| {
        let s = &w.schools[&id("10XA00")].school;
        let t = s
            .teachers
            .iter()
            .find(|t| !t.groups.is_empty())
            .expect("a group teacher");
        (t.email.clone(), s.pupils[0].person.key.clone())
    });
    let out = add_person(
        &sim,
        "staff",
        &[
            "family_name=Handmatig",
            "given_name=Juf",
            &format!("email={}", email.to_uppercase()),
            "end_date=2027-07-31",
        ],
    );
    out.ok();
    let teacher: String = out
        .stdout
        .split_whitespace()
        .nth(2)
        .expect("the new id")
        .to_owned();
    let out = add_person(&sim, "pupil", &["--las-key", &pupil_key, "given_name=Kind"]);
    out.ok();
    let pupil: String = out.stdout.split_whitespace().nth(2).expect("id").to_owned();
    // Local records are fully editable.
    sim.env
        .run(&["person", "set", &teacher, "given_name=Juffrouw"])
        .ok();
    // A key that is taken is refused.
    let out = add_person(&sim, "pupil", &["--las-key", &pupil_key, "given_name=Twee"]);
    assert!(out.fails_with(2).contains("already belongs to person"));

    sim.env.run(&["sync"]).ok();
    let staff_with_email = count(
        &store,
        &format!(
            "SELECT COUNT(*) FROM person WHERE LOWER(email) = '{}'",
            email.to_lowercase()
        ),
    )
    .await;
    assert_eq!(staff_with_email, 1, "adopted, not doubled");
    for person in [&teacher, &pupil] {
        assert_eq!(
            one(
                &store,
                &format!("SELECT origin FROM person WHERE id = {person}")
            )
            .await
            .as_deref(),
            Some("source"),
            "person {person} kept its id"
        );
        let changes = sim.env.run(&["changes", "--person", person]);
        assert!(changes.stdout.contains("adopt"), "{}", changes.stdout);
    }
    // Its local-only field stayed; its source fields are locked now.
    assert_eq!(
        one(
            &store,
            &format!("SELECT CAST(end_date AS TEXT) FROM person WHERE id = {teacher}")
        )
        .await
        .as_deref(),
        Some("2027-07-31")
    );
    let out = sim.env.run(&["person", "set", &teacher, "given_name=Weer"]);
    assert!(out.fails_with(1).contains("owned by the broker"));
    sim.env.run(&["person", "set", &teacher, "end_date="]).ok();
    // A person may be named by any of their keys too (a LAS key can be ambiguous across
    // schools, which is refused with the ids; the broker id is not).
    let ambiguous = sim
        .env
        .run(&["person", "set", &pupil_key, "end_date=2030-07-31"]);
    assert!(ambiguous.fails_with(2).contains("give the id"));
    let broker_key = one(
        &store,
        &format!("SELECT broker_id FROM person WHERE id = {pupil}"),
    )
    .await
    .expect("a broker id");
    let by_key = sim
        .env
        .run(&["person", "set", &broker_key, "end_date=2030-07-31"]);
    by_key.ok();
    assert!(
        by_key.stdout.contains(&format!("person {pupil}: end_date")),
        "{}",
        by_key.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_groups_are_editable_and_kept_source_groups_locked() {
    let (sim, store) = schools().await;
    sim.env.run(&["sync"]).ok();
    sim.env
        .run(&[
            "group",
            "add",
            "--school",
            "10XA00",
            "RT-1",
            "--name",
            "Remedial teaching",
        ])
        .ok();
    sim.env
        .run(&[
            "group",
            "set",
            "--school",
            "10XA00",
            "RT-1",
            "name=RT groep",
            "year_group=5",
        ])
        .ok();
    let out = add_person(&sim, "pupil", &["--group", "RT-1", "given_name=Extra"]);
    out.ok();
    let source_group = one(
        &store,
        "SELECT MIN(key) FROM roster_group WHERE school_id = '10XA00' AND origin = 'source'",
    )
    .await
    .expect("a group");
    let out = sim.env.run(&[
        "group",
        "set",
        "--school",
        "10XA00",
        &source_group,
        "name=Mine",
    ]);
    let line = out.fails_with(1);
    assert!(line.contains("name is owned by the broker"), "{line}");
    // A sync leaves the local group, its name and its member alone.
    sim.server.with_world(|w| {
        w.advance_day();
    });
    sim.env.run(&["sync"]).ok();
    assert_eq!(
        one(
            &store,
            "SELECT name FROM roster_group WHERE key = 'RT-1' AND removed_at IS NULL"
        )
        .await
        .as_deref(),
        Some("RT groep")
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM membership m JOIN roster_group g ON g.id = m.group_id \
             WHERE g.key = 'RT-1'"
        )
        .await,
        1
    );
}
