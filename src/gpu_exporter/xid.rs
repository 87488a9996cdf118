//! XID events through NVML's event API.
//!
//! One thread waits on one event set holding every GPU that supports
//! critical-XID events, and keeps each GPU's last XID in an [`XidLog`]; the
//! reader puts it on the page as `DCGM_FI_DEV_XID_ERRORS` (0 until the first
//! event since the exporter started, as DCGM writes a GPU without one). A GPU
//! that cannot be watched gets no XID field at all, rather than a 0 that would
//! read as "no errors".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{EventSet, Nvml};

use crate::telemetry::xid::describe;

/// The last XID of every watched GPU, by UUID.
#[derive(Debug, Default)]
pub struct XidLog {
    last: Mutex<HashMap<String, u64>>,
}

impl XidLog {
    /// `uuid` is watched from now on: it reads 0 until an event arrives.
    pub fn watch(&self, uuid: &str) {
        if let Ok(mut l) = self.last.lock() {
            l.entry(uuid.to_string()).or_insert(0);
        }
    }

    pub fn record(&self, uuid: &str, xid: u64) {
        if let Ok(mut l) = self.last.lock() {
            l.insert(uuid.to_string(), xid);
        }
    }

    /// The GPU's last XID; `None` for a GPU that is not watched.
    pub fn last(&self, uuid: &str) -> Option<u64> {
        self.last.lock().ok()?.get(uuid).copied()
    }
}

/// The number NVML gave, with its "unknown XID" sentinel kept as NVML writes it.
pub fn code(x: XidError) -> u64 {
    match x {
        XidError::Value(v) => v,
        XidError::Unknown => 999,
    }
}

/// Starts the waiting thread; how many GPUs it watches, or why it watches none.
pub fn watch(nvml: Arc<Nvml>, log: Arc<XidLog>) -> Result<usize, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("xid-events".into())
        .spawn(move || {
            // An event set borrows NVML and is not `Send`: it lives on this thread.
            let set = match register(&nvml, &log) {
                Ok(Some((set, n))) => {
                    let _ = tx.send(Ok(n));
                    set
                }
                Ok(None) => {
                    let _ = tx.send(Ok(0));
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            wait_forever(&set, &log);
        })
        .map_err(|e| e.to_string())?;
    rx.recv()
        .map_err(|_| "the XID thread ended before it registered".to_string())?
}

/// One event set with every GPU that supports critical-XID events.
fn register<'n>(nvml: &'n Nvml, log: &XidLog) -> Result<Option<(EventSet<'n>, usize)>, String> {
    let n = nvml
        .device_count()
        .map_err(|e| format!("counting the GPUs: {e}"))?;
    let mut set = event_set(nvml, &[])?;
    let mut watched: Vec<(u32, String)> = Vec::new();
    for i in 0..n {
        let d = nvml
            .device_by_index(i)
            .map_err(|e| format!("GPU {i}: {e}"))?;
        let supported = d
            .supported_event_types()
            .is_ok_and(|t| t.contains(EventTypes::CRITICAL_XID_ERROR));
        if !supported {
            continue;
        }
        let Ok(uuid) = d.uuid() else { continue };
        match d.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
            Ok(s) => {
                set = s;
                watched.push((i, uuid));
            }
            Err(err) => {
                eprintln!("benchrun gpu-exporter: GPU {i}: XID events not watched: {err}");
                // A failed registration frees the set: build it again with the
                // GPUs registered so far.
                let indices: Vec<u32> = watched.iter().map(|(j, _)| *j).collect();
                set = event_set(nvml, &indices)?;
            }
        }
    }
    for (_, uuid) in &watched {
        log.watch(uuid);
    }
    Ok((!watched.is_empty()).then_some((set, watched.len())))
}

/// A new event set with the GPUs at `indices` registered for critical XIDs.
fn event_set<'n>(nvml: &'n Nvml, indices: &[u32]) -> Result<EventSet<'n>, String> {
    let mut set = nvml
        .create_event_set()
        .map_err(|e| format!("creating an event set: {e}"))?;
    for &i in indices {
        set = nvml
            .device_by_index(i)
            .map_err(|e| format!("GPU {i}: {e}"))?
            .register_events(EventTypes::CRITICAL_XID_ERROR, set)
            .map_err(|e| format!("GPU {i}: {e}"))?;
    }
    Ok(set)
}

fn wait_forever(set: &EventSet<'_>, log: &XidLog) {
    let mut last_error = String::new();
    loop {
        match set.wait(1000) {
            Ok(ev) => {
                let (Some(x), Ok(uuid)) = (ev.event_data, ev.device.uuid()) else {
                    continue;
                };
                let xid = code(x);
                eprintln!(
                    "benchrun gpu-exporter: {uuid}: XID {xid} ({})",
                    describe(xid)
                );
                log.record(&uuid, xid);
            }
            Err(NvmlError::Timeout) => {}
            Err(err) => {
                // Said once per distinct error, not once a second.
                let text = err.to_string();
                if text != last_error {
                    eprintln!("benchrun gpu-exporter: waiting for XID events: {text}");
                    last_error = text;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watched_gpus_read_zero_until_an_event_and_others_read_nothing() {
        let log = XidLog::default();
        log.watch("GPU-a");
        assert_eq!(log.last("GPU-a"), Some(0));
        assert_eq!(log.last("GPU-b"), None);
        log.record("GPU-a", 79);
        log.record("GPU-a", 13);
        assert_eq!(log.last("GPU-a"), Some(13), "the last one");
        log.watch("GPU-a");
        assert_eq!(log.last("GPU-a"), Some(13), "watching again keeps it");
    }

    #[test]
    fn nvmls_unknown_xid_keeps_its_sentinel() {
        assert_eq!(code(XidError::Value(79)), 79);
        assert_eq!(code(XidError::Unknown), 999);
    }
}
