//! Prompt sizing from a model's own tokenizer files, for servers without a
//! `/tokenize` endpoint (TRT-LLM's OpenAI server and others).
//!
//! A model published in Hugging Face's layout carries its tokenizer as
//! `tokenizer.json` and its chat template in `tokenizer_config.json`
//! (`chat_template`) or, in newer releases, `chat_template.jinja`. The
//! worker reads them from a folder (a mounted ConfigMap) or fetches them from
//! a base URL, tokenizes with the `tokenizers` crate (built with its
//! pure-Rust regex backend, so the static image keeps working) and renders
//! the template with minijinja, with the Python string methods templates use
//! (`minijinja-contrib`'s pycompat) and the functions Hugging Face's renderer
//! adds (`raise_exception`, `strftime_now`). A request's prompt is counted
//! as those servers count it: a completion's text with the tokenizer's
//! special tokens added (its BOS), a chat message through the template with
//! the generation prompt, tokenized without adding any (the template writes
//! its own).
//!
//! The files are tenant input. They are read only in the run's own worker
//! pods, never in the controller; each is bounded in size (a gzipped file,
//! which lets a large vocabulary fit a ConfigMap, is bounded after
//! decompression too), the template's execution is bounded by minijinja's
//! fuel, and a file that does not parse is refused with its name.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use http_body_util::BodyExt;
use minijinja::{Environment, ErrorKind, Value as Jinja, context};
use serde_json::Value;

use crate::loadgen::plan::Endpoint;
use crate::net::client::{HttpClient, error_chain};

/// The tokenizer, as Hugging Face publishes it.
pub const TOKENIZER: &str = "tokenizer.json";
/// The tokenizer's settings: its special tokens and (older releases) the chat template.
pub const CONFIG: &str = "tokenizer_config.json";
/// The chat template on its own (newer releases).
pub const TEMPLATE: &str = "chat_template.jinja";

/// The largest `tokenizer.json` read, decompressed: the largest published
/// ones (Gemma 3's) are about 33 MB.
pub const MAX_TOKENIZER_BYTES: usize = 64 << 20;
/// The largest `tokenizer_config.json` or template read.
pub const MAX_CONFIG_BYTES: usize = 8 << 20;
/// How long fetching one file may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Template instructions one rendering may run: a chat template renders a
/// message in hundreds; a template that loops without end is stopped.
const TEMPLATE_FUEL: u64 = 1_000_000;
/// The longest rendered chat prompt counted: a prompt of the longest asked
/// length (a million tokens) is a few megabytes of text.
const MAX_RENDERED_BYTES: usize = 16 << 20;

/// The files' bytes, as read or fetched.
#[derive(Default)]
pub struct Files {
    pub tokenizer: Vec<u8>,
    pub config: Option<Vec<u8>>,
    pub template: Option<Vec<u8>>,
}

/// A model's tokenizer and chat template, ready to count prompts.
pub struct FileTokenizer {
    tokenizer: tokenizers::Tokenizer,
    template: Result<ChatTemplate, String>,
    /// Where the files came from, for the results.
    pub origin: String,
}

/// A chat template with the special tokens it may write.
struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
    /// Which file the template came from.
    file: &'static str,
}

impl FileTokenizer {
    /// The tokenizer from `files`; `origin` names where they came from.
    /// Fails when `tokenizer.json` or `tokenizer_config.json` does not
    /// parse; a missing or broken chat template fails only chat counts.
    pub fn new(files: &Files, origin: String) -> Result<FileTokenizer, String> {
        let tokenizer = tokenizers::Tokenizer::from_bytes(&files.tokenizer)
            .map_err(|e| format!("{TOKENIZER} from {origin} is not a tokenizer: {e}"))?;
        let config: Option<Value> = files
            .config
            .as_deref()
            .map(|c| {
                serde_json::from_slice(c)
                    .map_err(|e| format!("{CONFIG} from {origin} is not JSON: {e}"))
            })
            .transpose()?;
        let template = ChatTemplate::new(files.template.as_deref(), config.as_ref());
        Ok(FileTokenizer {
            tokenizer,
            template,
            origin,
        })
    }

