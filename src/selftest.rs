//! `bpu selftest`: an end-to-end check of a device (or the CPU backend) with a readable report.

use bpu_driver::{Command, Device, EngineType, Status};
use bpu_runtime::{cpu_verify, merkle, CryptoService, Digest, VerifyRequest};
use rand::{Rng, SeedableRng};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::time::Instant;

/// One check's outcome.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    pub ms: f64,
}

/// The whole self-test.
#[derive(Debug, Serialize)]
pub struct Report {
    pub device: String,
    pub checks: Vec<Check>,
}

impl Report {
    /// True when every check passed.
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    /// Human-readable report ending in a `N passed, N failed` line.
    pub fn text(&self) -> String {
        let mut o = format!("bpu selftest on {}\n", self.device);
        for c in &self.checks {
            o.push_str(&format!(
                "  [{}] {:<28} {:>8.1} ms  {}\n",
                if c.ok { " ok " } else { "FAIL" },
                c.name,
                c.ms,
                c.detail
            ));
        }
        let failed = self.checks.iter().filter(|c| !c.ok).count();
        o.push_str(&format!(
            "selftest: {} passed, {} failed\n",
            self.checks.len() - failed,
            failed
        ));
        o
    }
}

type CheckResult = Result<String, String>;

fn check(checks: &mut Vec<Check>, name: &'static str, f: impl FnOnce() -> CheckResult) {
    let start = Instant::now();
    let r = f();
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let (ok, detail) = match r {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    checks.push(Check {
        name,
        ok,
        detail,
        ms,
    });
}

/// Known answers: FIPS 180-4 examples and the one-million-`a` message.
const KATS: &[(&str, usize, &str)] = &[
    (
        "",
        1,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    ),
    (
        "abc",
        1,
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    ),
    (
        "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
        1,
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
    ),
    (
        "a",
        1_000_000,
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
    ),
];

/// Runs every check that applies to `uri` (`cpu` runs only the hashing checks).
pub fn run(uri: &str) -> Report {
    let mut checks = Vec::new();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            checks.push(Check {
                name: "async runtime",
                ok: false,
                detail: e.to_string(),
                ms: 0.0,
            });
            return Report {
                device: uri.into(),
                checks,
            };
        }
    };
    let mut device = None;
    let svc = if uri == "cpu" {
        CryptoService::cpu()
    } else {
        let mut opened = None;
        check(&mut checks, "open and probe", || {
            let d = Device::open(uri).map_err(|e| e.to_string())?;
            let i = d.info();
            let engines: Vec<String> = i
                .engines
                .iter()
                .map(|e| format!("{} x{}", e.name(), e.instances))
                .collect();
            let detail = format!(
                "regmap {}.{}, build {:08x}, {} queues, {}-byte DMA, {}, engines: {}",
                i.version.0,
                i.version.1,
                i.build_id,
                i.queues,
                i.dma_bytes,
                if d.uses_interrupts() {
                    "interrupts"
                } else {
                    "polling"
                },
                engines.join(", ")
            );
            opened = Some(d);
            Ok(detail)
        });
        let Some(d) = opened else {
            return Report {
                device: uri.into(),
                checks,
            };
        };
        device = Some(d.clone());
        check(&mut checks, "registers", || registers(&d));
        check(&mut checks, "queue round trip (NOP)", || {
            let n = 64;
            for _ in 0..n {
                d.execute(Command::Nop.entry(), vec![])
                    .and_then(|c| c.ok())
                    .map_err(|e| e.to_string())?;
            }
            Ok(format!("{n} commands"))
        });
        match CryptoService::bpu(d) {
            Ok(s) => s,
            Err(e) => {
                checks.push(Check {
                    name: "crypto service",
                    ok: false,
                    detail: e.to_string(),
                    ms: 0.0,
                });
                return Report {
                    device: uri.into(),
                    checks,
                };
            }
        }
    };
    let device_name = svc.backend_name();

    check(&mut checks, "SHA-256 known answers", || {
        for (msg, reps, want) in KATS {
            let data = msg.repeat(*reps);
            let got = rt
                .block_on(svc.sha256(data.as_bytes()))
                .map_err(|e| e.to_string())?;
            if got.to_string() != *want {
                return Err(format!(
                    "{}-byte message: got {got}, want {want}",
                    data.len()
                ));
            }
        }
        Ok(format!("{} FIPS 180-4 messages", KATS.len()))
    });
    check(&mut checks, "batch equals CPU", || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let msgs: Vec<Vec<u8>> = (0..300)
            .map(|i| {
                let len = if i < 130 { i } else { rng.gen_range(0..3000) };
                (0..len).map(|_| rng.gen()).collect()
            })
            .collect();
        let got = rt
            .block_on(svc.sha256_batch(&msgs))
            .map_err(|e| e.to_string())?;
        for (i, (m, d)) in msgs.iter().zip(&got).enumerate() {
            let want: [u8; 32] = Sha256::digest(m).into();
            if d.0 != want {
                return Err(format!("message {i} ({} bytes) differs", m.len()));
            }
        }
        Ok(format!(
            "{} messages, lengths 0..130 and random",
            msgs.len()
        ))
    });
    check(&mut checks, "Merkle roots equal CPU", || {
        for n in [0usize, 1, 2, 3, 5, 8, 13, 64, 100] {
            let leaves: Vec<Digest> = (0..n)
                .map(|i| merkle::leaf_hash(&(i as u64).to_le_bytes()))
                .collect();
            let got = rt
                .block_on(svc.merkle_root(&leaves))
                .map_err(|e| e.to_string())?;
            if got != merkle::root(&leaves) {
                return Err(format!("{n} leaves: root differs"));
            }
        }
        Ok("RFC 6962 roots for 0..100 leaves".into())
    });
    check(&mut checks, "ECDSA P-256 verdicts", || {
        // Valid signatures by random keys; every other one with its digest tampered.
        let mut reqs: Vec<VerifyRequest> = bpu_bench::verify::valid_requests(16, 3)?;
        for r in reqs.iter_mut().skip(1).step_by(2) {
            r.digest[31] ^= 1;
        }
        let got = rt
            .block_on(svc.verify_batch(&reqs))
            .map_err(|e| e.to_string())?;
        for (i, (req, g)) in reqs.iter().zip(&got).enumerate() {
            let want = i % 2 == 0;
            if *g != want || cpu_verify(req) != want {
                return Err(format!("signature {i}: got {g}, want {want}"));
            }
        }
        Ok(format!("{} signatures, valid and tampered", reqs.len()))
    });
    if let Some(d) = device {
        check(&mut checks, "bad command rejected", || {
            let mut e = Command::Nop.entry();
            e.opcode = 0xEE;
            let c = d.execute(e, vec![]).map_err(|e| e.to_string())?;
            if c.status != Status::BadOpcode {
                return Err(format!("opcode 0xEE completed with {:?}", c.status));
            }
            d.execute(Command::Nop.entry(), vec![])
                .and_then(|c| c.ok())
                .map_err(|e| e.to_string())?;
            Ok("BAD_OPCODE, and the next command succeeds".into())
        });
        check(&mut checks, "stalled engine recovers", || {
            stall_recovery(&d)
        });
    }
    Report {
        device: device_name,
        checks,
    }
}

