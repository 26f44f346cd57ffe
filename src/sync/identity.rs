//! Who is who: matching a source's record to a stored person by its keys.
//! Order: ECK-iD, broker id, LAS key, portal user code, then (staff only, opt-in) e-mail.
//! A key that appears later links to the person already known by another key; keys that
//! point at two different people, or a LAS key re-used under another ECK-iD, are conflicts.

use std::collections::HashMap;

use connector_api::PersonKeys;
use serde::Serialize;

/// The keys a stored person is known by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownKeys {
    pub id: i64,
    pub keys: PersonKeys,
    /// Staff e-mail, for the opt-in e-mail match.
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "match", rename_all = "snake_case")]
pub enum Match {
    /// Known already; `via` names the key that matched first.
    Existing { id: i64, via: &'static str },
    /// Not known by any key.
    New,
    /// The keys disagree about who this is; nothing is merged.
    Conflict { reason: String },
    /// Every key points at person `id`, but the source sends another ECK-iD than the one
    /// stored: the ECK-iD changed (its personal number changed), or the LAS key was handed
    /// to someone else. Only a person can tell (or both the LAS and the broker, see diff).
    EckidChanged {
        id: i64,
        via: &'static str,
        stored: String,
    },
}

/// An index of every stored person's keys, built once per school and run.
#[derive(Debug, Default)]
pub struct KeyIndex {
    eckid: HashMap<String, i64>,
    broker: HashMap<String, i64>,
    las: HashMap<String, i64>,
    portal: HashMap<String, i64>,
    email: HashMap<String, i64>,
    /// Stored ECK-iD per person, to catch a LAS key re-used under another ECK-iD.
    eckid_of: HashMap<i64, String>,
}

fn normalize_email(e: &str) -> String {
    e.trim().to_lowercase()
}

impl KeyIndex {
    pub fn new<'a>(known: impl IntoIterator<Item = &'a KnownKeys>) -> KeyIndex {
        let mut idx = KeyIndex::default();
        for k in known {
            let id = k.id;
            if let Some(e) = &k.keys.eckid {
                idx.eckid.insert(e.clone(), id);
                idx.eckid_of.insert(id, e.clone());
            }
            if let Some(b) = &k.keys.broker_id {
                idx.broker.insert(b.clone(), id);
            }
            if let Some(l) = &k.keys.las_key {
                idx.las.insert(l.clone(), id);
            }
            if let Some(p) = &k.keys.portal_code {
                idx.portal.insert(p.clone(), id);
            }
            if let Some(m) = &k.email {
                idx.email.insert(normalize_email(m), id);
            }
        }
        idx
    }

