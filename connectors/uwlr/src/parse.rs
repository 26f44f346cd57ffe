//! Streaming, namespace-aware reading of UWLR answers (and SOAP faults) over the tokenizer in
//! `xml`. Memory is bounded by one record: the document is never held, only the fields of the
//! publishers' "smalle set" are kept, and everything else (BSN, addresses, birth dates, ...)
//! is skipped (tokenized for well-formedness, never kept).

use std::io::Read;

use connector_api::{
    GroupKind, GroupRecord, PersonKeys, PersonName, PupilRecord, Reject, RoleScope, StaffGroupLink,
    StaffRecord, StaffRole,
};

use crate::xml::{Tag, Token, Tokenizer, is_blank, local_part, plain, unescape, unescaped};

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
    /// Elements whose content is usually text alone, read at once when it is (`leaf_text`).
    fn is_leaf(self) -> bool {
        self == El::Skip || self.keeps_text()
    }

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
    /// Whether a pupil is being read: it is the answer's last, built in place (a record is
    /// 240 bytes; moving it from a draft cost more than filling it).
    in_pupil: bool,
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
    bindings: Vec<(Option<Vec<u8>>, String, usize)>,
}

impl Scopes {
    fn declare(&mut self, e: &Tag, depth: usize, position: u64) -> Result<(), ParseError> {
        for attr in e.attributes() {
            let (key, value) = attr.map_err(|reason| xml_error(position, reason))?;
            let prefix = match key.strip_prefix(b"xmlns") {
                Some([]) => None,
                Some([b':', p @ ..]) => Some(p.to_vec()),
                _ => continue,
            };
            let uri = unescaped(value).map_err(|reason| xml_error(position, &reason))?;
            self.bindings.push((prefix, uri.into_owned(), depth));
        }
        Ok(())
    }

