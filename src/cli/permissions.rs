//! `rostersync permissions PERSON`, `can STAFF PUPIL` and `grant add|remove`: what a staff
//! member may see, and why.

use anyhow::anyhow;
use clap::{Args, Subcommand};

use super::{Failure, OutputFormat, one_person, operator, print_json, table};
use crate::permissions::Level;
use crate::settings::Settings;
use crate::store::permissions as stored;
use crate::store::{OpenMode, Store};
use crate::sync::explain;

#[derive(Debug, Args)]
pub struct PermissionsArgs {
    /// The person: the id `export` prints, or any of their keys.
    person: String,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

#[derive(Debug, Args)]
pub struct CanArgs {
    /// The staff member: id or key.
    staff: String,
    /// The pupil: id or key.
    pupil: String,
}

#[derive(Debug, Subcommand)]
pub enum GrantCommand {
    /// Grant a staff member a group, or the whole school, by hand. Syncs never take it away.
    Add {
        /// The staff member: id or key.
        #[arg(long)]
        person: String,
        /// Every group of the school.
        #[arg(long, conflicts_with = "group")]
        school_wide: bool,
        /// One group, by key.
        #[arg(long)]
        group: Option<String>,
        /// Why, for whoever reads it later.
        #[arg(long)]
        note: Option<String>,
    },
    /// Remove a grant made by hand (derived grants go when their fact goes).
    Remove {
        /// The grant's id, from `rostersync permissions PERSON`.
        id: i64,
    },
}

async fn open(settings: &Settings) -> Result<Store, Failure> {
    Store::open(&settings.store, OpenMode::Existing)
        .await
        .map_err(Failure::store)
}

pub async fn permissions(settings: &Settings, args: PermissionsArgs) -> Result<(), Failure> {
    let store = open(settings).await?;
    let p = one_person(&store, &args.person).await?;
    let view = explain::visibility(store.db(), &p)
        .await
        .map_err(|e| Failure::store(store.db_error(e)))?;
    if args.format == OutputFormat::Json {
        return print_json(&view);
    }
    if view.groups.is_empty() && view.other.is_empty() {
        println!(
            "Person {} ({}) has no grants: they see no pupil data.",
            p.id, p.school_id
        );
        return Ok(());
    }
    println!(
        "Person {} ({}) sees {} of {} groups{}.",
        p.id,
        p.school_id,
        view.groups.len(),
        view.of_groups,
        match view.level {
            Some("school") => ", the whole school",
            _ => "",
        }
    );
    let mut t = table::Table::new(&["GROUP", "LEVEL", "GRANT", "WHY", "SINCE"]);
    for g in &view.groups {
        for r in &g.reasons {
            t.row(vec![
                g.group.clone(),
                g.level.to_owned(),
                r.grant.to_string(),
                r.said(),
                r.since.format("%Y-%m-%d").to_string(),
            ]);
        }
    }
    for r in &view.other {
        t.row(vec![
            "-".into(),
            "own".into(),
            r.grant.to_string(),
            r.said(),
            r.since.format("%Y-%m-%d").to_string(),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

/// Yes (exit 0) or no (exit 1), with the reason.
pub async fn can(settings: &Settings, args: CanArgs) -> Result<(), Failure> {
    let store = open(settings).await?;
    let staff = one_person(&store, &args.staff).await?;
    let pupil = one_person(&store, &args.pupil).await?;
    if pupil.kind != "pupil" {
        return Err(Failure::usage(anyhow!(
            "person {} is not a pupil",
            pupil.id
        )));
    }
    let answer = explain::can(store.db(), &staff, &pupil)
        .await
        .map_err(|e| Failure::store(store.db_error(e)))?;
    println!("{}", answer.sentence);
    if answer.yes {
        Ok(())
    } else {
        Err(Failure::failed(anyhow!(
            "person {} cannot see pupil {}",
            staff.id,
            pupil.id
        )))
    }
}

pub async fn grant(settings: &Settings, command: GrantCommand) -> Result<(), Failure> {
    let store = open(settings).await?;
    let db_err = |e| Failure::store(store.db_error(e));
    match command {
        GrantCommand::Add {
            person,
            school_wide,
            group,
            note,
        } => {
            let p = one_person(&store, &person).await?;
            if p.kind != "staff" {
                return Err(Failure::usage(anyhow!(
                    "person {} is a pupil; grants are for staff",
                    p.id
                )));
            }
            let (level, group) = match (school_wide, group) {
                (true, _) => (Level::School, None),
                (false, Some(key)) => {
                    let groups = stored::groups(store.db(), &p.school_id)
                        .await
                        .map_err(db_err)?;
                    let Some(g) = groups.into_iter().find(|g| g.key == key) else {
                        return Err(Failure::usage(anyhow!(
                            "school {} has no group '{key}'",
                            p.school_id
                        )));
                    };
                    (Level::Related, Some((g.id, key)))
                }
                (false, None) => {
                    return Err(Failure::usage(anyhow!("give --group KEY or --school-wide")));
                }
            };
            let txn = store
                .begin_write(crate::store::WriteKind::Edit)
                .await
                .map_err(db_err)?;
            let grant = stored::ManualGrant {
                school: &p.school_id,
                person: p.id,
                level,
                group: group.as_ref().map(|(id, k)| (*id, k.as_str())),
                note,
            };
            let id = stored::add_manual(&txn, grant, &operator())
                .await
                .map_err(db_err)?;
            txn.commit().await.map_err(db_err)?;
            println!(
                "Granted {} to person {} as grant {id}; syncs keep it until `rostersync grant remove {id}`.",
                group
                    .map(|(_, k)| format!("group {k}"))
                    .unwrap_or_else(|| "the whole school".into()),
                p.id
            );
            Ok(())
        }
        GrantCommand::Remove { id } => {
            let txn = store
                .begin_write(crate::store::WriteKind::Edit)
                .await
                .map_err(db_err)?;
            let removed = stored::remove_manual(&txn, id, &operator()).await;
            let g = match removed {
                Ok(g) => g,
                Err(stored::RemoveError::Db(e)) => return Err(db_err(e)),
                Err(e) => return Err(Failure::failed(e.into())),
            };
            txn.commit().await.map_err(db_err)?;
            println!("Removed grant {id} of person {}.", g.person_id);
            Ok(())
        }
    }
}
