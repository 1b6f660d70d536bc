//! Device half of `bpu bench verify`: ECDSA engine cycles per verification (latency of one,
//! amortized with one engine kept full and with all engines), projections per engine and per
//! Alveo U250 from the Yosys area report.

use bpu_driver::regs::{EcdsaRecord, EngineType, Status};
use bpu_driver::{Command, Device, Submission};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Alveo U250 (XCU250) resources: LUTs, flip-flops, DSP slices, 36 Kb block RAMs.
/// Keys as in the `cargo xtask synth` area report.
pub const U250: [(&str, u64); 4] = [
    ("luts", 1_728_000),
    ("ffs", 3_456_000),
    ("dsps", 12_288),
    ("bram", 2_688),
];
/// Share of each U250 resource the projection lets engines use (the rest: shell, PCIe, DMA,
/// queues, routing slack).
pub const U250_USABLE: f64 = 0.7;

/// What the ECDSA engine does on the device, in device clock cycles.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceVerifyFigures {
    pub device: String,
    /// ECDSA engine instances on the device.
    pub engines: u32,
    /// Doorbell to completion for one valid signature on an idle engine.
    pub cycles_latency_one: u64,
    /// Device cycles per verification, one engine kept full (a batch of `batch` records).
    pub cycles_amortized_one_engine: f64,
    /// Device cycles per verification with every engine kept full.
    pub cycles_amortized_all_engines: f64,
    /// Records per batch used for the amortized figures.
    pub batch: usize,
    /// Projected verifications per second of one engine at the projection clock.
    pub projected_per_engine: f64,
    /// Instances of the engine that fit a U250 by the Yosys area report (None without one).
    pub u250_instances: Option<u64>,
    /// Which resource limits the U250 count.
    pub u250_limit: Option<String>,
    /// Projected verifications per second of a full U250.
    pub projected_per_u250: Option<f64>,
    /// Yosys `synth_xilinx` cells of `ecdsa_engine` (`cargo xtask synth --top ecdsa_engine`).
    pub area: Option<serde_json::Value>,
    pub clock_mhz: f64,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// `n` valid signatures as device records (the slowest path of the engine): the requests of
/// [`crate::verify::valid_requests`], which share the device's record layout.
pub fn valid_records(n: usize, seed: u64) -> Result<Vec<EcdsaRecord>, String> {
    Ok(crate::verify::valid_requests(n, seed)?
        .into_iter()
        .map(|r| EcdsaRecord {
            digest: r.digest,
            r: r.r,
            s: r.s,
            qx: r.qx,
            qy: r.qy,
        })
        .collect())
}

/// Runs `recs` as `commands` ECDSA_P256_VERIFY commands with one doorbell; returns the device
/// cycles from before the doorbell to the last completion. Every verdict must be "valid".
fn run(device: &Device, recs: &[EcdsaRecord], commands: usize) -> Result<u64, String> {
    let per = recs.len().div_ceil(commands.max(1)).max(1);
    let (tx, rx) = std::sync::mpsc::channel();
    let mut subs = Vec::new();
    for chunk in recs.chunks(per) {
        let mut src = device.alloc(160 * chunk.len()).map_err(err)?;
        for (i, r) in chunk.iter().enumerate() {
            src.write_obj(160 * i, r).map_err(err)?;
        }
        let dst = Arc::new(device.alloc(chunk.len().div_ceil(8)).map_err(err)?);
        let entry = Command::EcdsaVerify {
            records: src.iova(),
            count: chunk.len() as u32,
            bitmap: dst.iova(),
        }
        .entry();
        let tx = tx.clone();
        let n = chunk.len();
        subs.push(Submission {
            entry,
            buffers: vec![Arc::new(src), dst],
            done: Box::new(move |r| {
                let _ = tx.send(r.map(|c| (c, n)));
            }),
        });
    }
    let expected = subs.len();
    let c0 = device.cycles().map_err(err)?;
    device.submit(subs, device.timeout()).map_err(err)?;
    let mut end = 0;
    for _ in 0..expected {
        let (c, n) = rx
            .recv_timeout(device.timeout() + Duration::from_secs(5))
            .map_err(err)?
            .map_err(err)?;
        if c.status != Status::Success || c.result as usize != n {
            return Err(format!(
                "benchmark batch: status {:?}, {} of {n} signatures valid (all should be)",
                c.status, c.result
            ));
        }
        end = end.max(if c.seen_cycles > 0 {
            c.seen_cycles
        } else {
            device.cycles().map_err(err)?
        });
    }
    Ok(end.saturating_sub(c0))
}

