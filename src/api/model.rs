//! rostersync's roster in OneRoster 1.2's words: a school is an org, its school year an
//! academic session, a year group a course, a group a class, a person a user, a pupil's
//! group and a teacher's group grant an enrollment. Pure mapping of store rows to JSON; the
//! mapping table is in the README ("Apps: the OneRoster API").

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use connector_api::SchoolYear;

use super::query::{Fields, Filter, Op, parse_time};
use crate::model::rollover::Calendar;
use crate::store::entities::school;
use crate::store::oneroster::{ClassRow, EnrollmentRow, UserRow};

/// Where the API is reached, for `href`s: `https://host/ims/oneroster/rostering/v1p2`.
pub struct Base(pub String);

impl Base {
    fn href(&self, path: &str, sid: &str) -> String {
        format!("{}/{path}/{sid}", self.0)
    }

    fn guid(&self, kind: &str, path: &str, sid: &str) -> Value {
        json!({ "href": self.href(path, sid), "sourcedId": sid, "type": kind })
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn status(active: bool) -> &'static str {
    if active { "active" } else { "tobedeleted" }
}

/// A Dutch year group as a CEDS grade code (the codes OneRoster uses): groep 1 and 2 are
/// pre-kindergarten and kindergarten, groep 3 to 8 grades 1 to 6, VO leerjaar 1 to 6
/// (UWLR 11 to 16) grades 7 to 12, baby/dreumes/peuter the infant and preschool codes.
/// Special and combined groups have none (their original value is in `metadata`).
pub fn grade(year_group: &str) -> Option<&'static str> {
    Some(match year_group {
        "B" | "D" => "IT",
        "0" => "PR",
        "1" => "PK",
        "2" => "KG",
        "3" => "01",
        "4" => "02",
        "5" => "03",
        "6" => "04",
        "7" => "05",
        "8" => "06",
        "11" => "07",
        "12" => "08",
        "13" => "09",
        "14" => "10",
        "15" => "11",
        "16" => "12",
        _ => return None,
    })
}

/// The school year an org's classes belong to: `2026-2027` (the live year by the calendar
/// for a school not synced yet).
pub fn school_year_of(s: &school::Model, live: SchoolYear) -> String {
    s.school_year.clone().unwrap_or_else(|| live.to_string())
}

/// The sourcedId of a school year's session (one per school year, shared by schools).
pub fn session_sid(year: &str) -> String {
    format!("schoolyear-{year}")
}

/// The sourcedId of a school's course for a year group (`None`: the groups without one).
pub fn course_sid(school_sid: &str, year: Option<&str>) -> String {
    format!("{school_sid}.course.{}", year.unwrap_or("other"))
}

/// What a course sourcedId names: the school's sourcedId and the year group.
pub fn parse_course_sid(sid: &str) -> Option<(String, Option<String>)> {
    let (school, year) = sid.split_once(".course.")?;
    Some((
        school.to_owned(),
        (year != "other").then(|| year.to_owned()),
    ))
}

pub fn org(s: &school::Model) -> Value {
    json!({
        "sourcedId": s.sourced_id.clone().unwrap_or_default(),
        "status": "active",
        "dateLastModified": time(s.updated_at),
        "name": s.name.clone().unwrap_or_else(|| s.id.clone()),
        "type": "school",
        "identifier": s.id,
        "metadata": { "rostersync.brin": s.brin, "rostersync.dependance": s.dependance },
    })
}

/// The school year as a session: from `rollover.switch_on` (1 August) to the day before the
/// next.
pub fn session(year: &str, modified: DateTime<Utc>, calendar: &Calendar) -> Value {
    let start: i32 = year.get(..4).and_then(|y| y.parse().ok()).unwrap_or(2000);
    let school_year = SchoolYear::starting(start);
    json!({
        "sourcedId": session_sid(year),
        "status": "active",
        "dateLastModified": time(modified),
        "title": format!("Schooljaar {year}"),
        "startDate": calendar.first_day(school_year).to_string(),
        "endDate": calendar.last_day(school_year).to_string(),
        "type": "schoolYear",
        "schoolYear": format!("{}", start + 1),
    })
}

