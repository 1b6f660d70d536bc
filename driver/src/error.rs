//! Typed errors of the driver: what went wrong and, where it helps, what to do about it.

use crate::regs::Status;
use std::time::Duration;

/// Every error the driver returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid device URI {uri:?}: {why} (examples: sim://, sim://?crypto=2, vfio://0000:03:00.0)")]
    BadUri { uri: String, why: String },
    #[error("no BPU at {0}: MAGIC register reads {1:#010x}")]
    NotABpu(String, u32),
    #[error("device speaks register map {found_major}.{found_minor}, this driver speaks {want_major}.x: update the driver or the bitstream")]
    VersionMismatch {
        found_major: u16,
        found_minor: u16,
        want_major: u16,
    },
    #[error("device has no {0} engine")]
    NoEngine(&'static str),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, &'static str),
    #[error("command failed with status {0:?}")]
    Status(Status),
    #[error("device returned unknown status code {0}")]
    UnknownStatus(u16),
    #[error("queue {0} stopped after a DMA error on its rings; reset the device")]
    QueueFault(u16),
    #[error("buffer access out of bounds: {len} bytes at {offset} in a {size}-byte buffer")]
    OutOfBounds {
        offset: usize,
        len: usize,
        size: usize,
    },
    #[error("out of DMA memory: wanted {want} bytes, {free} free (use a larger arena, e.g. sim://?mem=256M)")]
    OutOfDmaMemory { want: usize, free: usize },
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("simulator: {0}")]
    Sim(#[from] bpu_sim::SimError),
    #[error("VFIO: {0}")]
    Vfio(String),
    #[error("this transport does not support {0}")]
    Unsupported(&'static str),
    #[error("device is closed")]
    Closed,
}

/// Result with the driver's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
