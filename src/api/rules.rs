//! CEL validation rules of the CRD, each beside the message a user sees.
//!
//! The API server evaluates them at admission; the controller evaluates the very
//! same rules again (through `kube`'s client-side CEL) before it acts, so a run
//! created before a CRD upgrade still gets the same clear message. Rules are written
//! to work on objects where defaulted fields are absent (`has()` first).

/// `spec.target`: exactly one way to reach the server.
pub const TARGET_ONE_OF_RULE: &str = "has(self.url) != has(self.serviceRef)";
pub const TARGET_ONE_OF_MSG: &str = "set exactly one of target.url and target.serviceRef";

/// Ports given by number or by name, not both (serviceRef, telemetry.gpu, telemetry.server).
pub const PORT_ONE_OF_RULE: &str = "!(has(self.port) && has(self.portName))";
pub const PORT_ONE_OF_MSG: &str = "set at most one of port and portName";

/// `spec.load`: the measured phase is bounded by a count or by a duration.
pub const COUNT_XOR_DURATION_RULE: &str = "has(self.requestCount) != has(self.duration)";
pub const COUNT_XOR_DURATION_MSG: &str = "set exactly one of load.requestCount and load.duration";

macro_rules! is_rate {
    () => {
        "(has(self.mode) && self.mode == 'rate')"
    };
}

pub const RATE_NEEDS_RATE_RULE: &str = concat!(
    "!",
    is_rate!(),
    " || has(self.requestRate) || (has(self.sweep) && has(self.sweep.requestRate))"
);
pub const RATE_NEEDS_RATE_MSG: &str =
    "mode rate needs load.requestRate (or load.sweep.requestRate)";

pub const CONCURRENCY_MODE_NO_RATE_RULE: &str = concat!(is_rate!(), " || !has(self.requestRate)");
pub const CONCURRENCY_MODE_NO_RATE_MSG: &str =
    "load.requestRate is used only in rate mode: set load.mode to rate";

pub const SWEEP_MATCHES_MODE_RULE: &str = concat!(
    "!has(self.sweep) || (",
    is_rate!(),
    " ? has(self.sweep.requestRate) : has(self.sweep.concurrency))"
);
pub const SWEEP_MATCHES_MODE_MSG: &str =
    "load.sweep.concurrency needs mode concurrency and load.sweep.requestRate needs mode rate";

/// In concurrency mode every worker keeps at least one request in flight.
pub const WORKERS_LE_CONCURRENCY_RULE: &str = concat!(
    is_rate!(),
    " || !has(self.workers) || ((has(self.sweep) && has(self.sweep.concurrency)) ",
    "? self.sweep.concurrency.all(c, c >= self.workers) ",
    ": self.workers <= (has(self.concurrency) ? self.concurrency : 1))"
);
pub const WORKERS_LE_CONCURRENCY_MSG: &str = "load.workers must not exceed the concurrency of any step: each worker keeps at least one request in flight";

pub const CONVERSATIONS_SYNTHETIC_RULE: &str =
    "!has(self.conversations) || !has(self.input) || !has(self.input.dataset)";
pub const CONVERSATIONS_SYNTHETIC_MSG: &str =
    "load.conversations works with synthetic input only, not with a dataset";

pub const DURATION_MIN_RULE: &str =
    "!has(self.duration) || duration(self.duration) >= duration('1s')";
pub const DURATION_MIN_MSG: &str = "load.duration must be at least 1s";

/// `spec.load.input`.
pub const INPUT_ONE_OF_RULE: &str = "has(self.synthetic) != has(self.dataset)";
pub const INPUT_ONE_OF_MSG: &str = "set exactly one of load.input.synthetic and load.input.dataset";

/// `spec.load.input.synthetic`: `files` reads the files `tokenizerFiles` names.
pub const FILES_NEED_FILES_RULE: &str =
    "!has(self.tokenizer) || self.tokenizer != 'files' || has(self.tokenizerFiles)";
pub const FILES_NEED_FILES_MSG: &str =
    "tokenizer files needs load.input.synthetic.tokenizerFiles (a configMapRef or a url)";

