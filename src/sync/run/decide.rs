//! What a school's run does, decided from plain data: what each source answered, how far each
//! answer can be trusted, and where the school stands. No store, no clock, no network: the
//! shell (`run`) gathers the inputs and hands the decision to one writer.

use std::time::Duration;

use chrono::{DateTime, Utc};
use connector_api::{ConnectorError, FetchOutcome, Snapshot};

use crate::model::SchoolStatus;
use crate::sync::health::{self, Baseline, Distrust, HealthRules, Verdict, Years};
use crate::sync::report::{Counts, Outcome, ReceivedCounts};

use super::{ConnectionProblem, PORTAL};

/// What a run does once every source has answered (or failed to).
#[derive(Debug, PartialEq)]
pub enum Decision<'a> {
    /// A source says the school has not given the broker's sync permission (or took it
    /// back): nothing is synced, whatever the others say.
    NoConsent { source: usize },
    /// The first source whose answer cannot be trusted (the LAS before the broker): the
    /// school keeps what is stored.
    Untrusted { source: usize, why: &'a Distrust },
    /// Every source says nothing changed since it was last asked.
    Unchanged,
    /// A source gave no full answer although one was asked for.
    NoFullAnswer { source: usize },
    /// Every source answered in full and is trusted: merge, diff, brake and apply.
    Apply,
}

/// Decide the run from the answers and their verdicts (one per source, in the same order).
pub fn decide<'a>(
    fetched: &[Result<FetchOutcome, ConnectorError>],
    verdicts: &'a [Verdict],
) -> Decision<'a> {
    // Without the broker's permission nothing is synced, whatever the LAS says.
    if let Some(source) = fetched
        .iter()
        .position(|f| matches!(f, Err(ConnectorError::NoConsent { .. })))
    {
        return Decision::NoConsent { source };
    }
    // The first untrustworthy source freezes the school.
    let untrusted = verdicts.iter().enumerate().find_map(|(i, v)| match v {
        Verdict::Untrustworthy(why) => Some((i, why)),
        _ => None,
    });
    if let Some((source, why)) = untrusted {
        return Decision::Untrusted { source, why };
    }
    if fetched
        .iter()
        .all(|f| matches!(f, Ok(FetchOutcome::Unchanged)))
    {
        return Decision::Unchanged;
    }
    // A source that says "unchanged" to a request without any "since", or a verdict that
    // trusted something without data: nothing is written.
    match fetched
        .iter()
        .position(|f| !matches!(f, Ok(FetchOutcome::Snapshot(_))))
    {
        Some(source) => Decision::NoFullAnswer { source },
        None => Decision::Apply,
    }
}

/// Judge each answer against what the source's last good run saw. With `allow_removals` the
/// operator looked and says a drop in pupils is real: a collapse or an empty answer is
/// trusted for this run.
pub fn verdicts(
    fetched: &[Result<FetchOutcome, ConnectorError>],
    baselines: &[Baseline],
    years: Years,
    rules: &HealthRules,
    allow_removals: bool,
) -> Vec<Verdict> {
    fetched
        .iter()
        .zip(baselines)
        .map(|(f, b)| match health::judge(f, *b, years, rules) {
            Verdict::Untrustworthy(Distrust::Collapsed { .. } | Distrust::Empty { .. })
                if allow_removals =>
            {
                Verdict::Trusted
            }
            v => v,
        })
        .collect()
}

/// Whether re-asking a source without its "since" is worth it: when any source sent a full
/// answer, the merge needs every source's full answer.
pub fn needs_full_answers(fetched: &[Result<FetchOutcome, ConnectorError>]) -> bool {
    fetched
        .iter()
        .any(|f| matches!(f, Ok(FetchOutcome::Snapshot(_))))
}

/// The outcome of a run, what it counted, and what it says: everything its record keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    pub outcome: Outcome,
    pub counts: Counts,
    pub error_class: Option<String>,
    pub message: Option<String>,
    pub retry: bool,
    pub rights_time: Duration,
    pub connection_problem: Option<ConnectionProblem>,
}

impl Decided {
    pub fn new(outcome: Outcome) -> Decided {
        Decided {
            outcome,
            counts: Counts::default(),
            error_class: None,
            message: None,
            retry: false,
            rights_time: Duration::ZERO,
            connection_problem: None,
        }
    }

    pub fn because(mut self, class: &str, message: String) -> Decided {
        self.error_class = Some(class.to_owned());
        self.message = Some(message);
        self
    }
}

