//! What undoing a run puts back: plain values the engine plans (`sync::undo`) and the store
//! writes (`store::undo`).

use serde::Serialize;

use super::{Field, Owner, PersonKind};

/// One thing to put back, journaled under the operation that does it (`remove`, `restore`,
/// `update`, `join`, ...), so the undo's own journal reads like any run's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "revert", rename_all = "snake_case")]
pub enum Revert {
    /// Tombstone a group the run created or restored.
    RemoveGroup { group: i64 },
    /// Bring back a group the run removed.
    RestoreGroup { group: i64 },
    /// A group field back to its value before the run.
    SetGroupField {
        group: i64,
        field: String,
        from: Option<String>,
        to: Option<String>,
    },
    /// Tombstone a person the run created or restored.
    RemovePerson { person: i64, kind: PersonKind },
    /// Bring back a person the run removed (same id, links and keys).
    RestorePerson { person: i64, kind: PersonKind },
    SetField {
        person: i64,
        kind: PersonKind,
        field: Field,
        from: Option<String>,
        to: Option<String>,
        owner: Owner,
    },
    AddKey {
        person: i64,
        kind: PersonKind,
        key: String,
        value: String,
        owner: Owner,
    },
    RemoveKey {
        person: i64,
        kind: PersonKind,
        key: String,
        value: String,
        owner: Owner,
    },
    SetEckid {
        person: i64,
        kind: PersonKind,
        from: String,
        to: String,
        owner: Owner,
    },
    Join {
        person: i64,
        group: String,
        role: String,
        owner: Owner,
    },
    Leave {
        person: i64,
        group: String,
        role: String,
        owner: Owner,
    },
    AddRole {
        person: i64,
        kind: PersonKind,
        role: String,
        scope: String,
        owner: Owner,
    },
    RemoveRole {
        person: i64,
        kind: PersonKind,
        role: String,
        scope: String,
        owner: Owner,
    },
}

impl Revert {
    /// The person it touches, if any.
    pub fn person(&self) -> Option<i64> {
        match self {
            Revert::RemoveGroup { .. }
            | Revert::RestoreGroup { .. }
            | Revert::SetGroupField { .. } => None,
            Revert::RemovePerson { person, .. }
            | Revert::RestorePerson { person, .. }
            | Revert::SetField { person, .. }
            | Revert::AddKey { person, .. }
            | Revert::RemoveKey { person, .. }
            | Revert::SetEckid { person, .. }
            | Revert::Join { person, .. }
            | Revert::Leave { person, .. }
            | Revert::AddRole { person, .. }
            | Revert::RemoveRole { person, .. } => Some(*person),
        }
    }

    /// The group it touches, if any.
    pub fn group(&self) -> Option<i64> {
        match self {
            Revert::RemoveGroup { group }
            | Revert::RestoreGroup { group }
            | Revert::SetGroupField { group, .. } => Some(*group),
            _ => None,
        }
    }

    /// One line for the plan an operator reads (values as the journal has them).
    pub fn describe(&self) -> String {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        match self {
            Revert::RemoveGroup { group } => format!("group {group}: remove again"),
            Revert::RestoreGroup { group } => format!("group {group}: restore"),
            Revert::SetGroupField {
                group,
                field,
                from,
                to,
            } => format!("group {group}: {field} {} -> {}", opt(from), opt(to)),
            Revert::RemovePerson { person, kind } => {
                format!("{} {person}: remove again", kind.as_str())
            }
            Revert::RestorePerson { person, kind } => {
                format!("{} {person}: restore", kind.as_str())
            }
            Revert::SetField {
                person,
                kind,
                field,
                from,
                to,
                ..
            } => format!(
                "{} {person}: {} {} -> {}",
                kind.as_str(),
                field.as_str(),
                opt(from),
                opt(to)
            ),
            Revert::AddKey {
                person, kind, key, ..
            } => format!("{} {person}: add key {key}", kind.as_str()),
            Revert::RemoveKey {
                person, kind, key, ..
            } => format!("{} {person}: drop key {key}", kind.as_str()),
            Revert::SetEckid { person, kind, .. } => {
                format!("{} {person}: ECK-iD back to the one before", kind.as_str())
            }
            Revert::Join {
                person,
                group,
                role,
                ..
            } => format!("person {person}: back into {group} ({role})"),
            Revert::Leave {
                person,
                group,
                role,
                ..
            } => format!("person {person}: out of {group} ({role})"),
            Revert::AddRole {
                person, kind, role, ..
            } => format!("{} {person}: role {role} back", kind.as_str()),
            Revert::RemoveRole {
                person, kind, role, ..
            } => format!("{} {person}: role {role} off", kind.as_str()),
        }
    }
}

/// What undoing a run will do, and what in its journal it leaves as it is (and why).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UndoPlan {
    pub reverts: Vec<Revert>,
    pub left: Vec<String>,
}
