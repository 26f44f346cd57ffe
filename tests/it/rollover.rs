//! The summer, with the simulator's date walked through it: the switch on 1 August (group 8
//! leaves without a brake, group 1 arrives, everyone who moves up keeps their id, teachers'
//! grants follow their groups), a LAS that rolls over late (frozen, then switched when its
//! answer turns) and one that rolls over early (switched early).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use connector_sim::{SchoolKind, Summer, World};
use rostersync::store::Store;
use rostersync::store::export::Export;
use rostersync::sync::report::Outcome;

use serde_json::Value;

use crate::api::{Serve, all, conforms, get, token};
use crate::support::{SimEnv, count, set_moment};

const PRIMARY: &str = "10XA00";
const SECONDARY: &str = "20XB00";

fn day(m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2027, m, d).expect("date")
}

fn world(start: NaiveDate) -> World {
    let mut w = World::new(5, start);
    w.add_school(PRIMARY.parse().expect("id"), SchoolKind::Primary, 120);
    w.add_school(SECONDARY.parse().expect("id"), SchoolKind::Secondary, 180);
    w
}

async fn export(store: &Store, school: &str) -> Export {
    rostersync::store::export::export(store.db(), school)
        .await
        .expect("export")
        .expect("school")
}

/// The simulator's world moves on to `to`, a night at a time.
fn walk(sim: &SimEnv, to: NaiveDate) {
    sim.server.with_world(|w| {
        while w.today() < to {
            w.advance_day();
        }
    });
}

/// Each pupil's id by LAS key, with their year group.
fn pupils(e: &Export) -> BTreeMap<String, (String, Option<String>)> {
    e.pupils
        .iter()
        .map(|p| {
            (
                p.las_key.clone().expect("las key"),
                (p.id.clone(), p.year_group.clone()),
            )
        })
        .collect()
}

fn top_year(e: &Export) -> u32 {
    e.pupils
        .iter()
        .filter_map(|p| p.year_group.as_deref()?.parse().ok())
        .max()
        .expect("year groups")
}

