//! `benchrun sim dcgm`: a dcgm-exporter for a node of simulated GPUs.
//!
//! Each GPU either idles or serves an inference server: given with
//! `--serve GPUS=URL[@NAMESPACE/POD/CONTAINER]`, or, with `--kubernetes`, found
//! as dcgm-exporter finds them — the pods on this node (`NODE_NAME`) that
//! request `nvidia.com/gpu`, which get the lowest free GPUs and keep them while
//! they live, and whose pod, namespace and container label their GPUs' series.
//! Every `--tick` the simulator reads each server's `/metrics` (vLLM or SGLang
//! names), advances the GPUs' model ([`model`]) and integrates their energy;
//! every `--update-interval` it publishes new values on `/metrics`, in
//! dcgm-exporter's format (stale in between, as dcgm-exporter's are).
//!
//! `GET /sim/truth` (`?history=0` leaves the history out) gives each GPU's
//! exact integrated energy and power now, and its energy at every tick (the
//! newest `--truth-history`), for checking what a client computed.
//!
//! `POST /sim/restart?downS=N` restarts the exporter in place, as a
//! dcgm-exporter container that crashed and was restarted in its pod: for
//! `N` seconds (at most 60) `/metrics` answers 503, and then the first page
//! comes with the next refresh. The GPUs go on drawing power, and their
//! energy counters are the driver's, so they go on counting (NVML's total
//! energy is counted since the driver loaded, not since the exporter
//! started).

mod cluster;
mod model;
mod page;
mod serving;

use crate::clock::unix_ms;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State as AxState};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Args;
use serde::Serialize;
use tokio::time::Instant;

pub use self::model::{Board, Gpu, Load};
pub use self::page::Identity;
use self::serving::{Assignment, PodRef, Watch};
use crate::flags::go_duration;
use crate::scrape::fetch::{self, ScrapeClient};

#[derive(Args, Debug, Clone)]
pub struct DcgmOpts {
    /// Address to listen on (default: $POD_IP, else every interface).
    #[arg(long)]
    pub host: Option<IpAddr>,
    /// dcgm-exporter's port.
    #[arg(long, default_value_t = 9400)]
    pub port: u16,
    /// GPUs on this node (default: with --kubernetes the node's
    /// `nvidia.com/gpu` capacity, else 8).
    #[arg(long)]
    pub gpus: Option<usize>,
    /// The `modelName` label (default: with --kubernetes the node's
    /// `nvidia.com/gpu.product` label, dashes read as spaces, else an H100's name).
    #[arg(long)]
    pub model_name: Option<String>,
    /// The `Hostname` label (default: $NODE_NAME, else the host's name).
    #[arg(long)]
    pub hostname: Option<String>,
    #[arg(long, default_value = "570.124.06")]
    pub driver_version: String,
    /// Board power at idle, W.
    #[arg(long, default_value_t = 70.0)]
    pub idle_power: f64,
    /// Board power limit, W (drawn at full load).
    #[arg(long, default_value_t = 700.0)]
    pub power_limit: f64,
    /// Framebuffer size, MiB.
    #[arg(long, default_value_t = 81_559.0)]
    pub fb_total_mib: f64,
    /// Running requests at which a GPU is fully loaded.
    #[arg(long, default_value_t = 32.0)]
    pub saturation: f64,
    /// Time constant of the temperatures.
    #[arg(long, default_value = "20s", value_parser = go_duration)]
    pub thermal_tau: Duration,
    /// How often exported values change (dcgm-exporter's default is 30s).
    #[arg(long, default_value = "1s", value_parser = go_duration)]
    pub update_interval: Duration,
    /// How often servers are read and energy integrated.
    #[arg(long, default_value = "100ms", value_parser = go_duration)]
    pub tick: Duration,
    /// GPUS=URL[@NAMESPACE/POD/CONTAINER]: these GPUs serve the server whose
    /// metrics are at URL (GPUS like 0, 0-3 or 0,2).
    #[arg(long)]
    pub serve: Vec<String>,
    /// Find the serving pods on this node ($NODE_NAME) through the Kubernetes API.
    #[arg(long)]
    pub kubernetes: bool,
    /// Ticks of energy history kept per GPU for /sim/truth.
    #[arg(long, default_value_t = 36_000)]
    pub truth_history: usize,
    /// Fields this board does not serve (repeatable), e.g.
    /// DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION for a GPU without an energy
    /// counter, as on boards older than Volta.
    #[arg(long)]
    pub omit: Vec<String>,
}

impl DcgmOpts {
    fn board(&self) -> Board {
        Board {
            idle_w: self.idle_power,
            limit_w: self.power_limit.max(self.idle_power),
            fb_total_mib: self.fb_total_mib,
            saturation: self.saturation,
            tau_s: self.thermal_tau.as_secs_f64(),
            ..Board::h100()
        }
    }
}

