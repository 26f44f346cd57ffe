//! `rostersync school add|list|remove|set-key`: manage school links.
//! Keys come from a file or stdin, never from argv, and are sealed before they are stored.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use connector_api::SchoolId;
use secrecy::SecretString;

use super::{Failure, OutputFormat, table};
use crate::settings::Settings;
use crate::store::schools::{self, LinkError, NewSchool};
use crate::store::sealing::{KeyUse, MasterKey};
use crate::store::{OpenMode, Store};

#[derive(Debug, Subcommand)]
pub enum SchoolCommand {
    /// Link a school: its LAS connection, key and broker id.
    Add {
        /// The school: BRIN with dependance code (99XX00, 99XX or 99XX.00).
        id: String,
        /// A readable name shown in lists.
        #[arg(long)]
        name: Option<String>,
        /// The [[las]] connection the school's administration system is reached through.
        #[arg(long)]
        las: Option<String>,
        /// The school's authorization key: a file holding it, or - to read it from stdin.
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
        /// The school's institution id at the broker (Basispoort).
        #[arg(long)]
        broker_id: Option<i64>,
    },
    /// List every school link, from the configuration file and from the store.
    List {
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
    },
    /// Remove a school link and every record stored for the school.
    Remove {
        id: String,
        /// Confirm that the school's stored roster is deleted too.
        #[arg(long)]
        yes: bool,
    },
    /// Replace a school's authorization key (and un-park a school whose key was rejected).
    SetKey {
        id: String,
        /// A file holding the new key, or - to read it from stdin.
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
    },
    /// Hold a school's roster as it is: its runs change nothing until it is unfrozen (for
    /// instance after an undo, while the school fixes its LAS).
    Freeze { id: String },
    /// Let a frozen school be synced again.
    Unfreeze { id: String },
}

fn parse_id(id: &str) -> Result<SchoolId, Failure> {
    id.parse::<SchoolId>().map_err(|e| Failure::usage(e.into()))
}

fn link_failure(e: LinkError) -> Failure {
    if e.is_setup() {
        Failure::usage(e.into())
    } else {
        Failure::failed(e.into())
    }
}

/// Read a key from a file or stdin. The value is never echoed in an error.
fn read_key(path: &Path) -> Result<SecretString, Failure> {
    let mut raw = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut raw)
            .context("cannot read the key from stdin")
            .map_err(Failure::usage)?;
    } else {
        raw = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the key file {}", path.display()))
            .map_err(Failure::usage)?;
    }
    Ok(SecretString::from(
        raw.trim_end_matches(['\n', '\r']).to_owned(),
    ))
}

async fn master(settings: &Settings, store: &Store) -> Result<MasterKey, Failure> {
    MasterKey::load(settings, store, KeyUse::Seal).map_err(|e| Failure::usage(e.into()))
}