/// What the sources sent: the people and groups of the first (the LAS where there is one),
/// and every source's rejected records.
pub fn received_counts(snapshots: &[&Snapshot]) -> ReceivedCounts {
    let Some(first) = snapshots.first() else {
        return ReceivedCounts::default();
    };
    ReceivedCounts {
        pupils: first.pupils.len(),
        staff: first.staff.len(),
        groups: first.groups.len(),
        rejected: snapshots.iter().map(|s| s.rejects.len()).sum(),
    }
}

/// An operator froze the school (`school freeze`): nothing is fetched.
pub fn frozen_by_operator(school: &str, who: &str) -> Decided {
    Decided::new(Outcome::Frozen).because(
        "frozen_by_operator",
        format!(
            "school {school} is frozen by {who}: its roster is kept as it is and nothing \
             was fetched; `rostersync school unfreeze {school}` lets it be synced again"
        ),
    )
}

/// The school has nothing to ask.
pub fn no_source(school: &str) -> Decided {
    Decided::new(Outcome::Failed).because(
        "config",
        format!("school {school} has no source: give it a LAS connection or a broker_id"),
    )
}

/// A source's connector could not be built.
pub fn no_connector(school: &str, why: &str) -> Decided {
    Decided::new(Outcome::Failed).because("config", format!("school {school}: {why}"))
}

/// The school's own credential at a source could not be read.
pub fn credential_unreadable(school: &str, why: &str) -> Decided {
    Decided::new(Outcome::Failed).because(
        "credential_unreadable",
        format!("school {school}: the authorization key cannot be read: {why}"),
    )
}

/// Why a school stays parked: its credential is the one that was rejected.
pub struct Parked<'a> {
    pub source: &'a str,
    pub since: Option<DateTime<Utc>>,
    pub reason: Option<&'a str>,
}

/// A parked school is not asked again until its credential changes.
pub fn parked(school: &str, p: &Parked<'_>) -> Decided {
    let since = p
        .since
        .map(|t| t.format(" since %Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    let what = if p.source == PORTAL {
        "its portal token changes: ask the school for a new Zermelo token and put it in the \
         token file"
            .to_owned()
    } else {
        format!("its key changes: `rostersync school set-key {school}` (or update the key file)")
    };
    Decided::new(Outcome::Parked).because(
        "credentials_rejected",
        format!(
            "school {school} is parked{since}: {}. It is not asked again until {what}",
            p.reason.unwrap_or("its key was rejected")
        ),
    )
}

/// A source gave no full answer when asked for one (`subject`: the school, and the source
/// when it is not the LAS).
pub fn no_full_answer(subject: &str) -> Decided {
    Decided::new(Outcome::Frozen).because(
        "no_full_answer",
        format!(
            "{subject}: the source gave no full answer when asked for one; stored data is \
             kept. Report this to the source's vendor if it lasts"
        ),
    )
}

/// A source's answer is not trusted: frozen, or parked when the school's own credential was
/// rejected. `fetched` is that source's answer; a failed fetch that can pass by itself is
/// tried again later.
pub fn untrusted(
    subject: &str,
    why: &Distrust,
    fetched: &Result<FetchOutcome, ConnectorError>,
    parks: bool,
) -> Decided {
    let outcome = if parks {
        Outcome::Parked
    } else {
        Outcome::Frozen
    };
    let mut d = Decided::new(outcome).because(why.class(), format!("{subject}: {}", why.explain()));
    d.retry = matches!(
        why,
        Distrust::FetchFailed {
            retryable: true,
            ..
        }
    );
    if let Ok(FetchOutcome::Snapshot(s)) = fetched {
        d.counts.received = received_counts(&[s]);
    }
    d
}

/// Where a school without the broker's sync permission goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentStep {
    /// Never synced: it waits for the permission.
    Awaiting,
    /// It was synced and took the permission back on `started`: its data is kept for the
    /// grace period, then deleted.
    Revoked { started: DateTime<Utc> },
    /// The grace period since `since` is over: delete its data; it waits for permission again.
    Offboard { since: DateTime<Utc> },
}

impl ConsentStep {
    /// The school's state after this step.
    pub fn status(self) -> SchoolStatus {
        match self {
            ConsentStep::Revoked { .. } => SchoolStatus::Offboarding,
            ConsentStep::Awaiting | ConsentStep::Offboard { .. } => SchoolStatus::AwaitingConsent,
        }
    }
}

/// Where the school stands with its consent, and what that means now.
#[derive(Debug, Clone, Copy)]
pub struct ConsentFacts {
    /// The school's state, and since when.
    pub status: Option<SchoolStatus>,
    pub since: Option<DateTime<Utc>>,
    /// Some run of this source ever succeeded.
    pub was_synced: bool,
    /// How long data is kept after the permission is revoked.
    pub grace: chrono::Duration,
}

