//! Streaming, namespace-aware reading of UWLR answers (and SOAP faults) with quick-xml.
//! Memory is bounded by one record: the document is never held, only the fields of the
//! publishers' "smalle set" are kept, and everything else (BSN, addresses, birth dates, ...)
//! is skipped unread.

use std::io::BufRead;

use connector_api::{
    GroupKind, GroupRecord, PersonKeys, PersonName, PupilRecord, Reject, RoleScope, StaffGroupLink,
    StaffRecord, StaffRole,
};
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::PrefixDeclaration;
use quick_xml::reader::Reader;

pub const NS_DATA: &str = "http://www.edustandaard.nl/leerresultaten/2/leerlinggegevens";
pub const NS_SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// No field of the smalle set is longer than 256 characters; anything far beyond is not data.
const MAX_TEXT: usize = 4096;

/// The `school` block of an answer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SchoolHeader {
    pub school_year: Option<String>,
    pub brin: Option<String>,
    pub dependance: Option<String>,
    pub xsd_version: Option<String>,
}

/// The data of one answer, as read. References between records are not checked yet.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub school: SchoolHeader,
    pub groups: Vec<GroupRecord>,
    pub pupils: Vec<PupilRecord>,
    pub staff: Vec<StaffRecord>,
    pub rejects: Vec<Reject>,
}

