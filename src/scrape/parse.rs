//! The exposition parser: Prometheus text 0.0.4 and OpenMetrics 1.0, by hand.
//!
//! Why not a crate: `prometheus-parse` drops every metric whose name contains
//! `:` (all of vLLM's and SGLang's) and splits label values on commas;
//! `openmetrics-parser` and the others build an owned tree of strings per
//! sample, which costs an allocation per label on a hot path that sees every
//! GPU field of every exporter each second. This parser borrows everything
//! from the payload, allocates nothing per sample, and treats each line on its
//! own: a bad line is skipped and counted, never the rest of the scrape.
//!
//! What it accepts: names with `:`; label values with `\\`, `\"` and `\n`
//! escapes and any other byte (`,` `=` `}` included); blanks around `,` `=`
//! and the braces; a trailing comma; `NaN`, `+Inf`, `-Inf`; an optional
//! timestamp (milliseconds in Prometheus text, seconds in OpenMetrics,
//! normalised to milliseconds); exemplars after ` # ` (skipped); `# HELP`,
//! `# TYPE`, `# UNIT` and `# EOF`; samples without any metadata (untyped).

use super::labels::{Labels, scan_labels};

/// The two text formats. They differ in timestamps' unit and in `# EOF`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`: timestamps are integer milliseconds.
    Prometheus,
    /// `application/openmetrics-text`: timestamps are seconds, `# EOF` ends it.
    OpenMetrics,
}

impl Format {
    /// The format from a Content-Type header, else from the body: a body
    /// whose last non-blank line is `# EOF` is OpenMetrics.
    pub fn detect(content_type: Option<&str>, body: &[u8]) -> Format {
        if content_type.is_some_and(|c| c.contains("openmetrics")) {
            return Format::OpenMetrics;
        }
        let trimmed = body.trim_ascii_end();
        if trimmed.ends_with(b"\n# EOF") || trimmed == b"# EOF" {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }
}

/// A metric family's declared type (`# TYPE`); `Unknown` when undeclared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
}

impl Kind {
    fn from_bytes(s: &[u8]) -> Option<Kind> {
        Some(match s {
            b"counter" => Kind::Counter,
            b"gauge" => Kind::Gauge,
            b"histogram" => Kind::Histogram,
            b"gaugehistogram" => Kind::GaugeHistogram,
            b"summary" => Kind::Summary,
            b"info" => Kind::Info,
            b"stateset" => Kind::StateSet,
            b"untyped" | b"unknown" => Kind::Unknown,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::GaugeHistogram => "gaugehistogram",
            Kind::Summary => "summary",
            Kind::Info => "info",
            Kind::StateSet => "stateset",
            Kind::Unknown => "untyped",
        }
    }
}

/// One sample line, borrowed from the payload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    pub labels: Labels<'a>,
    pub value: f64,
    /// Milliseconds since the epoch, when the line carries a timestamp.
    pub timestamp_ms: Option<f64>,
}

/// One meaningful line of a payload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Entry<'a> {
    /// `# HELP name text`; the text is as written (escapes not undone).
    Help {
        name: &'a str,
        text: &'a str,
    },
    Type {
        name: &'a str,
        kind: Kind,
    },
    Unit {
        name: &'a str,
        unit: &'a str,
    },
    Sample(Sample<'a>),
}

/// Why a line was skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum LineErrorKind {
    BadName,
    BadLabels,
    BadValue,
    BadTimestamp,
    BadMetadata,
    InvalidUtf8,
    TooManyLabels,
    AfterEof,
}

impl LineErrorKind {
    pub fn describe(self) -> &'static str {
        match self {
            LineErrorKind::BadName => "invalid metric name",
            LineErrorKind::BadLabels => "malformed label set",
            LineErrorKind::BadValue => "invalid sample value",
            LineErrorKind::BadTimestamp => "invalid timestamp",
            LineErrorKind::BadMetadata => "malformed HELP, TYPE or UNIT line",
            LineErrorKind::InvalidUtf8 => "text that is not UTF-8",
            LineErrorKind::TooManyLabels => "more labels than the parser accepts",
            LineErrorKind::AfterEof => "content after # EOF",
        }
    }
}

/// A skipped line: its 1-based number and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LineError {
    pub line: u32,
    pub kind: LineErrorKind,
}

/// How many first errors a parser keeps verbatim; the rest are only counted.
pub const KEPT_ERRORS: usize = 8;

/// What a parse saw besides its entries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParseReport {
    pub lines: u32,
    pub samples: u32,
    pub skipped: u32,
    pub errors: Vec<LineError>,
    pub saw_eof: bool,
}

/// Iterates a payload's entries; skipped lines are counted in [`Parser::report`].
pub struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
    format: Format,
    report: ParseReport,
}

impl<'a> Parser<'a> {
    pub fn new(buf: &'a [u8], format: Format) -> Self {
        Parser {
            buf,
            pos: 0,
            format,
            report: ParseReport::default(),
        }
    }

    pub fn report(&self) -> &ParseReport {
        &self.report
    }

    pub fn into_report(self) -> ParseReport {
        self.report
    }

    fn next_line(&mut self) -> Option<&'a [u8]> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let (line, advance) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], i + 1),
            None => (rest, rest.len()),
        };
        self.pos += advance;
        self.report.lines += 1;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    }

    fn fail(&mut self, kind: LineErrorKind) {
        self.report.skipped += 1;
        if self.report.errors.len() < KEPT_ERRORS {
            self.report.errors.push(LineError {
                line: self.report.lines,
                kind,
            });
        }
    }
}

