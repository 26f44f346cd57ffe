//! Is a source's answer trustworthy enough to change a school's stored roster?
//! A pure verdict per school and source; an untrustworthy answer freezes the school.

use connector_api::{ConnectorError, FetchOutcome, SchoolYear, Snapshot};
use serde::Serialize;

/// What rostersync knows from the last good run of this school and source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Baseline {
    pub pupils: Option<u32>,
    pub staff: Option<u32>,
    /// The school year of the source's last good answer: an answer never goes back before it.
    pub school_year: Option<SchoolYear>,
}

/// Which school years an answer may be for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Years {
    /// The live year (the one asked for).
    pub live: SchoolYear,
    /// In the weeks before the switch, next year too: a LAS that rolled over early.
    pub early: Option<SchoolYear>,
}

impl Years {
    pub fn live(year: SchoolYear) -> Years {
        Years {
            live: year,
            early: None,
        }
    }

    fn accepts(&self, year: SchoolYear) -> bool {
        year == self.live || Some(year) == self.early
    }
}

/// Thresholds of the health check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthRules {
    /// A pupil count below this share of the last good count is a collapse (0.5: half gone).
    pub collapse_ratio: f64,
    /// Schools smaller than this are not judged on collapse (small numbers swing).
    pub collapse_min_baseline: u32,
}

impl Default for HealthRules {
    fn default() -> Self {
        HealthRules {
            collapse_ratio: 0.5,
            collapse_min_baseline: 20,
        }
    }
}

/// Why an answer cannot be trusted. Each says what happened and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Distrust {
    FetchFailed {
        class: String,
        message: String,
        advice: String,
        retryable: bool,
    },
    NoData {
        detail: String,
    },
    Collapsed {
        before: u32,
        now: u32,
    },
    WrongYear {
        expected: String,
        got: String,
    },
    /// The answer has no pupils at all where the school had pupils.
    Empty {
        before: u32,
    },
}

impl Distrust {
    /// A stable name for run records and metrics.
    pub fn class(&self) -> &str {
        match self {
            Distrust::FetchFailed { class, .. } => class,
            Distrust::NoData { .. } => "no_data",
            Distrust::Collapsed { .. } => "count_collapsed",
            Distrust::WrongYear { .. } => "wrong_school_year",
            Distrust::Empty { .. } => "empty_answer",
        }
    }