/// A school's course for a year group.
pub fn course(school: &school::Model, year: Option<&str>, base: &Base, live: SchoolYear) -> Value {
    let sid = school.sourced_id.clone().unwrap_or_default();
    let school_year = school_year_of(school, live);
    let title = match year {
        Some(y) if grade(y).is_some() && y.len() == 1 && y.chars().all(|c| c.is_ascii_digit()) => {
            format!("Groep {y}")
        }
        Some(y) if y.len() == 2 && y.starts_with('1') => format!("Leerjaar {}", &y[1..]),
        Some("C") => "Combinatiegroepen".to_owned(),
        Some(y) => format!("Jaargroep {y}"),
        None => "Samengestelde groepen".to_owned(),
    };
    json!({
        "sourcedId": course_sid(&sid, year),
        "status": "active",
        "dateLastModified": time(school.updated_at),
        "title": title,
        "courseCode": format!("{}-{}", school.id, year.unwrap_or("other")),
        "schoolYear": base.guid("academicSession", "academicSessions", &session_sid(&school_year)),
        "grades": year.and_then(grade).into_iter().collect::<Vec<_>>(),
        "org": base.guid("org", "orgs", &sid),
        "metadata": { "rostersync.yearGroup": year },
    })
}

/// A class; its term is the school year of its row: the live one, or next year for a class
/// of a prepared year.
pub fn class(r: &ClassRow, base: &Base, live: SchoolYear) -> Value {
    let year = r.school_year.clone().unwrap_or_else(|| live.to_string());
    json!({
        "sourcedId": r.sourced_id,
        "status": status(!r.removed),
        "dateLastModified": time(r.modified),
        "title": r.name,
        "classCode": r.key,
        "classType": if r.kind == "stamgroep" { "homeroom" } else { "scheduled" },
        "grades": r.year_group.as_deref().and_then(grade).into_iter().collect::<Vec<_>>(),
        "course": base.guid("course", "courses", &course_sid(&r.school_sid, r.year_group.as_deref())),
        "school": base.guid("org", "schools", &r.school_sid),
        "terms": [base.guid("academicSession", "terms", &session_sid(&year))],
        "metadata": { "rostersync.groupKind": r.kind, "rostersync.yearGroup": r.year_group },
    })
}

/// A whole-school grant's rule as a role on the school org.
fn school_role(rule: &str) -> &'static str {
    match rule {
        "intern-begeleider" => "counselor",
        "director" => "principal",
        _ => "siteAdministrator",
    }
}

/// A user (its row has its ECK-iD and LAS key); `school_rules`: the rules of the person's
/// whole-school grants (each a secondary role on the school).
pub fn user(r: &UserRow, school_rules: &[String], base: &Base) -> Value {
    let org = base.guid("org", "orgs", &r.school_sid);
    let pupil = r.kind == "pupil";
    let mut roles = vec![json!({
        "roleType": "primary",
        "role": if pupil { "student" } else { "teacher" },
        "org": org,
    })];
    roles.extend(
        school_rules
            .iter()
            .map(|rule| json!({ "roleType": "secondary", "role": school_role(rule), "org": org })),
    );
    let mut ids = Vec::new();
    if let Some(e) = &r.eckid {
        ids.push(json!({ "type": "ECK-iD", "identifier": e }));
    }
    if let Some(l) = &r.las_key {
        ids.push(json!({ "type": "LAS", "identifier": l }));
    }
    let family = match (&r.prefix, &r.family_name) {
        (Some(p), Some(f)) => format!("{p} {f}"),
        (None, Some(f)) => f.clone(),
        (Some(p), None) => p.clone(),
        (None, None) => String::new(),
    };
    let mut v = json!({
        "sourcedId": r.sourced_id,
        "status": status(!r.removed),
        "dateLastModified": time(r.modified),
        "enabledUser": if r.removed { "false" } else { "true" },
        "givenName": r.given_name.clone().unwrap_or_default(),
        "familyName": family,
        "roles": roles,
        "userIds": ids,
        "primaryOrg": org,
        "grades": r.year_group.as_deref().and_then(grade).into_iter().collect::<Vec<_>>(),
        "metadata": {
            "rostersync.prefix": r.prefix,
            "rostersync.familyName": r.family_name,
            "rostersync.yearGroup": r.year_group,
        },
    });
    if let Some(e) = &r.eckid {
        v["userMasterIdentifier"] = json!(e);
    }
    if let Some(l) = &r.las_key {
        v["identifier"] = json!(l);
    }
    if let Some(m) = &r.email {
        v["email"] = json!(m);
    }
    v
}

