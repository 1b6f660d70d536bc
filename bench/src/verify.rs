//! `bpu bench verify`: ECDSA P-256 verifications per second of OpenSSL and the CPU backend on
//! this machine, and the device's ECDSA engine in device cycles (see [`verify_device`]).
//!
//! CPU figures are wall-clock: `openssl speed ecdsap256` on one core and with `-multi`, and the
//! crypto service's `verify_batch` on a batch of valid signatures with 1 and all threads.
//! Every batch's verdicts are checked: a rejected valid signature is an error, not a number.

use crate::verify_device::{self, DeviceVerifyFigures};
use crate::Projection;
use bpu_runtime::{CryptoService, PublicKey, Signature, VerifyRequest};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::time::{Duration, Instant};

/// What to measure.
pub struct Options<'a> {
    /// Device URI (`cpu` for the CPU side only).
    pub device: String,
    /// 1 s measurements and a smaller batch instead of 3 s.
    pub quick: bool,
    /// Progress lines.
    pub progress: &'a dyn Fn(&str),
}

/// `openssl speed ecdsap256` on this machine.
#[derive(Debug, Serialize)]
pub struct OpensslFigures {
    /// `openssl version`.
    pub version: String,
    /// `-seconds` per measurement.
    pub seconds: u32,
    /// Verifications per second on one core.
    pub verify_per_s_1core: f64,
    /// Processes of the `-multi` run.
    pub multi: usize,
    /// Verifications per second, all `-multi` processes together.
    pub verify_per_s_multi: Option<f64>,
}

/// The CPU backend (`CryptoService::verify_batch`) on this machine.
#[derive(Debug, Serialize)]
pub struct CpuVerifyRow {
    pub threads: usize,
    /// Signatures per `verify_batch` call.
    pub batch: usize,
    pub verify_per_s: f64,
    /// This rate over OpenSSL's with as many cores (1 core, or `-multi`).
    pub ratio_to_openssl: Option<f64>,
}