/// The node's GPUs and what they serve.
struct Node {
    board: Board,
    ids: Vec<Identity>,
    gpus: Vec<Gpu>,
    assignments: Vec<Assignment>,
    watches: HashMap<String, Watch>,
    /// (unix ms, energy mJ) per GPU, per tick.
    history: Vec<VecDeque<(u64, f64)>>,
    history_cap: usize,
    page: String,
    poll_errors: u64,
    last_poll_error: Option<String>,
    update_interval_s: f64,
    tick_s: f64,
    /// Fields left off the page.
    omit: Vec<String>,
    /// Restarting (`/sim/restart`): no page until then, and none until
    /// the refresh after it.
    down_until: Option<Instant>,
}

impl Node {
    fn render(&mut self) {
        let pods = self.pods();
        let rows: Vec<_> = self
            .ids
            .iter()
            .zip(&self.gpus)
            .enumerate()
            .map(|(i, (id, g))| (id, pods[i].as_ref(), &g.snapshot))
            .collect();
        self.page = page::render(
            &rows,
            &page::Limits {
                power_limit_w: self.board.limit_w,
                omit: &self.omit,
            },
        );
    }

    fn pods(&self) -> Vec<Option<PodRef>> {
        let mut out = vec![None; self.gpus.len()];
        for a in &self.assignments {
            for &g in &a.gpus {
                out[g] = a.pod.clone();
            }
        }
        out
    }
}

/// What this node is: from the flags, else from its Node object.
struct Shape {
    gpus: usize,
    model_name: String,
    hostname: String,
}

const DEFAULT_GPUS: usize = 8;
const DEFAULT_MODEL: &str = "NVIDIA H100 80GB HBM3";

/// Serves until the process is stopped.
pub async fn run(opts: DcgmOpts) -> Result<(), String> {
    let node_name = std::env::var("NODE_NAME").ok();
    let client = match (opts.kubernetes, &node_name) {
        (true, None) => {
            return Err("--kubernetes needs NODE_NAME (the downward API's spec.nodeName)".into());
        }
        (true, Some(_)) => Some(
            kube::Client::try_default()
                .await
                .map_err(|e| format!("cannot reach the Kubernetes API: {e}"))?,
        ),
        (false, _) => None,
    };
    let mut shape = Shape {
        gpus: opts.gpus.unwrap_or(DEFAULT_GPUS),
        model_name: opts
            .model_name
            .clone()
            .unwrap_or_else(|| DEFAULT_MODEL.into()),
        hostname: crate::net::exporter_hostname(opts.hostname.as_deref()),
    };
    if let (Some(client), Some(name)) = (&client, &node_name) {
        cluster::node_shape(client, name, &opts, &mut shape).await?;
    }
    if shape.gpus == 0 {
        return Err("the node has no GPUs to simulate (--gpus must be at least 1)".into());
    }
    let assignments = opts
        .serve
        .iter()
        .map(|s| serving::parse_serve(s, shape.gpus))
        .collect::<Result<Vec<_>, _>>()?;
    let node = Arc::new(Mutex::new(new_node(&opts, &shape, assignments)));
    let listener = crate::net::bind(crate::net::listen_addr(opts.host, opts.port)).await?;
    eprintln!(
        "benchrun sim dcgm: {} simulated {} GPUs on {}, serving on http://{}",
        shape.gpus,
        shape.model_name,
        shape.hostname,
        listener.local_addr().map_err(|e| e.to_string())?
    );
    if let (Some(client), Some(name)) = (client, node_name) {
        tokio::spawn(cluster::discover(client, name, node.clone(), shape.gpus));
    }
    tokio::spawn(simulate(node.clone(), opts.tick, opts.update_interval));
    crate::net::serve(listener, router(node)).await
}

fn new_node(opts: &DcgmOpts, shape: &Shape, assignments: Vec<Assignment>) -> Node {
    let board = opts.board();
    let n = shape.gpus;
    let mut node = Node {
        ids: (0..n)
            .map(|i| page::identity(i, &shape.hostname, &shape.model_name, &opts.driver_version))
            .collect(),
        gpus: (0..n).map(|_| Gpu::new(&board)).collect(),
        board,
        assignments,
        watches: HashMap::new(),
        history: vec![VecDeque::new(); n],
        history_cap: opts.truth_history,
        page: String::new(),
        poll_errors: 0,
        last_poll_error: None,
        update_interval_s: opts.update_interval.as_secs_f64(),
        tick_s: opts.tick.as_secs_f64(),
        omit: opts.omit.clone(),
        down_until: None,
    };
    node.render();
    node
}

fn router(node: Arc<Mutex<Node>>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok" }))
        .route("/sim/truth", get(truth))
        .route("/sim/restart", axum::routing::post(restart))
        .with_state(node)
}

async fn metrics(AxState(node): AxState<Arc<Mutex<Node>>>) -> Response {
    let n = node.lock().unwrap_or_else(|p| p.into_inner());
    if n.down_until.is_some() {
        let why = "dcgm-exporter is restarting\n";
        return (axum::http::StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    }
    let page = n.page.clone();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], page).into_response()
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestartQuery {
    down_s: f64,
}

