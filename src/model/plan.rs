//! What the engine decided to change in a school's stored roster, and the stored records it
//! decided against: plain values the diff produces and the store writes (the store never
//! imports the engine).

use connector_api::PersonKeys;
use serde::Serialize;

use super::{Field, GroupState, Link, Owned, Owner, PersonKind, PersonState, Role};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGroup {
    pub id: i64,
    pub state: GroupState,
    pub removed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPerson {
    pub id: i64,
    pub state: PersonState,
    /// Tombstoned by an earlier run (kept until the retention period ends).
    pub removed: bool,
    /// Created locally (`person add`): a sync adopts it but never removes it.
    pub local: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: Field,
    pub old: Option<Owned>,
    pub new: Option<Owned>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupChange {
    pub field: &'static str,
    pub old: Option<String>,
    pub new: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupUpdate {
    pub id: i64,
    pub state: GroupState,
    pub changes: Vec<GroupChange>,
    pub restored: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersonUpdate {
    pub id: i64,
    pub kind: PersonKind,
    /// Which key matched, for the journal (`eckid`, `las_key`, ...).
    pub matched_by: &'static str,
    pub fields: Vec<FieldChange>,
    /// Keys the stored person did not have yet (an ECK-iD that arrived, a broker id).
    pub new_keys: PersonKeys,
    /// A changed ECK-iD that both the LAS and the broker confirm.
    pub eckid_changed: Option<KeyChange>,
    pub links_added: Vec<Link>,
    pub links_removed: Vec<Link>,
    pub roles_added: Vec<Role>,
    pub roles_removed: Vec<Role>,
    /// The new owner of the person's group links, when it changed.
    pub links_owner: Option<Owner>,
    /// The person was tombstoned and is back.
    pub restored: bool,
    /// A local record that a source now supplies: it keeps its id and becomes locked.
    pub adopted: bool,
}

impl PersonUpdate {
    /// An update that changes nothing yet (the caller adds what changes).
    pub(crate) fn nothing(id: i64, kind: PersonKind, via: &'static str) -> PersonUpdate {
        PersonUpdate {
            id,
            kind,
            matched_by: via,
            fields: Vec::new(),
            new_keys: PersonKeys::default(),
            eckid_changed: None,
            links_added: Vec::new(),
            links_removed: Vec::new(),
            roles_added: Vec::new(),
            roles_removed: Vec::new(),
            links_owner: None,
            restored: false,
            adopted: false,
        }
    }

    /// The person as stored after this update (the store writes exactly this).
    pub fn apply_to(&self, state: &mut PersonState) {
        for c in &self.fields {
            match &c.new {
                Some(v) => state.fields.insert(c.field, v.clone()),
                None => state.fields.remove(&c.field),
            };
        }
        for (kind, v) in self.new_keys.entries() {
            state.keys.set(kind, v.to_owned());
        }
        if let Some(c) = &self.eckid_changed {
            state.keys.eckid = Some(c.new.clone());
        }
        for l in &self.links_removed {
            state.links.remove(l);
        }
        state.links.extend(self.links_added.iter().cloned());
        for r in &self.roles_removed {
            state.roles.remove(r);
        }
        state.roles.extend(self.roles_added.iter().cloned());
        if let Some(owner) = self.links_owner {
            state.links_owner = owner;
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentityConflict {
    pub subject: String,
    pub reason: String,
    /// The stored person it is about, when there is exactly one.
    pub person: Option<i64>,
    /// A changed ECK-iD: the stored one and the one the source sends now.
    pub eckid: Option<KeyChange>,
}

/// A key of a person replaced by another value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyChange {
    pub old: String,
    pub new: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub group_creates: Vec<GroupState>,
    pub group_updates: Vec<GroupUpdate>,
    pub group_removals: Vec<i64>,
    pub person_creates: Vec<PersonState>,
    pub person_updates: Vec<PersonUpdate>,
    pub person_removals: Vec<(i64, PersonKind)>,
    pub conflicts: Vec<IdentityConflict>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.group_creates.is_empty()
            && self.group_updates.is_empty()
            && self.group_removals.is_empty()
            && self.person_creates.is_empty()
            && self.person_updates.is_empty()
            && self.person_removals.is_empty()
    }
}

/// Two sources disagree about one thing; the owner's value is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// A non-personal label of who it is about (`las:L1001`, `group:G8A`).
    pub subject: String,
    pub field: String,
    pub kept: String,
    pub kept_owner: Owner,
    pub other: String,
    pub other_owner: Owner,
}