impl<'a> Iterator for Parser<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        loop {
            let line = self.next_line()?;
            // One UTF-8 check per line; everything after slices this `str`
            // at ASCII delimiters.
            let Ok(line) = std::str::from_utf8(line) else {
                self.fail(LineErrorKind::InvalidUtf8);
                continue;
            };
            let line = line.trim_ascii_start();
            if line.is_empty() {
                continue;
            }
            let parsed = if line.as_bytes()[0] == b'#' {
                match comment(line) {
                    Ok(Some(Comment::Eof)) => {
                        self.report.saw_eof = true;
                        continue;
                    }
                    Ok(Some(Comment::Entry(e))) => Ok(e),
                    Ok(None) => continue,
                    Err(e) => Err(e),
                }
            } else {
                sample(line, self.format).map(Entry::Sample)
            };
            match parsed {
                Ok(_) if self.report.saw_eof => self.fail(LineErrorKind::AfterEof),
                Ok(entry) => {
                    if matches!(entry, Entry::Sample(_)) {
                        self.report.samples += 1;
                    }
                    return Some(entry);
                }
                Err(kind) => self.fail(kind),
            }
        }
    }
}

enum Comment<'a> {
    Eof,
    Entry(Entry<'a>),
}

/// A `#` line: metadata, `# EOF`, or a plain comment (`None`).
fn comment(line: &str) -> Result<Option<Comment<'_>>, LineErrorKind> {
    let body = line[1..].trim_ascii_start();
    if body == "EOF" {
        return Ok(Some(Comment::Eof));
    }
    let (keyword, rest) = split_word(body);
    if !matches!(keyword, "HELP" | "TYPE" | "UNIT") {
        return Ok(None);
    }
    let (name, rest) = split_word(rest.trim_ascii_start());
    let name = metric_name(name).ok_or(LineErrorKind::BadMetadata)?;
    let text = rest.trim_ascii();
    let entry = match keyword {
        "HELP" => Entry::Help { name, text },
        "TYPE" => Entry::Type {
            name,
            kind: Kind::from_bytes(text.as_bytes()).ok_or(LineErrorKind::BadMetadata)?,
        },
        _ => Entry::Unit { name, unit: text },
    };
    Ok(Some(Comment::Entry(entry)))
}

fn split_word(s: &str) -> (&str, &str) {
    match s.bytes().position(|b| b == b' ' || b == b'\t') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    }
}

/// Bytes allowed in names: `[a-zA-Z0-9_]`, plus `:` in metric names only;
/// not a digit first.
const fn name_table(colon: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || b == b'_' || (colon && b == b':');
        c += 1;
    }
    t
}

const METRIC_NAME: [bool; 256] = name_table(true);
const LABEL_NAME: [bool; 256] = name_table(false);

/// Length of the metric name at the start of `s`.
pub(super) fn name_len(s: &[u8]) -> usize {
    s.iter()
        .position(|b| !METRIC_NAME[*b as usize])
        .unwrap_or(s.len())
}

/// Length of the label name at the start of `s`.
pub(super) fn label_name_len(s: &[u8]) -> usize {
    s.iter()
        .position(|b| !LABEL_NAME[*b as usize])
        .unwrap_or(s.len())
}

fn metric_name(s: &str) -> Option<&str> {
    let b = s.as_bytes();
    (!b.is_empty() && !b[0].is_ascii_digit() && name_len(b) == b.len()).then_some(s)
}

fn sample(line: &str, format: Format) -> Result<Sample<'_>, LineErrorKind> {
    let n = name_len(line.as_bytes());
    if n == 0 || line.as_bytes()[0].is_ascii_digit() {
        return Err(LineErrorKind::BadName);
    }
    let name = &line[..n];
    let mut rest = line[n..].trim_ascii_start();
    let labels = if rest.starts_with('{') {
        let (labels, used) = scan_labels(&rest[1..])?;
        rest = &rest[1 + used..];
        labels
    } else {
        Labels::EMPTY
    };
    let rest = rest.trim_ascii_start();
    let (value, rest) = split_word(rest);
    let value = number(value).ok_or(LineErrorKind::BadValue)?;
    let rest = rest.trim_ascii_start();
    let (ts, rest) = split_word(rest);
    let timestamp_ms = if ts.is_empty() || ts == "#" {
        None
    } else {
        let t = number(ts)
            .filter(|t| t.is_finite())
            .ok_or(LineErrorKind::BadTimestamp)?;
        Some(match format {
            Format::Prometheus => t,
            Format::OpenMetrics => t * 1000.0,
        })
    };
    // Whatever follows is an exemplar (` # {...} v [ts]`); anything else is junk.
    let rest = rest.trim_ascii_start();
    if !(rest.is_empty() || rest.starts_with('#') || ts == "#") {
        return Err(LineErrorKind::BadTimestamp);
    }
    Ok(Sample {
        name,
        labels,
        value,
        timestamp_ms,
    })
}

/// A sample value or timestamp: Go's and Python's float spellings.
pub(crate) fn number(s: &str) -> Option<f64> {
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    // `str::parse` takes "inf"/"nan" in any case, as the formats allow (and
    // "infinity", which neither format writes; harmless).
    s.parse::<f64>().ok()
}

#[cfg(test)]
#[path = "parse/tests.rs"]
mod tests;
