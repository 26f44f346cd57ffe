//! The engine's pure core (merge + diff) on generated schools, without network or store.
//! Run: `cargo bench --bench engine`. Targets from the engine issue: an unchanged re-sync of
//! a 1,000-pupil school well under 30 ms of engine time (apply to the store comes on top).

use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use connector_api::Snapshot;
use connector_sim::{SchoolKind, World};
use rostersync::settings::StoreSettings;
use rostersync::store::roster::{self, ApplyContext};
use rostersync::store::{OpenMode, Store};
use rostersync::sync::diff::{DiffOptions, StoredGroup, StoredPerson, diff};
use rostersync::sync::merge::merge;
use sea_orm::{ActiveValue::Set, EntityTrait};

fn snapshot(world: &World) -> Snapshot {
    rostersync::simulated::snapshot(&world.schools.values().next().expect("a school").school)
}

/// The stored side as it would be after a first sync of `s`.
fn stored(s: &Snapshot) -> (Vec<StoredGroup>, Vec<StoredPerson>) {
    let state = merge(&[s]).state;
    let groups = state
        .groups
        .values()
        .enumerate()
        .map(|(i, g)| StoredGroup {
            id: i as i64 + 1,
            state: g.clone(),
            removed: false,
        })
        .collect();
    let persons = state
        .persons
        .into_iter()
        .enumerate()
        .map(|(i, p)| StoredPerson {
            id: 100_000 + i as i64,
            state: p,
            removed: false,
            local: false,
        })
        .collect();
    (groups, persons)
}

/// Median time of `f` over about a second.
fn time(mut f: impl FnMut()) -> Duration {
    let mut times = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(1) || times.len() < 5 {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

/// A fresh SQLite store in `dir` with school 99XX00 linked.
async fn sqlite_store(dir: &std::path::Path) -> Store {
    let settings = StoreSettings {
        url: format!("sqlite://{}/bench.db?mode=rwc", dir.display()),
        busy_timeout_ms: 5000,
        max_connections: 4,
        password: None,
        allow_unverified_tls: false,
        migrate_on_upgrade: false,
    };
    let store = Store::open(&settings, OpenMode::Create)
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    let row = rostersync::store::entities::school::ActiveModel {
        id: Set("99XX00".into()),
        brin: Set("99XX".into()),
        dependance: Set("00".into()),
        name: Set(None),
        origin: Set("store".into()),
        las: Set(None),
        broker_id: Set(None),
        zermelo_portal: Set(None),
        state: Set("active".into()),
        state_reason: Set(None),
        state_since: Set(None),
        school_year: Set(None),
        fence: Set(0),
        created_at: Set(Utc::now()),
        updated_at: Set(Utc::now()),
        roster_digest: Set(None),
        frozen_by: Set(None),
        frozen_at: Set(None),
        sourced_id: Set(Some(rostersync::store::new_sourced_id())),
        roster_version: Set(0),
    };
    rostersync::store::entities::school::Entity::insert(row)
        .exec(store.writer())
        .await
        .expect("school");
    store
}

/// Load, merge, diff and (when there is anything) apply in one transaction.
async fn sync_once(store: &Store, s: &Snapshot) -> usize {
    let (groups, persons) = roster::load(store.db(), "99XX00").await.expect("load");
    let plan = diff(
        &merge(&[s]).state,
        &groups,
        &persons,
        &DiffOptions::default(),
    );
    if plan.is_empty() {
        return 0;
    }
    let txn = store
        .begin_write(rostersync::store::WriteKind::Apply)
        .await
        .expect("begin");
    let run = rostersync::store::runs::start(&txn, "99XX00", "bench", false)
        .await
        .expect("run");
    let ctx = ApplyContext {
        school: "99XX00",
        now: rostersync::store::Stamp::now(),
        retention: chrono::Duration::days(30),
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
    plan.person_creates.len() + plan.person_updates.len() + plan.person_removals.len()
}

fn store_part(date: NaiveDate) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    rt.block_on(async {
        let store = sqlite_store(dir.path()).await;
        let mut world = World::new(13, date);
        world.add_school("99XX00".parse().expect("id"), SchoolKind::Primary, 1000);
        let first = snapshot(&world);
        let t = Instant::now();
        let created = sync_once(&store, &first).await;
        let initial = t.elapsed();
        let mut samples = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            assert_eq!(sync_once(&store, &first).await, 0);
            samples.push(t.elapsed());
        }
        samples.sort();
        let unchanged = samples[samples.len() / 2];
        world.advance_day();
        world.advance_day();
        let changed = snapshot(&world);
        let t = Instant::now();
        let changes = sync_once(&store, &changed).await;
        let two_percent = t.elapsed();
        println!("store (SQLite, one transaction), 1,000 pupils:");
        println!(
            "  initial load        {:>8.1} ms  ({created} persons)",
            initial.as_secs_f64() * 1000.0
        );
        println!(
            "  unchanged re-sync   {:>8.1} ms  (load + merge + diff, no writes)",
            unchanged.as_secs_f64() * 1000.0
        );
        println!(
            "  changed re-sync     {:>8.1} ms  ({changes} person changes applied)",
            two_percent.as_secs_f64() * 1000.0
        );
    });
}

fn main() {
    let date = NaiveDate::from_ymd_opt(2025, 10, 1).expect("date");
    let mut world = World::new(11, date);
    world.add_school("99XX00".parse().expect("id"), SchoolKind::Primary, 1000);
    let first = snapshot(&world);
    let (groups, persons) = stored(&first);
    let opts = DiffOptions::default();

    let unchanged = time(|| {
        let plan = diff(&merge(&[&first]).state, &groups, &persons, &opts);
        assert!(plan.is_empty());
    });
    // Two simulated days change about 2% of a 1,000-pupil school.
    for _ in 0..2 {
        world.advance_day();
    }
    let changed = snapshot(&world);
    let mut changes = 0;
    let two_percent = time(|| {
        let plan = diff(&merge(&[&changed]).state, &groups, &persons, &opts);
        changes =
            plan.person_creates.len() + plan.person_updates.len() + plan.person_removals.len();
    });
    println!(
        "engine (merge + diff), 1,000 pupils, {} staff:",
        first.staff.len()
    );
    println!(
        "  unchanged re-sync   {:>8.2} ms",
        unchanged.as_secs_f64() * 1000.0
    );
    println!(
        "  changed re-sync     {:>8.2} ms  ({changes} person changes)",
        two_percent.as_secs_f64() * 1000.0
    );
    // Every run digests what its sources said, to skip the diff when nothing changed.
    let digest = time(|| {
        assert_eq!(rostersync::sync::digest::of(&[&changed]).len(), 64);
    });
    println!(
        "  digest of the answer {:>7.2} ms",
        digest.as_secs_f64() * 1000.0
    );

    // Many schools one after another: time and the largest single school's state.
    let mut many = World::new(12, date);
    for n in 0..500u32 {
        let id = format!("{:02}XA{:02}", 10 + n / 100, n % 100);
        many.add_school(id.parse().expect("id"), SchoolKind::Primary, 300);
    }
    let started = Instant::now();
    let mut total_persons = 0;
    for state in many.schools.values() {
        let s = rostersync::simulated::snapshot(&state.school);
        let plan = diff(&merge(&[&s]).state, &[], &[], &opts);
        total_persons += plan.person_creates.len();
    }
    println!(
        "  500 schools x 300 pupils, answer generation + parse + merge + diff: {:.2} s ({total_persons} persons)",
        started.elapsed().as_secs_f64()
    );
    store_part(date);
}
