//! The crypto service: SHA-256 of single messages and batches, Merkle roots, and ECDSA P-256
//! verification, on CPU or BPU.
//!
//! On a BPU, callers copy their messages into DMA memory and hand a job to the batcher thread;
//! the batcher takes every job waiting, spreads their messages over a few SHA256_BATCH (or
//! MERKLE_LEVEL) commands, one or two per engine instance, and submits them with one doorbell.
//! Completions run on the driver's reaper thread, which copies digests out and answers callers.

use crate::ecdsa::{cpu_verify, VerifyRequest};
use crate::merkle;
use crate::verify_bpu::BpuVerifier;
use crate::{Error, Result};
use bpu_driver::{hash_descriptor, Command, Completion, Device, DmaBuf, EngineType, Submission};
use parking_lot::Mutex;
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Digest(pub [u8; 32]);

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// Counters of a crypto service (monotonic since it started).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CryptoMetrics {
    /// Calls made.
    pub requests: u64,
    /// Messages hashed (a Merkle level counts its pairs).
    pub messages: u64,
    /// Message bytes hashed.
    pub bytes: u64,
    /// ECDSA signatures verified (valid or not).
    pub signatures: u64,
    /// Device commands issued (BPU backend).
    pub commands: u64,
    /// Doorbell batches submitted (BPU backend).
    pub batches: u64,
    /// Calls waiting for the batcher right now (BPU backend).
    pub queue_depth: u64,
    /// Sum of call latencies in microseconds, for the mean.
    pub latency_us_sum: u64,
    /// Largest call latency in microseconds.
    pub latency_us_max: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    messages: AtomicU64,
    bytes: AtomicU64,
    signatures: AtomicU64,
    commands: AtomicU64,
    batches: AtomicU64,
    queue_depth: AtomicU64,
    latency_us_sum: AtomicU64,
    latency_us_max: AtomicU64,
}

impl Counters {
    fn finish(&self, start: Instant, messages: usize, bytes: usize) {
        let us = start.elapsed().as_micros() as u64;
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.messages.fetch_add(messages as u64, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.latency_us_sum.fetch_add(us, Ordering::Relaxed);
        self.latency_us_max.fetch_max(us, Ordering::Relaxed);
    }
}

/// Inputs at or below this many bytes are hashed inline on the CPU; larger go to rayon.
const CPU_INLINE_BYTES: usize = 64 << 10;
/// Batches of at most this many signatures are verified inline on the CPU (one verification is
/// about 50 µs); larger ones go to rayon.
const CPU_INLINE_VERIFIES: usize = 2;
/// Most message bytes one BPU job carries (larger calls are split), to bound DMA memory use.
const BPU_JOB_BYTES: usize = 8 << 20;
/// Most jobs the batcher takes into one doorbell.
const BPU_MAX_JOBS: usize = 256;

enum Backend {
    /// Software; large inputs run on this pool, or rayon's global pool when `None`.
    Cpu(Option<Arc<rayon::ThreadPool>>),
    Bpu(Bpu),
}

/// SHA-256 and Merkle roots over a CPU or BPU backend. Cheap to clone.
#[derive(Clone)]
pub struct CryptoService {
    backend: Arc<Backend>,
    counters: Arc<Counters>,
}

impl CryptoService {
    /// The software backend on rayon's global thread pool (all cores).
    pub fn cpu() -> CryptoService {
        CryptoService {
            backend: Arc::new(Backend::Cpu(None)),
            counters: Arc::default(),
        }
    }

