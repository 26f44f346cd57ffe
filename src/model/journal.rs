//! The journal's entries as the engine words them: who a change is about, what changed, which
//! source did it and by which rule. The store gives new records their ids and writes the rows.

use super::{Owner, PersonKind};

/// Who a journal entry is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A stored group.
    Group(i64),
    /// A group the plan creates, by its key (its id exists once it is written).
    NewGroup(String),
    /// A stored person.
    Person { id: i64, kind: PersonKind },
    /// A person the plan creates: the `index`-th of its creates.
    NewPerson { index: usize, kind: PersonKind },
    /// An identity conflict: about one stored person when the sources point at exactly one.
    Conflict(Option<i64>),
}

impl Subject {
    /// The journal's entity column: `group`, `pupil`, `staff`, or `person` for a conflict.
    pub fn entity(&self) -> &'static str {
        match self {
            Subject::Group(_) | Subject::NewGroup(_) => "group",
            Subject::Person { kind, .. } | Subject::NewPerson { kind, .. } => kind.as_str(),
            Subject::Conflict(_) => "person",
        }
    }
}

/// One change, as `changes --run N` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub subject: Subject,
    /// `create`, `update`, `remove`, `restore`, `join`, `leave`, `link-key`, `role-add`,
    /// `role-remove`, `adopt`, `relink`, `conflict`.
    pub operation: &'static str,
    pub field: Option<String>,
    pub old: Option<String>,
    pub new: Option<String>,
    /// The source whose word made the change.
    pub source: Owner,
    /// Why: the rule that decided it, in words.
    pub rule: String,
}

impl Entry {
    /// An entry without field or values (the caller adds them where there are).
    pub fn of(subject: Subject, operation: &'static str, source: Owner, rule: String) -> Entry {
        Entry {
            subject,
            operation,
            field: None,
            old: None,
            new: None,
            source,
            rule,
        }
    }

    pub fn about(mut self, field: Option<&str>, old: Option<String>, new: Option<String>) -> Entry {
        self.field = field.map(str::to_owned);
        self.old = old;
        self.new = new;
        self
    }
}

/// The journal's field name of a changed-ECK-iD conflict.
pub const ECKID_CONFLICT: &str = "eckid";

/// Why a source's new person was created: the rule of nearly every create.
pub const NEW_IDENTITY: &str = "new identity in the source";
/// Why a source's new group was created.
pub const NEW_GROUP: &str = "new in the source";
/// Why a group the source no longer sends was removed.
pub const GROUP_GONE: &str = "absent from the source; tombstoned until purge";
/// Why a person the sources no longer send was removed.
pub const PERSON_GONE: &str = "absent from the sources; tombstoned until purge";

/// The rule an entry of `entity` and `operation` gives unless it says otherwise. The journal
/// stores it as the empty text: an initial load writes one create per pupil, and the same 26
/// characters on each were about 30 bytes a pupil (issue 17). Only creates: every other
/// operation is rare by comparison, and rules by hand, by the brakes or by a match name who
/// and what, so they are stored as they are.
pub fn standard_rule(entity: &str, operation: &str) -> Option<&'static str> {
    match (entity, operation) {
        ("pupil" | "staff", "create") => Some(NEW_IDENTITY),
        ("group", "create") => Some(NEW_GROUP),
        _ => None,
    }
}

/// The rule as the journal stores it: empty when it is the standard one.
pub fn stored_rule(entity: &str, operation: &str, rule: String) -> String {
    match standard_rule(entity, operation) {
        Some(standard) if standard == rule => String::new(),
        _ => rule,
    }
}

/// The rule as stored, in words again (a store written before the empty text keeps the words).
pub fn read_rule(entity: &str, operation: &str, stored: String) -> String {
    match standard_rule(entity, operation) {
        Some(standard) if stored.is_empty() => standard.to_owned(),
        _ => stored,
    }
}

/// Whether an entry is kept in the person's row rather than in a journal row: a run's create of
/// a pupil or staff member (`person.created_run` and `created_source`, migration 14). An initial
/// load writes one per pupil, and as rows they were the largest part of the journal (issue 17).
/// Everything such a row said is the person's (kind, school, moment, keys) but the run and the
/// source, and a run's create always has the standard rule. A create by hand (no run) names who
/// did it, so it stays a row.
pub fn kept_in_person(entity: &str, operation: &str, run: Option<i64>) -> bool {
    run.is_some() && matches!((entity, operation), ("pupil" | "staff", "create"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_runs_person_create_is_kept_in_the_person() {
        assert!(kept_in_person("pupil", "create", Some(7)));
        assert!(kept_in_person("staff", "create", Some(7)));
        assert!(!kept_in_person("pupil", "create", None), "by hand");
        assert!(!kept_in_person("group", "create", Some(7)));
        for op in ["update", "remove", "restore", "link-key", "join"] {
            assert!(!kept_in_person("pupil", op, Some(7)), "{op}");
        }
    }

    #[test]
    fn a_standard_rule_is_stored_empty_and_read_back_in_words() {
        for (entity, op, rule) in [
            ("pupil", "create", NEW_IDENTITY),
            ("staff", "create", NEW_IDENTITY),
            ("group", "create", NEW_GROUP),
        ] {
            let stored = stored_rule(entity, op, rule.to_owned());
            assert_eq!(stored, "", "{entity} {op}");
            assert_eq!(read_rule(entity, op, stored), rule);
        }
    }

    #[test]
    fn any_other_rule_is_stored_and_read_as_it_is() {
        for (entity, op, rule) in [
            ("pupil", "create", "by hand, by ops"),
            ("pupil", "update", NEW_IDENTITY),
            ("grant", "create", "teacher of G8A"),
            ("pupil", "create", NEW_GROUP),
            ("pupil", "remove", PERSON_GONE),
            ("group", "remove", GROUP_GONE),
        ] {
            let stored = stored_rule(entity, op, rule.to_owned());
            assert_eq!(stored, rule, "{entity} {op}");
            assert_eq!(read_rule(entity, op, stored), rule);
        }
        // An entry without a standard rule keeps even an empty one empty.
        assert_eq!(read_rule("pupil", "update", String::new()), "");
        // A store written before keeps its words.
        assert_eq!(
            read_rule("pupil", "create", NEW_IDENTITY.into()),
            NEW_IDENTITY
        );
    }
}
