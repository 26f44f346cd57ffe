//! `rostersync person add|set` and `group add|set`: local records and edits. A field a
//! source owns is refused with the field and its owner named (exit 1), and nothing changes.

use anyhow::anyhow;
use clap::{Args, Subcommand, ValueEnum};
use connector_api::{PersonKeys, SchoolId};

use super::{Failure, operator};
use crate::model::{Field, PersonKind};
use crate::settings::Settings;
use crate::store::local::{self, EditError, Edited, NewPerson};
use crate::store::{OpenMode, Store};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    Pupil,
    Staff,
}

#[derive(Debug, Subcommand)]
pub enum PersonCommand {
    /// Add a person by hand; all its fields stay editable until a source supplies them.
    Add(PersonAddArgs),
    /// Edit a person's fields (FIELD=VALUE; an empty VALUE clears). Fields a source owns are
    /// refused.
    Set {
        /// The person: the id `export` prints, or any of their keys.
        person: String,
        /// family_name, prefix, given_name, email, year_group or end_date, as FIELD=VALUE.
        #[arg(value_name = "FIELD=VALUE", required = true, value_parser = parse_assignment)]
        values: Vec<(Field, String)>,
    },
    /// Accept a changed ECK-iD for the same person (its personal number changed): the
    /// person keeps its id and history, the next run is clean.
    Relink {
        /// The person: the id `export` prints, or any of their keys.
        person: String,
        /// The new ECK-iD.
        #[arg(
            long,
            required_unless_present = "accept_source",
            conflicts_with = "accept_source"
        )]
        eckid: Option<String>,
        /// Take the ECK-iD the source sends now (from the person's identity conflict).
        #[arg(long)]
        accept_source: bool,
    },
}

#[derive(Debug, Args)]
pub struct PersonAddArgs {
    #[arg(long)]
    school: String,
    #[arg(long, value_enum)]
    kind: Kind,
    /// The person's ECK-iD: a source that later sends it adopts this record.
    #[arg(long)]
    eckid: Option<String>,
    /// The person's key in the LAS: a source that later sends it adopts this record.
    #[arg(long)]
    las_key: Option<String>,
    /// A group to link the person to (repeatable).
    #[arg(long = "group", value_name = "KEY")]
    groups: Vec<String>,
    /// family_name, prefix, given_name, email, year_group or end_date, as FIELD=VALUE.
    #[arg(value_name = "FIELD=VALUE", value_parser = parse_assignment)]
    values: Vec<(Field, String)>,
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Add a group by hand (a remedial or project group).
    Add {
        #[arg(long)]
        school: String,
        /// The group's key, unique in the school.
        key: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        year_group: Option<String>,
    },
    /// Edit a group's name or year_group (FIELD=VALUE); a group a source supplies is refused.
    Set {
        #[arg(long)]
        school: String,
        key: String,
        #[arg(value_name = "FIELD=VALUE", required = true)]
        values: Vec<String>,
    },
}

fn parse_assignment(text: &str) -> Result<(Field, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not FIELD=VALUE"))?;
    let field = Field::from_name(name.trim()).ok_or_else(|| {
        format!(
            "unknown field '{name}': use {}",
            Field::ALL.map(Field::as_str).join(", ")
        )
    })?;
    Ok((field, value.to_owned()))
}

fn school_id(s: &str) -> Result<String, Failure> {
    s.parse::<SchoolId>()
        .map(|id| id.to_string())
        .map_err(|e| Failure::usage(e.into()))
}

fn edit_failure(e: EditError) -> Failure {
    match e {
        EditError::Store(s) => Failure::store(s),
        e if e.is_usage() => Failure::usage(e.into()),
        e => Failure::failed(e.into()),
    }
}

async fn open(settings: &Settings) -> Result<Store, Failure> {
    let store = Store::open(&settings.store, OpenMode::Existing)
        .await
        .map_err(Failure::store)?;
    // Schools of the configuration file are known before their first sync.
    crate::store::schools::ensure_config_rows(&store, settings)
        .await
        .map_err(Failure::store)?;
    Ok(store)
}

fn print_edits(what: &str, edits: &[Edited]) {
    if edits.is_empty() {
        println!("{what}: nothing to change.");
    }
    for e in edits {
        println!(
            "{what}: {} {} -> {}",
            e.field,
            e.old.as_deref().unwrap_or("(none)"),
            e.new.as_deref().unwrap_or("(none)")
        );
    }
}