    /// The software backend on its own pool of `threads` threads (to cap its share of the cores).
    pub fn cpu_with_threads(threads: usize) -> Result<CryptoService> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("bpu-crypto-{i}"))
            .build()
            .map_err(|e| Error::TooLarge(format!("cannot start {threads} crypto threads: {e}")))?;
        Ok(CryptoService {
            backend: Arc::new(Backend::Cpu(Some(Arc::new(pool)))),
            counters: Arc::default(),
        })
    }

    /// A BPU backend on an open device (it must have a SHA-256 engine).
    pub fn bpu(device: Device) -> Result<CryptoService> {
        let counters: Arc<Counters> = Arc::default();
        Ok(CryptoService {
            backend: Arc::new(Backend::Bpu(Bpu::start(device, counters.clone())?)),
            counters,
        })
    }

    /// `cpu`, or a device URI such as `sim://` or `vfio://0000:03:00.0`.
    pub fn open(spec: &str) -> Result<CryptoService> {
        if spec == "cpu" {
            Ok(CryptoService::cpu())
        } else {
            CryptoService::bpu(Device::open(spec)?)
        }
    }

    /// `cpu` or the device's transport description.
    pub fn backend_name(&self) -> String {
        match &*self.backend {
            Backend::Cpu(_) => "cpu".into(),
            Backend::Bpu(b) => b.device.info().transport.clone(),
        }
    }

    /// The device under a BPU backend.
    pub fn device(&self) -> Option<&Device> {
        match &*self.backend {
            Backend::Cpu(_) => None,
            Backend::Bpu(b) => Some(&b.device),
        }
    }

    /// Counters so far.
    pub fn metrics(&self) -> CryptoMetrics {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CryptoMetrics {
            requests: l(&c.requests),
            messages: l(&c.messages),
            bytes: l(&c.bytes),
            signatures: l(&c.signatures),
            commands: l(&c.commands),
            batches: l(&c.batches),
            queue_depth: l(&c.queue_depth),
            latency_us_sum: l(&c.latency_us_sum),
            latency_us_max: l(&c.latency_us_max),
        }
    }

    /// SHA-256 of one message.
    pub async fn sha256(&self, data: &[u8]) -> Result<Digest> {
        let mut v = self.hash_many(&[data], None).await?;
        v.pop().ok_or(Error::Closed)
    }

    /// SHA-256 of each message, in order.
    pub async fn sha256_batch<M: AsRef<[u8]>>(&self, msgs: &[M]) -> Result<Vec<Digest>> {
        self.hash_many(msgs, None).await
    }

    /// RFC 6962 leaf hashes `SHA-256(0x00 || m)` of each message, in order.
    pub async fn leaf_hashes<M: AsRef<[u8]>>(&self, msgs: &[M]) -> Result<Vec<Digest>> {
        self.hash_many(msgs, Some(merkle::LEAF_PREFIX)).await
    }

    /// RFC 6962 Merkle root over leaf hashes (see [`merkle`]).
    pub async fn merkle_root(&self, leaves: &[Digest]) -> Result<Digest> {
        let start = Instant::now();
        let r = match &*self.backend {
            Backend::Cpu(pool) => {
                if leaves.len() * 64 <= CPU_INLINE_BYTES {
                    merkle::root(leaves)
                } else {
                    let owned = leaves.to_vec();
                    on_rayon(pool.as_deref(), move || {
                        let mut level = owned;
                        while level.len() > 1 {
                            let mut up: Vec<Digest> = level
                                .par_chunks_exact(2)
                                .map(|p| merkle::node_hash(&p[0], &p[1]))
                                .collect();
                            if level.len() % 2 == 1 {
                                up.push(level[level.len() - 1]);
                            }
                            level = up;
                        }
                        level.first().copied().unwrap_or_else(|| merkle::root(&[]))
                    })
                    .await?
                }
            }
            Backend::Bpu(b) => {
                let mut level = leaves.to_vec();
                while level.len() > 1 {
                    let pairs = level.len() / 2;
                    let mut up = b.level(&level[..2 * pairs]).await?;
                    if level.len() % 2 == 1 {
                        up.push(level[level.len() - 1]);
                    }
                    level = up;
                }
                level.first().copied().unwrap_or_else(|| merkle::root(&[]))
            }
        };
        self.counters
            .finish(start, leaves.len().saturating_sub(1), leaves.len() * 32);
        Ok(r)
    }

    /// ECDSA P-256 verdict of one request (see [`crate::ecdsa`] for the rules).
    pub async fn verify(&self, req: &VerifyRequest) -> Result<bool> {
        let mut v = self.verify_batch(std::slice::from_ref(req)).await?;
        v.pop().ok_or(Error::Closed)
    }

    /// ECDSA P-256 verdicts of each request, in order. A malformed request (r = 0, Q off the
    /// curve, …) is a `false` verdict, not an error.
    pub async fn verify_batch(&self, reqs: &[VerifyRequest]) -> Result<Vec<bool>> {
        let start = Instant::now();
        let out = match &*self.backend {
            Backend::Cpu(pool) => {
                if reqs.len() <= CPU_INLINE_VERIFIES {
                    reqs.iter().map(cpu_verify).collect()
                } else {
                    let owned = reqs.to_vec();
                    on_rayon(pool.as_deref(), move || {
                        owned.par_iter().map(cpu_verify).collect()
                    })
                    .await?
                }
            }
            Backend::Bpu(b) => b.verify(reqs).await?,
        };
        self.counters
            .signatures
            .fetch_add(reqs.len() as u64, Ordering::Relaxed);
        self.counters.finish(start, 0, 0);
        Ok(out)
    }

    async fn hash_many<M: AsRef<[u8]>>(
        &self,
        msgs: &[M],
        prefix: Option<u8>,
    ) -> Result<Vec<Digest>> {
        let start = Instant::now();
        let bytes: usize = msgs.iter().map(|m| m.as_ref().len()).sum();
        let out = match &*self.backend {
            Backend::Cpu(pool) => {
                if bytes <= CPU_INLINE_BYTES && msgs.len() <= 64 {
                    msgs.iter().map(|m| cpu_hash(prefix, m.as_ref())).collect()
                } else {
                    let owned: Vec<Vec<u8>> = msgs.iter().map(|m| m.as_ref().to_vec()).collect();
                    on_rayon(pool.as_deref(), move || {
                        owned.par_iter().map(|m| cpu_hash(prefix, m)).collect()
                    })
                    .await?
                }
            }
            Backend::Bpu(b) => {
                let mut out = Vec::with_capacity(msgs.len());
                let mut i = 0;
                while i < msgs.len() {
                    // Split so that no job holds more than BPU_JOB_BYTES of DMA memory.
                    let mut j = i;
                    let mut sz = 0;
                    while j < msgs.len() && (j == i || sz + msgs[j].as_ref().len() <= BPU_JOB_BYTES)
                    {
                        sz += msgs[j].as_ref().len();
                        j += 1;
                    }
                    out.extend(b.hash(&msgs[i..j], prefix).await?);
                    i = j;
                }
                out
            }
        };
        self.counters.finish(start, msgs.len(), bytes);
        Ok(out)
    }
}

