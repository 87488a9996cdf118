//! The pre-flight: before a run's workers start, one of them checks the
//! target as the run will use it (its URLs, headers, API key and TLS): the
//! endpoint answers, it serves the run's model, a short request streams a
//! token, and the credentials are accepted. A failure names the check and
//! what the server answered, so a run ends at once with the reason instead
//! of a Job full of errors. References 000/001 do the same by hand.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::{Clients, Outgoing, send};
use super::plan::LoadPlan;
use super::request::{ErrorKind, Record};
use super::workload::Workload;
use crate::net::client::{HttpClient, error_chain};

/// How long each pre-flight request may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The probe asks for this many tokens at most.
pub const PROBE_TOKENS: u64 = 4;
/// How much of a server's answer a failure quotes.
const QUOTE: usize = 300;

/// Which check failed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Check {
    /// The TLS options or the plan cannot be used.
    Setup,
    /// The endpoint did not answer.
    Reachable,
    /// The TLS handshake failed (an unknown CA, a name the certificate lacks).
    Tls,
    /// The server refused the credentials.
    Credentials,
    /// The server does not serve the run's model.
    Model,
    /// The probe request failed or streamed no token.
    Request,
}

impl Check {
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Setup => "setup",
            Check::Reachable => "reachable",
            Check::Tls => "tls",
            Check::Credentials => "credentials",
            Check::Model => "model",
            Check::Request => "request",
        }
    }
}

/// What the pre-flight found.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The check that failed; `None`: all passed.
    pub failed: Option<Check>,
    /// Why, in words (the server's answer quoted), or what passed.
    pub message: String,
    /// What could not be checked, and why (a server without `/v1/models`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Report {
    fn fail(check: Check, message: String, notes: Vec<String>) -> Self {
        Report {
            failed: Some(check),
            message,
            notes,
        }
    }
}

/// Runs the pre-flight of `plan` against its first URL, with `api_key`.
pub async fn run(plan: &LoadPlan, api_key: Option<&str>) -> Report {
    let clients = match plan.tls.options().and_then(|o| Clients::new(1, &o)) {
        Ok(c) => c,
        Err(e) => return Report::fail(Check::Setup, e, Vec::new()),
    };
    let Some(base) = plan.urls.first().map(|u| u.trim_end_matches('/')) else {
        return Report::fail(Check::Setup, "the plan names no URL".into(), Vec::new());
    };
    let mut headers: Vec<(String, String)> = plan.headers.clone().into_iter().collect();
    if let Some(key) = api_key {
        headers.push(("authorization".into(), format!("Bearer {key}")));
    }
    let mut notes = Vec::new();
    let client = clients.client();
    // The models the server lists, where it lists them.
    match get(client, &format!("{base}/v1/models"), &headers).await {
        Err(e) if tls_failure(&e) => {
            return Report::fail(
                Check::Tls,
                format!("the TLS handshake with {base} failed: {e}"),
                notes,
            );
        }
        Err(e) => {
            return Report::fail(
                Check::Reachable,
                format!("{base} did not answer: {e}"),
                notes,
            );
        }
        Ok((status @ (401 | 403), body)) => {
            return Report::fail(
                Check::Credentials,
                format!(
                    "{base}/v1/models refused the run's credentials (HTTP {status}): {}",
                    quote(&body)
                ),
                notes,
            );
        }
        Ok((200, body)) => match served_models(&body) {
            Some(models) if !models.contains(&plan.model) => {
                return Report::fail(
                    Check::Model,
                    format!(
                        "the server does not serve the model {:?}; it serves {}",
                        plan.model,
                        listed(&models)
                    ),
                    notes,
                );
            }
            Some(_) => {}
            None => notes.push(format!(
                "{base}/v1/models answered no model list; the model is checked by the probe request alone"
            )),
        },
        Ok((status, _)) => notes.push(format!(
            "{base}/v1/models answered HTTP {status}; the model is checked by the probe request alone"
        )),
    }
    // One short request, as the run sends them.
    let workload = match Workload::load(plan, 0, None) {
        Ok(w) => w,
        Err(e) => return Report::fail(Check::Setup, e, notes),
    };
    let req = workload.request(plan, 0, 0);
    let body = short(&req.body);
    let url = format!("{base}{}", plan.request_path());
    let rec = send(
        &clients,
        Outgoing {
            url: &url,
            headers: &headers,
            body,
            streaming: plan.streaming,
            prompt_words: req.words,
            max_tokens: None,
            timeout: TIMEOUT,
            keep_text: false,
        },
    )
    .await;
    match judge(&rec, plan) {
        Some((check, why)) => Report::fail(check, format!("{url}: {why}"), notes),
        None => Report {
            failed: None,
            message: format!(
                "{base} answers, serves {:?}, and streamed a first token in {:.0} ms",
                plan.model,
                rec.ttft.unwrap_or(rec.latency) * 1e3
            ),
            notes,
        },
    }
}

