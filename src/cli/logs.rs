//! Log lines as they leave the process: redacted and bounded. The
//! controller logs what peers say (a worker's message, a server's error, a
//! URL a tenant wrote), so every line goes through one choke point, as every
//! condition message does (`controller::conditions::set_status`): the
//! credentials and query values of any URL in it are redacted, and a text
//! line is cut at [`MAX_LINE`] bytes; in a JSON line each string value is cut
//! at [`MAX_FIELD`] bytes, so the line stays JSON.

use std::io::Write;

/// The most bytes of one text log line.
pub const MAX_LINE: usize = 4096;
/// The most bytes of one string value of a JSON log line.
pub const MAX_FIELD: usize = crate::net::MAX_QUOTED_BYTES;

/// One formatted log line (or several), redacted and bounded. Pure.
pub fn scrub(text: &str, json: bool) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_LINE + 64));
    for line in text.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        if json && let Ok(mut v) = serde_json::from_str::<serde_json::Value>(body) {
            bound_strings(&mut v);
            out.push_str(&v.to_string());
        } else {
            out.push_str(&crate::net::bounded(body, MAX_LINE));
        }
        out.push_str(end);
    }
    out
}

fn bound_strings(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => *s = crate::net::bounded(s, MAX_FIELD),
        serde_json::Value::Array(a) => a.iter_mut().for_each(bound_strings),
        serde_json::Value::Object(o) => o.values_mut().for_each(bound_strings),
        _ => {}
    }
}

/// Standard error, with every write [`scrub`]bed (tracing's formatter
/// writes each event whole, in one call).
pub struct Scrubbed {
    pub json: bool,
}

impl Write for Scrubbed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(scrub(&text, self.json).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_loses_its_credentials_and_its_excess() {
        let line = "WARN scrape failed: http://admin:hunter2@10.0.0.1:9400/metrics?token=abc\n";
        let out = scrub(line, false);
        assert!(!out.contains("hunter2") && !out.contains("abc"), "{out}");
        assert!(
            out.ends_with('\n') && out.contains("10.0.0.1:9400"),
            "{out}"
        );
        let long = format!("INFO {}\n", "x".repeat(100_000));
        let out = scrub(&long, false);
        assert!(out.len() < MAX_LINE + 64, "{}", out.len());
        assert!(out.contains("bytes more"), "{out}");
    }

    #[test]
    fn a_json_line_stays_json_with_each_field_bounded() {
        let line = serde_json::json!({
            "level": "WARN",
            "fields": {"message": format!("https://u:pw@h/x worker said {}", "y".repeat(5000))},
            "spans": [{"run": "ns/r"}],
        })
        .to_string()
            + "\n";
        let out = scrub(&line, true);
        let v: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        let message = v["fields"]["message"].as_str().unwrap();
        assert!(message.len() < MAX_FIELD + 64, "{}", message.len());
        assert_eq!(v["spans"][0]["run"], "ns/r");
        assert!(!out.contains("pw@") && out.contains("://***@h/x"), "{out}");
        // Not JSON after all: bounded as text.
        assert!(scrub("plain words\n", true) == "plain words\n");
    }
}