pub fn enrollment(r: &EnrollmentRow, base: &Base) -> Value {
    json!({
        "sourcedId": r.sourced_id,
        "status": status(r.active),
        "dateLastModified": time(r.modified),
        "user": base.guid("user", "users", &r.user_sid),
        "class": base.guid("class", "classes", &r.class_sid),
        "school": base.guid("org", "schools", &r.school_sid),
        "role": r.role,
        "primary": if r.primary { "true" } else { "false" },
    })
}

/// Keep only the selected fields of `v` (and those the specification requires, so every
/// answer still validates against its schema).
pub fn select(v: &mut Value, fields: Option<&[String]>, required: &[&str]) {
    let (Some(fields), Some(map)) = (fields, v.as_object_mut()) else {
        return;
    };
    map.retain(|k, _| required.contains(&k.as_str()) || fields.iter().any(|f| f == k));
}

/// Whether `v` passes `filter` (for the collections listed whole in memory: orgs, academic
/// sessions, courses). Fields compare as text; dateLastModified as a moment.
pub fn matches(v: &Value, filter: &Filter) -> bool {
    let one = |p: &super::query::Predicate| {
        let got = match &v[p.field.as_str()] {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        if p.field == "dateLastModified" {
            let (Ok(a), Ok(b)) = (parse_time(&got), parse_time(&p.value)) else {
                return false;
            };
            return compare(a.cmp(&b), p.op);
        }
        match p.op {
            Op::Contains => got.to_lowercase().contains(&p.value.to_lowercase()),
            op => compare(got.as_str().cmp(p.value.as_str()), op),
        }
    };
    match filter.join {
        super::query::Join::And => filter.predicates.iter().all(one),
        super::query::Join::Or => filter.predicates.iter().any(one),
    }
}

fn compare(o: std::cmp::Ordering, op: Op) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::Eq => o == Equal,
        Op::Ne => o != Equal,
        Op::Gt => o == Greater,
        Op::Ge => o != Less,
        Op::Lt => o == Less,
        Op::Le => o != Greater,
        Op::Contains => false,
    }
}

/// A resource's fields, for `fields=` and `filter=`.
pub struct Resource {
    pub all: &'static [&'static str],
    pub scalar: &'static [&'static str],
    pub required: &'static [&'static str],
}

impl Fields for Resource {
    fn all(&self) -> &'static [&'static str] {
        self.all
    }
    fn scalar(&self) -> &'static [&'static str] {
        self.scalar
    }
}

pub const USERS: Resource = Resource {
    all: &[
        "sourcedId",
        "status",
        "dateLastModified",
        "metadata",
        "userMasterIdentifier",
        "username",
        "userIds",
        "enabledUser",
        "givenName",
        "familyName",
        "middleName",
        "preferredFirstName",
        "preferredMiddleName",
        "preferredLastName",
        "pronouns",
        "roles",
        "userProfiles",
        "primaryOrg",
        "identifier",
        "email",
        "sms",
        "phone",
        "agents",
        "grades",
        "password",
        "resources",
    ],
    scalar: &[
        "sourcedId",
        "status",
        "dateLastModified",
        "userMasterIdentifier",
        "username",
        "enabledUser",
        "givenName",
        "familyName",
        "middleName",
        "preferredFirstName",
        "preferredMiddleName",
        "preferredLastName",
        "pronouns",
        "identifier",
        "email",
        "sms",
        "phone",
        "password",
    ],
    required: &[
        "sourcedId",
        "status",
        "dateLastModified",
        "enabledUser",
        "givenName",
        "familyName",
        "roles",
    ],
};

pub const CLASSES: Resource = Resource {
    all: &[
        "sourcedId",
        "status",
        "dateLastModified",
        "metadata",
        "title",
        "classCode",
        "classType",
        "location",
        "grades",
        "subjects",
        "course",
        "school",
        "terms",
        "subjectCodes",
        "periods",
        "resources",
    ],
    scalar: &[
        "sourcedId",
        "status",
        "dateLastModified",
        "title",
        "classCode",
        "classType",
        "location",
    ],
    required: &[
        "sourcedId",
        "status",
        "dateLastModified",
        "title",
        "course",
        "school",
        "terms",
    ],
};

