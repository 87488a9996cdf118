//! Parsers of command-line values that several roles share (the controller,
//! the load generator, the simulators, the GPU exporter).

/// A Go-style duration ("25ms", "1.5s", "100us", "2m") for clap.
pub fn go_duration(s: &str) -> Result<std::time::Duration, String> {
    s.parse::<crate::api::GoDuration>()
        .map(Into::into)
        .map_err(|e| format!("{s:?} is not a duration like 25ms, 1.5s or 2m: {e}"))
}

/// A probability flag: a number in 0..=1.
pub fn probability(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{s:?} is not a probability between 0 and 1")),
    }
}
