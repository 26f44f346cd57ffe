//! A pupil's ECK-iD changes (the personal number behind it changed). From the LAS alone that
//! is an identity conflict nothing resolves by itself: counted and shown until an operator
//! relinks the person, after which the next run is clean. Confirmed by the LAS and the
//! broker together (LAS key and broker id both name the person), it is taken at once.

use connector_sim::{SchoolKind, World};
use rostersync::store::export;
use rostersync::sync::report::Outcome;

use crate::support::{SimEnv, count, one};

const SCHOOL: &str = "10XA00";

fn world() -> World {
    let mut w = World::new(41, rostersync::sync::run::today());
    w.add_school(SCHOOL.parse().expect("id"), SchoolKind::Primary, 40);
    w
}

/// Give the first pupil with an ECK-iD a new one at the source; returns (LAS key, new).
fn change_an_eckid(sim: &SimEnv) -> (String, String) {
    sim.server.with_world(|w| {
        let s = w
            .schools
            .get_mut(&SCHOOL.parse().expect("id"))
            .expect("school");
        s.changed_at = chrono::Utc::now();
        let p = s
            .school
            .pupils
            .iter_mut()
            .find(|p| p.person.eckid.is_some())
            .expect("a pupil with an ECK-iD");
        let new = format!("https://ketenid.nl/201703/{}", "c0ffee".repeat(20));
        p.person.eckid = Some(new.clone());
        (p.person.key.clone(), new)
    })
}