/// ... and the files are read only by `files` and `auto`.
pub const FILES_READ_BY_RULE: &str = "!has(self.tokenizerFiles) || !has(self.tokenizer) || self.tokenizer == 'files' || self.tokenizer == 'auto'";
pub const FILES_READ_BY_MSG: &str =
    "load.input.synthetic.tokenizerFiles is read only when tokenizer is files or auto";

/// `spec.load.input.synthetic.tokenizerFiles`: one place the files are.
pub const TOKENIZER_FILES_ONE_OF_RULE: &str = "has(self.configMapRef) != has(self.url)";
pub const TOKENIZER_FILES_ONE_OF_MSG: &str =
    "set exactly one of tokenizerFiles.configMapRef and tokenizerFiles.url";

/// `spec.load.sweep`.
pub const SWEEP_ONE_OF_RULE: &str = "(has(self.concurrency) && size(self.concurrency) > 0) != (has(self.requestRate) && size(self.requestRate) > 0)";
pub const SWEEP_ONE_OF_MSG: &str =
    "load.sweep needs exactly one non-empty list: concurrency or requestRate";

/// `spec.slo[*]`.
pub const SLO_BOUND_RULE: &str = "has(self.max) != has(self.min)";
pub const SLO_BOUND_MSG: &str = "each slo sets exactly one of max and min";

/// `spec.repeat.coolDown`.
pub const COOL_DOWN_RULE: &str = "!has(self.coolDown) || (duration(self.coolDown) >= duration('0s') && duration(self.coolDown) <= duration('30m'))";
pub const COOL_DOWN_MSG: &str = "repeat.coolDown must be between 0s and 30m";

/// The root: trials times sweep steps stay within 64 measured steps.
pub const TRIAL_STEPS_RULE: &str = "!has(self.spec.repeat) || !has(self.spec.load.sweep) || self.spec.repeat.count * ((has(self.spec.load.sweep.concurrency) ? size(self.spec.load.sweep.concurrency) : 0) + (has(self.spec.load.sweep.requestRate) ? size(self.spec.load.sweep.requestRate) : 0)) <= 64";
pub const TRIAL_STEPS_MSG: &str =
    "repeat.count times the sweep's steps must not exceed 64 measured steps";

/// `spec.baseline`: one thing to compare with.
pub const BASELINE_ONE_OF_RULE: &str = "has(self.runRef) != has(self.configMapRef)";
pub const BASELINE_ONE_OF_MSG: &str =
    "set exactly one of baseline.runRef and baseline.configMapRef";

/// `spec.baseline.tolerances`: one tolerance per metric.
pub const TOLERANCE_METRICS_UNIQUE_RULE: &str = "!has(self.tolerances) || self.tolerances.all(t, self.tolerances.exists_one(u, u.metric == t.metric))";
pub const TOLERANCE_METRICS_UNIQUE_MSG: &str =
    "baseline.tolerances names a metric twice: give each metric one tolerance";

/// `spec.telemetry`.
pub const INTERVAL_MIN_RULE: &str =
    "!has(self.interval) || duration(self.interval) >= duration('100ms')";
pub const INTERVAL_MIN_MSG: &str = "telemetry.interval must be at least 100ms";

pub const SCRAPE_TIMEOUT_RULE: &str = "!has(self.timeout) || (duration(self.timeout) > duration('0s') && duration(self.timeout) <= duration('60s'))";
pub const SCRAPE_TIMEOUT_MSG: &str = "telemetry.timeout must be more than 0s and at most 60s";

pub const IDLE_BASELINE_RULE: &str = "!has(self.idleBaseline) || (duration(self.idleBaseline) >= duration('1s') && duration(self.idleBaseline) <= duration('10m'))";
pub const IDLE_BASELINE_MSG: &str = "telemetry.idleBaseline must be at least 1s and at most 10m";

/// `spec.timeout`.
pub const TIMEOUT_MIN_RULE: &str = "!has(self.timeout) || duration(self.timeout) >= duration('1s')";
pub const TIMEOUT_MIN_MSG: &str = "timeout must be at least 1s";

