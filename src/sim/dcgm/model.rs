//! The simulated GPU: what an inference server's load does to its power,
//! energy, activity, clocks, memory and temperature. Pure: time steps are
//! passed in.
//!
//! Between two ticks the load is constant, so power is constant, and the
//! energy counter adds `power × dt` exactly: the counter *is* the integral of
//! the power the simulator reports. Exported values change only when
//! [`Gpu::publish`] runs (every update interval, like dcgm-exporter's
//! collection interval); gauges that describe an interval (utilization,
//! activity, power) are the interval's averages, so `power × interval` over
//! the published values adds up to the counter's delta too.
//!
//! The activity model, per GPU of a serving pod, from the server's metrics:
//! `busy` (any request running), `l = min(1, running / saturation)` (batch
//! fullness) and `f = prompt / (prompt + 10 × generated)` tokens per second
//! (the prefill share of the work: prefill is compute-bound, decode
//! memory-bound):
//!
//! | quantity | while busy | idle |
//! | --- | --- | --- |
//! | load (→ power) | min(1, 0.3 + 0.6 l + 0.2 f) | 0 |
//! | SM active | 0.25 + 0.65 l + 0.1 f | 0 |
//! | tensor active | 0.05 + 0.25 l + 0.5 f | 0 |
//! | DRAM active | 0.2 + 0.6 l (1 − f) | 0 |
//! | SM occupancy | 0.6 × SM active | 0 |
//! | PCIe RX / TX | 1 MB/s + 4 KiB per prompt token / 0.5 MB/s + 4 KiB per generated token | 0 |
//! | NVLink (pods on several GPUs) | 2 GB/s × (0.2 + 0.8 l) each way | 0 |
//!
//! Power = idle + (limit − idle) × load. Temperatures approach
//! `idle + (max − idle) × load` with time constant `tau`. Framebuffer use is the
//! weights share plus the KV cache's share of the rest, for a GPU that serves
//! a pod.

/// The board's constants.
#[derive(Clone, Debug, PartialEq)]
pub struct Board {
    pub idle_w: f64,
    pub limit_w: f64,
    pub fb_total_mib: f64,
    /// Share of the framebuffer the weights take on a serving GPU.
    pub weights_share: f64,
    pub saturation: f64,
    pub tau_s: f64,
    pub temp_idle: f64,
    pub temp_max: f64,
    pub sm_clock_idle: f64,
    pub sm_clock_max: f64,
    pub mem_clock: f64,
}

impl Board {
    /// An H100 SXM's figures.
    pub fn h100() -> Self {
        Self {
            idle_w: 70.0,
            limit_w: 700.0,
            fb_total_mib: 81_559.0,
            weights_share: 0.2,
            saturation: 32.0,
            tau_s: 20.0,
            temp_idle: 32.0,
            temp_max: 72.0,
            sm_clock_idle: 345.0,
            sm_clock_max: 1980.0,
            mem_clock: 2619.0,
        }
    }

    pub fn power(&self, load: f64) -> f64 {
        self.idle_w + (self.limit_w - self.idle_w) * load.clamp(0.0, 1.0)
    }
}

/// What a GPU's server was doing over a tick.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Load {
    pub running: f64,
    pub kv_usage: f64,
    pub prompt_tokens_per_s: f64,
    pub generation_tokens_per_s: f64,
    /// The pod spans several GPUs (tensor parallel: NVLink traffic).
    pub multi_gpu: bool,
    /// The GPU is assigned to a pod (its weights are loaded).
    pub serving: bool,
}

/// Activity over a tick, each 0..=1 except the byte rates.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Activity {
    pub busy: f64,
    pub load: f64,
    pub sm: f64,
    pub tensor: f64,
    pub dram: f64,
    pub occupancy: f64,
    pub pcie_rx_bps: f64,
    pub pcie_tx_bps: f64,
    pub nvlink_bps: f64,
}

pub fn activity(l: &Load, board: &Board) -> Activity {
    if l.running <= 0.0 {
        return Activity::default();
    }
    let fill = (l.running / board.saturation.max(1e-9)).min(1.0);
    let (p, g) = (
        l.prompt_tokens_per_s.max(0.0),
        l.generation_tokens_per_s.max(0.0),
    );
    let f = if p + g > 0.0 { p / (p + 10.0 * g) } else { 0.0 };
    let sm = (0.25 + 0.65 * fill + 0.1 * f).min(1.0);
    Activity {
        busy: 1.0,
        load: (0.3 + 0.6 * fill + 0.2 * f).min(1.0),
        sm,
        tensor: (0.05 + 0.25 * fill + 0.5 * f).min(1.0),
        dram: (0.2 + 0.6 * fill * (1.0 - f)).min(1.0),
        occupancy: 0.6 * sm,
        pcie_rx_bps: 1e6 + 4096.0 * p,
        pcie_tx_bps: 5e5 + 4096.0 * g,
        nvlink_bps: if l.multi_gpu {
            2e9 * (0.2 + 0.8 * fill)
        } else {
            0.0
        },
    }
}

