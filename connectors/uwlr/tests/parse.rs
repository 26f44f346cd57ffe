//! The parser against the official example messages and against broken and drifting input.

use std::collections::HashSet;
use std::path::PathBuf;

use connector_api::{GroupKind, RoleScope};
use connector_uwlr::integrity;
use connector_uwlr::parse::{Answer, ParseError, Parsed, parse_answer};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/uwlr-examples")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn data(bytes: &[u8]) -> Parsed {
    match parse_answer(bytes).expect("parses") {
        Answer::Data(p) => *p,
        other => panic!("expected data, got {other:?}"),
    }
}

#[test]
fn the_full_example_answer() {
    let p = data(&fixture("leerlinggegevens_antwoord.full-2.2.xml"));
    assert_eq!(p.school.school_year.as_deref(), Some("2024-2025"));
    assert_eq!(p.school.brin.as_deref(), Some("99XX"));
    assert_eq!(p.groups.len(), 3);
    let g78 = p.groups.iter().find(|g| g.key == "G78").expect("G78");
    assert_eq!(
        (g78.name.as_str(), g78.year_group.as_deref()),
        ("Groep 7/8", Some("C"))
    );
    assert_eq!(g78.kind, GroupKind::Stamgroep);
    let plus = p
        .groups
        .iter()
        .find(|g| g.key == "SG-PLUS")
        .expect("SG-PLUS");
    assert_eq!(plus.kind, GroupKind::Samengesteld);

    assert_eq!(p.pupils.len(), 2);
    let sanne = &p.pupils[0];
    assert_eq!(sanne.keys.las_key.as_deref(), Some("L1001"));
    assert!(
        sanne
            .keys
            .eckid
            .as_deref()
            .is_some_and(|e| e.starts_with("https://ketenid.nl/201703/"))
    );
    assert_eq!(sanne.name.family_name.as_deref(), Some("Vries"));
    assert_eq!(sanne.name.prefix.as_deref(), Some("de"));
    assert_eq!(sanne.name.given_name.as_deref(), Some("Sanne"));
    assert_eq!(sanne.group.as_deref(), Some("G8A"));
    assert_eq!(sanne.subgroups, vec!["SG-PLUS".to_owned()]);
    let ali = &p.pupils[1];
    assert_eq!(ali.name.family_name, None, "a one-name pupil");
    assert_eq!(ali.name.given_name.as_deref(), Some("Ali"));

    assert_eq!(p.staff.len(), 2);
    let jansen = &p.staff[0];
    assert_eq!(jansen.email.as_deref(), Some("p.jansen@school.example"));
    assert_eq!(jansen.groups.len(), 2);
    assert_eq!(jansen.groups[0].group, "G8A");
    assert_eq!(jansen.groups[0].roles, vec!["LRK".to_owned()]);
    let ib = &p.staff[1];
    assert!(ib.groups.is_empty());
    assert_eq!(ib.roles[0].name, "IB");
    assert_eq!(ib.roles[0].scope, RoleScope::School);
    assert!(p.rejects.is_empty());
    // Birth dates are outside what we keep: nothing of 2013-05-02 survives parsing.
    assert!(!format!("{p:?}").contains("2013-05-02"));
}

#[test]
fn geenwijzigingen_and_geengegevens() {
    assert_eq!(
        parse_answer(&fixture("leerlinggegevens_antwoord.geenwijzigingen.xml")[..]).expect("ok"),
        Answer::Unchanged
    );
    let none = br#"<leerlinggegevens_antwoord xmlns="http://www.edustandaard.nl/leerresultaten/2/leerlinggegevens"><geengegevens/></leerlinggegevens_antwoord>"#;
    assert_eq!(parse_answer(&none[..]).expect("ok"), Answer::NoData);
}

#[test]
fn the_structure_example_has_groups_and_no_people() {
    let p = data(&fixture("structuur_antwoord.xml"));
    assert_eq!(p.groups.len(), 2);
    assert!(p.pupils.is_empty() && p.staff.is_empty());
}

#[test]
fn the_fault_example() {
    let a = parse_answer(&fixture("soap-fault.AutorisatieOngeldig.xml")[..]).expect("parses");
    match a {
        Answer::Fault { code, message } => {
            assert_eq!(code, "Client.AutorisatieOngeldig");
            assert!(message.contains("Autorisatiesleutel"));
        }
        other => panic!("expected a fault, got {other:?}"),
    }
}