pub const ENROLLMENTS: Resource = Resource {
    all: &[
        "sourcedId",
        "status",
        "dateLastModified",
        "metadata",
        "user",
        "class",
        "school",
        "role",
        "primary",
        "beginDate",
        "endDate",
    ],
    scalar: &[
        "sourcedId",
        "status",
        "dateLastModified",
        "role",
        "primary",
        "beginDate",
        "endDate",
    ],
    required: &[
        "sourcedId",
        "status",
        "dateLastModified",
        "user",
        "class",
        "school",
        "role",
    ],
};

pub const ORGS: Resource = Resource {
    all: &[
        "sourcedId",
        "status",
        "dateLastModified",
        "metadata",
        "name",
        "type",
        "identifier",
        "parent",
        "children",
    ],
    scalar: &[
        "sourcedId",
        "status",
        "dateLastModified",
        "name",
        "type",
        "identifier",
    ],
    required: &[
        "sourcedId",
        "status",
        "dateLastModified",
        "name",
        "type",
        "identifier",
    ],
};

pub const SESSIONS: Resource = Resource {
    all: &[
        "sourcedId",
        "status",
        "dateLastModified",
        "metadata",
        "title",
        "startDate",
        "endDate",
        "type",
        "parent",
        "children",
        "schoolYear",
    ],
    scalar: &[
        "sourcedId",
        "status",
        "dateLastModified",
        "title",
        "startDate",
        "endDate",
        "type",
        "schoolYear",
    ],
    required: &[
        "sourcedId",
        "status",
        "dateLastModified",
        "title",
        "startDate",
        "endDate",
        "type",
        "schoolYear",
    ],
};

pub const COURSES: Resource = Resource {
    all: &[
        "sourcedId",
        "status",
        "dateLastModified",
        "metadata",
        "title",
        "schoolYear",
        "courseCode",
        "grades",
        "subjects",
        "org",
        "subjectCodes",
        "resources",
    ],
    scalar: &[
        "sourcedId",
        "status",
        "dateLastModified",
        "title",
        "courseCode",
    ],
    required: &[
        "sourcedId",
        "status",
        "dateLastModified",
        "title",
        "courseCode",
    ],
};

pub const DEMOGRAPHICS: Resource = Resource {
    all: &[
        "sourcedId",
        "status",
        "dateLastModified",
        "metadata",
        "birthDate",
        "sex",
    ],
    scalar: &[
        "sourcedId",
        "status",
        "dateLastModified",
        "birthDate",
        "sex",
    ],
    required: &["sourcedId", "status", "dateLastModified"],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dutch_year_groups_map_to_grade_codes_and_special_groups_to_none() {
        assert_eq!(grade("1"), Some("PK"));
        assert_eq!(grade("2"), Some("KG"));
        assert_eq!(grade("8"), Some("06"));
        assert_eq!(grade("11"), Some("07"));
        assert_eq!(grade("16"), Some("12"));
        for none in ["C", "S", "V", "N", "H", ""] {
            assert_eq!(grade(none), None, "{none}");
        }
    }

    #[test]
    fn a_course_id_names_its_school_and_year_group_back() {
        let sid = course_sid("abc123", Some("8"));
        assert_eq!(
            parse_course_sid(&sid),
            Some(("abc123".into(), Some("8".into())))
        );
        let other = course_sid("abc123", None);
        assert_eq!(parse_course_sid(&other), Some(("abc123".into(), None)));
        assert_eq!(parse_course_sid("nonsense"), None);
    }

    #[test]
    fn selection_keeps_what_the_specification_requires() {
        let mut v = json!({"sourcedId": "a", "status": "active", "email": "x", "grades": []});
        select(
            &mut v,
            Some(&["email".to_owned()]),
            &["sourcedId", "status"],
        );
        assert_eq!(
            v,
            json!({"sourcedId": "a", "status": "active", "email": "x"})
        );
    }

    #[test]
    fn sessions_run_from_switch_on_to_the_day_before_the_next() {
        let s = session("2026-2027", Utc::now(), &Calendar::default());
        assert_eq!(s["startDate"], "2026-08-01");
        assert_eq!(s["endDate"], "2027-07-31");
        assert_eq!(s["schoolYear"], "2027");
        let later = Calendar {
            switch_on: "08-16".parse().expect("day"),
            ..Calendar::default()
        };
        let s = session("2026-2027", Utc::now(), &later);
        assert_eq!(s["startDate"], "2026-08-16");
        assert_eq!(s["endDate"], "2027-08-15");
    }
}
