//! The Zermelo connector against the simulated portal over HTTPS, and a secondary school
//! synced from its LAS and its portal together: one roster, school functions as grants.

use chrono::Utc;
use connector_api::http::HttpPolicy;
use connector_api::{
    Connector, ConnectorError, ErrorKind, FetchOutcome, FetchRequest, RoleScope, SchoolId,
    SchoolYear, Snapshot,
};
use connector_sim::{SchoolKind, SimServer, World};
use connector_zermelo::{ZermeloConfig, ZermeloConnector};
use rostersync::store::Store;
use rostersync::sync::report::Outcome;
use secrecy::SecretString;

use crate::support::{SimEnv, count};

const SCHOOL: &str = "20XA00";

fn id(s: &str) -> SchoolId {
    s.parse().expect("school id")
}

fn world() -> World {
    let mut w = World::new(23, rostersync::sync::run::today());
    // Three classes per leerjaar: the first's mentor is team leader, the last's dean.
    w.add_school(id(SCHOOL), SchoolKind::Secondary, 360);
    w
}

fn connector(sim: &SimServer) -> ZermeloConnector {
    ZermeloConnector::new(ZermeloConfig {
        portal: sim.portal_url(&id(SCHOOL)).parse().expect("url"),
        ca_pem: Some(sim.pki.ca_pem().as_bytes().to_vec()),
        policy: HttpPolicy {
            max_attempts: 1,
            ..HttpPolicy::default()
        },
    })
    .expect("connector")
}

fn request(sim: &SimServer) -> FetchRequest {
    let token = sim.with_world(|w| w.portal.tokens[&id(SCHOOL)].token.clone());
    FetchRequest {
        school: id(SCHOOL),
        school_year: SchoolYear::containing(rostersync::sync::run::today()),
        credential: Some(SecretString::from(token)),
        remote_id: None,
        last_received: None,
        last_marker: None,
    }
}

