//! Permissions (who may see which groups), the pure core: which grants the facts of the
//! sources call for (`derive`), what that means for the grants already stored (`reconcile`,
//! with the grace period), and what a person may see in the end (`effective`). One word for
//! one concept: a person's *permissions* are the union of their *grants* (rows of the
//! `access_grant` table); `[rights]` in the configuration holds the rules. The engine
//! (`sync::permissions`), the store (`store::permissions`) and the commands are the shell.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::settings::RightsSettings;

pub use crate::model::Level;

/// A derivation rule, from `[[rights.rules]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub level: Level,
    pub link_roles: BTreeSet<String>,
    pub roles: BTreeSet<String>,
    /// Empty: facts from any source.
    pub sources: BTreeSet<String>,
}

/// The rules and the grace period of `[rights]`.
#[derive(Debug, Clone)]
pub struct Rights {
    pub rules: Vec<Rule>,
    pub grace: chrono::Duration,
}

impl Rights {
    pub fn from_settings(s: &RightsSettings) -> Rights {
        let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
        Rights {
            rules: s
                .rules
                .iter()
                .map(|r| Rule {
                    name: r.name.clone(),
                    level: r.level,
                    link_roles: set(&r.link_roles),
                    roles: set(&r.roles),
                    sources: set(&r.sources),
                })
                .collect(),
            grace: chrono::Duration::days(i64::from(s.grace_days)),
        }
    }
}

/// A group of the school, as rights see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    pub id: i64,
    pub key: String,
    pub department: Option<String>,
}

/// A group link of a staff member: role(s) joined with `+`, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkFact {
    pub group: i64,
    pub role: String,
    pub source: String,
}

/// A school-wide or scoped role: scope empty for the school, else group keys joined with
/// `,`, or `departments:` and department codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleFact {
    pub name: String,
    pub scope: String,
    pub source: String,
}

/// What the sources say about one staff member.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StaffFacts {
    pub person: i64,
    pub links: Vec<LinkFact>,
    pub roles: Vec<RoleFact>,
}

/// A grant the facts call for. Its identity is everything but the fact's wording.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Derived {
    pub person: i64,
    pub level: Level,
    pub group: Option<i64>,
    pub rule: String,
    pub source: String,
    pub fact: String,
}

impl Derived {
    fn key(&self) -> GrantKey {
        grant_key(
            self.person,
            self.level,
            self.group,
            &self.rule,
            &self.source,
        )
    }
}

/// What makes a derived grant the same grant from run to run.
type GrantKey = (i64, Level, Option<i64>, String, String);

fn grant_key(person: i64, level: Level, group: Option<i64>, rule: &str, source: &str) -> GrantKey {
    (person, level, group, rule.to_owned(), source.to_owned())
}

fn source_ok(rule: &Rule, source: &str) -> bool {
    rule.sources.is_empty() || rule.sources.contains(source)
}

/// Every grant the facts call for, each once, in a stable order.
pub fn derive(staff: &[StaffFacts], groups: &[GroupRef], rules: &[Rule]) -> Vec<Derived> {
    let key_of: BTreeMap<i64, &str> = groups.iter().map(|g| (g.id, g.key.as_str())).collect();
    let by_key: BTreeMap<&str, i64> = groups.iter().map(|g| (g.key.as_str(), g.id)).collect();
    let mut out: BTreeMap<GrantKey, Derived> = BTreeMap::new();
    let mut add = |d: Derived| {
        out.entry(d.key()).or_insert(d);
    };
    for s in staff {
        for link in &s.links {
            let Some(group_key) = key_of.get(&link.group) else {
                continue;
            };
            for role in link.role.split('+') {
                for rule in rules
                    .iter()
                    .filter(|r| r.link_roles.contains(role) && source_ok(r, &link.source))
                {
                    add(Derived {
                        person: s.person,
                        level: rule.level,
                        group: (rule.level == Level::Related).then_some(link.group),
                        rule: rule.name.clone(),
                        source: link.source.clone(),
                        fact: format!("{}: linked to group {group_key} as {role}", link.source),
                    });
                }
            }
        }
        for role in &s.roles {
            for rule in rules
                .iter()
                .filter(|r| r.roles.contains(&role.name) && source_ok(r, &role.source))
            {
                let fact = |scope: &str| format!("{}: role {} ({scope})", role.source, role.name);
                if rule.level != Level::Related {
                    add(Derived {
                        person: s.person,
                        level: rule.level,
                        group: None,
                        rule: rule.name.clone(),
                        source: role.source.clone(),
                        fact: fact(if role.scope.is_empty() {
                            "whole school"
                        } else {
                            &role.scope
                        }),
                    });
                    continue;
                }
                // A related role reaches the groups (or departments' groups) of its scope.
                let scoped: Vec<i64> = match role.scope.strip_prefix("departments:") {
                    Some(depts) => {
                        let depts: BTreeSet<&str> = depts.split(',').collect();
                        groups
                            .iter()
                            .filter(|g| g.department.as_deref().is_some_and(|d| depts.contains(d)))
                            .map(|g| g.id)
                            .collect()
                    }
                    None => role
                        .scope
                        .split(',')
                        .filter_map(|k| by_key.get(k).copied())
                        .collect(),
                };
                for group in scoped {
                    add(Derived {
                        person: s.person,
                        level: Level::Related,
                        group: Some(group),
                        rule: rule.name.clone(),
                        source: role.source.clone(),
                        fact: fact(&role.scope),
                    });
                }
            }
        }
    }
    out.into_values().collect()
}