fn cpu_hash(prefix: Option<u8>, m: &[u8]) -> Digest {
    let mut h = Sha256::new();
    if let Some(p) = prefix {
        h.update([p]);
    }
    h.update(m);
    Digest(h.finalize().into())
}

/// Runs CPU-heavy work on a rayon pool (its parallel iterators stay on that pool) and awaits it
/// without blocking the async executor.
async fn on_rayon<T: Send + 'static>(
    pool: Option<&rayon::ThreadPool>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let (tx, rx) = oneshot::channel();
    let job = move || {
        let _ = tx.send(f());
    };
    match pool {
        Some(p) => p.spawn(job),
        None => rayon::spawn(job),
    }
    rx.await.map_err(|_| Error::Closed)
}

// -------------------------------------------------------------------------------------------------
// BPU backend

/// What one job asks for.
enum Work {
    /// Hash `spans` (offset, len) of `data`, each with the optional prefix byte.
    Hash {
        data: Arc<DmaBuf>,
        spans: Vec<(usize, u32)>,
        prefix: Option<u8>,
    },
    /// Merkle level: `pairs` consecutive 64-byte pairs of `data`.
    Level { data: Arc<DmaBuf>, pairs: usize },
}

struct Job {
    work: Work,
    reply: oneshot::Sender<Result<Vec<Digest>>>,
}

struct Bpu {
    device: Device,
    tx: Option<crossbeam_channel::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// ECDSA verification, when the device has the engine.
    verifier: Option<BpuVerifier>,
}

