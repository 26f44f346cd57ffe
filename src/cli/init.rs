//! `rostersync init`: the first-run setup on a server, what the README's manual install did by
//! hand. The directories, the master key as a systemd credential (never replaced), a starter
//! configuration (never replaced), `check-config` with the credentials, the store created or
//! brought up to date as the service's user, and what to do next. Safe to run again: what
//! exists is kept. `--dry-run` says what it would do and changes nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, anyhow};
use clap::Args;

use super::Failure;

/// The configuration a package installs and `init` writes when there is none.
const STARTER_CONFIG: &str = include_str!("../../config/rostersync.toml");
/// The unit's StateDirectory=, as the starter configuration names it.
const INSTALLED_STATE_DIR: &str = "/var/lib/rostersync";

/// The starter configuration for a machine whose state directory is `state_dir`: its store
/// path is absolute, so a command run by an administrator (outside the unit, in any working
/// directory) opens the store the service uses.
pub fn starter_config(state_dir: &Path) -> String {
    STARTER_CONFIG.replace(INSTALLED_STATE_DIR, &state_dir.display().to_string())
}
const KEY_NAME: &str = "master-key";

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where the service's credentials live (the unit's LoadCredential= files).
    #[arg(
        long,
        value_name = "DIR",
        default_value = crate::settings::INSTALLED_CREDENTIALS_DIR
    )]
    credentials_dir: PathBuf,
    /// The service's state directory (its StateDirectory=): a relative SQLite store is here.
    #[arg(long, value_name = "DIR", default_value = INSTALLED_STATE_DIR)]
    state_dir: PathBuf,
    /// Say what would be done; change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// What is there before `init` does anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Found {
    pub config: bool,
    pub credentials_dir: bool,
    pub key: bool,
    pub state_dir: bool,
}

/// One thing `init` does (or keeps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    MakeDir { path: PathBuf, mode: u32 },
    WriteConfig(PathBuf),
    KeepConfig(PathBuf),
    MakeKey(PathBuf),
    KeepKey(PathBuf),
    CheckConfig,
    Migrate,
}

/// Where `init` works.
#[derive(Debug, Clone)]
pub struct Places {
    pub config: PathBuf,
    pub credentials_dir: PathBuf,
    pub state_dir: PathBuf,
}

impl Places {
    fn key(&self) -> PathBuf {
        self.credentials_dir.join(KEY_NAME)
    }
}

/// What to do, from what is there: nothing that exists is replaced.
pub fn plan(places: &Places, found: Found) -> Vec<Step> {
    let mut steps = Vec::new();
    if !found.credentials_dir {
        steps.push(Step::MakeDir {
            path: places.credentials_dir.clone(),
            mode: 0o700,
        });
    }
    if !found.state_dir {
        steps.push(Step::MakeDir {
            path: places.state_dir.clone(),
            mode: 0o700,
        });
    }
    steps.push(if found.config {
        Step::KeepConfig(places.config.clone())
    } else {
        Step::WriteConfig(places.config.clone())
    });
    steps.push(if found.key {
        Step::KeepKey(places.key())
    } else {
        Step::MakeKey(places.key())
    });
    steps.push(Step::CheckConfig);
    steps.push(Step::Migrate);
    steps
}

fn describe(step: &Step, places: &Places) -> String {
    match step {
        Step::MakeDir { path, mode } => format!("create {} (mode {mode:o})", path.display()),
        Step::WriteConfig(p) => format!("write a starter configuration to {}", p.display()),
        Step::KeepConfig(p) => format!("keep the configuration {} (it exists)", p.display()),
        Step::MakeKey(p) => format!("create the master key {} (mode 600)", p.display()),
        Step::KeepKey(p) => format!("keep the master key {} (it exists)", p.display()),
        Step::CheckConfig => format!(
            "check the configuration with the credentials in {}",
            places.credentials_dir.display()
        ),
        Step::Migrate => format!(
            "create or update the store (SQLite: in {}, owned by that directory's owner)",
            places.state_dir.display()
        ),
    }
}

pub async fn run(config: Option<PathBuf>, args: &InitArgs) -> Result<(), Failure> {
    let places = Places {
        config: config.unwrap_or_else(|| crate::settings::INSTALLED_CONFIG.into()),
        credentials_dir: args.credentials_dir.clone(),
        state_dir: args.state_dir.clone(),
    };
    let found = Found {
        config: places.config.exists(),
        credentials_dir: places.credentials_dir.is_dir(),
        key: places.key().exists(),
        state_dir: places.state_dir.is_dir(),
    };
    let steps = plan(&places, found);
    if args.dry_run {
        println!("rostersync init would:");
        for (i, s) in steps.iter().enumerate() {
            println!("  {}. {}", i + 1, describe(s, &places));
        }
        println!("Nothing was changed (--dry-run).");
        return Ok(());
    }
    for s in &steps {
        let said = describe(s, &places);
        do_step(s, &places)
            .with_context(|| format!("init stopped at: {said}"))
            .map_err(Failure::failed)?;
        println!("  done: {said}");
    }
    next_steps(&places);
    Ok(())
}

