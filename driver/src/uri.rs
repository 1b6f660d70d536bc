//! Device URIs: `sim://?opt=val&...` and `vfio://DDDD:BB:DD.F?opt=val&...`.

use crate::error::{Error, Result};
use crate::queue::QueueConfig;
use std::time::Duration;

/// Which transport a URI names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The Verilator model in this process.
    Sim,
    /// A board bound to vfio-pci at this PCI address.
    Vfio(String),
}

/// A parsed device URI with its options.
#[derive(Debug, Clone)]
pub struct DeviceUri {
    pub target: Target,
    /// `mem=64M`: host-memory arena (sim) or DMA region (vfio) size.
    pub mem_bytes: usize,
    /// `latency=8`: simulated memory read latency in cycles.
    pub mem_latency: u32,
    /// `crypto=N`: use only the first N SHA-256 instances.
    pub crypto: Option<u32>,
    /// `ecdsa=N`: use only the first N ECDSA P-256 instances.
    pub ecdsa: Option<u32>,
    /// `queues=N`: queue pairs to use (default: all the device has, at most 4).
    pub queues: Option<u32>,
    /// `depth=N`, `irq=on|off`, `coalesce=COUNT[:CYCLES]`.
    pub queue: QueueConfig,
    /// `timeout=MS`: how long a command may take before its submitter gets a timeout.
    pub timeout: Duration,
    /// The URI as written.
    pub text: String,
}

fn bad(uri: &str, why: impl Into<String>) -> Error {
    Error::BadUri {
        uri: uri.to_string(),
        why: why.into(),
    }
}

fn parse_size(uri: &str, v: &str) -> Result<usize> {
    let (num, mul) = match v.char_indices().last() {
        Some((i, 'K' | 'k')) => (&v[..i], 1usize << 10),
        Some((i, 'M' | 'm')) => (&v[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&v[..i], 1 << 30),
        _ => (v, 1),
    };
    num.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| bad(uri, format!("bad size {v:?} (use e.g. 64M)")))
}

fn parse_num<T: std::str::FromStr>(uri: &str, key: &str, v: &str) -> Result<T> {
    v.parse()
        .map_err(|_| bad(uri, format!("{key}={v:?} is not a number")))
}

impl DeviceUri {
    /// Parses a device URI.
    pub fn parse(uri: &str) -> Result<DeviceUri> {
        let (scheme, rest) = uri
            .split_once("://")
            .ok_or_else(|| bad(uri, "missing scheme"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let target = match scheme {
            "sim" if path.is_empty() => Target::Sim,
            "sim" => return Err(bad(uri, "sim:// takes no path, only ?options")),
            "vfio" if !path.is_empty() => Target::Vfio(path.to_string()),
            "vfio" => return Err(bad(uri, "vfio:// needs a PCI address")),
            other => return Err(bad(uri, format!("unknown scheme {other:?}"))),
        };
        let mut d = DeviceUri {
            target,
            mem_bytes: 64 << 20,
            mem_latency: 8,
            crypto: None,
            ecdsa: None,
            queues: None,
            queue: QueueConfig::default(),
            timeout: Duration::from_secs(5),
            text: uri.to_string(),
        };
        for kv in query.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| bad(uri, format!("option {kv:?} needs =value")))?;
            match k {
                "mem" => d.mem_bytes = parse_size(uri, v)?,
                "latency" => d.mem_latency = parse_num(uri, k, v)?,
                "crypto" => d.crypto = Some(parse_num(uri, k, v)?),
                "ecdsa" => d.ecdsa = Some(parse_num(uri, k, v)?),
                "queues" => d.queues = Some(parse_num(uri, k, v)?),
                "depth" => {
                    let n: u32 = parse_num(uri, k, v)?;
                    if !n.is_power_of_two() || !(2..=4096).contains(&n) {
                        return Err(bad(uri, "depth must be a power of two in 2..=4096"));
                    }
                    let log2 = n.trailing_zeros() as u8;
                    d.queue.sq_log2 = log2;
                    d.queue.cq_log2 = log2;
                }
                "irq" => {
                    d.queue.irq = match v {
                        "on" | "1" | "true" => true,
                        "off" | "0" | "false" | "poll" => false,
                        _ => return Err(bad(uri, "irq must be on or off")),
                    }
                }
                "coalesce" => {
                    let (c, t) = v.split_once(':').unwrap_or((v, "0"));
                    d.queue.coalesce_count = parse_num(uri, k, c)?;
                    d.queue.coalesce_cycles = parse_num(uri, k, t)?;
                }
                "timeout" => d.timeout = Duration::from_millis(parse_num(uri, k, v)?),
                _ => return Err(bad(uri, format!("unknown option {k:?} (mem, latency, crypto, ecdsa, queues, depth, irq, coalesce, timeout)"))),
            }
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options_and_rejects_nonsense() {
        let d = DeviceUri::parse("sim://?mem=128M&crypto=2&depth=16&irq=off&coalesce=4:100")
            .expect("valid");
        assert_eq!(d.target, Target::Sim);
        assert_eq!(d.mem_bytes, 128 << 20);
        assert_eq!(d.crypto, Some(2));
        assert_eq!(d.queue.sq_log2, 4);
        assert!(!d.queue.irq);
        assert_eq!((d.queue.coalesce_count, d.queue.coalesce_cycles), (4, 100));
        let v = DeviceUri::parse("vfio://0000:03:00.0").expect("valid");
        assert_eq!(v.target, Target::Vfio("0000:03:00.0".into()));
        for badu in [
            "sim",
            "sim://x",
            "tcp://a",
            "sim://?depth=3",
            "sim://?mem=lots",
            "sim://?what=1",
            "vfio://",
        ] {
            assert!(DeviceUri::parse(badu).is_err(), "{badu} should be rejected");
        }
    }
}
