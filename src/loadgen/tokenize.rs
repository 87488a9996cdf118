//! Prompt lengths in the target's own tokens.
//!
//! Synthetic prompts are words of a small vocabulary, and one word is not one
//! token for every model: a subword tokenizer splits the longer words, and a
//! chat template adds tokens of its own. So before its first step a worker
//! asks the server's tokenizer (`POST /tokenize`, which vLLM, SGLang and
//! llm-d-inference-sim serve) what each vocabulary word costs, as a
//! prompt's first word and after a space, and what the server adds around an
//! empty prompt. Prompts are then built word by word to exactly the asked
//! number of tokens, the cheapest words filling the end. Byte-pair and
//! SentencePiece tokenizers split text at spaces before they merge, so word
//! costs add up; a check tokenizes one whole prompt and the results record
//! what it counted against what was asked.
//!
//! Servers speak two dialects of `/tokenize`. vLLM, SGLang and llm-d take
//! the request as the run sends it (`messages` or `prompt`) and answer
//! `count` or `tokens`; llama.cpp's `llama-server` takes `{"content": …}`
//! and answers `{"tokens": […]}`, and its chat template is applied by
//! `POST /apply-template` first. A server asked in the other's dialect
//! counts nothing (llama.cpp tokenizes an empty text), so each dialect is
//! tried in turn, and counts that cannot be a tokenizer's (a word that costs
//! nothing, a word twice no more than once) reject it. A calibration is
//! `server` only when its own check holds: one prompt built to the asked
//! length counts exactly that. Otherwise `auto` falls back to words and
//! says why, and `server` fails the worker with the reason.
//!
//! A server without `/tokenize` (TRT-LLM's OpenAI server and others) is
//! sized by the model's own tokenizer files instead ([`files`]:
//! `tokenizer.json` and its chat template), counted in the worker; the same
//! costs, the same check and the same fallback apply, and the results say
//! `files`. With `auto`, files the run names are tried first, then the
//! server, then words.
//!
//! [`build`] and [`Costs::from_counts`] are pure; [`calibrate`] asks the server.

use std::sync::Arc;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::plan::{Endpoint, FilesAt, InputPlan, LoadPlan, Tokenizer, TokenizerFiles};
use crate::net::client::HttpClient;
use crate::net::tls::TlsOptions;

pub mod files;

/// How long one `/tokenize` request may take: a tokenizer answers in
/// milliseconds, and a server that does not answer delays the first step.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The words synthetic prompts are made of: short, common English words,
/// close to one token each for most tokenizers.
pub const VOCAB: [&str; 16] = [
    "the", "model", "serves", "tokens", "fast", "gpu", "power", "energy", "cluster", "batch",
    "cache", "prompt", "decode", "queue", "load", "time",
];

/// What each vocabulary word costs in the server's tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct Costs {
    /// Each word as a prompt's first.
    pub first: [u64; VOCAB.len()],
    /// Each word after a space.
    pub after: [u64; VOCAB.len()],
    /// Tokens the server adds around any prompt (chat template, BOS).
    pub template: u64,
}

impl Costs {
    /// The costs from the server's counts of an empty prompt, of each word
    /// alone (`alone`) and of each word twice, space-separated (`twice`).
    /// A word is never free: counts that say so are not a tokenizer's
    /// counts of the text sent (a server that read another field tokenized
    /// nothing), and are refused with the word named.
    pub fn from_counts(empty: u64, alone: &[u64], twice: &[u64]) -> Result<Costs, String> {
        let mut c = Costs {
            first: [1; VOCAB.len()],
            after: [1; VOCAB.len()],
            template: empty,
        };
        for (i, word) in VOCAB.iter().enumerate() {
            let (a, t) = (alone[i], twice[i]);
            if a <= empty || t <= a {
                return Err(format!(
                    "the server counted {empty} tokens for an empty prompt, {a} for {word:?} and {t} for {:?}: a word costs nothing, so it did not tokenize the text sent",
                    format!("{word} {word}")
                ));
            }
            c.first[i] = a - empty;
            c.after[i] = t - a;
        }
        Ok(c)
    }

    /// Mean tokens of a word after a space, over the vocabulary.
    pub fn tokens_per_word(&self) -> f64 {
        self.after.iter().sum::<u64>() as f64 / VOCAB.len() as f64
    }
}

