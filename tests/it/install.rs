//! Installing and upgrading: `rostersync init` on an empty machine (directories, key,
//! configuration, store) and again (everything kept), `--dry-run` changing nothing, the
//! version line, `migrate --on-upgrade` on a store that is behind, and a migration that fails
//! halfway leaving the store exactly as it was, on SQLite and PostgreSQL.

use std::os::unix::fs::PermissionsExt;

use migration::{DbErr, MigrationName, MigrationTrait, MigratorTrait, SchemaManager};
use rostersync::store::{OpenMode, Store};

use crate::support::Env;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .expect("exists")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn init_sets_up_an_empty_machine_once_and_keeps_what_exists() {
    let env = Env::on(true).await;
    let root = env.path("machine");
    let config = root.join("etc/rostersync.toml");
    let creds = root.join("etc/credentials");
    let state = root.join("var/lib/rostersync");
    let args = |dry: bool| {
        let mut a = vec![
            "--config".to_owned(),
            config.display().to_string(),
            "init".to_owned(),
            "--credentials-dir".to_owned(),
            creds.display().to_string(),
            "--state-dir".to_owned(),
            state.display().to_string(),
        ];
        if dry {
            a.push("--dry-run".into());
        }
        a
    };
    let run = |a: Vec<String>| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        env.run(&refs)
    };
    // --dry-run says everything it would do and does none of it.
    let dry = run(args(true));
    dry.ok();
    assert!(
        dry.stdout.contains("create the master key"),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("write a starter configuration"));
    assert!(!root.exists(), "a dry run created {}", root.display());
    // The real thing.
    let first = run(args(false));
    first.ok();
    assert!(
        first.stdout.contains("rostersync is set up"),
        "{}",
        first.stdout
    );
    assert!(first.stdout.contains("systemctl enable --now rostersync"));
    let key = creds.join("master-key");
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&creds), 0o700);
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&config), 0o644);
    let key_text = std::fs::read_to_string(&key).expect("key");
    assert_eq!(key_text.trim().len(), 64);
    assert!(state.join("rostersync.db").exists(), "the store is made");
    // The starter configuration names the store by its absolute path in this state directory,
    // so an administrator's command finds it from any working directory.
    let written = std::fs::read_to_string(&config).expect("config");
    let store_url = format!(
        "sqlite://{}?mode=rwc",
        state.join("rostersync.db").display()
    );
    assert!(written.contains(&store_url), "{written}");
    // Again: everything is kept, nothing replaced, and it still succeeds.
    std::fs::write(&config, format!("{written}\n# an operator's edit\n")).expect("edit");
    let again = run(args(false));
    again.ok();
    assert!(
        again.stdout.contains("keep the master key"),
        "{}",
        again.stdout
    );
    assert_eq!(std::fs::read_to_string(&key).expect("key"), key_text);
    assert!(
        std::fs::read_to_string(&config)
            .expect("config")
            .contains("an operator's edit")
    );
    // The key never reaches the output.
    assert!(!again.all_output().contains(key_text.trim()));
    // A configuration init cannot use stops it with the reason, and the step it stopped at.
    std::fs::write(&config, "[store\n").expect("break");
    let broken = run(args(false));
    let line = broken.fails_with(1);
    assert!(line.contains("check the configuration"), "{line}");
}

#[tokio::test]
async fn the_version_names_the_commit() {
    let env = Env::on(true).await;
    let out = env.run(&["--version"]);
    out.ok();
    let line = out.stdout.trim();
    assert!(
        line.starts_with(&format!("rostersync {}", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    assert!(line.contains("(commit "), "{line}");
}

/// The real migrations but the last: a store one version behind.
struct AllButLast;

#[async_trait::async_trait]
impl MigratorTrait for AllButLast {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all = migration::Migrator::migrations();
        all.pop();
        all
    }
}

#[tokio::test]
async fn an_upgrade_migrates_only_when_allowed_and_otherwise_says_what_to_run() {
    let env = Env::new().await;
    let store = Store::open(&env.settings().store, OpenMode::Create)
        .await
        .expect("open");
    store
        .migrate_with::<AllButLast>()
        .await
        .expect("older schema");
    drop(store);
    // The daemon refuses a store that is behind; the package's step says what to do.
    let refused = env.run(&["migrate", "--on-upgrade"]);
    let line = refused.fails_with(3);
    assert!(line.contains("needs 1 migration"), "{line}");
    assert!(line.contains("migrate_on_upgrade"), "{line}");
    let allowed = env.run_env(
        &["migrate", "--on-upgrade"],
        &[("ROSTERSYNC__STORE__MIGRATE_ON_UPGRADE", "true")],
    );
    allowed.ok();
    assert!(
        allowed.stdout.contains("Applied 1 migration"),
        "{}",
        allowed.stdout
    );
    let current = env.run(&["migrate", "--on-upgrade"]);
    current.ok();
    assert!(current.stdout.contains("up to date"), "{}", current.stdout);
}

/// A migration that changes the schema and then fails.
struct Halfway;

impl MigrationName for Halfway {
    fn name(&self) -> &str {
        "m20991231_000001_fails_halfway"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Halfway {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        use migration::{Alias, ColumnDef, Table};
        m.create_table(
            Table::create()
                .table(Alias::new("halfway_probe"))
                .col(ColumnDef::new(Alias::new("id")).integer().not_null())
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Alias::new("school"))
                .add_column(ColumnDef::new(Alias::new("halfway")).integer().null())
                .to_owned(),
        )
        .await?;
        Err(DbErr::Migration(
            "this migration fails halfway, on purpose".into(),
        ))
    }

    async fn down(&self, _m: &SchemaManager) -> Result<(), DbErr> {
        Ok(())
    }
}

struct WithHalfway;

#[async_trait::async_trait]
impl MigratorTrait for WithHalfway {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all = migration::Migrator::migrations();
        all.push(Box::new(Halfway));
        all
    }
}

#[tokio::test]
async fn a_migration_that_fails_halfway_leaves_the_store_as_it_was() {
    let env = Env::new().await;
    env.run(&["migrate"]).ok();
    let key = env.write("k-12AB00", "SCHOOL-KEY-12AB00\n");
    env.run(&[
        "school",
        "add",
        "12AB00",
        "--las",
        "esis",
        "--key-file",
        &key.display().to_string(),
    ])
    .ok();
    let before = env
        .run(&["school", "list", "--format", "json"])
        .stdout
        .clone();
    assert!(before.contains("12AB00"), "{before}");
    let store = Store::open(&env.settings().store, OpenMode::Create)
        .await
        .expect("open");
    let err = store
        .migrate_with::<WithHalfway>()
        .await
        .expect_err("the migration fails");
    assert!(err.to_string().contains("fails halfway"), "{err}");
    drop(store);
    // Nothing of it stayed: no table, no column, no migration recorded, the data unchanged.
    assert_eq!(
        env.run(&["school", "list", "--format", "json"]).stdout,
        before
    );
    let store = Store::open(&env.settings().store, OpenMode::Existing)
        .await
        .expect("still current for this version");
    use sea_orm::ConnectionTrait;
    for probe in [
        "SELECT COUNT(*) FROM halfway_probe",
        "SELECT halfway FROM school",
    ] {
        assert!(
            store.db().execute_unprepared(probe).await.is_err(),
            "{probe} should fail: the migration was rolled back"
        );
    }
    let recorded = crate::support::count(&store, "SELECT COUNT(*) FROM seaql_migrations").await;
    assert_eq!(recorded, migration::Migrator::migrations().len() as i64);
}
