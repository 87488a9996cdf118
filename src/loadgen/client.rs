//! Sends one request and times it as the bytes arrive.
//!
//! hyper's HTTP/1.1 client, one client for the run, one connection per
//! in-flight stream (the pool holds up to the run's concurrency). Each body
//! frame is timestamped the moment hyper hands it over, before any parsing.
//!
//! A request the server provably never received (it closed or reset the
//! kept-alive connection first: [`crate::net::conn`]) is sent once more, on
//! a new connection, and its record says so. A server seen closing the
//! connections it had just answered on (llama.cpp's does, after every
//! streamed response, without saying so) gets a new connection for every
//! later request: reusing its connections only races its close. A request
//! that may have reached the server is never sent again: it is an error of
//! its own kind ([`ErrorKind::Disconnected`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use super::request::{ErrorKind, Record, TokenSource};
use super::sse::{Event, SseReader, chunk_events};
use crate::net::client::{HttpClient, error_chain, watched_client_tls};
use crate::net::conn::{ConnInfo, Habits, unreceived};
use crate::net::tls::TlsOptions;

/// The load generator's connections to its target.
pub struct Clients {
    /// Kept alive, up to the run's streams.
    pooled: HttpClient,
    /// A new connection for every request.
    fresh: HttpClient,
    /// What the connections saw: a server that closes the connections it
    /// answered on gets a new one for every request.
    habits: Arc<Habits>,
}

impl Clients {
    pub fn new(max_idle: usize, tls: &TlsOptions) -> Result<Self, String> {
        let habits = Arc::new(Habits::default());
        Ok(Self {
            pooled: watched_client_tls(max_idle, tls, habits.clone())?,
            fresh: watched_client_tls(0, tls, habits.clone())?,
            habits,
        })
    }

    /// The client for the next request.
    pub fn client(&self) -> &HttpClient {
        if self.server_closes_connections() {
            &self.fresh
        } else {
            &self.pooled
        }
    }

    /// Whether the server was seen closing the connections it answered on.
    pub fn server_closes_connections(&self) -> bool {
        self.habits.closes_after_responses()
    }

    /// Learns, before any measured request, whether the server closes a
    /// connection after a streamed response: `body` (a short request) is sent
    /// once and its connection watched for `wait`. Failures are not errors
    /// here: the load reports its own.
    pub async fn learn(&self, out: Outgoing<'_>, wait: Duration) {
        let _ = send(self, out).await;
        let until = Instant::now() + wait;
        while !self.server_closes_connections() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// What to send.
pub struct Outgoing<'a> {
    pub url: &'a str,
    pub headers: &'a [(String, String)],
    pub body: Bytes,
    pub streaming: bool,
    pub prompt_words: u64,
    /// The output tokens the request asks for, when known.
    pub max_tokens: Option<u64>,
    /// Bound on the whole request, first byte to last.
    pub timeout: Duration,
    /// Keep the generated text (a conversation's next turn carries it).
    pub keep_text: bool,
}

/// Sends the request and reads the whole response; never panics on bad servers.
pub async fn send(clients: &Clients, out: Outgoing<'_>) -> Record {
    let mut start = Instant::now();
    let mut rec = unanswered(out.prompt_words);
    rec.asked_tokens = out.max_tokens;
    let outcome =
        tokio::time::timeout(out.timeout, exchange(clients, &out, &mut start, &mut rec)).await;
    rec.latency = start.elapsed().as_secs_f64();
    match outcome {
        Err(_) => {
            rec.error = Some((
                ErrorKind::Timeout,
                format!("no complete response within {:?}", out.timeout),
            ))
        }
        Ok(Err(e)) => rec.error = Some(e),
        Ok(Ok(())) if rec.output_tokens == 0 && rec.ttft.is_none() => {
            rec.error = Some((
                ErrorKind::EmptyResponse,
                "the response held no generated text".into(),
            ))
        }
        Ok(Ok(())) => rec.ok = true,
    }
    rec
}

/// A request's record before any answer: its prompt's size, nothing else.
fn unanswered(prompt_words: u64) -> Record {
    Record {
        ok: false,
        error: None,
        ttft: None,
        ttfat: None,
        token_times: Vec::new(),
        latency: 0.0,
        input_tokens: prompt_words,
        output_tokens: 0,
        source: TokenSource::Counted,
        reasoning_tokens: 0,
        text: None,
        retried: false,
        server: None,
        asked_tokens: None,
    }
}

fn request(out: &Outgoing<'_>) -> Result<hyper::Request<Full<Bytes>>, (ErrorKind, String)> {
    let mut req = hyper::Request::post(out.url).header("content-type", "application/json");
    for (k, v) in out.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    req.body(Full::new(out.body.clone()))
        .map_err(|e| (ErrorKind::Connect, format!("building the request: {e}")))
}

/// A failed request's kind: no connection at all, an answer that is not
/// HTTP, or a connection that closed after the request may have reached
/// the server.
fn failed(url: &str, e: &hyper_util::client::legacy::Error) -> (ErrorKind, String) {
    let parse = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<hyper::Error>())
        .is_some_and(hyper::Error::is_parse);
    let kind = if e.is_connect() {
        ErrorKind::Connect
    } else if parse {
        ErrorKind::MalformedStream
    } else {
        ErrorKind::Disconnected
    };
    (kind, format!("{url}: {}", error_chain(e)))
}

