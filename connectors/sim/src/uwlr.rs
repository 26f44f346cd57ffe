//! The simulated LAS's UWLR side: read a SOAP request, check it the way a real LAS does
//! (message, supplier, key for this school, version), and answer in the 2.2/2.3 shape.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use connector_api::SchoolId;
use quick_xml::escape::escape;
use quick_xml::events::Event;
use quick_xml::reader::NsReader;

use crate::school::SimSchool;
use crate::world::World;

pub const NS_DATA: &str = "http://www.edustandaard.nl/leerresultaten/2/leerlinggegevens";
pub const NS_SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    AllInOne,
    Structure,
    Pupils,
    Teachers,
}

impl Operation {
    fn answer(self) -> (&'static str, &'static str) {
        match self {
            Operation::AllInOne => ("leerlinggegevens_antwoord", "leerlinggegevens"),
            Operation::Structure => ("structuur_antwoord", "leerlinggegevens-structuur"),
            Operation::Pupils => ("leerlingen_antwoord", "leerlinggegevens-leerlingen"),
            Operation::Teachers => ("leerkrachten_antwoord", "leerlinggegevens-leerkrachten"),
        }
    }
}

/// What a request asked for.
#[derive(Debug, Default)]
pub struct Request {
    pub operation: Option<Operation>,
    pub key: Option<String>,
    pub klantcode: Option<String>,
    pub klantnaam: Option<String>,
    pub school_year: Option<String>,
    pub brin: Option<String>,
    pub dependance: Option<String>,
    pub xsd_version: Option<String>,
    pub since: Option<String>,
    /// Group keys asked for; `None` inside means "those bound to no group".
    pub groups: Vec<Option<String>>,
}

/// Read a request envelope. Errors are `OngeldigBericht` material.
pub fn read_request(body: &[u8]) -> Result<Request, String> {
    let mut reader = NsReader::from_reader(body);
    let mut req = Request::default();
    let mut buf = Vec::new();
    let mut current: Option<String> = None;
    loop {
        buf.clear();
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                let local = e.local_name().as_ref().to_owned();
                match local.as_str() {
                    "leerlinggegevens_verzoek" => req.operation = Some(Operation::AllInOne),
                    "structuur_verzoek" => req.operation = Some(Operation::Structure),
                    "leerlingen_verzoek" => req.operation = Some(Operation::Pupils),
                    "leerkrachten_verzoek" => req.operation = Some(Operation::Teachers),
                    "groep" | "samengestelde_groep" => {
                        let key = e.try_get_attribute("key").ok().flatten().and_then(|a| {
                            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                .ok()
                                .map(|v| v.into_owned())
                        });
                        req.groups.push(key);
                    }
                    _ => {}
                }
                current = Some(local);
            }
            Ok(Event::Text(t)) => {
                let text = t.as_ref().trim().to_owned();
                let slot = match current.as_deref() {
                    Some("autorisatiesleutel") => &mut req.key,
                    Some("klantcode") => &mut req.klantcode,
                    Some("klantnaam") => &mut req.klantnaam,
                    Some("schooljaar") => &mut req.school_year,
                    Some("brincode") => &mut req.brin,
                    Some("dependancecode") => &mut req.dependance,
                    Some("xsdversie") => &mut req.xsd_version,
                    Some("laatstontvangengegevens") => &mut req.since,
                    _ => continue,
                };
                if !text.is_empty() {
                    *slot = Some(text);
                }
            }
            Ok(Event::End(_)) => current = None,
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("the request is not well-formed XML: {e}")),
        }
    }
    Ok(req)
}

/// A SOAP fault as a LAS sends it.
pub fn fault(code: &str, message: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{NS_SOAP}"><soap:Body><soap:Fault><faultcode>soap:{code}</faultcode><faultstring>{}</faultstring></soap:Fault></soap:Body></soap:Envelope>"#,
        escape(message)
    )
}

pub fn envelope(answer: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{NS_SOAP}"><soap:Body>{answer}</soap:Body></soap:Envelope>"#
    )
}