pub async fn person(settings: &Settings, command: PersonCommand) -> Result<(), Failure> {
    match command {
        PersonCommand::Add(a) => {
            let school = school_id(&a.school)?;
            let mut fields = std::collections::BTreeMap::new();
            for (field, value) in &a.values {
                if let Some(v) = local::check_value(*field, value).map_err(edit_failure)? {
                    fields.insert(*field, v);
                }
            }
            if !fields.contains_key(&Field::FamilyName) && !fields.contains_key(&Field::GivenName) {
                return Err(Failure::usage(anyhow!(
                    "give the person a name: family_name=... and/or given_name=..."
                )));
            }
            let keys = PersonKeys {
                eckid: a.eckid.filter(|k| !k.trim().is_empty()),
                las_key: a.las_key.filter(|k| !k.trim().is_empty()),
                ..PersonKeys::default()
            };
            let store = open(settings).await?;
            let id = local::add_person(
                &store,
                &NewPerson {
                    school: school.clone(),
                    kind: match a.kind {
                        Kind::Pupil => PersonKind::Pupil,
                        Kind::Staff => PersonKind::Staff,
                    },
                    fields,
                    keys,
                    groups: a.groups,
                },
                &operator(),
            )
            .await
            .map_err(edit_failure)?;
            println!(
                "Added person {id} to school {school}. Its fields are local and editable; a \
                 source that later sends the same ECK-iD, LAS key or (staff) e-mail adopts it."
            );
            Ok(())
        }
        PersonCommand::Set { person, values } => {
            let mut changes = Vec::new();
            for (field, value) in &values {
                changes.push((
                    *field,
                    local::check_value(*field, value).map_err(edit_failure)?,
                ));
            }
            let store = open(settings).await?;
            let id = super::one_person(&store, &person).await?.id;
            let edits = local::set_person(&store, id, &changes, &operator())
                .await
                .map_err(edit_failure)?;
            print_edits(&format!("person {id}"), &edits);
            Ok(())
        }
        PersonCommand::Relink {
            person,
            eckid,
            accept_source: _,
        } => {
            let store = open(settings).await?;
            let id = super::one_person(&store, &person).await?.id;
            let to = match eckid {
                Some(e) => local::NewEckid::Given(e),
                None => local::NewEckid::FromSource,
            };
            let done = local::relink_eckid(&store, id, to, &operator())
                .await
                .map_err(edit_failure)?;
            if done.old.as_deref() == Some(done.new.as_str()) {
                println!("person {id} has this ECK-iD already: nothing to change.");
                return Ok(());
            }
            println!(
                "person {id}: ECK-iD {} → {}. The next sync compares the school in full; the \
                 identity conflict is gone when the source sends this ECK-iD.",
                done.old.as_deref().unwrap_or("(none)"),
                done.new
            );
            Ok(())
        }
    }
}

pub async fn group(settings: &Settings, command: GroupCommand) -> Result<(), Failure> {
    match command {
        GroupCommand::Add {
            school,
            key,
            name,
            year_group,
        } => {
            let school = school_id(&school)?;
            let store = open(settings).await?;
            let id = local::add_group(&store, &school, &key, &name, year_group, &operator())
                .await
                .map_err(edit_failure)?;
            println!("Added group {key} ({id}) to school {school}.");
            Ok(())
        }
        GroupCommand::Set {
            school,
            key,
            values,
        } => {
            let school = school_id(&school)?;
            let (mut name, mut year_group) = (None, None);
            for v in &values {
                match v.split_once('=') {
                    Some(("name", n)) => {
                        name = Some(
                            local::check_value(Field::FamilyName, n)
                                .map_err(edit_failure)?
                                .ok_or_else(|| {
                                    Failure::usage(anyhow!("a group's name cannot be empty"))
                                })?,
                        )
                    }
                    Some(("year_group", y)) => {
                        year_group =
                            Some(local::check_value(Field::YearGroup, y).map_err(edit_failure)?)
                    }
                    _ => {
                        return Err(Failure::usage(anyhow!(
                            "'{v}' is not name=VALUE or year_group=VALUE"
                        )));
                    }
                }
            }
            let store = open(settings).await?;
            let edits = local::set_group(&store, &school, &key, name, year_group, &operator())
                .await
                .map_err(edit_failure)?;
            print_edits(&format!("group {key}"), &edits);
            Ok(())
        }
    }
}
