//! Label sets, borrowed from the payload and walked on demand.
//!
//! The parser checks a label set once ([`scan_labels`]) and keeps only the
//! slice between the braces; [`Labels::iter`] walks that slice again when a
//! consumer asks, so a sample whose labels nobody reads costs no more than
//! the check. Escaped values are undone only when asked for ([`Value::text`]).

use std::borrow::Cow;

use super::parse::LineErrorKind;

/// The most labels one sample may carry; more and the line is skipped.
pub const MAX_LABELS: u16 = 128;

/// A sample's label set: the checked text after `{`, up to and including `}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Labels<'a> {
    raw: &'a str,
    len: u16,
}

/// One label value as written: escapes are still in it when `escaped`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Value<'a> {
    raw: &'a str,
    escaped: bool,
}

impl<'a> Value<'a> {
    /// The value with `\\`, `\"` and `\n` undone; borrowed when there were none.
    pub fn text(&self) -> Cow<'a, str> {
        if !self.escaped {
            return Cow::Borrowed(self.raw);
        }
        let mut out = String::with_capacity(self.raw.len());
        let mut chars = self.raw.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        }
        Cow::Owned(out)
    }

    /// The value as written, escapes included: a stable key without allocating.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Whether the unescaped value equals `s`, without allocating when unescaped.
    pub fn is(&self, s: &str) -> bool {
        if self.escaped {
            self.text() == s
        } else {
            self.raw == s
        }
    }
}

impl<'a> Labels<'a> {
    pub const EMPTY: Labels<'static> = Labels { raw: "", len: 0 };

    pub fn len(&self) -> usize {
        self.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The label set as written between the braces.
    pub fn raw(&self) -> &'a str {
        self.raw.strip_suffix('}').unwrap_or(self.raw)
    }

    pub fn iter(&self) -> LabelIter<'a> {
        LabelIter {
            rest: self.raw.as_bytes(),
            src: self.raw,
        }
    }

    /// The value of label `name`.
    pub fn get(&self, name: &str) -> Option<Value<'a>> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// Walks a checked label set.
pub struct LabelIter<'a> {
    src: &'a str,
    rest: &'a [u8],
}

impl<'a> Iterator for LabelIter<'a> {
    type Item = (&'a str, Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        // The set was checked by `scan_labels`, so the shape is known good.
        let (name_span, value_span, escaped, used) = next_pair(self.rest).ok()??;
        let base = self.src.len() - self.rest.len();
        let name = self.src.get(base + name_span.0..base + name_span.1)?;
        let raw = self.src.get(base + value_span.0..base + value_span.1)?;
        self.rest = &self.rest[used..];
        Some((name, Value { raw, escaped }))
    }
}

type Span = (usize, usize);

/// The next `name="value"` pair of `s` (after `{` or a `,`): the name's and the
/// value's spans, whether the value has escapes, and the bytes consumed (the
/// following `,` included). `Ok(None)` at the closing brace.
fn next_pair(s: &[u8]) -> Result<Option<(Span, Span, bool, usize)>, LineErrorKind> {
    let bad = LineErrorKind::BadLabels;
    let mut i = skip_blanks(s, 0);
    match s.get(i) {
        None => return Err(bad),
        Some(b'}') => return Ok(None),
        _ => {}
    }
    let name_start = i;
    let n = super::parse::label_name_len(&s[i..]);
    if n == 0 || s[i].is_ascii_digit() {
        return Err(bad);
    }
    i += n;
    let name = (name_start, i);
    i = skip_blanks(s, i);
    if s.get(i) != Some(&b'=') {
        return Err(bad);
    }
    i = skip_blanks(s, i + 1);
    if s.get(i) != Some(&b'"') {
        return Err(bad);
    }
    i += 1;
    let value_start = i;
    let mut escaped = false;
    loop {
        let j = memchr::memchr2(b'"', b'\\', &s[i..]).ok_or(bad)?;
        i += j;
        if s[i] == b'"' {
            break;
        }
        escaped = true;
        i += 2;
        if i > s.len() {
            return Err(bad);
        }
    }
    let value = (value_start, i);
    i = skip_blanks(s, i + 1);
    match s.get(i) {
        Some(b',') => i += 1,
        Some(b'}') => {}
        _ => return Err(bad),
    }
    Ok(Some((name, value, escaped, i)))
}

fn skip_blanks(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && (s[i] == b' ' || s[i] == b'\t') {
        i += 1;
    }
    i
}

/// Checks the label set that starts right after `{`; returns it and the bytes
/// consumed up to and including `}`.
pub(super) fn scan_labels(text: &str) -> Result<(Labels<'_>, usize), LineErrorKind> {
    let s = text.as_bytes();
    let mut i = 0;
    let mut len: u16 = 0;
    while let Some((_, _, _, used)) = next_pair(&s[i..])? {
        i += used;
        len += 1;
        if len > MAX_LABELS {
            return Err(LineErrorKind::TooManyLabels);
        }
    }
    // `next_pair` stopped at the closing brace.
    let close = i + skip_blanks(&s[i..], 0);
    // The line was checked as UTF-8, and `}` is ASCII: a clean cut.
    let raw = text.get(..=close).ok_or(LineErrorKind::BadLabels)?;
    Ok((Labels { raw, len }, close + 1))
}
