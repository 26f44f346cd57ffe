//! Zermelo v3 JSON, as the portal sends it: the `{"response": {...}}` envelope and the
//! fields rostersync asks for. Every field is optional: a partner token may not be granted
//! one, and then it is absent.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Envelope<T> {
    pub response: Body<T>,
}

#[derive(Debug, Deserialize)]
pub struct Body<T> {
    pub status: Option<u16>,
    #[serde(default)]
    pub message: String,
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
}

/// The error body: an envelope whose data does not matter.
#[derive(Debug, Deserialize)]
pub struct ErrorEnvelope {
    pub response: ErrorBody,
}

#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub details: String,
}

#[derive(Debug, Deserialize)]
pub struct Token {
    /// Unix seconds.
    pub expires: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SchoolInSchoolYear {
    pub id: i64,
    pub school_name: Option<String>,
    #[serde(default)]
    pub archived: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Department {
    pub id: i64,
    pub code: Option<String>,
    #[serde(default)]
    pub team_leader_user_codes: Vec<String>,
    #[serde(default)]
    pub dean_user_codes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub id: i64,
    pub department_of_branch: Option<i64>,
    pub name: Option<String>,
    pub extended_name: Option<String>,
    pub year_of_education: Option<u32>,
    #[serde(default)]
    pub is_main_group: bool,
    #[serde(default)]
    pub mentor_user_codes: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StudentInDepartment {
    pub student: Option<String>,
    pub first_name: Option<String>,
    pub prefix: Option<String>,
    pub last_name: Option<String>,
    pub main_group: Option<i64>,
    #[serde(default)]
    pub group_in_departments: Vec<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Employee {
    pub user_code: Option<String>,
    pub first_name: Option<String>,
    pub prefix: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct User {
    pub code: Option<String>,
    #[serde(rename = "somUUID")]
    pub som_uuid: Option<String>,
    #[serde(rename = "magisterUUID")]
    pub magister_uuid: Option<String>,
    pub is_school_leader: bool,
    pub is_application_manager: bool,
}
