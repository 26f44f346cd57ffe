//! The simulated portal's HTTP surface: Zermelo's `/api/v3/` endpoints under a per-school
//! prefix (`/{school}/api/v3/...`, standing in for `https://{portal}.zportal.nl/api/v3/`),
//! the `{"response": {...}}` envelope, Bearer tokens with an expiry, `fields=` selection and
//! fields the school's partner settings do not grant.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use connector_api::SchoolId;
use serde_json::{Value, json};

use crate::portal::PortalView;
use crate::school::SchoolKind;
use crate::server::SharedWorld;

pub fn router(world: SharedWorld) -> Router {
    Router::new()
        .route("/{school}/api/v3/{endpoint}", get(endpoint))
        .route("/{school}/api/v3/tokens/~current", get(current_token))
        .with_state(world)
}

fn envelope(status: StatusCode, message: &str, data: Vec<Value>) -> Response {
    let rows = data.len();
    (
        status,
        Json(json!({ "response": {
            "status": status.as_u16(),
            "message": message,
            "details": "",
            "eventId": 0,
            "startRow": 0,
            "endRow": rows,
            "totalRows": rows,
            "data": data,
        }})),
    )
        .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    envelope(status, message, Vec::new())
}

/// `tokens/~current`: the token itself, with its expiry (Unix seconds).
async fn current_token(
    State(world): State<SharedWorld>,
    Path(school): Path<String>,
    query: Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    endpoint(
        State(world),
        Path((school, "tokens".to_owned())),
        query,
        headers,
    )
    .await
}

async fn endpoint(
    State(world): State<SharedWorld>,
    Path((school, endpoint)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Ok(id) = school.parse::<SchoolId>() else {
        return error(StatusCode::NOT_FOUND, "Unknown portal");
    };
    let mut w = world.lock().unwrap_or_else(|p| p.into_inner());
    let year = w.school_year().start_year();
    let Some(index) = w
        .schools
        .iter()
        .filter(|(_, s)| s.school.kind == SchoolKind::Secondary)
        .position(|(k, _)| *k == id)
    else {
        return error(StatusCode::NOT_FOUND, "Unknown portal");
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
        .or_else(|| query.get("access_token").cloned());
    match (w.portal.tokens.get(&id), given) {
        (Some(t), Some(g)) if t.token == g && t.expires > Utc::now() => {}
        (Some(t), Some(g)) if t.token == g => {
            return error(StatusCode::UNAUTHORIZED, "Token expired");
        }
        _ => return error(StatusCode::UNAUTHORIZED, "Invalid token"),
    }
    *w.portal.requests.entry(id.clone()).or_default() += 1;
    let fields: Option<Vec<String>> = query
        .get("fields")
        .map(|f| f.split(',').map(|s| s.trim().to_owned()).collect());
    if let Some(f) = &fields
        && let Some(hidden) = f
            .iter()
            .find(|f| w.portal.hidden.contains(&(endpoint.clone(), (*f).clone())))
    {
        return error(
            StatusCode::FORBIDDEN,
            &format!("Access Denied: no access to field '{hidden}' of {endpoint}"),
        );
    }
    let Some(state) = w.schools.get(&id) else {
        return error(StatusCode::NOT_FOUND, "Unknown portal");
    };
    let view = PortalView::new(&state.school, index);
    let number = |k: &str| query.get(k).and_then(|v| v.parse::<i64>().ok());
    let wrong_year =
        number("schoolInSchoolYear").is_some_and(|sisy| sisy != view.school_in_school_year());
    let expires = w.portal.tokens.get(&id).map(|t| t.expires.timestamp());
    let data = match endpoint.as_str() {
        "tokens" => vec![json!({ "id": 1, "user": "rostersync", "expires": expires })],
        "schoolsinschoolyears" => {
            if number("year").is_some_and(|y| y != i64::from(year)) {
                Vec::new()
            } else {
                view.schools_in_school_years(year)
            }
        }
        _ if wrong_year => Vec::new(),
        "departmentsofbranches" => view.departments(),
        "groupindepartments" => view.groups(),
        "studentsindepartments" => view.students(number("departmentOfBranch")),
        "employees" => view.employees(),
        "users" => view.users(),
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                &format!("Unknown endpoint {endpoint}"),
            );
        }
    };
    let data = match &fields {
        None => data,
        Some(f) => data
            .into_iter()
            .map(|mut v| {
                if let Some(o) = v.as_object_mut() {
                    o.retain(|k, _| f.contains(k));
                }
                v
            })
            .collect(),
    };
    envelope(StatusCode::OK, "", data)
}
