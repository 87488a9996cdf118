//! `benchrun gpu-exporter` on its real loading path: the binary, through
//! nvml-wrapper, loads `libnvidia-ml.so.1` with the dynamic loader and calls
//! into it. The library here is a fake (`tests/fake_nvml/fake_nvml.c`, built by
//! this test with the system C compiler) that answers from a state file the
//! test writes, so every field on the page can be compared with what was set.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use benchrun::scrape::{Entry, Format, Parser};

/// Builds the fake library once per variant; the folder that holds it.
fn library(old_driver: bool) -> PathBuf {
    static FULL: OnceLock<PathBuf> = OnceLock::new();
    static OLD: OnceLock<PathBuf> = OnceLock::new();
    let cell = if old_driver { &OLD } else { &FULL };
    cell.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "fake-nvml-{}-{}",
            if old_driver { "old" } else { "full" },
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_nvml/fake_nvml.c");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let mut cmd = Command::new(&cc);
        cmd.args(["-shared", "-fPIC", "-O1", "-Wall", "-Werror", "-o"])
            .arg(dir.join("libnvidia-ml.so.1"))
            .arg(&src)
            .arg("-lpthread");
        if old_driver {
            cmd.arg("-DFAKE_NVML_OLD_DRIVER");
        }
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("the C compiler {cc:?} did not run: {e}"));
        assert!(
            out.status.success(),
            "building the fake NVML failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
    .clone()
}

/// The fake's state file, rewritten whole (and renamed into place) on each change.
struct State {
    path: PathBuf,
    keys: BTreeMap<String, String>,
}

impl State {
    fn new(name: &str, keys: &[(&str, &str)]) -> Self {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let mut s = Self {
            path: dir.join(format!("fake-nvml-{name}-{}.state", std::process::id())),
            keys: BTreeMap::new(),
        };
        s.set(keys);
        s
    }

    fn set(&mut self, keys: &[(&str, &str)]) {
        for (k, v) in keys {
            self.keys.insert(k.to_string(), v.to_string());
        }
        let text: String = self
            .keys
            .iter()
            .map(|(k, v)| format!("{k} {v}\n"))
            .collect();
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }
}

impl Drop for State {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Two H100s with every field NVML gives; the second has no fan (as an SXM
/// part has none), so its fan speed must be left out.
fn two_gpus(name: &str) -> State {
    let mut keys = vec![("driver", "570.124.06"), ("gpus", "2")];
    let gpu = |i: usize, fan: bool| -> Vec<(String, String)> {
        let mut v: Vec<(&str, String)> = vec![
            ("name", "NVIDIA H100 80GB HBM3".into()),
            (
                "uuid",
                format!("GPU-{i}1d7a6c2-0b4e-4f1a-9c33-8e2d5f6a7b9{i}"),
            ),
            ("bus_id", format!("00000000:{:02X}:00.0", 0x18 + i)),
            ("power_mw", (312_500 + i * 1000).to_string()),
            ("energy_mj", (123_456_789 + i).to_string()),
            ("power_limit_mw", "700000".into()),
            ("util_gpu", (87 - i).to_string()),
            ("util_mem", "41".into()),
            ("mem_total", (85_520_809_984u64).to_string()),
            ("mem_reserved", (500u64 << 20).to_string()),
            ("mem_used", ((40_000u64 << 20) + 12345).to_string()),
            ("mem_free", (41_058u64 << 20).to_string()),
            ("temp", (63 + i).to_string()),
            ("sm_clock", "1980".into()),
            ("mem_clock", "2619".into()),
            ("throttle", "36".into()),
            ("power_violation_ns", "2500000999".into()),
            ("thermal_violation_ns", "7000".into()),
            ("ecc_sbe", "3".into()),
            ("ecc_dbe", "0".into()),
            ("pcie_replay", "2".into()),
            ("pcie_tx_kbs", "350".into()),
            ("pcie_rx_kbs", "1200".into()),
        ];
        if fan {
            v.push(("fan", "40".into()));
        }
        v.into_iter()
            .map(|(k, val)| (format!("gpu{i}.{k}"), val))
            .collect()
    };
    let owned: Vec<(String, String)> = gpu(0, true).into_iter().chain(gpu(1, false)).collect();
    keys.extend(owned.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    State::new(name, &keys)
}

/// A running `benchrun gpu-exporter`, killed on drop.
struct Exporter {
    child: Child,
    url: String,
    log: Arc<Mutex<Vec<String>>>,
}

/// Starts the exporter with `lib` (a folder) on its library path, or with no
/// library at all; `Err` with its log when it exits instead of serving.
fn start(lib: Option<&Path>, state: Option<&Path>) -> Result<Exporter, (i32, String)> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_benchrun"));
    cmd.args([
        "gpu-exporter",
        "--host=127.0.0.1",
        "--port=0",
        "--interval=100ms",
        "--no-pod-labels",
        "--hostname=node-a",
    ])
    .env_remove("LD_LIBRARY_PATH")
    .env_remove("FAKE_NVML_STATE")
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if let Some(lib) = lib {
        cmd.env("LD_LIBRARY_PATH", lib);
    }
    if let Some(state) = state {
        cmd.env("FAKE_NVML_STATE", state);
    }
    let mut child = cmd.spawn().expect("benchrun starts");
    let log = Arc::new(Mutex::new(Vec::new()));
    let lines = follow(child.stderr.take().unwrap(), log.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match lines.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if let Some(addr) = line.split("serving on ").nth(1) {
                    return Ok(Exporter {
                        child,
                        url: format!("{}/metrics", addr.trim()),
                        log,
                    });
                }
            }
            Err(_) => {
                if let Some(status) = child.try_wait().unwrap() {
                    // The reader thread has the rest of what it said.
                    while lines.recv_timeout(Duration::from_millis(500)).is_ok() {}
                    let said = log.lock().unwrap().join("\n");
                    return Err((status.code().unwrap_or(-1), said));
                }
                assert!(
                    Instant::now() < deadline,
                    "the exporter neither served nor exited"
                );
            }
        }
    }
}