#[test]
fn requests_are_not_answers() {
    for name in [
        "leerlinggegevens_verzoek.xml",
        "leerlingen_verzoek.getrapt.xml",
        "soap-request.HaalLeerlinggegevens.xml",
    ] {
        let err = parse_answer(&fixture(name)[..]).expect_err(name);
        assert!(matches!(err, ParseError::Structure(_)), "{name}: {err}");
    }
}

#[test]
fn any_prefix_and_a_soap_envelope_read_the_same() {
    let plain = fixture("leerlinggegevens_antwoord.full-2.2.xml");
    let text = String::from_utf8(plain.clone()).expect("utf-8");
    let body = text.trim_start_matches(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let prefixed = body.replace("<", "<le:").replace("<le:/", "</le:").replace(
        r#"xmlns="http://www.edustandaard.nl/leerresultaten/2/leerlinggegevens""#,
        r#"xmlns:le="http://www.edustandaard.nl/leerresultaten/2/leerlinggegevens""#,
    );
    let wrapped = format!(
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header/><s:Body>{prefixed}</s:Body></s:Envelope>"#
    );
    assert_eq!(data(&plain), data(prefixed.as_bytes()));
    assert_eq!(data(&plain), data(wrapped.as_bytes()));
}

#[test]
fn fields_outside_the_smalle_set_are_dropped_and_unknown_elements_tolerated() {
    let doc = r#"<leerlinggegevens_antwoord xmlns="http://www.edustandaard.nl/leerresultaten/2/leerlinggegevens"><leerlinggegevens>
      <school><schooljaar>2026-2027</schooljaar><brincode>99XX</brincode><nieuw_veld>x</nieuw_veld></school>
      <groepen><groep key="G1"><jaargroep>1</jaargroep><naam>Groep 1</naam></groep></groepen>
      <leerlingen><leerling key="L1"><roepnaam>Emma</roepnaam><achternaam>Smit</achternaam>
        <geboortedatum>2020-01-01</geboortedatum><bsn>123456782</bsn><postcodenl>1234AB</postcodenl>
        <land>6030</land><jaargroep>1</jaargroep><groep key="G1"/><onbekend><diep>1</diep></onbekend></leerling></leerlingen>
    </leerlinggegevens></leerlinggegevens_antwoord>"#;
    let p = data(doc.as_bytes());
    // A school year beyond the 2.2 enumeration and elements out of order are fine.
    assert_eq!(p.school.school_year.as_deref(), Some("2026-2027"));
    assert_eq!(p.groups[0].name, "Groep 1");
    assert_eq!(p.pupils[0].name.family_name.as_deref(), Some("Smit"));
    let shown = format!("{p:?}");
    for dropped in ["2020-01-01", "123456782", "1234AB", "6030"] {
        assert!(!shown.contains(dropped), "{dropped} was kept");
    }
}

#[test]
fn entities_and_diacritics_survive() {
    let doc = r#"<leerlinggegevens_antwoord xmlns="http://www.edustandaard.nl/leerresultaten/2/leerlinggegevens"><leerlinggegevens><school><schooljaar>2025-2026</schooljaar></school>
      <leerlingen><leerling key="L&amp;1"><achternaam>Ba&#351;ak &amp; Zo&#235;</achternaam><voorvoegsel>van der</voorvoegsel><roepnaam>Anaïs</roepnaam></leerling></leerlingen>
    </leerlinggegevens></leerlinggegevens_antwoord>"#;
    let p = data(doc.as_bytes());
    assert_eq!(p.pupils[0].keys.las_key.as_deref(), Some("L&1"));
    assert_eq!(p.pupils[0].name.family_name.as_deref(), Some("Başak & Zoë"));
    assert_eq!(p.pupils[0].name.prefix.as_deref(), Some("van der"));
    assert_eq!(p.pupils[0].name.given_name.as_deref(), Some("Anaïs"));
}

#[test]
fn every_truncation_is_an_error_never_partial_data() {
    let doc = fixture("leerlinggegevens_antwoord.full-2.2.xml");
    let end = doc.len()
        - doc
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_whitespace())
            .count();
    for cut in 0..end {
        assert!(
            parse_answer(&doc[..cut]).is_err(),
            "a body cut at byte {cut} of {end} was accepted"
        );
    }
}

