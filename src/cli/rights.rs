//! `rostersync permissions PERSON`, `can STAFF PUPIL` and `grant add|remove`: what a staff
//! member may see, and why.

use std::collections::BTreeMap;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde::Serialize;

use super::{Failure, OutputFormat, one_person, operator, print_json, table};
use crate::rights::{self, Level};
use crate::settings::Settings;
use crate::store::entities::membership;
use crate::store::export::reason;
use crate::store::{OpenMode, Store, grants};

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

#[derive(Serialize)]
struct GroupView {
    group: String,
    level: &'static str,
    reasons: Vec<ReasonView>,
}

#[derive(Serialize)]
struct ReasonView {
    grant: i64,
    rule: String,
    source: String,
    fact: String,
    state: &'static str,
    since: chrono::DateTime<chrono::Utc>,
    revoke_after: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Serialize)]
struct PermissionsView {
    person: i64,
    school: String,
    level: Option<&'static str>,
    groups: Vec<GroupView>,
    /// Grants that reach no group (an own account).
    other: Vec<ReasonView>,
}

fn reason_view(h: &rights::Holding) -> ReasonView {
    ReasonView {
        grant: h.id,
        rule: h.rule.clone(),
        source: h.source.clone(),
        fact: h.fact.clone(),
        state: h.state.as_str(),
        since: h.since,
        revoke_after: h.revoke_after,
    }
}

pub async fn permissions(settings: &Settings, args: PermissionsArgs) -> Result<(), Failure> {
    let store = open(settings).await?;
    let db_err = |e| Failure::store(store.db_error(e));
    let p = one_person(&store, &args.person).await?;
    let holdings = grants::holdings(store.db(), p.id).await.map_err(db_err)?;
    let groups = grants::groups(store.db(), &p.school_id)
        .await
        .map_err(db_err)?;
    let key_of: BTreeMap<i64, &str> = groups.iter().map(|g| (g.id, g.key.as_str())).collect();
    let visible = rights::effective(&holdings, &groups);
    let view = PermissionsView {
        person: p.id,
        school: p.school_id.clone(),
        level: rights::top_level(&holdings).map(Level::as_str),
        groups: visible
            .iter()
            .map(|v| GroupView {
                group: key_of.get(&v.group).copied().unwrap_or("?").to_owned(),
                level: v.level.as_str(),
                reasons: v.because.iter().map(|h| reason_view(h)).collect(),
            })
            .collect(),
        other: holdings
            .iter()
            .filter(|h| h.level == Level::Own)
            .map(reason_view)
            .collect(),
    };
    if args.format == OutputFormat::Json {
        return print_json(&view);
    }
    if holdings.is_empty() {
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
        groups.len(),
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
                match r.revoke_after {
                    Some(at) if r.state == "pending" => format!(
                        "{}: {} (pending: revoked on {} unless it comes back)",
                        r.rule,
                        r.fact,
                        at.format("%Y-%m-%d")
                    ),
                    _ => format!("{}: {}", r.rule, r.fact),
                },
                r.since.format("%Y-%m-%d").to_string(),
            ]);
        }
    }
    for r in &view.other {
        t.row(vec![
            "-".into(),
            "own".into(),
            r.grant.to_string(),
            format!("{}: {}", r.rule, r.fact),
            r.since.format("%Y-%m-%d").to_string(),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

/// Yes (exit 0) or no (exit 1), with the reason.
pub async fn can(settings: &Settings, args: CanArgs) -> Result<(), Failure> {
    let store = open(settings).await?;
    let db_err = |e| Failure::store(store.db_error(e));
    let staff = one_person(&store, &args.staff).await?;
    let pupil = one_person(&store, &args.pupil).await?;
    if pupil.kind != "pupil" {
        return Err(Failure::usage(anyhow!(
            "person {} is not a pupil",
            pupil.id
        )));
    }
    if let Some(left) = staff.removed_at {
        println!(
            "no: person {} left school {} on {}; whoever left sees nothing.",
            staff.id,
            staff.school_id,
            left.format("%Y-%m-%d")
        );
        return Err(Failure::failed(anyhow!(
            "person {} cannot see pupil {}",
            staff.id,
            pupil.id
        )));
    }
    if staff.school_id != pupil.school_id {
        println!(
            "no: person {} is at school {}, pupil {} at school {}.",
            staff.id, staff.school_id, pupil.id, pupil.school_id
        );
        return Err(Failure::failed(anyhow!(
            "person {} cannot see pupil {}",
            staff.id,
            pupil.id
        )));
    }
    let holdings = grants::holdings(store.db(), staff.id)
        .await
        .map_err(db_err)?;
    let groups = grants::groups(store.db(), &staff.school_id)
        .await
        .map_err(db_err)?;
    let key_of: BTreeMap<i64, &str> = groups.iter().map(|g| (g.id, g.key.as_str())).collect();
    let pupil_groups: Vec<i64> = membership::Entity::find()
        .filter(membership::Column::PersonId.eq(pupil.id))
        .all(store.db())
        .await
        .map_err(db_err)?
        .into_iter()
        .map(|m| m.group_id)
        .collect();
    let visible = rights::effective(&holdings, &groups);
    if pupil.removed_at.is_none()
        && let Some(v) = visible.iter().find(|v| pupil_groups.contains(&v.group))
    {
        println!(
            "yes: person {} can see pupil {} through group {}: {}.",
            staff.id,
            pupil.id,
            key_of.get(&v.group).copied().unwrap_or("?"),
            v.because
                .iter()
                .map(|h| reason(h))
                .collect::<Vec<_>>()
                .join("; ")
        );
        return Ok(());
    }
    let named = |ids: &mut dyn Iterator<Item = i64>| {
        let keys: Vec<&str> = ids.filter_map(|g| key_of.get(&g).copied()).collect();
        if keys.is_empty() {
            "no group".to_owned()
        } else {
            keys.join(", ")
        }
    };
    println!(
        "no: person {} sees {}; pupil {} is in {}{}.",
        staff.id,
        named(&mut visible.iter().map(|v| v.group)),
        pupil.id,
        named(&mut pupil_groups.iter().copied()),
        if pupil.removed_at.is_some() {
            " (and has left the school)"
        } else {
            ""
        }
    );
    Err(Failure::failed(anyhow!(
        "person {} cannot see pupil {}",
        staff.id,
        pupil.id
    )))
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
                    let groups = grants::groups(store.db(), &p.school_id)
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
            let id = grants::add_manual(
                &txn,
                &p.school_id,
                p.id,
                level,
                group.as_ref().map(|(id, k)| (*id, k.as_str())),
                &operator(),
                note,
            )
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
            let removed = grants::remove_manual(&txn, id, &operator()).await;
            let g = match removed {
                Ok(g) => g,
                Err(grants::RemoveError::Db(e)) => return Err(db_err(e)),
                Err(e) => return Err(Failure::failed(e.into())),
            };
            txn.commit().await.map_err(db_err)?;
            println!("Removed grant {id} of person {}.", g.person_id);
            Ok(())
        }
    }
}