/// The state of a stored grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Active,
    /// Its fact is gone; it is revoked at `revoke_after` unless the fact comes back.
    Pending,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Active => "active",
            State::Pending => "pending",
        }
    }
}

/// A derived grant as stored (manual grants are never reconciled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub id: i64,
    pub person: i64,
    pub level: Level,
    pub group: Option<i64>,
    pub rule: String,
    pub source: String,
    pub state: State,
    pub revoke_after: Option<DateTime<Utc>>,
}

impl Stored {
    fn key(&self) -> GrantKey {
        grant_key(
            self.person,
            self.level,
            self.group,
            &self.rule,
            &self.source,
        )
    }
}

/// What to do with the stored grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create(Derived),
    /// The fact came back within the grace period: active again, same grant.
    Restore(i64),
    /// The fact is gone: pending until `revoke_after`.
    Pend {
        id: i64,
        revoke_after: DateTime<Utc>,
    },
    /// The grace period ended.
    Revoke(i64),
}

/// Bring the stored derived grants in line with the facts. Derivation only raises what it
/// owns: a grant whose fact is gone waits out `grace`; whole-school grants of a `frozen`
/// school (the health check distrusts its sources) are never taken away.
pub fn reconcile(
    stored: &[Stored],
    derived: &[Derived],
    now: DateTime<Utc>,
    grace: chrono::Duration,
    frozen: bool,
) -> Vec<Action> {
    let wanted: BTreeMap<GrantKey, &Derived> = derived.iter().map(|d| (d.key(), d)).collect();
    let have: BTreeMap<GrantKey, &Stored> = stored.iter().map(|s| (s.key(), s)).collect();
    let mut actions = Vec::new();
    for (key, d) in &wanted {
        match have.get(key) {
            None => actions.push(Action::Create((*d).clone())),
            Some(s) if s.state == State::Pending => actions.push(Action::Restore(s.id)),
            Some(_) => {}
        }
    }
    for (key, s) in &have {
        if wanted.contains_key(key) || (frozen && s.level == Level::School) {
            continue;
        }
        match s.state {
            State::Active => actions.push(Action::Pend {
                id: s.id,
                revoke_after: now + grace,
            }),
            State::Pending if s.revoke_after.is_none_or(|at| at <= now) => {
                actions.push(Action::Revoke(s.id))
            }
            State::Pending => {}
        }
    }
    actions
}

/// What a refresh of a school's grants changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct GrantChanges {
    pub granted: usize,
    pub restored: usize,
    pub pending: usize,
    pub revoked: usize,
}

/// One grant as it counts for what a person sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub id: i64,
    pub level: Level,
    pub group: Option<i64>,
    pub rule: String,
    pub source: String,
    pub fact: String,
    pub state: State,
    pub since: DateTime<Utc>,
    /// When a pending grant is revoked unless its fact comes back.
    pub revoke_after: Option<DateTime<Utc>>,
}

/// A group a person can see, at which level, and every grant that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visible<'a> {
    pub group: i64,
    pub level: Level,
    pub because: Vec<&'a Holding>,
}

/// The union of a person's grants: each group they can see, with the broadest level that
/// reaches it. A narrower grant never lowers a broader one; it is listed as a reason too.
pub fn effective<'a>(holdings: &'a [Holding], groups: &[GroupRef]) -> Vec<Visible<'a>> {
    let mut out: BTreeMap<i64, Visible<'a>> = BTreeMap::new();
    for h in holdings {
        let reach: Vec<i64> = match (h.level, h.group) {
            (Level::School, _) => groups.iter().map(|g| g.id).collect(),
            (Level::Related, Some(g)) => vec![g],
            _ => Vec::new(),
        };
        for g in reach {
            let v = out.entry(g).or_insert(Visible {
                group: g,
                level: h.level,
                because: Vec::new(),
            });
            v.level = v.level.max(h.level);
            v.because.push(h);
        }
    }
    out.into_values().collect()
}

/// Why a grant exists, in words: `rule: fact`, and when it goes if it is pending. The one
/// wording of a reason (the CLI, `export` and the apps' API use it).
pub fn reason_words(
    rule: &str,
    fact: &str,
    state: State,
    revoke_after: Option<chrono::DateTime<chrono::Utc>>,
) -> String {
    let pending = match (state, revoke_after) {
        (State::Pending, Some(at)) => format!(
            " (pending: revoked on {} unless it comes back)",
            at.format("%Y-%m-%d")
        ),
        (State::Pending, None) => " (pending revocation)".to_owned(),
        (State::Active, _) => String::new(),
    };
    format!("{rule}: {fact}{pending}")
}

/// The broadest level among a person's grants (`None` without any).
pub fn top_level(holdings: &[Holding]) -> Option<Level> {
    holdings.iter().map(|h| h.level).max()
}

#[cfg(test)]
mod tests;
