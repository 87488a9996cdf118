//! Reading an OpenAI request body into what the simulator needs: the model, the
//! prompt's length, how many tokens to generate, and how to answer. Pure.
//!
//! Prompt tokens are counted by the simulator's [`Tokenizer`]:
//! whitespace-separated words by default, or a subword tokenizer's shape
//! with a chat template's tokens, so that sizing prompts in a server's own
//! tokens can be checked against it (`/tokenize` answers with the same count).

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

/// How the simulator counts a prompt's tokens.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tokenizer {
    /// One token per whitespace-separated word; nothing added.
    #[default]
    Words,
    /// A subword tokenizer's shape: a word of n characters is ⌈n/4⌉
    /// tokens; a chat request adds 3 tokens per message and 2 for the
    /// generation prompt (a ChatML-like template), a completion 1 (BOS).
    Subword,
}

impl Tokenizer {
    /// Tokens of one text.
    pub fn text(self, s: &str) -> u64 {
        let words = s.split_whitespace();
        match self {
            Tokenizer::Words => words.count() as u64,
            Tokenizer::Subword => words.map(|w| w.chars().count().div_ceil(4) as u64).sum(),
        }
    }

    /// Tokens of a content value: a string, an array of strings, or an
    /// array of `{type: "text", text}` parts.
    fn content(self, content: Option<&Value>) -> u64 {
        match content {
            Some(Value::String(s)) => self.text(s),
            Some(Value::Array(parts)) => parts
                .iter()
                .map(|p| match p {
                    Value::String(_) => self.content(Some(p)),
                    Value::Object(o) => self.content(o.get("text")),
                    _ => 0,
                })
                .sum(),
            _ => 0,
        }
    }

    /// Tokens of chat `messages`, with the template's when asked for the
    /// generation prompt.
    pub fn chat(self, messages: &[Value], generation_prompt: bool) -> u64 {
        let text: u64 = messages
            .iter()
            .map(|m| self.content(m.get("content")))
            .sum();
        match self {
            Tokenizer::Words => text,
            Tokenizer::Subword => {
                text + 3 * messages.len() as u64 + if generation_prompt { 2 } else { 0 }
            }
        }
    }

    /// Tokens of a completion `prompt`, BOS included.
    pub fn completion(self, prompt: &Value) -> u64 {
        let text = self.content(Some(prompt));
        match self {
            Tokenizer::Words => text,
            Tokenizer::Subword => text + 1,
        }
    }
}

/// Parses a body for `api` against the served `model`.
pub fn parse(
    api: Api,
    body: &[u8],
    model: &str,
    default_max_tokens: u64,
    tokenizer: Tokenizer,
) -> Result<Parsed, Refusal> {
    let v = object_for(body, model)?;
    let prompt_tokens = match api {
        Api::Chat => {
            let messages = v
                .get("messages")
                .and_then(Value::as_array)
                .filter(|m| !m.is_empty())
                .ok_or_else(|| bad("`messages` must be a non-empty array"))?;
            tokenizer.chat(messages, true)
        }
        Api::Completions => match v.get("prompt") {
            Some(p @ (Value::String(_) | Value::Array(_))) => tokenizer.completion(p),
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

/// The body as a JSON object naming the served `model`.
fn object_for(body: &[u8], model: &str) -> Result<Value, Refusal> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(bad("the body must be a JSON object"));
    }
    match v.get("model").and_then(Value::as_str) {
        Some(m) if m == model => Ok(v),
        Some(m) => Err(Refusal {
            status: 404,
            message: format!("The model `{m}` does not exist."),
        }),
        None => Err(bad("`model` is required")),
    }
}

/// The token count of a `/tokenize` body, as vLLM's: chat `messages` (with
/// `add_generation_prompt`, default true) or a completion `prompt`.
pub fn tokenize(body: &[u8], model: &str, tokenizer: Tokenizer) -> Result<u64, Refusal> {
    let v = object_for(body, model)?;
    match (v.get("messages").and_then(Value::as_array), v.get("prompt")) {
        (Some(messages), _) => {
            let generation = v
                .get("add_generation_prompt")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            Ok(tokenizer.chat(messages, generation))
        }
        (None, Some(p @ (Value::String(_) | Value::Array(_)))) => Ok(tokenizer.completion(p)),
        _ => Err(bad("`messages` or `prompt` is required")),
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
            parse(Api::Chat, chat, M, 16, Tokenizer::Words).unwrap(),
            Parsed {
                prompt_tokens: 6,
                max_tokens: 7,
                stream: true,
                include_usage: true
            }
        );
        let comp = br#"{"model":"sim/llm","prompt":"a b c","max_tokens":3}"#;
        let p = parse(Api::Completions, comp, M, 16, Tokenizer::Words).unwrap();
        assert_eq!((p.prompt_tokens, p.max_tokens, p.stream), (3, 3, false));
        let default = br#"{"model":"sim/llm","prompt":""}"#;
        let p = parse(Api::Completions, default, M, 16, Tokenizer::Words).unwrap();
        assert_eq!((p.prompt_tokens, p.max_tokens), (1, 16));
    }

    #[test]
    fn the_subword_tokenizer_counts_requests_and_tokenize_bodies_alike() {
        let t = Tokenizer::Subword;
        // "the"=1, "cluster"=2, "serves"=2: 5 tokens of text.
        let chat =
            br#"{"model":"sim/llm","messages":[{"role":"user","content":"the cluster serves"}]}"#;
        let p = parse(Api::Chat, chat, M, 16, t).unwrap();
        assert_eq!(p.prompt_tokens, 5 + 3 + 2);
        assert_eq!(
            tokenize(chat, M, t).unwrap(),
            10,
            "/tokenize counts as a request does"
        );
        let bare = br#"{"model":"sim/llm","messages":[{"role":"user","content":""}],"add_generation_prompt":false}"#;
        assert_eq!(tokenize(bare, M, t).unwrap(), 3);
        let comp = br#"{"model":"sim/llm","prompt":"the cluster serves"}"#;
        assert_eq!(
            parse(Api::Completions, comp, M, 16, t)
                .unwrap()
                .prompt_tokens,
            6
        );
        assert_eq!(tokenize(comp, M, t).unwrap(), 6);
        assert_eq!(tokenize(comp, M, Tokenizer::Words).unwrap(), 3);
        let other = br#"{"model":"x","prompt":"a"}"#;
        assert_eq!(tokenize(other, M, t).unwrap_err().status, 404);
        assert_eq!(
            tokenize(br#"{"model":"sim/llm"}"#, M, t)
                .unwrap_err()
                .status,
            400
        );
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
            let r = parse(Api::Completions, body, M, 16, Tokenizer::Words).unwrap_err();
            assert_eq!(r.status, status, "{}", String::from_utf8_lossy(body));
            assert!(r.message.contains(text), "{}", r.message);
        }
        let r = parse(
            Api::Chat,
            br#"{"model":"sim/llm","messages":[]}"#,
            M,
            16,
            Tokenizer::Words,
        )
        .unwrap_err();
        assert!(r.message.contains("messages"));
    }
}