#[test]
fn malformed_xml_is_an_error() {
    for doc in [
        "<leerlinggegevens_antwoord xmlns=\"http://www.edustandaard.nl/leerresultaten/2/leerlinggegevens\"><leerlinggegevens></leerlingen></leerlinggegevens_antwoord>",
        "<html><body>502 Bad Gateway</body></html>",
        "",
        "not xml at all",
        "<leerlinggegevens_antwoord xmlns=\"http://www.edustandaard.nl/leerresultaten/2/leerlinggegevens\"></leerlinggegevens_antwoord>",
    ] {
        assert!(parse_answer(doc.as_bytes()).is_err(), "accepted: {doc}");
    }
}

#[test]
fn junk_around_the_answer_and_control_characters_are_errors() {
    // Found by the fuzzer: text glued before or after the answer was ignored.
    let full = String::from_utf8(fixture("leerlinggegevens_antwoord.full-2.2.xml")).expect("utf-8");
    for doc in [
        format!("{full}9>\n"),
        format!("{full}<html>502</html>"),
        format!(
            "groe{}",
            full.trim_start_matches(r#"<?xml version="1.0" encoding="UTF-8"?>"#)
        ),
        full.replace("Plusklas", "Plus\u{0}klas"),
    ] {
        assert!(
            parse_answer(doc.as_bytes()).is_err(),
            "accepted: {}",
            &doc[doc.len().saturating_sub(40)..]
        );
    }
    // White space, comments and processing instructions around the root stay fine.
    let padded = format!("\n{full}\n<!-- generated -->\n");
    assert!(parse_answer(padded.as_bytes()).is_ok());
}

fn answer_with(pupils: &str, teachers: &str) -> Parsed {
    let doc = format!(
        r#"<leerlinggegevens_antwoord xmlns="http://www.edustandaard.nl/leerresultaten/2/leerlinggegevens"><leerlinggegevens><school><schooljaar>2025-2026</schooljaar></school>
        <groepen><groep key="G1"><naam>1</naam><jaargroep>1</jaargroep></groep><groep key="G2"><naam>2</naam><jaargroep>2</jaargroep></groep></groepen>
        <leerlingen>{pupils}</leerlingen><leerkrachten>{teachers}</leerkrachten></leerlinggegevens></leerlinggegevens_antwoord>"#
    );
    let mut p = data(doc.as_bytes());
    integrity::check(&mut p, &HashSet::new());
    p
}

#[test]
fn duplicate_keys_and_dangling_references_become_rejects() {
    let p = answer_with(
        r#"<leerling key="L1"><roepnaam>A</roepnaam><groep key="G1"/></leerling>
           <leerling key="L1"><roepnaam>B</roepnaam><groep key="G2"/></leerling>
           <leerling key="L2"><roepnaam>C</roepnaam><groep key="G9"/></leerling>
           <leerling><roepnaam>D</roepnaam></leerling>
           <leerling key="L3"><roepnaam>E</roepnaam><groep key="G2"/></leerling>"#,
        r#"<leerkracht key="M1"><roepnaam>T</roepnaam><groepen><groep key="G7"/></groepen></leerkracht>
           <leerkracht key="M2"><roepnaam>U</roepnaam><groepen><groep key="G1"><rol>LRK</rol></groep></groepen></leerkracht>"#,
    );
    let kept: Vec<_> = p
        .pupils
        .iter()
        .filter_map(|x| x.keys.las_key.as_deref())
        .collect();
    assert_eq!(kept, vec!["L3"]);
    let staff: Vec<_> = p
        .staff
        .iter()
        .filter_map(|x| x.keys.las_key.as_deref())
        .collect();
    assert_eq!(staff, vec!["M2"]);
    let rejected: Vec<(&str, &str)> = p
        .rejects
        .iter()
        .map(|r| (r.entity.as_str(), r.key.as_str()))
        .collect();
    assert!(rejected.contains(&("pupil", "L1")), "{rejected:?}");
    assert!(rejected.contains(&("pupil", "las:L2")), "{rejected:?}");
    assert!(rejected.contains(&("pupil", "#4")), "{rejected:?}");
    assert!(rejected.contains(&("staff", "las:M1")), "{rejected:?}");
    assert!(p.rejects.iter().any(|r| r.reason.contains("G9")));
}

#[test]
fn a_pupil_known_only_by_eckid_is_kept_in_2_3() {
    let p = answer_with(
        r#"<leerling eckid="https://ketenid.nl/201703/abc"><roepnaam>A</roepnaam><groep key="G1"/></leerling>"#,
        "",
    );
    assert_eq!(p.pupils.len(), 1);
    assert_eq!(p.pupils[0].keys.las_key, None);
}
