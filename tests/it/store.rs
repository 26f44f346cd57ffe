//! The store itself: migrations are idempotent, concurrent migrations do not race, and the
//! default SQLite store and master key are private to their owner.

use crate::support::Env;

#[tokio::test]
async fn migrate_creates_the_store_and_is_idempotent() {
    let env = Env::new().await;
    let first = env.run(&["migrate"]);
    first.ok();
    let all = <migration::Migrator as migration::MigratorTrait>::migrations().len();
    assert!(
        first.stdout.contains(&format!("Applied {all} migration")),
        "{}",
        first.stdout
    );
    let second = env.run(&["migrate"]);
    second.ok();
    assert!(second.stdout.contains("up to date"), "{}", second.stdout);
    env.run(&["school", "list"]).ok();
}

#[tokio::test]
async fn concurrent_migrations_do_not_race() {
    let env = Env::new().await;
    if !env.is_postgres() {
        // SQLite serves one instance; the advisory lock is a PostgreSQL matter.
        eprintln!("SKIP concurrent_migrations_do_not_race: needs ROSTERSYNC_TEST_POSTGRES");
        return;
    }
    let runs: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_rostersync"))
                .arg("migrate")
                .env("ROSTERSYNC_CONFIG", &env.config)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn migrate")
        })
        .collect();
    let mut applied = 0;
    for child in runs {
        let out = child.wait_with_output().expect("migrate finishes");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "a concurrent migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if stdout.contains("Applied") {
            applied += 1;
        }
    }
    assert_eq!(applied, 1, "exactly one process applies the migration");
    env.run(&["school", "list"]).ok();
}

#[tokio::test]
async fn the_default_store_and_master_key_are_private() {
    let env = Env::new().await;
    if env.is_postgres() {
        return;
    }
    // Defaults: no master_key configured, so it is generated beside the store.
    let text = std::fs::read_to_string(&env.config).expect("config");
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("master_key"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&env.config, text).expect("config");
    std::fs::remove_file(env.path("master.key")).expect("remove test key");
    env.run(&["migrate"]).ok();
    let add = env.run(&[
        "school",
        "add",
        "99XX00",
        "--las",
        "esis",
        "--key-file",
        "k-99XX00",
    ]);
    add.ok();
    assert!(
        add.stderr.contains("Generated a new master key"),
        "{}",
        add.stderr
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for name in ["rostersync.db", "master.key"] {
            let mode = std::fs::metadata(env.path(name))
                .expect(name)
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{name} must be private, is {mode:o}");
        }
    }
    // A second command reuses the key instead of making another.
    let again = env.run(&["school", "set-key", "99XX00", "--key-file", "k-99XX00"]);
    again.ok();
    assert!(!again.stderr.contains("Generated"), "{}", again.stderr);
}

/// A linked primary school of 30 pupils at the simulator (`seed`), not yet synced.
async fn school_of_30(seed: u64) -> (crate::support::SimEnv, rostersync::store::Store) {
    let mut w = connector_sim::World::new(seed, rostersync::sync::run::today());
    w.add_school(
        "99XA00".parse().expect("id"),
        connector_sim::SchoolKind::Primary,
        30,
    );
    crate::support::SimEnv::start_linked(w, false, false).await
}

/// Every moment of the given columns, in row order, as integers.
async fn moments(store: &rostersync::store::Store, sql: &str) -> Vec<Vec<Option<i64>>> {
    use sea_orm::ConnectionTrait;
    let rows = store
        .db()
        .query_all_raw(sea_orm::Statement::from_string(store.backend(), sql))
        .await
        .expect("moments");
    rows.iter()
        .map(|r| {
            (0..r.column_names().len())
                .map(|i| r.try_get_by_index::<Option<i64>>(i).expect("an integer"))
                .collect()
        })
        .collect()
}

async fn exec(store: &rostersync::store::Store, sql: &str) -> Result<(), sea_orm::DbErr> {
    use sea_orm::ConnectionTrait;
    store.writer().execute_unprepared(sql).await.map(drop)
}

const PERSONS: &str = "SELECT id, created_at, updated_at, removed_at, purge_after FROM person \
                       ORDER BY id";
const JOURNAL: &str = "SELECT id, at FROM change_entry ORDER BY id";
const MEMBERSHIPS: &str = "SELECT person_id, group_id, since FROM membership \
                           ORDER BY person_id, group_id, role";

