//! A BPU device: probe, soft reset, engine discovery, queue pairs and the completion reaper.

use crate::dma::DmaBuf;
use crate::error::{Error, Result};
use crate::queue::{Completion, QueueConfig, QueuePair, Submission};
use crate::regs::{self, engine, global, EngineType, Status, SubmissionEntry};
use crate::transport::{sim::SimTransport, Fault, Transport};
use crate::uri::{DeviceUri, Target};
use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One engine type as its descriptor describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    /// Known type, if this driver knows the code.
    pub kind: Option<EngineType>,
    /// Raw type code.
    pub type_code: u16,
    /// Engine revision.
    pub version: u16,
    /// Instances present.
    pub instances: u8,
    /// Opcodes served: `first .. first + count`.
    pub opcodes: (u8, u8),
    /// Offset of the descriptor in BAR0.
    pub offset: u32,
}

impl EngineInfo {
    /// Display name of the engine type.
    pub fn name(&self) -> String {
        match self.kind {
            Some(k) => k.name().to_ascii_lowercase(),
            None => format!("unknown-{:#06x}", self.type_code),
        }
    }
}

/// What probing found.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    /// How the device was reached.
    pub transport: String,
    /// Register-map version (major, minor).
    pub version: (u16, u16),
    /// BUILD_ID register.
    pub build_id: u32,
    /// Queue pairs the device has.
    pub queues: u32,
    /// DMA bus width in bytes.
    pub dma_bytes: u32,
    /// Largest ring, log2 entries.
    pub max_queue_log2: u32,
    /// Engines, in descriptor order.
    pub engines: Vec<EngineInfo>,
}

struct Inner {
    t: Arc<dyn Transport>,
    info: DeviceInfo,
    uri: DeviceUri,
    queues: Vec<Arc<QueuePair>>,
    next_q: AtomicUsize,
    /// Submitters and the reaper hold it shared; a reset holds it exclusively.
    gate: RwLock<()>,
    stop: AtomicBool,
    irq: bool,
}

/// An open BPU. Cheap to clone; the reaper thread stops when the last clone is dropped.
#[derive(Clone)]
pub struct Device {
    inner: Arc<Inner>,
    _reaper: Arc<ReaperHandle>,
}

struct ReaperHandle {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for ReaperHandle {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

/// How long a soft reset may take before the device is declared hung.
const RESET_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest sleep of the reaper between looks at the rings in interrupt mode (lost interrupts).
const IRQ_POLL: Duration = Duration::from_millis(2);

impl Device {
    /// Opens the device a URI names, resets it and brings its queues up.
    pub fn open(uri: &str) -> Result<Device> {
        let uri = DeviceUri::parse(uri)?;
        let t: Arc<dyn Transport> = match &uri.target {
            Target::Sim => Arc::new(SimTransport::start(&bpu_sim::Config {
                mem_bytes: uri.mem_bytes,
                mem_latency: uri.mem_latency,
            })?),
            #[cfg(target_os = "linux")]
            Target::Vfio(bdf) => Arc::new(crate::transport::vfio::VfioTransport::open(
                bdf,
                uri.mem_bytes,
            )?),
            #[cfg(not(target_os = "linux"))]
            Target::Vfio(_) => return Err(Error::Unsupported("VFIO outside Linux")),
        };
        Device::with_transport(t, uri)
    }

    /// Probes, resets and sets up a device behind an existing transport.
    pub fn with_transport(t: Arc<dyn Transport>, uri: DeviceUri) -> Result<Device> {
        let info = probe(t.as_ref())?;
        let want = uri.queues.unwrap_or(4).clamp(1, info.queues.max(1));
        let mut qcfg = uri.queue;
        qcfg.sq_log2 = qcfg.sq_log2.min(info.max_queue_log2 as u8);
        qcfg.cq_log2 = qcfg.cq_log2.min(info.max_queue_log2 as u8);
        let irq = qcfg.irq && t.irq_vectors() >= want;
        let (qbase, qstride) = queue_layout(t.as_ref())?;
        let queues = (0..want)
            .map(|q| QueuePair::new(t.as_ref(), q as u16, qbase + q * qstride, qcfg).map(Arc::new))
            .collect::<Result<Vec<_>>>()?;
        let inner = Arc::new(Inner {
            t,
            info,
            uri,
            queues,
            next_q: AtomicUsize::new(0),
            gate: RwLock::new(()),
            stop: AtomicBool::new(false),
            irq,
        });
        inner.hard_restart()?;
        let reaper = Arc::new(ReaperHandle {
            inner: inner.clone(),
            thread: Mutex::new(None),
        });
        let r_inner = inner.clone();
        let thread = std::thread::Builder::new()
            .name("bpu-reaper".into())
            .spawn(move || reaper_loop(&r_inner))
            .map_err(|_| Error::Closed)?;
        *reaper.thread.lock() = Some(thread);
        Ok(Device {
            inner,
            _reaper: reaper,
        })
    }