fn do_step(step: &Step, places: &Places) -> anyhow::Result<()> {
    match step {
        Step::MakeDir { path, mode } => {
            std::fs::create_dir_all(path)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))?;
            Ok(())
        }
        Step::WriteConfig(path) => write_new(path, &starter_config(&places.state_dir), 0o644),
        Step::MakeKey(path) => {
            crate::store::sealing::create_key_file(path).map_err(|e| anyhow!("{e}"))
        }
        Step::KeepConfig(_) | Step::KeepKey(_) => Ok(()),
        Step::CheckConfig => child(places, &["check-config"]),
        Step::Migrate => child(places, &["migrate"]),
    }
}

/// A new file with `text`; an existing one is never replaced.
fn write_new(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// This binary with `args`, as the service would see things: the credentials directory and
/// the state directory in its environment.
fn child(places: &Places, args: &[&str]) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the rostersync binary")?;
    let out = Command::new(exe)
        .arg("--config")
        .arg(&places.config)
        .args(args)
        .env("CREDENTIALS_DIRECTORY", &places.credentials_dir)
        .env("STATE_DIRECTORY", &places.state_dir)
        .current_dir(&places.state_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("cannot start rostersync")?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    Err(anyhow!(
        "`rostersync {}` failed: {}",
        args.join(" "),
        said.trim().trim_start_matches("rostersync: ")
    ))
}

fn next_steps(places: &Places) {
    // The installed configuration is what every command reads by default.
    let config = if places.config == Path::new(crate::settings::INSTALLED_CONFIG) {
        String::new()
    } else {
        format!(" --config {}", places.config.display())
    };
    println!(
        "\nrostersync is set up. Next:\n\
         1. Describe each LAS connection in {file} ([[las]]; every key is documented in \
         /usr/share/doc/rostersync/example.toml). Put its secrets in {creds}/NAME (mode 0600) \
         and hand each to the service: `systemctl edit rostersync`, add \
         `[Service]` and `LoadCredential=NAME:{creds}/NAME`.\n\
         2. `rostersync{config} check-config --online`, then link schools: \
         `rostersync{config} school add 99XX00 --las NAME --key-file FILE`.\n\
         3. `systemctl enable --now rostersync`; `rostersync{config} status` shows what it does.",
        file = places.config.display(),
        creds = places.credentials_dir.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places() -> Places {
        Places {
            config: "/etc/rostersync/rostersync.toml".into(),
            credentials_dir: "/etc/rostersync/credentials".into(),
            state_dir: "/var/lib/rostersync".into(),
        }
    }

    #[test]
    fn a_fresh_machine_gets_everything() {
        let steps = plan(&places(), Found::default());
        assert_eq!(
            steps,
            vec![
                Step::MakeDir {
                    path: "/etc/rostersync/credentials".into(),
                    mode: 0o700
                },
                Step::MakeDir {
                    path: "/var/lib/rostersync".into(),
                    mode: 0o700
                },
                Step::WriteConfig("/etc/rostersync/rostersync.toml".into()),
                Step::MakeKey("/etc/rostersync/credentials/master-key".into()),
                Step::CheckConfig,
                Step::Migrate,
            ]
        );
    }

    #[test]
    fn what_exists_is_kept_and_still_checked() {
        let all = Found {
            config: true,
            credentials_dir: true,
            key: true,
            state_dir: true,
        };
        let steps = plan(&places(), all);
        assert!(steps.contains(&Step::KeepKey(
            "/etc/rostersync/credentials/master-key".into()
        )));
        assert!(steps.contains(&Step::KeepConfig("/etc/rostersync/rostersync.toml".into())));
        assert!(!steps.iter().any(|s| matches!(
            s,
            Step::MakeKey(_) | Step::WriteConfig(_) | Step::MakeDir { .. }
        )));
        assert_eq!(steps.last(), Some(&Step::Migrate));
    }

    #[test]
    fn the_starter_configuration_is_valid_on_its_own() {
        let s: crate::settings::Settings = config::Config::builder()
            .add_source(config::File::from_str(
                crate::settings::DEFAULT_TOML,
                config::FileFormat::Toml,
            ))
            .add_source(config::File::from_str(
                &starter_config(Path::new("/srv/state")),
                config::FileFormat::Toml,
            ))
            .build()
            .and_then(|c| c.try_deserialize())
            .expect("the starter deserializes");
        assert_eq!(s.store.url, "sqlite:///srv/state/rostersync.db?mode=rwc");
        assert!(!s.store.migrate_on_upgrade);
        assert!(s.security.master_key.is_some());
    }
}
