//! The roster as the engine reasons about it: groups and persons whose every field knows
//! its owner. Plain data; the merge builds it from snapshots, the diff compares it to what
//! is stored, the store persists it.

pub mod held;
pub mod journal;
pub mod plan;
pub mod revert;
pub mod rollover;
pub mod schedule;

use std::collections::{BTreeMap, BTreeSet};

use connector_api::{GroupKind, PersonKeys, SourceKind};
use serde::Serialize;

/// How far a grant reaches. Ordered: a broader level includes the narrower ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The person's own account; no pupil data.
    Own,
    /// Some groups.
    Related,
    /// Every group of the school.
    School,
}

/// Read from `[[rights.rules]] level`: the message names the levels there are.
impl<'de> serde::Deserialize<'de> for Level {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Level::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "'{text}' is not a level: use own, related or school"
            ))
        })
    }
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Own => "own",
            Level::Related => "related",
            Level::School => "school",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        [Level::Own, Level::Related, Level::School]
            .into_iter()
            .find(|l| l.as_str() == s)
    }
}

/// Where a school stands with rostersync: its `school.state` column, what `status` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SchoolStatus {
    /// Synced normally.
    Active,
    /// Its sources were not trusted (or an operator froze it): the stored roster is kept.
    Frozen,
    /// Its own credential was rejected: it is not asked again until the credential changes.
    Parked,
    /// The broker has no sync permission from it yet.
    AwaitingConsent,
    /// It revoked the broker's sync permission: its data is deleted after the grace period.
    Offboarding,
}

impl SchoolStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SchoolStatus::Active => "active",
            SchoolStatus::Frozen => "frozen",
            SchoolStatus::Parked => "parked",
            SchoolStatus::AwaitingConsent => "awaiting_consent",
            SchoolStatus::Offboarding => "offboarding",
        }
    }

    pub fn parse(s: &str) -> Option<SchoolStatus> {
        [
            SchoolStatus::Active,
            SchoolStatus::Frozen,
            SchoolStatus::Parked,
            SchoolStatus::AwaitingConsent,
            SchoolStatus::Offboarding,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// Waiting for the broker's permission, or on the way out after it was revoked: the
    /// school is synced again the day it grants permission.
    pub fn wants_consent(self) -> bool {
        matches!(
            self,
            SchoolStatus::AwaitingConsent | SchoolStatus::Offboarding
        )
    }
}

/// Who owns a value. Higher owners win a merge; a field owned by a source is locked
/// against local edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    Local,
    Portal,
    Las,
    Broker,
}

impl Owner {
    pub fn parse(s: &str) -> Option<Owner> {
        [Owner::Local, Owner::Portal, Owner::Las, Owner::Broker]
            .into_iter()
            .find(|o| o.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Owner::Local => "local",
            Owner::Portal => "portal",
            Owner::Las => "las",
            Owner::Broker => "broker",
        }
    }
}

impl From<SourceKind> for Owner {
    fn from(s: SourceKind) -> Owner {
        match s {
            SourceKind::Las => Owner::Las,
            SourceKind::Broker => Owner::Broker,
            SourceKind::Portal => Owner::Portal,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PersonKind {
    Pupil,
    Staff,
}

impl PersonKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PersonKind::Pupil => "pupil",
            PersonKind::Staff => "staff",
        }
    }
}

/// The fields of a person that sources supply and the journal records one by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    FamilyName,
    Prefix,
    GivenName,
    Email,
    YearGroup,
    EndDate,
}

impl Field {
    pub const ALL: [Field; 6] = [
        Field::FamilyName,
        Field::Prefix,
        Field::GivenName,
        Field::Email,
        Field::YearGroup,
        Field::EndDate,
    ];

    /// The field named by `as_str`.
    pub fn from_name(name: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Field::FamilyName => "family_name",
            Field::Prefix => "prefix",
            Field::GivenName => "given_name",
            Field::Email => "email",
            Field::YearGroup => "year_group",
            Field::EndDate => "end_date",
        }
    }
}

/// A value and its owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Owned {
    pub value: String,
    pub owner: Owner,
}

impl Owned {
    /// A value a source supplies is locked: a local edit of it is refused, naming the owner.
    pub fn locked(&self) -> bool {
        self.owner != Owner::Local
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupState {
    pub key: String,
    pub name: String,
    pub kind: GroupKind,
    pub year_group: Option<String>,
    pub department: Option<String>,
    pub owner: Owner,
}

/// A person's link to a group: for pupils `member`, for staff the per-group roles
/// (`LRK`, `VAK`, ... joined with `+`) or `staff` for a plain link.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Link {
    pub group: String,
    pub role: String,
}

/// A school-wide or scoped role (`IB`, `IBRTer`, `mentor`, ...); `scope` is empty for the
/// whole school, else the group or department keys it covers, joined with `,`. The source
/// that states it is part of the fact: a grant derived from it says where it came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Role {
    pub name: String,
    pub scope: String,
    pub owner: Owner,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersonState {
    pub kind: PersonKind,
    pub keys: PersonKeys,
    /// Fields with a value; an absent field has none.
    pub fields: BTreeMap<Field, Owned>,
    pub links: BTreeSet<Link>,
    /// Who supplied the links (they are owned as a whole, like a field).
    pub links_owner: Owner,
    pub roles: BTreeSet<Role>,
}

/// One school's roster as the sources describe it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RosterState {
    pub groups: BTreeMap<String, GroupState>,
    pub persons: Vec<PersonState>,
}