    /// What probing found.
    pub fn info(&self) -> &DeviceInfo {
        &self.inner.info
    }

    /// The engine of a type, if present.
    pub fn engine(&self, kind: EngineType) -> Option<&EngineInfo> {
        self.inner
            .info
            .engines
            .iter()
            .find(|e| e.kind == Some(kind))
    }

    /// Default time a command may take before its submitter gets a timeout.
    pub fn timeout(&self) -> Duration {
        self.inner.uri.timeout
    }

    /// Whether completions arrive by interrupt (false: the reaper polls).
    pub fn uses_interrupts(&self) -> bool {
        self.inner.irq
    }

    /// The transport underneath (for fault injection and cycle counts in tests and benchmarks).
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.inner.t
    }

    /// Allocates a zeroed DMA buffer.
    pub fn alloc(&self, len: usize) -> Result<DmaBuf> {
        self.inner.t.alloc_dma(len)
    }

    /// Queue pairs in use.
    pub fn queues(&self) -> &[Arc<QueuePair>] {
        &self.inner.queues
    }

    /// Submits commands on one queue (round-robin over queues per call), one doorbell per batch.
    pub fn submit(&self, subs: Vec<Submission>, timeout: Duration) -> Result<usize> {
        let q = self.inner.next_q.fetch_add(1, Ordering::Relaxed) % self.inner.queues.len();
        self.submit_on(q, subs, timeout)
    }

    /// Submits commands on queue `q`.
    pub fn submit_on(&self, q: usize, subs: Vec<Submission>, timeout: Duration) -> Result<usize> {
        let _g = self.inner.gate.read();
        let queue = self
            .inner
            .queues
            .get(q)
            .ok_or_else(|| Error::Invalid(format!("no queue {q}")))?;
        queue.submit(self.inner.t.as_ref(), subs, timeout)
    }

    /// Runs one command and waits for it (up to the device timeout).
    pub fn execute(&self, entry: SubmissionEntry, buffers: Vec<Arc<DmaBuf>>) -> Result<Completion> {
        self.execute_on(None, entry, buffers)
    }

    /// Runs one command on a given queue (or the next one) and waits for it.
    pub fn execute_on(
        &self,
        q: Option<usize>,
        entry: SubmissionEntry,
        buffers: Vec<Arc<DmaBuf>>,
    ) -> Result<Completion> {
        self.execute_within(q, entry, buffers, self.inner.uri.timeout)
    }

