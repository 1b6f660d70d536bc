//! `bpu bench hash`: SHA-256 engine cycles per block, command overhead, device and CPU throughput.
//!
//! Device figures are device clock cycles read from the BPU's own counters (CYCLES, engine
//! BUSY_CYCLES), so they do not depend on how fast the simulator runs; bytes per second are
//! projected at an assumed clock. CPU figures are wall-clock on this machine.

use crate::{fmt_rate, Projection};
use bpu_driver::{hash_descriptor, Command, Device, DmaBuf, EngineType, Submission};
use bpu_runtime::CryptoService;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::sync::Arc;
use std::time::Instant;

/// One device throughput measurement.
#[derive(Debug, Serialize)]
pub struct DeviceRow {
    pub engines: u32,
    pub message_bytes: usize,
    pub messages: usize,
    pub cycles: u64,
    pub bytes_per_cycle: f64,
    pub projected_gbytes_per_s: f64,
}

/// One CPU throughput measurement.
#[derive(Debug, Serialize)]
pub struct CpuRow {
    pub threads: usize,
    pub message_bytes: usize,
    pub messages: usize,
    pub gbytes_per_s: f64,
}

/// Everything `bpu bench hash` reports.
#[derive(Debug, Serialize)]
pub struct HashReport {
    pub device: String,
    pub projection: Projection,
    /// Engine busy cycles per 64-byte block while hashing one long message on one engine.
    pub cycles_per_block: f64,
    /// Device cycles from doorbell to completion interrupt for one NOP (queue path only).
    pub nop_latency_cycles: u64,
    /// Device cycles from doorbell to completion for one SHA-256 of 64 bytes (two blocks).
    pub sha64_latency_cycles: u64,
    /// Engine busy cycles per command beyond its blocks (descriptor fetch, digest write, completion).
    pub command_overhead_cycles: f64,
    pub device_rows: Vec<DeviceRow>,
    pub cpu_rows: Vec<CpuRow>,
    /// Yosys area (`cargo xtask synth`), when it has been run.
    pub area: Vec<Area>,
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Runs the whole hash benchmark on `device` (an open BPU) and the CPU.
pub fn run(device: &Device, quick: bool, progress: &dyn Fn(&str)) -> Result<HashReport, String> {
    let sha = device
        .engine(EngineType::Sha256)
        .ok_or("device has no SHA-256 engine")?
        .clone();
    let all = u32::from(sha.instances);
    let large = if quick { 64 << 10 } else { 1 << 20 };
    let small_count = if quick { 512 } else { 4096 };

    progress("cycles per block (one engine, one long message)");
    device.set_enabled(EngineType::Sha256, 1).map_err(err)?;
    let (_, busy0) = device.engine_stats(EngineType::Sha256).map_err(err)?;
    run_batch(device, &[vec![0x5a; large]], 1)?;
    let (_, busy1) = device.engine_stats(EngineType::Sha256).map_err(err)?;
    let blocks = (large as f64 + 9.0) / 64.0;
    let blocks = blocks.ceil();
    let busy_long = f64::from(busy1.wrapping_sub(busy0));
    let cycles_per_block = busy_long / blocks;

    progress("command latency and overhead");
    let nop_latency_cycles = single_latency(device, Command::Nop, vec![])?;
    let mut src = device.alloc(64).map_err(err)?;
    src.write(0, &[7u8; 64]).map_err(err)?;
    let src = Arc::new(src);
    let dst = Arc::new(device.alloc(32).map_err(err)?);
    let sha_cmd = Command::Sha256 {
        src: src.iova(),
        len: 64,
        dst: dst.iova(),
        prefix: None,
    };
    let (_, b0) = device.engine_stats(EngineType::Sha256).map_err(err)?;
    let sha64_latency_cycles = single_latency(device, sha_cmd, vec![src, dst])?;
    let (_, b1) = device.engine_stats(EngineType::Sha256).map_err(err)?;
    let command_overhead_cycles = f64::from(b1.wrapping_sub(b0)) - 2.0 * cycles_per_block;

    let mut device_rows = Vec::new();
    let engine_counts: Vec<u32> = if all > 1 { vec![1, all] } else { vec![1] };
    for &n in &engine_counts {
        device
            .set_enabled(EngineType::Sha256, (1u32 << n) - 1)
            .map_err(err)?;
        progress(&format!("device throughput, {n} engine(s), large messages"));
        let msgs: Vec<Vec<u8>> = (0..all.max(1)).map(|i| vec![i as u8; large]).collect();
        device_rows.push(measure(device, &msgs, n)?);
        progress(&format!(
            "device throughput, {n} engine(s), 100-byte messages"
        ));
        let msgs: Vec<Vec<u8>> = (0..small_count)
            .map(|i| vec![(i % 251) as u8; 100])
            .collect();
        device_rows.push(measure(device, &msgs, n)?);
    }
    device
        .set_enabled(EngineType::Sha256, u32::MAX)
        .map_err(err)?;

    progress("CPU throughput");
    let cpu_rows = cpu_rows(large, small_count)?;
    Ok(HashReport {
        device: device.info().transport.clone(),
        projection: Projection::default(),
        cycles_per_block,
        nop_latency_cycles,
        sha64_latency_cycles,
        command_overhead_cycles,
        device_rows,
        cpu_rows,
        area: area_reports(),
    })
}

/// Device cycles for one command from just before the doorbell until its completion is seen.
fn single_latency(device: &Device, cmd: Command, buffers: Vec<Arc<DmaBuf>>) -> Result<u64, String> {
    let c0 = device.cycles().map_err(err)?;
    let c = device.execute(cmd.entry(), buffers).map_err(err)?;
    c.ok().map_err(err)?;
    // The reaper stamps the cycle count it saw with the completion (simulation); otherwise use
    // the counter now, which includes the host's reaction time.
    let end = if c.seen_cycles > 0 {
        c.seen_cycles
    } else {
        device.cycles().map_err(err)?
    };
    Ok(end.saturating_sub(c0))
}

/// Hashes `msgs` as `commands` SHA256_BATCH commands submitted with one doorbell; checks digests.
fn run_batch(device: &Device, msgs: &[Vec<u8>], commands: usize) -> Result<(), String> {
    let total: usize = msgs.iter().map(Vec::len).sum();
    let mut data = device.alloc(total.max(1)).map_err(err)?;
    let mut spans = Vec::new();
    let mut off = 0;
    for m in msgs {
        data.write(off, m).map_err(err)?;
        spans.push((off, m.len()));
        off += m.len();
    }
    let data = Arc::new(data);
    let per = msgs.len().div_ceil(commands.max(1));
    let (tx, rx) = std::sync::mpsc::channel();
    let mut subs = Vec::new();
    let mut outs = Vec::new();
    for (ci, chunk) in spans.chunks(per).enumerate() {
        let mut table = device.alloc(16 * chunk.len()).map_err(err)?;
        for (k, (o, l)) in chunk.iter().enumerate() {
            table
                .write_obj(
                    16 * k,
                    &hash_descriptor(data.iova_at(*o).map_err(err)?, *l as u32),
                )
                .map_err(err)?;
        }
        let out = Arc::new(device.alloc(32 * chunk.len()).map_err(err)?);
        outs.push((ci * per, chunk.len(), out.clone()));
        let tx = tx.clone();
        subs.push(Submission {
            entry: Command::Sha256Batch {
                table: table.iova(),
                count: chunk.len() as u32,
                dst: out.iova(),
                prefix: None,
            }
            .entry(),
            buffers: vec![data.clone(), Arc::new(table), out],
            done: Box::new(move |r| {
                let _ = tx.send(r);
            }),
        });
    }
    let n = subs.len();
    device.submit(subs, device.timeout()).map_err(err)?;
    for _ in 0..n {
        rx.recv().map_err(err)?.map_err(err)?.ok().map_err(err)?;
    }
    for (first, count, out) in outs {
        for k in 0..count {
            let mut d = [0u8; 32];
            out.read(32 * k, &mut d).map_err(err)?;
            let want: [u8; 32] = Sha256::digest(&msgs[first + k]).into();
            if d != want {
                return Err(format!(
                    "wrong digest for message {} of the benchmark",
                    first + k
                ));
            }
        }
    }
    Ok(())
}

fn measure(device: &Device, msgs: &[Vec<u8>], engines: u32) -> Result<DeviceRow, String> {
    let c0 = device.cycles().map_err(err)?;
    // Two commands per engine keep every engine busy while the other's results are written.
    run_batch(device, msgs, (2 * engines as usize).min(msgs.len()))?;
    let c1 = device.cycles().map_err(err)?;
    let bytes: usize = msgs.iter().map(Vec::len).sum();
    let cycles = c1 - c0;
    let bpc = bytes as f64 / cycles as f64;
    Ok(DeviceRow {
        engines,
        message_bytes: msgs.first().map_or(0, Vec::len),
        messages: msgs.len(),
        cycles,
        bytes_per_cycle: bpc,
        projected_gbytes_per_s: bpc * Projection::default().clock_mhz * 1e6 / 1e9,
    })
}

/// The CPU backend of the crypto service (sha2 + rayon), timed on batches of large and of
/// 100-byte messages, with rayon limited to one thread and then all threads.
fn cpu_rows(large: usize, small_count: usize) -> Result<Vec<CpuRow>, String> {
    let all = rayon::current_num_threads();
    let big: Vec<Vec<u8>> = (0..8).map(|i| vec![i as u8; large]).collect();
    let small: Vec<Vec<u8>> = (0..small_count * 4)
        .map(|i| vec![(i % 251) as u8; 100])
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(err)?;
    // Repeat until at least 300 ms have passed so that thread start-up and timer noise vanish.
    let time = |msgs: &[Vec<u8>], threads: usize| -> Result<f64, String> {
        let svc = CryptoService::cpu_with_threads(threads).map_err(err)?;
        let bytes: usize = msgs.iter().map(Vec::len).sum();
        let start = Instant::now();
        let mut reps = 0usize;
        while reps == 0 || start.elapsed().as_millis() < 300 {
            let v = rt.block_on(svc.sha256_batch(msgs)).map_err(err)?;
            std::hint::black_box(v);
            reps += 1;
        }
        Ok((bytes * reps) as f64 / start.elapsed().as_secs_f64() / 1e9)
    };
    let mut rows = Vec::new();
    for (msgs, size) in [(&big, large), (&small, 100)] {
        for threads in [1, all] {
            rows.push(CpuRow {
                threads,
                message_bytes: size,
                messages: msgs.len(),
                gbytes_per_s: time(msgs, threads)?,
            });
        }
    }
    Ok(rows)
}

/// Yosys area reports written by `cargo xtask synth` (target/synth/<top>.json), if present.
fn area_reports() -> Vec<Area> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/synth");
    ["sha256_engine", "bpu_top"]
        .iter()
        .filter_map(|top| {
            let text = std::fs::read_to_string(dir.join(format!("{top}.json"))).ok()?;
            let v: serde_json::Value = serde_json::from_str(&text).ok()?;
            Some(Area {
                top: (*top).to_string(),
                cells: v,
            })
        })
        .collect()
}

