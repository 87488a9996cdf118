//! `benchrun inspect FILE|URL`: what benchrun would collect from one payload.
//!
//! For wiring up exporters: it lists the families with their type, display
//! name, unit and series count, the GPUs found with the pods they serve, and
//! every line the parser had to skip.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::scrape::fetch::{self, DEFAULT_MAX_BYTES};
use crate::scrape::{Catalog, Format, LineError, Parser};
use crate::telemetry::gpu::PodRef;
use crate::telemetry::{GpuTelemetry, dcgm, names, server};

#[derive(Args, Debug)]
pub struct InspectOpts {
    /// A file, `-` for standard input, or an http(s) URL of a /metrics endpoint.
    pub source: String,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Timeout for a URL, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
    /// Largest payload accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_BYTES)]
    pub max_bytes: usize,
    /// HTTPS: a PEM CA bundle trusted besides the system's roots.
    #[arg(long)]
    pub ca_file: Option<std::path::PathBuf>,
    /// HTTPS: accept any server certificate.
    #[arg(long)]
    pub insecure_skip_verify: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

/// What one payload holds, as benchrun reads it.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Inspection {
    pub source: String,
    pub format: &'static str,
    pub bytes: usize,
    pub lines: u32,
    pub samples: u32,
    pub skipped: u32,
    pub errors: Vec<LineError>,
    pub families: Vec<FamilyLine>,
    pub gpus: Vec<GpuLine>,
    /// DCGM samples holding a blank sentinel (field unsupported or unreadable).
    pub dcgm_blanks: u64,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct FamilyLine {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub display: String,
    pub unit: String,
    pub series: usize,
    pub samples: usize,
    /// The result key, for DCGM fields benchrun knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dcgm_key: Option<&'static str>,
}

#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct GpuLine {
    pub key: String,
    pub index: Option<String>,
    pub model: Option<String>,
    pub hostname: Option<String>,
    pub fields: usize,
    pub pods: Vec<PodRef>,
}

/// Reads a payload; pure.
pub fn inspect(source: &str, body: &[u8], format: Format) -> Inspection {
    let mut parser = Parser::new(body, format);
    let mut catalog = Catalog::default();
    let mut per_family: BTreeMap<usize, (usize, HashSet<String>)> = BTreeMap::new();
    let mut key = String::new();
    for entry in parser.by_ref() {
        if let Some((f, role, s)) = catalog.entry(entry) {
            let slot = per_family.entry(f).or_default();
            slot.0 += 1;
            server::series_key(&mut key, "", &s.labels, role);
            slot.1.insert(key.clone());
        }
    }
    let report = parser.into_report();
    let families = catalog
        .families()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let known = dcgm::field(f.name);
            let (samples, series) = per_family.get(&i).map_or((0, 0), |(n, s)| (*n, s.len()));
            FamilyLine {
                name: f.name.to_string(),
                kind: f.kind.as_str(),
                display: known
                    .map_or_else(|| names::display_name(f.name), |d| d.display.to_string()),
                unit: known.map_or_else(
                    || names::unit(f.name, f.help, f.unit),
                    |d| d.unit.to_string(),
                ),
                series,
                samples,
                dcgm_key: known.map(|d| d.key),
            }
        })
        .collect();
    let mut gpus = GpuTelemetry::default();
    gpus.ingest(source, 0.0, body, format);
    Inspection {
        source: source.to_string(),
        format: match format {
            Format::Prometheus => "prometheus-text-0.0.4",
            Format::OpenMetrics => "openmetrics-1.0",
        },
        bytes: body.len(),
        lines: report.lines,
        samples: report.samples,
        skipped: report.skipped,
        errors: report.errors,
        families,
        gpus: gpus
            .gpus
            .iter()
            .map(|g| GpuLine {
                key: g.key.clone(),
                index: g.identity.index.clone(),
                model: g.identity.model.clone(),
                hostname: g.identity.hostname.clone(),
                fields: g.fields.len(),
                pods: g.pods.clone(),
            })
            .collect(),
        dcgm_blanks: gpus.counts.blanks,
    }
}