/// The consent lifecycle: waiting, revoked (data kept for the grace period), offboarded.
pub fn consent_step(facts: ConsentFacts, now: DateTime<Utc>) -> ConsentStep {
    let since = facts.since.unwrap_or(now);
    let offboarding = facts.status == Some(SchoolStatus::Offboarding);
    if offboarding && since + facts.grace <= now {
        ConsentStep::Offboard { since }
    } else if offboarding {
        ConsentStep::Revoked { started: since }
    } else if facts.was_synced {
        ConsentStep::Revoked { started: now }
    } else {
        ConsentStep::Awaiting
    }
}

/// What was deleted when a school was offboarded.
#[derive(Debug, Clone, Copy, Default)]
pub struct Deleted {
    pub persons: u64,
    pub groups: u64,
}

/// The run's record of a consent step.
pub fn no_consent(
    school: &str,
    step: ConsentStep,
    grace: chrono::Duration,
    deleted: Deleted,
) -> Decided {
    let days = grace.num_days();
    let (class, message) = match step {
        ConsentStep::Offboard { since } => (
            "offboarded",
            format!(
                "school {school} revoked rostersync's sync permission on {}; after {days} days \
                 its data was deleted ({} people, {} groups). It is synced again once the \
                 school grants permission in the broker",
                since.format("%Y-%m-%d"),
                deleted.persons,
                deleted.groups
            ),
        ),
        ConsentStep::Revoked { started } => (
            "consent_revoked",
            format!(
                "school {school} revoked rostersync's sync permission in the broker on {}; \
                 nothing is synced, and its data is deleted on {} unless the school grants \
                 permission again before then",
                started.format("%Y-%m-%d"),
                (started + grace).format("%Y-%m-%d")
            ),
        ),
        ConsentStep::Awaiting => (
            "awaiting_consent",
            format!(
                "school {school} has not given rostersync's publisher sync permission in the \
                 broker yet; it is not synced until it does (ask the school's ICT coordinator)"
            ),
        ),
    };
    Decided::new(Outcome::NoConsent).because(class, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use connector_api::{PersonKeys, PersonName, PupilRecord, SourceKind};

    fn year() -> connector_api::SchoolYear {
        connector_api::SchoolYear::containing(
            chrono::NaiveDate::from_ymd_opt(2026, 11, 30).expect("date"),
        )
    }

    fn snapshot(pupils: usize) -> Result<FetchOutcome, ConnectorError> {
        let mut s = Snapshot::empty(SourceKind::Las, Utc::now());
        s.school_year = Some(year().to_string());
        s.pupils = (0..pupils)
            .map(|_| PupilRecord {
                keys: PersonKeys::default(),
                name: PersonName::default(),
                year_group: None,
                group: None,
                subgroups: Vec::new(),
            })
            .collect();
        Ok(FetchOutcome::Snapshot(Box::new(s)))
    }

    fn failed() -> Result<FetchOutcome, ConnectorError> {
        Err(ConnectorError::Unavailable {
            detail: "connection refused".into(),
            retry_after: None,
        })
    }

    fn judged(fetched: &[Result<FetchOutcome, ConnectorError>], before: u32) -> Vec<Verdict> {
        let baselines = vec![
            Baseline {
                pupils: Some(before),
                staff: None,
                school_year: None,
            };
            fetched.len()
        ];
        verdicts(
            fetched,
            &baselines,
            Years::live(year()),
            &HealthRules::default(),
            false,
        )
    }

    #[test]
    fn no_consent_wins_over_everything_else() {
        let fetched = vec![
            failed(),
            Err(ConnectorError::NoConsent {
                detail: "no permission".into(),
            }),
        ];
        let v = judged(&fetched, 10);
        assert_eq!(decide(&fetched, &v), Decision::NoConsent { source: 1 });
    }

    #[test]
    fn the_first_untrusted_source_freezes_the_school() {
        let fetched = vec![snapshot(10), failed()];
        let v = judged(&fetched, 10);
        let d = decide(&fetched, &v);
        assert!(
            matches!(d, Decision::Untrusted { source: 1, why } if why.class() == "unavailable"),
            "{d:?}"
        );
    }

    #[test]
    fn a_collapse_is_untrusted_unless_the_operator_allows_removals() {
        let fetched = vec![snapshot(2)];
        let v = judged(&fetched, 100);
        assert!(matches!(
            decide(&fetched, &v),
            Decision::Untrusted {
                why: Distrust::Collapsed { .. },
                ..
            }
        ));
        let baselines = [Baseline {
            pupils: Some(100),
            staff: None,
            school_year: None,
        }];
        let allowed = verdicts(
            &fetched,
            &baselines,
            Years::live(year()),
            &HealthRules::default(),
            true,
        );
        assert_eq!(decide(&fetched, &allowed), Decision::Apply);
    }

    #[test]
    fn all_unchanged_is_unchanged_and_one_snapshot_asks_the_rest_in_full() {
        let fetched = vec![Ok(FetchOutcome::Unchanged), Ok(FetchOutcome::Unchanged)];
        let v = judged(&fetched, 10);
        assert_eq!(decide(&fetched, &v), Decision::Unchanged);
        assert!(!needs_full_answers(&fetched));
        let mixed = vec![snapshot(10), Ok(FetchOutcome::Unchanged)];
        assert!(needs_full_answers(&mixed));
        // Asked in full, a source still said "unchanged": no full answer, nothing written.
        let v = judged(&mixed, 10);
        assert_eq!(decide(&mixed, &v), Decision::NoFullAnswer { source: 1 });
    }

    #[test]
    fn trusted_full_answers_are_applied() {
        let fetched = vec![snapshot(10), snapshot(10)];
        let v = judged(&fetched, 10);
        assert_eq!(decide(&fetched, &v), Decision::Apply);
    }

    #[test]
    fn untrusted_says_parked_or_frozen_and_whether_to_retry() {
        let fetched = failed();
        let v = judged(std::slice::from_ref(&fetched), 10);
        let why = v
            .iter()
            .find_map(|v| match v {
                Verdict::Untrustworthy(why) => Some(why),
                _ => None,
            })
            .expect("a failed fetch is not trusted");
        let d = untrusted("school 99XX00", why, &fetched, false);
        assert_eq!(d.outcome, Outcome::Frozen);
        assert!(d.retry, "an unavailable source is tried again");
        assert!(
            d.message
                .as_deref()
                .unwrap_or("")
                .starts_with("school 99XX00: ")
        );
        let d = untrusted("school 99XX00", why, &fetched, true);
        assert_eq!(d.outcome, Outcome::Parked);
    }

    #[test]
    fn a_parked_school_says_how_it_gets_going_again() {
        let at = Utc.with_ymd_and_hms(2026, 11, 2, 3, 30, 0).single();
        let las = parked(
            "99XX00",
            &Parked {
                source: "las",
                since: at,
                reason: Some("the key was rejected"),
            },
        );
        let text = las.message.unwrap_or_default();
        assert!(text.contains("since 2026-11-02 03:30 UTC"), "{text}");
        assert!(text.contains("school set-key 99XX00"), "{text}");
        let portal = parked(
            "99XX00",
            &Parked {
                source: PORTAL,
                since: None,
                reason: None,
            },
        );
        assert!(portal.message.unwrap_or_default().contains("Zermelo token"));
    }

    #[test]
    fn consent_waits_then_revokes_then_offboards_after_the_grace() {
        let now = Utc
            .with_ymd_and_hms(2026, 11, 30, 3, 0, 0)
            .single()
            .expect("now");
        let grace = chrono::Duration::days(30);
        let facts = |status, since, was_synced| ConsentFacts {
            status,
            since,
            was_synced,
            grace,
        };
        assert_eq!(
            consent_step(facts(Some(SchoolStatus::Active), None, false), now),
            ConsentStep::Awaiting
        );
        let step = consent_step(facts(Some(SchoolStatus::Active), None, true), now);
        assert_eq!(step, ConsentStep::Revoked { started: now });
        assert_eq!(step.status(), SchoolStatus::Offboarding);
        let ten_days = now - chrono::Duration::days(10);
        assert_eq!(
            consent_step(
                facts(Some(SchoolStatus::Offboarding), Some(ten_days), true),
                now
            ),
            ConsentStep::Revoked { started: ten_days }
        );
        let long_ago = now - chrono::Duration::days(31);
        let step = consent_step(
            facts(Some(SchoolStatus::Offboarding), Some(long_ago), true),
            now,
        );
        assert_eq!(step, ConsentStep::Offboard { since: long_ago });
        assert_eq!(step.status(), SchoolStatus::AwaitingConsent);
        let d = no_consent(
            "99XX00",
            step,
            grace,
            Deleted {
                persons: 7,
                groups: 2,
            },
        );
        assert_eq!(d.error_class.as_deref(), Some("offboarded"));
        assert!(
            d.message
                .unwrap_or_default()
                .contains("(7 people, 2 groups)")
        );
    }
}