pub async fn run(settings: &Settings, command: SchoolCommand) -> Result<(), Failure> {
    let store = Store::open(&settings.store, OpenMode::Existing)
        .await
        .map_err(Failure::store)?;
    match command {
        SchoolCommand::Add {
            id,
            name,
            las,
            key_file,
            broker_id,
        } => {
            let id = parse_id(&id)?;
            if let Some(name) = &las
                && settings.las(name).is_none()
            {
                return Err(Failure::usage(anyhow::anyhow!(
                    "there is no [[las]] named '{name}' in the configuration (known: {})",
                    settings.las_names()
                )));
            }
            if broker_id.is_some() && settings.broker.is_none() {
                return Err(Failure::usage(anyhow::anyhow!(
                    "--broker-id needs a [broker] section in the configuration"
                )));
            }
            let key = match (&las, &key_file) {
                (Some(_), Some(path)) => Some(read_key(path)?),
                (Some(name), None) => {
                    return Err(Failure::usage(anyhow::anyhow!(
                        "school {id} on LAS '{name}' needs its authorization key: \
                         --key-file FILE, or --key-file - to read it from stdin"
                    )));
                }
                (None, Some(_)) => {
                    return Err(Failure::usage(anyhow::anyhow!(
                        "--key-file needs --las: the key belongs to a LAS connection"
                    )));
                }
                (None, None) if broker_id.is_none() => {
                    return Err(Failure::usage(anyhow::anyhow!(
                        "school {id} needs a source: --las NAME with --key-file, or --broker-id"
                    )));
                }
                (None, None) => None,
            };
            if let Some(k) = &key {
                schools::check_las_key(&id, k).map_err(link_failure)?;
            }
            let master = match key {
                Some(_) => Some(master(settings, &store).await?),
                None => None,
            };
            schools::add(
                &store,
                settings,
                master.as_ref(),
                NewSchool {
                    id: id.clone(),
                    name,
                    las,
                    broker_id,
                    key,
                },
            )
            .await
            .map_err(link_failure)?;
            tracing::info!(school = %id, "School linked.");
            println!("Linked school {id}.");
        }
        SchoolCommand::List { format } => {
            let links = schools::list(&store, settings)
                .await
                .map_err(Failure::store)?;
            match format {
                OutputFormat::Json => super::print_json(&links)?,
                OutputFormat::Table => {
                    let mut t = table::Table::new(&[
                        "SCHOOL", "NAME", "ORIGIN", "LAS", "BROKER", "KEY", "STATE",
                    ]);
                    for l in &links {
                        t.row(vec![
                            l.id.clone(),
                            table::cell(l.name.as_ref()),
                            l.origin.clone(),
                            table::cell(l.las.as_ref()),
                            table::cell(l.broker_id),
                            l.key.clone(),
                            l.state.clone(),
                        ]);
                    }
                    print!("{}", t.render());
                    if links.is_empty() {
                        println!(
                            "No schools yet: add one with `rostersync school add ID --las NAME --key-file FILE`."
                        );
                    }
                }
            }
        }
        SchoolCommand::Remove { id, yes } => {
            let id = parse_id(&id)?;
            if !yes {
                return Err(Failure::usage(anyhow::anyhow!(
                    "removing school {id} deletes every record stored for it; run again with --yes"
                )));
            }
            let removed = schools::remove(&store, settings, &id)
                .await
                .map_err(link_failure)?;
            tracing::info!(school = %id, persons = removed.persons, groups = removed.groups, "School link removed.");
            println!(
                "Removed school {id} with {} persons and {} groups.",
                removed.persons, removed.groups
            );
        }
        SchoolCommand::SetKey { id, key_file } => {
            let id = parse_id(&id)?;
            let key = read_key(&key_file)?;
            schools::check_las_key(&id, &key).map_err(link_failure)?;
            let master = master(settings, &store).await?;
            schools::set_key(&store, settings, &master, &id, &key)
                .await
                .map_err(link_failure)?;
            tracing::info!(school = %id, "School key replaced.");
            println!("Stored a new key for school {id}.");
        }
        SchoolCommand::Freeze { id } => {
            let id = parse_id(&id)?;
            let who = super::operator();
            schools::ensure_config_rows(&store, settings)
                .await
                .map_err(Failure::store)?;
            if schools::set_frozen(&store, &id, Some(&who))
                .await
                .map_err(link_failure)?
            {
                tracing::info!(school = %id, "School frozen by an operator.");
                println!(
                    "School {id} is frozen: its runs keep the roster as it is until \
                     `rostersync school unfreeze {id}`."
                );
            } else {
                println!("School {id} was frozen already.");
            }
        }
        SchoolCommand::Unfreeze { id } => {
            let id = parse_id(&id)?;
            if schools::set_frozen(&store, &id, None)
                .await
                .map_err(link_failure)?
            {
                tracing::info!(school = %id, "School unfrozen by an operator.");
                println!("School {id} is synced again from its next run.");
            } else {
                println!("School {id} was not frozen.");
            }
        }
    }
    Ok(())
}
