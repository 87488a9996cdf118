//! Reading an OpenAI request body into what the simulator needs: the model, the
//! prompt's length, how many tokens to generate, and how to answer. Pure.
//!
//! Tokens are whitespace-separated words: the load generator's synthetic prompts
//! are made of short words, so both sides count the same prompt the same way.

use serde_json::Value;

/// Which API was called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    Chat,
    Completions,
}

/// A request the simulator accepted.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    pub prompt_tokens: u64,
    pub max_tokens: u64,
    pub stream: bool,
    pub include_usage: bool,
}

/// Why a request was refused, as an OpenAI-style error with its HTTP status.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

fn bad(message: impl Into<String>) -> Refusal {
    Refusal {
        status: 400,
        message: message.into(),
    }
}

/// Parses a body for `api` against the served `model`.
pub fn parse(
    api: Api,
    body: &[u8],
    model: &str,
    default_max_tokens: u64,
) -> Result<Parsed, Refusal> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(bad("the body must be a JSON object"));
    }
    match v.get("model").and_then(Value::as_str) {
        Some(m) if m == model => {}
        Some(m) => {
            return Err(Refusal {
                status: 404,
                message: format!("The model `{m}` does not exist."),
            });
        }
        None => return Err(bad("`model` is required")),
    }
    let prompt_tokens = match api {
        Api::Chat => {
            let messages = v
                .get("messages")
                .and_then(Value::as_array)
                .filter(|m| !m.is_empty())
                .ok_or_else(|| bad("`messages` must be a non-empty array"))?;
            messages.iter().map(|m| words(m.get("content"))).sum()
        }
        Api::Completions => match v.get("prompt") {
            Some(p @ (Value::String(_) | Value::Array(_))) => words(Some(p)),
            _ => return Err(bad("`prompt` must be a string or an array of strings")),
        },
    };
    let max_key = match api {
        Api::Chat if v.get("max_completion_tokens").is_some() => "max_completion_tokens",
        _ => "max_tokens",
    };
    let max_tokens = match v.get(max_key) {
        None | Some(Value::Null) => default_max_tokens,
        Some(n) => match n.as_u64() {
            Some(n) if n >= 1 => n,
            _ => return Err(bad(format!("`{max_key}` must be a positive integer"))),
        },
    };
    let stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = v
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Parsed {
        prompt_tokens: prompt_tokens.max(1),
        max_tokens,
        stream,
        include_usage,
    })
}

/// Words in a content value: a string, an array of strings, or an array of
/// `{type: "text", text}` parts.
fn words(content: Option<&Value>) -> u64 {
    match content {
        Some(Value::String(s)) => s.split_whitespace().count() as u64,
        Some(Value::Array(parts)) => parts
            .iter()
            .map(|p| match p {
                Value::String(_) => words(Some(p)),
                Value::Object(o) => words(o.get("text")),
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "sim/llm";

    #[test]
    fn chat_and_completions_bodies() {
        let chat = br#"{"model":"sim/llm","messages":[{"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"the model serves tokens"}]}],
            "max_completion_tokens":7,"stream":true,"stream_options":{"include_usage":true}}"#;
        assert_eq!(
            parse(Api::Chat, chat, M, 16).unwrap(),
            Parsed {
                prompt_tokens: 6,
                max_tokens: 7,
                stream: true,
                include_usage: true
            }
        );
        let comp = br#"{"model":"sim/llm","prompt":"a b c","max_tokens":3}"#;
        let p = parse(Api::Completions, comp, M, 16).unwrap();
        assert_eq!((p.prompt_tokens, p.max_tokens, p.stream), (3, 3, false));
        let default = br#"{"model":"sim/llm","prompt":""}"#;
        let p = parse(Api::Completions, default, M, 16).unwrap();
        assert_eq!((p.prompt_tokens, p.max_tokens), (1, 16));
    }

    #[test]
    fn bad_bodies_are_refused_with_a_reason() {
        let cases: [(&[u8], u16, &str); 6] = [
            (b"{not json", 400, "not JSON"),
            (b"[1]", 400, "JSON object"),
            (br#"{"prompt":"x"}"#, 400, "`model` is required"),
            (
                br#"{"model":"other","prompt":"x"}"#,
                404,
                "`other` does not exist",
            ),
            (
                br#"{"model":"sim/llm","prompt":7}"#,
                400,
                "`prompt` must be",
            ),
            (
                br#"{"model":"sim/llm","prompt":"x","max_tokens":0}"#,
                400,
                "positive integer",
            ),
        ];
        for (body, status, text) in cases {
            let r = parse(Api::Completions, body, M, 16).unwrap_err();
            assert_eq!(r.status, status, "{}", String::from_utf8_lossy(body));
            assert!(r.message.contains(text), "{}", r.message);
        }
        let r = parse(Api::Chat, br#"{"model":"sim/llm","messages":[]}"#, M, 16).unwrap_err();
        assert!(r.message.contains("messages"));
    }
}
