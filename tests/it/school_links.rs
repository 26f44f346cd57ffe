//! `school add|list|remove|set-key` through the real binary: keys from files or stdin only,
//! sealed in the store, never printed or logged.

use connector_api::SchoolId;
use rostersync::store::schools::{self, LAS_KEY};
use rostersync::store::sealing::MasterKey;
use rostersync::store::{OpenMode, Store};
use secrecy::ExposeSecret;

use crate::support::{Env, KEY, assert_no_secret};

async fn migrated() -> Env {
    let env = Env::new().await;
    env.run(&["migrate"]).ok();
    env
}

#[tokio::test]
async fn a_linked_school_is_listed_with_its_key_redacted_and_sealed_in_the_store() {
    let env = migrated().await;
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
    let list = env.run(&["school", "list"]);
    list.ok();
    let row = list
        .stdout
        .lines()
        .find(|l| l.starts_with("99XX00"))
        .expect("school listed");
    assert!(
        row.contains("esis") && row.contains("sealed in store"),
        "{row}"
    );
    let json = env.run(&["school", "list", "--format", "json"]);
    let parsed: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON list");
    assert_eq!(parsed[0]["id"], "99XX00");
    assert_eq!(parsed[0]["origin"], "store");

    let help = env.run(&["school", "add", "--help"]);
    for (what, text) in [
        ("add", add.all_output()),
        ("list", list.all_output()),
        ("json list", json.all_output()),
        ("help", help.all_output()),
    ] {
        assert_no_secret(&text, what);
    }
    assert_no_secret(&env.store_dump().await, "the store");

    // The sealed key opens again with the master key: stored, not lost.
    let settings = env.settings();
    let store = Store::open(&settings.store, OpenMode::Existing)
        .await
        .expect("store");
    let master = MasterKey::load(&settings, &store, rostersync::store::sealing::KeyUse::Seal)
        .expect("master key");
    let id: SchoolId = "99XX00".parse().expect("id");
    let key = schools::load_secret(&store, &master, &id, LAS_KEY)
        .await
        .expect("readable")
        .expect("stored");
    assert_eq!(key.expose_secret(), KEY);
}

#[tokio::test]
async fn a_key_can_come_from_stdin_and_be_replaced() {
    let env = migrated().await;
    env.run_with_stdin(
        &[
            "school",
            "add",
            "99XX.01",
            "--las",
            "esis",
            "--key-file",
            "-",
            "--name",
            "De Regenboog",
        ],
        &format!("{KEY}\n"),
    )
    .ok();
    let set = env.run_with_stdin(
        &["school", "set-key", "99xx01", "--key-file", "-"],
        "nieuwe-sleutel\n",
    );
    set.ok();
    assert!(!set.all_output().contains("nieuwe-sleutel"));
    let settings = env.settings();
    let store = Store::open(&settings.store, OpenMode::Existing)
        .await
        .expect("store");
    let master = MasterKey::load(&settings, &store, rostersync::store::sealing::KeyUse::Seal)
        .expect("master key");
    let key = schools::load_secret(&store, &master, &"99XX01".parse().expect("id"), LAS_KEY)
        .await
        .expect("readable")
        .expect("stored");
    assert_eq!(key.expose_secret(), "nieuwe-sleutel");
    let dump = env.store_dump().await;
    assert!(
        !dump.contains("nieuwe-sleutel"),
        "the new key is stored in plain text"
    );
    assert!(dump.contains("De Regenboog"));
}

#[tokio::test]
async fn keys_are_never_accepted_on_the_command_line() {
    let env = migrated().await;
    let run = env.run(&["school", "add", "99XX00", "--las", "esis", "--key", KEY]);
    assert_eq!(run.code, 2, "clap refuses the unknown flag as bad usage");
    assert_no_secret(&run.all_output(), "the usage error");
}

#[tokio::test]
async fn a_key_longer_than_uwlr_allows_is_refused_without_echo() {
    let env = migrated().await;
    let long = "x".repeat(65);
    env.write("long", &long);
    let run = env.run(&[
        "school",
        "add",
        "99XX00",
        "--las",
        "esis",
        "--key-file",
        "long",
    ]);
    let line = run.fails_with(2);
    assert!(line.contains("64"), "{line}");
    assert!(!run.all_output().contains(&long));
    assert!(
        !env.run(&["school", "list"]).stdout.contains("99XX00"),
        "nothing was stored"
    );
}

