//! Statements written by hand (what sea-query does not build: `UPDATE … FROM (VALUES …)`,
//! unions read by position), with placeholders as the backend writes them.

use sea_orm::{DbBackend, Statement, Value};

/// A statement being built, with placeholders as the backend writes them.
pub(crate) struct Sql {
    pub(crate) backend: DbBackend,
    pub(crate) text: String,
    pub(crate) values: Vec<Value>,
}

impl Sql {
    pub(crate) fn new(backend: DbBackend) -> Sql {
        Sql {
            backend,
            text: String::new(),
            values: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    pub(crate) fn bind(&mut self, v: impl Into<Value>) -> &mut Self {
        self.values.push(v.into());
        match self.backend {
            DbBackend::Postgres => {
                let n = self.values.len();
                self.text.push_str(&format!("${n}"))
            }
            _ => self.text.push('?'),
        }
        self
    }

    pub(crate) fn statement(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }
}
