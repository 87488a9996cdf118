//! Incremental reading of an OpenAI-style response: server-sent events for
//! streams, one JSON object otherwise. Pure: bytes in, facts out.
//!
//! Hand-written because a stream has to be read as it arrives (to timestamp
//! every token) and only `data:` lines matter; an SSE crate would add a layer
//! of buffering and its own task between the socket and the clock.

use serde_json::Value;

/// What one `data:` event said.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// A chunk that carried generated text (how many content pieces it held).
    Content { pieces: u32 },
    /// A chunk without text (role, finish reason, empty delta).
    Empty,
    /// Token usage, from the final chunk when `include_usage` is honoured.
    Usage { prompt: u64, completion: u64 },
    /// `data: [DONE]`.
    Done,
    /// A `data:` line that is not JSON, or an error object.
    Malformed(String),
}

/// Splits a byte stream into `data:` payloads, across chunk boundaries.
#[derive(Default)]
pub struct SseReader {
    buf: Vec<u8>,
    /// When set, the generated text is appended here (multi-turn history).
    pub text: Option<String>,
}

impl SseReader {
    /// Feeds bytes; hands each event they complete to `on`, in order. Nothing
    /// is allocated per event: this runs for every frame of every stream.
    pub fn feed(&mut self, bytes: &[u8], mut on: impl FnMut(Event)) {
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(nl) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let line = &self.buf[start..start + nl];
            start += nl + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if let Some(data) = line.strip_prefix(b"data:") {
                let data = data.strip_prefix(b" ").unwrap_or(data);
                parse_data(data, self.text.as_mut(), &mut on);
            }
        }
        self.buf.drain(..start);
    }

    /// Whether unparsed bytes remain (a stream cut mid-line).
    pub fn has_partial(&self) -> bool {
        self.buf.iter().any(|b| !b.is_ascii_whitespace())
    }
}

fn parse_data(data: &[u8], text: Option<&mut String>, on: &mut impl FnMut(Event)) {
    if data == b"[DONE]" {
        return on(Event::Done);
    }
    match serde_json::from_slice::<Value>(data) {
        Ok(v) => chunk_events(&v, text, on),
        Err(e) => on(Event::Malformed(format!("non-JSON event: {e}"))),
    }
}

/// Events in one parsed chunk (a streamed chunk or a whole non-streamed body);
/// the first choice's text is appended to `text` when given.
pub fn chunk_events(v: &Value, text: Option<&mut String>, on: &mut impl FnMut(Event)) {
    if let Some(err) = v.get("error") {
        return on(Event::Malformed(format!("error in stream: {err}")));
    }
    let choices = v.get("choices").and_then(Value::as_array);
    let pieces = choices
        .map(|choices| choices.iter().filter(|c| !text_of(c).is_empty()).count() as u32)
        .unwrap_or(0);
    if let (Some(t), Some(first)) = (text, choices.and_then(|c| c.first())) {
        t.push_str(text_of(first));
    }
    on(if pieces > 0 {
        Event::Content { pieces }
    } else {
        Event::Empty
    });
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
        on(Event::Usage {
            prompt: n("prompt_tokens"),
            completion: n("completion_tokens"),
        });
    }
}

/// The text of one choice: chat delta, chat message, or completions text.
pub fn text_of(choice: &Value) -> &str {
    fn s(v: Option<&Value>) -> &str {
        v.and_then(Value::as_str).unwrap_or("")
    }
    let t = s(choice.get("delta").and_then(|d| d.get("content")));
    if !t.is_empty() {
        return t;
    }
    let t = s(choice.get("message").and_then(|m| m.get("content")));
    if !t.is_empty() {
        return t;
    }
    s(choice.get("text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_reads_are_reassembled() {
        let mut r = SseReader::default();
        let stream = b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\r\n\r\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n";
        let mut events = Vec::new();
        for piece in stream.chunks(5) {
            r.feed(piece, |e| events.push(e));
        }
        assert_eq!(
            events,
            [
                Event::Empty,
                Event::Content { pieces: 1 },
                Event::Empty,
                Event::Usage {
                    prompt: 7,
                    completion: 3
                },
                Event::Done
            ]
        );
        assert!(!r.has_partial());
    }

    #[test]
    fn completions_text_and_comments_and_garbage() {
        let mut r = SseReader::default();
        let mut events = Vec::new();
        r.feed(b": keep-alive\nevent: x\ndata: {\"choices\":[{\"text\":\"a\"}]}\ndata: not json\ndata: {\"error\":{\"message\":\"overloaded\"}}\n", |e| events.push(e));
        assert_eq!(events[0], Event::Content { pieces: 1 });
        assert!(matches!(&events[1], Event::Malformed(m) if m.contains("non-JSON")));
        assert!(matches!(&events[2], Event::Malformed(m) if m.contains("overloaded")));
        r.feed(b"data: {\"cho", |e| panic!("no event yet: {e:?}"));
        assert!(r.has_partial(), "a stream cut mid-event is visible");
    }
}
