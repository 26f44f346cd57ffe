//! The query of a OneRoster collection request, parsed: paging (`limit`, `offset`), sorting
//! (`sort`, `orderBy`), the filter grammar (`field op 'value'` joined by `AND` or `OR`) and
//! field selection (`fields`). Pure: text in, a checked query or the spec's error out.

use chrono::{DateTime, Utc};

/// Records per page when the client does not say, and the most it may ask for (a larger
/// `limit` is clamped to this, not refused).
pub const DEFAULT_LIMIT: u64 = 100;
pub const MAX_LIMIT: u64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    /// `~`: contains, ignoring case.
    Contains,
}

impl Op {
    pub fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "<>",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Contains => "LIKE",
        }
    }
}

/// One comparison of the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Predicate {
    pub field: String,
    pub op: Op,
    pub value: String,
}

/// How the predicates are joined: the spec allows one logical operator per filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    And,
    Or,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub predicates: Vec<Predicate>,
    pub join: Join,
}

impl Filter {
    /// Whether the filter asks what changed after some moment: then records removed since
    /// are included, as `tobedeleted`.
    pub fn is_delta(&self) -> bool {
        self.predicates
            .iter()
            .any(|p| p.field == "dateLastModified" && matches!(p.op, Op::Gt | Op::Ge))
    }
}

/// Where the page a `next` link names begins, in the default order (by sourcedId): after the
/// last record of the page before, whose request counted `total` records. A page reached this
/// way costs what it returns, where an `offset` costs what it skips (a listing's deep pages
/// and every page of a large delta).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub total: u64,
    pub after: String,
}

impl Cursor {
    /// The text of a `cursor` parameter: the count, `:`, the sourcedId.
    pub fn text(&self) -> String {
        format!("{}:{}", self.total, self.after)
    }

    fn parse(value: &str) -> Result<Cursor, QueryError> {
        let bad = || {
            QueryError::InvalidData(
                "cursor is not one this server gave; follow the next link as given, or page \
                 with offset"
                    .into(),
            )
        };
        let (total, after) = value.split_once(':').ok_or_else(bad)?;
        let total = total.parse().map_err(|_| bad())?;
        if after.is_empty() {
            return Err(bad());
        }
        Ok(Cursor {
            total,
            after: after.to_owned(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub limit: u64,
    pub offset: u64,
    /// Set by a `next` link in the default order; the `offset` beside it still names the page.
    pub cursor: Option<Cursor>,
    pub sort: Option<String>,
    pub descending: bool,
    pub filter: Option<Filter>,
    pub fields: Option<Vec<String>>,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            limit: DEFAULT_LIMIT,
            offset: 0,
            cursor: None,
            sort: None,
            descending: false,
            filter: None,
            fields: None,
        }
    }
}

/// What is wrong with a request's query, as the spec's code minor names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    InvalidFilter(String),
    InvalidSelection(String),
    InvalidData(String),
}

impl QueryError {
    pub fn code_minor(&self) -> &'static str {
        match self {
            QueryError::InvalidFilter(_) => "invalid_filter_field",
            QueryError::InvalidSelection(_) => "invalid_selection_field",
            QueryError::InvalidData(_) => "invaliddata",
        }
    }

    pub fn description(&self) -> &str {
        match self {
            QueryError::InvalidFilter(d)
            | QueryError::InvalidSelection(d)
            | QueryError::InvalidData(d) => d,
        }
    }
}

/// The fields a resource has, and which of them can be filtered and sorted on (its scalar
/// fields; arrays and objects cannot be compared).
pub trait Fields {
    fn all(&self) -> &'static [&'static str];
    fn scalar(&self) -> &'static [&'static str];
}