    fn resolve(&self, e: &Tag) -> Ns {
        let wanted = e.prefix();
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

const ANSWERS: [&[u8]; 4] = [
    b"leerlinggegevens_antwoord",
    b"structuur_antwoord",
    b"leerlingen_antwoord",
    b"leerkrachten_antwoord",
];

const DATA: [&[u8]; 4] = [
    b"leerlinggegevens",
    b"leerlinggegevens-structuur",
    b"leerlinggegevens-leerlingen",
    b"leerlinggegevens-leerkrachten",
];

fn name_field(local: &[u8]) -> Option<NameField> {
    match local {
        b"achternaam" => Some(NameField::Family),
        b"voorvoegsel" => Some(NameField::Prefix),
        b"roepnaam" => Some(NameField::Given),
        _ => None,
    }
}

fn xml_error(position: u64, reason: &str) -> ParseError {
    ParseError::Xml {
        position,
        reason: reason.into(),
    }
}

/// What element `e` is, given where the reader is.
fn classify(parent: Option<El>, ns: &Ns, e: &Tag) -> Result<El, ParseError> {
    let l = e.local_name();
    let data = in_data_ns(ns);
    Ok(match parent {
        // Inside a skipped element everything is skipped.
        Some(El::Skip) => El::Skip,
        None if in_soap_ns(ns) && l == b"Envelope" => El::Envelope,
        None if data && ANSWERS.contains(&l) => El::Answer,
        None => {
            return Err(ParseError::Structure(format!(
                "the document starts with <{}>, not a SOAP envelope or a UWLR answer",
                String::from_utf8_lossy(l)
            )));
        }
        Some(El::Envelope) if in_soap_ns(ns) && l == b"Body" => El::Body,
        Some(El::Body) if in_soap_ns(ns) && l == b"Fault" => El::Fault,
        Some(El::Body) if data && ANSWERS.contains(&l) => El::Answer,
        Some(El::Fault) if l == b"faultcode" => El::FaultCode,
        Some(El::Fault) if l == b"faultstring" => El::FaultString,
        Some(El::Answer) if data && DATA.contains(&l) => El::Data,
        Some(El::Answer) if data && l == b"geenwijzigingen" => El::Unchanged,
        Some(El::Answer) if data && l == b"geengegevens" => El::NoData,
        Some(El::Data) if data && l == b"school" => El::School,
        Some(El::Data) if data && l == b"groepen" => El::Groups,
        Some(El::Data) if data && l == b"leerlingen" => El::Pupils,
        Some(El::Data) if data && l == b"leerkrachten" => El::Staff,
        Some(El::School) if data => match l {
            b"schooljaar" => El::SchoolField(SchoolField::Year),
            b"brincode" => El::SchoolField(SchoolField::Brin),
            b"dependancecode" => El::SchoolField(SchoolField::Dependance),
            b"xsdversie" => El::SchoolField(SchoolField::Xsd),
            _ => El::Skip,
        },
        Some(El::Groups) if data && (l == b"groep" || l == b"samengestelde_groep") => El::Group,
        Some(El::Group) if data && l == b"naam" => El::GroupField(GroupField::Name),
        Some(El::Group) if data && l == b"jaargroep" => El::GroupField(GroupField::Year),
        Some(El::Pupils) if data && l == b"leerling" => El::Pupil,
        Some(El::Pupil) if data => match l {
            b"jaargroep" => El::PupilYear,
            b"groep" => El::PupilGroup,
            b"samengestelde_groepen" => El::PupilSubgroups,
            _ => name_field(l).map(El::PupilField).unwrap_or(El::Skip),
        },
        Some(El::PupilSubgroups) if data && l == b"samengestelde_groep" => El::PupilSubgroup,
        Some(El::Staff) if data && l == b"leerkracht" => El::Teacher,
        Some(El::Teacher) if data => match l {
            b"emailadres" => El::TeacherEmail,
            b"rol" | b"rolomschrijving" => El::TeacherRole,
            b"groepen" => El::TeacherGroups,
            _ => name_field(l).map(El::TeacherField).unwrap_or(El::Skip),
        },
        Some(El::TeacherGroups) if data && (l == b"groep" || l == b"samengestelde_groep") => {
            El::TeacherGroup
        }
        Some(El::TeacherGroup) if data && (l == b"rol" || l == b"rolomschrijving") => {
            El::TeacherGroupRole
        }
        _ => El::Skip,
    })
}

/// The unqualified attributes `key` and `eckid` of an element.
fn keys_of(e: &Tag, position: u64) -> Result<(Option<String>, Option<String>), ParseError> {
    let mut key = None;
    let mut eckid = None;
    for attr in e.attributes() {
        let (name, raw) = attr.map_err(|reason| xml_error(position, reason))?;
        let slot = match local_part(name) {
            b"key" => &mut key,
            b"eckid" => &mut eckid,
            _ => continue,
        };
        *slot = key_value(raw, position)?;
    }
    Ok((key, eckid))
}

fn key_value(raw: &[u8], position: u64) -> Result<Option<String>, ParseError> {
    if let Some(value) = plain_value(raw).filter(|_| raw.len() <= MAX_TEXT) {
        return Ok(value);
    }
    let decoded = unescaped(raw).map_err(|reason| xml_error(position, &reason))?;
    let value = decoded.trim();
    // A key is one word; a control character in it (escaped as &#27; or raw) is a
    // hostile or broken LAS, and the whole answer is refused, as for text.
    if has_control(value, &[]) {
        return Err(xml_error(
            position,
            "a control character in a key attribute",
        ));
    }
    if longer_than_max(value) {
        return Err(ParseError::Structure(format!(
            "an attribute near byte {position} is longer than {MAX_TEXT} characters"
        )));
    }
    Ok(trimmed(value))
}

/// A value that is printable ASCII without references (nearly every one), trimmed and owned;
/// `None` when it needs the full treatment. Nothing to resolve and nothing to refuse.
fn plain_value(raw: &[u8]) -> Option<Option<String>> {
    let s = plain(raw)?.trim_ascii();
    Some((!s.is_empty()).then(|| s.to_owned()))
}

fn trimmed(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_owned())
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

/// Text that is not kept must still be well-formed: its references are resolved into
/// `scratch` and dropped.
fn check_references(raw: &[u8], scratch: &mut String, position: u64) -> Result<(), ParseError> {
    if memchr::memchr(b'&', raw).is_some() {
        scratch.clear();
        unescape(raw, scratch).map_err(|reason| xml_error(position, &reason))?;
    }
    Ok(())
}

/// XML 1.0 allows no control characters in text but tab, line feed and return.
fn check_text(text: &str, position: u64) -> Result<(), ParseError> {
    if has_control(text, &['\t', '\n', '\r']) {
        return Err(xml_error(
            position,
            "a control character in text (not allowed in XML 1.0)",
        ));
    }
    if text.len() > MAX_TEXT {
        return Err(too_long());
    }
    Ok(())
}

fn too_long() -> ParseError {
    ParseError::Structure(format!("a field is longer than {MAX_TEXT} characters"))
}

fn take_text(text: &mut String) -> Option<String> {
    let out = trimmed(text);
    text.clear();
    out
}

impl State {
    fn start(&mut self, el: El, e: &Tag, position: u64) -> Result<(), ParseError> {
        match el {
            El::Data => self.outcome = Some(Outcome::Data),
            El::Unchanged => self.outcome = Some(Outcome::Unchanged),
            El::NoData => self.outcome = Some(Outcome::NoData),
            El::Fault => self.outcome = Some(Outcome::Fault),
            El::Group => {
                let (key, _) = keys_of(e, position)?;
                let kind = if e.local_name() == b"groep" {
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
                self.start_pupil(key, eckid);
            }
            El::PupilGroup | El::PupilSubgroup => {
                let (key, _) = keys_of(e, position)?;
                if let (Some(p), Some(k)) = (self.pupil(), key) {
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

    /// A start tag (or an empty element, which ends at once) where the reader is.
    fn element(
        &mut self,
        scopes: &mut Scopes,
        e: &Tag,
        empty: bool,
        position: u64,
    ) -> Result<(), ParseError> {
        let parent = self.stack.last().copied();
        let depth = self.stack.len();
        let el = if structural(parent) {
            scopes.declare(e, depth, position)?;
            classify(parent, &scopes.resolve(e), e)?
        } else {
            // Below the data element UWLR has one namespace: elements are read by local name.
            classify(parent, &Ns::Data, e)?
        };
        self.start(el, e, position)?;
        if empty {
            self.end(el);
            scopes.leave(depth);
        } else {
            self.stack.push(el);
        }
        Ok(())
    }

    fn end(&mut self, el: El) {
        match el {
            El::Group => {
                if let Some(g) = self.group.take() {
                    self.finish_group(g);
                }
            }
            El::Pupil => {
                self.in_pupil = false;
            }
            El::Teacher => {
                if let Some(t) = self.teacher.take() {
                    self.finish_teacher(t);
                }
            }
            _ if el.keeps_text() => {
                let v = take_text(&mut self.text);
                self.set_field(el, v);
            }
            _ => {}
        }
    }

    /// A kept field's value (trimmed; `None` when empty) where it belongs.
    fn set_field(&mut self, el: El, v: Option<String>) {
        match el {
            El::FaultCode => self.fault_code = v,
            El::FaultString => self.fault_message = v,
            El::SchoolField(f) => {
                let s = &mut self.parsed.school;
                match f {
                    SchoolField::Year => s.school_year = v,
                    SchoolField::Brin => s.brin = v,
                    SchoolField::Dependance => s.dependance = v,
                    SchoolField::Xsd => s.xsd_version = v,
                }
            }
            El::GroupField(f) => {
                if let Some(g) = self.group.as_mut() {
                    match f {
                        GroupField::Name => g.name = v,
                        GroupField::Year => g.year = v,
                    }
                }
            }
            El::PupilField(f) => {
                if let Some(p) = self.pupil() {
                    set_name(&mut p.name, f, v);
                }
            }
            El::PupilYear => {
                if let Some(p) = self.pupil() {
                    p.year_group = v;
                }
            }
            El::TeacherField(f) => {
                if let Some(t) = self.teacher.as_mut() {
                    set_name(&mut t.name, f, v);
                }
            }
            El::TeacherEmail => {
                if let Some(t) = self.teacher.as_mut() {
                    t.email = v;
                }
            }
            El::TeacherRole => {
                if let (Some(v), Some(t)) = (v, self.teacher.as_mut()) {
                    t.roles.push(v);
                }
            }
            El::TeacherGroupRole => {
                if let (Some(v), Some(link)) =
                    (v, self.teacher.as_mut().and_then(|t| t.groups.last_mut()))
                {
                    link.roles.push(v);
                }
            }
            _ => {}
        }
    }

    /// A field read whole in one piece (`<x>text</x>`, nearly all of them): checked as
    /// `push_text` checks, without the text buffer and the two tokens between.
    fn leaf(&mut self, el: El, raw: &[u8], position: u64) -> Result<(), ParseError> {
        let value = match plain_value(raw).filter(|_| raw.len() <= MAX_TEXT) {
            Some(value) => value,
            None => {
                let text = unescaped(raw).map_err(|reason| xml_error(position, &reason))?;
                check_text(&text, position)?;
                trimmed(&text)
            }
        };
        self.set_field(el, value);
        Ok(())
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

    /// A pupil without any key cannot be matched to anyone: refused at once, its fields unread.
    fn start_pupil(&mut self, las_key: Option<String>, eckid: Option<String>) {
        if las_key.is_none() && eckid.is_none() {
            self.parsed.rejects.push(Reject {
                entity: "pupil".into(),
                key: format!("#{}", self.pupil_count),
                reason: "a pupil without a key or ECK-iD".into(),
            });
            return;
        }
        self.in_pupil = true;
        self.parsed.pupils.push(PupilRecord {
            keys: PersonKeys {
                las_key,
                eckid,
                ..PersonKeys::default()
            },
            name: PersonName::default(),
            year_group: None,
            group: None,
            subgroups: Vec::new(),
        });
    }

    fn pupil(&mut self) -> Option<&mut PupilRecord> {
        if self.in_pupil {
            self.parsed.pupils.last_mut()
        } else {
            None
        }
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

    /// Appends a kept field's text: raw (references resolved here) or CDATA (verbatim).
    fn push_text(&mut self, raw: &[u8], verbatim: bool, position: u64) -> Result<(), ParseError> {
        let from = self.text.len();
        if verbatim {
            let s = std::str::from_utf8(raw)
                .map_err(|_| xml_error(position, "bytes that are not UTF-8"))?;
            self.text.push_str(s);
        } else {
            unescape(raw, &mut self.text).map_err(|reason| xml_error(position, &reason))?;
        }
        check_text(&self.text[from..], position)?;
        if self.text.len() > MAX_TEXT {
            return Err(too_long());
        }
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
pub fn parse_answer<R: Read>(input: R) -> Result<Answer, ParseError> {
    let mut tokens = Tokenizer::new(input);
    let mut scopes = Scopes::default();
    let mut st = State::default();
    let mut done = false;
    // Text outside kept fields is not kept, but its references must still be well-formed.
    let mut discarded = String::new();
    loop {
        let (position, token) = tokens.next_token()?;
        match token {
            Token::Start(_) | Token::Empty(_) if done => {
                return Err(ParseError::Structure(
                    "content after the end of the answer".into(),
                ));
            }
            Token::Start(e) | Token::Empty(e) => {
                let empty = matches!(token, Token::Empty(_));
                st.element(&mut scopes, &e, empty, position)?;
                done = empty && st.stack.is_empty();
                // A field read whole: kept, or (a field outside the smalle set) checked and dropped.
                if let Some(el) = st.stack.last().copied().filter(|el| el.is_leaf())
                    && let Some(raw) = tokens.leaf_text()
                {
                    st.stack.pop();
                    if el == El::Skip {
                        check_references(raw, &mut discarded, position)?;
                    } else {
                        st.leaf(el, raw, position)?;
                    }
                    scopes.leave(st.stack.len());
                }
            }
            Token::End => {
                let Some(el) = st.stack.pop() else {
                    return Err(xml_error(position, "a closing tag without an opening tag"));
                };
                st.end(el);
                scopes.leave(st.stack.len());
                done = st.stack.is_empty();
            }
            Token::Text(t) if st.stack.is_empty() => {
                // Only white space may stand outside the root element: anything else is a
                // broken body (a proxy's page glued on, two answers in one), not an answer.
                if !is_blank(t) {
                    return Err(xml_error(position, "text outside the root element"));
                }
            }
            Token::CData(_) if st.stack.is_empty() => {
                return Err(xml_error(position, "content outside the root element"));
            }
            Token::Text(t) if st.stack.last().is_some_and(|el| el.keeps_text()) => {
                st.push_text(t, false, position)?;
            }
            Token::CData(t) if st.stack.last().is_some_and(|el| el.keeps_text()) => {
                st.push_text(t, true, position)?;
            }
            Token::Text(t) => check_references(t, &mut discarded, position)?,
            Token::CData(_) => {}
            Token::Eof => break,
        }
    }
    if !st.stack.is_empty() || !done {
        return Err(ParseError::Incomplete {
            position: tokens.position(),
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
