//! `benchrun gpu-exporter`: dcgm-exporter's metrics, read through NVML, for
//! clusters without DCGM.
//!
//! Every `--interval` it reads every GPU once and renders the page; `/metrics`
//! serves that snapshot. Names, types, units and labels are dcgm-exporter's
//! ([`crate::expose::dcgm`]), so benchrun and anyone's Prometheus treat it the
//! same. Fields NVML does not support on a GPU are left out, not written as
//! blanks. XID events come from NVML's event API on a thread of their own
//! ([`xid`]). What NVML has no equivalent for is not served: the profiling
//! (`DCGM_FI_PROF_*` activity) fields and memory temperature. Pod labels need
//! the kubelet's pod-resources socket and are not added.

mod source;
pub mod xid;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Args;

pub use self::source::{GpuSource, Nvml, Reading};
use crate::expose::dcgm::{FIELDS, Identity, Row, Values};

#[derive(Args, Debug, Clone)]
pub struct GpuExporterOpts {
    /// Address to listen on (default: $POD_IP, else every interface).
    #[arg(long)]
    pub host: Option<IpAddr>,
    /// dcgm-exporter's port.
    #[arg(long, default_value_t = 9400)]
    pub port: u16,
    /// How often the GPUs are read.
    #[arg(long, default_value = "1s", value_parser = crate::cli::go_duration)]
    pub interval: Duration,
    /// Only these fields (dcgm-exporter names, comma-separated; default: all).
    #[arg(long, value_delimiter = ',')]
    pub fields: Vec<String>,
    /// The `Hostname` label (default: $NODE_NAME, else the host's name).
    #[arg(long)]
    pub hostname: Option<String>,
}

/// Checks `--fields` against the fields this exporter can serve.
pub fn check_fields(fields: &[String]) -> Result<(), String> {
    for f in fields {
        if !FIELDS.iter().any(|k| k.name == f) {
            let known: Vec<&str> = FIELDS.iter().map(|k| k.name).collect();
            return Err(format!("unknown field {f:?}; known: {}", known.join(", ")));
        }
    }
    Ok(())
}

/// The page for one set of readings.
pub fn page(readings: &[Reading], hostname: &str, driver: &str, only: &[String]) -> String {
    let ids: Vec<Identity> = readings
        .iter()
        .map(|r| Identity {
            gpu: r.index as usize,
            uuid: r.uuid.clone(),
            pci_bus_id: r.pci_bus_id.clone(),
            device: format!("nvidia{}", r.index),
            model_name: r.name.clone(),
            hostname: hostname.to_string(),
            driver_version: driver.to_string(),
        })
        .collect();
    let values: Vec<Values> = readings
        .iter()
        .map(|r| {
            r.values
                .iter()
                .filter(|(k, _)| only.is_empty() || only.iter().any(|o| o == *k))
                .map(|(k, v)| (*k, *v))
                .collect()
        })
        .collect();
    let rows: Vec<Row<'_>> = ids
        .iter()
        .zip(&values)
        .map(|(id, values)| Row {
            id,
            pod: None,
            values,
        })
        .collect();
    crate::expose::dcgm::render(&rows)
}

/// The latest page, or why there is none.
type Latest = Arc<Mutex<Result<String, String>>>;

pub fn main(opts: GpuExporterOpts) -> std::process::ExitCode {
    if let Err(e) = check_fields(&opts.fields) {
        eprintln!("benchrun gpu-exporter: {e}");
        return std::process::ExitCode::from(2);
    }
    let source = match Nvml::open() {
        Ok(s) => {
            eprintln!("benchrun gpu-exporter: {}", s.xid_watch);
            s
        }
        Err(e) => {
            eprintln!("benchrun gpu-exporter: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("benchrun gpu-exporter: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(opts, Arc::new(source))) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("benchrun gpu-exporter: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Reads on the interval and serves the latest page.
pub async fn run(opts: GpuExporterOpts, source: Arc<dyn GpuSource>) -> Result<(), String> {
    let hostname = crate::net::exporter_hostname(opts.hostname.as_deref());
    let driver = source.driver_version();
    let latest: Latest = Arc::new(Mutex::new(Err("not read yet".into())));
    refresh(&*source, &latest, &hostname, &driver, &opts.fields);
    if let Ok(Err(e)) = latest.lock().map(|l| l.clone()) {
        return Err(e);
    }
    let listener = crate::net::bind(crate::net::listen_addr(opts.host, opts.port)).await?;
    eprintln!(
        "benchrun gpu-exporter: serving on http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let reader = {
        let (latest, source) = (latest.clone(), source.clone());
        let (interval, fields) = (opts.interval, opts.fields.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(100)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let (s, l, h, d, f) = (
                    source.clone(),
                    latest.clone(),
                    hostname.clone(),
                    driver.clone(),
                    fields.clone(),
                );
                // NVML calls block: off the async threads.
                let _ = tokio::task::spawn_blocking(move || refresh(&*s, &l, &h, &d, &f)).await;
            }
        })
    };
    let served = crate::net::serve(listener, router(latest)).await;
    reader.abort();
    served
}

fn refresh(source: &dyn GpuSource, latest: &Latest, hostname: &str, driver: &str, only: &[String]) {
    let next = source.read_all().map(|r| page(&r, hostname, driver, only));
    if let Ok(mut l) = latest.lock() {
        *l = next;
    }
}

fn router(latest: Latest) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok" }))
        .with_state(latest)
}

async fn metrics(State(latest): State<Latest>) -> Response {
    match latest.lock().map(|l| l.clone()) {
        Ok(Ok(page)) => {
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], page).into_response()
        }
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("reading the GPUs failed: {e}\n"),
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests;
