//! The one seam between the driver and a device: 32-bit registers, DMA memory, interrupts.
//!
//! Everything above this trait (probe, reset, queues, commands, the runtime) is shared by every
//! transport, so simulation tests cover it for the board too.

pub mod sim;
#[cfg(target_os = "linux")]
pub mod vfio;

use crate::dma::DmaBuf;
use crate::error::{Error, Result};
use std::time::Duration;

/// Fault injection offered by transports that can (the simulator).
pub use bpu_sim::Fault;

/// A way to reach a BPU.
pub trait Transport: Send + Sync + 'static {
    /// Human-readable identity, e.g. `sim://` or `vfio://0000:03:00.0`.
    fn describe(&self) -> String;

    /// Reads the 32-bit register at byte `offset` of BAR0.
    fn read32(&self, offset: u32) -> Result<u32>;

    /// Writes the 32-bit register at byte `offset` of BAR0.
    fn write32(&self, offset: u32, value: u32) -> Result<()>;

    /// Allocates `len` bytes of zeroed host memory that the device can reach by DMA.
    fn alloc_dma(&self, len: usize) -> Result<DmaBuf>;

    /// Interrupt vectors wired to the host (0: none, the driver polls).
    fn irq_vectors(&self) -> u32;

    /// Waits up to `timeout` for interrupts; returns the mask of vectors that fired since the
    /// previous call (0 on timeout).
    fn wait_irq(&self, timeout: Duration) -> Result<u64>;

    /// Device clock cycles since reset, where the transport can count them without the device.
    fn cycles(&self) -> Option<u64> {
        None
    }

    /// Injects a fault outside the device (simulation only).
    fn inject(&self, _fault: Fault) -> Result<()> {
        Err(Error::Unsupported("fault injection"))
    }
}
