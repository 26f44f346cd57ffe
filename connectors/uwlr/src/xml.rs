//! A pull tokenizer for UWLR answers: tags, text and CDATA as slices of a window of our own,
//! never copied, with end tags checked against their start and the whole stream checked as
//! UTF-8 once. Memory is one window (one token at most), not the document.
//!
//! Why not quick-xml's reader: its buffered reader copies every event into a caller's buffer
//! and validates UTF-8 per event; half of a parse went there. A SOAP answer needs a small part
//! of XML (no DTD, no entities beyond the five predefined and character references), which
//! this reads strictly: anything else is an error, never a guess.

use std::borrow::Cow;
use std::io::Read;
use std::ops::Range;

use memchr::{memchr, memchr2, memchr3, memmem, memrchr};

use crate::parse::ParseError;

/// The window's first size and how much one read asks for.
const WINDOW: usize = 64 * 1024;
/// A tag, comment or CDATA section longer than this is not an answer (text may be longer:
/// it is handed over in pieces).
const MAX_TOKEN: usize = 1024 * 1024;
/// Deeper nesting is not a UWLR answer (eight levels are used); refused before it costs memory.
const MAX_DEPTH: usize = 64;
/// The longest element name (UWLR's longest has 29 bytes): open names are kept for their end
/// tags, so this and the depth bound what they hold.
const MAX_NAME: usize = 256;
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One token. `End` has been checked against its start tag already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    Start(Tag<'a>),
    /// `<name ... />`: a start and its end in one.
    Empty(Tag<'a>),
    End,
    /// Raw text, entity references unresolved (see [`unescape`]). Long text comes in pieces,
    /// each cut where no character and no reference is split.
    Text(&'a [u8]),
    CData(&'a [u8]),
    Eof,
}

/// A start tag: its qualified name and the raw attributes after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tag<'a> {
    pub name: &'a [u8],
    attrs: &'a [u8],
}

impl<'a> Tag<'a> {
    #[cfg(test)]
    pub fn new(name: &'a [u8], attrs: &'a [u8]) -> Self {
        Tag { name, attrs }
    }

    /// The name without its prefix.
    pub fn local_name(&self) -> &'a [u8] {
        local_part(self.name)
    }

    pub fn prefix(&self) -> Option<&'a [u8]> {
        colon(self.name).map(|i| &self.name[..i])
    }

    /// The attributes as (qualified name, raw value); a syntax error ends the iteration.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes { rest: self.attrs }
    }
}

/// A qualified name without its prefix.
pub(crate) fn local_part(name: &[u8]) -> &[u8] {
    match colon(name) {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

/// Names are a few bytes long: a plain loop beats memchr's setup.
fn colon(name: &[u8]) -> Option<usize> {
    name.iter().position(|&b| b == b':')
}

pub(crate) struct Attributes<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        let trimmed = trim_start(self.rest);
        if trimmed.is_empty() {
            return None;
        }
        let attribute = if trimmed.len() == self.rest.len() {
            Err("attributes must be separated by white space")
        } else {
            attribute(trimmed)
        };
        match attribute {
            Ok((name, value, rest)) => {
                self.rest = rest;
                Some(Ok((name, value)))
            }
            Err(e) => {
                self.rest = b"";
                Some(Err(e))
            }
        }
    }
}

type Attribute<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// `name = "value"` at the start of `s`, and what follows it.
fn attribute(s: &[u8]) -> Result<Attribute<'_>, &'static str> {
    let Some(name_len) = name_end(s).filter(|&n| n < s.len() && (s[n] == b'=' || is_space(s[n])))
    else {
        return Err("an attribute without a proper name");
    };
    let name = &s[..name_len];
    let after = trim_start(&s[name_len..]);
    let Some(after) = after.strip_prefix(b"=") else {
        return Err("an attribute without a value");
    };
    let after = trim_start(after);
    let quote = match after.first() {
        Some(&q @ (b'"' | b'\'')) => q,
        _ => return Err("an attribute value without quotes"),
    };
    let Some(len) = memchr2(quote, b'<', &after[1..]) else {
        return Err("an attribute value without its closing quote");
    };
    if after[1 + len] == b'<' {
        return Err("'<' in an attribute value");
    }
    let value = &after[1..1 + len];
    Ok((name, value, &after[len + 2..]))
}

