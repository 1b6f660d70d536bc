//! Helpers shared by the driver's integration tests: open a simulated device, run hash commands.
#![allow(dead_code)]

use bpu_driver::{hash_descriptor, Command, Completion, Device, DmaBuf, Result, Submission};
use sha2::{Digest as _, Sha256};
use std::sync::Arc;

/// A simulated device with `opts` (e.g. `depth=4&irq=off`) and a generous timeout (tests that expect one set their own).
pub fn sim(opts: &str) -> Device {
    let uri = if opts.is_empty() {
        "sim://?timeout=10000".to_string()
    } else {
        format!("sim://?timeout=10000&{opts}")
    };
    Device::open(&uri).expect("open simulated device")
}

/// `SHA-256([prefix] || data)` on the CPU.
pub fn cpu_sha(prefix: Option<u8>, data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    if let Some(p) = prefix {
        h.update([p]);
    }
    h.update(data);
    h.finalize().into()
}

/// Copies `data` into a fresh DMA buffer at byte `offset` (to vary the alignment).
pub fn dma_with(d: &Device, data: &[u8], offset: usize) -> Arc<DmaBuf> {
    let mut b = d.alloc(offset + data.len().max(1)).expect("alloc");
    b.write(offset, data).expect("write");
    Arc::new(b)
}

/// One SHA256 command through the driver; returns the completion and the digest written.
pub fn sha(
    d: &Device,
    data: &[u8],
    offset: usize,
    prefix: Option<u8>,
) -> Result<(Completion, [u8; 32])> {
    let src = dma_with(d, data, offset);
    let dst = Arc::new(d.alloc(32)?);
    let cmd = Command::Sha256 {
        src: src.iova_at(offset)?,
        len: data.len() as u32,
        dst: dst.iova(),
        prefix,
    };
    let c = d.execute(cmd.entry(), vec![src, dst.clone()])?;
    let mut out = [0u8; 32];
    dst.read(0, &mut out)?;
    Ok((c, out))
}

/// One SHA256_BATCH command over `msgs`; returns the completion and the digests.
pub fn sha_batch(
    d: &Device,
    msgs: &[Vec<u8>],
    prefix: Option<u8>,
) -> Result<(Completion, Vec<[u8; 32]>)> {
    let total: usize = msgs.iter().map(Vec::len).sum();
    let mut data = d.alloc(total.max(1) + msgs.len())?;
    let mut table = d.alloc(16 * msgs.len().max(1))?;
    let mut off = 0;
    for (i, m) in msgs.iter().enumerate() {
        // One spare byte between messages keeps consecutive messages differently aligned.
        data.write(off, m)?;
        table.write_obj(16 * i, &hash_descriptor(data.iova_at(off)?, m.len() as u32))?;
        off += m.len() + 1;
    }
    let out = Arc::new(d.alloc(32 * msgs.len().max(1))?);
    let cmd = Command::Sha256Batch {
        table: table.iova(),
        count: msgs.len() as u32,
        dst: out.iova(),
        prefix,
    };
    let c = d.execute(
        cmd.entry(),
        vec![Arc::new(data), Arc::new(table), out.clone()],
    )?;
    let digests = (0..msgs.len())
        .map(|i| {
            let mut x = [0u8; 32];
            out.read(32 * i, &mut x).map(|_| x)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((c, digests))
}

/// A submission whose outcome is sent to `tx` tagged with `tag`.
pub fn tagged(
    entry: bpu_driver::regs::SubmissionEntry,
    buffers: Vec<Arc<DmaBuf>>,
    tag: usize,
    tx: &std::sync::mpsc::Sender<(usize, Result<Completion>)>,
) -> Submission {
    let tx = tx.clone();
    Submission {
        entry,
        buffers,
        done: Box::new(move |r| {
            let _ = tx.send((tag, r));
        }),
    }
}
