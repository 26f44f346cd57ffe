//! The store's side of a sync: a Plan applied in one transaction, loaded back losslessly.
//! Runs on SQLite and PostgreSQL with simulated schools through the real UWLR parser.

use chrono::{Duration, NaiveDate};
use connector_api::Snapshot;
use connector_sim::{SchoolKind, World};
use rostersync::model::Field;
use rostersync::store::entities::change_entry;
use rostersync::store::roster::{self, ApplyContext};
use rostersync::store::runs;
use rostersync::store::schools::{self, NewSchool};
use rostersync::store::{OpenMode, Store};
use rostersync::sync::diff::{DiffOptions, Plan, diff};
use rostersync::sync::merge::merge;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::support::Env;

fn snapshot(world: &World) -> Snapshot {
    rostersync::simulated::snapshot(&world.schools.values().next().expect("a school").school)
}

async fn store_with_school(env: &Env) -> Store {
    env.run(&["migrate"]).ok();
    let settings = env.settings();
    let store = Store::open(&settings.store, OpenMode::Existing)
        .await
        .expect("store");
    schools::add(
        &store,
        &settings,
        None,
        NewSchool {
            id: "99XX00".parse().expect("id"),
            name: None,
            las: None,
            broker_id: None,
            key: None,
        },
    )
    .await
    .expect("school row");
    store
}

/// Load, diff against `snapshot`, apply in one transaction; returns the plan applied.
async fn sync(store: &Store, s: &Snapshot, options: &DiffOptions) -> Plan {
    let (groups, persons) = roster::load(store.db(), "99XX00").await.expect("load");
    let desired = merge(&[s]).state;
    let plan = diff(&desired, &groups, &persons, options);
    let txn = store
        .begin_write(rostersync::store::WriteKind::Apply)
        .await
        .expect("begin");
    let run = runs::start(&txn, "99XX00", "cli", false)
        .await
        .expect("run");
    let ctx = ApplyContext {
        school: "99XX00",
        now: rostersync::store::Stamp::now(),
        retention: Duration::days(30),
        run: Some(run),
        new_year: None,
    };
    let entries = rostersync::sync::journal::entries(&plan, &persons);
    let stored = roster::Stored {
        persons: &persons,
        groups: &groups,
    };
    roster::apply(&txn, &ctx, &plan, stored, &entries)
        .await
        .expect("apply");
    txn.commit().await.expect("commit");
    plan
}

#[tokio::test]
async fn plans_apply_and_load_back_losslessly_day_after_day() {
    let env = Env::new().await;
    let store = store_with_school(&env).await;
    let mut world = World::new(21, NaiveDate::from_ymd_opt(2025, 10, 1).expect("date"));
    world.add_school("99XX00".parse().expect("id"), SchoolKind::Primary, 150);
    for day in 0..4 {
        let s = snapshot(&world);
        let plan = sync(&store, &s, &DiffOptions::default()).await;
        assert!(
            !plan.is_empty(),
            "day {day}: the simulator changed something"
        );
        let (groups, persons) = roster::load(store.db(), "99XX00").await.expect("load");
        let live = persons.iter().filter(|p| !p.removed).count();
        assert_eq!(live, s.pupils.len() + s.staff.len(), "day {day}");
        // What was written reads back as exactly what the sources say: nothing left to do.
        let again = diff(
            &merge(&[&s]).state,
            &groups,
            &persons,
            &DiffOptions::default(),
        );
        assert!(
            again.is_empty(),
            "day {day}: store round trip lost something: {again:?}"
        );
        world.advance_day();
    }
    // Three days of moves and name corrections left their trace, field by field.
    let journal = change_entry::Entity::find()
        .all(store.db())
        .await
        .expect("journal");
    let count = |op: &str, field: Option<&str>| {
        journal
            .iter()
            .filter(|e| e.operation == op && (field.is_none() || e.field.as_deref() == field))
            .count()
    };
    assert!(
        count("join", None) > 0 && count("leave", None) > 0,
        "moves are journaled"
    );
    assert!(
        count("update", Some("family_name")) >= 3,
        "a name correction a day"
    );
    assert!(
        count("link-key", Some("eckid")) >= 3,
        "an arriving ECK-iD a day"
    );
    let corrected = journal
        .iter()
        .find(|e| e.operation == "update" && e.field.as_deref() == Some("family_name"))
        .expect("a correction");
    assert!(corrected.old_value.is_some() && corrected.new_value.is_some());
    assert!(corrected.rule.contains("matched by"), "{}", corrected.rule);
}