    /// Every stored person any of these keys points at (to keep them all in a conflict).
    pub fn ids_for(&self, keys: &PersonKeys) -> Vec<i64> {
        let mut ids: Vec<i64> = [
            keys.eckid.as_ref().and_then(|k| self.eckid.get(k)),
            keys.broker_id.as_ref().and_then(|k| self.broker.get(k)),
            keys.las_key.as_ref().and_then(|k| self.las.get(k)),
            keys.portal_code.as_ref().and_then(|k| self.portal.get(k)),
        ]
        .into_iter()
        .flatten()
        .copied()
        .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Match one incoming record. `email` is only consulted when `match_email` is set
    /// (staff, opt-in) and no key matched.
    pub fn resolve(&self, keys: &PersonKeys, email: Option<&str>, match_email: bool) -> Match {
        let hits: Vec<(&'static str, i64)> = [
            ("eckid", keys.eckid.as_ref().and_then(|k| self.eckid.get(k))),
            (
                "broker_id",
                keys.broker_id.as_ref().and_then(|k| self.broker.get(k)),
            ),
            (
                "las_key",
                keys.las_key.as_ref().and_then(|k| self.las.get(k)),
            ),
            (
                "portal_code",
                keys.portal_code.as_ref().and_then(|k| self.portal.get(k)),
            ),
        ]
        .into_iter()
        .filter_map(|(name, id)| id.map(|id| (name, *id)))
        .collect();

        if let Some(&(via, id)) = hits.first() {
            if let Some(&(other_via, other)) = hits.iter().find(|(_, other)| *other != id) {
                return Match::Conflict {
                    reason: format!(
                        "its {via} belongs to person {id} but its {other_via} to person {other}"
                    ),
                };
            }
            // Same person by every key, but a stored ECK-iD that differs from the incoming
            // one means the LAS key was handed to someone else.
            if let (Some(incoming), Some(stored)) = (&keys.eckid, self.eckid_of.get(&id))
                && incoming != stored
            {
                return Match::EckidChanged {
                    id,
                    via,
                    stored: stored.clone(),
                };
            }
            return Match::Existing { id, via };
        }
        if match_email && let Some(id) = email.and_then(|m| self.email.get(&normalize_email(m))) {
            return Match::Existing {
                id: *id,
                via: "email",
            };
        }
        Match::New
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(eckid: Option<&str>, broker: Option<&str>, las: Option<&str>) -> PersonKeys {
        PersonKeys {
            eckid: eckid.map(str::to_owned),
            broker_id: broker.map(str::to_owned),
            las_key: las.map(str::to_owned),
            portal_code: None,
        }
    }

    fn index() -> KeyIndex {
        let people = [
            KnownKeys {
                id: 1,
                keys: keys(Some("E1"), None, Some("L1")),
                email: None,
            },
            KnownKeys {
                id: 2,
                keys: keys(None, None, Some("L2")),
                email: None,
            },
            KnownKeys {
                id: 3,
                keys: keys(None, Some("B3"), Some("M3")),
                email: Some("T.Jansen@School.example".into()),
            },
        ];
        KeyIndex::new(people.iter())
    }

    #[test]
    fn eckid_comes_first_and_a_new_key_links_to_the_known_person() {
        let idx = index();
        assert_eq!(
            idx.resolve(&keys(Some("E1"), None, Some("L1")), None, false),
            Match::Existing {
                id: 1,
                via: "eckid"
            }
        );
        // Pupil 2 was known by LAS key only; an ECK-iD arrives: the same person, not a new one.
        assert_eq!(
            idx.resolve(&keys(Some("E2-new"), None, Some("L2")), None, false),
            Match::Existing {
                id: 2,
                via: "las_key"
            }
        );
        assert_eq!(
            idx.resolve(&keys(None, Some("B3"), None), None, false),
            Match::Existing {
                id: 3,
                via: "broker_id"
            }
        );
        assert_eq!(
            idx.resolve(&keys(Some("E9"), None, Some("L9")), None, false),
            Match::New
        );
    }

    #[test]
    fn a_las_key_under_another_eckid_is_a_changed_eckid_to_decide() {
        let idx = index();
        let m = idx.resolve(&keys(Some("E-other"), None, Some("L1")), None, false);
        assert_eq!(
            m,
            Match::EckidChanged {
                id: 1,
                via: "las_key",
                stored: "E1".into()
            }
        );
    }

    #[test]
    fn keys_of_two_people_are_a_conflict() {
        let idx = index();
        let m = idx.resolve(&keys(Some("E1"), None, Some("L2")), None, false);
        assert!(
            matches!(m, Match::Conflict { ref reason } if reason.contains("person 1") && reason.contains("person 2")),
            "{m:?}"
        );
    }

    #[test]
    fn email_matches_staff_only_when_asked() {
        let idx = index();
        let k = keys(None, None, Some("M-new"));
        assert_eq!(
            idx.resolve(&k, Some(" t.jansen@school.EXAMPLE"), true),
            Match::Existing {
                id: 3,
                via: "email"
            }
        );
        assert_eq!(
            idx.resolve(&k, Some("t.jansen@school.example"), false),
            Match::New
        );
    }
}