/// Byte classes, looked up once per byte of a name (a per-byte list search cost a tenth of
/// a parse).
const SPACE: u8 = 1;
const NOT_IN_NAME: u8 = 2;
static CLASS: [u8; 256] = classes();

const fn classes() -> [u8; 256] {
    let mut t = [0u8; 256];
    let stops = b" \t\n\r<>&\"'=/!?;";
    let mut i = 0;
    while i < stops.len() {
        t[stops[i] as usize] = NOT_IN_NAME;
        i += 1;
    }
    let spaces = b" \t\n\r";
    let mut i = 0;
    while i < spaces.len() {
        t[spaces[i] as usize] |= SPACE;
        i += 1;
    }
    t
}

fn is_space(b: u8) -> bool {
    CLASS[b as usize] & SPACE != 0
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|&&b| is_space(b)).count();
    &s[n..]
}

fn trim_end(s: &[u8]) -> &[u8] {
    let n = s.iter().rev().take_while(|&&b| is_space(b)).count();
    &s[..s.len() - n]
}

pub(crate) fn is_blank(s: &[u8]) -> bool {
    s.iter().all(|&b| is_space(b))
}

/// The length of the name that starts `s` (up to white space, the end or any byte that
/// cannot be in a name), `None` when there is none.
fn name_end(s: &[u8]) -> Option<usize> {
    if s.first().is_none_or(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = s
        .iter()
        .position(|&b| CLASS[b as usize] & NOT_IN_NAME != 0)
        .unwrap_or(s.len());
    (n > 0).then_some(n)
}

/// What a scan of the window found; ranges index the window.
enum Found {
    Start {
        name: Range<usize>,
        attrs: Range<usize>,
        empty: bool,
    },
    End,
    Text(Range<usize>),
    CData(Range<usize>),
    /// A comment, processing instruction, XML declaration or byte-order mark.
    Skipped,
    Eof,
}

pub(crate) struct Tokenizer<R> {
    input: R,
    window: Vec<u8>,
    /// The next unread byte; `window[..end]` holds data.
    pos: usize,
    end: usize,
    /// `window[..checked]` is valid UTF-8; what follows is at most a split character.
    checked: usize,
    /// The stream offset of `window[0]`.
    base: u64,
    eof: bool,
    first: bool,
    /// The names of the open elements, end to end, and where each starts.
    names: Vec<u8>,
    starts: Vec<usize>,
}

impl<R: Read> Tokenizer<R> {
    pub fn new(input: R) -> Self {
        Self::with_window(input, WINDOW)
    }

    /// A first window of `size` bytes (tests use tiny ones to cross every boundary).
    pub fn with_window(input: R, size: usize) -> Self {
        Tokenizer {
            input,
            window: vec![0; size.max(16)],
            pos: 0,
            end: 0,
            checked: 0,
            base: 0,
            eof: false,
            first: true,
            names: Vec::new(),
            starts: Vec::new(),
        }
    }

    /// The stream offset of the next token.
    pub fn position(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// The next token and the stream offset where it starts.
    pub fn next_token(&mut self) -> Result<(u64, Token<'_>), ParseError> {
        let (at, found) = loop {
            let at = self.pos;
            match self.scan(at)? {
                Some(Found::Skipped) => {}
                Some(found) => break (at, found),
                None => self.fill()?,
            }
        };
        let w = &self.window;
        let token = match found {
            Found::Start { name, attrs, empty } => {
                let tag = Tag {
                    name: &w[name],
                    attrs: &w[attrs],
                };
                if empty {
                    Token::Empty(tag)
                } else {
                    Token::Start(tag)
                }
            }
            Found::End => Token::End,
            Found::Text(r) => Token::Text(&w[r]),
            Found::CData(r) => Token::CData(&w[r]),
            // `Skipped` never leaves the loop above.
            Found::Skipped | Found::Eof => Token::Eof,
        };
        Ok((self.base + at as u64, token))
    }

    /// Right after a start tag: its text and its end tag at once, when both are in the
    /// window already (most fields are `<x>text</x>`). `None` consumes nothing.
    pub fn leaf_text(&mut self) -> Option<&[u8]> {
        let at = self.pos;
        let rest = &self.window[at..self.end];
        let lt = memchr(b'<', rest)?;
        let start = *self.starts.last()?;
        let name = &self.names[start..];
        let close = rest[lt..].strip_prefix(b"</")?.strip_prefix(name)?;
        if close.first() != Some(&b'>') {
            return None;
        }
        self.pos = at + lt + 2 + name.len() + 1;
        self.starts.pop();
        self.names.truncate(start);
        Some(&self.window[at..at + lt])
    }

    /// The token at `at`, or `None` when the window does not hold all of it yet.
    fn scan(&mut self, at: usize) -> Result<Option<Found>, ParseError> {
        if self.first {
            if self.end < BOM.len() && !self.eof {
                return Ok(None);
            }
            self.first = false;
            if self.window[..self.end].starts_with(BOM) {
                self.pos = BOM.len();
                return Ok(Some(Found::Skipped));
            }
        }
        if at == self.end {
            return Ok(self.eof.then_some(Found::Eof));
        }
        if self.window[at] != b'<' {
            return Ok(self.text(at));
        }
        match self.window[..self.end].get(at + 1) {
            None => self.more(at),
            Some(b'/') => self.end_tag(at),
            Some(b'?') => self.until(at, 2, b"?>", false),
            Some(b'!') => self.bang(at),
            Some(_) => self.start_tag(at),
        }
    }

    /// Not enough bytes for the token at `at`: wait for more, or the answer ends inside it.
    fn more(&self, at: usize) -> Result<Option<Found>, ParseError> {
        if self.eof {
            Err(ParseError::Incomplete {
                position: self.base + at as u64,
            })
        } else {
            Ok(None)
        }
    }

    fn error(&self, at: usize, reason: &str) -> ParseError {
        ParseError::Xml {
            position: self.base + at as u64,
            reason: reason.into(),
        }
    }

    fn text(&mut self, at: usize) -> Option<Found> {
        let stop = match memchr(b'<', &self.window[at..self.end]) {
            Some(i) => at + i,
            None if self.eof => self.end,
            // Text as long as the window: handed over in pieces rather than growing it.
            None if at == 0 && self.end == self.window.len() => {
                text_cut(&self.window[..self.checked])
            }
            None => return None,
        };
        if stop == at {
            return None;
        }
        self.pos = stop;
        Some(Found::Text(at..stop))
    }

    fn start_tag(&mut self, at: usize) -> Result<Option<Found>, ParseError> {
        let rest = &self.window[at + 1..self.end];
        let Some(n) = name_end(rest) else {
            return Err(self.error(at, "a tag without a proper name"));
        };
        if n > MAX_NAME {
            return Err(ParseError::Structure(format!(
                "an element name near byte {} is longer than {MAX_NAME} bytes",
                self.base + at as u64
            )));
        }
        // Most tags have no attributes: the name's end shows it, and the search for a `>`
        // outside quotes is needed only when attributes follow.
        let gt = match rest.get(n) {
            None => None,
            Some(b'>') => Some(n),
            Some(b'/') => rest.get(n + 1).map(|_| n + 1),
            Some(&b) if is_space(b) => tag_end(&rest[n..]).map(|i| n + i),
            Some(_) => return Err(self.error(at, "a tag without a proper name")),
        };
        let Some(gt) = gt else {
            return self.more(at);
        };
        if rest[gt] != b'>' {
            return Err(self.error(at, "a '/' in a tag that does not end it"));
        }
        let (body, empty) = match rest[..gt].strip_suffix(b"/") {
            Some(body) => (body, true),
            None => (&rest[..gt], false),
        };
        let body_len = body.len();
        let name = at + 1..at + 1 + n;
        if !empty {
            self.open(at, name.clone())?;
        }
        self.pos = at + 1 + gt + 1;
        Ok(Some(Found::Start {
            attrs: name.end..at + 1 + body_len,
            name,
            empty,
        }))
    }

    /// Remembers an element's name (at `name` in the window) for its end tag.
    fn open(&mut self, at: usize, name: Range<usize>) -> Result<(), ParseError> {
        if self.starts.len() >= MAX_DEPTH {
            return Err(ParseError::Structure(format!(
                "elements nested deeper than {MAX_DEPTH} levels near byte {}",
                self.base + at as u64
            )));
        }
        self.starts.push(self.names.len());
        self.names.extend_from_slice(&self.window[name]);
        Ok(())
    }

    fn end_tag(&mut self, at: usize) -> Result<Option<Found>, ParseError> {
        let Some(gt) = memchr(b'>', &self.window[at + 2..self.end]) else {
            return self.more(at);
        };
        let name = trim_end(&self.window[at + 2..at + 2 + gt]);
        let Some(start) = self.starts.last().copied() else {
            return Err(self.error(at, "a closing tag without an opening tag"));
        };
        if self.names[start..] != *name {
            // Only the open element's name (checked as a name) is shown: what follows `</`
            // in a broken answer may be any text, a pupil's name among it.
            let reason = format!(
                "a closing tag that does not close <{}>",
                String::from_utf8_lossy(&self.names[start..])
            );
            return Err(self.error(at, &reason));
        }
        self.starts.pop();
        self.names.truncate(start);
        self.pos = at + 2 + gt + 1;
        Ok(Some(Found::End))
    }

    /// `<!--`, `<![CDATA[`; anything else after `<!` (a DOCTYPE above all) is refused: a SOAP
    /// message must not have one, and a DTD is how entity expansion attacks come in.
    fn bang(&mut self, at: usize) -> Result<Option<Found>, ParseError> {
        let head = &self.window[at..self.end];
        if head.starts_with(b"<!--") {
            return self.until(at, 4, b"-->", false);
        }
        if head.starts_with(b"<![CDATA[") {
            return self.until(at, 9, b"]]>", true);
        }
        if b"<![CDATA[".starts_with(head) || b"<!--".starts_with(head) {
            return self.more(at);
        }
        Err(self.error(
            at,
            "a DOCTYPE or other declaration (a SOAP answer must not have one)",
        ))
    }

    /// A token from `at` to the first `close` after its `open` bytes: skipped, or CDATA's content.
    fn until(
        &mut self,
        at: usize,
        open: usize,
        close: &[u8],
        cdata: bool,
    ) -> Result<Option<Found>, ParseError> {
        let from = (at + open).min(self.end);
        let Some(i) = memmem::find(&self.window[from..self.end], close) else {
            return self.more(at);
        };
        self.pos = from + i + close.len();
        Ok(Some(if cdata {
            Found::CData(from..from + i)
        } else {
            Found::Skipped
        }))
    }

    /// Moves the unread bytes to the window's start and reads more, growing the window only
    /// when one token fills it.
    fn fill(&mut self) -> Result<(), ParseError> {
        if self.pos > 0 {
            self.window.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.checked -= self.pos;
            self.base += self.pos as u64;
            self.pos = 0;
        }
        if self.end == self.window.len() {
            if self.window.len() >= MAX_TOKEN {
                return Err(ParseError::Structure(format!(
                    "a tag, comment or CDATA section near byte {} is longer than {} KiB",
                    self.base,
                    MAX_TOKEN / 1024
                )));
            }
            let grown = (self.window.len() * 2).min(MAX_TOKEN);
            self.window.resize(grown, 0);
        }
        let n = loop {
            match self.input.read(&mut self.window[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ParseError::Io(e)),
            }
        };
        self.end += n;
        self.eof = n == 0;
        self.check_utf8()
    }

    fn check_utf8(&mut self) -> Result<(), ParseError> {
        match std::str::from_utf8(&self.window[self.checked..self.end]) {
            Ok(_) => self.checked = self.end,
            Err(e) => {
                self.checked += e.valid_up_to();
                // A character split by the read completes with the next; anything else is not UTF-8.
                if e.error_len().is_some() || self.eof {
                    return Err(self.error(self.checked, "bytes that are not UTF-8"));
                }
            }
        }
        Ok(())
    }
}

/// The first `>` in `s` outside quoted attribute values.
fn tag_end(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        i += memchr3(b'>', b'"', b'\'', &s[i..])?;
        if s[i] == b'>' {
            return Some(i);
        }
        i += 1 + memchr(s[i], &s[i + 1..])? + 1;
    }
}

/// Where to cut a piece of text from `s`: before a reference that has no `;` yet. `s` is
/// the window's checked part, so its end (and any `&`) is a character's boundary.
fn text_cut(s: &[u8]) -> usize {
    match memrchr(b'&', s) {
        Some(amp) if memchr(b';', &s[amp..]).is_none() => amp,
        _ => s.len(),
    }
}

/// `raw` as text when it is printable ASCII (0x20 to 0x7e) without references, as nearly every
/// value is: nothing to resolve, nothing to refuse, and no UTF-8 to validate. One branch-free
/// pass the compiler vectorizes; validating again cost a twentieth of a parse.
pub(crate) fn plain(raw: &[u8]) -> Option<&str> {
    let plain = raw.iter().fold(true, |ok, &b| {
        ok & (b.wrapping_sub(0x20) < 0x5f) & (b != b'&')
    });
    // SAFETY: every byte was just checked to be below 0x80: ASCII, valid UTF-8 on its own.
    plain.then(|| unsafe { std::str::from_utf8_unchecked(raw) })
}

/// `raw` with its references resolved; borrowed when it has none (nearly always).
pub(crate) fn unescaped(raw: &[u8]) -> Result<Cow<'_, str>, String> {
    if memchr(b'&', raw).is_none() {
        return utf8(raw).map(Cow::Borrowed);
    }
    let mut out = String::with_capacity(raw.len());
    unescape(raw, &mut out)?;
    Ok(Cow::Owned(out))
}