#[tokio::test]
async fn a_leaver_is_tombstoned_and_restored_with_the_same_id() {
    let env = Env::new().await;
    let store = store_with_school(&env).await;
    let mut world = World::new(22, NaiveDate::from_ymd_opt(2025, 10, 1).expect("date"));
    world.add_school("99XX00".parse().expect("id"), SchoolKind::Primary, 60);
    let full = snapshot(&world);
    sync(&store, &full, &DiffOptions::default()).await;
    let (_, before) = roster::load(store.db(), "99XX00").await.expect("load");

    let mut without = full.clone();
    let leaver = without.pupils.pop().expect("a pupil");
    let plan = sync(&store, &without, &DiffOptions::default()).await;
    assert_eq!(plan.person_removals.len(), 1);
    // The journal says who was removed, by which rule, in which run.
    let removals = change_entry::Entity::find()
        .filter(change_entry::Column::Operation.eq("remove"))
        .all(store.db())
        .await
        .expect("journal");
    assert_eq!(removals.len(), 1);
    assert_eq!(removals[0].person_id, Some(plan.person_removals[0].0));
    assert!(removals[0].run_id.is_some() && removals[0].rule.contains("absent"));
    // A run's creates are kept in the persons' rows, and read back as the run's entries, in
    // words (the journal's rows hold only the groups' creates).
    let rows = change_entry::Entity::find()
        .filter(change_entry::Column::Operation.eq("create"))
        .all(store.db())
        .await
        .expect("journal");
    assert!(rows.iter().all(|c| c.entity == "group"), "{rows:?}");
    let first = rows.first().and_then(|c| c.run_id).expect("the first run");
    let read = rostersync::store::journal::of_run(store.db(), first)
        .await
        .expect("journal");
    let persons: Vec<_> = read
        .iter()
        .filter(|c| c.operation == "create" && c.entity != "group")
        .collect();
    assert_eq!(persons.len(), full.pupils.len() + full.staff.len());
    assert!(
        persons
            .iter()
            .all(|c| c.id.is_none() && c.rule == "new identity in the source"),
        "{:?}",
        persons[0]
    );
    let groups: Vec<_> = read.iter().filter(|c| c.entity == "group").collect();
    assert_eq!(groups.len(), rows.len());
    assert!(groups.iter().all(|c| c.rule == "new in the source"));
    let (_, after) = roster::load(store.db(), "99XX00").await.expect("load");
    let gone = after
        .iter()
        .find(|p| p.state.keys.las_key == leaver.keys.las_key)
        .expect("the tombstone is kept");
    assert!(gone.removed);

    let plan = sync(&store, &full, &DiffOptions::default()).await;
    assert!(
        plan.person_creates.is_empty(),
        "a returning pupil is not a new person"
    );
    let (_, back) = roster::load(store.db(), "99XX00").await.expect("load");
    let returned = back
        .iter()
        .find(|p| p.state.keys.las_key == leaver.keys.las_key)
        .expect("back");
    assert!(!returned.removed);
    let original = before
        .iter()
        .find(|p| p.state.keys.las_key == leaver.keys.las_key)
        .expect("was there");
    assert_eq!(returned.id, original.id, "same id after the restore");
}

/// The school's persons as stored, after checking that a diff against what was sent finds
/// nothing to do (nothing was lost in `what`).
async fn loaded_as_sent(
    store: &Store,
    sent: &Snapshot,
    what: &str,
) -> Vec<rostersync::sync::diff::StoredPerson> {
    let (groups, persons) = roster::load(store.db(), "99XX00").await.expect("load");
    let again = diff(
        &merge(&[sent]).state,
        &groups,
        &persons,
        &DiffOptions::default(),
    );
    assert!(again.is_empty(), "lost in {what}: {again:?}");
    persons
}

