//! Probe logic against scripted register files: what the driver refuses and how it adapts.

use bpu_driver::regs::{engine, global, EngineType, MAGIC, VERSION_MAJOR};
use bpu_driver::{probe, DmaBuf, Error, Transport};
use std::collections::HashMap;
use std::time::Duration;

/// A register file with fixed contents and no DMA: enough to exercise `probe`.
struct Regs(HashMap<u32, u32>);

impl Transport for Regs {
    fn describe(&self) -> String {
        "scripted".into()
    }
    fn read32(&self, offset: u32) -> bpu_driver::Result<u32> {
        Ok(self.0.get(&offset).copied().unwrap_or(0))
    }
    fn write32(&self, _: u32, _: u32) -> bpu_driver::Result<()> {
        Ok(())
    }
    fn alloc_dma(&self, _: usize) -> bpu_driver::Result<DmaBuf> {
        Err(Error::Unsupported("DMA"))
    }
    fn irq_vectors(&self) -> u32 {
        0
    }
    fn wait_irq(&self, _: Duration) -> bpu_driver::Result<u64> {
        Ok(0)
    }
}

fn good() -> HashMap<u32, u32> {
    let mut m = HashMap::new();
    m.insert(global::MAGIC, MAGIC);
    m.insert(global::VERSION, u32::from(VERSION_MAJOR) << 16 | 7);
    m.insert(global::CAPS, 4 | 16 << 8 | 12 << 16);
    m.insert(global::ENGINE_LIST, 0x100);
    m.insert(0x100 + engine::ID, 1 << 16 | EngineType::Sha256 as u32);
    m.insert(0x100 + engine::SHAPE, 0x120 << 16 | 8);
    m.insert(0x100 + engine::OPCODES, 3 << 8 | 0x10);
    m.insert(0x120 + engine::ID, 2 << 16 | 0xBEEF);
    m.insert(0x120 + engine::SHAPE, 2);
    m
}

#[test]
fn probe_reads_the_id_block_and_walks_the_engine_chain() {
    let info = probe(&Regs(good())).expect("a valid device");
    assert_eq!(
        info.version,
        (VERSION_MAJOR, 7),
        "newer minor versions are accepted"
    );
    assert_eq!(
        (info.queues, info.dma_bytes, info.max_queue_log2),
        (4, 16, 12)
    );
    assert_eq!(info.engines.len(), 2);
    assert_eq!(info.engines[0].kind, Some(EngineType::Sha256));
    assert_eq!(
        (info.engines[0].instances, info.engines[0].opcodes),
        (8, (0x10, 3))
    );
    assert_eq!(
        info.engines[1].kind, None,
        "an engine this driver does not know is listed, not fatal"
    );
    assert_eq!(info.engines[1].name(), "unknown-0xbeef");
}

#[test]
fn probe_refuses_other_devices_and_other_major_versions() {
    let mut m = good();
    m.insert(global::MAGIC, 0xDEAD_BEEF);
    assert!(matches!(
        probe(&Regs(m)),
        Err(Error::NotABpu(_, 0xDEAD_BEEF))
    ));
    let mut m = good();
    m.insert(global::VERSION, u32::from(VERSION_MAJOR + 1) << 16);
    match probe(&Regs(m)) {
        Err(e @ Error::VersionMismatch { .. }) => {
            assert!(e.to_string().contains("update the driver or the bitstream"))
        }
        other => panic!("expected a version mismatch, got {other:?}"),
    }
}

#[test]
fn a_looping_engine_chain_ends() {
    let mut m = good();
    m.insert(0x120 + engine::SHAPE, 0x100 << 16 | 2); // points back to the first descriptor
    let info = probe(&Regs(m)).expect("probe ends");
    assert_eq!(
        info.engines.len(),
        engine::COUNT as usize,
        "bounded by the descriptor window"
    );
}