/// Root: the spec is frozen once the run has a start time, except `cancel` and
/// `ttlSecondsAfterFinished` (the same two a Job lets you change).
pub const IMMUTABLE_RULE: &str = concat!(
    "!has(oldSelf.status) || !has(oldSelf.status.startTime) || (",
    "self.spec.target == oldSelf.spec.target && self.spec.load == oldSelf.spec.load",
    " && (has(self.spec.telemetry) ? (has(oldSelf.spec.telemetry) && self.spec.telemetry == oldSelf.spec.telemetry) : !has(oldSelf.spec.telemetry))",
    " && (has(self.spec.slo) ? (has(oldSelf.spec.slo) && self.spec.slo == oldSelf.spec.slo) : !has(oldSelf.spec.slo))",
    " && (has(self.spec.results) ? (has(oldSelf.spec.results) && self.spec.results == oldSelf.spec.results) : !has(oldSelf.spec.results))",
    " && (has(self.spec.timeout) ? (has(oldSelf.spec.timeout) && self.spec.timeout == oldSelf.spec.timeout) : !has(oldSelf.spec.timeout))",
    " && (has(self.spec.concurrencyPolicy) ? (has(oldSelf.spec.concurrencyPolicy) && self.spec.concurrencyPolicy == oldSelf.spec.concurrencyPolicy) : !has(oldSelf.spec.concurrencyPolicy)))"
);
pub const IMMUTABLE_MSG: &str =
    "spec cannot change once the run has started; only cancel and ttlSecondsAfterFinished may";

pub const NO_UNCANCEL_RULE: &str = "!has(oldSelf.spec.cancel) || !oldSelf.spec.cancel || (has(self.spec.cancel) && self.spec.cancel)";
pub const NO_UNCANCEL_MSG: &str = "a cancelled run cannot be resumed";

/// `spec.target.headers`: no credentials in plain text (they would sit in the
/// run and in its Job's spec for anyone who may read either).
pub const HEADERS_NO_CREDENTIALS_RULE: &str = r#"!has(self.headers) || !self.headers.exists(k, k.matches("(?i)^(authorization|proxy-authorization|cookie|x-api-key|api-key)$"))"#;
pub const HEADERS_NO_CREDENTIALS_MSG: &str = "target.headers must not carry credentials in plain text (Authorization, Proxy-Authorization, Cookie, X-Api-Key, Api-Key): put the value in a Secret and name it in target.headersFrom (or, for a bearer key, in target.apiKeySecretRef)";

/// `spec.target.url`: no credentials in it (`user:password@host`): they would
/// sit in the run, its plan and its Job for anyone who may read them, and in
/// every message that quotes the URL.
pub const URL_NO_CREDENTIALS_RULE: &str =
    "!has(self.url) || !self.url.matches('^[A-Za-z]+://[^/?#]*@')";
pub const URL_NO_CREDENTIALS_MSG: &str = "target.url must not carry credentials (user:password@host): put a bearer key in a Secret and name it in target.apiKeySecretRef, or any other header in target.headersFrom";

/// Headers that frame the request or route it: set by the client itself; from a
/// spec they would let a run smuggle a second request or reach another host.
macro_rules! framing {
    () => {
        "(?i)^(host|content-length|transfer-encoding|connection|keep-alive|upgrade|te|trailer|expect|proxy-connection)$"
    };
}

/// `spec.target.headers`: no framing or routing headers.
pub const HEADERS_NO_FRAMING_RULE: &str = concat!(
    "!has(self.headers) || !self.headers.exists(k, k.matches('",
    framing!(),
    "'))"
);
pub const HEADERS_NO_FRAMING_MSG: &str = "target.headers must not set Host, Content-Length, Transfer-Encoding, Connection, Keep-Alive, Upgrade, TE, Trailer, Expect or Proxy-Connection: the load generator sets those itself";

