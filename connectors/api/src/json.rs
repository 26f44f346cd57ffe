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
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| crate::ConnectorError::Malformed {
            detail: format!("{what} is not the JSON expected: {e}"),
        })?;
    if let Some(path) = control_in(&value, "") {
        return Err(crate::ConnectorError::Malformed {
            detail: format!("{what} holds a control character in a text ({path})"),
        });
    }
    serde_json::from_value(value).map_err(|e| crate::ConnectorError::Malformed {
        detail: format!("{what} is not the JSON expected: {e}"),
    })
}

/// Where in `v` a string (or a key) holds a control character, as a path like `leerlingen[3].lasKey`.
fn control_in(v: &serde_json::Value, at: &str) -> Option<String> {
    use serde_json::Value;
    let bad = |s: &str| s.chars().any(char::is_control);
    match v {
        Value::String(s) if bad(s) => Some(if at.is_empty() {
            "the answer".into()
        } else {
            at.to_owned()
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| control_in(item, &format!("{at}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, item)| {
            let here = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            if bad(k) {
                return Some(here);
            }
            control_in(item, &here)
        }),
        _ => None,
    }
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