async fn stored_id_and_eckid(
    store: &rostersync::store::Store,
    las_key: &str,
) -> (String, Option<String>) {
    let e = export::export(store.db(), SCHOOL)
        .await
        .expect("export")
        .expect("school");
    let p = e
        .pupils
        .iter()
        .find(|p| p.las_key.as_deref() == Some(las_key))
        .expect("pupil exported");
    (p.id.clone(), p.eckid.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_eckid_from_the_las_waits_for_a_person_and_relink_resolves_it() {
    let (sim, store) = SimEnv::start_linked(world(), false, false).await;
    sim.sync(&store, false).await;
    let (las_key, new) = change_an_eckid(&sim);
    let (id, old) = stored_id_and_eckid(&store, &las_key).await;

    // Every run says it, and `sync` asks for attention; nothing is merged.
    for _ in 0..2 {
        let out = sim.env.run(&["sync"]);
        let line = out.fails_with(1);
        assert!(line.contains("need attention"), "{line}");
        assert!(
            out.stdout.contains("person relink PERSON --accept-source"),
            "{}",
            out.stdout
        );
        assert_eq!(stored_id_and_eckid(&store, &las_key).await.1, old);
    }
    assert_eq!(
        count(
            &store,
            &format!(
                "SELECT COUNT(*) FROM change_entry WHERE person_id = {id} AND operation = \
                 'conflict' AND field = 'eckid'"
            )
        )
        .await,
        2
    );
    let status = sim.env.run(&["status"]);
    assert!(
        status
            .stdout
            .contains(&format!("{SCHOOL} needs attention: 1 identity conflict(s)")),
        "{}",
        status.stdout
    );
    let json = sim.env.run(&["status", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(list[0]["identity_conflicts"], 1);

    // The operator knows it is the same pupil: accept the source's new ECK-iD.
    let modified = format!("SELECT CAST(updated_at AS TEXT) FROM person WHERE id = {id}");
    let before = one(&store, &modified).await;
    let relink = sim
        .env
        .run(&["person", "relink", &las_key, "--accept-source"]);
    relink.ok();
    assert!(relink.stdout.contains(&format!("person {id}: ECK-iD")));
    let by_hand = count(
        &store,
        &format!(
            "SELECT COUNT(*) FROM change_entry WHERE person_id = {id} AND operation = 'edit' \
             AND field = 'eckid' AND rule LIKE 'by hand, by %'"
        ),
    )
    .await;
    assert_eq!(by_hand, 1, "journaled with who did it");
    // The API's delta (`dateLastModified>`) finds the person by this moment.
    assert_ne!(one(&store, &modified).await, before, "the person moved");

    let report = sim.sync(&store, false).await;
    let r = &report.schools[0];
    assert_eq!(r.outcome, Outcome::Ok, "{:?}", r.message);
    assert_eq!(r.counts.identity_conflicts, 0, "the next run is clean");
    assert_eq!(
        stored_id_and_eckid(&store, &las_key).await,
        (id, Some(new)),
        "the same person, with the new ECK-iD"
    );
    let status = sim.env.run(&["status", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_str(&status.stdout).expect("JSON");
    assert_eq!(list[0]["identity_conflicts"], 0);
    // Saying it again changes nothing; an ECK-iD someone else has is refused.
    let again = sim
        .env
        .run(&["person", "relink", &las_key, "--accept-source"]);
    assert!(
        again.ok().stdout.contains("nothing to change"),
        "{}",
        again.stdout
    );
    let other = export::export(store.db(), SCHOOL)
        .await
        .expect("export")
        .expect("school")
        .pupils
        .into_iter()
        .find(|p| p.las_key.as_deref() != Some(las_key.as_str()) && p.eckid.is_some())
        .expect("another pupil with an ECK-iD");
    let taken = sim.env.run(&[
        "person",
        "relink",
        &las_key,
        "--eckid",
        other.eckid.as_deref().expect("eckid"),
    ]);
    let line = taken.fails_with(2);
    assert!(
        line.contains(&format!("belongs to person {}", other.id)),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_eckid_the_las_and_the_broker_both_send_is_taken_at_once() {
    let (sim, store) = SimEnv::start_linked(world(), true, false).await;
    sim.sync(&store, false).await;
    let (las_key, new) = change_an_eckid(&sim);
    let (id, _) = stored_id_and_eckid(&store, &las_key).await;
    let report = sim.sync(&store, false).await;
    let r = &report.schools[0];
    assert_eq!(r.outcome, Outcome::Ok, "{:?}", r.message);
    assert_eq!(r.counts.identity_conflicts, 0, "{:?}", r.message);
    assert_eq!(
        stored_id_and_eckid(&store, &las_key).await,
        (id.clone(), Some(new))
    );
    assert_eq!(
        count(
            &store,
            &format!(
                "SELECT COUNT(*) FROM change_entry WHERE person_id = {id} AND operation = \
                 'relink' AND source = 'broker'"
            )
        )
        .await,
        1,
        "journaled as the sources' doing"
    );
}

/// Migration 9 moved `person_key`'s uniqueness from the value to a digest of it; migration 15
/// moved the keys into the person's row, each kind unique per school through an index of its
/// own. Down to migration 8 and up again over a synced school: every person keeps exactly its
/// keys each way, a key still finds its person across schools, and a second copy of a key at
/// that school is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_survive_the_key_migrations_both_ways_and_stay_unique() {
    use migration::MigratorTrait;
    let (sim, store) = SimEnv::start_linked(world(), false, false).await;
    sim.sync(&store, false).await;
    let before = keys_in_rows(&store).await;
    assert!(before.len() > 40, "{}", before.len());
    assert!(before.iter().any(|k| k.contains("|eckid|")), "{before:?}");
    let eckid = store_eckid(&store).await;
    // Counted from the end, so that later migrations do not move where this one lands.
    let after_8 = migration::Migrator::migrations().len() as u32 - 8;
    migration::Migrator::down(store.writer(), Some(after_8))
        .await
        .expect("down to migration 8");
    let rows = texts(
        &store,
        "SELECT CAST(person_id AS TEXT) || '|' || kind || '|' || value FROM person_key",
    )
    .await;
    assert_eq!(rows, before, "a table of keys again, one row a key");
    migration::Migrator::up(store.writer(), None)
        .await
        .expect("up again");
    assert_eq!(keys_in_rows(&store).await, before);
    let stored = crate::support::one(&store, "SELECT MIN(eckid) FROM person").await;
    assert!(
        stored.is_some_and(|e| e.starts_with('~') && e.len() == 129),
        "kept without the prefix"
    );
    let found = rostersync::store::journal::find_person(store.db(), &eckid)
        .await
        .expect("find");
    assert_eq!(found.len(), 1);
    let other = crate::support::one(
        &store,
        &format!(
            "SELECT CAST(MIN(id) AS TEXT) FROM person WHERE eckid IS NULL OR eckid <> '{eckid}'"
        ),
    )
    .await
    .expect("another person");
    let again = format!(
        "UPDATE person SET eckid = '{eckid}', eckid_digest = {} WHERE id = {other}",
        migration::key_digest(&eckid)
    );
    use sea_orm::ConnectionTrait;
    let refused = store
        .writer()
        .execute_unprepared(&again)
        .await
        .expect_err("a second copy of a key is refused");
    assert!(
        matches!(
            refused.sql_err(),
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
        ),
        "{refused}"
    );
    // The next run reads and writes the keys as before.
    sim.sync(&store, false).await;
    assert_eq!(keys_in_rows(&store).await, before);
    eckids_compact_the_same_in_sql(&store).await;
}

/// The ECK-iD's stored form in SQL (migration 15 writes it, the API reads it) is the Rust
/// one, on this backend, for values that look alike once compacted.
async fn eckids_compact_the_same_in_sql(store: &rostersync::store::Store) {
    for value in [
        "https://ketenid.nl/201703/0a1b2c",
        "https://ketenid.nl/201703/~0a",
        "https://ketenid.nl/201703/",
        "~0a",
        "~~0a",
        "0a",
    ] {
        let literal = format!("CAST('{value}' AS TEXT)");
        let compact = migration::compact_eckid_sql(&literal);
        let got = crate::support::one(store, &format!("SELECT {compact}")).await;
        assert_eq!(got.as_deref(), Some(&*migration::compact_eckid(value)));
        let full = migration::full_eckid_sql(&compact);
        let back = crate::support::one(store, &format!("SELECT {full}")).await;
        assert_eq!(back.as_deref(), Some(value), "{value}");
    }
}

/// Every key in the persons' rows as `person|kind|value`, sorted, the ECK-iD whole.
async fn keys_in_rows(store: &rostersync::store::Store) -> Vec<String> {
    let sql = [
        ("eckid", "eckid"),
        ("las", "las_key"),
        ("broker", "broker_id"),
        ("portal", "portal_code"),
    ]
    .map(|(kind, column)| {
        format!(
            "SELECT CAST(id AS TEXT) || '|{kind}|' || {column} FROM person \
             WHERE {column} IS NOT NULL"
        )
    })
    .join(" UNION ALL ");
    let mut keys: Vec<String> = texts(store, &sql)
        .await
        .into_iter()
        .map(|k| match k.split_once("|eckid|") {
            Some((person, stored)) => format!("{person}|eckid|{}", migration::full_eckid(stored)),
            None => k,
        })
        .collect();
    keys.sort();
    keys
}

/// The first column of every row of `sql`, as text, sorted.
async fn texts(store: &rostersync::store::Store, sql: &str) -> Vec<String> {
    use sea_orm::ConnectionTrait;
    let rows = store
        .db()
        .query_all_raw(sea_orm::Statement::from_string(
            store.backend(),
            sql.to_owned(),
        ))
        .await
        .expect("query");
    let mut out: Vec<String> = rows
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).expect("text"))
        .collect();
    out.sort();
    out
}

async fn store_eckid(store: &rostersync::store::Store) -> String {
    let e = export::export(store.db(), SCHOOL)
        .await
        .expect("export")
        .expect("school");
    e.pupils
        .iter()
        .find_map(|p| p.eckid.clone())
        .expect("a pupil with an ECK-iD")
}