/// Parse the query string's pairs for a resource with `fields`.
pub fn parse(pairs: &[(String, String)], fields: &dyn Fields) -> Result<Query, QueryError> {
    let mut q = Query::default();
    for (key, value) in pairs {
        match key.as_str() {
            "limit" => {
                let n: i64 = value.trim().parse().map_err(|_| {
                    QueryError::InvalidData(format!("limit must be a whole number, not '{value}'"))
                })?;
                if n < 1 {
                    return Err(QueryError::InvalidData("limit must be at least 1".into()));
                }
                q.limit = (n as u64).min(MAX_LIMIT);
            }
            "offset" => {
                let n: i64 = value.trim().parse().map_err(|_| {
                    QueryError::InvalidData(format!("offset must be a whole number, not '{value}'"))
                })?;
                if n < 0 {
                    return Err(QueryError::InvalidData("offset must be 0 or more".into()));
                }
                q.offset = n as u64;
            }
            "sort" => {
                let field = value.trim();
                if !fields.scalar().contains(&field) {
                    return Err(QueryError::InvalidData(format!(
                        "cannot sort on '{field}': sortable fields are {}",
                        fields.scalar().join(", ")
                    )));
                }
                q.sort = Some(field.to_owned());
            }
            "orderBy" => {
                q.descending = match value.trim() {
                    "asc" => false,
                    "desc" => true,
                    other => {
                        return Err(QueryError::InvalidData(format!(
                            "orderBy is asc or desc, not '{other}'"
                        )));
                    }
                }
            }
            "cursor" => q.cursor = Some(Cursor::parse(value)?),
            "filter" => q.filter = Some(parse_filter(value, fields)?),
            "fields" => {
                let mut chosen = q.fields.take().unwrap_or_default();
                for f in value.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                    if !fields.all().contains(&f) {
                        return Err(QueryError::InvalidSelection(format!(
                            "there is no field '{f}' to select (fields: {})",
                            fields.all().join(", ")
                        )));
                    }
                    chosen.push(f.to_owned());
                }
                q.fields = Some(chosen);
            }
            // Unknown parameters are ignored, as HTTP clients add their own.
            _ => {}
        }
    }
    if q.cursor.is_some() && !q.in_default_order() {
        return Err(QueryError::InvalidData(
            "cursor pages the default order only; drop sort and orderBy, or the cursor".into(),
        ));
    }
    Ok(q)
}

impl Query {
    /// Sorted by sourcedId, ascending: the order a cursor pages.
    pub fn in_default_order(&self) -> bool {
        matches!(self.sort.as_deref(), None | Some("sourcedId")) && !self.descending
    }
}

/// `field op 'value' [AND|OR field op 'value' ...]`, one kind of join per filter.
pub fn parse_filter(text: &str, fields: &dyn Fields) -> Result<Filter, QueryError> {
    let mut rest = text.trim();
    let mut predicates = Vec::new();
    let mut join: Option<Join> = None;
    loop {
        let (p, after) = predicate(rest)?;
        if !fields.scalar().contains(&p.field.as_str()) {
            let why = if fields.all().contains(&p.field.as_str()) {
                "is a list or an object and cannot be compared"
            } else {
                "is not a field of this resource"
            };
            return Err(QueryError::InvalidFilter(format!(
                "'{}' {why} (filterable: {})",
                p.field,
                fields.scalar().join(", ")
            )));
        }
        if p.field == "dateLastModified" {
            parse_time(&p.value)?;
        }
        predicates.push(p);
        rest = after.trim_start();
        if rest.is_empty() {
            break;
        }
        let (word, after) = rest.split_once(' ').unwrap_or((rest, ""));
        let this = match word {
            "AND" => Join::And,
            "OR" => Join::Or,
            other => {
                return Err(QueryError::InvalidFilter(format!(
                    "expected AND or OR between comparisons, found '{other}'"
                )));
            }
        };
        if join.is_some_and(|j| j != this) {
            return Err(QueryError::InvalidFilter(
                "a filter joins its comparisons with AND or with OR, not both".into(),
            ));
        }
        join = Some(this);
        rest = after.trim_start();
    }
    Ok(Filter {
        predicates,
        join: join.unwrap_or(Join::And),
    })
}

