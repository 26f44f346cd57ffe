//! `rostersync check-config [--online]`: validate the configuration and read every secret;
//! online, also ask every LAS once for every school and say what happened.

use std::collections::HashMap;

use chrono::Utc;
use connector_api::{Connector, FetchOutcome, FetchRequest, SchoolId, SchoolYear};
use secrecy::SecretString;

use super::{Failure, table};
use crate::settings::Settings;
use crate::sources;
use crate::store::schools::{self, LAS_KEY};
use crate::store::sealing::{KeyUse, MasterKey};
use crate::store::{OpenMode, Store};

pub async fn run(settings: &Settings, online: bool) -> Result<(), Failure> {
    let mut problems = Vec::new();
    for (key, reference) in settings.secret_refs() {
        // CA certificates are public; everything else must be readable by its owner only.
        let read = if key.ends_with("ca_certificate") {
            reference.load_public_bytes().map(drop)
        } else {
            reference.load_bytes().map(drop)
        };
        if let Err(e) = read {
            problems.push(format!("{key}: {e}"));
        }
    }
    let text = toml::to_string_pretty(settings)
        .map_err(|e| Failure::failed(anyhow::anyhow!("cannot print the configuration: {e}")))?;
    if !online {
        print!("{text}");
    }
    if !problems.is_empty() {
        return Err(Failure::usage(anyhow::anyhow!(
            "{} secret(s) cannot be read: {}",
            problems.len(),
            problems.join("; ")
        )));
    }
    eprintln!(
        "Configuration is valid: {} LAS connection(s), {} school(s) in the file, {}.",
        settings.las.len(),
        settings.school.len(),
        if settings.broker.is_some() {
            "a broker"
        } else {
            "no broker"
        }
    );
    let now = chrono::Utc::now();
    for cert in crate::sources::client_certificates(settings) {
        match (cert.problem(now), &cert.valid_until) {
            (Some(problem), _) => eprintln!("WARNING: {problem}."),
            (None, Ok(until)) => eprintln!(
                "{}'s client certificate is valid until {}.",
                cert.connection,
                until.format("%Y-%m-%d")
            ),
            (None, Err(_)) => {}
        }
    }
    if online {
        check_online(settings).await
    } else {
        Ok(())
    }
}

/// One school to try: its LAS and where its key comes from, and its broker id.
struct Target {
    school: SchoolId,
    las: Option<String>,
    key: Result<SecretString, String>,
    broker_id: Option<i64>,
}

async fn targets(settings: &Settings) -> Vec<Target> {
    let mut out: Vec<Target> = settings
        .school
        .iter()
        .map(|s| {
            let key = s
                .key
                .as_ref()
                .map(|k| k.load_string().map_err(|e| e.to_string()))
                .unwrap_or_else(|| Err("no key configured".into()));
            Target {
                school: s.id.clone(),
                las: s.las.clone(),
                key,
                broker_id: s.broker_id,
            }
        })
        .collect();
    // Schools added with `school add` live in the store, their keys sealed there.
    let Ok(store) = Store::open(&settings.store, OpenMode::Existing).await else {
        return out;
    };
    let Ok(links) = schools::list(&store, settings).await else {
        return out;
    };
    // Read only: a check never creates a key file.
    let master = MasterKey::load(settings, &store, KeyUse::Read);
    for link in links.into_iter().filter(|l| l.origin == "store") {
        let Ok(id) = link.id.parse::<SchoolId>() else {
            continue;
        };
        let key = match (&master, &link.las) {
            (_, None) => Err("no LAS".into()),
            (Ok(m), Some(_)) => match schools::load_secret(&store, m, &id, LAS_KEY).await {
                Ok(Some(k)) => Ok(k),
                Ok(None) => Err("no key stored".into()),
                Err(e) => Err(e.to_string()),
            },
            (Err(e), Some(_)) => Err(e.to_string()),
        };
        out.push(Target {
            school: id,
            las: link.las,
            key,
            broker_id: link.broker_id,
        });
    }
    out
}