/// Migration 12 turns the roster's moments into microseconds and back. A synced school's
/// moments survive both ways to the microsecond; text in each form sqlx or a person writes
/// (fraction or not, `Z` or an offset) converts exactly; text that is no moment stops the
/// migration with nothing changed (SQLite too runs it as one transaction); and on SQLite a
/// moment written by hand as text afterwards becomes microseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moments_survive_the_integer_migration_both_ways() {
    use migration::MigratorTrait;
    let (sim, store) = school_of_30(43).await;
    let pg = store.backend() == sea_orm::DbBackend::Postgres;
    sim.sync(&store, false).await;
    let persons = moments(&store, PERSONS).await;
    let journal = moments(&store, JOURNAL).await;
    let memberships = moments(&store, MEMBERSHIPS).await;
    // The journal holds the groups' creates and the grants: a run's person creates are kept
    // in the persons' rows (migration 14), which going down writes back as journal rows.
    assert!(persons.len() > 30 && !journal.is_empty() && memberships.len() > 30);
    let after_11 = migration::Migrator::migrations().len() as u32 - 11;
    migration::Migrator::down(store.writer(), Some(after_11))
        .await
        .expect("down to text");
    let (first, second, third) = (persons[0][0], persons[1][0], persons[2][0]);
    let by_hand = [
        (
            first,
            "2026-12-02T05:47:33.786338+02:00",
            1_796_183_253_786_338,
        ),
        (second, "2026-12-02T03:47:33.5Z", 1_796_183_253_500_000),
        (third, "2026-12-02T03:47:33+00:00", 1_796_183_253_000_000),
    ];
    for (id, text, _) in &by_hand {
        let id = id.expect("an id");
        exec(
            &store,
            &format!("UPDATE person SET removed_at = '{text}' WHERE id = {id}"),
        )
        .await
        .expect("a moment as text");
    }
    if !pg {
        an_unconverted_moment_stops_the_migration(&store).await;
    }
    migration::Migrator::up(store.writer(), None)
        .await
        .expect("up again");
    let mut expected = persons.clone();
    for (row, (_, _, micros)) in expected.iter_mut().zip(&by_hand) {
        row[3] = Some(*micros);
    }
    assert_eq!(moments(&store, PERSONS).await, expected);
    let mut journal_now = moments(&store, JOURNAL).await;
    if !pg {
        journal_now[0][1] = journal[0][1];
    }
    assert_eq!(journal_now, journal);
    assert_eq!(moments(&store, MEMBERSHIPS).await, memberships);
    if !pg {
        a_moment_by_hand_becomes_micros(&store, first.expect("an id")).await;
    }
    // The next run reads and writes the converted store as before.
    sim.sync(&store, false).await;
}

/// SQLite: text that is no moment stops migration 12, and the persons converted before the
/// journal are as they were (one transaction); then the value is mended.
async fn an_unconverted_moment_stops_the_migration(store: &rostersync::store::Store) {
    use migration::MigratorTrait;
    exec(
        store,
        "UPDATE change_entry SET at = 'yesterday' WHERE id = 1",
    )
    .await
    .expect("text");
    let failed = migration::Migrator::up(store.writer(), None).await;
    assert!(
        format!("{failed:?}").contains("change_entry.at"),
        "{failed:?}"
    );
    let kind = crate::support::one(store, "SELECT typeof(updated_at) FROM person LIMIT 1");
    assert_eq!(kind.await.as_deref(), Some("text"));
    exec(
        store,
        "UPDATE change_entry SET at = (SELECT at FROM change_entry WHERE id = 2) WHERE id = 1",
    )
    .await
    .expect("mended");
}

/// SQLite, after migration 12: a moment written by hand as text into person `id` becomes
/// microseconds, and text that is no moment is refused with the column named.
async fn a_moment_by_hand_becomes_micros(store: &rostersync::store::Store, id: i64) {
    exec(
        store,
        &format!("UPDATE person SET purge_after = '2026-12-02T03:47:33.786Z' WHERE id = {id}"),
    )
    .await
    .expect("a moment by hand");
    let row = format!("SELECT purge_after FROM person WHERE id = {id}");
    // To the millisecond, which is what a person writes.
    assert_eq!(moments(store, &row).await, [[Some(1_796_183_253_786_000)]]);
    let refused = format!("UPDATE person SET purge_after = 'soon' WHERE id = {id}");
    let said = exec(store, &refused).await.expect_err("not a moment");
    assert!(
        said.to_string()
            .contains("person.purge_after: not a moment"),
        "{said}"
    );
    assert_eq!(moments(store, &row).await, [[Some(1_796_183_253_786_000)]]);
}

