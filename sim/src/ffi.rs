//! The C ABI of `csrc/shim.cpp` and a safe owner of one model instance.
#![allow(unsafe_code)]

use crate::{Fault, SimError};

#[repr(C)]
struct BpuSim {
    _private: [u8; 0],
}

extern "C" {
    fn bpu_sim_new(mem: *mut u8, mem_base: u64, mem_size: u64, latency: u32) -> *mut BpuSim;
    fn bpu_sim_free(s: *mut BpuSim);
    fn bpu_sim_dma_bytes() -> u32;
    fn bpu_sim_queues() -> u32;
    fn bpu_sim_cycles(s: *const BpuSim) -> u64;
    fn bpu_sim_reg_write(s: *mut BpuSim, addr: u32, value: u32) -> i32;
    fn bpu_sim_reg_read(s: *mut BpuSim, addr: u32, value: *mut u32) -> i32;
    fn bpu_sim_run(s: *mut BpuSim, max_cycles: u64) -> u64;
    fn bpu_sim_quiet(s: *const BpuSim) -> bool;
    fn bpu_sim_irq_count(s: *const BpuSim, q: u32) -> u64;
    fn bpu_sim_fail_reads(s: *mut BpuSim, n: u32);
    fn bpu_sim_fail_writes(s: *mut BpuSim, n: u32);
    fn bpu_sim_drop_irqs(s: *mut BpuSim, n: u32);
}

pub fn queues() -> u32 {
    // SAFETY: a pure function of build-time constants.
    unsafe { bpu_sim_queues() }
}

pub fn dma_bytes() -> u32 {
    // SAFETY: a pure function of build-time constants.
    unsafe { bpu_sim_dma_bytes() }
}

/// One model; lives on the simulator thread only (it is deliberately not `Send` once created).
pub struct Model {
    raw: *mut BpuSim,
}

impl Model {
    /// Creates and resets a model serving DMA from `mem[0..mem_size]` at IOVA `mem_base`.
    /// The caller keeps that memory alive until the model is dropped.
    pub fn new(mem: *mut u8, mem_base: u64, mem_size: u64, latency: u32) -> Model {
        // SAFETY: `mem` points to `mem_size` bytes that outlive the model (Simulator frees the
        // arena only after joining the thread that owns the model).
        let raw = unsafe { bpu_sim_new(mem, mem_base, mem_size, latency) };
        Model { raw }
    }

    pub fn read(&mut self, addr: u32) -> Result<u32, SimError> {
        let mut v = 0u32;
        // SAFETY: `raw` is a live model owned by this thread; `v` is a valid out-pointer.
        let resp = unsafe { bpu_sim_reg_read(self.raw, addr, &mut v) };
        match resp {
            0 => Ok(v),
            -1 => Err(SimError::BusTimeout { addr }),
            r => Err(SimError::Bus { addr, resp: r }),
        }
    }

    pub fn write(&mut self, addr: u32, value: u32) -> Result<(), SimError> {
        // SAFETY: `raw` is a live model owned by this thread.
        let resp = unsafe { bpu_sim_reg_write(self.raw, addr, value) };
        match resp {
            0 => Ok(()),
            -1 => Err(SimError::BusTimeout { addr }),
            r => Err(SimError::Bus { addr, resp: r }),
        }
    }

    pub fn run(&mut self, max_cycles: u64) -> u64 {
        // SAFETY: `raw` is a live model owned by this thread.
        unsafe { bpu_sim_run(self.raw, max_cycles) }
    }

    pub fn quiet(&self) -> bool {
        // SAFETY: `raw` is a live model owned by this thread.
        unsafe { bpu_sim_quiet(self.raw) }
    }

    pub fn cycles(&self) -> u64 {
        // SAFETY: `raw` is a live model owned by this thread.
        unsafe { bpu_sim_cycles(self.raw) }
    }

    pub fn irq_count(&self, q: u32) -> u64 {
        // SAFETY: `raw` is a live model owned by this thread; out-of-range q returns 0.
        unsafe { bpu_sim_irq_count(self.raw, q) }
    }

    pub fn inject(&mut self, fault: Fault) {
        // SAFETY: `raw` is a live model owned by this thread.
        unsafe {
            match fault {
                Fault::FailReads(n) => bpu_sim_fail_reads(self.raw, n),
                Fault::FailWrites(n) => bpu_sim_fail_writes(self.raw, n),
                Fault::DropIrqs(n) => bpu_sim_drop_irqs(self.raw, n),
            }
        }
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: `raw` came from `bpu_sim_new` and is freed exactly once, here.
        unsafe { bpu_sim_free(self.raw) }
    }
}
