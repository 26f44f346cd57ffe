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
