//! What a school's run did, in numbers: counts per kind and operation (stored with the run,
//! printed in tables, logged in the one summary line) and the run's outcome.

use serde::{Deserialize, Serialize};

use crate::model::PersonKind;
use crate::sync::brakes::{HeldRemoval, Kind};
use crate::sync::diff::Plan;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KindCounts {
    pub created: usize,
    pub updated: usize,
    pub removed: usize,
    pub held: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkCounts {
    pub added: usize,
    pub removed: usize,
    pub held: usize,
}

/// What the source sent, before any decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReceivedCounts {
    pub pupils: usize,
    pub staff: usize,
    pub groups: usize,
    /// Records the source sent that could not be used (no key, duplicate, dangling).
    pub rejected: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counts {
    pub received: ReceivedCounts,
    pub pupils: KindCounts,
    pub staff: KindCounts,
    pub groups: KindCounts,
    pub memberships: LinkCounts,
    /// Identity conflicts (keys that disagree about who someone is) and field conflicts
    /// between sources; each is in the journal.
    pub conflicts: usize,
    /// Of those, the identity conflicts: nothing is merged for them until a person decides
    /// (`person relink`), so they need attention.
    pub identity_conflicts: usize,
    /// What the refresh of the school's grants changed.
    pub grants: crate::permissions::GrantChanges,
}

impl Counts {
    /// Records created, updated and removed, and memberships added and removed: what a run
    /// changed in the roster.
    pub fn changed(&self) -> usize {
        let kind = |k: &KindCounts| k.created + k.updated + k.removed;
        kind(&self.pupils)
            + kind(&self.staff)
            + kind(&self.groups)
            + self.memberships.added
            + self.memberships.removed
    }

    /// The counts of `plan` (after the brakes took `held` out of it).
    pub fn of(
        plan: &Plan,
        held: &[HeldRemoval],
        received: ReceivedCounts,
        conflicts: usize,
    ) -> Counts {
        let mut c = Counts {
            received,
            conflicts: conflicts + plan.conflicts.len(),
            identity_conflicts: plan.conflicts.len(),
            ..Counts::default()
        };
        c.groups.created = plan.group_creates.len();
        c.groups.updated = plan.group_updates.len();
        c.groups.removed = plan.group_removals.len();
        for p in &plan.person_creates {
            c.kind_mut(p.kind).created += 1;
            c.memberships.added += p.links.len();
        }
        for u in &plan.person_updates {
            c.kind_mut(u.kind).updated += 1;
            c.memberships.added += u.links_added.len();
            c.memberships.removed += u.links_removed.len();
        }
        for (_, kind) in &plan.person_removals {
            c.kind_mut(*kind).removed += 1;
        }
        for h in held {
            match h.kind {
                Kind::Pupils => c.pupils.held += 1,
                Kind::Staff => c.staff.held += 1,
                Kind::Groups => c.groups.held += 1,
                Kind::Memberships => c.memberships.held += 1,
            }
        }
        c
    }

    fn kind_mut(&mut self, kind: PersonKind) -> &mut KindCounts {
        match kind {
            PersonKind::Pupil => &mut self.pupils,
            PersonKind::Staff => &mut self.staff,
        }
    }

    pub fn created(&self) -> usize {
        self.pupils.created + self.staff.created + self.groups.created
    }

    pub fn updated(&self) -> usize {
        self.pupils.updated + self.staff.updated + self.groups.updated
    }

    pub fn removed(&self) -> usize {
        self.pupils.removed + self.staff.removed + self.groups.removed
    }

    pub fn held(&self) -> usize {
        self.pupils.held + self.staff.held + self.groups.held + self.memberships.held
    }

    /// Read back what a run record stored; an old or damaged record reads as zeros.
    pub fn parse(json: &str) -> Counts {
        serde_json::from_str(json).unwrap_or_default()
    }
}

/// How a school's run ended. The names are stable: run records, `--format json`, metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The answer was trusted and applied in full.
    Ok,
    /// Applied, but the brakes held removals of some kind: `approve` them or wait.
    Held,
    /// The source said nothing changed: nothing was written.
    Unchanged,
    /// The answer could not be trusted (a failed fetch, no data, a collapse, another school
    /// year): the school's stored data was kept as it was.
    Frozen,
    /// The source rejected the school's credential earlier; not asked again until it changes.
    Parked,
    /// rostersync itself failed (store unreachable, a bug): nothing of the run was applied.
    Failed,
    /// The broker has no sync permission from the school (not yet, or not any more): nothing
    /// was fetched or written. The school's state says which (awaiting consent, offboarding).
    NoConsent,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Held => "held",
            Outcome::Unchanged => "unchanged",
            Outcome::Frozen => "frozen",
            Outcome::Parked => "parked",
            Outcome::Failed => "failed",
            Outcome::NoConsent => "no_consent",
        }
    }

    /// Exit 1 for `sync`: something needs a person's attention.
    pub fn needs_attention(self) -> bool {
        !matches!(self, Outcome::Ok | Outcome::Unchanged)
    }
}