/// Copies each line of `stderr` into `log` and the returned channel.
fn follow(stderr: impl Read + Send + 'static, log: Arc<Mutex<Vec<String>>>) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            log.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
    rx
}

impl Exporter {
    /// `/metrics`: the status code and the body.
    fn get(&self) -> (u16, String) {
        let rest = self.url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        let mut s = TcpStream::connect(host).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let code = head.split(' ').nth(1).unwrap().parse().unwrap();
        (code, body.to_string())
    }

    /// Reads the page until `ok` holds of it (the exporter rereads NVML every
    /// 100 ms); the page that passed.
    fn until(&self, what: &str, ok: impl Fn(&Page) -> bool) -> Page {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (code, body) = self.get();
            let page = Page::parse(code, &body);
            if ok(&page) {
                return page;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not seen; last page ({code}):\n{body}\nlog:\n{}",
                self.said()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn said(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A page's samples by GPU index and field, with their labels.
struct Page {
    code: u16,
    samples: BTreeMap<(String, String), (f64, BTreeMap<String, String>)>,
}

impl Page {
    fn parse(code: u16, body: &str) -> Self {
        let mut samples = BTreeMap::new();
        for e in Parser::new(body.as_bytes(), Format::Prometheus) {
            if let Entry::Sample(s) = e {
                let labels: BTreeMap<String, String> = s
                    .labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.text().into_owned()))
                    .collect();
                let gpu = labels.get("gpu").cloned().unwrap_or_default();
                samples.insert((gpu, s.name.to_string()), (s.value, labels));
            }
        }
        Self { code, samples }
    }

    fn value(&self, gpu: u32, field: &str) -> Option<f64> {
        self.samples
            .get(&(gpu.to_string(), field.to_string()))
            .map(|(v, _)| *v)
    }

    fn label(&self, gpu: u32, field: &str, label: &str) -> Option<String> {
        self.samples
            .get(&(gpu.to_string(), field.to_string()))
            .and_then(|(_, l)| l.get(label).cloned())
    }

    fn gpus(&self) -> Vec<String> {
        let mut g: Vec<String> = self.samples.keys().map(|(g, _)| g.clone()).collect();
        g.dedup();
        g
    }
}

fn num(state: &State, key: &str) -> f64 {
    state.keys[key].parse().unwrap()
}

#[test]
fn every_field_nvml_gives_reaches_the_page_in_dcgm_exporters_units() {
    let mut state = two_gpus("fields");
    let exporter = start(Some(&library(false)), Some(&state.path)).expect("serves");
    let page = exporter.until("both GPUs", |p| p.gpus() == ["0", "1"]);
    assert_eq!(page.code, 200);
    for i in 0..2u32 {
        let k = |f: &str| format!("gpu{i}.{f}");
        let s = |f: &str| num(&state, &k(f));
        let mib = |f: &str| (s(f) as u64 / (1 << 20)) as f64;
        let expected = [
            ("DCGM_FI_DEV_POWER_USAGE", s("power_mw") / 1e3),
            ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", s("energy_mj")),
            ("DCGM_FI_DEV_POWER_MGMT_LIMIT", s("power_limit_mw") / 1e3),
            ("DCGM_FI_DEV_GPU_UTIL", s("util_gpu")),
            ("DCGM_FI_DEV_MEM_COPY_UTIL", s("util_mem")),
            ("DCGM_FI_DEV_FB_TOTAL", mib("mem_total")),
            ("DCGM_FI_DEV_FB_USED", mib("mem_used")),
            ("DCGM_FI_DEV_FB_FREE", mib("mem_free")),
            ("DCGM_FI_DEV_GPU_TEMP", s("temp")),
            ("DCGM_FI_DEV_SM_CLOCK", s("sm_clock")),
            ("DCGM_FI_DEV_MEM_CLOCK", s("mem_clock")),
            ("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", s("throttle")),
            // ns from NVML, µs on the page (whole µs, as DCGM counts them).
            (
                "DCGM_FI_DEV_POWER_VIOLATION",
                (s("power_violation_ns") as u64 / 1000) as f64,
            ),
            (
                "DCGM_FI_DEV_THERMAL_VIOLATION",
                (s("thermal_violation_ns") as u64 / 1000) as f64,
            ),
            ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", s("ecc_sbe")),
            ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", s("ecc_dbe")),
            ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", s("pcie_replay")),
            ("DCGM_FI_PROF_PCIE_TX_BYTES", s("pcie_tx_kbs") * 1024.0),
            ("DCGM_FI_PROF_PCIE_RX_BYTES", s("pcie_rx_kbs") * 1024.0),
            ("DCGM_FI_DEV_XID_ERRORS", 0.0),
        ];
        for (field, want) in expected {
            assert_eq!(page.value(i, field), Some(want), "GPU {i} {field}");
        }
        let labels = [
            ("UUID", state.keys[&k("uuid")].clone()),
            ("pci_bus_id", state.keys[&k("bus_id")].clone()),
            ("modelName", state.keys[&k("name")].clone()),
            ("DCGM_FI_DRIVER_VERSION", "570.124.06".into()),
            ("Hostname", "node-a".into()),
            ("device", format!("nvidia{i}")),
        ];
        for (label, want) in labels {
            assert_eq!(
                page.label(i, "DCGM_FI_DEV_POWER_USAGE", label).as_ref(),
                Some(&want),
                "GPU {i} label {label}"
            );
        }
    }
    assert_eq!(page.value(0, "DCGM_FI_DEV_FAN_SPEED"), Some(40.0));
    assert_eq!(
        page.value(1, "DCGM_FI_DEV_FAN_SPEED"),
        None,
        "a field the GPU does not support is left out, not written as 0"
    );

    // Each read is a new snapshot: the energy counter and power move on.
    state.set(&[("gpu0.energy_mj", "123556789"), ("gpu0.power_mw", "455250")]);
    let page = exporter.until("the new energy", |p| {
        p.value(0, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION") == Some(123_556_789.0)
    });
    assert_eq!(page.value(0, "DCGM_FI_DEV_POWER_USAGE"), Some(455.25));
}

#[test]
fn an_xid_event_reaches_its_gpu_with_dcgm_exporters_labels() {
    let mut state = two_gpus("xid");
    let exporter = start(Some(&library(false)), Some(&state.path)).expect("serves");
    exporter.until("both GPUs watched", |p| {
        p.value(1, "DCGM_FI_DEV_XID_ERRORS") == Some(0.0)
    });
    assert!(
        exporter.said().contains("watching XID events on 2 GPU(s)"),
        "{}",
        exporter.said()
    );
    state.set(&[("gpu1.xid", "79"), ("gpu1.xid_seq", "1")]);
    let page = exporter.until("XID 79 on GPU 1", |p| {
        p.value(1, "DCGM_FI_DEV_XID_ERRORS") == Some(79.0)
    });
    assert_eq!(
        page.label(1, "DCGM_FI_DEV_XID_ERRORS", "err_code")
            .as_deref(),
        Some("79")
    );
    assert_eq!(
        page.label(1, "DCGM_FI_DEV_XID_ERRORS", "err_msg")
            .as_deref(),
        Some("GPU has fallen off the bus")
    );
    assert_eq!(
        page.value(0, "DCGM_FI_DEV_XID_ERRORS"),
        Some(0.0),
        "only GPU 1's"
    );
    assert!(exporter.said().contains("XID 79"), "{}", exporter.said());
}

#[test]
fn a_lost_gpu_leaves_the_page_and_the_others_stay() {
    let mut state = two_gpus("lost");
    let exporter = start(Some(&library(false)), Some(&state.path)).expect("serves");
    exporter.until("both GPUs", |p| p.gpus() == ["0", "1"]);
    state.set(&[("gpu1.lost", "1")]);
    let page = exporter.until("GPU 1 gone", |p| p.gpus() == ["0"]);
    assert_eq!(page.code, 200, "the GPU that still answers is served");
    assert_eq!(page.value(0, "DCGM_FI_DEV_POWER_USAGE"), Some(312.5));
    exporter.until("the log", |_| exporter.said().contains("GPU 1 is lost"));
    assert!(
        !exporter.said().contains("GPU 0 is lost"),
        "{}",
        exporter.said()
    );
    // Lost in the middle of a read: none of its readings reach the page.
    state.set(&[("gpu1.lost", "0")]);
    exporter.until("GPU 1 back", |p| p.gpus() == ["0", "1"]);
    state.set(&[("gpu1.lost", "2")]);
    let page = exporter.until("GPU 1 gone again", |p| p.gpus() == ["0"]);
    assert_eq!(page.code, 200);
    let uuid = state.keys["gpu1.uuid"].clone();
    exporter.until("the log", |_| {
        exporter
            .said()
            .contains(&format!("GPU 1 ({uuid}) is lost (reading"))
    });
    // Every GPU lost: the page says why instead of serving nothing as if fine.
    state.set(&[("gpu1.lost", "1")]);
    state.set(&[("gpu0.lost", "1")]);
    let page = exporter.until("no GPU", |p| p.code == 503);
    assert!(page.samples.is_empty());
    state.set(&[("gpu0.lost", "0"), ("gpu1.lost", "0")]);
    exporter.until("both back", |p| p.code == 200 && p.gpus() == ["0", "1"]);
    assert!(
        exporter.said().contains("every GPU reads again"),
        "{}",
        exporter.said()
    );
}

#[test]
fn an_older_driver_without_some_entry_points_loses_only_those_fields() {
    let state = two_gpus("old");
    let exporter = start(Some(&library(true)), Some(&state.path)).expect("serves");
    let page = exporter.until("both GPUs", |p| p.gpus() == ["0", "1"]);
    for i in 0..2 {
        assert!(page.value(i, "DCGM_FI_DEV_POWER_USAGE").is_some());
        assert!(page.value(i, "DCGM_FI_DEV_GPU_UTIL").is_some());
        for missing in [
            "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
            "DCGM_FI_DEV_FB_USED",
            "DCGM_FI_DEV_FB_FREE",
            "DCGM_FI_DEV_FB_TOTAL",
        ] {
            assert_eq!(page.value(i, missing), None, "GPU {i} {missing}");
        }
    }
}

#[test]
fn without_the_library_the_exporter_names_it_and_the_fix() {
    let (code, said) = match start(None, None) {
        Ok(e) => panic!(
            "served without libnvidia-ml.so.1 (is an NVIDIA driver installed here?): {}",
            e.said()
        ),
        Err(e) => e,
    };
    assert_eq!(code, 1, "{said}");
    assert!(
        said.contains("libnvidia-ml.so.1 could not be loaded"),
        "{said}"
    );
    assert!(said.contains("NVIDIA container runtime"), "{said}");
    assert!(!said.contains("panicked"), "{said}");
}

#[test]
fn a_library_without_a_driver_behind_it_says_so() {
    // The library loads but nvmlInit_v2 answers DRIVER_NOT_LOADED (no state).
    let (code, said) = match start(Some(&library(false)), None) {
        Ok(e) => panic!("served without a driver: {}", e.said()),
        Err(e) => e,
    };
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("the NVIDIA driver did not answer"), "{said}");
}

#[test]
fn a_machine_without_gpus_says_so() {
    let state = State::new("none", &[("driver", "570.124.06"), ("gpus", "0")]);
    let (code, said) = match start(Some(&library(false)), Some(&state.path)) {
        Ok(e) => panic!("served without GPUs: {}", e.said()),
        Err(e) => e,
    };
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("found no NVIDIA GPUs"), "{said}");
}