    /// Tokens of `text` as a request to `endpoint` sends it (see the module doc).
    pub fn count(&self, text: &str, endpoint: Endpoint) -> Result<u64, String> {
        let (text, add_special) = match endpoint {
            Endpoint::Completions => (text.to_string(), true),
            Endpoint::Chat => (
                self.template.as_ref().map_err(Clone::clone)?.render(text)?,
                false,
            ),
        };
        // A tokenizer built from tenant files is not trusted not to panic:
        // its panic is this count's error, not the worker's end.
        let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.tokenizer.encode(text.as_str(), add_special)
        }))
        .map_err(|_| format!("{TOKENIZER} from {} panicked", self.origin))?;
        let encoding =
            encoded.map_err(|e| format!("{TOKENIZER} from {} failed: {e}", self.origin))?;
        Ok(encoding.len() as u64)
    }

    /// How the results describe the files used for `endpoint`.
    pub fn describe(&self, endpoint: Endpoint) -> String {
        match (&self.template, endpoint) {
            (Ok(t), Endpoint::Chat) => format!(
                "counted by the model's {TOKENIZER} from {} (its chat template from {})",
                self.origin, t.file
            ),
            _ => format!("counted by the model's {TOKENIZER} from {}", self.origin),
        }
    }
}

impl ChatTemplate {
    /// The template of `chat_template.jinja`, else of the config's
    /// `chat_template` (a string, or a list of named templates: the one
    /// named `default`).
    fn new(file: Option<&[u8]>, config: Option<&Value>) -> Result<ChatTemplate, String> {
        let (source, from) = match (file, config.and_then(|c| c.get("chat_template"))) {
            (Some(t), _) => (
                String::from_utf8(t.to_vec()).map_err(|_| format!("{TEMPLATE} is not UTF-8"))?,
                TEMPLATE,
            ),
            (None, Some(Value::String(t))) => (t.clone(), CONFIG),
            (None, Some(Value::Array(named))) => (
                named
                    .iter()
                    .find(|t| t["name"] == "default")
                    .and_then(|t| t["template"].as_str())
                    .ok_or(format!("{CONFIG} lists chat templates, none named default"))?
                    .to_string(),
                CONFIG,
            ),
            _ => {
                return Err(format!(
                    "no chat template: neither {TEMPLATE} nor a chat_template in {CONFIG}, so a chat prompt's tokens are unknown"
                ));
            }
        };
        let special = |key: &str| {
            config
                .and_then(|c| c.get(key))
                .and_then(|v| v.as_str().or_else(|| v.get("content")?.as_str()))
                .unwrap_or_default()
                .to_string()
        };
        let mut env = Environment::new();
        // As Hugging Face renders chat templates.
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(|e| e.to_string())?,
        );
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> Result<Jinja, _> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |format: String| {
            jiff::Timestamp::now().strftime(&format).to_string()
        });
        env.add_template_owned("chat", source)
            .map_err(|e| format!("the chat template from {from} does not parse: {e}"))?;
        Ok(ChatTemplate {
            env,
            bos: special("bos_token"),
            eos: special("eos_token"),
            file: from,
        })
    }

    /// One user message with the generation prompt, as a chat request's.
    fn render(&self, text: &str) -> Result<String, String> {
        let template = self
            .env
            .get_template("chat")
            .map_err(|e| format!("the chat template: {e}"))?;
        // The variables Hugging Face's renderer (and vLLM's, TensorRT-LLM's)
        // passes for a plain chat request: no tools, no documents.
        let none = Jinja::from(());
        let rendered = template
            .render(context! {
                messages => vec![context! { role => "user", content => text }],
                add_generation_prompt => true,
                bos_token => &self.bos,
                eos_token => &self.eos,
                tools => none.clone(),
                documents => none,
            })
            .map_err(|e| format!("the chat template from {} failed: {e}", self.file))?;
        if rendered.len() > MAX_RENDERED_BYTES {
            return Err(format!(
                "the chat template from {} rendered {} bytes for a prompt of {}: more than {MAX_RENDERED_BYTES}",
                self.file,
                rendered.len(),
                text.len()
            ));
        }
        Ok(rendered)
    }
}

/// The files in `dir` (a mounted ConfigMap): `tokenizer.json` is needed,
/// the others are read when there.
pub fn read_dir(dir: &Path) -> Result<Files, String> {
    let read = |name: &str, max: usize| -> Result<Option<Vec<u8>>, String> {
        let path = dir.join(name);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let mut bytes = Vec::new();
        file.take(max as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        decompressed(bytes, name, max).map(Some)
    };
    Ok(Files {
        tokenizer: read(TOKENIZER, MAX_TOKENIZER_BYTES)?
            .ok_or_else(|| format!("no {TOKENIZER} in {}", dir.display()))?,
        config: read(CONFIG, MAX_CONFIG_BYTES)?,
        template: read(TEMPLATE, MAX_CONFIG_BYTES)?,
    })
}

/// The files under the base URL `base` (a folder: `…/resolve/main/` of a
/// model repository, or any server's). No header of the run's goes with
/// these requests: the target's API key is not sent to another server.
/// `tokenizer_config.json` and `chat_template.jinja` are optional: a 404 or
/// a 403 (what object stores answer for a key that is not there) is none.
pub async fn fetch(client: &HttpClient, base: &str) -> Result<Files, String> {
    let uri: hyper::Uri = base
        .parse()
        .map_err(|_| format!("{} is not a URL", crate::net::redact_url(base)))?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(format!(
            "{}: credentials in the URL are not sent; the files must be readable without them",
            crate::net::redact_url(base)
        ));
    }
    let optional = |name: &'static str| async move {
        match get(client, &join(base, name), MAX_CONFIG_BYTES).await? {
            Got::Body(b) => decompressed(b, name, MAX_CONFIG_BYTES).map(Some),
            Got::Missing(_) => Ok(None),
        }
    };
    let tokenizer = match get(client, &join(base, TOKENIZER), MAX_TOKENIZER_BYTES).await? {
        Got::Body(b) => decompressed(b, TOKENIZER, MAX_TOKENIZER_BYTES)?,
        Got::Missing(status) => {
            return Err(format!(
                "{} answered HTTP {status}",
                crate::net::redact_url(&join(base, TOKENIZER))
            ));
        }
    };
    Ok(Files {
        tokenizer,
        config: optional(CONFIG).await?,
        template: optional(TEMPLATE).await?,
    })
}

