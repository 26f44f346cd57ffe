//! SOAP 1.1 request envelopes for the four UWLR operations.
//! The envelope carries the school's key: it is built here and never logged.

use chrono::{DateTime, SecondsFormat, Utc};
use connector_api::SchoolYear;
use quick_xml::escape::escape;
use secrecy::{ExposeSecret, SecretString};

pub const NS_AUTH: &str = "http://www.edustandaard.nl/leerresultaten/2/autorisatie";

/// A group reference in a getrapte request. `None` asks for everyone not bound to any group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRef {
    Group(Option<String>),
    Composed(Option<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// `HaalLeerlinggegevens`: the whole school in one answer.
    AllInOne,
    /// `HaalStructuur`: school and groups.
    Structure,
    /// `HaalLeerlingen` for these groups.
    Pupils(Vec<GroupRef>),
    /// `HaalLeerkrachten` for these groups.
    Teachers(Vec<GroupRef>),
}

impl Operation {
    fn element(&self) -> &'static str {
        match self {
            Operation::AllInOne => "leerlinggegevens_verzoek",
            Operation::Structure => "structuur_verzoek",
            Operation::Pupils(_) => "leerlingen_verzoek",
            Operation::Teachers(_) => "leerkrachten_verzoek",
        }
    }

    /// The SOAPAction header, unquoted as the LAS clients in the field send it.
    pub fn soap_action(&self) -> String {
        match self {
            Operation::AllInOne => "HaalLeerlinggegevens".to_owned(),
            other => format!("{}/{}", crate::parse::NS_DATA, other.element()),
        }
    }
}

pub struct Params<'a> {
    pub klantnaam: &'a str,
    pub klantcode: &'a SecretString,
    pub key: &'a SecretString,
    pub brin: &'a str,
    pub dependance: &'a str,
    pub school_year: SchoolYear,
    pub xsd_version: &'a str,
    pub data_set: Option<&'a str>,
    pub since: Option<DateTime<Utc>>,
}

fn element(out: &mut String, name: &str, value: &str) {
    out.push_str(&format!("<lg:{name}>{}</lg:{name}>", escape(value)));
}

pub fn envelope(op: &Operation, p: &Params) -> String {
    let mut body = String::with_capacity(1024);
    body.push_str(&format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="{}" xmlns:aut="{NS_AUTH}" xmlns:lg="{}"><soapenv:Header><aut:autorisatie>"#,
        crate::parse::NS_SOAP,
        crate::parse::NS_DATA
    ));
    body.push_str(&format!(
        "<aut:autorisatiesleutel>{}</aut:autorisatiesleutel><aut:klantcode>{}</aut:klantcode><aut:klantnaam>{}</aut:klantnaam>",
        escape(p.key.expose_secret()),
        escape(p.klantcode.expose_secret()),
        escape(p.klantnaam)
    ));
    body.push_str("</aut:autorisatie></soapenv:Header><soapenv:Body>");
    body.push_str(&format!("<lg:{}>", op.element()));
    element(&mut body, "schooljaar", &p.school_year.to_string());
    element(&mut body, "brincode", p.brin);
    element(&mut body, "dependancecode", p.dependance);
    element(&mut body, "xsdversie", p.xsd_version);
    if let Some(set) = p.data_set {
        element(&mut body, "gegevenssetid", set);
    }
    if let Some(since) = p.since {
        element(
            &mut body,
            "laatstontvangengegevens",
            &since.to_rfc3339_opts(SecondsFormat::Millis, true),
        );
    }
    if let Operation::Pupils(groups) | Operation::Teachers(groups) = op {
        body.push_str("<lg:groepen>");
        for g in groups {
            let (name, key) = match g {
                GroupRef::Group(k) => ("groep", k),
                GroupRef::Composed(k) => ("samengestelde_groep", k),
            };
            match key {
                Some(k) => body.push_str(&format!(r#"<lg:{name} key="{}"/>"#, escape(k.as_str()))),
                None => body.push_str(&format!("<lg:{name}/>")),
            }
        }
        body.push_str("</lg:groepen>");
    }
    body.push_str(&format!(
        "</lg:{}></soapenv:Body></soapenv:Envelope>",
        op.element()
    ));
    body
}