/// A prompt text of `tokens` tokens by `costs` (or `tokens` words, without
/// them), words drawn from `rng`: each draw is a uniform word, unless it
/// would pass the length, when the cheapest word that fits is taken instead
/// (none fits: the prompt ends a little short). Returns the text and its
/// tokens by `costs`, the template left out. With every cost one, the text is
/// the same as without costs. Pure.
pub fn build(rng: &mut StdRng, tokens: u64, costs: Option<&Costs>) -> (String, u64) {
    let mut text = String::with_capacity(tokens as usize * 6);
    let mut used = 0u64;
    let mut words = 0u64;
    while used < tokens {
        let drawn = rng.random_range(0..VOCAB.len());
        let cost = |i: usize| match costs {
            Some(c) if words == 0 => c.first[i],
            Some(c) => c.after[i],
            None => 1,
        };
        let left = tokens - used;
        let pick = if cost(drawn) <= left {
            Some(drawn)
        } else {
            (0..VOCAB.len())
                .filter(|&i| cost(i) <= left)
                .min_by_key(|&i| (cost(i), i))
        };
        let Some(i) = pick else { break };
        if words > 0 {
            text.push(' ');
        }
        text.push_str(VOCAB[i]);
        used += cost(i);
        words += 1;
    }
    (text, used)
}

/// How a run's synthetic prompts were sized, as the results say it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PromptSizing {
    /// `server`: in the target's tokens, from its `/tokenize`; `files`: in
    /// the model's tokens, from its tokenizer files; `words`: one vocabulary
    /// word per token.
    pub method: SizingMethod,
    /// Mean tokens per vocabulary word, as the server counts them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_word: Option<f64>,
    /// Tokens the server adds to each prompt beyond its text (a chat
    /// template, a BOS token): the lengths it reports are the asked ones
    /// plus these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_tokens: Option<u64>,
    /// One prompt built to `asked` tokens and counted by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<SizingCheck>,
    /// How the prompts were counted where it is not the plain `/tokenize`
    /// (llama.cpp's dialect, which tokenizer files), and why each better
    /// method was not used (files that could not be read, a tokenizer that
    /// could not be asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// How prompts were sized.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum SizingMethod {
    Server,
    Files,
    Words,
}

/// A built prompt's length, asked and as the server counted its text.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizingCheck {
    pub asked: u64,
    pub counted: u64,
}

impl PromptSizing {
    /// One line for the tables: how the prompts were sized, and the median
    /// length the requests had (`sent`).
    pub fn describe(&self, sent: &crate::stats::Summary) -> String {
        let how = match self.method {
            SizingMethod::Server | SizingMethod::Files => format!(
                "sized in the {} ({:.2} per word{})",
                if self.method == SizingMethod::Server {
                    "server's tokens"
                } else {
                    "model's tokens, by its tokenizer files"
                },
                self.tokens_per_word.unwrap_or(0.0),
                self.template_tokens
                    .filter(|&t| t > 0)
                    .map(|t| format!(", +{t} template"))
                    .unwrap_or_default()
            ),
            SizingMethod::Words => "sized in words (one per token)".into(),
        };
        let sent = if sent.count > 0 {
            format!("; sent p50 {:.0} tokens", sent.p50)
        } else {
            String::new()
        };
        format!("prompts: {how}{sent}")
    }

    fn words(note: Option<String>) -> PromptSizing {
        PromptSizing {
            method: SizingMethod::Words,
            tokens_per_word: None,
            template_tokens: None,
            check: None,
            note,
        }
    }
}

/// The costs prompts are built with, and how the results describe them:
/// none for a dataset or `tokenizer: words`; the model's files' for `files`
/// (`Err` when they cannot be used); the server's for `server` (`Err` when
/// it has none); for `auto`, the files when the plan names them, else the
/// server's when it answers, else words, with the reasons.
pub async fn sizing(
    client: &HttpClient,
    plan: &LoadPlan,
    headers: &[(String, String)],
    tls: &TlsOptions,
) -> Result<(Option<Arc<Costs>>, Option<PromptSizing>), String> {
    let InputPlan::Synthetic { input_mean, .. } = plan.input else {
        return Ok((None, None));
    };
    let sized = |method, (costs, check): (Costs, SizingCheck), note: Option<String>| {
        let sizing = PromptSizing {
            method,
            tokens_per_word: Some(costs.tokens_per_word()),
            template_tokens: Some(costs.template),
            check: Some(check),
            note,
        };
        Ok((Some(Arc::new(costs)), Some(sizing)))
    };
    let mut why = Vec::new();
    match (plan.tokenizer, &plan.tokenizer_files) {
        (Tokenizer::Words, _) => return Ok((None, Some(PromptSizing::words(None)))),
        (Tokenizer::Files | Tokenizer::Auto, Some(at)) => {
            match from_files(at, plan, tls, input_mean).await {
                Ok((calibrated, note)) => {
                    return sized(SizingMethod::Files, calibrated, Some(note));
                }
                Err(e) if plan.tokenizer == Tokenizer::Files => {
                    return Err(format!(
                        "load.input.synthetic.tokenizer is files, and the model's tokenizer files from {} could not be used: {e}",
                        at.origin
                    ));
                }
                Err(e) => why.push(format!(
                    "the tokenizer files from {} could not be used ({e})",
                    at.origin
                )),
            }
        }
        (Tokenizer::Files, None) => {
            return Err(
                "load.input.synthetic.tokenizer is files, and no tokenizer files are named".into(),
            );
        }
        (Tokenizer::Auto | Tokenizer::Server, _) => {}
    }
    match calibrate(client, plan, headers, input_mean).await {
        Ok((costs, check, dialect)) => {
            // Why the files named were not used, before how it was counted.
            why.extend((dialect == Dialect::LlamaCpp).then(|| {
                "counted by llama.cpp's /tokenize (its chat template through /apply-template)"
                    .to_string()
            }));
            let note = (!why.is_empty()).then(|| why.join("; "));
            sized(SizingMethod::Server, (costs, check), note)
        }
        Err(e) if plan.tokenizer == Tokenizer::Server => Err(format!(
            "load.input.synthetic.tokenizer is server, and the target's tokenizer could not be asked: {e}"
        )),
        Err(e) => {
            why.push(format!("the target's tokenizer could not be asked ({e})"));
            Ok((
                None,
                Some(PromptSizing::words(Some(format!(
                    "{}: prompt lengths are in words of the prompt vocabulary, one per token",
                    why.join("; ")
                )))),
            ))
        }
    }
}

