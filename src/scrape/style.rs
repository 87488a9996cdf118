//! How numbers are written on a Prometheus text page, in the styles of the
//! exporters benchrun reads and imitates (the reading side is [`super::parse`]).

use std::fmt::Write as _;

/// How numbers are printed: the two styles of the exporters we imitate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberStyle {
    /// Go's `strconv.FormatFloat(v, 'g', -1, 64)` as dcgm-exporter prints:
    /// integers without a fraction.
    Go,
    /// Python's prometheus_client: integers with `.0`.
    Python,
}

/// A number as the style prints it.
pub fn number(v: f64, style: NumberStyle) -> String {
    let mut s = String::new();
    number_into(&mut s, v, style);
    s
}

pub fn number_into(out: &mut String, v: f64, style: NumberStyle) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v == v.trunc() && v.abs() < 1e15 {
        let _ = write!(out, "{}", v as i64);
        if style == NumberStyle::Python {
            out.push_str(".0");
        }
    } else {
        // Shortest round-trip representation, as both Go and Python print.
        let _ = write!(out, "{v:?}");
    }
}
