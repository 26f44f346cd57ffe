//! The engine's pure core (merge + diff) on generated schools, without network or store.
//! Run: `cargo bench --bench engine`. Targets from the engine issue: an unchanged re-sync of
//! a 1,000-pupil school well under 30 ms of engine time (apply to the store comes on top).

use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use connector_api::Snapshot;
use connector_sim::uwlr::{Operation, answer};
use connector_sim::{SchoolKind, World};
use connector_uwlr::parse::{Answer, parse_answer};
use rostersync::sync::diff::{DiffOptions, StoredGroup, StoredPerson, diff};
use rostersync::sync::merge::merge;

fn snapshot(world: &World) -> Snapshot {
    let s = &world.schools.values().next().expect("a school").school;
    let xml = answer(s, Operation::AllInOne, "2.2", &[]);
    let Ok(Answer::Data(mut p)) = parse_answer(xml.as_bytes()) else {
        unreachable!("the simulator's answers parse");
    };
    connector_uwlr::integrity::check(&mut p, &Default::default());
    p.into_snapshot(Utc::now())
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

    // Many schools one after another: time and the largest single school's state.
    let mut many = World::new(12, date);
    for n in 0..500u32 {
        let id = format!("{:02}XA{:02}", 10 + n / 100, n % 100);
        many.add_school(id.parse().expect("id"), SchoolKind::Primary, 300);
    }
    let started = Instant::now();
    let mut total_persons = 0;
    for state in many.schools.values() {
        let xml = answer(&state.school, Operation::AllInOne, "2.2", &[]);
        let Ok(Answer::Data(p)) = parse_answer(xml.as_bytes()) else {
            unreachable!("parses");
        };
        let s = p.into_snapshot(Utc::now());
        let plan = diff(&merge(&[&s]).state, &[], &[], &opts);
        total_persons += plan.person_creates.len();
    }
    println!(
        "  500 schools x 300 pupils, answer generation + parse + merge + diff: {:.2} s ({total_persons} persons)",
        started.elapsed().as_secs_f64()
    );
}
