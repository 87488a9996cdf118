//! Child processes that cannot outlive the fixture.
//!
//! Every child runs in its own process group (so a stop reaches the whole tree)
//! and gets `PR_SET_PDEATHSIG`, so it is killed even when the fixture itself is
//! killed with SIGKILL and never gets to clean up.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::process::{Child, Command};

/// A running child and the name it is logged under.
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Self> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        Ok(Self {
            name: name.to_string(),
            child,
        })
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.id().map(|p| p as i32)
    }

    /// Whether the child is still running; its exit status once it has exited.
    pub fn try_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGKILL to the group at once: no grace, no handler runs (an OOM kill,
    /// a lost node).
    pub fn kill(&self) {
        if let Some(pid) = self.pid() {
            signal_group(pid, libc::SIGKILL);
        }
    }

    /// SIGTERM to the group, then SIGKILL after `grace`; returns the exit status.
    pub async fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        if let Some(status) = self.try_exit() {
            return Some(status);
        }
        if let Some(pid) = self.pid() {
            signal_group(pid, libc::SIGTERM);
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                if let Some(pid) = self.pid() {
                    signal_group(pid, libc::SIGKILL);
                }
                self.child.wait().await.ok()
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let (None, Some(pid)) = (self.try_exit(), self.pid()) {
            signal_group(pid, libc::SIGKILL);
        }
    }
}

fn signal_group(pid: i32, signal: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
    unsafe {
        libc::kill(-pid, signal);
    }
}

/// A free TCP port on `ip` (the port is released again; the race is accepted).
pub fn free_port(ip: std::net::IpAddr) -> Result<u16> {
    let l = std::net::TcpListener::bind((ip, 0)).context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// The last `max_lines` lines and at most `max_bytes` bytes of a log file.
pub fn tail(path: &Path, max_lines: usize, max_bytes: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = bytes.len().saturating_sub(max_bytes);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(max_lines);
    lines[from..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines_within_the_byte_budget() {
        let dir = std::env::temp_dir().join(format!("benchrun-e2e-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("log");
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&log, text).unwrap();
        assert_eq!(tail(&log, 2, 4096), "line 98\nline 99");
        let short = tail(&log, 80, 16);
        assert!(short.ends_with("line 99"), "{short}");
        assert!(short.len() <= 16);
        assert_eq!(tail(&dir.join("missing"), 5, 100), "");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