async fn check_online(settings: &Settings) -> Result<(), Failure> {
    let mut connectors = HashMap::new();
    for las in &settings.las {
        connectors.insert(las.name().to_owned(), sources::las_connector(las));
    }
    let year = SchoolYear::containing(Utc::now().date_naive());
    let mut t = table::Table::new(&["SCHOOL", "SOURCE", "RESULT", "DETAIL"]);
    let mut failed = 0;
    let targets = targets(settings).await;
    for target in &targets {
        let Some(las) = target.las.clone() else {
            continue;
        };
        let (result, detail) = match (connectors.get(&las), &target.key) {
            (None, _) => ("config".to_owned(), format!("no [[las]] named '{las}'")),
            (Some(Err(e)), _) => ("config".to_owned(), e.to_string()),
            (_, Err(e)) => ("no key".to_owned(), e.clone()),
            (Some(Ok(c)), Ok(key)) => {
                let req = FetchRequest {
                    school: target.school.clone(),
                    school_year: year,
                    credential: Some(key.clone()),
                    remote_id: None,
                    last_received: None,
                    last_marker: None,
                };
                describe(c.fetch(&req).await)
            }
        };
        if result != "ok" {
            failed += 1;
        }
        t.row(vec![target.school.to_string(), las, result, detail]);
    }
    if let Some(b) = &settings.broker {
        failed += check_broker(b, &targets, &mut t).await;
    }
    for s in &settings.school {
        let Some(z) = &s.zermelo else { continue };
        let (result, detail) = match (
            sources::portal_connector(&s.id.to_string(), z),
            z.token.load_string(),
        ) {
            (Err(e), _) => ("config".to_owned(), e.to_string()),
            (_, Err(e)) => ("no token".to_owned(), e.to_string()),
            (Ok(c), Ok(token)) => describe(
                c.fetch(&FetchRequest {
                    school: s.id.clone(),
                    school_year: year,
                    credential: Some(token),
                    remote_id: None,
                    last_received: None,
                    last_marker: None,
                })
                .await,
            ),
        };
        if result != "ok" {
            failed += 1;
        }
        t.row(vec![s.id.to_string(), "zermelo".into(), result, detail]);
    }
    print!("{}", t.render());
    if failed > 0 {
        return Err(Failure::failed(anyhow::anyhow!(
            "{failed} school(s) could not be fetched; see the table above"
        )));
    }
    Ok(())
}

/// The broker: our certificate once (the institution list), then each school's permission.
/// Returns how many rows failed.
async fn check_broker(
    broker: &crate::settings::BrokerSettings,
    targets: &[Target],
    t: &mut table::Table,
) -> usize {
    let row = |t: &mut table::Table, school: &str, result: &str, detail: String| {
        t.row(vec![school.into(), "broker".into(), result.into(), detail]);
    };
    let connector = match sources::broker_connector(broker) {
        Ok(c) => c,
        Err(e) => {
            row(t, "(all)", "config", e.to_string());
            return 1;
        }
    };
    match connector.institutions().await {
        Ok(list) => row(
            t,
            "(all)",
            "ok",
            format!("certificate accepted; {} institutions visible", list.len()),
        ),
        Err(e) => {
            row(t, "(all)", e.class(), format!("{e}; {}", e.advice()));
            return 1;
        }
    }
    let mut failed = 0;
    for target in targets {
        let Some(id) = target.broker_id else { continue };
        let school = target.school.to_string();
        match connector.has_permission(id, false).await {
            Ok(true) => row(
                t,
                &school,
                "ok",
                format!("institution {id}: sync permission granted"),
            ),
            Ok(false) => {
                failed += 1;
                row(
                    t,
                    &school,
                    "awaiting_consent",
                    format!("institution {id}: no sync permission; ask the school to grant it"),
                );
            }
            Err(e) => {
                failed += 1;
                row(t, &school, e.class(), format!("{e}; {}", e.advice()));
            }
        }
    }
    failed
}

/// One fetch's result as (RESULT, DETAIL).
fn describe(fetched: Result<FetchOutcome, connector_api::ConnectorError>) -> (String, String) {
    match fetched {
        Ok(FetchOutcome::Snapshot(s)) => (
            "ok".to_owned(),
            format!(
                "{} pupils, {} groups, {} staff{}",
                s.pupils.len(),
                s.groups.len(),
                s.staff.len(),
                if s.rejects.is_empty() {
                    String::new()
                } else {
                    format!(", {} records rejected", s.rejects.len())
                }
            ),
        ),
        Ok(FetchOutcome::Unchanged) => ("ok".to_owned(), "unchanged".to_owned()),
        Ok(FetchOutcome::NoData { detail }) => ("no data".to_owned(), detail),
        Err(e) => (e.class().to_owned(), format!("{e}; {}", e.advice())),
    }
}