/// A Yosys `synth_xilinx` resource count.
#[derive(Debug, Serialize)]
pub struct Area {
    pub top: String,
    pub cells: serde_json::Value,
}

impl HashReport {
    /// The report as a markdown table.
    pub fn markdown(&self) -> String {
        let mut o = String::new();
        o.push_str(&format!("## SHA-256 on {}\n\n", self.device));
        o.push_str(&format!(
            "Projection: {} MHz device clock (assumed, not from a timing report).\n\n",
            self.projection.clock_mhz
        ));
        o.push_str("| measure | value |\n| --- | --- |\n");
        o.push_str(&format!(
            "| cycles per 64-byte block (1 engine) | {:.2} |\n",
            self.cycles_per_block
        ));
        o.push_str(&format!(
            "| command overhead (engine cycles) | {:.1} |\n",
            self.command_overhead_cycles
        ));
        o.push_str(&format!(
            "| NOP doorbell-to-completion (cycles) | {} |\n",
            self.nop_latency_cycles
        ));
        o.push_str(&format!(
            "| SHA-256 of 64 B doorbell-to-completion (cycles) | {} |\n\n",
            self.sha64_latency_cycles
        ));
        o.push_str("| engines | message | messages | device cycles | bytes/cycle | projected |\n| --- | --- | --- | --- | --- | --- |\n");
        for r in &self.device_rows {
            o.push_str(&format!(
                "| {} | {} B | {} | {} | {:.3} | {} |\n",
                r.engines,
                r.message_bytes,
                r.messages,
                r.cycles,
                r.bytes_per_cycle,
                fmt_rate(r.projected_gbytes_per_s)
            ));
        }
        o.push_str(
            "\n| CPU backend threads | message | messages | measured |\n| --- | --- | --- | --- |\n",
        );
        for r in &self.cpu_rows {
            o.push_str(&format!(
                "| {} | {} B | {} | {} |\n",
                r.threads,
                r.message_bytes,
                r.messages,
                fmt_rate(r.gbytes_per_s)
            ));
        }
        if self.area.is_empty() {
            o.push_str("\nArea: run `cargo xtask synth --top sha256_engine` and `cargo xtask synth` first.\n");
        } else {
            o.push_str("\n| Yosys synth_xilinx | LUT | FF | DSP | BRAM |\n| --- | --- | --- | --- | --- |\n");
            for a in &self.area {
                let g = |k: &str| {
                    a.cells
                        .get(k)
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0)
                };
                o.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    a.top,
                    g("luts"),
                    g("ffs"),
                    g("dsps"),
                    g("bram")
                ));
            }
        }
        o
    }
}