/// `name` in the folder `base`, its query (a signed URL's) kept after it.
pub fn join(base: &str, name: &str) -> String {
    let (path, query) = match base.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (base, None),
    };
    let mut url = format!("{}/{name}", path.trim_end_matches('/'));
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// What a GET found.
enum Got {
    Body(Vec<u8>),
    /// A 404 or 403: not there (for an optional file).
    Missing(u16),
}

/// Redirects followed per file: a model hub answers a large file's URL
/// with its content store's.
const MAX_REDIRECTS: usize = 5;

/// GETs `url`, following redirects: its body (at most `max` bytes), or that
/// it is missing; within [`FETCH_TIMEOUT`] in all.
async fn get(client: &HttpClient, url: &str, max: usize) -> Result<Got, String> {
    let shown = crate::net::redact_url(url);
    let work = async {
        let mut at = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let uri: hyper::Uri = at
                .parse()
                .map_err(|_| format!("{} is not a URL", crate::net::redact_url(&at)))?;
            let req = hyper::Request::get(uri.clone())
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .map_err(|e| format!("{shown}: {e}"))?;
            let resp = client
                .request(req)
                .await
                .map_err(|e| format!("{shown}: {}", error_chain(&e)))?;
            let status = resp.status();
            if status.is_redirection() {
                let to = resp
                    .headers()
                    .get(hyper::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or_else(|| format!("{shown} answered HTTP {status} without a Location"))?;
                at = redirected(&uri, to)
                    .ok_or_else(|| format!("{shown} redirected to {to:?}, not an http(s) URL"))?;
                continue;
            }
            return match status.as_u16() {
                200 => http_body_util::Limited::new(resp.into_body(), max)
                    .collect()
                    .await
                    .map(|b| Got::Body(b.to_bytes().to_vec()))
                    .map_err(|e| format!("{shown}: {e} (at most {max} bytes are read)")),
                s @ (403 | 404) => Ok(Got::Missing(s)),
                s => Err(format!("{shown} answered HTTP {s}")),
            };
        }
        Err(format!("{shown}: more than {MAX_REDIRECTS} redirects"))
    };
    tokio::time::timeout(FETCH_TIMEOUT, work)
        .await
        .map_err(|_| format!("{shown}: no answer within {FETCH_TIMEOUT:?}"))?
}

/// Where a redirect from `from` to `location` leads: an absolute http(s)
/// URL, or a path on the same server.
fn redirected(from: &hyper::Uri, location: &str) -> Option<String> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return Some(location.to_string());
    }
    if location.contains("://") {
        return None;
    }
    if location.starts_with("//") {
        return Some(format!("{}:{location}", from.scheme_str()?));
    }
    let origin = format!("{}://{}", from.scheme_str()?, from.authority()?);
    if location.starts_with('/') {
        return Some(format!("{origin}{location}"));
    }
    let dir = from.path().rsplit_once('/').map_or("", |(d, _)| d);
    // Dot segments resolved, as RFC 3986 does.
    let (path, query) = match location.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (location, None),
    };
    let mut segments: Vec<&str> = dir.split('/').skip(1).collect();
    for part in path.split('/') {
        match part {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    Some(format!("{origin}/{}{query}", segments.join("/")))
}

/// `bytes`, gunzipped when they are gzip, and no more than `max` either way.
pub fn decompressed(bytes: Vec<u8>, name: &str, max: usize) -> Result<Vec<u8>, String> {
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .take(max as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| format!("{name} is gzip that does not decompress: {e}"))?;
        out
    } else {
        bytes
    };
    if bytes.len() > max {
        return Err(format!("{name} is larger than {max} bytes"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
