//! Removals the brakes held back for a person to approve: what the engine decides and the store
//! keeps until `approve`.

use serde::Serialize;

use super::Link;

/// What the brakes guard, each on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Pupils,
    Staff,
    Groups,
    Memberships,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pupils => "pupils",
            Kind::Staff => "staff",
            Kind::Groups => "groups",
            Kind::Memberships => "memberships",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        [Kind::Pupils, Kind::Staff, Kind::Groups, Kind::Memberships]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A removal the brakes took out of a plan, to be stored and approved later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldRemoval {
    pub kind: Kind,
    /// The person or group that would be removed, or the person who would leave a group.
    pub entity_id: i64,
    /// For a membership: the group key and the role in it.
    pub link: Option<Link>,
}