/// `raw` with its entity and character references resolved, appended to `out`.
pub(crate) fn unescape(raw: &[u8], out: &mut String) -> Result<(), String> {
    let mut rest = raw;
    while let Some(amp) = memchr(b'&', rest) {
        out.push_str(utf8(&rest[..amp])?);
        let after = &rest[amp + 1..];
        let Some(semi) = memchr(b';', after) else {
            return Err("an '&' that starts no reference (write &amp;)".into());
        };
        let name = &after[..semi];
        // The name is not shown: between a stray '&' and the next ';' may stand a pupil's
        // name, and this text reaches the run's error and the log.
        let Some(c) = reference(name) else {
            return Err(
                "an entity reference other than XML's five and character references \
                 (a '&' in text must be written &amp;)"
                    .into(),
            );
        };
        out.push(c);
        rest = &after[semi + 1..];
    }
    out.push_str(utf8(rest)?);
    Ok(())
}

fn utf8(s: &[u8]) -> Result<&str, String> {
    // Already checked as part of the stream; this only proves it to the type system.
    std::str::from_utf8(s).map_err(|_| "bytes that are not UTF-8".to_owned())
}

/// The character a predefined entity or a character reference stands for.
fn reference(name: &[u8]) -> Option<char> {
    let code = match name {
        b"lt" => return Some('<'),
        b"gt" => return Some('>'),
        b"amp" => return Some('&'),
        b"apos" => return Some('\''),
        b"quot" => return Some('"'),
        [b'#', b'x', hex @ ..] => u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?,
        [b'#', dec @ ..] => std::str::from_utf8(dec).ok()?.parse::<u32>().ok()?,
        _ => return None,
    };
    // `from_str_radix` takes a sign; a reference does not.
    if name.get(1..3).is_some_and(|s| s.contains(&b'+')) || code == 0 {
        return None;
    }
    char::from_u32(code)
}

#[cfg(test)]
mod tests;
