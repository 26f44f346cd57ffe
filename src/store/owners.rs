//! Who owns what on a person or group row, as its `owners` column holds it.
//!
//! The compact form names one owner for everything (`*`) and lists only the names another
//! source owns: `{"*":"broker","email":"local"}`. Nearly every person has one owner for all
//! its fields, so a row holds about 16 bytes where listing each field took about 90 (issue 17:
//! 2.4 million persons). Rows written before this list every name and have no `*`; a name they
//! do not list is the LAS's, as it always was, so both forms read the same.
//!
//! One owner for everything and no exception is the most common row of all: its text is that
//! owner's name alone (`broker`, 6 bytes instead of 14; migration 16), and the LAS's is `{}`.
//!
//! Only names that have a value are ever asked for (a field without a value has no owner to
//! respect), so a name whose value is cleared may fall back to `*`.

use std::collections::BTreeMap;

use crate::model::Owner;

/// The key that names the owner of every name not listed.
const EVERYTHING: &str = "*";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owners {
    default: Owner,
    named: BTreeMap<String, Owner>,
}

impl Owners {
    /// Owners of `pairs`, stored compactly: the most common owner becomes `*` (on a tie the
    /// first of them in `pairs`).
    pub fn of<'a>(pairs: impl IntoIterator<Item = (&'a str, Owner)>) -> Owners {
        let pairs: Vec<(&str, Owner)> = pairs.into_iter().collect();
        let count = |o: Owner| pairs.iter().filter(|(_, x)| *x == o).count();
        // `max_by_key` keeps the last of equals, so it walks the pairs from the end.
        let default = pairs
            .iter()
            .rev()
            .map(|(_, o)| *o)
            .max_by_key(|o| count(*o))
            .unwrap_or(Owner::Las);
        let mut owners = Owners {
            default,
            named: BTreeMap::new(),
        };
        for (name, owner) in pairs {
            owners.set(name, owner);
        }
        owners
    }

    /// The column's text; anything unreadable reads as "all the LAS's", as before.
    pub fn parse(text: &str) -> Owners {
        if !text.starts_with('{') {
            return Owners {
                default: Owner::parse(text).unwrap_or(Owner::Las),
                named: BTreeMap::new(),
            };
        }
        let map = serde_json::from_str::<BTreeMap<String, String>>(text).unwrap_or_default();
        let default = map
            .get(EVERYTHING)
            .and_then(|o| Owner::parse(o))
            .unwrap_or(Owner::Las);
        let mut owners = Owners {
            default,
            named: BTreeMap::new(),
        };
        for (name, owner) in &map {
            if let (false, Some(o)) = (name == EVERYTHING, Owner::parse(owner)) {
                owners.set(name, o);
            }
        }
        owners
    }

    pub fn get(&self, name: &str) -> Owner {
        self.named.get(name).copied().unwrap_or(self.default)
    }

    pub fn set(&mut self, name: &str, owner: Owner) {
        if owner == self.default {
            self.named.remove(name);
        } else {
            self.named.insert(name.to_owned(), owner);
        }
    }

    /// `name` no longer has a value, so who owned it no longer matters.
    pub fn clear(&mut self, name: &str) {
        self.named.remove(name);
    }

    /// The column's text: the owner's name when it owns everything, else a map whose `*` is
    /// there only when it is not the LAS (which is what a missing `*` means).
    pub fn to_text(&self) -> String {
        if self.named.is_empty() && self.default != Owner::Las {
            return self.default.as_str().to_owned();
        }
        let mut map: BTreeMap<&str, &str> = self
            .named
            .iter()
            .map(|(k, o)| (k.as_str(), o.as_str()))
            .collect();
        if self.default != Owner::Las {
            map.insert(EVERYTHING, self.default.as_str());
        }
        serde_json::to_string(&map).unwrap_or_else(|_| "{}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_owner_for_everything_is_one_entry() {
        let o = Owners::of([
            ("family_name", Owner::Broker),
            ("given_name", Owner::Broker),
            ("year_group", Owner::Broker),
            ("links", Owner::Broker),
        ]);
        assert_eq!(o.to_text(), "broker");
        assert_eq!(Owners::parse(&o.to_text()), o);
        assert_eq!(o.get("links"), Owner::Broker);
    }

    #[test]
    fn the_others_are_listed_and_the_las_needs_no_star() {
        let o = Owners::of([
            ("family_name", Owner::Las),
            ("email", Owner::Local),
            ("given_name", Owner::Las),
            ("links", Owner::Broker),
        ]);
        assert_eq!(o.to_text(), r#"{"email":"local","links":"broker"}"#);
        let back = Owners::parse(&o.to_text());
        assert_eq!(back.get("family_name"), Owner::Las);
        assert_eq!(back.get("email"), Owner::Local);
        assert_eq!(back.get("links"), Owner::Broker);
    }

    #[test]
    fn on_a_tie_the_first_owner_given_is_everything() {
        let o = Owners::of([("family_name", Owner::Broker), ("email", Owner::Las)]);
        assert_eq!(o.to_text(), r#"{"*":"broker","email":"las"}"#);
        let o = Owners::of([("family_name", Owner::Las), ("email", Owner::Broker)]);
        assert_eq!(o.to_text(), r#"{"email":"broker"}"#);
    }

    #[test]
    fn rows_written_before_the_compact_form_read_the_same() {
        let old =
            r#"{"family_name":"broker","given_name":"broker","links":"broker","year_group":"las"}"#;
        let o = Owners::parse(old);
        assert_eq!(o.get("family_name"), Owner::Broker);
        assert_eq!(o.get("year_group"), Owner::Las);
        assert_eq!(o.get("prefix"), Owner::Las);
        assert_eq!(Owners::parse("not json").get("links"), Owner::Las);
        // The map form of one owner, as rows held it before migration 16.
        assert_eq!(Owners::parse(r#"{"*":"broker"}"#), Owners::parse("broker"));
    }

    #[test]
    fn an_edit_moves_one_name_and_a_cleared_name_falls_back() {
        let mut o = Owners::parse(r#"{"*":"broker"}"#);
        o.set("email", Owner::Local);
        assert_eq!(o.to_text(), r#"{"*":"broker","email":"local"}"#);
        o.set("email", Owner::Broker);
        assert_eq!(o.to_text(), "broker");
        o.set("prefix", Owner::Local);
        o.clear("prefix");
        assert_eq!(o.get("prefix"), Owner::Broker);
        assert_eq!(Owners::of([]).to_text(), "{}");
    }
}
