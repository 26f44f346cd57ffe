//! Zermelo v3 JSON, as the portal sends it: the `{"response": {...}}` envelope and the
//! fields rostersync asks for. Every field is optional: a partner token may not be granted
//! one, and then it is absent.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Envelope<T> {
    pub response: Body<T>,
}

#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
pub struct Body<T> {
    pub status: Option<u16>,
    #[serde(default, deserialize_with = "connector_api::json::null_as_default")]
    pub message: String,
    #[serde(default, deserialize_with = "connector_api::json::null_as_default")]
    pub data: Vec<T>,
}

/// The error body: an envelope whose data does not matter.
#[derive(Debug, Deserialize)]
pub struct ErrorEnvelope {
    pub response: ErrorBody,
}

#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    #[serde(default, deserialize_with = "connector_api::json::null_as_default")]
    pub message: String,
    #[serde(default, deserialize_with = "connector_api::json::null_as_default")]
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
    #[serde(default, deserialize_with = "connector_api::json::null_as_default")]
    pub archived: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Department {
    pub id: i64,
    pub code: Option<String>,
    #[serde(default, deserialize_with = "connector_api::json::null_as_default")]
    pub team_leader_user_codes: Vec<String>,
    #[serde(default, deserialize_with = "connector_api::json::null_as_default")]
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
    #[serde(default, deserialize_with = "connector_api::json::null_as_default")]
    pub is_main_group: bool,
    #[serde(default, deserialize_with = "connector_api::json::null_as_default")]
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
    #[serde(default, deserialize_with = "connector_api::json::null_as_default")]
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
    #[serde(deserialize_with = "connector_api::json::null_as_default")]
    pub is_school_leader: bool,
    #[serde(deserialize_with = "connector_api::json::null_as_default")]
    pub is_application_manager: bool,
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
        let e: Envelope<Employee> =
            parse(r#"{"response":{"status":null,"message":null,"data":null}}"#);
        assert!(e.response.data.is_empty() && e.response.message.is_empty());
        let err: ErrorEnvelope = parse(r#"{"response":{"message":null,"details":null}}"#);
        assert!(err.response.details.is_empty());
        let t: Token = parse(r#"{"expires":null}"#);
        assert!(t.expires.is_none());
        let y: SchoolInSchoolYear = parse(r#"{"id":1,"schoolName":null,"archived":null}"#);
        assert!(!y.archived);
        let d: Department =
            parse(r#"{"id":2,"code":null,"teamLeaderUserCodes":null,"deanUserCodes":null}"#);
        assert!(d.team_leader_user_codes.is_empty() && d.dean_user_codes.is_empty());
        let g: Group = parse(
            r#"{"id":3,"departmentOfBranch":null,"name":null,"extendedName":null,
                "yearOfEducation":null,"isMainGroup":null,"mentorUserCodes":null}"#,
        );
        assert!(!g.is_main_group && g.mentor_user_codes.is_empty());
        let s: StudentInDepartment = parse(
            r#"{"student":null,"firstName":null,"prefix":null,"lastName":null,
                "mainGroup":null,"groupInDepartments":null}"#,
        );
        assert!(s.group_in_departments.is_empty());
        let emp: Employee = parse(
            r#"{"userCode":null,"firstName":null,"prefix":null,"lastName":null,"email":null}"#,
        );
        assert!(emp.user_code.is_none());
        let u: User = parse(
            r#"{"code":null,"somUUID":null,"magisterUUID":null,"isSchoolLeader":null,
                "isApplicationManager":null}"#,
        );
        assert!(!u.is_school_leader && !u.is_application_manager);
    }

    #[test]
    fn a_wrong_type_or_a_missing_required_value_is_still_refused() {
        assert!(serde_json::from_str::<Department>(r#"{"id":"two"}"#).is_err());
        assert!(serde_json::from_str::<Department>(r#"{"id":null}"#).is_err());
        assert!(serde_json::from_str::<Group>(r#"{"id":3,"mentorUserCodes":"abc"}"#).is_err());
        assert!(serde_json::from_str::<User>(r#"{"isSchoolLeader":"yes"}"#).is_err());
        assert!(serde_json::from_str::<Envelope<Employee>>(r#"{"response":{"data":[{"#).is_err());
    }
}