/// The costs and check by the model's tokenizer files at `at`, and the note
/// that says which files counted.
async fn from_files(
    at: &TokenizerFiles,
    plan: &LoadPlan,
    tls: &TlsOptions,
    check_tokens: u64,
) -> Result<((Costs, SizingCheck), String), String> {
    let read = match &at.at {
        FilesAt::Url(url) => {
            // The run's CA is trusted for these too; nothing else of the
            // target's TLS (its server name, a skipped verification) is.
            let trust = TlsOptions {
                ca_pem: tls.ca_pem.clone(),
                ..TlsOptions::default()
            };
            files::fetch(&crate::net::client::http_client_tls(1, &trust)?, url).await?
        }
        FilesAt::Dir(dir) => read_dir(dir.clone()).await?,
        FilesAt::Env(var) => {
            let dir = std::env::var_os(var)
                .ok_or_else(|| format!("{var} names no folder of tokenizer files"))?;
            read_dir(dir.into()).await?
        }
    };
    let origin = at.origin.clone();
    let tokenizer = tokio::task::spawn_blocking(move || files::FileTokenizer::new(&read, origin))
        .await
        .map_err(|e| e.to_string())??;
    let counter = Counter::Files(&tokenizer, plan.endpoint);
    let calibrated = counter.calibrate(plan.seed, check_tokens).await?;
    Ok((calibrated, tokenizer.describe(plan.endpoint)))
}

/// [`files::read_dir`] off the runtime's threads (a large `tokenizer.json`
/// is tens of megabytes).
async fn read_dir(dir: std::path::PathBuf) -> Result<files::Files, String> {
    tokio::task::spawn_blocking(move || files::read_dir(&dir))
        .await
        .map_err(|e| e.to_string())?
}

/// How a server's `/tokenize` is asked (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// vLLM, SGLang, llm-d-inference-sim: the request's own fields.
    Vllm,
    /// llama.cpp's `llama-server`: `content`, and `/apply-template` for chat.
    LlamaCpp,
}

impl Dialect {
    fn name(self) -> &'static str {
        match self {
            Dialect::Vllm => "asked as vLLM is",
            Dialect::LlamaCpp => "asked as llama.cpp is",
        }
    }
}

/// Asks the server at the plan's first URL what the vocabulary costs, in
/// each dialect in turn, then checks one prompt of `check_tokens` tokens
/// built with those costs: the first dialect whose counts and check hold.
async fn calibrate(
    client: &HttpClient,
    plan: &LoadPlan,
    headers: &[(String, String)],
    check_tokens: u64,
) -> Result<(Costs, SizingCheck, Dialect), String> {
    let base = plan
        .urls
        .first()
        .map(|u| u.trim_end_matches('/'))
        .ok_or("the plan names no URL")?;
    let mut why = Vec::new();
    for dialect in [Dialect::Vllm, Dialect::LlamaCpp] {
        let asker = Counter::Server(Asker {
            client,
            plan,
            headers,
            base,
            dialect,
        });
        match asker.calibrate(plan.seed, check_tokens).await {
            Ok((costs, check)) => return Ok((costs, check, dialect)),
            Err(e) => why.push(format!("{}: {e}", dialect.name())),
        }
    }
    Err(why.join("; "))
}

/// One dialect's questions to one server.
struct Asker<'a> {
    client: &'a HttpClient,
    plan: &'a LoadPlan,
    headers: &'a [(String, String)],
    base: &'a str,
    dialect: Dialect,
}