async fn run_of(store: &Store, school: &str) -> (String, String) {
    let latest = |column: &str| {
        format!(
            "SELECT {column} FROM sync_run WHERE school_id = '{school}' ORDER BY id DESC LIMIT 1"
        )
    };
    let trigger = crate::support::one(store, &latest("trigger")).await;
    let outcome = crate::support::one(store, &latest("outcome")).await;
    (trigger.expect("a run"), outcome.expect("a run"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_1_august_last_years_leavers_go_without_a_brake_and_everyone_else_moves_up() {
    let sim = SimEnv::start(world(day(7, 30)), "").await;
    let store = sim.store().await;
    sim.sync_on(&store, false, day(7, 30)).await;
    // Until the switch the live year is the old one, whatever the LAS has prepared.
    walk(&sim, day(7, 31));
    let r = sim.sync_on(&store, false, day(7, 31)).await;
    assert!(
        r.schools.iter().all(|s| s.outcome == Outcome::Ok),
        "{:?}",
        r.schools
    );
    let mut before = BTreeMap::new();
    for school in [PRIMARY, SECONDARY] {
        let e = export(&store, school).await;
        assert_eq!(e.school.school_year.as_deref(), Some("2026-2027"));
        before.insert(school, e);
    }
    // The night of 31 July the LAS rolls over.
    walk(&sim, day(8, 1));
    let r = sim.sync_on(&store, false, day(8, 1)).await;
    for s in &r.schools {
        assert_eq!(s.outcome, Outcome::Ok, "{s:?}");
        assert_eq!(s.counts.pupils.held, 0, "{s:?}");
        assert!(
            s.message
                .as_deref()
                .is_some_and(|m| m.contains("school year 2027-2028 began")),
            "{s:?}"
        );
    }
    for school in [PRIMARY, SECONDARY] {
        let (was, now) = (&before[school], export(&store, school).await);
        assert_eq!(now.school.school_year.as_deref(), Some("2027-2028"));
        assert_eq!(run_of(&store, school).await.0, "rollover");
        let leaving = top_year(was).to_string();
        let (old, new) = (pupils(was), pupils(&now));
        let leavers: Vec<&String> = old
            .iter()
            .filter(|(_, (_, y))| y.as_deref() == Some(leaving.as_str()))
            .map(|(k, _)| k)
            .collect();
        assert!(!leavers.is_empty(), "{school} has a last year group");
        for key in &leavers {
            assert!(!new.contains_key(*key), "{school}: leaver {key} is gone");
        }
        for (key, (id, year)) in old.iter().filter(|(k, _)| !leavers.contains(k)) {
            let (id_now, year_now) = new
                .get(key)
                .unwrap_or_else(|| panic!("{school}: {key} stays"));
            assert_eq!(id_now, id, "{school}: {key} keeps their id");
            let up = year
                .as_deref()
                .and_then(|y| y.parse::<u32>().ok())
                .map(|y| (y + 1).to_string());
            assert_eq!(year_now, &up, "{school}: {key} moved up a year");
        }
        let arrivals = new.keys().filter(|k| !old.contains_key(*k)).count();
        assert!(arrivals > 0, "{school}: a new first year arrived");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teachers_grants_follow_their_groups_through_the_switch() {
    let sim = SimEnv::start(world(day(7, 31)), "").await;
    let store = sim.store().await;
    sim.sync_on(&store, false, day(7, 31)).await;
    let before = export(&store, PRIMARY).await;
    walk(&sim, day(8, 1));
    sim.sync_on(&store, false, day(8, 1)).await;
    let after = export(&store, PRIMARY).await;
    let groups = |e: &Export, id: &str| -> Vec<String> {
        e.staff
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.groups.clone())
            .unwrap_or_default()
    };
    let moved: Vec<&str> = before
        .staff
        .iter()
        .filter(|t| t.groups.len() == 1 && groups(&after, &t.id) != t.groups)
        .map(|t| t.id.as_str())
        .collect();
    assert_eq!(moved.len(), 2, "two teachers swapped groups");
    let grants = |e: &Export, id: &str| {
        e.grants
            .iter()
            .find(|g| g.staff == id)
            .cloned()
            .expect("grants")
    };
    for t in &moved {
        let (old, new) = (groups(&before, t), groups(&after, t));
        let g = grants(&after, t);
        // The new group at once, the old one still, while it waits out the grace period.
        assert!(
            g.groups.contains(&new[0]) && g.groups.contains(&old[0]),
            "{g:?}"
        );
        assert!(g.reasons.iter().any(|r| r.contains("pending")), "{g:?}");
    }
    let kept = before
        .staff
        .iter()
        .find(|t| t.groups.len() == 1 && !moved.contains(&t.id.as_str()))
        .expect("a teacher who keeps their group");
    let g = grants(&after, &kept.id);
    assert_eq!(g.groups, kept.groups, "no gap and nothing extra");
    assert!(!g.reasons.iter().any(|r| r.contains("pending")), "{g:?}");
    // After the grace period the old group is gone.
    set_moment(
        &store,
        "UPDATE access_grant SET revoke_after = {at} WHERE state = 'pending'",
        chrono::Utc::now() - chrono::Duration::hours(1),
    )
    .await;
    sim.sync_on(&store, false, day(8, 1)).await;
    let later = export(&store, PRIMARY).await;
    for t in &moved {
        assert_eq!(
            grants(&later, t).groups,
            groups(&after, t),
            "only the new group"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_school_stays_frozen_until_its_answer_turns_and_an_early_one_switches_early() {
    let sim = SimEnv::start(world(day(7, 20)), "").await;
    sim.server.with_world(|w| {
        w.set_summer(
            &PRIMARY.parse().expect("id"),
            Summer::Late(day(8, 10)),
            None,
        );
        w.set_summer(
            &SECONDARY.parse().expect("id"),
            Summer::Early(day(7, 25)),
            None,
        );
    });
    let store = sim.store().await;
    sim.sync_on(&store, false, day(7, 20)).await;
    // The early school answers for next year from 25 July: it switches then.
    walk(&sim, day(7, 25));
    sim.sync_on(&store, false, day(7, 25)).await;
    assert_eq!(
        run_of(&store, SECONDARY).await,
        ("rollover".into(), "ok".into())
    );
    assert_eq!(
        export(&store, SECONDARY)
            .await
            .school
            .school_year
            .as_deref(),
        Some("2027-2028")
    );
    assert_eq!(
        export(&store, PRIMARY).await.school.school_year.as_deref(),
        Some("2026-2027")
    );
    // Its later answers (still before 1 August) are next year's too: taken, not frozen.
    walk(&sim, day(7, 28));
    sim.sync_on(&store, false, day(7, 28)).await;
    assert_eq!(run_of(&store, SECONDARY).await.1, "ok");
    // The late school answers for the old year after 1 August: frozen, settles by itself.
    walk(&sim, day(8, 2));
    let r = sim.sync_on(&store, false, day(8, 2)).await;
    let late = r
        .schools
        .iter()
        .find(|s| s.school == PRIMARY)
        .expect("late school");
    assert_eq!(late.outcome, Outcome::Frozen, "{late:?}");
    assert!(
        late.message
            .as_deref()
            .is_some_and(|m| m.contains("settles by itself")),
        "{late:?}"
    );
    assert_eq!(
        export(&store, PRIMARY).await.school.school_year.as_deref(),
        Some("2026-2027")
    );
    // Its answer turns on 10 August: switched then.
    walk(&sim, day(8, 10));
    sim.sync_on(&store, false, day(8, 10)).await;
    assert_eq!(
        run_of(&store, PRIMARY).await,
        ("rollover".into(), "ok".into())
    );
    assert_eq!(
        export(&store, PRIMARY).await.school.school_year.as_deref(),
        Some("2027-2028")
    );
    assert_eq!(count(&store, "SELECT COUNT(*) FROM held_change").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_year_is_prepared_in_june_shown_by_rollover_status_and_goes_live_on_1_august() {
    use rostersync::sync::run::prepare::Preparing;
    use rostersync::sync::summer::{self, Standing};
    let sim = SimEnv::start(world(day(6, 10)), "").await;
    sim.server.with_world(|w| {
        w.set_summer(
            &PRIMARY.parse().expect("id"),
            Summer::OnTime,
            Some(day(6, 15)),
        );
    });
    let secret = sim.env.write("lp-secret", "lp-s3cret\n");
    sim.configure(&format!(
        "[api]\nlisten = \"127.0.0.1:0\"\n\n[[api.client]]\nid = \"lp\"\n\
         secret = {{ file = \"{}\" }}\nschools = [\"*\"]\nscopes = [\"{}\", \"{}\"]\n",
        secret.display(),
        crate::api::CORE,
        crate::api::ROSTER
    ));
    let store = sim.store().await;
    let calendar = rostersync::model::rollover::Calendar::default();
    let r = sim.sync_on(&store, false, day(6, 10)).await;
    assert!(
        r.schools
            .iter()
            .all(|s| s.prepared == Some(Preparing::NotYet)),
        "{:?}",
        r.schools
    );
    walk(&sim, day(6, 15));
    let r = sim.sync_on(&store, false, day(6, 15)).await;
    let prepared = |school: &str| {
        r.schools
            .iter()
            .find(|s| s.school == school)
            .and_then(|s| s.prepared.clone())
    };
    assert!(
        matches!(prepared(PRIMARY), Some(Preparing::Prepared { .. })),
        "{:?}",
        prepared(PRIMARY)
    );
    assert_eq!(prepared(SECONDARY), Some(Preparing::NotYet));
    // The live roster is this year's: what the LAS has prepared changes nothing in it.
    let live = export(&store, PRIMARY).await;
    assert_eq!(live.school.school_year.as_deref(), Some("2026-2027"));
    let (sim_pupils, leavers) = sim.server.with_world(|w| {
        let s = &w.schools[&PRIMARY.parse().expect("id")].school;
        (
            s.pupils.len(),
            s.pupils.iter().filter(|p| p.year == "8").count(),
        )
    });
    assert_eq!(live.pupils.len(), sim_pupils);
    assert!(leavers > 0);
    // What the switch would change is counted when the answer comes, not at every status.
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM prepared_year WHERE changes IS NOT NULL"
        )
        .await,
        1
    );
    // rollover status: prepared since today, and what the switch will change.
    let list = summer::status(&store, &calendar, day(6, 15), None)
        .await
        .expect("status");
    let primary = list.iter().find(|s| s.school == PRIMARY).expect("primary");
    assert_eq!(primary.next_year, "2027-2028");
    let Standing::Prepared { changes, .. } = &primary.standing else {
        panic!("{primary:?}");
    };
    assert_eq!(changes.leaving, leavers, "{changes:?}");
    assert_eq!(changes.arriving, leavers, "{changes:?}");
    assert_eq!(changes.moving_up, sim_pupils - leavers, "{changes:?}");
    // The two teachers who swap, and group 1's teacher: next year's intake group is a new
    // group (a new key), so one group ends and one begins.
    assert_eq!(changes.teachers_with_new_groups, 3, "{changes:?}");
    assert_eq!(
        (changes.groups_ending, changes.groups_beginning),
        (1, 1),
        "{changes:?}"
    );
    let secondary = list
        .iter()
        .find(|s| s.school == SECONDARY)
        .expect("secondary");
    assert_eq!(secondary.standing, Standing::NotPrepared);
    // The command says the same (its date is today's: the prepared year is still next year's).
    let out = sim.env.run(&["rollover", "--format", "json"]);
    let json: serde_json::Value = serde_json::from_str(&out.ok().stdout).expect("JSON");
    assert_eq!(json.as_array().expect("list").len(), 2);
    let shown = sim.env.run(&["rollover", "status", "--school", PRIMARY]);
    assert!(shown.ok().stdout.contains("prepared"), "{}", shown.stdout);
    // Next year's roster as prepared: who stays keeps their id and moves up; who is new
    // has no id yet; the live export is untouched.
    let out = sim
        .env
        .run(&["export", "--school", PRIMARY, "--school-year", "2027-2028"]);
    let next: serde_json::Value = serde_json::from_str(&out.ok().stdout).expect("JSON");
    assert_eq!(next["school"]["school_year"], "2027-2028");
    let then: BTreeMap<String, (String, Option<String>)> = next["pupils"]
        .as_array()
        .expect("pupils")
        .iter()
        .map(|p| {
            let text = |f: &str| p[f].as_str().map(str::to_owned);
            (
                text("las_key").expect("key"),
                (text("id").expect("id"), text("year_group")),
            )
        })
        .collect();
    assert_eq!(then.len(), sim_pupils);
    let now = pupils(&live);
    let stayer = live
        .pupils
        .iter()
        .find(|p| p.year_group.as_deref() == Some("3"))
        .expect("a pupil in group 3");
    let key = stayer.las_key.clone().expect("key");
    assert_eq!(then[&key], (stayer.id.clone(), Some("4".into())));
    let new = then
        .values()
        .filter(|(id, _)| id.starts_with("new:"))
        .count();
    assert_eq!(new, leavers);
    assert!(
        now.iter()
            .filter(|(_, (_, y))| y.as_deref() == Some("8"))
            .all(|(k, _)| !then.contains_key(k))
    );
    let refused = sim
        .env
        .run(&["export", "--school", PRIMARY, "--school-year", "2030-2031"]);
    assert!(refused.fails_with(2).contains("has not prepared 2030-2031"));
    let groups = next["groups"].as_array().expect("groups").len();
    let new_class = next_years_classes_in_oneroster(&sim, &store, groups).await;
    // The days until the switch are synced as every day (the prepared year is refreshed).
    let mut date = day(6, 15);
    while date < day(7, 31) {
        date = date.succ_opt().expect("date");
        walk(&sim, date);
        let r = sim.sync_on(&store, false, date).await;
        assert!(
            r.schools.iter().all(|s| s.outcome == Outcome::Ok),
            "{date}: {:?}",
            r.schools
        );
    }
    // What 31 July's prepared roster says each staff member will see next year.
    let out = sim
        .env
        .run(&["export", "--school", PRIMARY, "--school-year", "2027-2028"]);
    let foreseen = staff_grants(&serde_json::from_str(&out.ok().stdout).expect("JSON"));
    let today = staff_grants(&serde_json::to_value(export(&store, PRIMARY).await).expect("JSON"));
    assert_ne!(foreseen, today, "two teachers swap groups next year");
    // 1 August: the prepared year goes live in a run of its own, and is no longer "prepared".
    walk(&sim, day(8, 1));
    let r = sim.sync_on(&store, false, day(8, 1)).await;
    assert!(
        r.schools.iter().all(|s| s.outcome == Outcome::Ok),
        "{:?}",
        r.schools
    );
    assert_eq!(run_of(&store, PRIMARY).await.0, "rollover");
    assert_eq!(count(&store, "SELECT COUNT(*) FROM prepared_year").await, 0);
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM prepared_class").await,
        0
    );
    let now = export(&store, PRIMARY).await;
    assert_eq!(now.school.school_year.as_deref(), Some("2027-2028"));
    // The grants foreseen are the switch's, but for this year's that wait out the grace.
    let mut switched = staff_grants(&serde_json::to_value(&now).expect("JSON"));
    for reasons in switched.values_mut() {
        reasons.retain(|r| !r.contains("pending"));
    }
    assert_eq!(foreseen, switched);
    // The class shown in June is the one that went live, by the same sourcedId.
    let serve = Serve::start(&sim);
    let token = token(&serve, "lp", "lp-s3cret").await;
    let (status, _, body) = get(&serve, &token, &format!("/classes/{new_class}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["class"]["terms"][0]["sourcedId"],
        "schoolyear-2027-2028"
    );
    let live = all(&serve, &token, "/classes", "classes", "ClassSetDType").await;
    assert!(live.iter().any(|c| c["sourcedId"] == new_class.as_str()));
}

/// Each staff member's grants in an export (JSON), by LAS key: the reasons, one per grant.
fn staff_grants(export: &serde_json::Value) -> BTreeMap<String, Vec<String>> {
    let key_of: BTreeMap<&str, &str> = export["staff"]
        .as_array()
        .expect("staff")
        .iter()
        .map(|s| {
            let text = |f: &str| s[f].as_str().expect(f);
            (text("id"), text("las_key"))
        })
        .collect();
    export["grants"]
        .as_array()
        .expect("grants")
        .iter()
        .map(|g| {
            let staff = g["staff"].as_str().expect("staff");
            let mut reasons: Vec<String> = g["reasons"]
                .as_array()
                .expect("reasons")
                .iter()
                .map(|r| r.as_str().expect("reason").to_owned())
                .collect();
            reasons.sort();
            (key_of[staff].to_owned(), reasons)
        })
        .collect()
}

/// In June, with next year prepared for the primary school: the OneRoster API lists next
/// year's session and its classes there (and only there), `groups` of them, each with the
/// sourcedId it keeps after the switch. Returns the sourcedId of a class new next year.
async fn next_years_classes_in_oneroster(sim: &SimEnv, store: &Store, groups: usize) -> String {
    let serve = Serve::start(sim);
    let token = token(&serve, "lp", "lp-s3cret").await;
    let sessions = all(
        &serve,
        &token,
        "/academicSessions",
        "academicSessions",
        "AcademicSessionSetDType",
    )
    .await;
    let ids: Vec<&str> = sessions
        .iter()
        .filter_map(|s| s["sourcedId"].as_str())
        .collect();
    assert_eq!(ids, ["schoolyear-2026-2027", "schoolyear-2027-2028"]);
    assert_eq!(sessions[1]["startDate"], "2027-08-01");
    let next_term = "/terms/schoolyear-2027-2028/classes";
    let next = all(&serve, &token, next_term, "classes", "ClassSetDType").await;
    assert_eq!(next.len(), groups);
    assert!(
        next.iter()
            .all(|c| c["terms"][0]["sourcedId"] == "schoolyear-2027-2028"
                && c["school"]["sourcedId"].is_string())
    );
    // A group that goes on keeps its sourcedId; a new one has the one the switch gives it.
    let live_sids = rostersync::store::roster::group_sids(store.db(), PRIMARY)
        .await
        .expect("groups");
    let (going_on, new): (Vec<&Value>, Vec<&Value>) = next
        .iter()
        .partition(|c| live_sids.contains_key(c["classCode"].as_str().expect("code")));
    assert!(!going_on.is_empty() && !new.is_empty(), "{next:#?}");
    for c in &going_on {
        let key = c["classCode"].as_str().expect("code");
        assert_eq!(c["sourcedId"].as_str(), Some(live_sids[key].as_str()));
    }
    let year = connector_api::SchoolYear::starting(2027);
    for c in &new {
        let key = c["classCode"].as_str().expect("code");
        let sid = rostersync::model::rollover::class_sid(PRIMARY, year, key);
        assert_eq!(c["sourcedId"].as_str(), Some(sid.as_str()));
    }
    let new_class = new[0]["sourcedId"].as_str().expect("sid").to_owned();
    // Not live: the live collections do not have it; asked by its id, it is next year's.
    let live = all(&serve, &token, "/classes", "classes", "ClassSetDType").await;
    assert!(live.iter().all(|c| c["sourcedId"] != new_class.as_str()));
    let this_term = "/terms/schoolyear-2026-2027/classes";
    let this_year = all(&serve, &token, this_term, "classes", "ClassSetDType").await;
    assert_eq!(this_year.len(), live.len());
    let (status, _, body) = get(&serve, &token, &format!("/classes/{new_class}")).await;
    assert_eq!(status, 200, "{body}");
    conforms(&body, "SingleClassDType");
    assert_eq!(
        body["class"]["terms"][0]["sourcedId"],
        "schoolyear-2027-2028"
    );
    // Per school: the primary has next year among its terms, the secondary (nothing
    // prepared) this year's only.
    let orgs = all(&serve, &token, "/orgs", "orgs", "OrgSetDType").await;
    let terms_of = |school: &str| {
        let org = orgs
            .iter()
            .find(|o| o["identifier"] == school)
            .expect("org");
        format!("/schools/{}/terms", org["sourcedId"].as_str().expect("sid"))
    };
    for (school, years) in [(PRIMARY, 2), (SECONDARY, 1)] {
        let path = terms_of(school);
        let terms = all(
            &serve,
            &token,
            &path,
            "academicSessions",
            "AcademicSessionSetDType",
        )
        .await;
        assert_eq!(terms.len(), years, "{school}: {terms:#?}");
    }
    new_class
}
