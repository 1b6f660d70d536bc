//! The `sim://` transport: the Verilator model from `bpu-sim`, in this process.

use super::{Fault, Transport};
use crate::dma::{DmaBuf, DmaPool, Iova, IovaAllocator};
use crate::error::{Error, Result};
use bpu_sim::{Config, Simulator, MEM_BASE};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

/// A simulated BPU and its host-memory arena.
pub struct SimTransport {
    pool: Arc<SimPool>,
    seen: Mutex<Vec<u64>>,
}

struct SimPool {
    sim: Simulator,
    alloc: IovaAllocator,
}

impl DmaPool for SimPool {
    fn free(&self, iova: Iova, len: usize) {
        self.alloc.free(iova.0, len);
    }
}

impl SimTransport {
    /// Starts a simulated device.
    pub fn start(config: &Config) -> Result<SimTransport> {
        let sim = Simulator::start(config)?;
        let alloc = IovaAllocator::new(MEM_BASE, sim.arena_len() as u64);
        let seen = Mutex::new(sim.irq_counts());
        Ok(SimTransport {
            pool: Arc::new(SimPool { sim, alloc }),
            seen,
        })
    }
}

impl Transport for SimTransport {
    fn describe(&self) -> String {
        format!("sim:// ({})", bpu_sim::BUILD_PARAMS)
    }

    fn read32(&self, offset: u32) -> Result<u32> {
        Ok(self.pool.sim.read32(offset)?)
    }

    fn write32(&self, offset: u32, value: u32) -> Result<()> {
        Ok(self.pool.sim.write32(offset, value)?)
    }

    fn alloc_dma(&self, len: usize) -> Result<DmaBuf> {
        let iova = self.pool.alloc.alloc(len)?;
        let offset = (iova - MEM_BASE) as usize;
        let ptr = self.pool.sim.arena_ptr().as_ptr().wrapping_add(offset);
        let ptr = std::ptr::NonNull::new(ptr).ok_or(Error::Closed)?;
        let pool: Arc<dyn DmaPool> = self.pool.clone();
        // SAFETY: `iova..iova+len` was just handed out by the allocator over the arena, so it lies
        // inside the arena (which lives as long as `pool`, kept alive by the buffer) and is given
        // to no one else until the buffer's drop frees it; the device reaches arena byte k at
        // MEM_BASE + k.
        let mut buf = unsafe { DmaBuf::from_raw(ptr, len, Iova(iova), pool) };
        buf.fill(0);
        Ok(buf)
    }

    fn irq_vectors(&self) -> u32 {
        self.pool.sim.queues()
    }

    fn wait_irq(&self, timeout: Duration) -> Result<u64> {
        let mut seen = self.seen.lock();
        let now = self.pool.sim.wait_irq_change(&seen, timeout);
        let mask = now
            .iter()
            .zip(seen.iter())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .fold(0u64, |m, (q, _)| m | 1 << q);
        *seen = now;
        Ok(mask)
    }

    fn cycles(&self) -> Option<u64> {
        Some(self.pool.sim.cycles())
    }

    fn inject(&self, fault: Fault) -> Result<()> {
        Ok(self.pool.sim.inject(fault)?)
    }
}