    /// Runs one command and waits at most `timeout` for it (instead of the device default).
    pub fn execute_within(
        &self,
        q: Option<usize>,
        entry: SubmissionEntry,
        buffers: Vec<Arc<DmaBuf>>,
        timeout: Duration,
    ) -> Result<Completion> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let sub = Submission {
            entry,
            buffers,
            done: Box::new(move |r| {
                let _ = tx.send(r);
            }),
        };
        match q {
            Some(q) => self.submit_on(q, vec![sub], timeout)?,
            None => self.submit(vec![sub], timeout)?,
        };
        // The reaper answers every command by its deadline; the margin covers a reaper pass.
        match rx.recv_timeout(timeout + Duration::from_secs(1)) {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(Error::Timeout(..))) | Err(_) => {
                Err(Error::Timeout(timeout, "a command's completion"))
            }
            Ok(Err(e)) => Err(e),
        }
    }

    /// Soft-resets the device: in-flight commands complete with ABORTED, every queue starts
    /// empty, engine masks and fault injection return to their URI defaults.
    pub fn reset(&self) -> Result<()> {
        let aborted = {
            let _g = self.inner.gate.write();
            self.inner.restart()?
        };
        let n = aborted.len();
        for cb in aborted {
            cb(Ok(Completion {
                status: Status::Aborted,
                result: 0,
                queue: 0,
                seen_cycles: 0,
            }));
        }
        if n > 0 {
            tracing::info!(aborted = n, "device reset aborted commands in flight");
        }
        Ok(())
    }

    /// The device's cycle counter (CYCLES_LO/HI).
    pub fn cycles(&self) -> Result<u64> {
        let lo = self.inner.t.read32(global::CYCLES_LO)?;
        let hi = self.inner.t.read32(global::CYCLES_HI)?;
        Ok(u64::from(hi) << 32 | u64::from(lo))
    }

    /// Commands completed and instance-cycles spent by an engine since reset.
    pub fn engine_stats(&self, kind: EngineType) -> Result<(u32, u32)> {
        let e = self.engine(kind).ok_or(Error::NoEngine(kind.name()))?;
        Ok((
            self.inner.t.read32(e.offset + engine::OPS)?,
            self.inner.t.read32(e.offset + engine::BUSY_CYCLES)?,
        ))
    }

    /// Sets the instance mask of an engine (bit i: instance i takes commands).
    pub fn set_enabled(&self, kind: EngineType, mask: u32) -> Result<()> {
        let e = self.engine(kind).ok_or(Error::NoEngine(kind.name()))?;
        self.inner.t.write32(e.offset + engine::ENABLE, mask)
    }

    /// Fault injection: freezes the instances in `mask` until cleared or reset.
    pub fn set_stall(&self, kind: EngineType, mask: u32) -> Result<()> {
        let e = self.engine(kind).ok_or(Error::NoEngine(kind.name()))?;
        self.inner.t.write32(e.offset + engine::STALL, mask)
    }

    /// Injects a fault in the transport (simulation only).
    pub fn inject(&self, fault: Fault) -> Result<()> {
        self.inner.t.inject(fault)
    }

    /// Reads and clears the global ERROR register.
    pub fn take_errors(&self) -> Result<u32> {
        let e = self.inner.t.read32(global::ERROR)?;
        if e != 0 {
            self.inner.t.write32(global::ERROR, e)?;
        }
        Ok(e)
    }
}

impl Inner {
    /// First bring-up: reset, then configure.
    fn hard_restart(&self) -> Result<()> {
        let _g = self.gate.write();
        let aborted = self.restart()?;
        debug_assert!(aborted.is_empty());
        Ok(())
    }