/// The checks a real LAS makes, in the order the Topicus server makes them.
/// Ok: the school the request may read. Err: (fault code, fault string).
pub fn authorize(world: &World, req: &Request) -> Result<SchoolId, (String, String)> {
    let invalid = |why: &str| ("Client.OngeldigBericht".to_owned(), why.to_owned());
    if req.operation.is_none() {
        return Err(invalid("Onbekend verzoek"));
    }
    let year_ok = req.school_year.as_deref().is_some_and(|y| {
        y.len() == 9
            && y.as_bytes()[4] == b'-'
            && y[..4].parse::<u32>().is_ok()
            && y[5..].parse::<u32>().is_ok()
    });
    if !year_ok {
        return Err(invalid("Ongeldig of ontbrekend element 'schooljaar'"));
    }
    let Some(brin) = req.brin.as_deref() else {
        return Err(invalid("Ongeldig of ontbrekend element 'brincode'"));
    };
    let id: SchoolId = SchoolId::new(brin, req.dependance.as_deref().unwrap_or("00"))
        .map_err(|_| invalid("Ongeldige brincode of dependancecode"))?;
    if req.klantnaam.as_deref() != Some(world.klantnaam.as_str())
        || req.klantcode.as_deref() != Some(world.klantcode.as_str())
    {
        return Err((
            "Client.OngeldigeKlantIdentificatie".into(),
            "Klantidentificatie onjuist".into(),
        ));
    }
    let authorized = world
        .schools
        .get(&id)
        .is_some_and(|s| req.key.as_deref() == Some(s.key.as_str()));
    if !authorized {
        return Err((
            "Client.AutorisatieOngeldig".into(),
            "Autorisatiesleutel is ongeldig of geeft geen toegang tot de gevraagde school".into(),
        ));
    }
    let version = req.xsd_version.as_deref().unwrap_or("");
    if !world.versions.iter().any(|v| v == version) {
        return Err((
            "Client.XsdVersieOngeldig".into(),
            "De opgegeven XSD-versie is onjuist".into(),
        ));
    }
    Ok(id)
}

/// Whether the school changed since the request's `laatstontvangengegevens`.
pub fn unchanged_since(req: &Request, changed_at: DateTime<Utc>) -> bool {
    req.since
        .as_deref()
        .and_then(|s| {
            DateTime::parse_from_rfc3339(s)
                .ok()
                .map(|d| d.with_timezone(&Utc))
                .or_else(|| {
                    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
                        .ok()
                        .map(|n| n.and_utc())
                })
        })
        .is_some_and(|since| since >= changed_at)
}

fn el(out: &mut String, name: &str, value: &str) {
    out.push_str(&format!("<{name}>{}</{name}>", escape(value)));
}

fn person_name(out: &mut String, p: &crate::school::SimPerson) {
    // The XSD's choice: (achternaam, voorvoegsel?, ..., roepnaam?) or roepnaam alone.
    if let Some(family) = &p.family {
        el(out, "achternaam", family);
        if let Some(prefix) = &p.prefix {
            el(out, "voorvoegsel", prefix);
        }
    }
    el(out, "roepnaam", &p.given);
}