/// The human rendering.
pub fn table(i: &Inspection) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{}: {} bytes, {}, {} lines, {} samples, {} skipped",
        i.source, i.bytes, i.format, i.lines, i.samples, i.skipped
    );
    for e in &i.errors {
        let _ = writeln!(o, "  line {}: {}", e.line, e.kind.describe());
    }
    if i.skipped as usize > i.errors.len() {
        let _ = writeln!(o, "  ... and {} more", i.skipped as usize - i.errors.len());
    }
    let w = i
        .families
        .iter()
        .map(|f| f.name.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let d = i
        .families
        .iter()
        .map(|f| f.display.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let _ = writeln!(
        o,
        "\n{:<w$}  {:<14}  {:<d$}  {:<12}  {:>6}",
        "FAMILY", "TYPE", "DISPLAY", "UNIT", "SERIES"
    );
    for f in &i.families {
        let _ = writeln!(
            o,
            "{:<w$}  {:<14}  {:<d$}  {:<12}  {:>6}",
            f.name, f.kind, f.display, f.unit, f.series
        );
    }
    if i.gpus.is_empty() {
        let _ = writeln!(o, "\nno GPUs (no DCGM_FI_* samples)");
        return o;
    }
    let _ = writeln!(
        o,
        "\n{} GPU(s); {} blank DCGM values filtered",
        i.gpus.len(),
        i.dcgm_blanks
    );
    for g in &i.gpus {
        let pods: Vec<String> = g.pods.iter().map(ToString::to_string).collect();
        let _ = writeln!(
            o,
            "  gpu {:<3} {:<44} {:<24} {:<20} {:>3} fields  pods: {}",
            g.index.as_deref().unwrap_or("?"),
            g.key,
            g.model.as_deref().unwrap_or("-"),
            g.hostname.as_deref().unwrap_or("-"),
            g.fields,
            if pods.is_empty() {
                "-".to_string()
            } else {
                pods.join(", ")
            }
        );
    }
    o
}

/// Runs the subcommand.
pub fn main(opts: InspectOpts) -> ExitCode {
    let loaded = if opts.source.starts_with("http://") || opts.source.starts_with("https://") {
        load_url(&opts)
    } else {
        load_file(&opts)
    };
    let (source, body, format) = match loaded {
        Ok(x) => x,
        Err(e) => {
            eprintln!("benchrun inspect: {}: {e}", opts.source);
            return ExitCode::FAILURE;
        }
    };
    let i = inspect(&source, &body, format);
    match opts.output {
        Output::Table => crate::out!("{}", table(&i)),
        Output::Json => match serde_json::to_string_pretty(&i) {
            Ok(j) => crate::outln!("{j}"),
            Err(e) => {
                eprintln!("benchrun inspect: {e}");
                return ExitCode::FAILURE;
            }
        },
    }
    if i.samples == 0 {
        eprintln!("benchrun inspect: {}: no samples found", opts.source);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

type Loaded = (String, Vec<u8>, Format);

fn load_file(opts: &InspectOpts) -> Result<Loaded, String> {
    use std::io::Read;
    let mut body = Vec::new();
    let cap = opts.max_bytes as u64 + 1;
    let read = if opts.source == "-" {
        std::io::stdin().take(cap).read_to_end(&mut body)
    } else {
        std::fs::File::open(&opts.source).and_then(|f| f.take(cap).read_to_end(&mut body))
    };
    read.map_err(|e| e.to_string())?;
    if body.len() > opts.max_bytes {
        return Err(format!(
            "larger than the {}-byte cap (--max-bytes)",
            opts.max_bytes
        ));
    }
    let format = fetch::sniff(None, &body)
        .map_err(|what| format!("this is {what}, not the Prometheus text format"))?;
    Ok((opts.source.clone(), body, format))
}

fn load_url(opts: &InspectOpts) -> Result<Loaded, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs_f64(opts.timeout.clamp(0.001, 3600.0));
    let tls = crate::loadgen::plan::TlsPlan {
        ca: opts
            .ca_file
            .clone()
            .map(crate::loadgen::plan::PemSource::File),
        insecure_skip_verify: opts.insecure_skip_verify,
        ..Default::default()
    };
    let client = fetch::scrape_client_tls(&tls.options()?)?;
    let p = rt
        .block_on(fetch::fetch(&client, &opts.source, timeout, opts.max_bytes))
        .map_err(|e| e.to_string())?;
    Ok((p.url, p.body.to_vec(), p.format))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_series_and_gpus() {
        let body = b"# TYPE DCGM_FI_DEV_GPU_UTIL gauge\nDCGM_FI_DEV_GPU_UTIL{gpu=\"0\",UUID=\"A\",pod=\"p\",namespace=\"n\"} 5\nDCGM_FI_DEV_GPU_UTIL{gpu=\"1\",UUID=\"B\"} 7\n\
# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\nbroken{ 1\n";
        let i = inspect("f", body, Format::Prometheus);
        assert_eq!((i.samples, i.skipped), (6, 1));
        assert_eq!(i.families.len(), 2);
        let util = &i.families[0];
        assert_eq!((util.series, util.samples, util.unit.as_str()), (2, 2, "%"));
        assert_eq!(util.dcgm_key, Some("gpu_utilization"));
        let h = &i.families[1];
        assert_eq!((h.kind, h.series, h.samples), ("histogram", 1, 4));
        assert_eq!(i.gpus.len(), 2);
        assert_eq!(i.gpus[0].pods[0].pod, "p");
        let t = table(&i);
        assert!(t.contains("line 9: malformed label set"), "{t}");
        assert!(t.contains("2 GPU(s)"), "{t}");
    }
}