#[tokio::test]
async fn the_portal_gives_classes_placements_staff_and_school_functions() {
    let sim = SimServer::start(world(), 0).await.expect("simulator");
    let snap: Snapshot = match connector(&sim).fetch(&request(&sim)).await {
        Ok(FetchOutcome::Snapshot(s)) => *s,
        other => panic!("expected a snapshot, got {other:?}"),
    };
    let (groups, pupils, teachers) = sim.with_world(|w| {
        let s = &w.schools[&id(SCHOOL)].school;
        (s.groups.len(), s.pupils.len(), s.teachers.len())
    });
    assert!(snap.rejects.is_empty(), "{:?}", snap.rejects);
    assert_eq!(snap.groups.len(), groups);
    assert!(snap.groups.iter().all(|g| g.department.is_some()));
    assert_eq!(snap.pupils.len(), pupils);
    assert_eq!(snap.staff.len(), teachers);
    // The user code is the portal key; somUUID links to the LAS key.
    assert!(
        snap.pupils
            .iter()
            .all(|p| p.keys.portal_code.is_some() && p.keys.las_key.is_some())
    );
    let mentors = snap
        .staff
        .iter()
        .filter(|s| s.roles.iter().any(|r| r.name == "mentor"))
        .count();
    assert_eq!(mentors, teachers, "every class teacher mentors a class");
    assert!(
        snap.staff
            .iter()
            .any(|s| s.roles.iter().any(|r| r.name == "teamleader"
                && matches!(&r.scope, RoleScope::Departments(d) if !d.is_empty())))
    );
    assert!(
        snap.staff
            .iter()
            .any(|s| s.roles.iter().any(|r| r.name == "applicationmanager"))
    );
    // Pupils were asked per department: one request each, never the whole school at once.
    let departments = snap
        .groups
        .iter()
        .filter_map(|g| g.department.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u64;
    let requests = sim.with_world(|w| w.portal.requests[&id(SCHOOL)]);
    assert_eq!(requests, 6 + departments);
    // The token's expiry is read too (a year ahead in the simulator).
    assert!(
        snap.credential_expires
            .is_some_and(|e| e > Utc::now() + chrono::Duration::days(300))
    );
}

#[tokio::test]
async fn an_expired_token_and_a_hidden_field_are_said_plainly() {
    let sim = SimServer::start(world(), 0).await.expect("simulator");
    let c = connector(&sim);
    sim.with_world(|w| w.portal.hide("employees", "email"));
    let err = c.fetch(&request(&sim)).await.expect_err("hidden");
    assert!(matches!(err, ConnectorError::AccessDenied { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("employees") && text.contains("'email'"),
        "{text}"
    );

    sim.with_world(|w| w.portal.expire(&id(SCHOOL)));
    let err = c.fetch(&request(&sim)).await.expect_err("expired");
    assert_eq!(err.kind(), ErrorKind::Credentials, "{err}");
    assert!(err.to_string().contains("expired"), "{err}");
    crate::support::assert_no_secret(&err.to_string(), "error");
}

async fn linked() -> (SimEnv, Store) {
    SimEnv::start_linked(world(), false, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_school_with_a_las_and_a_portal_is_one_roster_with_mentor_grants() {
    let (sim, store) = linked().await;
    let report = sim.sync(&store, false).await;
    let r = &report.schools[0];
    assert_eq!(r.outcome, Outcome::Ok, "{:?}", r.message);
    assert_eq!(r.counts.conflicts, 0, "{:?}", r.counts);
    let (pupils, teachers) = sim.server.with_world(|w| {
        let s = &w.schools[&id(SCHOOL)].school;
        (s.pupils.len() as i64, s.teachers.len() as i64)
    });
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM person").await,
        pupils + teachers,
        "no duplicates"
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM person WHERE portal_code IS NOT NULL"
        )
        .await,
        pupils + teachers
    );

    // The mentor of a class sees it through the school-function rule (and the LAS link).
    let (index, mentor, old, new) = sim.server.with_world(|w| {
        let s = &w.schools[&id(SCHOOL)].school;
        let (i, t) = s
            .teachers
            .iter()
            .enumerate()
            .find(|(_, t)| t.groups.len() == 1 && t.groups[0].0.ends_with('B'))
            .expect("the mentor of a B class (no other function)");
        let old = t.groups[0].0.clone();
        let new = s
            .groups
            .iter()
            .find(|g| !g.composed && g.key != old)
            .expect("another class")
            .key
            .clone();
        (i, t.person.key.clone(), old, new)
    });
    let permissions = sim.env.run(&["permissions", &mentor]);
    assert!(
        permissions
            .stdout
            .contains(&format!("mentor: portal: role mentor ({old})")),
        "{}",
        permissions.stdout
    );
    // A team leader sees their department's classes.
    let leaders = count(
        &store,
        "SELECT COUNT(*) FROM access_grant WHERE rule = 'team-leader' AND group_id IS NOT NULL",
    )
    .await;
    assert!(leaders > 0);

    // The mentor moves to another class: the new one at once, the old one pending.
    sim.server.with_world(|w| {
        let s = w.schools.get_mut(&id(SCHOOL)).expect("school");
        s.school.teachers[index].groups = vec![(new.clone(), vec!["LRK".into()])];
        s.changed_at = Utc::now();
    });
    sim.sync(&store, false).await;
    let permissions = sim.env.run(&["permissions", &mentor]);
    assert!(
        permissions.stdout.contains(&format!("role mentor ({new})")),
        "{}",
        permissions.stdout
    );
    assert!(
        permissions
            .stdout
            .contains(&format!("role mentor ({old}) (pending")),
        "{}",
        permissions.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_or_field_changes_nothing_stored() {
    let (sim, store) = linked().await;
    sim.sync(&store, false).await;
    let people = count(
        &store,
        "SELECT COUNT(*) FROM person WHERE removed_at IS NULL",
    )
    .await;

    sim.server
        .with_world(|w| w.portal.hide("employees", "email"));
    let report = sim.sync(&store, false).await;
    let r = &report.schools[0];
    assert_eq!(r.outcome, Outcome::Frozen);
    assert_eq!(r.error_class.as_deref(), Some("access_denied"));
    assert!(
        r.message.as_deref().unwrap_or("").contains("'email'"),
        "{:?}",
        r.message
    );

    // A token that expires within a month is warned about, on a run that is otherwise fine.
    sim.server.with_world(|w| {
        w.portal.hidden.clear();
        if let Some(t) = w.portal.tokens.get_mut(&id(SCHOOL)) {
            t.expires = Utc::now() + chrono::Duration::days(10);
        }
    });
    let report = sim.sync(&store, false).await;
    let r = &report.schools[0];
    assert!(
        matches!(r.outcome, Outcome::Ok | Outcome::Unchanged),
        "{:?}",
        r.message
    );
    assert!(
        r.message
            .as_deref()
            .unwrap_or("")
            .contains("portal token expires on"),
        "{:?}",
        r.message
    );

    // Refused later: the run says when the token would have expired.
    sim.server.with_world(|w| {
        if let Some(t) = w.portal.tokens.get_mut(&id(SCHOOL)) {
            t.token = "revoked".into();
        }
    });
    let report = sim.sync(&store, false).await;
    let r = &report.schools[0];
    assert_eq!(r.outcome, Outcome::Parked, "{:?}", r.message);
    let said = r.message.as_deref().unwrap_or("");
    assert!(
        said.contains("portal") && said.contains("so it was revoked"),
        "{said}"
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM person WHERE removed_at IS NULL"
        )
        .await,
        people,
        "nothing removed"
    );
}
