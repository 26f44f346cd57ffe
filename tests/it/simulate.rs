//! `rostersync simulate` serves a real LAS on loopback; `check-config --online` asks it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::Env;

/// Kills the simulator when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_simulator_answers_check_config_online() {
    let env = Env::new().await;
    let dir = env.path("sim");
    let sim = Running(
        Command::new(env!("CARGO_BIN_EXE_rostersync"))
            .args([
                "simulate",
                "--primary",
                "2",
                "--secondary",
                "1",
                "--pupils",
                "60",
                "--fault",
                "98AA00=Server.TijdelijkNietBeschikbaar",
                "--write-config",
            ])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("simulator starts"),
    );
    let config = dir.join("rostersync.toml");
    let started = Instant::now();
    while !config.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no configuration written"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    let check = |extra: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rostersync"));
        cmd.arg("--config")
            .arg(&config)
            .args(["check-config", "--online"]);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().expect("check-config runs")
    };
    let first = check(&[]);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert_eq!(first.status.code(), Some(1), "{stdout}");
    let ok = |source: &str| {
        stdout
            .lines()
            .filter(|l| l.contains(&format!(" {source} ")) && l.contains(" ok "))
            .count()
    };
    assert_eq!(ok("sim"), 2, "{stdout}");
    // The primary schools are linked to the simulated broker too (over mutual TLS).
    assert_eq!(ok("broker"), 3, "{stdout}");
    // The secondary school's portal answers even while its LAS is down.
    assert_eq!(ok("zermelo"), 1, "{stdout}");
    assert!(stdout.contains("certificate accepted"), "{stdout}");
    assert!(stdout.contains("60 pupils"), "{stdout}");
    // The secondary school's LAS is down: retried, then reported as transient.
    let down = stdout
        .lines()
        .find(|l| l.starts_with("98AA00"))
        .expect("row");
    assert!(
        down.contains("unavailable") && down.contains("retries later"),
        "{down}"
    );

    // A school whose key the LAS does not accept is named, with what to do, and exit 1.
    std::fs::write(dir.join("keys").join("99SA00"), "not-the-key\n").expect("overwrite key");
    let bad = check(&[]);
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1));
    let row = stdout
        .lines()
        .find(|l| l.starts_with("99SA00"))
        .expect("row");
    assert!(
        row.contains("credentials_rejected") && row.contains("set-key"),
        "{row}"
    );
    assert!(!stdout.contains("not-the-key"), "the key leaked: {stdout}");
    drop(sim);
}
