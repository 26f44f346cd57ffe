//! Basispoort REST v2 JSON, as the broker sends it. Every field is optional: the broker has
//! no published schema, so absence is data, and unknown fields are ignored.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetaResult {
    pub mutation_timestamp: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Details {
    pub naam: Option<String>,
    pub actief: Option<bool>,
    pub gefuseerd_naar: Option<i64>,
    pub meta_result: Option<MetaResult>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Groep {
    pub las_key: Option<String>,
    pub naam: Option<String>,
    pub jaargroep: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Persoonsgegevens {
    pub achternaam: Option<String>,
    pub voornaam: Option<String>,
    pub voorvoegsel: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Leerling {
    pub id: Option<i64>,
    pub eckid: Option<String>,
    pub las_key: Option<String>,
    pub persoonsgegevens: Option<Persoonsgegevens>,
    pub jaargroep: Option<String>,
    pub groep: Option<String>,
    #[serde(default, deserialize_with = "connector_api::json::null_as_default")]
    pub subgroepen: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Medewerker {
    pub id: Option<i64>,
    pub eckid: Option<String>,
    pub las_key: Option<String>,
    pub persoonsgegevens: Option<Persoonsgegevens>,
    pub emailadres: Option<String>,
    pub einddatum: Option<String>,
    #[serde(default, deserialize_with = "connector_api::json::null_as_default")]
    pub rollen: Vec<String>,
    #[serde(default, deserialize_with = "connector_api::json::null_as_default")]
    pub groepen: Vec<String>,
    #[serde(default, deserialize_with = "connector_api::json::null_as_default")]
    pub subgroepen: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    #[serde(default, deserialize_with = "connector_api::json::null_as_default")]
    pub groepen: Vec<Groep>,
    #[serde(default, deserialize_with = "connector_api::json::null_as_default")]
    pub subgroepen: Vec<Groep>,
    #[serde(default, deserialize_with = "connector_api::json::null_as_default")]
    pub leerlingen: Vec<Leerling>,
    #[serde(default, deserialize_with = "connector_api::json::null_as_default")]
    pub medewerkers: Vec<Medewerker>,
    pub actief: Option<bool>,
    pub gefuseerd_naar: Option<i64>,
    pub meta_result: Option<MetaResult>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    pub has_synchronization_permission: bool,
}

/// The broker's error body, when it sends JSON.
#[derive(Debug, Default, Deserialize)]
pub struct ErrorBody {
    pub code: Option<String>,
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    //! `null` for any optional field is the same as leaving it out; a wrong type is not.
    use super::*;

    fn parse<T: serde::de::DeserializeOwned>(json: &str) -> T {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    #[test]
    fn every_wire_type_takes_null_for_every_optional_field() {
        let d: Details = parse(
            r#"{"naam":null,"actief":null,"gefuseerdNaar":null,"metaResult":{"mutationTimestamp":null}}"#,
        );
        assert!(d.naam.is_none() && d.actief.is_none() && d.gefuseerd_naar.is_none());
        let g: Groep = parse(r#"{"lasKey":null,"naam":null,"jaargroep":null}"#);
        assert!(g.las_key.is_none());
        let p: Persoonsgegevens =
            parse(r#"{"achternaam":null,"voornaam":null,"voorvoegsel":null}"#);
        assert!(p.achternaam.is_none());
        let l: Leerling = parse(
            r#"{"id":null,"eckid":null,"lasKey":"L1","persoonsgegevens":null,"jaargroep":null,
                "groep":null,"subgroepen":null}"#,
        );
        assert!(l.subgroepen.is_empty() && l.persoonsgegevens.is_none());
        let m: Medewerker = parse(
            r#"{"id":7,"eckid":null,"lasKey":null,"persoonsgegevens":null,"emailadres":null,
                "einddatum":null,"rollen":null,"groepen":null,"subgroepen":null}"#,
        );
        assert!(m.rollen.is_empty() && m.groepen.is_empty() && m.subgroepen.is_empty());
        let o: Overview = parse(
            r#"{"groepen":null,"subgroepen":null,"leerlingen":null,"medewerkers":null,
                "actief":null,"gefuseerdNaar":null,"metaResult":null}"#,
        );
        assert!(o.groepen.is_empty() && o.leerlingen.is_empty() && o.medewerkers.is_empty());
        let e: ErrorBody = parse(r#"{"code":null,"message":null}"#);
        assert!(e.code.is_none() && e.message.is_none());
    }

    #[test]
    fn a_wrong_type_or_a_missing_required_value_is_still_refused() {
        assert!(serde_json::from_str::<Leerling>(r#"{"id":"seven"}"#).is_err());
        assert!(serde_json::from_str::<Medewerker>(r#"{"rollen":"Leerkracht"}"#).is_err());
        assert!(serde_json::from_str::<Overview>(r#"{"leerlingen":{}}"#).is_err());
        assert!(
            serde_json::from_str::<Permission>(r#"{"hasSynchronizationPermission":null}"#).is_err()
        );
        assert!(serde_json::from_str::<Overview>(r#"{"groepen":[{"lasKey":"G1""#).is_err());
    }
}
