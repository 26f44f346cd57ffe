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