/// What counts a prompt's tokens: a server asked in one dialect, or the
/// model's tokenizer files.
enum Counter<'a> {
    Server(Asker<'a>),
    Files(&'a files::FileTokenizer, Endpoint),
}

impl Counter<'_> {
    /// The vocabulary's costs, then one prompt of `check_tokens` tokens
    /// built with them (drawn with `seed`) and counted: the costs only when
    /// the count is the asked length.
    async fn calibrate(
        &self,
        seed: u64,
        check_tokens: u64,
    ) -> Result<(Costs, SizingCheck), String> {
        // One question at a time, on one connection: a server that holds a
        // thread per kept-alive connection (llama.cpp) is not left with a
        // connection per word before the load begins.
        let empty = self.count(String::new()).await?;
        let (mut alone, mut twice) = (Vec::new(), Vec::new());
        for w in VOCAB {
            alone.push(self.count(w.to_string()).await?);
            twice.push(self.count(format!("{w} {w}")).await?);
        }
        let costs = Costs::from_counts(empty, &alone, &twice)?;
        let asked = check_tokens.max(1);
        let (text, _) = build(&mut StdRng::seed_from_u64(seed), asked, Some(&costs));
        let counted = self.count(text).await?.saturating_sub(costs.template);
        if counted != asked {
            return Err(format!(
                "a prompt built to {asked} tokens by its word costs counted {counted}: the costs do not add up for this tokenizer"
            ));
        }
        Ok((costs, SizingCheck { asked, counted }))
    }

    /// The count of `text` as the run would send it, template included.
    async fn count(&self, text: String) -> Result<u64, String> {
        match self {
            Counter::Server(asker) => asker.count(text).await,
            Counter::Files(tokenizer, endpoint) => tokenizer.count(&text, *endpoint),
        }
    }
}

impl Asker<'_> {
    /// The server's count of `text` as the run would send it, template included.
    async fn count(&self, text: String) -> Result<u64, String> {
        let tokenize = format!("{}/tokenize", self.base);
        match self.dialect {
            Dialect::Vllm => {
                count(
                    self.client,
                    &tokenize,
                    self.headers,
                    &tokenize_body(self.plan, &text),
                )
                .await
            }
            Dialect::LlamaCpp => {
                let content = match self.plan.endpoint {
                    Endpoint::Chat => {
                        let templated = ask(
                            self.client,
                            &format!("{}/apply-template", self.base),
                            self.headers,
                            &json!({"messages": [{"role": "user", "content": text}]}),
                        )
                        .await?;
                        templated
                            .get("prompt")
                            .and_then(Value::as_str)
                            .ok_or("/apply-template answered without a prompt")?
                            .to_string()
                    }
                    Endpoint::Completions => text,
                };
                // As llama.cpp tokenizes a request's prompt: special tokens
                // (BOS) added, and the template's special tokens parsed.
                let body = json!({"content": content, "add_special": true, "parse_special": true});
                count(self.client, &tokenize, self.headers, &body).await
            }
        }
    }
}

/// The `/tokenize` body for `text` as the run's endpoint sends it: a chat
/// request's user message with the generation prompt (so the template's
/// tokens are counted), or a completion's prompt.
pub fn tokenize_body(plan: &LoadPlan, text: &str) -> Value {
    match plan.endpoint {
        Endpoint::Chat => json!({
            "model": plan.model,
            "messages": [{"role": "user", "content": text}],
            "add_generation_prompt": true,
        }),
        Endpoint::Completions => json!({"model": plan.model, "prompt": text}),
    }
}

/// The server's token count of one `/tokenize` body.
async fn count(
    client: &HttpClient,
    url: &str,
    headers: &[(String, String)],
    body: &Value,
) -> Result<u64, String> {
    let answer = ask(client, url, headers, body).await?;
    parse_count(&answer).ok_or_else(|| {
        format!(
            "{} answered without a token count",
            crate::net::redact_url(url)
        )
    })
}

/// POSTs `body` to `url` and reads the JSON answer of a 200.
async fn ask(
    client: &HttpClient,
    url: &str,
    headers: &[(String, String)],
    body: &Value,
) -> Result<Value, String> {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    let (status, answer) =
        super::preflight::exchange(client, url, headers, Some(bytes), TIMEOUT).await?;
    if status != 200 {
        return Err(format!(
            "{} answered HTTP {status}",
            crate::net::redact_url(url)
        ));
    }
    serde_json::from_slice(&answer)
        .map_err(|e| format!("{} answered non-JSON: {e}", crate::net::redact_url(url)))
}

/// The count of a `/tokenize` answer: `count`, else the length of `tokens`.
pub fn parse_count(v: &Value) -> Option<u64> {
    v.get("count")
        .and_then(Value::as_u64)
        .or_else(|| v.get("tokens")?.as_array().map(|t| t.len() as u64))
}

#[cfg(test)]
mod dialects;
#[cfg(test)]
mod tests;