#[tokio::test]
async fn mistakes_are_explained() {
    let env = migrated().await;
    let unknown_las = env.run(&[
        "school",
        "add",
        "99XX00",
        "--las",
        "magister",
        "--key-file",
        "k-99XX00",
    ]);
    assert!(unknown_las.fails_with(2).contains("known: esis"));
    let bad_id = env.run(&[
        "school",
        "add",
        "9XX00",
        "--las",
        "esis",
        "--key-file",
        "k-99XX00",
    ]);
    assert!(bad_id.fails_with(2).contains("not a school ID"));
    let no_key = env.run(&["school", "add", "99XX00", "--las", "esis"]);
    assert!(no_key.fails_with(2).contains("--key-file"));
    let no_file = env.run(&[
        "school",
        "add",
        "99XX00",
        "--las",
        "esis",
        "--key-file",
        "absent",
    ]);
    assert!(no_file.fails_with(2).contains("absent"));
    env.run(&[
        "school",
        "add",
        "99XX00",
        "--las",
        "esis",
        "--key-file",
        "k-99XX00",
    ])
    .ok();
    let twice = env.run(&[
        "school",
        "add",
        "99XX00",
        "--las",
        "esis",
        "--key-file",
        "k-99XX00",
    ]);
    assert!(twice.fails_with(2).contains("set-key"));
    let unknown = env.run(&["school", "set-key", "12AB00", "--key-file", "k-99XX00"]);
    assert!(unknown.fails_with(2).contains("not linked"));
}

#[tokio::test]
async fn config_schools_are_listed_and_cannot_be_changed_from_the_cli() {
    let env = Env::new().await;
    env.write_config(&format!(
        "[[school]]\nid = \"12AB00\"\nname = \"Het Baken\"\nlas = \"esis\"\nkey = {{ file = \"{}\" }}\n",
        env.path("k-99XX00").display()
    ));
    env.run(&["migrate"]).ok();
    env.run(&[
        "school",
        "add",
        "99XX00",
        "--las",
        "esis",
        "--key-file",
        "k-99XX00",
    ])
    .ok();
    let list = env.run(&["school", "list"]);
    list.ok();
    let config_row = list
        .stdout
        .lines()
        .find(|l| l.starts_with("12AB00"))
        .expect("config school");
    assert!(
        config_row.contains("config") && config_row.contains("Het Baken"),
        "{config_row}"
    );
    assert!(list.stdout.lines().any(|l| l.starts_with("99XX00")));
    let remove = env.run(&["school", "remove", "12AB00", "--yes"]);
    assert!(remove.fails_with(2).contains("configuration file"));
    let set = env.run(&["school", "set-key", "12AB00", "--key-file", "k-99XX00"]);
    assert!(set.fails_with(2).contains("configuration file"));
}

#[tokio::test]
async fn removing_a_school_needs_confirmation_and_deletes_its_secret() {
    let env = migrated().await;
    env.run(&[
        "school",
        "add",
        "99XX00",
        "--las",
        "esis",
        "--key-file",
        "k-99XX00",
    ])
    .ok();
    assert!(
        env.run(&["school", "remove", "99XX00"])
            .fails_with(2)
            .contains("--yes")
    );
    let removed = env.run(&["school", "remove", "99XX00", "--yes"]);
    removed.ok();
    assert!(removed.stdout.contains("Removed school 99XX00"));
    let list = env.run(&["school", "list", "--format", "json"]);
    assert_eq!(list.stdout.trim(), "[]");
    let settings = env.settings();
    let store = Store::open(&settings.store, OpenMode::Existing)
        .await
        .expect("store");
    let master = MasterKey::load(&settings, &store, rostersync::store::sealing::KeyUse::Seal)
        .expect("master key");
    let gone = schools::load_secret(&store, &master, &"99XX00".parse().expect("id"), LAS_KEY)
        .await
        .expect("query");
    assert!(gone.is_none(), "the sealed key went with the link");
}

#[tokio::test]
async fn a_different_master_key_is_caught_by_name() {
    let env = migrated().await;
    env.run(&[
        "school",
        "add",
        "99XX00",
        "--las",
        "esis",
        "--key-file",
        "k-99XX00",
    ])
    .ok();
    env.write("master.key", &format!("{}\n", "cd".repeat(32)));
    let line = env
        .run(&["school", "set-key", "99XX00", "--key-file", "k-99XX00"])
        .fails_with(2);
    assert!(
        line.contains("not the key this store was sealed with"),
        "{line}"
    );
    let settings = env.settings();
    let store = Store::open(&settings.store, OpenMode::Existing)
        .await
        .expect("store");
    let wrong = MasterKey::load(&settings, &store, rostersync::store::sealing::KeyUse::Seal)
        .expect("loads");
    let err = schools::load_secret(&store, &wrong, &"99XX00".parse().expect("id"), LAS_KEY)
        .await
        .expect_err("cannot unseal");
    assert!(err.to_string().contains("set-key"), "{err}");
}