/// The exporter restarts: no page for `downS` seconds and until the
/// refresh after them; the GPUs and their counters go on.
async fn restart(
    AxState(node): AxState<Arc<Mutex<Node>>>,
    Query(q): Query<RestartQuery>,
) -> Response {
    if !(0.0..=60.0).contains(&q.down_s) {
        let why = "downS is seconds, from 0 to 60\n";
        return (axum::http::StatusCode::BAD_REQUEST, why).into_response();
    }
    let mut n = node.lock().unwrap_or_else(|p| p.into_inner());
    n.down_until = Some(Instant::now() + Duration::from_secs_f64(q.down_s));
    "restarting\n".into_response()
}

#[derive(serde::Deserialize)]
struct TruthQuery {
    history: Option<u8>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GpuTruth {
    gpu: usize,
    uuid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod: Option<PodRef>,
    /// Integrated exactly up to the last tick.
    energy_mj: f64,
    /// What `/metrics` shows now (as of the last update).
    exported_energy_mj: u64,
    power_w: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<Vec<(u64, f64)>>,
}

async fn truth(AxState(node): AxState<Arc<Mutex<Node>>>, Query(q): Query<TruthQuery>) -> Response {
    let n = node.lock().unwrap_or_else(|p| p.into_inner());
    let pods = n.pods();
    let gpus: Vec<GpuTruth> = n
        .gpus
        .iter()
        .enumerate()
        .map(|(i, g)| GpuTruth {
            gpu: i,
            uuid: n.ids[i].uuid.clone(),
            pod: pods[i].clone(),
            energy_mj: g.energy_mj(),
            exported_energy_mj: g.snapshot.energy_mj,
            power_w: g.power_w(&n.board),
            history: (q.history != Some(0)).then(|| n.history[i].iter().copied().collect()),
        })
        .collect();
    axum::Json(serde_json::json!({
        "hostname": n.ids[0].hostname,
        "tickS": n.tick_s,
        "updateIntervalS": n.update_interval_s,
        "idlePowerW": n.board.idle_w,
        "pollErrors": n.poll_errors,
        "lastPollError": n.last_poll_error,
        "gpus": gpus,
    }))
    .into_response()
}

/// The tick loop: read the servers, advance the GPUs, publish on schedule.
async fn simulate(node: Arc<Mutex<Node>>, tick: Duration, update: Duration) {
    let client = fetch::scrape_client();
    let mut ticker = tokio::time::interval(tick.max(Duration::from_millis(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let epoch = Instant::now();
    let mut last = epoch;
    let mut last_publish = epoch;
    loop {
        ticker.tick().await;
        let targets: Vec<Assignment> = node
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .assignments
            .clone();
        let readings =
            futures::future::join_all(targets.iter().map(|a| poll(&client, &a.url, tick))).await;
        let now = Instant::now();
        let dt = now.duration_since(last).as_secs_f64();
        last = now;
        let t = now.duration_since(epoch).as_secs_f64();
        let mut n = node.lock().unwrap_or_else(|p| p.into_inner());
        let mut loads = vec![Load::default(); n.gpus.len()];
        for (a, reading) in targets.iter().zip(readings) {
            let load = match reading {
                Ok(r) => {
                    let mut l = n.watches.entry(a.url.clone()).or_default().update(t, r);
                    l.multi_gpu = a.gpus.len() > 1;
                    l
                }
                Err(e) => {
                    n.poll_errors += 1;
                    n.last_poll_error = Some(e);
                    // The weights stay loaded; nothing runs.
                    Load {
                        serving: true,
                        ..Load::default()
                    }
                }
            };
            for &g in &a.gpus {
                loads[g] = load;
            }
        }
        n.watches
            .retain(|url, _| targets.iter().any(|a| &a.url == url));
        let stamp = unix_ms();
        let Node {
            board,
            gpus,
            history,
            history_cap,
            ..
        } = &mut *n;
        for (i, g) in gpus.iter_mut().enumerate() {
            g.advance(dt, &loads[i], board);
            if *history_cap > 0 {
                if history[i].len() == *history_cap {
                    history[i].pop_front();
                }
                history[i].push_back((stamp, g.energy_mj()));
            }
        }
        if now.duration_since(last_publish) + tick / 2 >= update {
            last_publish = now;
            // Back from a restart: its first page is this refresh's.
            if n.down_until.is_some_and(|until| now >= until) {
                n.down_until = None;
            }
            let Node { board, gpus, .. } = &mut *n;
            for g in gpus.iter_mut() {
                g.publish(board);
            }
            n.render();
        }
    }
}

async fn poll(
    client: &ScrapeClient,
    url: &str,
    timeout: Duration,
) -> Result<serving::Reading, String> {
    let timeout = timeout.max(Duration::from_millis(200));
    let p = fetch::fetch(client, url, timeout, 4 << 20)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    serving::read(&p.body, p.format)
        .ok_or_else(|| format!("{url}: no running-requests gauge (vLLM or SGLang) on the page"))
}

#[cfg(test)]
mod tests;
