//! Writing the Prometheus text exposition format (0.0.4), for the simulators and
//! the GPU exporter.
//!
//! Hand-written because what we serve must look byte-for-byte like what the real
//! exporters serve — dcgm-exporter (Go: `120`, `1.5e+06`) and vLLM (Python's
//! client: `120.0`), names with `:` included — and `prometheus-client` renders
//! OpenMetrics with its own suffix and `# EOF` rules. The format is a few lines
//! of escaping; [`crate::scrape::Parser`] reads every page written here back
//! (tested below and in the simulators' tests).

use std::fmt::Write as _;

pub mod dcgm;

use crate::scrape::Kind;
use crate::scrape::style::number_into;
pub use crate::scrape::style::{NumberStyle, number};

/// A page being written. Families are written in the order they are begun.
pub struct Page {
    out: String,
    style: NumberStyle,
}

impl Page {
    pub fn new(style: NumberStyle) -> Self {
        Self {
            out: String::with_capacity(8 << 10),
            style,
        }
    }

    /// `# HELP` (when `help` is not empty, or always in Go style, as
    /// dcgm-exporter writes an empty HELP for fields it has no text for) and `# TYPE`.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) -> &mut Self {
        if !help.is_empty() || self.style == NumberStyle::Go {
            if help.is_empty() {
                let _ = writeln!(self.out, "# HELP {name}");
            } else {
                let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
            }
        }
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        self
    }

    /// One sample line. Label values are escaped; names are the caller's.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(k);
                self.out.push_str("=\"");
                escape_value_into(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        number_into(&mut self.out, value, self.style);
        self.out.push('\n');
        self
    }

    /// A histogram's `_bucket` lines (cumulative counts, `+Inf` last), `_sum`
    /// and `_count`, with `labels` on each and `le` after them.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) -> &mut Self {
        let mut cumulative = 0u64;
        let bucket = format!("{name}_bucket");
        for (i, bound) in h.bounds.iter().enumerate() {
            cumulative += h.counts[i];
            let le = number(*bound, self.style);
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative as f64);
        }
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket, &with_le, h.count as f64);
        self.sample(&format!("{name}_count"), labels, h.count as f64);
        self.sample(&format!("{name}_sum"), labels, h.sum);
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A fixed-bucket histogram, as Prometheus clients keep one.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last is above every bound.
    counts: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    /// `bounds` must be increasing; values above the last fall in `+Inf`.
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Self {
            bounds,
            counts: vec![0; bounds.len() + 1],
            count: 0,
            sum: 0.0,
        }
    }

    pub fn observe(&mut self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        self.counts[i] += 1;
        self.count += 1;
        self.sum += v;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn sum(&self) -> f64 {
        self.sum
    }
}

fn escape_value_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::{Entry, Format, Parser};

    #[test]
    fn numbers_print_as_go_and_python_do() {
        assert_eq!(number(120.0, NumberStyle::Go), "120");
        assert_eq!(number(120.0, NumberStyle::Python), "120.0");
        assert_eq!(number(-3.0, NumberStyle::Python), "-3.0");
        assert_eq!(number(0.625, NumberStyle::Go), "0.625");
        assert_eq!(number(f64::NAN, NumberStyle::Go), "NaN");
        assert_eq!(number(f64::NEG_INFINITY, NumberStyle::Python), "-Inf");
        assert_eq!(number(1e300, NumberStyle::Go), "1e300");
    }

    #[test]
    fn a_page_reads_back_with_the_project_parser() {
        let mut h = Histogram::new(&[0.01, 0.1, 1.0]);
        for v in [0.005, 0.01, 0.05, 0.5, 5.0] {
            h.observe(v);
        }
        let mut page = Page::new(NumberStyle::Python);
        page.family("vllm:num_requests_running", "Running.", Kind::Gauge)
            .sample(
                "vllm:num_requests_running",
                &[("model_name", "a \"q\" \\ b\nc")],
                3.0,
            )
            .family("vllm:ttft_seconds", "TTFT.", Kind::Histogram)
            .histogram("vllm:ttft_seconds", &[("model_name", "m")], &h);
        let text = page.finish();
        assert!(text.contains("vllm:ttft_seconds_bucket{model_name=\"m\",le=\"0.01\"} 2.0\n"));
        assert!(text.contains("vllm:ttft_seconds_bucket{model_name=\"m\",le=\"+Inf\"} 5.0\n"));
        let mut p = Parser::new(text.as_bytes(), Format::Prometheus);
        let mut samples = Vec::new();
        for e in p.by_ref() {
            if let Entry::Sample(s) = e {
                samples.push((s.name.to_string(), s.value));
                if s.name == "vllm:num_requests_running" {
                    let v = s.labels.get("model_name").unwrap();
                    assert_eq!(v.text(), "a \"q\" \\ b\nc");
                }
            }
        }
        assert_eq!(p.report().skipped, 0);
        assert_eq!(samples.len(), 1 + 4 + 2);
        assert_eq!(
            samples.last().unwrap(),
            &("vllm:ttft_seconds_sum".into(), h.sum())
        );
    }

    #[test]
    fn go_style_writes_empty_help_as_dcgm_exporter_does() {
        let mut page = Page::new(NumberStyle::Go);
        page.family("DCGM_FI_PROF_PCIE_TX_BYTES", "", Kind::Counter);
        assert_eq!(
            page.finish(),
            "# HELP DCGM_FI_PROF_PCIE_TX_BYTES\n# TYPE DCGM_FI_PROF_PCIE_TX_BYTES counter\n"
        );
    }
}