    /// One sentence for the run record and `status`: what happened and what to do.
    pub fn explain(&self) -> String {
        match self {
            Distrust::FetchFailed {
                message, advice, ..
            } => format!("{message}; {advice}"),
            Distrust::NoData { detail } => format!(
                "{detail}; stored data is kept. If the school really has no pupils, remove it \
                 with `rostersync school remove`"
            ),
            Distrust::Collapsed { before, now } => format!(
                "the source lists {now} pupils where the last good run had {before}; nothing is \
                 removed. Check with the school; if it is real, `rostersync sync --allow-removals`"
            ),
            Distrust::WrongYear { expected, got } => format!(
                "the source answered for school year {got}, expected {expected}; nothing is \
                 changed. Around 1 August this settles by itself; otherwise check the LAS"
            ),
            Distrust::Empty { before } => format!(
                "the source lists no pupils where the last good run had {before}; nothing is removed"
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Apply the snapshot.
    Trusted,
    /// The source says nothing changed: no writes at all.
    Unchanged,
    /// Freeze the school: keep what is stored, record why.
    Untrustworthy(Distrust),
}

/// Judge one fetch against what the last good run saw and the school year we expect.
pub fn judge(
    fetched: &Result<FetchOutcome, ConnectorError>,
    baseline: Baseline,
    years: Years,
    rules: &HealthRules,
) -> Verdict {
    let snapshot = match fetched {
        Err(e) => {
            return Verdict::Untrustworthy(Distrust::FetchFailed {
                class: e.class().to_owned(),
                message: e.to_string(),
                advice: e.advice().to_owned(),
                retryable: e.is_retryable(),
            });
        }
        Ok(FetchOutcome::Unchanged) => return Verdict::Unchanged,
        Ok(FetchOutcome::NoData { detail }) => {
            return Verdict::Untrustworthy(Distrust::NoData {
                detail: detail.clone(),
            });
        }
        Ok(FetchOutcome::Snapshot(s)) => s,
    };
    judge_snapshot(snapshot, baseline, years, rules)
}

fn judge_snapshot(s: &Snapshot, baseline: Baseline, years: Years, rules: &HealthRules) -> Verdict {
    // A source that does not say its year is not held against it; one that names another is,
    // and so is one that goes back to a year before the one the school already moved to.
    if let Some(got) = &s.school_year {
        let year = got.parse::<SchoolYear>().ok();
        let known = baseline.school_year;
        let backwards = year.zip(known).is_some_and(|(y, k)| y < k);
        if backwards || !year.is_some_and(|y| years.accepts(y)) {
            let expected = known.filter(|_| backwards).unwrap_or(years.live);
            return Verdict::Untrustworthy(Distrust::WrongYear {
                expected: expected.to_string(),
                got: got.clone(),
            });
        }
    }
    let now = u32::try_from(s.pupils.len()).unwrap_or(u32::MAX);
    if let Some(before) = baseline.pupils {
        if now == 0 && before > 0 {
            return Verdict::Untrustworthy(Distrust::Empty { before });
        }
        if before >= rules.collapse_min_baseline
            && f64::from(now) < f64::from(before) * rules.collapse_ratio
        {
            return Verdict::Untrustworthy(Distrust::Collapsed { before, now });
        }
    }
    Verdict::Trusted
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use connector_api::{PersonKeys, PersonName, PupilRecord, SourceKind};

    fn year() -> Years {
        Years::live(SchoolYear::starting(2025))
    }

    fn snapshot(pupils: usize, year: Option<&str>) -> Result<FetchOutcome, ConnectorError> {
        let mut s = Snapshot::empty(SourceKind::Las, Utc::now());
        s.school_year = year.map(str::to_owned);
        s.pupils = (0..pupils)
            .map(|i| PupilRecord {
                keys: PersonKeys {
                    las_key: Some(format!("L{i}")),
                    ..PersonKeys::default()
                },
                name: PersonName::default(),
                year_group: None,
                group: None,
                subgroups: Vec::new(),
            })
            .collect();
        Ok(FetchOutcome::Snapshot(Box::new(s)))
    }

    fn base(pupils: u32) -> Baseline {
        Baseline {
            pupils: Some(pupils),
            staff: None,
            school_year: None,
        }
    }

    #[test]
    fn a_normal_answer_is_trusted() {
        let v = judge(
            &snapshot(100, Some("2025-2026")),
            base(98),
            year(),
            &HealthRules::default(),
        );
        assert_eq!(v, Verdict::Trusted);
        let first = judge(
            &snapshot(3, None),
            Baseline::default(),
            year(),
            &HealthRules::default(),
        );
        assert_eq!(
            first,
            Verdict::Trusted,
            "a first run has nothing to compare with"
        );
    }

    #[test]
    fn geenwijzigingen_means_unchanged_and_geengegevens_freezes() {
        let rules = HealthRules::default();
        assert_eq!(
            judge(&Ok(FetchOutcome::Unchanged), base(100), year(), &rules),
            Verdict::Unchanged
        );
        let v = judge(
            &Ok(FetchOutcome::NoData {
                detail: "geengegevens".into(),
            }),
            base(100),
            year(),
            &rules,
        );
        assert!(matches!(v, Verdict::Untrustworthy(Distrust::NoData { .. })));
    }

    #[test]
    fn a_failed_fetch_freezes_with_its_class_and_advice() {
        let err = ConnectorError::CredentialsRejected {
            detail: "Client.AutorisatieOngeldig".into(),
        };
        let v = judge(&Err(err), base(100), year(), &HealthRules::default());
        let Verdict::Untrustworthy(d) = v else {
            unreachable!("a failed fetch is never trusted: {v:?}");
        };
        assert!(matches!(
            d,
            Distrust::FetchFailed {
                retryable: false,
                ..
            }
        ));
        assert_eq!(d.class(), "credentials_rejected");
        assert!(d.explain().contains("set-key"), "{}", d.explain());
    }

    #[test]
    fn a_collapse_freezes_but_small_schools_and_normal_drops_do_not() {
        let rules = HealthRules::default();
        let v = judge(&snapshot(40, Some("2025-2026")), base(100), year(), &rules);
        assert_eq!(
            v,
            Verdict::Untrustworthy(Distrust::Collapsed {
                before: 100,
                now: 40
            })
        );
        // A 30% drop is for the brakes to hold, not for the health check to freeze.
        assert_eq!(
            judge(&snapshot(70, None), base(100), year(), &rules),
            Verdict::Trusted
        );
        assert_eq!(
            judge(&snapshot(4, None), base(10), year(), &rules),
            Verdict::Trusted
        );
        assert_eq!(
            judge(&snapshot(0, None), base(10), year(), &rules),
            Verdict::Untrustworthy(Distrust::Empty { before: 10 })
        );
    }

    #[test]
    fn another_school_year_freezes() {
        let v = judge(
            &snapshot(100, Some("2024-2025")),
            base(100),
            year(),
            &HealthRules::default(),
        );
        assert!(matches!(
            v,
            Verdict::Untrustworthy(Distrust::WrongYear { .. })
        ));
        let garbage = judge(
            &snapshot(100, Some("volgend jaar")),
            base(100),
            year(),
            &HealthRules::default(),
        );
        assert!(matches!(
            garbage,
            Verdict::Untrustworthy(Distrust::WrongYear { .. })
        ));
    }

    #[test]
    fn next_year_is_taken_in_the_summer_and_no_answer_goes_back_a_year() {
        let summer = Years {
            live: SchoolYear::starting(2025),
            early: Some(SchoolYear::starting(2026)),
        };
        let rules = HealthRules::default();
        let early = judge(&snapshot(100, Some("2026-2027")), base(100), summer, &rules);
        assert_eq!(early, Verdict::Trusted, "a LAS that rolled over early");
        let autumn = judge(&snapshot(100, Some("2026-2027")), base(100), year(), &rules);
        assert!(matches!(
            autumn,
            Verdict::Untrustworthy(Distrust::WrongYear { .. })
        ));
        // Switched early; the LAS then answers for the old year again: not taken.
        let moved = Baseline {
            school_year: Some(SchoolYear::starting(2026)),
            ..base(100)
        };
        let back = judge(&snapshot(100, Some("2025-2026")), moved, summer, &rules);
        let Verdict::Untrustworthy(Distrust::WrongYear { expected, .. }) = back else {
            unreachable!("going back a year is refused: {back:?}");
        };
        assert_eq!(expected, "2026-2027");
    }
}
