//! Pod IPs: one address per pod, added to the loopback interface.
//!
//! EndpointSlices refuse loopback addresses (127.0.0.0/8), so pods get
//! addresses from 198.18.0.0/15, the range RFC 2544 sets aside for benchmark
//! networks, added as /32s on `lo` (this needs CAP_NET_ADMIN). Each fixture
//! picks a /24 no one on the machine uses yet (and another when it is full), so
//! two clusters never collide, and removes its addresses when it stops.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

pub struct IpPool {
    /// The /24s this pool holds (one at first; another when they are full,
    /// so a large cluster is not capped at 253 pods).
    blocks: Mutex<Vec<[u8; 3]>>,
    used: Mutex<BTreeSet<Ipv4Addr>>,
}

/// A /24 inside 198.18.0.0/15 with no address on `lo` and not in `mine`.
fn free_block(mine: &[[u8; 3]]) -> Result<[u8; 3]> {
    let taken = addresses_on_lo()?;
    // 511 blocks: 198.19.255.0/24 holds the node addresses.
    let start = (std::process::id() % 511) as usize;
    for i in 0..511 {
        let block = (start + i) % 511;
        let base = [198, 18 + (block / 256) as u8, (block % 256) as u8];
        if !mine.contains(&base) && !taken.iter().any(|a| a.octets()[..3] == base) {
            return Ok(base);
        }
    }
    bail!("every /24 of 198.18.0.0/15 is already on lo")
}

impl IpPool {
    /// Claims a free /24 inside 198.18.0.0/15.
    pub fn claim() -> Result<Self> {
        Ok(Self {
            blocks: Mutex::new(vec![free_block(&[])?]),
            used: Mutex::new(BTreeSet::new()),
        })
    }

    /// Adds a fresh address to `lo` and returns it.
    pub fn allocate(&self) -> Result<Ipv4Addr> {
        let ip = {
            let mut used = self.used.lock().expect("the pool lock is never poisoned");
            let mut blocks = self.blocks.lock().expect("never poisoned");
            let free = |blocks: &[[u8; 3]]| {
                blocks.iter().find_map(|b| {
                    (2..=254u8)
                        .map(|h| Ipv4Addr::new(b[0], b[1], b[2], h))
                        .find(|ip| !used.contains(ip))
                })
            };
            let ip = match free(&blocks) {
                Some(ip) => ip,
                None => {
                    let block = free_block(&blocks)?;
                    blocks.push(block);
                    Ipv4Addr::new(block[0], block[1], block[2], 2)
                }
            };
            used.insert(ip);
            ip
        };
        if let Err(e) = ip_addr("add", ip) {
            self.used.lock().expect("never poisoned").remove(&ip);
            return Err(e);
        }
        Ok(ip)
    }

    /// Removes an address from `lo` and returns it to the pool.
    pub fn release(&self, ip: Ipv4Addr) {
        if let Err(e) = ip_addr("del", ip) {
            tracing::warn!(%ip, error = %e, "removing a pod address");
        }
        self.used.lock().expect("never poisoned").remove(&ip);
    }

    /// Removes every address this pool still holds.
    pub fn release_all(&self) {
        let held: Vec<Ipv4Addr> = self
            .used
            .lock()
            .expect("never poisoned")
            .iter()
            .copied()
            .collect();
        for ip in held {
            self.release(ip);
        }
    }

    /// Node addresses, from 198.19.255.0/24; never bound (nothing dials a node).
    pub fn node_ip(index: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 19, 255, index.saturating_add(1))
    }
}

fn ip_addr(verb: &str, ip: Ipv4Addr) -> Result<()> {
    let out = Command::new("ip")
        .args(["-4", "addr", verb, &format!("{ip}/32"), "dev", "lo"])
        .output()
        .context("running `ip` (iproute2) to manage pod addresses")?;
    if !out.status.success() {
        bail!(
            "`ip addr {verb} {ip}/32 dev lo` failed: {} (pod addresses need root or CAP_NET_ADMIN)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn addresses_on_lo() -> Result<Vec<Ipv4Addr>> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", "lo"])
        .output()
        .context("running `ip` (iproute2)")?;
    Ok(parse_addresses(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_addresses(text: &str) -> Vec<Ipv4Addr> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "inet")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_o_addr_output() {
        let text = "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n\
                    1: lo    inet 198.18.7.2/32 scope global lo\\       valid_lft forever\n";
        assert_eq!(
            parse_addresses(text),
            [Ipv4Addr::new(127, 0, 0, 1), Ipv4Addr::new(198, 18, 7, 2)]
        );
        assert!(parse_addresses("").is_empty());
    }
}
