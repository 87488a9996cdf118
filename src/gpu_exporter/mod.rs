//! `benchrun gpu-exporter`: dcgm-exporter's metrics, read through NVML, for
//! clusters without DCGM.
//!
//! Every `--interval` it reads every GPU once and renders the page; `/metrics`
//! serves that snapshot. Names, types, units and labels are dcgm-exporter's
//! ([`crate::expose::dcgm`]), so benchrun and anyone's Prometheus treat it the
//! same. Fields NVML does not support on a GPU are left out, not written as
//! blanks. XID events come from NVML's event API on a thread of their own
//! ([`xid`]). A GPU a pod holds carries the pod's `container`, `namespace` and
//! `pod` labels, from the kubelet's pod-resources socket ([`pods`]), so a
//! run's `auto` scope counts only the target's GPUs, as with dcgm-exporter.
//! What NVML has no equivalent for is not served: the profiling
//! (`DCGM_FI_PROF_*` activity) fields and memory temperature. A GPU NVML has
//! lost is left off the page (and logged) while the others are still served.

pub mod pods;
mod source;
pub mod xid;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Args;

use self::pods::{Holders, PodResourcesClient};
pub use self::source::{GpuSource, LIBRARY, Nvml, Reading, Readings, STATIC_BINARY};
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
    #[arg(long, default_value = "1s", value_parser = crate::flags::go_duration)]
    pub interval: Duration,
    /// Only these fields (dcgm-exporter names, comma-separated; default: all).
    #[arg(long, value_delimiter = ',')]
    pub fields: Vec<String>,
    /// The `Hostname` label (default: $NODE_NAME, else the host's name).
    #[arg(long)]
    pub hostname: Option<String>,
    /// The kubelet's pod-resources socket, for the pod labels of the GPUs pods hold.
    #[arg(long, default_value = pods::DEFAULT_SOCKET)]
    pub pod_resources: PathBuf,
    /// Do not ask the kubelet which pod holds which GPU.
    #[arg(long)]
    pub no_pod_labels: bool,
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

/// The page for one set of readings; a GPU held by pods is written once for
/// each container that holds it, as dcgm-exporter writes it.
pub fn page(
    readings: &[Reading],
    holders: &Holders,
    hostname: &str,
    driver: &str,
    only: &[String],
) -> String {
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
    let mut rows: Vec<Row<'_>> = Vec::with_capacity(readings.len());
    for ((r, id), values) in readings.iter().zip(&ids).zip(&values) {
        let held = pods::of(holders, &r.uuid, r.index);
        if held.is_empty() {
            rows.push(Row {
                id,
                pod: None,
                values,
            });
        }
        rows.extend(held.iter().map(|p| Row {
            id,
            pod: Some(p),
            values,
        }));
    }
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
    let mut reader = Reader::new(&opts, source);
    reader.read().await;
    if let Ok(Err(e)) = reader.latest.lock().map(|l| l.clone()) {
        return Err(e);
    }
    let latest = reader.latest.clone();
    let listener = crate::net::bind(crate::net::listen_addr(opts.host, opts.port)).await?;
    eprintln!(
        "benchrun gpu-exporter: serving on http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let ticker = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(opts.interval.max(Duration::from_millis(100)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            reader.read().await;
        }
    });
    let served = crate::net::serve(listener, router(latest)).await;
    ticker.abort();
    served
}

/// Everything one read needs: the GPUs, who holds them, and where the page goes.
struct Reader {
    source: Arc<dyn GpuSource>,
    pods: Option<PodLabels>,
    latest: Latest,
    hostname: String,
    driver: String,
    only: Vec<String>,
    /// The GPUs the last read could not read, logged when they change.
    unreadable: Vec<String>,
}

impl Reader {
    fn new(opts: &GpuExporterOpts, source: Arc<dyn GpuSource>) -> Self {
        Self {
            pods: (!opts.no_pod_labels).then(|| PodLabels::new(&opts.pod_resources)),
            latest: Arc::new(Mutex::new(Err("not read yet".into()))),
            hostname: crate::net::exporter_hostname(opts.hostname.as_deref()),
            driver: source.driver_version(),
            only: opts.fields.clone(),
            unreadable: Vec::new(),
            source,
        }
    }

    /// Reads every GPU once and replaces the page.
    /// The kubelet is asked while NVML reads, so a slow kubelet does not delay
    /// the page by more than the slower of the two.
    async fn read(&mut self) {
        let source = self.source.clone();
        // NVML calls block: off the async threads.
        let gpus = tokio::task::spawn_blocking(move || source.read_all());
        let holders = async {
            match &mut self.pods {
                Some(p) => p.holders().await.clone(),
                None => Holders::new(),
            }
        };
        let (readings, holders) = tokio::join!(gpus, holders);
        let readings = readings.unwrap_or_else(|e| Err(format!("the read stopped: {e}")));
        let next = readings.and_then(|r| {
            if r.unreadable != self.unreadable {
                for e in &r.unreadable {
                    eprintln!("benchrun gpu-exporter: {e}: left off the page");
                }
                if r.unreadable.is_empty() {
                    eprintln!("benchrun gpu-exporter: every GPU reads again");
                }
                self.unreadable = r.unreadable.clone();
            }
            if r.gpus.is_empty() && !r.unreadable.is_empty() {
                return Err(r.unreadable.join("; "));
            }
            Ok(page(
                &r.gpus,
                &holders,
                &self.hostname,
                &self.driver,
                &self.only,
            ))
        });
        if let Ok(mut l) = self.latest.lock() {
            *l = next;
        }
    }
}

/// Who holds which GPU, asked of the kubelet on every read. When it does not
/// answer, the last answer stands (a pod rarely leaves in the seconds a kubelet
/// restarts), and each change between answering and not is logged once.
struct PodLabels {
    client: PodResourcesClient,
    holders: Holders,
    failing: Option<String>,
}

impl PodLabels {
    fn new(socket: &std::path::Path) -> Self {
        Self {
            client: PodResourcesClient::new(socket),
            holders: Holders::new(),
            failing: None,
        }
    }

    async fn holders(&mut self) -> &Holders {
        match self.client.list().await {
            Ok(r) => {
                if self.failing.take().is_some() {
                    eprintln!(
                        "benchrun gpu-exporter: the kubelet answers again: pod labels are current"
                    );
                }
                self.holders = pods::holders(&r);
            }
            Err(e) => {
                if self.failing.as_ref() != Some(&e) {
                    eprintln!(
                        "benchrun gpu-exporter: {e}; {} until it answers",
                        if self.holders.is_empty() {
                            "no pod labels"
                        } else {
                            "the last pod labels stand"
                        }
                    );
                    self.failing = Some(e);
                }
            }
        }
        &self.holders
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
