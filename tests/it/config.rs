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
        // A fresh PostgreSQL database exists but is empty; covered by the next test.
        eprintln!("SKIP a_missing_sqlite_store_says_to_migrate: SQLite only");
        return;
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

#[tokio::test]
async fn check_config_masks_passwords_in_every_url_it_shows_or_quotes() {
    let env = Env::new().await;
    let text = std::fs::read_to_string(&env.config).expect("config");
    let text = text
        .replace(
            &env.store_url,
            "postgres://rs:pg-hunter2@127.0.0.1:5432/rostersync",
        )
        .replace(
            "https://example.rovictonline.nl/uwlr2.2.svc",
            "https://vendor:las-hunter2@example.rovictonline.nl/uwlr2.2.svc",
        );
    std::fs::write(&env.config, text).expect("write config");
    let run = env.run(&["check-config"]);
    run.ok();
    let out = run.all_output();
    for secret in ["pg-hunter2", "las-hunter2"] {
        assert!(!out.contains(secret), "{secret} printed:\n{out}");
    }
    assert!(
        out.contains("postgres://rs:***@127.0.0.1:5432/rostersync"),
        "{out}"
    );
    // A refused endpoint is quoted without its password too.
    env.write_config(
        "[[las]]\nname = \"bad\"\nkind = \"uwlr\"\nendpoint = \"ftp://u:ftp-hunter2@x.example/\"\n\
         klantnaam = \"P\"\nklantcode = { file = \"/dev/null\" }\n",
    );
    let run = env.run(&["check-config"]);
    let line = run.fails_with(2);
    assert!(line.contains("must be an https:// URL"), "{line}");
    assert!(!run.all_output().contains("ftp-hunter2"), "{line}");
}

#[tokio::test]
async fn a_secret_file_others_can_read_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new().await;
    let key = env.path("k-99XX00");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    env.write_config(&format!(
        "[[school]]\nid = \"12AB00\"\nlas = \"esis\"\nkey = {{ file = \"{}\" }}\n",
        key.display()
    ));
    let run = env.run(&["check-config"]);
    let line = run.fails_with(2);
    assert!(line.contains("school[0].key"), "{line}");
    assert!(
        line.contains(&format!("chmod 600 {}", key.display())),
        "{line}"
    );
    assert_no_secret(&run.all_output(), "check-config");
}

#[tokio::test]
async fn a_remote_postgresql_store_needs_verified_tls_or_an_explicit_override() {
    let env = Env::new().await;
    let remote = |url: &str, extra: &str| {
        let text = std::fs::read_to_string(&env.config).expect("config");
        let start = text.find("url = ").expect("store url");
        let end = start + text[start..].find('\n').expect("line end");
        let text = format!(
            "{}url = \"{url}\"\n{extra}{}",
            &text[..start],
            &text[end + 1..]
        );
        std::fs::write(&env.config, text).expect("write config");
    };
    remote("postgres://rs@db.example.org/rostersync", "");
    let line = env.run(&["check-config"]).fails_with(2);
    assert!(line.contains("sslmode=verify-full"), "{line}");
    assert!(line.contains("db.example.org"), "{line}");
    env.write_config("");
    remote(
        "postgres://rs@db.example.org/rostersync?sslmode=verify-full",
        "",
    );
    env.run(&["check-config"]).ok();
    env.write_config("");
    remote(
        "postgres://rs@db.example.org/rostersync?sslmode=require",
        "allow_unverified_tls = true\n",
    );
    env.run(&["check-config"]).ok();
}

#[tokio::test]
async fn the_admin_tcp_listener_stays_on_loopback_without_tls() {
    let env = Env::new().await;
    env.write("admin-token", "t0ken-t0ken\n");
    let admin = |listen: &str, extra: &str| {
        env.write_config(&format!(
            "[admin]\nlisten = \"{listen}\"\ntoken = {{ file = \"{}\" }}\n{extra}",
            env.path("admin-token").display()
        ));
    };
    admin("0.0.0.0:8710", "");
    let line = env.run(&["check-config"]).fails_with(2);
    assert!(line.contains("clear text"), "{line}");
    assert!(line.contains("admin.certificate"), "{line}");
    admin("127.0.0.1:8710", "");
    env.run(&["check-config"]).ok();
    admin("0.0.0.0:8710", "insecure_listen = true\n");
    env.run(&["check-config"]).ok();
    admin("0.0.0.0:8710", "certificate = { file = \"/etc/x.pem\" }\n");
    let line = env.run(&["check-config"]).fails_with(2);
    assert!(line.contains("go together"), "{line}");
}

#[tokio::test]
async fn named_admins_are_checked_when_the_configuration_is_read() {
    let env = Env::new().await;
    let token = env.write("anna-token", "anna-t0ken-t0ken\n");
    let users = |extra: &str, names: &[&str]| {
        let mut text = format!("[admin]\nlisten = \"127.0.0.1:8710\"\n{extra}");
        for n in names {
            text.push_str(&format!(
                "[[admin.user]]\nname = \"{n}\"\ntoken = {{ file = \"{}\" }}\n",
                token.display()
            ));
        }
        env.write_config(&text);
    };
    // Users alone are enough for the TCP listener; check-config shows their token's reference.
    users("", &["anna", "piet.de-vries"]);
    let out = env.run(&["check-config"]).ok().stdout.clone();
    assert!(!out.contains("anna-t0ken"), "{out}");
    users("", &[]);
    let line = env.run(&["check-config"]).fails_with(2);
    assert!(line.contains("admin.token or [[admin.user]]"), "{line}");
    users("", &["anna", "anna"]);
    let line = env.run(&["check-config"]).fails_with(2);
    assert!(line.contains("listed twice"), "{line}");
    users("", &["anna@school.example"]);
    let line = env.run(&["check-config"]).fails_with(2);
    assert!(line.contains("is not allowed"), "{line}");
    users("session_minutes = 2\n", &["anna"]);
    let line = env.run(&["check-config"]).fails_with(2);
    assert!(line.contains("session_minutes"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_commands_create_no_master_key() {
    let env = Env::on(true).await;
    // No security.master_key: the default would be master.key beside the store.
    let text = std::fs::read_to_string(&env.config).expect("config");
    let without = text.replace(
        &format!(
            "[security]\nmaster_key = {{ file = \"{}/master.key\" }}\n",
            env.dir.path().display()
        ),
        "",
    );
    assert_ne!(without, text, "the test configuration names its master key");
    std::fs::write(&env.config, without).expect("write config");
    std::fs::remove_file(env.path("master.key")).expect("remove the test key");
    env.run(&["migrate"]).ok();
    env.run(&["check-config", "--online"]);
    env.run(&["status"]).ok();
    assert!(
        !env.path("master.key").exists(),
        "a read-only command created a master key"
    );
}