/// Time integrals over the current update interval.
#[derive(Clone, Copy, Debug, Default)]
struct Interval {
    dt: f64,
    energy_mj: f64,
    busy: f64,
    sm: f64,
    tensor: f64,
    dram: f64,
    occupancy: f64,
    pcie_rx: f64,
    pcie_tx: f64,
    nvlink: f64,
}

/// The values dcgm-exporter would serve, as of the last publish.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub power_w: f64,
    /// Whole millijoules, as DCGM counts.
    pub energy_mj: u64,
    pub gpu_util_pct: f64,
    pub mem_copy_util_pct: f64,
    pub sm_clock_mhz: f64,
    pub mem_clock_mhz: f64,
    pub gpu_temp_c: f64,
    pub mem_temp_c: f64,
    pub fb_used_mib: f64,
    pub fb_free_mib: f64,
    pub gr_engine_active: f64,
    pub sm_active: f64,
    pub sm_occupancy: f64,
    pub tensor_active: f64,
    pub dram_active: f64,
    pub pcie_rx_bps: f64,
    pub pcie_tx_bps: f64,
    pub nvlink_bps: f64,
    /// Clock-event reasons: 1 (GPU idle) when nothing ran over the interval.
    pub clock_reasons: u64,
}

/// One simulated GPU.
#[derive(Clone, Debug)]
pub struct Gpu {
    /// Energy since the simulator started, mJ, integrated exactly per tick.
    energy_mj: f64,
    temp_c: f64,
    mem_temp_c: f64,
    last_load: Load,
    current: Interval,
    pub snapshot: Snapshot,
}

impl Gpu {
    pub fn new(board: &Board) -> Self {
        let mut g = Self {
            energy_mj: 0.0,
            temp_c: board.temp_idle,
            mem_temp_c: board.temp_idle - 2.0,
            last_load: Load::default(),
            current: Interval::default(),
            snapshot: Snapshot::default(),
        };
        g.publish(board);
        g
    }

    /// Energy integrated so far, mJ (the ground truth).
    pub fn energy_mj(&self) -> f64 {
        self.energy_mj
    }

    /// Power now, W.
    pub fn power_w(&self, board: &Board) -> f64 {
        board.power(activity(&self.last_load, board).load)
    }

    /// Advances `dt` seconds with `load` held constant over them.
    pub fn advance(&mut self, dt: f64, load: &Load, board: &Board) {
        if dt <= 0.0 || !dt.is_finite() {
            return;
        }
        let a = activity(load, board);
        let e = board.power(a.load) * dt * 1e3;
        self.energy_mj += e;
        let c = &mut self.current;
        c.dt += dt;
        c.energy_mj += e;
        c.busy += a.busy * dt;
        c.sm += a.sm * dt;
        c.tensor += a.tensor * dt;
        c.dram += a.dram * dt;
        c.occupancy += a.occupancy * dt;
        c.pcie_rx += a.pcie_rx_bps * dt;
        c.pcie_tx += a.pcie_tx_bps * dt;
        c.nvlink += a.nvlink_bps * dt;
        let k = 1.0 - (-dt / board.tau_s.max(1e-9)).exp();
        let target = board.temp_idle + (board.temp_max - board.temp_idle) * a.load;
        self.temp_c += (target - self.temp_c) * k;
        self.mem_temp_c += (target - 2.0 - self.mem_temp_c) * k;
        self.last_load = *load;
    }

