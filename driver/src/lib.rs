//! bpu-driver: the userspace driver of the Blockchain Processing Unit.
//!
//! Purpose: reach a BPU, simulated (`sim://`) or on a board (`vfio://BDF`), through one
//! [`Transport`] trait, probe and reset it, and run commands through NVMe-style queue pairs:
//! submission and completion rings in DMA memory, doorbells, phase bits, interrupts or polling.
//!
//! Invariants:
//! - Every wait has a deadline and ends in a typed [`Error`], never a hang.
//! - A command keeps the DMA buffers it names alive until the device answers it (or a reset
//!   aborts it), so the device never writes memory that has been handed to someone else.
//! - Register offsets, fields, entry layouts and codes come only from [`regs`], which is
//!   generated from `hw/bpu.toml` (`cargo xtask regen`); nothing here repeats a number from it.
//! - Unsafe code lives only in `dma.rs` and `transport/`, each block with a `SAFETY` comment.
//!   Only little-endian hosts are supported (entries are `repr(C)` in host order).
//!
//! Start reading at [`Device::open`], then `queue.rs` ([`QueuePair::submit`] and `reap`).

#[cfg(target_endian = "big")]
compile_error!("bpu-driver supports little-endian hosts only");

pub mod command;
pub mod device;
pub mod dma;
pub mod error;
pub mod queue;
#[rustfmt::skip]
pub mod regs;
pub mod transport;
pub mod uri;

pub use command::{hash_descriptor, Command};
pub use device::{list, probe, Device, DeviceInfo, EngineInfo};
pub use dma::{DmaBuf, Iova};
pub use error::{Error, Result};
pub use queue::{Callback, Completion, QueueConfig, QueuePair, Submission};
pub use regs::{EngineType, Opcode, Status};
pub use transport::{Fault, Transport};
pub use uri::DeviceUri;