/// One `field op 'value'` at the start of `text`, and what follows it.
fn predicate(text: &str) -> Result<(Predicate, &str), QueryError> {
    let bad = || {
        QueryError::InvalidFilter(format!(
            "'{text}' is not field op 'value' (op: = != > >= < <= ~)"
        ))
    };
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_'))
        .ok_or_else(bad)?;
    let field = &text[..end];
    if field.is_empty() {
        return Err(bad());
    }
    let rest = text[end..].trim_start();
    let (op, rest) = [
        ("!=", Op::Ne),
        (">=", Op::Ge),
        ("<=", Op::Le),
        ("=", Op::Eq),
        (">", Op::Gt),
        ("<", Op::Lt),
        ("~", Op::Contains),
    ]
    .into_iter()
    .find_map(|(s, op)| rest.strip_prefix(s).map(|r| (op, r)))
    .ok_or_else(bad)?;
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('\'').ok_or_else(bad)?;
    let close = rest.find('\'').ok_or_else(bad)?;
    Ok((
        Predicate {
            field: field.to_owned(),
            op,
            value: rest[..close].to_owned(),
        },
        &rest[close + 1..],
    ))
}

/// A moment as OneRoster writes it (ISO 8601 with a zone; a date alone is its midnight UTC).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, QueryError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err(QueryError::InvalidFilter(format!(
        "dateLastModified takes a moment such as 2026-11-30T03:30:00Z, not '{text}'"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Users;
    impl Fields for Users {
        fn all(&self) -> &'static [&'static str] {
            &[
                "sourcedId",
                "status",
                "dateLastModified",
                "givenName",
                "roles",
            ]
        }
        fn scalar(&self) -> &'static [&'static str] {
            &["sourcedId", "status", "dateLastModified", "givenName"]
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_spec_grammar_parses_and_joins_one_way() {
        let f = parse_filter(
            "givenName~'an' AND dateLastModified>'2026-11-30T03:30:00Z'",
            &Users,
        )
        .expect("valid");
        assert_eq!(f.join, Join::And);
        assert_eq!(f.predicates.len(), 2);
        assert_eq!(f.predicates[0].op, Op::Contains);
        assert!(f.is_delta());
        let or = parse_filter("status='active' OR status!='active'", &Users).expect("valid");
        assert_eq!(or.join, Join::Or);
        assert_eq!(or.predicates[1].op, Op::Ne);
        assert!(parse_filter("status='a' AND status='b' OR status='c'", &Users).is_err());
    }

    #[test]
    fn unknown_or_uncomparable_fields_are_invalid_filter_fields() {
        let e = parse_filter("shoeSize='42'", &Users).expect_err("unknown");
        assert_eq!(e.code_minor(), "invalid_filter_field");
        let e = parse_filter("roles='teacher'", &Users).expect_err("a list");
        assert!(e.description().contains("cannot be compared"));
        let e = parse_filter("dateLastModified>'yesterday'", &Users).expect_err("a moment");
        assert_eq!(e.code_minor(), "invalid_filter_field");
        for broken in ["givenName", "givenName='x", "givenName ?? 'x'", "='x'"] {
            assert!(parse_filter(broken, &Users).is_err(), "{broken}");
        }
    }

    #[test]
    fn paging_is_clamped_and_selection_checked() {
        let q = parse(&pairs(&[("limit", "5000"), ("offset", "20")]), &Users).expect("ok");
        assert_eq!((q.limit, q.offset), (MAX_LIMIT, 20));
        assert_eq!(parse(&[], &Users).expect("ok").limit, DEFAULT_LIMIT);
        assert!(parse(&pairs(&[("limit", "0")]), &Users).is_err());
        let e = parse(&pairs(&[("fields", "givenName,shoeSize")]), &Users).expect_err("no");
        assert_eq!(e.code_minor(), "invalid_selection_field");
        let q = parse(
            &pairs(&[("sort", "givenName"), ("orderBy", "desc")]),
            &Users,
        )
        .expect("ok");
        assert_eq!((q.sort.as_deref(), q.descending), (Some("givenName"), true));
        assert!(parse(&pairs(&[("sort", "roles")]), &Users).is_err());
    }
}