    /// Makes the exported snapshot from the interval that ends now.
    pub fn publish(&mut self, board: &Board) {
        let c = std::mem::take(&mut self.current);
        let avg = |x: f64| if c.dt > 0.0 { x / c.dt } else { 0.0 };
        let power_w = if c.dt > 0.0 {
            c.energy_mj / 1e3 / c.dt
        } else {
            board.idle_w
        };
        let l = &self.last_load;
        let fb_used = if l.serving {
            let weights = board.weights_share * board.fb_total_mib;
            let kv_region = 0.9 * board.fb_total_mib - weights;
            (weights + kv_region * l.kv_usage.clamp(0.0, 1.0)).round()
        } else {
            0.0
        };
        let busy = avg(c.busy);
        self.snapshot = Snapshot {
            power_w,
            energy_mj: self.energy_mj.floor() as u64,
            gpu_util_pct: (100.0 * busy).round(),
            mem_copy_util_pct: (100.0 * avg(c.dram)).round(),
            sm_clock_mhz: if busy > 0.0 {
                board.sm_clock_max
            } else {
                board.sm_clock_idle
            },
            mem_clock_mhz: board.mem_clock,
            gpu_temp_c: self.temp_c.round(),
            mem_temp_c: self.mem_temp_c.round(),
            fb_used_mib: fb_used,
            fb_free_mib: board.fb_total_mib - fb_used,
            gr_engine_active: avg(c.busy).min(1.0) * (avg(c.sm) + 0.1).min(1.0),
            sm_active: avg(c.sm),
            sm_occupancy: avg(c.occupancy),
            tensor_active: avg(c.tensor),
            dram_active: avg(c.dram),
            pcie_rx_bps: avg(c.pcie_rx).round(),
            pcie_tx_bps: avg(c.pcie_tx).round(),
            nvlink_bps: avg(c.nvlink).round(),
            clock_reasons: u64::from(busy == 0.0),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(running: f64) -> Load {
        Load {
            running,
            kv_usage: 0.5,
            prompt_tokens_per_s: 2000.0,
            generation_tokens_per_s: 1000.0,
            multi_gpu: false,
            serving: true,
        }
    }

    #[test]
    fn the_energy_counter_is_the_integral_of_power() {
        let b = Board::h100();
        let mut g = Gpu::new(&b);
        let mut integral_j = 0.0;
        let mut published_j = 0.0;
        // Uneven ticks and changing load; publish every few ticks.
        for i in 0..500u32 {
            let dt = 0.05 + 0.01 * f64::from(i % 7);
            let load = busy(f64::from(i % 40));
            integral_j += b.power(activity(&load, &b).load) * dt;
            g.advance(dt, &load, &b);
            if i % 10 == 9 {
                let before = g.snapshot.energy_mj;
                let interval: f64 = (i - 9..=i).map(|k| 0.05 + 0.01 * f64::from(k % 7)).sum();
                g.publish(&b);
                published_j += g.snapshot.power_w * interval;
                let delta_j = (g.snapshot.energy_mj - before) as f64 / 1e3;
                assert!((delta_j - g.snapshot.power_w * interval).abs() < 2e-3);
            }
        }
        assert!((g.energy_mj() / 1e3 - integral_j).abs() < 1e-9 * integral_j);
        assert!((published_j - integral_j).abs() < 1e-6 * integral_j);
        assert_eq!(g.snapshot.energy_mj, g.energy_mj().floor() as u64);
    }

    #[test]
    fn power_follows_load_between_idle_and_the_limit() {
        let b = Board::h100();
        let mut last = b.power(activity(&Load::default(), &b).load);
        assert_eq!(last, b.idle_w);
        for running in [1.0, 4.0, 16.0, 32.0] {
            let p = b.power(activity(&busy(running), &b).load);
            assert!(p > last && p <= b.limit_w, "{running}: {p}");
            last = p;
        }
        // Prefill-heavy work is more tensor, decode-heavy more DRAM.
        let mut prefill = busy(8.0);
        prefill.generation_tokens_per_s = 10.0;
        let mut decode = busy(8.0);
        decode.prompt_tokens_per_s = 10.0;
        let (ap, ad) = (activity(&prefill, &b), activity(&decode, &b));
        assert!(ap.tensor > ad.tensor && ad.dram > ap.dram);
    }

    #[test]
    fn temperature_lags_and_idle_intervals_read_idle() {
        let b = Board::h100();
        let mut g = Gpu::new(&b);
        g.advance(1.0, &busy(32.0), &b);
        g.publish(&b);
        let after_1s = g.snapshot.gpu_temp_c;
        assert!(
            after_1s > b.temp_idle && after_1s < b.temp_idle + 5.0,
            "{after_1s}"
        );
        g.advance(200.0, &busy(32.0), &b);
        g.publish(&b);
        let settled = b.temp_idle + (b.temp_max - b.temp_idle) * activity(&busy(32.0), &b).load;
        assert!(
            (g.snapshot.gpu_temp_c - settled).abs() <= 1.0,
            "{}",
            g.snapshot.gpu_temp_c
        );
        assert_eq!(g.snapshot.gpu_util_pct, 100.0);
        assert_eq!(g.snapshot.clock_reasons, 0);
        assert!(g.snapshot.fb_used_mib > b.weights_share * b.fb_total_mib);

        g.advance(1.0, &Load::default(), &b);
        g.publish(&b);
        assert_eq!(
            (
                g.snapshot.gpu_util_pct,
                g.snapshot.power_w,
                g.snapshot.clock_reasons
            ),
            (0.0, b.idle_w, 1)
        );
        assert_eq!(g.snapshot.fb_used_mib, 0.0);
    }
}
