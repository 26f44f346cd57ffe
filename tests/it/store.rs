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