fn registers(d: &Device) -> CheckResult {
    use bpu_driver::regs::global;
    let t = d.transport();
    for v in [0u32, 0xFFFF_FFFF, 0xA5A5_5A5A, 0x1234_5678] {
        t.write32(global::SCRATCH, v).map_err(|e| e.to_string())?;
        let r = t.read32(global::SCRATCH).map_err(|e| e.to_string())?;
        if r != v {
            return Err(format!("SCRATCH wrote {v:#x}, read {r:#x}"));
        }
    }
    let c0 = d.cycles().map_err(|e| e.to_string())?;
    let c1 = d.cycles().map_err(|e| e.to_string())?;
    if c1 <= c0 {
        return Err("cycle counter does not advance".into());
    }
    Ok("SCRATCH patterns, cycle counter advances".into())
}

fn stall_recovery(d: &Device) -> CheckResult {
    let n = d
        .engine(EngineType::Sha256)
        .map(|e| e.instances)
        .unwrap_or(0);
    let mask = if n >= 32 { u32::MAX } else { (1u32 << n) - 1 };
    d.set_stall(EngineType::Sha256, mask)
        .map_err(|e| e.to_string())?;
    let mut src = d.alloc(64).map_err(|e| e.to_string())?;
    src.write(0, b"stall").map_err(|e| e.to_string())?;
    let src = std::sync::Arc::new(src);
    let dst = std::sync::Arc::new(d.alloc(32).map_err(|e| e.to_string())?);
    let cmd = Command::Sha256 {
        src: src.iova(),
        len: 5,
        dst: dst.iova(),
        prefix: None,
    };
    let short = std::time::Duration::from_millis(500);
    match d.execute_within(None, cmd.entry(), vec![src.clone(), dst.clone()], short) {
        Err(bpu_driver::Error::Timeout(..)) => {}
        other => {
            return Err(format!(
                "stalled engine answered {other:?}, expected a timeout"
            ))
        }
    }
    d.reset().map_err(|e| e.to_string())?;
    let c = d
        .execute(cmd.entry(), vec![src, dst.clone()])
        .map_err(|e| e.to_string())?;
    c.ok().map_err(|e| e.to_string())?;
    let want: [u8; 32] = Sha256::digest(b"stall").into();
    if dst.to_vec() != want {
        return Err("digest after reset is wrong".into());
    }
    Ok("timeout, soft reset, then a correct digest".into())
}
