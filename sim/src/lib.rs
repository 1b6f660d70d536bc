//! bpu-sim: the Verilator model of `rtl/bpu_top.sv`, running on its own thread, behind a safe API.
//!
//! Purpose: give the driver's `sim` transport a device that behaves like the FPGA board: 32-bit
//! register reads and writes over AXI4-Lite, a host-memory arena served to the device's DMA
//! master, interrupt counts per completion queue, a cycle counter, and fault injection (fail DMA
//! reads or writes, drop interrupts; stalling an engine is a device register, see `hw/bpu.toml`).
//!
//! Invariants:
//! - The C++ model is touched only by the simulator thread; every other thread talks to it
//!   through a channel, so the unsafe FFI surface is confined to `ffi` and `worker`.
//! - The arena outlives the model (it is freed after the model in `Drop`), and its address and
//!   size never change: IOVA `MEM_BASE + k` is arena byte `k`.
//! - The clock runs while the device has work (`idle_o` low or DMA traffic outstanding) and the
//!   thread sleeps otherwise, so an idle simulated device costs no CPU.
//!
//! Start reading at [`Simulator::start`]. [`blake3`] is a second, standalone model: the BLAKE3
//! hasher alone, run on the calling thread; [`lthash`] a third: the KV engine's LtHash16 unit.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub mod blake3;
mod ffi;
pub mod lthash;

/// IOVA of arena byte 0: high enough that a truncated 32-bit address shows up as a DMA error.
pub const MEM_BASE: u64 = 0x0000_0010_0000_0000;

/// Cycles the thread runs between checks for register requests.
const CHUNK: u64 = 512;

/// Parameters the model was built with (`BPU_SIM_*` at build time) and its BUILD_ID.
pub const BUILD_PARAMS: &str = env!("BPU_SIM_PARAMS");

/// How to build a simulated device.
#[derive(Debug, Clone)]
pub struct Config {
    /// Size of the host-memory arena served to the device's DMA master.
    pub mem_bytes: usize,
    /// Cycles between a DMA read request and its first data beat.
    pub mem_latency: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mem_bytes: 64 << 20,
            mem_latency: 8,
        }
    }
}

/// Faults the simulator can inject from outside the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The next `n` DMA read bursts answer SLVERR.
    FailReads(u32),
    /// The next `n` DMA write bursts answer SLVERR (their data is dropped).
    FailWrites(u32),
    /// The next `n` interrupt pulses are lost.
    DropIrqs(u32),
}

/// Errors of the simulated device.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("register access at {addr:#06x} got AXI response {resp}")]
    Bus { addr: u32, resp: i32 },
    #[error("register access at {addr:#06x} got no AXI response (device bus hung)")]
    BusTimeout { addr: u32 },
    #[error("simulator thread is gone")]
    Gone,
    #[error("arena of {0} bytes is too small or too large (1 MiB .. 4 GiB)")]
    ArenaSize(usize),
}

enum Request {
    Read(u32, mpsc::SyncSender<Result<u32, SimError>>),
    Write(u32, u32, mpsc::SyncSender<Result<(), SimError>>),
    Fault(Fault),
}

/// Interrupt counts per vector, published by the simulator thread.
struct Irqs {
    counts: Mutex<Vec<u64>>,
    cond: Condvar,
}

/// A running simulated BPU. Dropping it stops the thread and frees the model and the arena.
pub struct Simulator {
    tx: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    irqs: Arc<Irqs>,
    cycles: Arc<AtomicU64>,
    arena: Arena,
    queues: u32,
    dma_bytes: u32,
}

/// The host-memory arena: a fixed block of 8-byte-aligned memory shared with the model.
struct Arena {
    ptr: NonNull<u64>,
    words: usize,
}

// SAFETY: the arena is plain memory; concurrent access is mediated by the driver's DMA buffer
// discipline (host and device touch a byte only at distinct times, ordered by doorbells and
// phase bits with release/acquire ordering), exactly as with a real device's DMA memory.
unsafe impl Send for Arena {}
// SAFETY: as above; `Arena` itself exposes only the raw pointer and length.
unsafe impl Sync for Arena {}

impl Arena {
    fn new(bytes: usize) -> Result<Arena, SimError> {
        if !(1 << 20..=1 << 32).contains(&bytes) {
            return Err(SimError::ArenaSize(bytes));
        }
        let words = bytes.div_ceil(8);
        let boxed: Box<[u64]> = vec![0u64; words].into_boxed_slice();
        let ptr =
            NonNull::new(Box::into_raw(boxed) as *mut u64).ok_or(SimError::ArenaSize(bytes))?;
        Ok(Arena { ptr, words })
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`words` came from `Box::into_raw` of a `[u64]` of exactly `words`
        // elements in `Arena::new`, and the model that used it has been freed (see `Simulator::drop`).
        unsafe {
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.ptr.as_ptr(),
                self.words,
            )));
        }
    }
}

