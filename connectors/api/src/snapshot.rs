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

impl GroupKind {
    /// The name used in the store and in exports.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupKind::Stamgroep => "stamgroep",
            GroupKind::Samengesteld => "samengesteld",
        }
    }

    /// The kind named by `as_str`; anything else is a composed group.
    pub fn from_name(name: &str) -> GroupKind {
        if name == "stamgroep" {
            GroupKind::Stamgroep
        } else {
            GroupKind::Samengesteld
        }
    }
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
    /// The kinds of key in match priority, named as the store and the journal name them.
    pub const KINDS: [&'static str; 4] = ["eckid", "broker", "las", "portal"];

    fn slot(&self, kind: &str) -> Option<&Option<String>> {
        match kind {
            "eckid" => Some(&self.eckid),
            "broker" => Some(&self.broker_id),
            "las" => Some(&self.las_key),
            "portal" => Some(&self.portal_code),
            _ => None,
        }
    }

    fn slot_mut(&mut self, kind: &str) -> Option<&mut Option<String>> {
        match kind {
            "eckid" => Some(&mut self.eckid),
            "broker" => Some(&mut self.broker_id),
            "las" => Some(&mut self.las_key),
            "portal" => Some(&mut self.portal_code),
            _ => None,
        }
    }

    /// The key of `kind`, if present.
    pub fn get(&self, kind: &str) -> Option<&str> {
        self.slot(kind).and_then(|v| v.as_deref())
    }

    /// Set the key of `kind`; an unknown kind is ignored.
    pub fn set(&mut self, kind: &str, value: String) {
        if let Some(slot) = self.slot_mut(kind) {
            *slot = Some(value);
        }
    }

    /// The keys present, as (kind, value), in match priority.
    pub fn entries(&self) -> impl Iterator<Item = (&'static str, &str)> {
        Self::KINDS
            .into_iter()
            .filter_map(|kind| self.get(kind).map(|v| (kind, v)))
    }

    /// The keys present here that `other` lacks.
    pub fn missing_from(&self, other: &PersonKeys) -> PersonKeys {
        let mut out = PersonKeys::default();
        for (kind, v) in self.entries().filter(|(kind, _)| other.get(kind).is_none()) {
            out.set(kind, v.to_owned());
        }
        out
    }

    /// Take from `other` every key this one lacks.
    pub fn fill_from(&mut self, other: &PersonKeys) {
        for (kind, v) in other.missing_from(self).entries() {
            self.set(kind, v.to_owned());
        }
    }

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
    /// When the school's credential at this source expires, where the source says (a
    /// Zermelo token): rostersync warns ahead of it.
    #[serde(default)]
    pub credential_expires: Option<DateTime<Utc>>,
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
            credential_expires: None,
            received_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(eckid: Option<&str>, las: Option<&str>) -> PersonKeys {
        PersonKeys {
            eckid: eckid.map(str::to_owned),
            las_key: las.map(str::to_owned),
            ..PersonKeys::default()
        }
    }

    #[test]
    fn keys_are_named_and_listed_in_match_priority() {
        let mut k = keys(None, Some("L1"));
        k.set("broker", "B7".into());
        k.set("nonsense", "x".into());
        let listed: Vec<_> = k.entries().collect();
        assert_eq!(listed, vec![("broker", "B7"), ("las", "L1")]);
        assert_eq!(k.get("las"), Some("L1"));
        assert_eq!(k.get("eckid"), None);
    }

    #[test]
    fn missing_keys_are_found_and_filled_without_overwriting() {
        let have = keys(None, Some("L1"));
        let want = keys(Some("E1"), Some("L-other"));
        assert_eq!(want.missing_from(&have), keys(Some("E1"), None));
        let mut merged = have.clone();
        merged.fill_from(&want);
        assert_eq!(
            merged,
            keys(Some("E1"), Some("L1")),
            "an existing key is kept"
        );
    }

    #[test]
    fn group_kinds_round_trip_by_name() {
        for kind in [GroupKind::Stamgroep, GroupKind::Samengesteld] {
            assert_eq!(GroupKind::from_name(kind.as_str()), kind);
        }
    }
}
