//! The tokenizer against quick-xml's reader on the same documents, at every window and read
//! size, and against what it must refuse.

use std::io::Read;
use std::path::PathBuf;

use super::*;

/// A token as both readers can say it: text merged and with its references resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Start(String, String),
    Empty(String, String),
    End,
    Text(String),
    CData(String),
}

fn push_text(out: &mut Vec<Tok>, s: &str) {
    if s.is_empty() {
        return;
    }
    if let Some(Tok::Text(t)) = out.last_mut() {
        t.push_str(s);
    } else {
        out.push(Tok::Text(s.to_owned()));
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// quick-xml's events, as the reference.
fn reference(doc: &[u8]) -> Vec<Tok> {
    use quick_xml::events::Event;
    let mut r = quick_xml::Reader::from_reader(doc);
    r.config_mut().check_end_names = true;
    let mut buf = Vec::new();
    let mut out = Vec::new();
    loop {
        buf.clear();
        match r.read_event_into(&mut buf).expect("the reference reads it") {
            Event::Start(e) => out.push(Tok::Start(
                e.name().as_ref().to_owned(),
                e.attributes_raw().to_owned(),
            )),
            Event::Empty(e) => out.push(Tok::Empty(
                e.name().as_ref().to_owned(),
                e.attributes_raw().to_owned(),
            )),
            Event::End(_) => out.push(Tok::End),
            Event::Text(t) => push_text(&mut out, &t),
            Event::CData(t) => out.push(Tok::CData(t.to_string())),
            Event::GeneralRef(g) => {
                let c = match g.resolve_char_ref().expect("a reference") {
                    Some(c) => c,
                    None => reference_char(g.as_ref().as_bytes()).expect("predefined"),
                };
                push_text(&mut out, c.encode_utf8(&mut [0; 4]));
            }
            Event::Eof => return out,
            _ => {}
        }
    }
}

fn reference_char(name: &[u8]) -> Option<char> {
    super::reference(name)
}

/// Hands over at most `step` bytes a read, so tokens cross every read boundary.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Our tokens; with `leaves`, every start tag first tries `leaf_text`, as the parser does.
fn ours(doc: &[u8], window: usize, step: usize, leaves: bool) -> Result<Vec<Tok>, ParseError> {
    let mut t = Tokenizer::with_window(Trickle { data: doc, step }, window);
    let mut out = Vec::new();
    loop {
        let start = match t.next_token()?.1 {
            Token::Start(e) => {
                out.push(Tok::Start(lossy(e.name), lossy(e.attrs)));
                true
            }
            Token::Empty(e) => {
                out.push(Tok::Empty(lossy(e.name), lossy(e.attrs)));
                false
            }
            Token::End => {
                out.push(Tok::End);
                false
            }
            Token::Text(raw) => {
                let mut s = String::new();
                unescape(raw, &mut s).map_err(ParseError::Structure)?;
                push_text(&mut out, &s);
                false
            }
            Token::CData(c) => {
                out.push(Tok::CData(lossy(c)));
                false
            }
            Token::Eof => return Ok(out),
        };
        if start
            && leaves
            && let Some(raw) = t.leaf_text()
        {
            let mut s = String::new();
            unescape(raw, &mut s).map_err(ParseError::Structure)?;
            push_text(&mut out, &s);
            out.push(Tok::End);
        }
    }
}

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/uwlr-examples");
    let mut docs: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("the examples")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .map(|p| {
            (
                p.display().to_string(),
                std::fs::read(&p).expect("readable"),
            )
        })
        .collect();
    assert!(docs.len() >= 7, "the UWLR examples are missing");
    let school = connector_sim::SimSchool::generate(
        "99XX00".parse().expect("id"),
        connector_sim::SchoolKind::Primary,
        60,
        connector_api::SchoolYear::containing(
            chrono::NaiveDate::from_ymd_opt(2025, 10, 1).expect("date"),
        ),
        7,
    );
    let sim = connector_sim::uwlr::answer(
        &school,
        connector_sim::uwlr::Operation::AllInOne,
        "2.2",
        &[],
    );
    docs.push(("simulated".into(), sim.into_bytes()));
    docs.push((
        "odd corners".into(),
        "\u{feff}<?xml version=\"1.0\"?>\n<!-- a comment -->\n<s:a xmlns:s='urn:x' k = \"1 &gt; 0\"\t>\
         <b>Ba&#351;ak &amp; Zo&#xEB; &lt;3</b><c/><d x='\"'/><e><![CDATA[<not a tag> & raw]]></e>\
         <f>one<!-- between -->two</f><g >spaced</g ><?pi here?>\r\n</s:a>\n"
            .into(),
    ));
    docs
}

#[test]
fn tokens_match_quick_xml_on_every_example_at_every_window_and_read_size() {
    for (name, doc) in fixtures() {
        let expected = reference(&doc);
        assert!(expected.len() > 3, "{name}: nothing read");
        for (window, step) in [
            (16, 1),
            (16, 7),
            (40, 3),
            (WINDOW, 4096),
            (WINDOW, usize::MAX),
        ] {
            for leaves in [false, true] {
                let got = ours(&doc, window, step, leaves)
                    .unwrap_or_else(|e| panic!("{name} ({window}, {step}): {e}"));
                assert_eq!(got, expected, "{name}: window {window}, reads of {step}");
            }
        }
    }
}

#[test]
fn long_text_comes_in_pieces_that_split_no_character_or_reference() {
    let unit = "é&amp;x&#235;€ ";
    let doc = format!("<a>{}</a>", unit.repeat(5_000));
    let mut expected = String::new();
    unescape(unit.repeat(5_000).as_bytes(), &mut expected).expect("well-formed");
    for window in [16, 100, WINDOW] {
        let got = ours(doc.as_bytes(), window, 5, false).expect("reads");
        assert_eq!(
            got,
            vec![
                Tok::Start("a".into(), String::new()),
                Tok::Text(expected.clone()),
                Tok::End
            ],
            "window {window}"
        );
    }
    // And the window did not grow for it: text is handed over, not held.
    let mut t = Tokenizer::with_window(doc.as_bytes(), 64);
    while !matches!(t.next_token().expect("reads").1, Token::Eof) {}
    assert_eq!(t.window.len(), 64);
}

fn refusal(doc: &[u8]) -> ParseError {
    ours(doc, WINDOW, usize::MAX, true).expect_err("refused")
}

#[test]
fn what_is_not_a_plain_well_formed_answer_is_refused() {
    let xml = |doc: &[u8]| matches!(refusal(doc), ParseError::Xml { .. });
    let incomplete = |doc: &[u8]| matches!(refusal(doc), ParseError::Incomplete { .. });
    let structure = |doc: &[u8]| matches!(refusal(doc), ParseError::Structure(_));
    assert!(xml(b"<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>"), "a DTD");
    assert!(xml(b"<a></b>"), "a closing tag for another element");
    assert!(xml(b"</a>"), "a closing tag without a start");
    let shown = refusal(b"<naam>x</Jansen, Piet>").to_string();
    assert!(
        shown.contains("<naam>") && !shown.contains("Jansen"),
        "{shown}"
    );
    assert!(xml(b"<a>\xff</a>"), "a byte that is not UTF-8");
    assert!(xml(b"<a>\xc3"), "a character cut by the end");
    assert!(xml(b"<1a/>"), "a name starting with a digit");
    assert!(xml(b"< a/>"), "no name");
    assert!(xml(b"<a/ b='1'>"), "a '/' inside a tag");
    assert!(xml(b"<a\"b/>"), "a quote in a name");
    assert!(incomplete(b"<a b='1"), "a tag cut by the end");
    assert!(
        incomplete(b"<a><!-- never closed"),
        "a comment cut by the end"
    );
    assert!(
        incomplete(b"<a><![CDATA[ never closed"),
        "CDATA cut by the end"
    );
    assert!(structure(
        &format!(
            "{}{}",
            "<a>".repeat(MAX_DEPTH + 1),
            "</a>".repeat(MAX_DEPTH + 1)
        )
        .into_bytes()
    ));
    let long_name = format!("<{}/>", "a".repeat(MAX_NAME + 1));
    assert!(
        structure(long_name.as_bytes()),
        "a name longer than any element has"
    );
    let long_tag = format!("<a b=\"{}\"/>", "x".repeat(MAX_TOKEN));
    assert!(
        structure(long_tag.as_bytes()),
        "a tag longer than any answer has"
    );
    // Just inside the limits is fine.
    let deep = format!("{}{}", "<a>".repeat(MAX_DEPTH), "</a>".repeat(MAX_DEPTH));
    assert!(ours(deep.as_bytes(), WINDOW, usize::MAX, true).is_ok());
}

#[test]
fn references_resolve_strictly() {
    let text = |raw: &str| {
        let mut s = String::new();
        unescape(raw.as_bytes(), &mut s).map(|()| s)
    };
    assert_eq!(
        text("a &lt;&gt;&amp;&apos;&quot; &#65;&#x42;&#x1F600;").as_deref(),
        Ok("a <>&'\" AB😀")
    );
    for bad in [
        "&#0;",
        "&#x+41;",
        "&#+65;",
        "&#xD800;",
        "&#x110000;",
        "&nbsp;",
        "a & b",
        "&;",
        "&#x;",
    ] {
        assert!(text(bad).is_err(), "{bad} was accepted");
    }
    assert_eq!(unescaped(b"plain").expect("ok"), Cow::Borrowed("plain"));
    // What stands between a stray '&' and a ';' may be a name: the error does not repeat it.
    let err = text("Smit &Jansen; Piet").expect_err("refused");
    assert!(!err.contains("Jansen"), "{err}");
}

#[test]
fn attributes_are_read_and_their_syntax_checked() {
    let attrs = |raw: &'static [u8]| -> Result<Vec<(String, String)>, &'static str> {
        Tag::new(b"e", raw)
            .attributes()
            .map(|a| a.map(|(k, v)| (lossy(k), lossy(v))))
            .collect()
    };
    assert_eq!(
        attrs(b" key=\"L1\" eckid = 'https://x/y?a=1&amp;b' \t"),
        Ok(vec![
            ("key".into(), "L1".into()),
            ("eckid".into(), "https://x/y?a=1&amp;b".into())
        ])
    );
    for bad in [
        &b" key=L1"[..],
        b" key\"L1\"",
        b" a=\"1\"b=\"2\"",
        b" a=\"x<y\"",
        b" a=\"open",
        b" =\"v\"",
    ] {
        assert!(attrs(bad).is_err(), "{} was accepted", lossy(bad));
    }
}

#[test]
fn plain_means_printable_ascii_without_references() {
    for b in 0..=255u8 {
        let expected = (0x20..=0x7e).contains(&b) && b != b'&';
        assert_eq!(plain(&[b'a', b, b'z']).is_some(), expected, "byte {b:#04x}");
    }
    assert_eq!(plain(b"Jansen"), Some("Jansen"));
    assert_eq!(plain("Zoë".as_bytes()), None);
}

#[test]
fn a_leaf_is_taken_whole_only_when_it_is_text_and_its_own_end_tag() {
    let first_leaf = |doc: &'static [u8]| {
        let mut t = Tokenizer::new(doc);
        assert!(matches!(t.next_token().expect("reads").1, Token::Start(_)));
        t.leaf_text().map(lossy)
    };
    assert_eq!(first_leaf(b"<a>text</a>").as_deref(), Some("text"));
    assert_eq!(first_leaf(b"<a></a>").as_deref(), Some(""));
    assert_eq!(first_leaf(b"<a>t<!-- c --></a>"), None);
    assert_eq!(first_leaf(b"<a>t</a >"), None, "read by the general path");
    assert_eq!(first_leaf(b"<a>t</ab>"), None);
    assert_eq!(first_leaf(b"<a><b/></a>"), None);
}

/// A small deterministic generator: the mutations below are the same on every run.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

#[test]
fn mutated_answers_are_read_or_refused_never_a_panic() {
    // Bytes that matter to the tokenizer, so mutations hit its edges rather than only text.
    const PICKS: &[u8] = b"<>/!?&;#x\"'=: \n-[]CDATA\xc3\xa9\xff";
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for (_, doc) in fixtures() {
        for round in 0..400 {
            let mut m = doc.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(m.len());
                let b = PICKS[rng.below(PICKS.len())];
                match rng.below(3) {
                    0 => m[at] = b,
                    1 => m.insert(at, b),
                    _ => {
                        m.remove(at);
                    }
                }
            }
            let window = [16, 33, WINDOW][round % 3];
            // Either outcome is fine; a panic is not (the seed is fixed: it comes back).
            let _ = ours(&m, window, 1 + rng.below(64), round % 2 == 0);
            let _ = crate::parse::parse_answer(&m[..]);
        }
    }
}