/// `spec.target.headersFrom`: the same rule for headers from Secrets.
pub const HEADERS_FROM_NO_FRAMING_RULE: &str = concat!(
    "!has(self.headersFrom) || !self.headersFrom.exists(h, h.name.matches('",
    framing!(),
    "'))"
);
pub const HEADERS_FROM_NO_FRAMING_MSG: &str = "target.headersFrom must not set Host, Content-Length, Transfer-Encoding, Connection, Keep-Alive, Upgrade, TE, Trailer, Expect or Proxy-Connection: the load generator sets those itself";

/// `spec.target.headersFrom`: each header once.
pub const HEADERS_FROM_UNIQUE_RULE: &str = "!has(self.headersFrom) || self.headersFrom.all(h, self.headersFrom.exists_one(g, g.name == h.name))";
pub const HEADERS_FROM_UNIQUE_MSG: &str = "target.headersFrom names each header once";

/// A header set both in plain text and from a Secret.
pub const HEADERS_FROM_NOT_TWICE_RULE: &str = "!has(self.headersFrom) || !has(self.headers) || !self.headersFrom.exists(h, h.name in self.headers)";
pub const HEADERS_FROM_NOT_TWICE_MSG: &str =
    "a header is set in target.headers and in target.headersFrom: keep one";

/// `target.tls` is for an `https` target.
pub const TLS_NEEDS_HTTPS_RULE: &str = "!has(self.tls) || (has(self.url) && self.url.startsWith('https://')) || (has(self.serviceRef) && has(self.serviceRef.scheme) && self.serviceRef.scheme == 'https')";
pub const TLS_NEEDS_HTTPS_MSG: &str =
    "target.tls is for an https target: use an https:// url or serviceRef.scheme https";

/// A CA to verify with, or no verification: not both.
pub const TLS_CA_OR_INSECURE_RULE: &str =
    "!has(self.caRef) || !has(self.insecureSkipVerify) || !self.insecureSkipVerify";
pub const TLS_CA_OR_INSECURE_MSG: &str =
    "tls sets caRef and insecureSkipVerify: verify against the CA, or skip verification, not both";

/// A CA from a Secret or a ConfigMap: exactly one.
pub const CA_REF_ONE_OF_RULE: &str = "has(self.secretKeyRef) != has(self.configMapKeyRef)";
pub const CA_REF_ONE_OF_MSG: &str =
    "tls.caRef sets exactly one of secretKeyRef and configMapKeyRef";

/// Scrape credentials: a bearer token or basic auth, exactly one.
pub const SCRAPE_AUTH_ONE_OF_RULE: &str = "has(self.bearerTokenSecretRef) != has(self.basicAuth)";
pub const SCRAPE_AUTH_ONE_OF_MSG: &str =
    "telemetry.server.auth sets exactly one of bearerTokenSecretRef and basicAuth";

/// `apiKeySecretRef` is sent as `Authorization`; a second one would conflict.
pub const API_KEY_OR_AUTHORIZATION_RULE: &str = "!has(self.apiKeySecretRef) || !has(self.headersFrom) || !self.headersFrom.exists(h, h.name.matches('(?i)^authorization$'))";
pub const API_KEY_OR_AUTHORIZATION_MSG: &str = "target.apiKeySecretRef is sent as the Authorization header: do not set Authorization in target.headersFrom as well";

/// `spec.target.headers`: names are HTTP tokens (no spaces, colons or line
/// breaks that would smuggle another header into the request).
pub const HEADER_NAMES_RULE: &str =
    r#"!has(self.headers) || self.headers.all(k, k.matches("^[-A-Za-z0-9!#$%&'*+.^_|~]+$"))"#;
pub const HEADER_NAMES_MSG: &str =
    "target.headers names must be HTTP header names (letters, digits and -!#$%&'*+.^_|~)";

/// `spec.load`: conversations need a closed loop (a turn waits for the answer
/// to the one before); an open loop would drop them.
pub const CONVERSATIONS_CLOSED_LOOP_RULE: &str =
    concat!("!has(self.conversations) || !", is_rate!());
pub const CONVERSATIONS_CLOSED_LOOP_MSG: &str = "load.conversations works in concurrency mode only: each turn waits for the answer to the one before, which an open loop at a fixed rate does not";