/// Everything `bpu bench verify` reports.
#[derive(Debug, Serialize)]
pub struct VerifyReport {
    /// The device asked for.
    pub device_uri: String,
    pub projection: Projection,
    /// CPU model (from /proc/cpuinfo) and cores available to this process.
    pub cpu_model: Option<String>,
    pub cores: usize,
    pub openssl: Option<OpensslFigures>,
    /// Why `openssl` was not measured, when it was not.
    pub openssl_unavailable: Option<String>,
    pub cpu_rows: Vec<CpuVerifyRow>,
    /// The ECDSA engine on the device (None for `--device cpu`).
    pub device: Option<DeviceVerifyFigures>,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Runs the verification benchmark.
pub fn run(opts: &Options<'_>) -> Result<VerifyReport, String> {
    let seconds: u32 = if opts.quick { 1 } else { 3 };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let thread_counts: Vec<usize> = if cores > 1 { vec![1, cores] } else { vec![1] };

    (opts.progress)(&format!(
        "openssl speed -seconds {seconds} ecdsap256 (1 core, then -multi {cores})"
    ));
    let (openssl, openssl_unavailable) = match openssl_figures(seconds, cores) {
        Ok(f) => (Some(f), None),
        Err(why) => (None, Some(why)),
    };

    let batch = if opts.quick { 256 } else { 1024 };
    (opts.progress)(&format!("signing {batch} messages"));
    let reqs = valid_requests(batch, 1)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(err)?;
    let mut cpu_rows = Vec::new();
    for &threads in &thread_counts {
        (opts.progress)(&format!("CPU backend, {threads} thread(s)"));
        let svc = CryptoService::cpu_with_threads(threads).map_err(err)?;
        let rate = time_batches(&rt, &svc, &reqs, Duration::from_secs(u64::from(seconds)))?;
        let base = openssl.as_ref().and_then(|o| {
            if threads == 1 {
                Some(o.verify_per_s_1core)
            } else if threads == o.multi {
                o.verify_per_s_multi
            } else {
                None
            }
        });
        cpu_rows.push(CpuVerifyRow {
            threads,
            batch,
            verify_per_s: rate,
            ratio_to_openssl: base.map(|b| rate / b),
        });
    }
    let device = if opts.device == "cpu" {
        None
    } else {
        (opts.progress)(&format!("opening {}", opts.device));
        let dev = bpu_driver::Device::open(&opts.device).map_err(err)?;
        let clock = Projection::default().clock_mhz;
        Some(verify_device::measure(
            &dev,
            opts.quick,
            clock,
            opts.progress,
        )?)
    };
    Ok(VerifyReport {
        device_uri: opts.device.clone(),
        projection: Projection::default(),
        cpu_model: cpu_model(),
        cores,
        openssl,
        openssl_unavailable,
        cpu_rows,
        device,
    })
}

/// `n` valid requests: 16 `p256` keys from `seed`, random messages.
pub fn valid_requests(n: usize, seed: u64) -> Result<Vec<VerifyRequest>, String> {
    use p256::ecdsa::signature::Signer;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let keys: Vec<p256::ecdsa::SigningKey> = (0..16)
        .map(|_| p256::ecdsa::SigningKey::random(&mut rng))
        .collect();
    (0..n)
        .map(|i| {
            let sk = &keys[i % keys.len()];
            let msg: [u8; 100] = std::array::from_fn(|_| rng.gen());
            let sig: p256::ecdsa::Signature = sk.sign(&msg);
            let key = PublicKey::from_sec1(sk.verifying_key().to_encoded_point(false).as_bytes())
                .map_err(err)?;
            let sig = Signature::from_fixed(&sig.to_bytes()).map_err(err)?;
            Ok(VerifyRequest::for_message(&key, &sig, &msg))
        })
        .collect()
}

/// Verifications per second of `svc.verify_batch(reqs)` repeated for at least `min`; every
/// verdict must be true.
fn time_batches(
    rt: &tokio::runtime::Runtime,
    svc: &CryptoService,
    reqs: &[VerifyRequest],
    min: Duration,
) -> Result<f64, String> {
    // One untimed batch starts the pool's threads.
    check_all_valid(&rt.block_on(svc.verify_batch(reqs)).map_err(err)?)?;
    let start = Instant::now();
    let mut done = 0usize;
    while done == 0 || start.elapsed() < min {
        check_all_valid(&rt.block_on(svc.verify_batch(reqs)).map_err(err)?)?;
        done += reqs.len();
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

fn check_all_valid(v: &[bool]) -> Result<(), String> {
    match v.iter().position(|ok| !ok) {
        Some(i) => Err(format!("the CPU backend rejected valid signature {i}")),
        None => Ok(()),
    }
}

/// Runs `openssl speed` on one core and with `-multi cores`.
pub(crate) fn openssl_figures(seconds: u32, cores: usize) -> Result<OpensslFigures, String> {
    let version = std::process::Command::new("openssl")
        .arg("version")
        .output()
        .map_err(|e| format!("cannot run `openssl`: {e} (install OpenSSL's command line tool)"))?;
    // "OpenSSL 3.0.19 27 Jan 2026 (Library: …)" → "OpenSSL 3.0.19".
    let version = String::from_utf8_lossy(&version.stdout)
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let speed = |multi: Option<usize>| -> Result<f64, String> {
        let mut cmd = std::process::Command::new("openssl");
        cmd.args(["speed", "-seconds", &seconds.to_string()]);
        if let Some(m) = multi {
            cmd.args(["-multi", &m.to_string()]);
        }
        cmd.arg("ecdsap256");
        let out = cmd.output().map_err(err)?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(format!(
                "`openssl speed` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        parse_openssl_speed(&text)
            .ok_or_else(|| format!("no `ecdsa (nistp256)` line in `openssl speed` output:\n{text}"))
    };
    let one = speed(None)?;
    let multi = if cores > 1 {
        Some(speed(Some(cores))?)
    } else {
        None
    };
    Ok(OpensslFigures {
        version,
        seconds,
        verify_per_s_1core: one,
        multi: cores,
        verify_per_s_multi: multi,
    })
}

/// Verifications per second from `openssl speed ecdsap256` output: the last number on the
/// `256 bits ecdsa (nistp256) … sign/s verify/s` line (the same in OpenSSL 1.1 and 3.x, with
/// or without `-multi`).
pub fn parse_openssl_speed(text: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.contains("ecdsa") && l.contains("(nistp256)"))
        .filter_map(|l| l.split_whitespace().next_back()?.parse::<f64>().ok())
        .next_back()
}

pub(crate) fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|m| m.trim().to_string())
}

impl VerifyReport {
    /// The report as markdown tables.
    pub fn markdown(&self) -> String {
        let mut o = String::from("## ECDSA P-256 verification\n\n");
        o.push_str(&format!(
            "CPU: {} ({} cores available).\n\n",
            self.cpu_model.as_deref().unwrap_or("unknown"),
            self.cores
        ));
        o.push_str(
            "| who | cores/threads | verifications/s | vs OpenSSL |\n| --- | --- | --- | --- |\n",
        );
        match (&self.openssl, &self.openssl_unavailable) {
            (Some(s), _) => {
                o.push_str(&format!(
                    "| {} `speed -seconds {}` | 1 | {:.0} | 1.00 |\n",
                    s.version, s.seconds, s.verify_per_s_1core
                ));
                if let Some(m) = s.verify_per_s_multi {
                    o.push_str(&format!(
                        "| {} `speed -multi {}` | {} | {:.0} | 1.00 |\n",
                        s.version, s.multi, s.multi, m
                    ));
                }
            }
            (None, why) => o.push_str(&format!(
                "| openssl | — | not measured: {} | — |\n",
                why.as_deref().unwrap_or("unknown reason")
            )),
        }
        for r in &self.cpu_rows {
            o.push_str(&format!(
                "| CPU backend (aws-lc-rs), batches of {} | {} | {:.0} | {} |\n",
                r.batch,
                r.threads,
                r.verify_per_s,
                r.ratio_to_openssl
                    .map_or("—".to_string(), |x| format!("{x:.2}"))
            ));
        }
        match &self.device {
            None => o.push_str(&format!(
                "\nDevice ({}): CPU only, no device figures.\n",
                self.device_uri
            )),
            Some(d) => {
                o.push('\n');
                o.push_str(&d.markdown());
            }
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENSSL_3_0: &str = "\
Doing 256 bits sign ecdsa's for 3s: 152641 256 bits ECDSA signs in 2.98s
Doing 256 bits verify ecdsa's for 3s: 50835 256 bits ECDSA verify in 3.00s
version: 3.0.19
built on: Fri Apr  3 12:29:32 2026 UTC
options: bn(64,64)
CPUINFO: OPENSSL_ia32cap=0xfffa3203078bffff:0x405fc6f1bf07ab
                              sign    verify    sign/s verify/s
 256 bits ecdsa (nistp256)   0.0000s   0.0001s  51221.8  16945.0
";

    const OPENSSL_MULTI: &str = "\
Forked child 0
+DTP:256:sign:ecdsa:3
Got: +F4:3:256:36827.000000:16890.000000 from 0
Got: +F4:3:256:35875.000000:16892.000000 from 1
                              sign    verify    sign/s verify/s
 256 bits ecdsa (nistp256)   0.0000s   0.0000s  72702.0  33782.0
";

    #[test]
    fn parses_openssl_speed_output() {
        assert_eq!(parse_openssl_speed(OPENSSL_3_0), Some(16945.0));
        assert_eq!(parse_openssl_speed(OPENSSL_MULTI), Some(33782.0));
        assert_eq!(
            parse_openssl_speed("speed: Unknown algorithm ecdsap256\n"),
            None
        );
        assert_eq!(
            parse_openssl_speed(" 256 bits ecdsa (nistp256)   0.0000s   0.0001s  51221.8  n/a\n"),
            None
        );
    }

    #[test]
    fn valid_requests_verify_and_differ() {
        let reqs = valid_requests(20, 9).expect("signing");
        assert!(reqs.iter().all(bpu_runtime::cpu_verify));
        assert_ne!(reqs[0], reqs[1]);
        let mut bad = reqs[0];
        bad.digest[0] ^= 1;
        assert!(!bpu_runtime::cpu_verify(&bad));
    }
}