impl Parsed {
    /// The answer as the engine's snapshot of the LAS.
    pub fn into_snapshot(
        self,
        received_at: chrono::DateTime<chrono::Utc>,
    ) -> connector_api::Snapshot {
        connector_api::Snapshot {
            source: connector_api::SourceKind::Las,
            school_year: self.school.school_year,
            school_name: None,
            groups: self.groups,
            pupils: self.pupils,
            staff: self.staff,
            rejects: self.rejects,
            marker: None,
            credential_expires: None,
            received_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Data(Box<Parsed>),
    /// `geenwijzigingen`: nothing changed since `laatstontvangengegevens`.
    Unchanged,
    /// `geengegevens`: the LAS has no data for this request.
    NoData,
    /// A SOAP fault: the code's dotted local part (`Client.AutorisatieOngeldig`) and its text.
    Fault {
        code: String,
        message: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("not well-formed XML near byte {position}: {reason}")]
    Xml { position: u64, reason: String },
    #[error("not a UWLR answer: {0}")]
    Structure(String),
    #[error("the answer ends before it is complete (near byte {position})")]
    Incomplete { position: u64 },
    /// The bytes stopped coming: the transport's error explains why.
    #[error("reading the answer failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Where the reader is. Only the places that matter have a name; the rest is `Skip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum El {
    Envelope,
    Body,
    Fault,
    FaultCode,
    FaultString,
    Answer,
    Data,
    School,
    SchoolField(SchoolField),
    Groups,
    Group,
    GroupField(GroupField),
    Pupils,
    Pupil,
    PupilField(NameField),
    PupilYear,
    PupilGroup,
    PupilSubgroups,
    PupilSubgroup,
    Staff,
    Teacher,
    TeacherField(NameField),
    TeacherEmail,
    TeacherRole,
    TeacherGroups,
    TeacherGroup,
    TeacherGroupRole,
    Unchanged,
    NoData,
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SchoolField {
    Year,
    Brin,
    Dependance,
    Xsd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GroupField {
    Name,
    Year,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameField {
    Family,
    Prefix,
    Given,
}

impl El {
    /// Leaf elements whose text is kept.
    fn keeps_text(self) -> bool {
        matches!(
            self,
            El::FaultCode
                | El::FaultString
                | El::SchoolField(_)
                | El::GroupField(_)
                | El::PupilField(_)
                | El::PupilYear
                | El::TeacherField(_)
                | El::TeacherEmail
                | El::TeacherRole
                | El::TeacherGroupRole
        )
    }
}

#[derive(Default)]
struct GroupDraft {
    key: Option<String>,
    kind: Option<GroupKind>,
    name: Option<String>,
    year: Option<String>,
}

#[derive(Default)]
struct PupilDraft {
    keys: PersonKeys,
    name: PersonName,
    year: Option<String>,
    group: Option<String>,
    subgroups: Vec<String>,
}

#[derive(Default)]
struct TeacherDraft {
    keys: PersonKeys,
    name: PersonName,
    email: Option<String>,
    roles: Vec<String>,
    groups: Vec<StaffGroupLink>,
}

#[derive(Default)]
struct State {
    stack: Vec<El>,
    text: String,
    parsed: Parsed,
    outcome: Option<Outcome>,
    fault_code: Option<String>,
    fault_message: Option<String>,
    group: Option<GroupDraft>,
    pupil: Option<PupilDraft>,
    teacher: Option<TeacherDraft>,
    pupil_count: usize,
    teacher_count: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Data,
    Unchanged,
    NoData,
    Fault,
}

fn local_is(e: &BytesStart, name: &str) -> bool {
    e.local_name().as_ref() == name
}

/// The namespace of an element, as far as the reader needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ns {
    Data,
    Soap,
    /// No namespace at all (tolerated for data elements: lenient LAS output).
    Unbound,
    Other,
}

fn in_data_ns(ns: &Ns) -> bool {
    matches!(ns, Ns::Data | Ns::Unbound)
}

fn in_soap_ns(ns: &Ns) -> bool {
    *ns == Ns::Soap
}

/// Namespace declarations in scope. Namespaces decide the structure only down to the data
/// element (envelope, body, answer); inside it UWLR has a single namespace, so elements are
/// read by local name there. Resolving every event costs a third of the throughput.
#[derive(Default)]
struct Scopes {
    /// (prefix, namespace URI, depth of the declaring element); `None` is the default.
    bindings: Vec<(Option<String>, String, usize)>,
}

impl Scopes {
    fn declare(&mut self, e: &BytesStart, depth: usize, position: u64) -> Result<(), ParseError> {
        for attr in e.attributes().with_checks(false) {
            let attr = attr.map_err(|err| ParseError::Xml {
                position,
                reason: err.to_string(),
            })?;
            let prefix = match attr.key.as_namespace_binding() {
                Some(PrefixDeclaration::Default) => None,
                Some(PrefixDeclaration::Named(p)) => Some(p.to_owned()),
                None => continue,
            };
            let uri = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|err| ParseError::Xml {
                    position,
                    reason: err.to_string(),
                })?;
            self.bindings.push((prefix, uri.into_owned(), depth));
        }
        Ok(())
    }

    fn resolve(&self, e: &BytesStart) -> Ns {
        let name = e.name();
        let prefix = name.prefix();
        let wanted = prefix.as_ref().map(|p| p.as_ref());
        let uri = self
            .bindings
            .iter()
            .rev()
            .find(|(p, _, _)| p.as_deref() == wanted)
            .map(|(_, uri, _)| uri.as_str());
        match (uri, wanted) {
            (Some(u), _) if u == NS_DATA => Ns::Data,
            (Some(u), _) if u == NS_SOAP => Ns::Soap,
            (Some(""), None) | (None, None) => Ns::Unbound,
            _ => Ns::Other,
        }
    }

    fn leave(&mut self, depth: usize) {
        while self.bindings.last().is_some_and(|(_, _, d)| *d >= depth) {
            self.bindings.pop();
        }
    }
}

/// Whether namespaces still decide what an element is (above and at the data element).
fn structural(parent: Option<El>) -> bool {
    matches!(
        parent,
        None | Some(El::Envelope | El::Body | El::Answer | El::Fault)
    )
}

const ANSWERS: [&str; 4] = [
    "leerlinggegevens_antwoord",
    "structuur_antwoord",
    "leerlingen_antwoord",
    "leerkrachten_antwoord",
];

const DATA: [&str; 4] = [
    "leerlinggegevens",
    "leerlinggegevens-structuur",
    "leerlinggegevens-leerlingen",
    "leerlinggegevens-leerkrachten",
];

fn name_field(local: &str) -> Option<NameField> {
    match local {
        "achternaam" => Some(NameField::Family),
        "voorvoegsel" => Some(NameField::Prefix),
        "roepnaam" => Some(NameField::Given),
        _ => None,
    }
}

/// What element `e` is, given where the reader is.
fn classify(parent: Option<El>, ns: &Ns, e: &BytesStart) -> Result<El, ParseError> {
    let local = e.local_name();
    let l = local.as_ref();
    let data = in_data_ns(ns);
    Ok(match parent {
        None if in_soap_ns(ns) && l == "Envelope" => El::Envelope,
        None if data && ANSWERS.contains(&l) => El::Answer,
        None => {
            return Err(ParseError::Structure(format!(
                "the document starts with <{}>, not a SOAP envelope or a UWLR answer",
                l
            )));
        }
        Some(El::Envelope) if in_soap_ns(ns) && l == "Body" => El::Body,
        Some(El::Body) if in_soap_ns(ns) && l == "Fault" => El::Fault,
        Some(El::Body) if data && ANSWERS.contains(&l) => El::Answer,
        Some(El::Fault) if l == "faultcode" => El::FaultCode,
        Some(El::Fault) if l == "faultstring" => El::FaultString,
        Some(El::Answer) if data && DATA.contains(&l) => El::Data,
        Some(El::Answer) if data && l == "geenwijzigingen" => El::Unchanged,
        Some(El::Answer) if data && l == "geengegevens" => El::NoData,
        Some(El::Data) if data && l == "school" => El::School,
        Some(El::Data) if data && l == "groepen" => El::Groups,
        Some(El::Data) if data && l == "leerlingen" => El::Pupils,
        Some(El::Data) if data && l == "leerkrachten" => El::Staff,
        Some(El::School) if data => match l {
            "schooljaar" => El::SchoolField(SchoolField::Year),
            "brincode" => El::SchoolField(SchoolField::Brin),
            "dependancecode" => El::SchoolField(SchoolField::Dependance),
            "xsdversie" => El::SchoolField(SchoolField::Xsd),
            _ => El::Skip,
        },
        Some(El::Groups) if data && (l == "groep" || l == "samengestelde_groep") => El::Group,
        Some(El::Group) if data && l == "naam" => El::GroupField(GroupField::Name),
        Some(El::Group) if data && l == "jaargroep" => El::GroupField(GroupField::Year),
        Some(El::Pupils) if data && l == "leerling" => El::Pupil,
        Some(El::Pupil) if data => match l {
            "jaargroep" => El::PupilYear,
            "groep" => El::PupilGroup,
            "samengestelde_groepen" => El::PupilSubgroups,
            _ => name_field(l).map(El::PupilField).unwrap_or(El::Skip),
        },
        Some(El::PupilSubgroups) if data && l == "samengestelde_groep" => El::PupilSubgroup,
        Some(El::Staff) if data && l == "leerkracht" => El::Teacher,
        Some(El::Teacher) if data => match l {
            "emailadres" => El::TeacherEmail,
            "rol" | "rolomschrijving" => El::TeacherRole,
            "groepen" => El::TeacherGroups,
            _ => name_field(l).map(El::TeacherField).unwrap_or(El::Skip),
        },
        Some(El::TeacherGroups) if data && (l == "groep" || l == "samengestelde_groep") => {
            El::TeacherGroup
        }
        Some(El::TeacherGroup) if data && (l == "rol" || l == "rolomschrijving") => {
            El::TeacherGroupRole
        }
        _ => El::Skip,
    })
}

/// The unqualified attributes `key` and `eckid` of an element.
fn keys_of(e: &BytesStart, position: u64) -> Result<(Option<String>, Option<String>), ParseError> {
    let mut key = None;
    let mut eckid = None;
    for attr in e.attributes().with_checks(false) {
        let attr = attr.map_err(|err| ParseError::Xml {
            position,
            reason: err.to_string(),
        })?;
        let slot = match attr.key.local_name().as_ref() {
            "key" => &mut key,
            "eckid" => &mut eckid,
            _ => continue,
        };
        // Keys rarely hold entities: unescape only when there is one (a third of the time
        // went to normalizing long ECK-iD values that never need it).
        let value = if attr.value.contains('&') {
            quick_xml::escape::unescape(&attr.value)
                .map_err(|err| ParseError::Xml {
                    position,
                    reason: err.to_string(),
                })?
                .into_owned()
                .into()
        } else {
            attr.value
        };
        let value = value.trim();
        // A key is one word; a control character in it (escaped as &#27; or raw) is a
        // hostile or broken LAS, and the whole answer is refused, as for text.
        if has_control(value, &[]) {
            return Err(ParseError::Xml {
                position,
                reason: "a control character in a key attribute".into(),
            });
        }
        if longer_than_max(value) {
            return Err(ParseError::Structure(format!(
                "an attribute near byte {position} is longer than {MAX_TEXT} characters"
            )));
        }
        if !value.is_empty() {
            *slot = Some(value.to_owned());
        }
    }
    Ok((key, eckid))
}

/// Whether `s` holds a control character other than `allowed`. Nearly every value is
/// printable ASCII, which one branch-free pass over the bytes shows (the compiler
/// vectorizes it); only other text is decoded character by character.
fn has_control(s: &str, allowed: &[char]) -> bool {
    let printable_ascii = s
        .bytes()
        .fold(true, |ok, b| ok & (b.wrapping_sub(0x20) < 0x5f));
    !printable_ascii && s.chars().any(|c| c.is_control() && !allowed.contains(&c))
}

/// Whether `s` has more than `MAX_TEXT` characters (never more characters than bytes).
fn longer_than_max(s: &str) -> bool {
    s.len() > MAX_TEXT && s.chars().count() > MAX_TEXT
}

fn take_text(text: &mut String) -> Option<String> {
    let t = text.trim();
    let out = if t.is_empty() {
        None
    } else {
        Some(t.to_owned())
    };
    text.clear();
    out
}

impl State {
    fn start(&mut self, el: El, e: &BytesStart, position: u64) -> Result<(), ParseError> {
        match el {
            El::Data => self.outcome = Some(Outcome::Data),
            El::Unchanged => self.outcome = Some(Outcome::Unchanged),
            El::NoData => self.outcome = Some(Outcome::NoData),
            El::Fault => self.outcome = Some(Outcome::Fault),
            El::Group => {
                let (key, _) = keys_of(e, position)?;
                let kind = if local_is(e, "groep") {
                    GroupKind::Stamgroep
                } else {
                    GroupKind::Samengesteld
                };
                self.group = Some(GroupDraft {
                    key,
                    kind: Some(kind),
                    ..GroupDraft::default()
                });
            }
            El::Pupil => {
                let (key, eckid) = keys_of(e, position)?;
                self.pupil_count += 1;
                self.pupil = Some(PupilDraft {
                    keys: PersonKeys {
                        las_key: key,
                        eckid,
                        ..PersonKeys::default()
                    },
                    ..PupilDraft::default()
                });
            }
            El::PupilGroup | El::PupilSubgroup => {
                let (key, _) = keys_of(e, position)?;
                if let (Some(p), Some(k)) = (self.pupil.as_mut(), key) {
                    if el == El::PupilGroup {
                        p.group = Some(k);
                    } else {
                        p.subgroups.push(k);
                    }
                }
            }
            El::Teacher => {
                let (key, eckid) = keys_of(e, position)?;
                self.teacher_count += 1;
                self.teacher = Some(TeacherDraft {
                    keys: PersonKeys {
                        las_key: key,
                        eckid,
                        ..PersonKeys::default()
                    },
                    ..TeacherDraft::default()
                });
            }
            El::TeacherGroup => {
                let (key, _) = keys_of(e, position)?;
                if let Some(t) = self.teacher.as_mut() {
                    // A link without a key cannot be resolved; kept empty so it is rejected.
                    t.groups.push(StaffGroupLink {
                        group: key.unwrap_or_default(),
                        roles: Vec::new(),
                    });
                }
            }
            _ => {}
        }
        if el.keeps_text() {
            self.text.clear();
        }
        Ok(())
    }

    fn end(&mut self, el: El) {
        match el {
            El::FaultCode => self.fault_code = take_text(&mut self.text),
            El::FaultString => self.fault_message = take_text(&mut self.text),
            El::SchoolField(f) => {
                let v = take_text(&mut self.text);
                let s = &mut self.parsed.school;
                match f {
                    SchoolField::Year => s.school_year = v,
                    SchoolField::Brin => s.brin = v,
                    SchoolField::Dependance => s.dependance = v,
                    SchoolField::Xsd => s.xsd_version = v,
                }
            }
            El::GroupField(f) => {
                let v = take_text(&mut self.text);
                if let Some(g) = self.group.as_mut() {
                    match f {
                        GroupField::Name => g.name = v,
                        GroupField::Year => g.year = v,
                    }
                }
            }
            El::Group => {
                if let Some(g) = self.group.take() {
                    self.finish_group(g);
                }
            }
            El::PupilField(f) => {
                let v = take_text(&mut self.text);
                if let Some(p) = self.pupil.as_mut() {
                    set_name(&mut p.name, f, v);
                }
            }
            El::PupilYear => {
                let v = take_text(&mut self.text);
                if let Some(p) = self.pupil.as_mut() {
                    p.year = v;
                }
            }
            El::Pupil => {
                if let Some(p) = self.pupil.take() {
                    self.finish_pupil(p);
                }
            }
            El::TeacherField(f) => {
                let v = take_text(&mut self.text);
                if let Some(t) = self.teacher.as_mut() {
                    set_name(&mut t.name, f, v);
                }
            }
            El::TeacherEmail => {
                let v = take_text(&mut self.text);
                if let Some(t) = self.teacher.as_mut() {
                    t.email = v;
                }
            }
            El::TeacherRole => {
                if let (Some(v), Some(t)) = (take_text(&mut self.text), self.teacher.as_mut()) {
                    t.roles.push(v);
                }
            }
            El::TeacherGroupRole => {
                let v = take_text(&mut self.text);
                if let (Some(v), Some(link)) =
                    (v, self.teacher.as_mut().and_then(|t| t.groups.last_mut()))
                {
                    link.roles.push(v);
                }
            }
            El::Teacher => {
                if let Some(t) = self.teacher.take() {
                    self.finish_teacher(t);
                }
            }
            _ => {}
        }
    }

    fn finish_group(&mut self, g: GroupDraft) {
        let Some(key) = g.key else {
            self.parsed.rejects.push(Reject {
                entity: "group".into(),
                key: format!("#{}", self.parsed.groups.len() + 1),
                reason: "a group without a key".into(),
            });
            return;
        };
        self.parsed.groups.push(GroupRecord {
            name: g.name.unwrap_or_else(|| key.clone()),
            key,
            kind: g.kind.unwrap_or(GroupKind::Samengesteld),
            year_group: g.year,
            department: None,
        });
    }

    fn finish_pupil(&mut self, p: PupilDraft) {
        if p.keys.las_key.is_none() && p.keys.eckid.is_none() {
            self.parsed.rejects.push(Reject {
                entity: "pupil".into(),
                key: format!("#{}", self.pupil_count),
                reason: "a pupil without a key or ECK-iD".into(),
            });
            return;
        }
        self.parsed.pupils.push(PupilRecord {
            keys: p.keys,
            name: p.name,
            year_group: p.year,
            group: p.group,
            subgroups: p.subgroups,
        });
    }

    fn finish_teacher(&mut self, t: TeacherDraft) {
        if t.keys.las_key.is_none() && t.keys.eckid.is_none() {
            self.parsed.rejects.push(Reject {
                entity: "staff".into(),
                key: format!("#{}", self.teacher_count),
                reason: "a teacher without a key or ECK-iD".into(),
            });
            return;
        }
        self.parsed.staff.push(StaffRecord {
            keys: t.keys,
            name: t.name,
            email: t.email,
            roles: t
                .roles
                .into_iter()
                .map(|name| StaffRole {
                    name,
                    scope: RoleScope::School,
                })
                .collect(),
            groups: t.groups,
            end_date: None,
        });
    }

    fn push_text(&mut self, s: &str) -> Result<(), ParseError> {
        // XML 1.0 allows no control characters in text but tab, line feed and return.
        if has_control(s, &['\t', '\n', '\r']) {
            return Err(ParseError::Xml {
                position: 0,
                reason: "a control character in text (not allowed in XML 1.0)".into(),
            });
        }
        if self.text.len() + s.len() > MAX_TEXT {
            return Err(ParseError::Structure(format!(
                "a field is longer than {MAX_TEXT} characters"
            )));
        }
        self.text.push_str(s);
        Ok(())
    }
}

fn set_name(name: &mut PersonName, field: NameField, value: Option<String>) {
    match field {
        NameField::Family => name.family_name = value,
        NameField::Prefix => name.prefix = value,
        NameField::Given => name.given_name = value,
    }
}

/// Read one UWLR answer or SOAP fault from `input`.
pub fn parse_answer<R: BufRead>(input: R) -> Result<Answer, ParseError> {
    let mut reader = Reader::from_reader(input);
    reader.config_mut().check_end_names = true;
    let mut scopes = Scopes::default();
    let mut skip_buf = Vec::new();
    let mut buf = Vec::with_capacity(1024);
    let mut st = State::default();
    let mut done = false;
    loop {
        buf.clear();
        let position = reader.buffer_position();
        let event = match reader.read_event_into(&mut buf) {
            Ok(x) => x,
            Err(quick_xml::Error::Io(io)) => {
                return Err(ParseError::Io(std::io::Error::new(
                    io.kind(),
                    io.to_string(),
                )));
            }
            Err(e) => {
                return Err(ParseError::Xml {
                    position: reader.error_position(),
                    reason: e.to_string(),
                });
            }
        };
        match event {
            Event::Start(_) | Event::Empty(_) if done => {
                return Err(ParseError::Structure(
                    "content after the end of the answer".into(),
                ));
            }
            Event::Start(e) if structural(st.stack.last().copied()) => {
                scopes.declare(&e, st.stack.len(), position)?;
                let el = classify(st.stack.last().copied(), &scopes.resolve(&e), &e)?;
                st.start(el, &e, position)?;
                st.stack.push(el);
            }
            Event::Empty(e) if structural(st.stack.last().copied()) => {
                let depth = st.stack.len();
                scopes.declare(&e, depth, position)?;
                let el = classify(st.stack.last().copied(), &scopes.resolve(&e), &e)?;
                st.start(el, &e, position)?;
                st.end(el);
                scopes.leave(depth);
                if st.stack.is_empty() {
                    done = true;
                }
            }
            Event::Start(e) => {
                let el = classify(st.stack.last().copied(), &Ns::Data, &e)?;
                if el == El::Skip {
                    // Fields we do not keep are passed over whole, without an event each.
                    let name = e.name().as_ref().to_owned();
                    skip_buf.clear();
                    reader
                        .read_to_end_into(quick_xml::name::QName(&name), &mut skip_buf)
                        .map_err(|err| match err {
                            quick_xml::Error::Io(io) => {
                                ParseError::Io(std::io::Error::new(io.kind(), io.to_string()))
                            }
                            other => ParseError::Xml {
                                position: reader.error_position(),
                                reason: other.to_string(),
                            },
                        })?;
                    continue;
                }
                st.start(el, &e, position)?;
                st.stack.push(el);
            }
            Event::Empty(e) => {
                let el = classify(st.stack.last().copied(), &Ns::Data, &e)?;
                st.start(el, &e, position)?;
                st.end(el);
            }
            Event::End(_) => {
                let Some(el) = st.stack.pop() else {
                    return Err(ParseError::Xml {
                        position,
                        reason: "a closing tag without an opening tag".into(),
                    });
                };
                st.end(el);
                scopes.leave(st.stack.len());
                if st.stack.is_empty() {
                    done = true;
                }
            }
            Event::Text(t) if st.stack.is_empty() => {
                // Only white space may stand outside the root element: anything else is a
                // broken body (a proxy's page glued on, two answers in one), not an answer.
                let text: &str = t.as_ref();
                if !text.trim().is_empty() {
                    return Err(ParseError::Xml {
                        position,
                        reason: "text outside the root element".into(),
                    });
                }
            }
            Event::Text(t) if st.stack.last().is_some_and(|el| el.keeps_text()) => {
                st.push_text(t.as_ref())?;
            }
            Event::CData(t) if st.stack.last().is_some_and(|el| el.keeps_text()) => {
                st.push_text(t.as_ref())?;
            }
            Event::GeneralRef(_) | Event::CData(_) if st.stack.is_empty() => {
                return Err(ParseError::Xml {
                    position,
                    reason: "content outside the root element".into(),
                });
            }
            Event::GeneralRef(r) => {
                let ch = match r.resolve_char_ref() {
                    Ok(Some(c)) => c,
                    Ok(None) => match r.as_ref() {
                        "lt" => '<',
                        "gt" => '>',
                        "amp" => '&',
                        "apos" => '\'',
                        "quot" => '"',
                        other => {
                            return Err(ParseError::Xml {
                                position,
                                reason: format!("unknown entity &{other};"),
                            });
                        }
                    },
                    Err(e) => {
                        return Err(ParseError::Xml {
                            position,
                            reason: e.to_string(),
                        });
                    }
                };
                if st.stack.last().is_some_and(|el| el.keeps_text()) {
                    st.push_text(ch.encode_utf8(&mut [0u8; 4]))?;
                }
            }
            Event::Eof => break,
            // Declarations, comments, processing instructions, text outside kept fields.
            _ => {}
        }
    }
    if !st.stack.is_empty() || !done {
        return Err(ParseError::Incomplete {
            position: reader.buffer_position(),
        });
    }
    match st.outcome {
        Some(Outcome::Data) => Ok(Answer::Data(Box::new(st.parsed))),
        Some(Outcome::Unchanged) => Ok(Answer::Unchanged),
        Some(Outcome::NoData) => Ok(Answer::NoData),
        Some(Outcome::Fault) => {
            let raw = st.fault_code.unwrap_or_default();
            // `soap:Client.X`, `Client.X` or `{ns}Client.X`: the dotted part after the prefix.
            let code = raw.rsplit([':', '}']).next().unwrap_or("").to_owned();
            Ok(Answer::Fault {
                code,
                message: st.fault_message.unwrap_or_default(),
            })
        }
        None => Err(ParseError::Structure(
            "the answer holds no data, no geenwijzigingen and no geengegevens".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_found_past_the_ascii_fast_path() {
        let text = ['\t', '\n', '\r'];
        assert!(!has_control("Jansen-de Vries", &[]));
        assert!(!has_control("Çelik Öztürk ß €", &[]));
        assert!(has_control("a\u{1b}b", &[]));
        assert!(has_control("a\u{7f}", &[]));
        // C1 controls are two bytes in UTF-8, none of them below 0x20.
        assert!(has_control("é\u{85}", &[]));
        assert!(has_control("line\nbreak", &[]));
        assert!(!has_control("line\nbreak\ttab\r", &text));
        assert!(has_control("bell\u{7}", &text));
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        assert!(!longer_than_max(&"é".repeat(MAX_TEXT)));
        assert!(longer_than_max(&"é".repeat(MAX_TEXT + 1)));
        assert!(!longer_than_max(&"a".repeat(MAX_TEXT)));
    }
}