/// Measures the ECDSA engine on `device`.
pub fn measure(
    device: &Device,
    quick: bool,
    clock_mhz: f64,
    progress: &dyn Fn(&str),
) -> Result<DeviceVerifyFigures, String> {
    let info = device
        .engine(EngineType::EcdsaP256)
        .ok_or("the device has no ECDSA P-256 engine")?;
    let engines = u32::from(info.instances);
    let batch = if quick { 16 } else { 64 };
    let recs = valid_records(batch * engines.max(1) as usize, 1)?;

    progress("ECDSA latency of one verification");
    device.set_enabled(EngineType::EcdsaP256, 1).map_err(err)?;
    let cycles_latency_one = run(device, &recs[..1], 1)?;
    progress("ECDSA amortized, one engine");
    let one = run(device, &recs[..batch], 1)? as f64 / batch as f64;
    progress("ECDSA amortized, all engines");
    device
        .set_enabled(EngineType::EcdsaP256, u32::MAX)
        .map_err(err)?;
    let all = run(device, &recs, engines as usize)? as f64 / recs.len() as f64;

    let projected_per_engine = clock_mhz * 1e6 / one;
    let area = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/synth/ecdsa_engine.json"),
    )
    .ok()
    .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let fit = area.as_ref().and_then(u250_fit);
    Ok(DeviceVerifyFigures {
        device: device.info().transport.clone(),
        engines,
        cycles_latency_one,
        cycles_amortized_one_engine: one,
        cycles_amortized_all_engines: all,
        batch,
        projected_per_engine,
        u250_instances: fit.as_ref().map(|f| f.0),
        u250_limit: fit.as_ref().map(|f| f.1.clone()),
        projected_per_u250: fit.map(|f| f.0 as f64 * projected_per_engine),
        area,
        clock_mhz,
    })
}

/// How many engines of `area` (a `cargo xtask synth` report) fit a U250 at `U250_USABLE` of
/// each resource, and which resource runs out first.
pub fn u250_fit(area: &serde_json::Value) -> Option<(u64, String)> {
    U250.iter()
        .filter_map(|(k, cap)| {
            let used = area.get(*k)?.as_u64()?;
            (used > 0).then(|| ((*cap as f64 * U250_USABLE) as u64 / used, k.to_string()))
        })
        .min()
}

impl DeviceVerifyFigures {
    /// The figures as markdown.
    pub fn markdown(&self) -> String {
        let mut o = format!(
            "## ECDSA P-256 engine on {} ({} instance(s))\n\n\
             Projection: {} MHz device clock (assumed, not from a timing report).\n\n\
             | measure | value |\n| --- | --- |\n",
            self.device, self.engines, self.clock_mhz
        );
        let mut row = |k: &str, v: String| o.push_str(&format!("| {k} | {v} |\n"));
        row(
            "latency of one verification (cycles)",
            self.cycles_latency_one.to_string(),
        );
        row(
            &format!(
                "amortized, 1 engine, {} records (cycles/verify)",
                self.batch
            ),
            format!("{:.0}", self.cycles_amortized_one_engine),
        );
        row(
            &format!("amortized, {} engines (device cycles/verify)", self.engines),
            format!("{:.0}", self.cycles_amortized_all_engines),
        );
        row(
            "projected per engine",
            format!("{:.0} verify/s", self.projected_per_engine),
        );
        match (
            self.u250_instances,
            &self.u250_limit,
            self.projected_per_u250,
        ) {
            (Some(n), Some(limit), Some(rate)) => row(
                "projected per U250",
                format!(
                    "{n} engines ({limit}-bound at {:.0}% of the part) → {:.0} verify/s",
                    U250_USABLE * 100.0,
                    rate
                ),
            ),
            _ => row(
                "projected per U250",
                "run `cargo xtask synth --top ecdsa_engine` for the area".into(),
            ),
        }
        if let Some(a) = &self.area {
            row("ecdsa_engine area (Yosys synth_xilinx)", a.to_string());
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u250_fit_takes_the_scarcest_resource() {
        let area = serde_json::json!({"luts": 85902, "ffs": 10568, "dsps": 616, "bram": 32});
        // 12,288 DSPs × 0.7 / 616 = 13.96; LUTs allow 14, BRAM 58.
        assert_eq!(u250_fit(&area), Some((13, "dsps".to_string())));
        assert_eq!(u250_fit(&serde_json::json!({})), None);
    }
}
