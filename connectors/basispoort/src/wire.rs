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
    #[serde(default)]
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
    #[serde(default)]
    pub rollen: Vec<String>,
    #[serde(default)]
    pub groepen: Vec<String>,
    #[serde(default)]
    pub subgroepen: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    #[serde(default)]
    pub groepen: Vec<Groep>,
    #[serde(default)]
    pub subgroepen: Vec<Groep>,
    #[serde(default)]
    pub leerlingen: Vec<Leerling>,
    #[serde(default)]
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
