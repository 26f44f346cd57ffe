//! Bad configuration gets one clear line and exit code 2; secrets are never echoed.

use crate::support::{Env, assert_no_secret};

#[tokio::test]
async fn a_typo_names_the_file_the_key_and_what_was_expected() {
    let env = Env::new().await;
    env.write_config("[schedule]\ndaly = \"03:30\"\n");
    let line = env.run(&["school", "list"]).fails_with(2);
    assert!(line.contains("rostersync.toml"), "{line}");
    assert!(line.contains("unknown field `daly`"), "{line}");
    assert!(line.contains("`daily`"), "{line}");
}

#[tokio::test]
async fn a_missing_secret_file_is_named_with_its_key() {
    let env = Env::new().await;
    env.write_config(&format!(
        "[[school]]\nid = \"12AB00\"\nlas = \"esis\"\nkey = {{ file = \"{}\" }}\n",
        env.path("nope").display()
    ));
    let line = env.run(&["check-config"]).fails_with(2);
    assert!(line.contains("school[0].key"), "{line}");
    assert!(line.contains("nope"), "{line}");
}

#[tokio::test]
async fn an_inline_secret_is_refused_without_repeating_it() {
    let env = Env::new().await;
    env.write_config("[[school]]\nid = \"12AB00\"\nlas = \"esis\"\nkey = \"s3cr3t-inline\"\n");
    let run = env.run(&["school", "list"]);
    let line = run.fails_with(2);
    assert!(line.contains("never written inline"), "{line}");
    assert!(!run.all_output().contains("s3cr3t-inline"));
}

#[tokio::test]
async fn an_unreachable_database_is_a_setup_error() {
    let env = Env::new().await;
    // A loopback port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let text = std::fs::read_to_string(&env.config).expect("config");
    let text = text.replace(
        &env.store_url,
        &format!("postgres://rs:pw-hidden@127.0.0.1:{port}/rostersync"),
    );
    std::fs::write(&env.config, text).expect("write config");
    let run = env.run(&["migrate"]);
    let line = run.fails_with(2);
    assert!(line.contains("cannot open the store"), "{line}");
    assert!(line.to_lowercase().contains("refused"), "{line}");
    assert!(
        !run.all_output().contains("pw-hidden"),
        "password leaked: {line}"
    );
}

#[tokio::test]
async fn a_missing_sqlite_store_says_to_migrate() {
    let env = Env::new().await;
    if env.is_postgres() {
        return; // A fresh PostgreSQL database exists but is empty; covered by the next test.
    }
    let line = env.run(&["school", "list"]).fails_with(2);
    assert!(line.contains("rostersync migrate"), "{line}");
    assert!(
        !env.path("rostersync.db").exists(),
        "reading must not create a store"
    );
}

#[tokio::test]
async fn an_unmigrated_store_says_to_migrate() {
    let env = Env::new().await;
    if !env.is_postgres() {
        // Make an empty SQLite file: it exists but has no schema.
        std::fs::write(env.path("rostersync.db"), b"").expect("touch");
    }
    let line = env.run(&["school", "list"]).fails_with(2);
    assert!(line.contains("rostersync migrate"), "{line}");
}

#[tokio::test]
async fn check_config_shows_references_not_secrets() {
    let env = Env::new().await;
    env.write_config(&format!(
        "[[school]]\nid = \"99XX00\"\nlas = \"esis\"\nkey = {{ file = \"{}\" }}\n",
        env.path("k-99XX00").display()
    ));
    let run = env.run(&["check-config"]);
    run.ok();
    assert!(run.stdout.contains("k-99XX00"), "{}", run.stdout);
    assert!(run.stdout.contains("timezone = \"Europe/Amsterdam\""));
    assert_no_secret(&run.all_output(), "check-config output");
}

#[tokio::test]
async fn environment_variables_override_the_file() {
    let env = Env::new().await;
    let run = env.run_env(
        &["check-config"],
        &[("ROSTERSYNC__SCHEDULE__DAILY", "04:15")],
    );
    run.ok();
    assert!(run.stdout.contains("daily = \"04:15\""), "{}", run.stdout);
    let bad = env.run_env(
        &["check-config"],
        &[("ROSTERSYNC__SCHEDULE__DAILY", "4 uur")],
    );
    let line = bad.fails_with(2);
    assert!(line.contains("schedule.daily"), "{line}");
}
