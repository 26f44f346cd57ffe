//! JSON as sources really send it: an explicit `null` where a list, a flag or a text is
//! optional means the same as leaving the field out. A value of the wrong type is still an
//! error (a string where a number must be is malformed, not absent).

use serde::{Deserialize, Deserializer};

/// `#[serde(default, deserialize_with = "connector_api::json::null_as_default")]`: absent and
/// `null` both give the type's default.
pub fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// Read a JSON answer into `T`, refusing one that carries a control character in any string
/// (a name, a key, a message): no legitimate roster text has one, and a hostile source could
/// steer an operator's terminal with it. `what` names the answer in the error.
pub fn from_slice_clean<T: serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, crate::ConnectorError> {
    let malformed = |e: serde_json::Error| crate::ConnectorError::Malformed {
        detail: format!("{what} is not the JSON expected: {e}"),
    };
    // Nearly every answer is plainly clean: read it straight into `T`. Building a tree of
    // values first, to say where a control character is, cost more than the reading.
    if !may_hold_control(body) {
        return serde_json::from_slice(body).map_err(malformed);
    }
    let value: serde_json::Value = serde_json::from_slice(body).map_err(malformed)?;
    if let Some(path) = control_at(&value) {
        return Err(crate::ConnectorError::Malformed {
            detail: format!(
                "{what} holds a control character in a text ({})",
                shown(&path)
            ),
        });
    }
    serde_json::from_value(value).map_err(malformed)
}

/// Whether a JSON text could hold a string with a control character. JSON allows none of
/// U+0000-U+001F raw in a string (the parser refuses them), so one comes only through an
/// escape (`\n`, `\u001b`), as DEL, or as a C1 character (U+0080-U+009F: 0xC2 and a byte
/// 0x80-0x9F in UTF-8). Any backslash at all sends the answer the careful way.
fn may_hold_control(body: &[u8]) -> bool {
    body.iter().any(|&b| b == b'\\' || b == 0x7f)
        || body
            .windows(2)
            .any(|w| w[0] == 0xC2 && (0x80..=0x9F).contains(&w[1]))
}

/// One step on the way to a value: an array's index or an object's key.
enum Step<'a> {
    Index(usize),
    Key(&'a str),
}

/// The way to the first string (or key) in `v` that holds a control character, innermost
/// step first; made only when one is found.
fn control_at(v: &serde_json::Value) -> Option<Vec<Step<'_>>> {
    use serde_json::Value;
    let bad = |s: &str| s.chars().any(char::is_control);
    match v {
        Value::String(s) if bad(s) => Some(Vec::new()),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let mut path = control_at(item)?;
            path.push(Step::Index(i));
            Some(path)
        }),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            let mut path = if bad(k) {
                Vec::new()
            } else {
                control_at(item)?
            };
            path.push(Step::Key(k));
            Some(path)
        }),
        _ => None,
    }
}

/// A way as an operator reads it: `leerlingen[3].lasKey`, or "the answer" for the top. A
/// key's own control characters show as `?`: the message must not carry what it reports.
fn shown(path: &[Step]) -> String {
    if path.is_empty() {
        return "the answer".into();
    }
    let mut out = String::new();
    for step in path.iter().rev() {
        match step {
            Step::Index(i) => out.push_str(&format!("[{i}]")),
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.extend(k.chars().map(|c| if c.is_control() { '?' } else { c }));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Probe {
        #[serde(default, deserialize_with = "null_as_default")]
        list: Vec<String>,
        #[serde(default, deserialize_with = "null_as_default")]
        flag: bool,
    }

    #[test]
    fn a_control_character_anywhere_refuses_the_answer_naming_where() {
        let err = from_slice_clean::<serde_json::Value>(
            br#"{"leerlingen":[{"lasKey":"L1"},{"lasKey":"L2\u001b[2J"}]}"#,
            "the overview",
        )
        .expect_err("refused");
        let shown = err.to_string();
        assert!(shown.contains("leerlingen[1].lasKey"), "{shown}");
        assert!(!shown.chars().any(char::is_control), "{shown:?}");
        let fine: serde_json::Value =
            from_slice_clean(br#"{"naam":"Groep 8a \u00e9"}"#, "groups").expect("clean");
        assert_eq!(fine["naam"], "Groep 8a é");
    }

    #[test]
    fn only_escapes_del_and_c1_can_carry_a_control_character() {
        assert!(!may_hold_control(
            r#"{"naam":"Çelik, groep 8a"}"#.as_bytes()
        ));
        assert!(may_hold_control(br#"{"naam":"a\nb"}"#));
        assert!(may_hold_control("{\"naam\":\"a\u{7f}\"}".as_bytes()));
        assert!(may_hold_control("{\"naam\":\"a\u{85}\"}".as_bytes()));
        // Caught on the careful way, wherever it is, keys included.
        for (body, path) in [
            ("{\"a\":[\"x\",\"y\u{85}\"]}", "a[1]"),
            ("{\"a\":{\"b\\u0007\":1}}", "a.b?"),
            ("\"\\t\"", "the answer"),
        ] {
            let err = from_slice_clean::<serde_json::Value>(body.as_bytes(), "x").expect_err(body);
            let shown = err.to_string();
            assert!(shown.contains(path), "{shown}");
            assert!(!shown.chars().any(char::is_control), "{shown:?}");
        }
        // A raw control character is not JSON at all.
        assert!(from_slice_clean::<serde_json::Value>(b"\"a\x07\"", "x").is_err());
        // A backslash that is no control character still reads.
        let v: serde_json::Value = from_slice_clean(br#"{"naam":"a\/b \"c\""}"#, "x").expect("ok");
        assert_eq!(v["naam"], "a/b \"c\"");
    }

    #[test]
    fn null_and_absent_are_the_default_and_a_wrong_type_is_not() {
        let empty = Probe {
            list: vec![],
            flag: false,
        };
        let null: Probe = serde_json::from_str(r#"{"list": null, "flag": null}"#).expect("null");
        assert_eq!(null, empty);
        let absent: Probe = serde_json::from_str("{}").expect("absent");
        assert_eq!(absent, empty);
        assert!(serde_json::from_str::<Probe>(r#"{"list": "a"}"#).is_err());
        assert!(serde_json::from_str::<Probe>(r#"{"flag": 1}"#).is_err());
    }
}