impl Simulator {
    /// Builds the model, resets it and starts its thread.
    pub fn start(config: &Config) -> Result<Simulator, SimError> {
        let arena = Arena::new(config.mem_bytes)?;
        let (tx, rx) = mpsc::channel();
        let irqs = Arc::new(Irqs {
            counts: Mutex::new(vec![0; ffi::queues() as usize]),
            cond: Condvar::new(),
        });
        let cycles = Arc::new(AtomicU64::new(0));
        let mem = arena.ptr.as_ptr() as usize;
        let mem_len = (arena.words * 8) as u64;
        let latency = config.mem_latency;
        let (t_irqs, t_cycles) = (irqs.clone(), cycles.clone());
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("bpu-sim".into())
            .spawn(move || {
                let model = ffi::Model::new(mem as *mut u8, MEM_BASE, mem_len, latency);
                let _ = ready_tx.send(());
                worker(model, rx, &t_irqs, &t_cycles);
            })
            .map_err(|_| SimError::Gone)?;
        ready_rx.recv().map_err(|_| SimError::Gone)?;
        Ok(Simulator {
            tx: Some(tx),
            thread: Some(thread),
            irqs,
            cycles,
            arena,
            queues: ffi::queues(),
            dma_bytes: ffi::dma_bytes(),
        })
    }

    fn send(&self, req: Request) -> Result<(), SimError> {
        self.tx
            .as_ref()
            .ok_or(SimError::Gone)?
            .send(req)
            .map_err(|_| SimError::Gone)
    }

    /// Reads a 32-bit register at byte offset `addr` of BAR0.
    pub fn read32(&self, addr: u32) -> Result<u32, SimError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Request::Read(addr, tx))?;
        rx.recv().map_err(|_| SimError::Gone)?
    }

    /// Writes a 32-bit register at byte offset `addr` of BAR0.
    pub fn write32(&self, addr: u32, value: u32) -> Result<(), SimError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.send(Request::Write(addr, value, tx))?;
        rx.recv().map_err(|_| SimError::Gone)?
    }

    /// Injects a fault (see [`Fault`]).
    pub fn inject(&self, fault: Fault) -> Result<(), SimError> {
        self.send(Request::Fault(fault))
    }

    /// Clock cycles simulated since reset.
    pub fn cycles(&self) -> u64 {
        self.cycles.load(Ordering::Acquire)
    }

    /// Interrupt counts per vector so far.
    pub fn irq_counts(&self) -> Vec<u64> {
        self.irqs
            .counts
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Waits until some vector's count differs from `seen` or `timeout` passes; returns the counts.
    pub fn wait_irq_change(&self, seen: &[u64], timeout: Duration) -> Vec<u64> {
        let deadline = Instant::now() + timeout;
        let Ok(mut counts) = self.irqs.counts.lock() else {
            return seen.to_vec();
        };
        while counts.as_slice() == seen {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match self.irqs.cond.wait_timeout(counts, deadline - now) {
                Ok((c, _)) => counts = c,
                Err(_) => return seen.to_vec(),
            }
        }
        counts.clone()
    }

    /// Start of the arena in host memory; IOVA `MEM_BASE + k` is byte `k` from here.
    pub fn arena_ptr(&self) -> NonNull<u8> {
        self.arena.ptr.cast()
    }

    /// Size of the arena in bytes.
    pub fn arena_len(&self) -> usize {
        self.arena.words * 8
    }

    /// Number of queue pairs (and interrupt vectors) the model was built with.
    pub fn queues(&self) -> u32 {
        self.queues
    }

    /// DMA bus width in bytes.
    pub fn dma_bytes(&self) -> u32 {
        self.dma_bytes
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        // Closing the channel ends the worker, which frees the model before the arena goes.
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The simulator thread: serve requests, run the clock while the device is busy, publish irqs.
fn worker(mut model: ffi::Model, rx: mpsc::Receiver<Request>, irqs: &Irqs, cycles: &AtomicU64) {
    let nq = ffi::queues();
    let mut last: Vec<u64> = vec![0; nq as usize];
    loop {
        // Serve every waiting request; block for one only when the device has nothing to do.
        let first = if model.quiet() {
            match rx.recv() {
                Ok(r) => Some(r),
                Err(_) => return,
            }
        } else {
            match rx.try_recv() {
                Ok(r) => Some(r),
                Err(mpsc::TryRecvError::Empty) => None,
                Err(mpsc::TryRecvError::Disconnected) => return,
            }
        };
        let mut next = first;
        while let Some(req) = next {
            match req {
                Request::Read(addr, reply) => {
                    let _ = reply.send(model.read(addr));
                }
                Request::Write(addr, value, reply) => {
                    let _ = reply.send(model.write(addr, value));
                }
                Request::Fault(f) => model.inject(f),
            }
            next = rx.try_recv().ok();
        }
        if !model.quiet() {
            model.run(CHUNK);
        }
        cycles.store(model.cycles(), Ordering::Release);
        let now: Vec<u64> = (0..nq).map(|q| model.irq_count(q)).collect();
        if now != last {
            if let Ok(mut c) = irqs.counts.lock() {
                c.clone_from(&now);
            }
            irqs.cond.notify_all();
            last = now;
        }
    }
}