/// New rows go in as one JSON parameter on PostgreSQL (`store::bulk`) and as bound values on
/// SQLite: text that JSON escapes, absent fields, dates and keys must come back as they went.
#[tokio::test]
async fn created_persons_read_back_exactly_whatever_their_text() {
    let env = Env::new().await;
    let store = store_with_school(&env).await;
    let mut world = World::new(29, NaiveDate::from_ymd_opt(2025, 10, 1).expect("date"));
    world.add_school("99XX00".parse().expect("id"), SchoolKind::Primary, 40);
    let mut s = snapshot(&world);
    let odd = [
        "d'Artagnan \"Jr\" \\ slash",
        "Émile-Ötzi 🙂",
        "{\"json\": [1, null]}",
        "tab\tand / slash",
    ];
    for (p, name) in s.pupils.iter_mut().zip(odd) {
        p.name.family_name = Some(name.into());
        p.name.prefix = None;
    }
    s.staff[0].end_date = NaiveDate::from_ymd_opt(2026, 7, 31);
    s.staff[0].email = None;
    let plan = sync(&store, &s, &DiffOptions::default()).await;
    assert!(
        plan.person_creates.len() > 40,
        "{}",
        plan.person_creates.len()
    );

    let persons = loaded_as_sent(&store, &s, "the bulk insert").await;
    for (p, name) in s.pupils.iter().zip(odd) {
        let stored = persons
            .iter()
            .find(|x| x.state.keys.las_key == p.keys.las_key)
            .expect("stored");
        let family = stored.state.fields.get(&Field::FamilyName);
        assert_eq!(family.map(|o| o.value.as_str()), Some(name));
        assert_eq!(stored.state.keys, p.keys, "keys as sent");
    }
    let run = runs::list(store.db(), Some("99XX00"), 1)
        .await
        .expect("runs")
        .remove(0)
        .id;
    let journal = rostersync::store::journal::of_run(store.db(), run)
        .await
        .expect("journal");
    let creates = journal.iter().filter(|c| c.operation == "create");
    assert_eq!(
        creates.count(),
        plan.person_creates.len() + plan.group_creates.len()
    );
}

#[tokio::test]
async fn many_persons_updated_in_one_run_read_back_field_by_field() {
    let env = Env::new().await;
    let store = store_with_school(&env).await;
    let mut world = World::new(23, NaiveDate::from_ymd_opt(2025, 10, 1).expect("date"));
    world.add_school("99XX00".parse().expect("id"), SchoolKind::Primary, 80);
    let mut s = snapshot(&world);
    // Two staff members with a school-wide role each, to lose them in one run.
    for (n, staff) in s.staff.iter_mut().take(2).enumerate() {
        staff.roles.push(connector_api::StaffRole {
            name: format!("IB{n}"),
            scope: connector_api::RoleScope::School,
        });
    }
    sync(&store, &s, &DiffOptions::default()).await;

    // One run: names to and from nothing, a new end date, a cleared one, two roles gone.
    let mut next = s.clone();
    next.pupils[0].name.prefix = Some("van der".into());
    next.pupils[1].name.prefix = None;
    next.pupils[1].name.family_name = Some("Émile-Ötzi".into());
    next.pupils[2].name.given_name = None;
    next.staff[0].end_date = NaiveDate::from_ymd_opt(2026, 7, 31);
    next.staff[1].email = None;
    for staff in next.staff.iter_mut().take(2) {
        staff.roles.clear();
    }
    let plan = sync(&store, &next, &DiffOptions::default()).await;
    assert!(plan.person_updates.len() >= 5, "{plan:?}");

    let persons = loaded_as_sent(&store, &next, "the batched update").await;
    let by_key = |k: &Option<String>| {
        persons
            .iter()
            .find(|p| &p.state.keys.las_key == k)
            .expect("stored")
    };
    let field = |p: &rostersync::sync::diff::StoredPerson, f: Field| {
        p.state.fields.get(&f).map(|o| o.value.clone())
    };
    let p1 = by_key(&next.pupils[1].keys.las_key);
    assert_eq!(field(p1, Field::FamilyName).as_deref(), Some("Émile-Ötzi"));
    assert_eq!(field(p1, Field::Prefix), None);
    let p0 = by_key(&next.pupils[0].keys.las_key);
    assert_eq!(field(p0, Field::Prefix).as_deref(), Some("van der"));
    let s0 = by_key(&next.staff[0].keys.las_key);
    assert_eq!(field(s0, Field::EndDate).as_deref(), Some("2026-07-31"));
    for staff in next.staff.iter().take(2) {
        assert!(by_key(&staff.keys.las_key).state.roles.is_empty());
    }
    assert_eq!(
        persons.iter().filter(|p| !p.removed).count(),
        next.pupils.len() + next.staff.len()
    );
}