    /// Soft reset and reconfiguration; returns the callbacks of aborted commands (run them
    /// after releasing the gate).
    fn restart(&self) -> Result<Vec<crate::queue::Callback>> {
        let t = self.t.as_ref();
        t.write32(global::CTRL, global::CTRL_SOFT_RESET.set(1))?;
        let start = Instant::now();
        while global::STATUS_RESET_BUSY.get(t.read32(global::STATUS)?) == 1 {
            if start.elapsed() > RESET_TIMEOUT {
                return Err(Error::Timeout(RESET_TIMEOUT, "the soft reset to finish"));
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        let mut aborted = Vec::new();
        for q in &self.queues {
            aborted.extend(q.abort_all());
            q.enable(t, self.irq)?;
        }
        for (kind, n) in [
            (EngineType::Sha256, self.uri.crypto),
            (EngineType::EcdsaP256, self.uri.ecdsa),
        ] {
            let (Some(n), Some(e)) = (n, self.info.engines.iter().find(|e| e.kind == Some(kind)))
            else {
                continue;
            };
            let mask = if n >= 32 { u32::MAX } else { (1u32 << n) - 1 };
            t.write32(e.offset + engine::ENABLE, mask)?;
        }
        t.write32(global::CTRL, global::CTRL_ENABLE.set(1))?;
        Ok(aborted)
    }
}

fn queue_layout(t: &dyn Transport) -> Result<(u32, u32)> {
    let l = t.read32(global::QUEUE_LAYOUT)?;
    Ok((
        global::QUEUE_LAYOUT_BASE.get(l),
        global::QUEUE_LAYOUT_STRIDE.get(l),
    ))
}

/// Reads the ID block and walks the engine list.
pub fn probe(t: &dyn Transport) -> Result<DeviceInfo> {
    let magic = t.read32(global::MAGIC)?;
    if magic != regs::MAGIC {
        return Err(Error::NotABpu(t.describe(), magic));
    }
    let v = t.read32(global::VERSION)?;
    let (major, minor) = (
        global::VERSION_MAJOR.get(v) as u16,
        global::VERSION_MINOR.get(v) as u16,
    );
    if major != regs::VERSION_MAJOR {
        return Err(Error::VersionMismatch {
            found_major: major,
            found_minor: minor,
            want_major: regs::VERSION_MAJOR,
        });
    }
    let caps = t.read32(global::CAPS)?;
    let mut engines = Vec::new();
    let mut off = t.read32(global::ENGINE_LIST)?;
    // The list is bounded by the descriptor window, so a corrupt NEXT cannot loop forever.
    while off != 0 && engines.len() < engine::COUNT as usize {
        let id = t.read32(off + engine::ID)?;
        let shape = t.read32(off + engine::SHAPE)?;
        let ops = t.read32(off + engine::OPCODES)?;
        let type_code = engine::ID_TYPE.get(id) as u16;
        engines.push(EngineInfo {
            kind: EngineType::from_code(type_code),
            type_code,
            version: engine::ID_VERSION.get(id) as u16,
            instances: engine::SHAPE_INSTANCES.get(shape) as u8,
            opcodes: (
                engine::OPCODES_FIRST.get(ops) as u8,
                engine::OPCODES_COUNT.get(ops) as u8,
            ),
            offset: off,
        });
        off = engine::SHAPE_NEXT.get(shape);
    }
    Ok(DeviceInfo {
        transport: t.describe(),
        version: (major, minor),
        build_id: t.read32(global::BUILD_ID)?,
        queues: global::CAPS_QUEUES.get(caps),
        dma_bytes: global::CAPS_DMA_BYTES.get(caps),
        max_queue_log2: global::CAPS_MAX_QUEUE_LOG2.get(caps),
        engines,
    })
}

/// Takes completions off every queue: after interrupts, or by polling.
fn reaper_loop(inner: &Inner) {
    let mut idle_rounds = 0u32;
    while !inner.stop.load(Ordering::Acquire) {
        if inner.irq {
            if let Err(e) = inner.t.wait_irq(IRQ_POLL) {
                tracing::warn!(error = %e, "waiting for interrupts failed; polling");
                std::thread::sleep(IRQ_POLL);
            }
        } else if idle_rounds > 64 {
            std::thread::sleep(Duration::from_micros(20));
        } else {
            std::thread::yield_now();
        }
        let _g = inner.gate.read();
        let cycles = inner.t.cycles().unwrap_or(0);
        let mut taken = 0;
        for q in &inner.queues {
            match q.reap(inner.t.as_ref(), cycles) {
                Ok(n) => taken += n,
                Err(e) => tracing::warn!(queue = q.id(), error = %e, "reaping failed"),
            }
        }
        idle_rounds = if taken > 0 {
            0
        } else {
            idle_rounds.saturating_add(1)
        };
        if taken == 0 && idle_rounds % 256 == 255 {
            check_faults(inner);
        }
    }
}

/// Marks queues the device stopped after ring DMA errors, so submitters fail fast.
fn check_faults(inner: &Inner) {
    let t = inner.t.as_ref();
    let Ok(err) = t.read32(global::ERROR) else {
        return;
    };
    if global::ERROR_SQ_FETCH.get(err) == 0 && global::ERROR_CQ_WRITE.get(err) == 0 {
        return;
    }
    for q in &inner.queues {
        let base = queue_base(inner, q.id());
        if let Ok(s) = t.read32(base + regs::queue::STATUS) {
            if regs::queue::STATUS_FAULT.get(s) == 1 {
                tracing::error!(queue = q.id(), "queue stopped by a DMA error on its rings");
                q.set_faulted();
            }
        }
    }
}

fn queue_base(inner: &Inner, q: u16) -> u32 {
    let (base, stride) =
        queue_layout(inner.t.as_ref()).unwrap_or((regs::queue::BASE, regs::queue::STRIDE));
    base + u32::from(q) * stride
}

/// Device URIs that can be opened here: the simulator and every device bound to vfio-pci.
pub fn list() -> Vec<String> {
    let mut v = vec!["sim://".to_string()];
    #[cfg(target_os = "linux")]
    v.extend(
        crate::transport::vfio::list_devices()
            .into_iter()
            .map(|b| format!("vfio://{b}")),
    );
    v
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<Device>();
    f::<QueueConfig>();
}