impl Drop for Bpu {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Bpu {
    fn start(device: Device, counters: Arc<Counters>) -> Result<Bpu> {
        let sha = device
            .engine(EngineType::Sha256)
            .ok_or(bpu_driver::Error::NoEngine("SHA256"))?;
        let instances = usize::from(sha.instances.max(1));
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let dev = device.clone();
        let thread = std::thread::Builder::new()
            .name("bpu-crypto".into())
            .spawn(move || {
                Batcher {
                    device: dev,
                    counters,
                    instances,
                    needs_reset: Arc::default(),
                }
                .run(&rx)
            })
            .map_err(|_| Error::Closed)?;
        Ok(Bpu {
            verifier: BpuVerifier::start(&device)?,
            device,
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    async fn send(&self, work: Work) -> Result<Vec<Digest>> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .as_ref()
            .ok_or(Error::Closed)?
            .send(Job { work, reply })
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }

    async fn hash<M: AsRef<[u8]>>(&self, msgs: &[M], prefix: Option<u8>) -> Result<Vec<Digest>> {
        if msgs.is_empty() {
            return Ok(Vec::new());
        }
        let total: usize = msgs.iter().map(|m| m.as_ref().len()).sum();
        let mut data = self.device.alloc(total.max(1))?;
        let mut spans = Vec::with_capacity(msgs.len());
        let mut off = 0;
        for m in msgs {
            let m = m.as_ref();
            let len = u32::try_from(m.len())
                .map_err(|_| Error::TooLarge(format!("message of {} bytes", m.len())))?;
            data.write(off, m)?;
            spans.push((off, len));
            off += m.len();
        }
        self.send(Work::Hash {
            data: Arc::new(data),
            spans,
            prefix,
        })
        .await
    }

    async fn level(&self, nodes: &[Digest]) -> Result<Vec<Digest>> {
        let mut data = self.device.alloc(nodes.len() * 32)?;
        for (i, n) in nodes.iter().enumerate() {
            data.write(32 * i, &n.0)?;
        }
        self.send(Work::Level {
            data: Arc::new(data),
            pairs: nodes.len() / 2,
        })
        .await
    }
}

/// Results of one job being filled in by several commands.
struct JobState {
    results: Vec<Digest>,
    error: Option<bpu_driver::Error>,
    reply: Option<oneshot::Sender<Result<Vec<Digest>>>>,
    /// Commands of this job still outstanding.
    remaining: usize,
}

/// One message of a hash job, waiting to be placed in a batch command.
struct Item {
    job: Arc<Mutex<JobState>>,
    data: Arc<DmaBuf>,
    /// Index of this message's digest in the job's results.
    index: usize,
    offset: usize,
    len: u32,
}

/// One command's share of the work: which job, which result indices, where the digests land.
struct Piece {
    job: Arc<Mutex<JobState>>,
    first: usize,
    count: usize,
}

struct Batcher {
    device: Device,
    counters: Arc<Counters>,
    instances: usize,
    needs_reset: Arc<AtomicBool>,
}

impl Batcher {
    fn run(self, rx: &crossbeam_channel::Receiver<Job>) {
        while let Some(jobs) = gather(rx, BPU_MAX_JOBS, &self.device, &self.needs_reset) {
            self.counters
                .queue_depth
                .store(rx.len() as u64, Ordering::Relaxed);
            self.dispatch(jobs);
        }
    }

    /// Turns jobs into commands (about two per engine instance) and submits them together.
    fn dispatch(&self, jobs: Vec<Job>) {
        let target = (2 * self.instances).max(1);
        let mut subs: Vec<Submission> = Vec::new();
        // Hash jobs are pooled by prefix so their messages share batch commands.
        let mut pools: Vec<(Option<u8>, Vec<Item>)> = Vec::new();
        for job in jobs {
            match job.work {
                Work::Hash {
                    data,
                    spans,
                    prefix,
                } => {
                    let st = Arc::new(Mutex::new(JobState {
                        results: vec![Digest::default(); spans.len()],
                        error: None,
                        reply: Some(job.reply),
                        remaining: 0,
                    }));
                    let pool = match pools.iter_mut().find(|(p, _)| *p == prefix) {
                        Some((_, v)) => v,
                        None => {
                            pools.push((prefix, Vec::new()));
                            &mut pools.last_mut().expect("just pushed").1
                        }
                    };
                    for (index, (offset, len)) in spans.into_iter().enumerate() {
                        pool.push(Item {
                            job: st.clone(),
                            data: data.clone(),
                            index,
                            offset,
                            len,
                        });
                    }
                }
                Work::Level { data, pairs } => {
                    let st = Arc::new(Mutex::new(JobState {
                        results: vec![Digest::default(); pairs],
                        error: None,
                        reply: Some(job.reply),
                        remaining: 0,
                    }));
                    let per = pairs.div_ceil(target).max(1);
                    let mut start = 0;
                    while start < pairs {
                        let n = per.min(pairs - start);
                        match self.level_command(&st, &data, start, n) {
                            Ok(s) => subs.push(s),
                            Err(e) => fail(&st, e),
                        }
                        start += n;
                    }
                }
            }
        }
        for (prefix, items) in pools {
            let total: usize = items.iter().map(|it| it.len as usize + 64).sum();
            let per = total.div_ceil(target).max(1);
            let mut chunk = Vec::new();
            let mut size = 0;
            let mut items = items.into_iter().peekable();
            while let Some(it) = items.next() {
                size += it.len as usize + 64;
                chunk.push(it);
                if size >= per || items.peek().is_none() {
                    let taken = std::mem::take(&mut chunk);
                    match self.hash_command(&taken, prefix) {
                        Ok(s) => subs.push(s),
                        Err(e) => {
                            for it in &taken {
                                fail(&it.job, bpu_driver::Error::Invalid(e.to_string()));
                            }
                        }
                    }
                    size = 0;
                }
            }
        }
        if subs.is_empty() {
            return;
        }
        self.counters
            .commands
            .fetch_add(subs.len() as u64, Ordering::Relaxed);
        self.counters.batches.fetch_add(1, Ordering::Relaxed);
        // Failures reach each command's callback; nothing more to do with the count here.
        let _ = self.device.submit(subs, self.device.timeout());
    }

    /// One SHA256_BATCH over messages that may belong to several jobs.
    fn hash_command(&self, items: &[Item], prefix: Option<u8>) -> bpu_driver::Result<Submission> {
        let n = items.len();
        let mut table = self.device.alloc(16 * n)?;
        for (k, it) in items.iter().enumerate() {
            table.write_obj(
                16 * k,
                &hash_descriptor(it.data.iova_at(it.offset)?, it.len),
            )?;
        }
        let out = Arc::new(self.device.alloc(32 * n)?);
        let entry = Command::Sha256Batch {
            table: table.iova(),
            count: n as u32,
            dst: out.iova(),
            prefix,
        }
        .entry();
        // Where each digest goes: (job, result index).
        let targets: Vec<(Arc<Mutex<JobState>>, usize)> =
            items.iter().map(|it| (it.job.clone(), it.index)).collect();
        for (job, _) in &targets {
            job.lock().remaining += 1;
        }
        let mut buffers: Vec<Arc<DmaBuf>> = items.iter().map(|it| it.data.clone()).collect();
        buffers.dedup_by(|a, b| Arc::ptr_eq(a, b));
        buffers.push(Arc::new(table));
        buffers.push(out.clone());
        let reset = self.needs_reset.clone();
        Ok(Submission {
            entry,
            buffers,
            done: Box::new(move |r| {
                let r = check(r, &reset);
                for (k, (job, idx)) in targets.iter().enumerate() {
                    let d = r
                        .as_ref()
                        .map_err(clone_err)
                        .and_then(|_| read_digest(&out, k));
                    deliver(job, *idx, 1, d.map(|d| vec![d]));
                }
            }),
        })
    }

    /// One MERKLE_LEVEL over `n` pairs of a level job, starting at pair `start`.
    fn level_command(
        &self,
        job: &Arc<Mutex<JobState>>,
        data: &Arc<DmaBuf>,
        start: usize,
        n: usize,
    ) -> bpu_driver::Result<Submission> {
        let out = Arc::new(self.device.alloc(32 * n)?);
        let entry = Command::MerkleLevel {
            src: data.iova_at(64 * start)?,
            pairs: n as u32,
            dst: out.iova(),
        }
        .entry();
        job.lock().remaining += 1;
        let piece = Piece {
            job: job.clone(),
            first: start,
            count: n,
        };
        let reset = self.needs_reset.clone();
        Ok(Submission {
            entry,
            buffers: vec![data.clone(), out.clone()],
            done: Box::new(move |r| {
                let r = check(r, &reset);
                let d = r.and_then(|_| (0..piece.count).map(|k| read_digest(&out, k)).collect());
                deliver(&piece.job, piece.first, piece.count, d);
            }),
        })
    }
}

/// The loop step of a batching thread: reset the device if a command timed out, then wait for
/// a job and take every job already waiting (at most `max`). `None` once every sender is gone.
pub(crate) fn gather<J>(
    rx: &crossbeam_channel::Receiver<J>,
    max: usize,
    device: &Device,
    needs_reset: &AtomicBool,
) -> Option<Vec<J>> {
    loop {
        if needs_reset.swap(false, Ordering::AcqRel) {
            tracing::warn!("a BPU command timed out; resetting the device");
            if let Err(e) = device.reset() {
                tracing::error!(error = %e, "device reset failed");
            }
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(first) => {
                let mut jobs = vec![first];
                while jobs.len() < max {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                return Some(jobs);
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return None,
        }
    }
}

/// A completion's outcome as a result; a timeout also asks the batcher to reset the device.
pub(crate) fn check(
    r: bpu_driver::Result<Completion>,
    reset: &AtomicBool,
) -> bpu_driver::Result<Completion> {
    match r {
        Ok(c) => c.ok(),
        Err(e) => {
            if matches!(e, bpu_driver::Error::Timeout(..)) {
                reset.store(true, Ordering::Release);
            }
            Err(e)
        }
    }
}

pub(crate) fn clone_err(e: &bpu_driver::Error) -> bpu_driver::Error {
    match e {
        bpu_driver::Error::Status(s) => bpu_driver::Error::Status(*s),
        bpu_driver::Error::Timeout(d, w) => bpu_driver::Error::Timeout(*d, w),
        other => bpu_driver::Error::Invalid(other.to_string()),
    }
}

fn read_digest(out: &DmaBuf, k: usize) -> bpu_driver::Result<Digest> {
    let mut d = [0u8; 32];
    out.read(32 * k, &mut d)?;
    Ok(Digest(d))
}

/// Records `count` results (or an error) of a job starting at `first`; answers the caller once
/// every command of the job is in.
fn deliver(job: &Mutex<JobState>, first: usize, count: usize, r: bpu_driver::Result<Vec<Digest>>) {
    let mut st = job.lock();
    match r {
        Ok(ds) => st.results[first..first + count].copy_from_slice(&ds),
        Err(e) => {
            if st.error.is_none() {
                st.error = Some(e);
            }
        }
    }
    st.remaining = st.remaining.saturating_sub(1);
    if st.remaining == 0 {
        if let Some(reply) = st.reply.take() {
            let out = match st.error.take() {
                Some(e) => Err(Error::Device(e)),
                None => Ok(std::mem::take(&mut st.results)),
            };
            let _ = reply.send(out);
        }
    }
}

fn fail(job: &Mutex<JobState>, e: bpu_driver::Error) {
    let mut st = job.lock();
    st.error.get_or_insert(e);
    if st.remaining == 0 {
        if let Some(reply) = st.reply.take() {
            let e = st.error.take().map(Error::Device).unwrap_or(Error::Closed);
            let _ = reply.send(Err(e));
        }
    }
}

// -------------------------------------------------------------------------------------------------
// BPU backend: ECDSA P-256 verification (see `verify_bpu`)

impl Bpu {
    /// Verdicts of `reqs` on the device's ECDSA engine.
    async fn verify(&self, reqs: &[VerifyRequest]) -> Result<Vec<bool>> {
        match &self.verifier {
            Some(v) => v.verify(reqs).await,
            None => Err(Error::Unsupported(
                "this device has no ECDSA P-256 engine; use --device cpu or a BPU build with one"
                    .into(),
            )),
        }
    }
}
