//! Plain data a connector hands to the engine: one school as one source sees it.
//! No I/O past this point; Dutch protocol words stay inside the connectors.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Which kind of source produced a snapshot. Decides field ownership in the merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// The school's administration system (UWLR).
    Las,
    /// The identity broker (Basispoort).
    Broker,
    /// The scheduling portal (Zermelo).
    Portal,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Las => "las",
            SourceKind::Broker => "broker",
            SourceKind::Portal => "portal",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupKind {
    /// A pupil's main group (stamgroep / stamklas). A pupil has at most one.
    Stamgroep,
    /// Any other grouping: samengestelde groep, subgroep, cluster, lesgroep.
    Samengesteld,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// The source's stable key for the group (UWLR `@key`, Basispoort `lasKey`).
    pub key: String,
    pub name: String,
    pub kind: GroupKind,
    /// `1`–`8`, `11`–`16`, `C` for a combination group, ...; absent for most composed groups.
    pub year_group: Option<String>,
    /// Department code for secondary schools (Zermelo `departmentOfBranch` code).
    pub department: Option<String>,
}

/// Every identity a source knows a person by. At least one must be present.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonKeys {
    pub eckid: Option<String>,
    pub las_key: Option<String>,
    pub broker_id: Option<String>,
    pub portal_code: Option<String>,
}

impl PersonKeys {
    pub fn is_empty(&self) -> bool {
        self.eckid.is_none()
            && self.las_key.is_none()
            && self.broker_id.is_none()
            && self.portal_code.is_none()
    }

    /// A short, non-personal label for messages: the first key by match priority.
    pub fn label(&self) -> String {
        if let Some(k) = &self.las_key {
            return format!("las:{k}");
        }
        if let Some(k) = &self.broker_id {
            return format!("broker:{k}");
        }
        if let Some(k) = &self.portal_code {
            return format!("portal:{k}");
        }
        if self.eckid.is_some() {
            return "eckid".to_owned();
        }
        "no key".to_owned()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonName {
    pub family_name: Option<String>,
    /// Voorvoegsel, e.g. "van der".
    pub prefix: Option<String>,
    /// The name the person is called by (roepnaam).
    pub given_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PupilRecord {
    pub keys: PersonKeys,
    pub name: PersonName,
    pub year_group: Option<String>,
    /// Key of the pupil's main group.
    pub group: Option<String>,
    /// Keys of composed groups the pupil belongs to.
    pub subgroups: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffGroupLink {
    pub group: String,
    /// Roles for this group (UWLR `LRK`, `VAK`, ...); empty means a plain link.
    pub roles: Vec<String>,
}

/// Where a staff role applies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "keys")]
pub enum RoleScope {
    School,
    Groups(Vec<String>),
    Departments(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffRole {
    /// The role as the source names it (`IB`, `IBRTer`, `mentor`, ...); rules map it to rights.
    pub name: String,
    pub scope: RoleScope,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffRecord {
    pub keys: PersonKeys,
    pub name: PersonName,
    pub email: Option<String>,
    pub roles: Vec<StaffRole>,
    pub groups: Vec<StaffGroupLink>,
    /// The last day the person works at the school, when the source knows it.
    pub end_date: Option<NaiveDate>,
}

/// A record the connector refused, with the key that identifies it and why; never silent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    pub entity: String,
    pub key: String,
    pub reason: String,
}

/// One school as one source sees it at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub source: SourceKind,
    /// The school year the source says this data belongs to, e.g. `2025-2026`.
    pub school_year: Option<String>,
    pub school_name: Option<String>,
    pub groups: Vec<GroupRecord>,
    pub pupils: Vec<PupilRecord>,
    pub staff: Vec<StaffRecord>,
    pub rejects: Vec<Reject>,
    /// Opaque "what I saw" marker for the next conditional fetch (a timestamp or version).
    pub marker: Option<String>,
    pub received_at: DateTime<Utc>,
}

impl Snapshot {
    pub fn empty(source: SourceKind, received_at: DateTime<Utc>) -> Self {
        Snapshot {
            source,
            school_year: None,
            school_name: None,
            groups: Vec::new(),
            pupils: Vec::new(),
            staff: Vec::new(),
            rejects: Vec::new(),
            marker: None,
            received_at,
        }
    }
}
