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
    /// A chunk that carried generated text: how many of its choices carried
    /// answer text, and how many reasoning text (a reasoning model's
    /// `reasoning_content` or `reasoning` delta, sent before the answer).
    Content { answer: u32, reasoning: u32 },
    /// A chunk without text (role, finish reason, empty delta).
    Empty,
    /// Token usage, from the final chunk when `include_usage` is honoured;
    /// `reasoning` from `completion_tokens_details.reasoning_tokens` where the
    /// server reports it (the completion tokens include them).
    Usage {
        prompt: u64,
        completion: u64,
        reasoning: Option<u64>,
    },
    /// The server's own timing of the request (llama.cpp's `timings`, on
    /// its last chunk).
    Timings(crate::loadgen::request::ServerTimings),
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
                let data = data.trim_ascii();
                // A blank `data:` line is a keep-alive some servers send.
                if !data.is_empty() {
                    parse_data(data, self.text.as_mut(), &mut on);
                }
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
/// the first choice's answer text (not its reasoning) is appended to `text`
/// when given: a conversation's next turn carries the answer only.
pub fn chunk_events(v: &Value, text: Option<&mut String>, on: &mut impl FnMut(Event)) {
    if let Some(err) = v.get("error") {
        return on(Event::Malformed(format!("error in stream: {err}")));
    }
    let choices = v.get("choices").and_then(Value::as_array);
    // One pass over the choices: this runs for every chunk of every stream.
    let (mut answer, mut reasoning) = (0u32, 0u32);
    for c in choices.into_iter().flatten() {
        answer += u32::from(!text_of(c).is_empty());
        reasoning += u32::from(!reasoning_of(c).is_empty());
    }
    if let (Some(t), Some(first)) = (text, choices.and_then(|c| c.first())) {
        t.push_str(text_of(first));
    }
    on(if answer + reasoning > 0 {
        Event::Content { answer, reasoning }
    } else {
        Event::Empty
    });
    if let Some(t) = v
        .get("timings")
        .and_then(crate::loadgen::request::ServerTimings::read)
    {
        on(Event::Timings(t));
    }
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
        on(Event::Usage {
            prompt: n("prompt_tokens"),
            completion: n("completion_tokens"),
            reasoning: u
                .get("completion_tokens_details")
                .and_then(|d| d.get("reasoning_tokens"))
                .and_then(Value::as_u64),
        });
    }
}

fn str_at<'v>(v: &'v Value, outer: &str, inner: &str) -> &'v str {
    v.get(outer)
        .and_then(|o| o.get(inner))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The answer text of one choice: chat delta, chat message, or completions text.
pub fn text_of(choice: &Value) -> &str {
    [
        str_at(choice, "delta", "content"),
        str_at(choice, "message", "content"),
    ]
    .into_iter()
    .find(|t| !t.is_empty())
    .unwrap_or_else(|| choice.get("text").and_then(Value::as_str).unwrap_or(""))
}

/// The reasoning text of one choice: `reasoning_content` (DeepSeek's API,
/// SGLang, vLLM before 0.10) or `reasoning` (later vLLM, gpt-oss), in a delta
/// or a whole message.
pub fn reasoning_of(choice: &Value) -> &str {
    ["delta", "message"]
        .into_iter()
        .flat_map(|outer| {
            [
                str_at(choice, outer, "reasoning_content"),
                str_at(choice, outer, "reasoning"),
            ]
        })
        .find(|t| !t.is_empty())
        .unwrap_or("")
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
                Event::Content {
                    answer: 1,
                    reasoning: 0
                },
                Event::Empty,
                Event::Usage {
                    prompt: 7,
                    completion: 3,
                    reasoning: None
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
        assert_eq!(
            events[0],
            Event::Content {
                answer: 1,
                reasoning: 0
            }
        );
        assert!(matches!(&events[1], Event::Malformed(m) if m.contains("non-JSON")));
        assert!(matches!(&events[2], Event::Malformed(m) if m.contains("overloaded")));
        r.feed(b"data: {\"cho", |e| panic!("no event yet: {e:?}"));
        assert!(r.has_partial(), "a stream cut mid-event is visible");
    }
}