/// Migration 14: a run's creates live in the person's row. Going down writes them back as
/// journal rows with the label and source they had; coming up moves them into the persons
/// again, and the journal of the run reads the same as before.
#[tokio::test]
async fn a_runs_creates_move_out_of_the_journal_and_back() {
    use migration::MigratorTrait;
    use rostersync::store::journal;
    let (sim, store) = school_of_30(44).await;
    let run = sim.sync(&store, false).await.schools[0].run.expect("a run");
    let count = |sql: &'static str| crate::support::count(&store, sql);
    let creates = "SELECT COUNT(*) FROM change_entry WHERE operation = 'create' \
                   AND entity IN ('pupil', 'staff')";
    assert_eq!(
        count(creates).await,
        0,
        "a run's creates are not journal rows"
    );
    let before = journal::of_run(store.db(), run).await.expect("journal");
    let made: Vec<&journal::Change> = before.iter().filter(|c| c.operation == "create").collect();
    let persons = count("SELECT COUNT(*) FROM person").await;
    assert_eq!(
        made.iter().filter(|c| c.entity != "group").count() as i64,
        persons
    );
    // Groups first, then the persons created, each with its label, source and rule.
    let first_person = before
        .iter()
        .position(|c| c.entity != "group")
        .expect("persons");
    assert!(before[..first_person].iter().all(|c| c.id.is_some()));
    let pupil = before
        .iter()
        .find(|c| c.entity == "pupil" && c.operation == "create")
        .expect("a pupil's create");
    assert!(pupil.id.is_none() && pupil.run_id == Some(run), "{pupil:?}");
    assert!(
        pupil
            .new_value
            .as_deref()
            .is_some_and(|l| l.starts_with("las:"))
    );
    assert_eq!(pupil.rule, "new identity in the source");
    let person = pupil.person_id.expect("a person");
    let history = journal::of_person(store.db(), person)
        .await
        .expect("history");
    assert_eq!(
        history.first(),
        Some(pupil),
        "a person's history opens with its create"
    );

    // Down to migration 13, counted from the end as later migrations come.
    let after_13 = migration::Migrator::migrations().len() as u32 - 13;
    migration::Migrator::down(store.writer(), Some(after_13))
        .await
        .expect("down");
    assert_eq!(count(creates).await, persons, "written back as rows");
    let row = crate::support::one(
        &store,
        &format!(
            "SELECT run_id || ' ' || new_value || ' ' || source || ' ' || at || ' ' || rule \
             FROM change_entry WHERE operation = 'create' AND person_id = {person}"
        ),
    )
    .await;
    let expected = format!(
        "{run} {} {} {} ",
        pupil.new_value.as_deref().expect("label"),
        pupil.source,
        pupil.at.0
    );
    assert_eq!(row.as_deref(), Some(expected.as_str()));

    migration::Migrator::up(store.writer(), None)
        .await
        .expect("up again");
    assert_eq!(count(creates).await, 0, "moved into the persons again");
    let after = journal::of_run(store.db(), run).await.expect("journal");
    assert_eq!(after, before);
    // The next run reads and writes the migrated store as before.
    sim.sync(&store, false).await;
}

/// Migration 16: one owner for everything is kept as its name alone. Down gives such rows the
/// map again and leaves every other row as it was; up shortens them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_owner_is_kept_as_its_name_and_back() {
    use migration::MigratorTrait;
    let (sim, store) = school_of_30(8).await;
    sim.sync(&store, false).await;
    let set = |id: i64, owners: &'static str| {
        let store = store.clone();
        async move {
            exec(
                &store,
                &format!("UPDATE person SET owners = '{owners}' WHERE id = {id}"),
            )
            .await
            .expect("set owners")
        }
    };
    let ids: Vec<i64> = moments(&store, "SELECT id FROM person ORDER BY id LIMIT 3")
        .await
        .into_iter()
        .map(|r| r[0].expect("id"))
        .collect();
    let mixed = r#"{"*":"broker","email":"local"}"#;
    set(ids[0], "broker").await;
    set(ids[1], mixed).await;
    set(ids[2], "{}").await;
    let owners = |id: i64| {
        let store = store.clone();
        async move {
            crate::support::one(
                &store,
                &format!("SELECT owners FROM person WHERE id = {id}"),
            )
            .await
        }
    };
    migration::Migrator::down(store.writer(), Some(1))
        .await
        .expect("down");
    assert_eq!(owners(ids[0]).await.as_deref(), Some(r#"{"*":"broker"}"#));
    assert_eq!(owners(ids[1]).await.as_deref(), Some(mixed));
    assert_eq!(owners(ids[2]).await.as_deref(), Some("{}"));
    migration::Migrator::up(store.writer(), None)
        .await
        .expect("up again");
    assert_eq!(owners(ids[0]).await.as_deref(), Some("broker"));
    assert_eq!(owners(ids[1]).await.as_deref(), Some(mixed));
    assert_eq!(owners(ids[2]).await.as_deref(), Some("{}"));
    // The next run reads both forms and writes the short one.
    sim.sync(&store, false).await;
}
