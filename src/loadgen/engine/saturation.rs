//! Whether the load generator was itself the bottleneck of a step.
//!
//! A client that cannot keep up with the load asked of it measures its own
//! delay as the server's: a request sent late, a token read late. So while a
//! step is measured the worker watches itself: how late its event loop wakes
//! (a timer every [`TICK`], the lateness of each wake-up), how much of the CPU
//! it may use it used, and, in open loop, how late its sends left. Past the
//! thresholds below, the step says `clientSaturated` with the figures, and the
//! run raises a warning.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::stats::Stats;

/// How often the event loop's lag is sampled.
pub const TICK: Duration = Duration::from_millis(10);
/// Event-loop lag (p99) past which timings are the client's as much as the
/// server's: token gaps are milliseconds.
pub const MAX_LAG_P99_MS: f64 = 5.0;
/// Share of the CPU the worker may use past which it is saturated.
pub const MAX_CPU: f64 = 0.9;
/// Open loop: send lateness (p99) past which the asked rate was not sent.
pub const MAX_SEND_LATENESS_P99_S: f64 = 0.010;

/// How loaded the load generator was over a step (the worst worker's figures
/// once merged).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClientLoad {
    /// How late the event loop woke, p99 and max, ms.
    pub event_loop_lag_p99_ms: f64,
    pub event_loop_lag_max_ms: f64,
    /// CPU used over the step, as a share of the CPUs the worker may use.
    pub cpu_utilization: f64,
    /// Open loop: how late sends left, p99, s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_lateness_p99_s: Option<f64>,
    /// Why the client was the bottleneck; empty when it was not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub saturated_because: Vec<String>,
}

impl ClientLoad {
    /// The figures, judged against the thresholds.
    pub fn judged(lag_p99_ms: f64, lag_max_ms: f64, cpu: f64, lateness_p99_s: Option<f64>) -> Self {
        let mut why = Vec::new();
        if lag_p99_ms > MAX_LAG_P99_MS {
            why.push(format!(
                "its event loop woke {lag_p99_ms:.1} ms late at p99 (over {MAX_LAG_P99_MS} ms)"
            ));
        }
        if cpu > MAX_CPU {
            why.push(format!(
                "it used {:.0} % of its CPU (over {:.0} %)",
                cpu * 100.0,
                MAX_CPU * 100.0
            ));
        }
        if let Some(l) = lateness_p99_s.filter(|l| *l > MAX_SEND_LATENESS_P99_S) {
            why.push(format!(
                "its sends left {:.1} ms behind schedule at p99 (over {:.0} ms)",
                l * 1e3,
                MAX_SEND_LATENESS_P99_S * 1e3
            ));
        }
        ClientLoad {
            event_loop_lag_p99_ms: lag_p99_ms,
            event_loop_lag_max_ms: lag_max_ms,
            cpu_utilization: cpu,
            send_lateness_p99_s: lateness_p99_s,
            saturated_because: why,
        }
    }

    pub fn saturated(&self) -> bool {
        !self.saturated_because.is_empty()
    }

    /// Several workers' loads: the worst of each figure, every reason once.
    pub fn worst(parts: impl IntoIterator<Item = ClientLoad>) -> Option<ClientLoad> {
        parts.into_iter().reduce(|mut a, b| {
            a.event_loop_lag_p99_ms = a.event_loop_lag_p99_ms.max(b.event_loop_lag_p99_ms);
            a.event_loop_lag_max_ms = a.event_loop_lag_max_ms.max(b.event_loop_lag_max_ms);
            a.cpu_utilization = a.cpu_utilization.max(b.cpu_utilization);
            a.send_lateness_p99_s = match (a.send_lateness_p99_s, b.send_lateness_p99_s) {
                (Some(x), Some(y)) => Some(x.max(y)),
                (x, y) => x.or(y),
            };
            for w in b.saturated_because {
                if !a.saturated_because.contains(&w) {
                    a.saturated_because.push(w);
                }
            }
            a
        })
    }
}

/// Watches the worker over one step.
pub struct Probe {
    lag: Arc<Mutex<Stats>>,
    task: tokio::task::JoinHandle<()>,
    cpu0: Option<f64>,
    wall0: Instant,
}

impl Probe {
    pub fn start() -> Self {
        let lag = Arc::new(Mutex::new(Stats::default()));
        let samples = lag.clone();
        let task = tokio::spawn(async move {
            loop {
                let asked = Instant::now();
                tokio::time::sleep(TICK).await;
                let late = asked.elapsed().saturating_sub(TICK).as_secs_f64();
                samples.lock().unwrap_or_else(|p| p.into_inner()).add(late);
            }
        });
        Probe {
            lag,
            task,
            cpu0: cpu_seconds(),
            wall0: Instant::now(),
        }
    }

    /// The step's load; `lateness_p99_s`: the open loop's send lateness.
    pub fn finish(self, lateness_p99_s: Option<f64>) -> ClientLoad {
        self.task.abort();
        let wall = self.wall0.elapsed().as_secs_f64();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let cpu = match (self.cpu0, cpu_seconds()) {
            (Some(a), Some(b)) if wall > 0.0 => ((b - a) / wall / cores).max(0.0),
            _ => 0.0,
        };
        let lag = self.lag.lock().unwrap_or_else(|p| p.into_inner()).summary();
        ClientLoad::judged(lag.p99 * 1e3, lag.max * 1e3, cpu, lateness_p99_s)
    }
}

/// CPU time this process used so far (user and system), s.
fn cpu_seconds() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage writes a whole `rusage` into the pointer it is given
    // and returns 0 when it did; the value is read only then.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(s(usage.ru_utime) + s(usage.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_threshold_names_itself() {
        let calm = ClientLoad::judged(0.4, 2.0, 0.3, Some(0.001));
        assert!(!calm.saturated(), "{calm:?}");
        let lagging = ClientLoad::judged(12.3, 40.0, 0.5, None);
        assert!(
            lagging.saturated_because[0].contains("12.3 ms late"),
            "{lagging:?}"
        );
        let busy = ClientLoad::judged(1.0, 2.0, 0.97, None);
        assert!(busy.saturated_because[0].contains("97 %"), "{busy:?}");
        let behind = ClientLoad::judged(1.0, 2.0, 0.2, Some(0.05));
        assert!(
            behind.saturated_because[0].contains("50.0 ms behind"),
            "{behind:?}"
        );
        let worst = ClientLoad::worst([calm, lagging.clone(), busy]).unwrap();
        assert_eq!(worst.event_loop_lag_p99_ms, 12.3);
        assert_eq!(worst.cpu_utilization, 0.97);
        assert_eq!(worst.saturated_because.len(), 2);
    }

    /// A worker whose event loop is blocked (by a task that never yields,
    /// as a client past its capacity is) sees it and says so.
    #[test]
    fn a_blocked_event_loop_is_seen() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let load = rt.block_on(async {
            let probe = Probe::start();
            let hog = tokio::spawn(async {
                for _ in 0..20 {
                    // Work that holds the only thread for 20 ms at a time.
                    std::thread::sleep(Duration::from_millis(20));
                    tokio::task::yield_now().await;
                }
            });
            hog.await.unwrap();
            probe.finish(None)
        });
        assert!(load.saturated(), "{load:?}");
        assert!(load.event_loop_lag_p99_ms > MAX_LAG_P99_MS, "{load:?}");
    }
}