fn key_attrs(p: &crate::school::SimPerson) -> String {
    match &p.eckid {
        Some(e) => format!(
            r#" key="{}" eckid="{}""#,
            escape(p.key.as_str()),
            escape(e.as_str())
        ),
        None => format!(r#" key="{}""#, escape(p.key.as_str())),
    }
}

/// A bare `*_antwoord` element (no envelope) for a school, in the element order the XSD wants.
pub fn answer(
    school: &SimSchool,
    op: Operation,
    version: &str,
    groups: &[Option<String>],
) -> String {
    let (root, data) = op.answer();
    let wanted: HashSet<&str> = groups.iter().flatten().map(String::as_str).collect();
    let keyless = groups.iter().any(Option::is_none);
    let pupils: Vec<&crate::school::SimPupil> = school
        .pupils
        .iter()
        .filter(|p| {
            op == Operation::AllInOne
                || wanted.contains(p.group.as_str())
                || p.subgroups.iter().any(|g| wanted.contains(g.as_str()))
        })
        .collect();
    let teachers: Vec<&crate::school::SimTeacher> = school
        .teachers
        .iter()
        .filter(|t| {
            op == Operation::AllInOne
                || (keyless && t.groups.is_empty())
                || t.groups.iter().any(|(g, _)| wanted.contains(g.as_str()))
        })
        .collect();
    // The XSD wants at least one pupil where pupils are answered: none means geengegevens.
    let empty = match op {
        Operation::AllInOne | Operation::Pupils => pupils.is_empty(),
        Operation::Teachers => teachers.is_empty(),
        Operation::Structure => false,
    };
    if empty {
        return empty_answer(op, "geengegevens");
    }
    let mut out = String::with_capacity(256 + school.pupils.len() * 400);
    out.push_str(&format!(r#"<{root} xmlns="{NS_DATA}"><{data}><school>"#));
    el(&mut out, "schooljaar", &school.year.to_string());
    el(&mut out, "brincode", school.id.brin());
    el(&mut out, "dependancecode", school.id.dependance());
    el(&mut out, "auteur", "rostersync-simulator");
    el(&mut out, "xsdversie", version);
    out.push_str("</school>");
    if matches!(op, Operation::AllInOne | Operation::Structure) && !school.groups.is_empty() {
        out.push_str("<groepen>");
        for g in &school.groups {
            if g.composed {
                out.push_str(&format!(
                    r#"<samengestelde_groep key="{}">"#,
                    escape(g.key.as_str())
                ));
                el(&mut out, "naam", &g.name);
                out.push_str("</samengestelde_groep>");
            } else {
                out.push_str(&format!(r#"<groep key="{}">"#, escape(g.key.as_str())));
                el(&mut out, "naam", &g.name);
                el(&mut out, "jaargroep", g.year.as_deref().unwrap_or("N"));
                out.push_str("</groep>");
            }
        }
        out.push_str("</groepen>");
    }
    if matches!(op, Operation::AllInOne | Operation::Pupils) {
        out.push_str("<leerlingen>");
        for p in &pupils {
            out.push_str(&format!("<leerling{}>", key_attrs(&p.person)));
            person_name(&mut out, &p.person);
            // The 2.2 smalle set carries the birth date; 2.3 dropped it.
            if version == "2.2" {
                el(
                    &mut out,
                    "geboortedatum",
                    &p.birth.format("%Y-%m-%d").to_string(),
                );
            }
            el(&mut out, "jaargroep", &p.year);
            out.push_str(&format!(r#"<groep key="{}"/>"#, escape(p.group.as_str())));
            if !p.subgroups.is_empty() {
                out.push_str("<samengestelde_groepen>");
                for g in &p.subgroups {
                    out.push_str(&format!(
                        r#"<samengestelde_groep key="{}"/>"#,
                        escape(g.as_str())
                    ));
                }
                out.push_str("</samengestelde_groepen>");
            }
            out.push_str("</leerling>");
        }
        out.push_str("</leerlingen>");
    }
    if matches!(op, Operation::AllInOne | Operation::Teachers) && !teachers.is_empty() {
        out.push_str("<leerkrachten>");
        for t in &teachers {
            out.push_str(&format!("<leerkracht{}>", key_attrs(&t.person)));
            person_name(&mut out, &t.person);
            el(&mut out, "emailadres", &t.email);
            for r in &t.roles {
                el(&mut out, "rol", r);
            }
            if !t.groups.is_empty() {
                out.push_str("<groepen>");
                for (g, roles) in &t.groups {
                    let composed = school.groups.iter().any(|x| &x.key == g && x.composed);
                    let tag = if composed {
                        "samengestelde_groep"
                    } else {
                        "groep"
                    };
                    out.push_str(&format!(r#"<{tag} key="{}">"#, escape(g.as_str())));
                    for r in roles {
                        el(&mut out, "rol", r);
                    }
                    out.push_str(&format!("</{tag}>"));
                }
                out.push_str("</groepen>");
            }
            out.push_str("</leerkracht>");
        }
        out.push_str("</leerkrachten>");
    }
    out.push_str(&format!("</{data}></{root}>"));
    out
}

/// `geenwijzigingen` / `geengegevens` for an operation.
pub fn empty_answer(op: Operation, element: &str) -> String {
    let (root, _) = op.answer();
    format!(r#"<{root} xmlns="{NS_DATA}"><{element}/></{root}>"#)
}
