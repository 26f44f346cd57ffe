//! Group-scoped permissions through the simulator and the store: who sees which group and
//! why, a teacher who moves, the grace period, manual grants, `can`.

use chrono::Utc;
use connector_sim::{SchoolKind, World};
use rostersync::store::Store;
use serde_json::Value;

use crate::support::{SimEnv, count, set_moment};

const SCHOOL: &str = "10XA00";

fn id(s: &str) -> connector_api::SchoolId {
    s.parse().expect("school id")
}

async fn school() -> (SimEnv, Store) {
    let mut w = World::new(17, rostersync::sync::run::today());
    w.add_school(id(SCHOOL), SchoolKind::Primary, 80);
    SimEnv::start_linked(w, true, false).await
}

fn json(sim: &SimEnv, args: &[&str]) -> Value {
    let out = sim.env.run(args);
    out.ok();
    serde_json::from_str(&out.stdout).expect("JSON")
}

/// The groups `permissions` lists for `person`, with their levels.
fn visible(sim: &SimEnv, person: &str) -> Vec<(String, String)> {
    json(sim, &["permissions", person, "--format", "json"])["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                g["group"].as_str().expect("key").to_owned(),
                g["level"].as_str().expect("level").to_owned(),
            )
        })
        .collect()
}

/// The grant ids behind `person`'s view of `group`, with their states.
fn grants_for(sim: &SimEnv, person: &str, group: &str) -> Vec<(i64, String)> {
    json(sim, &["permissions", person, "--format", "json"])["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter(|g| g["group"] == group)
        .flat_map(|g| g["reasons"].as_array().expect("reasons").clone())
        .map(|r| {
            (
                r["grant"].as_i64().expect("id"),
                r["state"].as_str().expect("state").to_owned(),
            )
        })
        .collect()
}

/// Re-link teacher `index` of the simulated school to `group` only (in the LAS and, with no
/// delay, at the broker).
fn move_teacher(sim: &SimEnv, index: usize, group: &str) {
    sim.server.with_world(|w| {
        let s = w.schools.get_mut(&id(SCHOOL)).expect("school");
        s.school.teachers[index].groups = vec![(group.to_owned(), vec!["LRK".to_owned()])];
        s.changed_at = Utc::now();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_staff_member_sees_what_their_role_and_links_give_and_says_why() {
    let (sim, store) = school().await;
    sim.env.run(&["sync"]).ok();
    let export = json(&sim, &["export", "--school", SCHOOL]);
    let all_groups = export["groups"].as_array().expect("groups").len();
    let staff = export["staff"].as_array().expect("staff");
    let by_roles = |role: &str| -> Vec<String> {
        staff
            .iter()
            .filter(|s| {
                s["roles"]
                    .as_array()
                    .expect("roles")
                    .iter()
                    .any(|r| r.as_str().is_some_and(|r| r.starts_with(role)))
            })
            .map(|s| s["id"].as_str().expect("id").to_owned())
            .collect()
    };
    // The teacher of one group (the last group teacher has exactly one link).
    let (teacher_key, group) = sim.server.with_world(|w| {
        let s = &w.schools[&id(SCHOOL)].school;
        let t = s
            .teachers
            .iter()
            .rev()
            .find(|t| t.groups.len() == 1 && t.roles.is_empty())
            .expect("a group teacher");
        (t.person.key.clone(), t.groups[0].0.clone())
    });
    assert_eq!(
        visible(&sim, &teacher_key),
        [(group.clone(), "related".to_owned())]
    );
    // The IB'er sees every group, as a whole-school right.
    let ib = by_roles("IBRTer");
    assert_eq!(ib.len(), 1);
    let seen = visible(&sim, &ib[0]);
    assert_eq!(seen.len(), all_groups);
    assert!(seen.iter().all(|(_, level)| level == "school"));
    // The stagiair sees the one group they are placed in.
    let stagiair = by_roles("Stagiair");
    assert_eq!(visible(&sim, &stagiair[0]).len(), 1);
    // The ICT coordinator administers the link: no group at all.
    let text = sim
        .env
        .run(&["permissions", &by_roles("ICTCoordinator")[0]]);
    text.ok();
    assert!(text.stdout.contains("ict-coordinator"), "{}", text.stdout);

    // export lists the grants with their reasons.
    let grants = export["grants"].as_array().expect("grants");
    let ib_grant = grants
        .iter()
        .find(|g| g["staff"] == ib[0].as_str())
        .expect("the IB'er's rights");
    assert_eq!(ib_grant["level"], "school");
    assert!(
        ib_grant["reasons"][0]
            .as_str()
            .expect("reason")
            .contains("intern-begeleider"),
        "{ib_grant}"
    );

    // can: yes through the teacher's group, no for a pupil elsewhere.
    let pupil_in = |wanted: bool| {
        export["pupils"]
            .as_array()
            .expect("pupils")
            .iter()
            .find(|p| (p["group"] == group.as_str()) == wanted)
            .and_then(|p| p["id"].as_str())
            .expect("a pupil")
            .to_owned()
    };
    let yes = sim.env.run(&["can", &teacher_key, &pupil_in(true)]);
    yes.ok();
    assert!(
        yes.stdout.starts_with("yes:") && yes.stdout.contains("teacher"),
        "{}",
        yes.stdout
    );
    let no = sim.env.run(&["can", &teacher_key, &pupil_in(false)]);
    no.fails_with(1);
    assert!(no.stdout.starts_with("no:"), "{}", no.stdout);

    // No grant exists without a rule and a fact.
    let bare = count(
        &store,
        "SELECT COUNT(*) FROM access_grant WHERE rule = '' OR fact = ''",
    )
    .await;
    assert_eq!(bare, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_teacher_sees_the_new_group_at_once_and_the_old_one_until_the_grace_ends() {
    let (sim, store) = school().await;
    sim.env.run(&["sync"]).ok();
    let (index, teacher, old, new) = sim.server.with_world(|w| {
        let s = &w.schools[&id(SCHOOL)].school;
        let (i, t) = s
            .teachers
            .iter()
            .enumerate()
            .rev()
            .find(|(_, t)| t.groups.len() == 1 && t.roles.is_empty())
            .expect("a group teacher");
        let old = t.groups[0].0.clone();
        let new = s
            .groups
            .iter()
            .find(|g| !g.composed && g.key != old)
            .expect("another group")
            .key
            .clone();
        (i, t.person.key.clone(), old, new)
    });
    let first = grants_for(&sim, &teacher, &old);
    assert_eq!(first.len(), 1);
    let old_grant = first[0].0;

    // A manual grant to a third group, which no sync may take away.
    let third = sim.server.with_world(|w| {
        w.schools[&id(SCHOOL)]
            .school
            .groups
            .iter()
            .find(|g| !g.composed && g.key != old && g.key != new)
            .expect("a third group")
            .key
            .clone()
    });
    let added = sim.env.run(&[
        "grant", "add", "--person", &teacher, "--group", &third, "--note", "remedial",
    ]);
    added.ok();

    move_teacher(&sim, index, &new);
    sim.env.run(&["sync"]).ok();
    let seen: Vec<String> = visible(&sim, &teacher)
        .into_iter()
        .map(|(g, _)| g)
        .collect();
    assert!(
        seen.contains(&new) && seen.contains(&old) && seen.contains(&third),
        "{seen:?}"
    );
    assert_eq!(
        grants_for(&sim, &teacher, &old),
        [(old_grant, "pending".to_owned())]
    );
    let shown = sim.env.run(&["permissions", &teacher]);
    assert!(shown.stdout.contains("revoked on"), "{}", shown.stdout);

    // Back within the grace period: the same grant, active again.
    move_teacher(&sim, index, &old);
    sim.env.run(&["sync"]).ok();
    assert_eq!(
        grants_for(&sim, &teacher, &old),
        [(old_grant, "active".to_owned())]
    );

    // Moved again, and this time the grace period runs out.
    move_teacher(&sim, index, &new);
    sim.env.run(&["sync"]).ok();
    // Let the grace period pass.
    set_moment(
        &store,
        "UPDATE access_grant SET revoke_after = {at} WHERE state = 'pending'",
        Utc::now() - chrono::Duration::hours(1),
    )
    .await;
    // Even a run in which nothing changed at the sources revokes it.
    sim.env.run(&["sync"]).ok();
    let seen: Vec<String> = visible(&sim, &teacher)
        .into_iter()
        .map(|(g, _)| g)
        .collect();
    assert!(!seen.contains(&old), "{seen:?}");
    assert!(
        seen.contains(&new) && seen.contains(&third),
        "the manual grant stays: {seen:?}"
    );

    // The journal tells the story; a derived grant cannot be removed by hand, a manual one can.
    let changes = sim.env.run(&["changes", "--person", &teacher]);
    for op in ["grant", "pending", "restore", "revoke"] {
        assert!(changes.stdout.contains(op), "{op}: {}", changes.stdout);
    }
    let derived = grants_for(&sim, &teacher, &new)[0].0.to_string();
    let refused = sim.env.run(&["grant", "remove", &derived]);
    assert!(refused.fails_with(1).contains("is derived by rule teacher"));
    let manual = grants_for(&sim, &teacher, &third)[0].0.to_string();
    sim.env.run(&["grant", "remove", &manual]).ok();
    let seen: Vec<String> = visible(&sim, &teacher)
        .into_iter()
        .map(|(g, _)| g)
        .collect();
    assert_eq!(seen, [new]);
}