async fn exchange(
    clients: &Clients,
    out: &Outgoing<'_>,
    start: &mut Instant,
    rec: &mut Record,
) -> Result<(), (ErrorKind, String)> {
    let resp = match clients.client().request(request(out)?).await {
        Ok(resp) => resp,
        Err(e) => {
            let Some(why) = unreceived(&e) else {
                return Err(failed(out.url, &e));
            };
            if why.closes_after_responses() {
                clients
                    .habits
                    .closes_after_responses
                    .store(true, Ordering::Relaxed);
            }
            rec.retried = true;
            // The request the server receives is the one timed: the attempt
            // it never read (and the wait for its reset) is not its latency.
            *start = Instant::now();
            clients
                .fresh
                .request(request(out)?)
                .await
                .map_err(|e| failed(out.url, &e))?
        }
    };
    if let Some(conn) = resp.extensions().get::<ConnInfo>() {
        conn.keep_alive(resp.headers().get("keep-alive"));
        conn.announced_close(resp.headers().get("connection"));
    }
    let start = *start;
    let status = resp.status();
    let mut body = resp.into_body();
    if !status.is_success() {
        let text = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&text[..text.len().min(300)]).into_owned();
        return Err((
            ErrorKind::HttpStatus,
            format!("HTTP {}: {text}", status.as_u16()),
        ));
    }
    let mut sse = SseReader::default();
    sse.text = out.keep_text.then(String::new);
    let mut whole = Vec::new();
    let mut tally = Tally::default();
    while let Some(frame) = body.frame().await {
        let at = start.elapsed().as_secs_f64();
        let frame =
            frame.map_err(|e| (ErrorKind::MalformedStream, format!("reading the body: {e}")))?;
        let Some(data) = frame.data_ref() else {
            continue;
        };
        if !out.streaming {
            whole.extend_from_slice(data);
            continue;
        }
        sse.feed(data, |event| tally.apply(event, at, rec));
        tally.check()?;
    }
    if out.streaming {
        if !tally.done && (sse.has_partial() || tally.counted == 0) {
            return Err((
                ErrorKind::MalformedStream,
                "the stream ended before [DONE]".into(),
            ));
        }
    } else {
        let v: serde_json::Value = serde_json::from_slice(&whole).map_err(|e| {
            (
                ErrorKind::MalformedStream,
                format!("non-JSON response: {e}"),
            )
        })?;
        let at = start.elapsed().as_secs_f64();
        chunk_events(&v, sse.text.as_mut(), &mut |event| {
            tally.apply(event, at, rec)
        });
        tally.check()?;
    }
    rec.text = sse.text.take();
    tally.finish(rec);
    Ok(())
}

/// The server's `usage` record.
struct Usage {
    prompt: u64,
    completion: u64,
    reasoning: Option<u64>,
}

/// What a response has said so far.
#[derive(Default)]
struct Tally {
    /// Content pieces seen, reasoning included (the output tokens when the
    /// server sends no usage).
    counted: u64,
    /// Of those, reasoning pieces.
    reasoning: u64,
    usage: Option<Usage>,
    done: bool,
    /// The first malformed event, which fails the request.
    malformed: Option<String>,
}

impl Tally {
    /// Takes one event that arrived `at` seconds after the send: the first
    /// content, reasoning or answer, is the first token, later ones are token
    /// times; the first answer content is the first answer token.
    fn apply(&mut self, event: Event, at: f64, rec: &mut Record) {
        match event {
            Event::Content { answer, reasoning } => {
                self.counted += u64::from(answer + reasoning);
                self.reasoning += u64::from(reasoning);
                if rec.ttft.is_none() {
                    rec.ttft = Some(at);
                } else {
                    rec.token_times.push(at);
                }
                if answer > 0 && rec.ttfat.is_none() {
                    rec.ttfat = Some(at);
                }
            }
            Event::Usage {
                prompt,
                completion,
                reasoning,
            } => {
                self.usage = Some(Usage {
                    prompt,
                    completion,
                    reasoning,
                })
            }
            Event::Timings(t) => rec.server = Some(t),
            Event::Done => self.done = true,
            Event::Empty => {}
            Event::Malformed(m) => {
                self.malformed.get_or_insert(m);
            }
        }
    }

    /// The token counts into the record: the server's `usage` where it sent
    /// one, else the pieces counted.
    fn finish(self, rec: &mut Record) {
        match self.usage {
            Some(u) if u.completion > 0 => {
                rec.input_tokens = u.prompt;
                rec.output_tokens = u.completion;
                // The server's own split where it gives one; else the
                // reasoning pieces counted, within the tokens it reported.
                rec.reasoning_tokens = u.reasoning.unwrap_or(self.reasoning).min(u.completion);
                rec.source = TokenSource::Usage;
            }
            _ => {
                rec.output_tokens = self.counted;
                rec.reasoning_tokens = self.reasoning;
            }
        }
    }

    fn check(&mut self) -> Result<(), (ErrorKind, String)> {
        match self.malformed.take() {
            Some(m) => Err((ErrorKind::MalformedStream, m)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod closing;
