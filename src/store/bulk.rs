//! Multi-row inserts as each backend runs them best: on PostgreSQL as one JSON parameter
//! (issue 17: PostgreSQL's first load).
//!
//! A multi-row `INSERT ... VALUES` has a bind parameter per cell, so every row count is a
//! statement text of its own: a first load sent `person_key` in 240 shapes, `membership` in 224,
//! `change_entry` in 118. The connection's statement cache (24) cannot hold them, so PostgreSQL
//! parsed and planned each again, a plan for thousands of parameters each time. Here the rows go
//! as one JSON array and PostgreSQL reads them with the table's own row type
//! (`json_populate_recordset(NULL::table, $1)`): one statement text per table and column set,
//! whatever the row count, and a plan with one parameter. The values convert with the
//! columns' own input functions, as literals would.
//!
//! SQLite keeps `insert_many`: it prepares a statement in microseconds and has no JSON path
//! that would be cheaper than binding.

use sea_orm::sea_query::Value;
use sea_orm::{
    ActiveModelTrait, ActiveValue, ConnectionTrait, DbBackend, DbErr, EntityName, EntityTrait,
    FromQueryResult, IdenStatic, IntoActiveModel, Iterable, Statement,
};

/// Insert `rows` (one multi-row statement; all set the same columns) as the backend does it
/// best, reading nothing back: the ids nobody reads would be rows to send and decode.
pub(super) async fn insert_all<A, C>(db: &C, rows: Vec<A>) -> Result<(), DbErr>
where
    A: ActiveModelTrait + Send,
    C: ConnectionTrait,
{
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute_raw(insert(&rows, "")?).await?;
    } else {
        A::Entity::insert_many(rows)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// `INSERT INTO table (columns) SELECT columns FROM json_populate_recordset(...)` for `rows`
/// (all with the same columns set), followed by `tail` (e.g. a `RETURNING` clause).
pub(super) fn insert<A: ActiveModelTrait>(rows: &[A], tail: &str) -> Result<Statement, DbErr> {
    let columns = set_columns(rows)?;
    let json = rows_json(rows, &columns)?;
    let table = A::Entity::default().table_name().to_owned();
    let list = columns
        .iter()
        .map(|c| format!("\"{}\"", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "INSERT INTO \"{table}\" ({list}) SELECT {list} \
         FROM json_populate_recordset(NULL::\"{table}\", $1::json){tail}"
    );
    Ok(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        [Value::from(json)],
    ))
}

/// `rows` as a JSON array of objects, one member per column.
fn rows_json<A: ActiveModelTrait>(rows: &[A], columns: &[Column<A>]) -> Result<String, DbErr> {
    let mut json = String::with_capacity(rows.len() * 32 * columns.len());
    json.push('[');
    for (i, row) in rows.iter().enumerate() {
        json.push_str(if i == 0 { "{" } else { ",{" });
        for (j, c) in columns.iter().enumerate() {
            if j > 0 {
                json.push(',');
            }
            push_json_str(&mut json, c.as_str());
            json.push(':');
            match row.get(*c) {
                ActiveValue::Set(v) | ActiveValue::Unchanged(v) => push_value(&mut json, &v)?,
                ActiveValue::NotSet => return Err(mixed(c.as_str())),
            }
        }
        json.push('}');
    }
    json.push(']');
    Ok(json)
}

/// Insert `rows` as `insert_all` does, returning every inserted row whole.
pub(super) async fn insert_returning<A, C>(
    db: &C,
    rows: Vec<A>,
) -> Result<Vec<<A::Entity as EntityTrait>::Model>, DbErr>
where
    A: ActiveModelTrait + Send,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
    C: ConnectionTrait,
{
    if db.get_database_backend() != DbBackend::Postgres {
        return A::Entity::insert_many(rows).exec_with_returning(db).await;
    }
    let found = db.query_all_raw(insert(&rows, " RETURNING *")?).await?;
    found
        .iter()
        .map(|r| <A::Entity as EntityTrait>::Model::from_query_result(r, ""))
        .collect()
}

type Column<A> = <<A as ActiveModelTrait>::Entity as EntityTrait>::Column;

/// The columns the first row sets (a column left unset gets the table's default).
fn set_columns<A: ActiveModelTrait>(rows: &[A]) -> Result<Vec<Column<A>>, DbErr> {
    let Some(first) = rows.first() else {
        return Err(DbErr::Custom("a bulk insert of no rows".into()));
    };
    Ok(Column::<A>::iter()
        .filter(|c| !matches!(first.get(*c), ActiveValue::NotSet))
        .collect())
}

fn mixed(column: &str) -> DbErr {
    DbErr::Custom(format!(
        "a bulk insert's rows set different columns ({column} is unset in one of them)"
    ))
}

/// One cell as JSON text PostgreSQL's input function for the column reads back exactly.
fn push_value(out: &mut String, v: &Value) -> Result<(), DbErr> {
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = match v {
        Value::Bool(Some(b)) => write!(out, "{b}"),
        Value::TinyInt(Some(n)) => write!(out, "{n}"),
        Value::SmallInt(Some(n)) => write!(out, "{n}"),
        Value::Int(Some(n)) => write!(out, "{n}"),
        Value::BigInt(Some(n)) => write!(out, "{n}"),
        Value::String(Some(s)) => {
            push_json_str(out, s);
            Ok(())
        }
        Value::ChronoDateTimeUtc(Some(t)) => {
            // Cut to the microsecond as a bound value is (PostgreSQL would round the text).
            let text = t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
            push_json_str(out, &text);
            Ok(())
        }
        Value::ChronoDate(Some(d)) => write!(out, "\"{}\"", d.format("%Y-%m-%d")),
        other if *other == other.as_null() => write!(out, "null"),
        other => {
            return Err(DbErr::Custom(format!(
                "a bulk insert cannot send a value of this type as JSON: {other:?}"
            )));
        }
    };
    Ok(())
}

/// `s` as a JSON string. PostgreSQL's text cannot hold U+0000 at all; such a value fails here
/// as it would as a bind parameter, and the school's run stores nothing.
fn push_json_str(out: &mut String, s: &str) {
    use std::fmt::Write;
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::entities::change_entry;
    use sea_orm::ActiveValue::Set;

    fn entry(field: Option<&str>, new: &str) -> change_entry::ActiveModel {
        change_entry::ActiveModel {
            run_id: Set(Some(7)),
            school_id: Set("99XO00".into()),
            entity: Set("pupil".into()),
            entity_id: Set(Some(-5_531_388_470_518_094_443)),
            person_id: Set(None),
            operation: Set("update".into()),
            field: Set(field.map(str::to_owned)),
            old_value: Set(None),
            new_value: Set(Some(new.into())),
            source: Set("las".into()),
            rule: Set("r".into()),
            at: Set(crate::store::Stamp(1_796_183_253_786_338)),
            ..Default::default()
        }
    }

    #[test]
    fn one_statement_text_for_any_number_of_rows() {
        let one = insert(&[entry(None, "a")], "").expect("a statement");
        let three = insert(&[entry(None, "a"), entry(None, "b"), entry(None, "c")], "")
            .expect("a statement");
        assert_eq!(one.sql, three.sql);
        assert!(
            !one.sql.contains("\"id\""),
            "the unset id is left to the table"
        );
        assert!(
            one.sql
                .contains("json_populate_recordset(NULL::\"change_entry\", $1::json)")
        );
    }

    #[test]
    fn the_rows_are_valid_json_with_nulls_numbers_and_escaped_text() {
        let odd = "Jan \"de\" \\ Vries\n\t\u{1}é";
        let s =
            insert(&[entry(Some("family_name"), odd), entry(None, "x")], "").expect("a statement");
        let json = match s.values.as_ref().map(|v| &v.0[..]) {
            Some([Value::String(Some(json))]) => json.clone(),
            other => unreachable!("one text parameter, not {other:?}"),
        };
        let rows: serde_json::Value = serde_json::from_str(&json).expect("a statement");
        assert_eq!(rows[0]["new_value"], odd);
        assert_eq!(rows[0]["field"], "family_name");
        assert_eq!(rows[1]["field"], serde_json::Value::Null);
        assert_eq!(rows[0]["entity_id"], -5_531_388_470_518_094_443i64);
        assert_eq!(rows[0]["at"], 1_796_183_253_786_338i64);
        let late: chrono::DateTime<chrono::Utc> =
            "2026-12-02T03:47:33.9999999Z".parse().expect("a moment");
        let mut text = String::new();
        push_value(&mut text, &Value::from(late)).expect("a moment as JSON");
        assert!(
            text.contains("03:47:33.999999Z"),
            "cut, not rounded up: {text}"
        );
    }

    #[test]
    fn rows_that_set_different_columns_are_refused() {
        let mut other = entry(None, "b");
        other.rule = sea_orm::ActiveValue::NotSet;
        assert!(insert(&[entry(None, "a"), other], "").is_err());
    }
}
