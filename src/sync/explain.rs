//! Who sees what, and why, in the words every surface uses: `permissions` and `can` on the
//! command line, `/rostersync/v1/.../visibility` and `/rostersync/v1/can` for apps. The rules
//! are the rights core's; this reads what they need from the store and words the answer once.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};
use serde::Serialize;

use crate::permissions::{self, Level};
use crate::store::entities::{membership, person};
use crate::store::permissions as stored;

/// One reason a person sees something: a grant.
#[derive(Debug, Clone, Serialize)]
pub struct Reason {
    pub grant: i64,
    pub rule: String,
    pub source: String,
    pub fact: String,
    /// `active`, or `pending` (its fact is gone; revoked at `revoke_after` unless it returns).
    pub state: permissions::State,
    pub since: DateTime<Utc>,
    pub revoke_after: Option<DateTime<Utc>>,
}

impl Reason {
    /// The reason as a table or a sentence says it.
    pub fn said(&self) -> String {
        permissions::reason_words(&self.rule, &self.fact, self.state, self.revoke_after)
    }
}

fn reason(h: &permissions::Holding) -> Reason {
    Reason {
        grant: h.id,
        rule: h.rule.clone(),
        source: h.source.clone(),
        fact: h.fact.clone(),
        state: h.state,
        since: h.since,
        revoke_after: h.revoke_after,
    }
}

/// A group a person sees, at which level, and every reason.
#[derive(Debug, Clone, Serialize)]
pub struct Seen {
    /// The group's id in the store and its key in the source.
    #[serde(skip)]
    pub group_id: i64,
    pub group: String,
    pub level: &'static str,
    pub reasons: Vec<Reason>,
}

/// Everything a person sees.
#[derive(Debug, Clone, Serialize)]
pub struct Visibility {
    pub person: i64,
    pub school: String,
    /// The broadest level of any grant.
    pub level: Option<&'static str>,
    /// Of how many groups the school has.
    pub of_groups: usize,
    pub groups: Vec<Seen>,
    /// Grants that reach no group (an own account).
    pub other: Vec<Reason>,
}

pub async fn visibility<C: ConnectionTrait>(
    db: &C,
    p: &person::Model,
) -> Result<Visibility, DbErr> {
    let holdings = stored::holdings(db, p.id).await?;
    let groups = stored::groups(db, &p.school_id).await?;
    let key_of: BTreeMap<i64, &str> = groups.iter().map(|g| (g.id, g.key.as_str())).collect();
    let visible = permissions::effective(&holdings, &groups);
    Ok(Visibility {
        person: p.id,
        school: p.school_id.clone(),
        level: permissions::top_level(&holdings).map(Level::as_str),
        of_groups: groups.len(),
        groups: visible
            .iter()
            .map(|v| Seen {
                group_id: v.group,
                group: key_of.get(&v.group).copied().unwrap_or("?").to_owned(),
                level: v.level.as_str(),
                reasons: v.because.iter().map(|h| reason(h)).collect(),
            })
            .collect(),
        other: holdings
            .iter()
            .filter(|h| h.level == Level::Own)
            .map(reason)
            .collect(),
    })
}

/// The answer to "can this staff member see this pupil?", as one sentence.
#[derive(Debug, Clone, Serialize)]
pub struct Answer {
    pub yes: bool,
    pub sentence: String,
    /// The group through which the answer is yes.
    pub group: Option<String>,
    #[serde(skip)]
    pub group_id: Option<i64>,
    pub reasons: Vec<Reason>,
}

fn no(sentence: String) -> Answer {
    Answer {
        yes: false,
        sentence,
        group: None,
        group_id: None,
        reasons: Vec::new(),
    }
}

pub async fn can<C: ConnectionTrait>(
    db: &C,
    staff: &person::Model,
    pupil: &person::Model,
) -> Result<Answer, DbErr> {
    if let Some(left) = staff.removed_at {
        return Ok(no(format!(
            "no: person {} left school {} on {}; whoever left sees nothing.",
            staff.id,
            staff.school_id,
            left.at().format("%Y-%m-%d")
        )));
    }
    if staff.school_id != pupil.school_id {
        return Ok(no(format!(
            "no: person {} is at school {}, pupil {} at school {}.",
            staff.id, staff.school_id, pupil.id, pupil.school_id
        )));
    }
    let seen = visibility(db, staff).await?;
    let pupil_groups: Vec<i64> = membership::Entity::find()
        .filter(membership::Column::PersonId.eq(pupil.id))
        .all(db)
        .await?
        .into_iter()
        .map(|m| m.group_id)
        .collect();
    if pupil.removed_at.is_none()
        && let Some(v) = seen
            .groups
            .iter()
            .find(|v| pupil_groups.contains(&v.group_id))
    {
        return Ok(Answer {
            yes: true,
            sentence: format!(
                "yes: person {} can see pupil {} through group {}: {}.",
                staff.id,
                pupil.id,
                v.group,
                v.reasons
                    .iter()
                    .map(Reason::said)
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            group: Some(v.group.clone()),
            group_id: Some(v.group_id),
            reasons: v.reasons.clone(),
        });
    }
    let groups = stored::groups(db, &pupil.school_id).await?;
    let key_of: BTreeMap<i64, &str> = groups.iter().map(|g| (g.id, g.key.as_str())).collect();
    let named = |keys: Vec<&str>| {
        if keys.is_empty() {
            "no group".to_owned()
        } else {
            keys.join(", ")
        }
    };
    Ok(no(format!(
        "no: person {} sees {}; pupil {} is in {}{}.",
        staff.id,
        named(seen.groups.iter().map(|v| v.group.as_str()).collect()),
        pupil.id,
        named(
            pupil_groups
                .iter()
                .filter_map(|g| key_of.get(g).copied())
                .collect()
        ),
        if pupil.removed_at.is_some() {
            " (and has left the school)"
        } else {
            ""
        }
    )))
}