/// What a probe request's record says failed, if anything.
pub fn judge(rec: &Record, plan: &LoadPlan) -> Option<(Check, String)> {
    match &rec.error {
        Some((ErrorKind::HttpStatus, msg)) if msg.contains("401") || msg.contains("403") => Some((
            Check::Credentials,
            format!("the server refused the run's credentials: {msg}"),
        )),
        Some((ErrorKind::HttpStatus, msg)) if msg.contains("404") && msg.contains(&plan.model) => {
            Some((
                Check::Model,
                format!("the server does not serve the model: {msg}"),
            ))
        }
        Some((ErrorKind::Connect, msg)) if tls_failure(msg) => Some((Check::Tls, msg.clone())),
        Some((ErrorKind::Connect, msg)) => Some((Check::Reachable, msg.clone())),
        Some((kind, msg)) => Some((
            Check::Request,
            format!("the probe request failed ({kind}): {msg}"),
        )),
        None if !rec.ok => Some((Check::Request, "the probe request failed".into())),
        None => None,
    }
}

/// A connection error that is the TLS handshake's (rustls says so in words).
fn tls_failure(e: &str) -> bool {
    let e = e.to_ascii_lowercase();
    ["certificate", "handshake", "tls", "alert"]
        .iter()
        .any(|w| e.contains(w))
}

/// The body with its output capped at a few tokens (`max_tokens` and
/// `max_completion_tokens`, whichever it has).
pub fn short(body: &Bytes) -> Bytes {
    let Ok(mut v) = serde_json::from_slice::<Value>(body) else {
        return body.clone();
    };
    if let Some(o) = v.as_object_mut() {
        for key in ["max_tokens", "max_completion_tokens"] {
            if let Some(n) = o.get_mut(key) {
                *n = Value::from(n.as_u64().unwrap_or(PROBE_TOKENS).min(PROBE_TOKENS));
            }
        }
    }
    Bytes::from(serde_json::to_vec(&v).unwrap_or_else(|_| body.to_vec()))
}

/// The model IDs of an OpenAI `/v1/models` answer.
pub fn served_models(body: &[u8]) -> Option<Vec<String>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let data = v.get("data")?.as_array()?;
    Some(
        data.iter()
            .filter_map(|m| m.get("id").and_then(Value::as_str).map(str::to_string))
            .collect(),
    )
}

fn listed(models: &[String]) -> String {
    match models {
        [] => "none".into(),
        _ if models.len() > 5 => {
            format!("{} and {} more", models[..5].join(", "), models.len() - 5)
        }
        _ => models.join(", "),
    }
}

/// The first bytes of an answer, as text on one line.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one.char_indices().nth(QUOTE) {
        Some((i, _)) => format!("{}...", &one[..i]),
        None if one.is_empty() => "(no body)".into(),
        None => one,
    }
}

/// GETs `url` with `headers`: its status and body (at most 1 MiB), or why
/// nothing came.
async fn get(
    client: &HttpClient,
    url: &str,
    headers: &[(String, String)],
) -> Result<(u16, Vec<u8>), String> {
    exchange(client, url, headers, None, TIMEOUT).await
}

/// GETs `url`, or POSTs `json` to it, with `headers`: its status and body
/// (at most 1 MiB), or why nothing came within `timeout`.
pub(super) async fn exchange(
    client: &HttpClient,
    url: &str,
    headers: &[(String, String)],
    json: Option<Bytes>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let mut req = match json {
        None => hyper::Request::get(url),
        Some(_) => hyper::Request::post(url).header("content-type", "application/json"),
    };
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(Full::new(json.unwrap_or_default()))
        .map_err(|e| format!("invalid request: {e}"))?;
    let work = async {
        let resp = client.request(req).await.map_err(|e| error_chain(&e))?;
        let status = resp.status().as_u16();
        let body = http_body_util::Limited::new(resp.into_body(), 1 << 20)
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

#[cfg(test)]
mod tests;
