//! ECDSA P-256 verification on a BPU: concurrent calls are pooled into ECDSA_P256_VERIFY batch
//! commands, spread over the engine instances, and answered from the result bitmaps.
//!
//! A thread of its own takes every call waiting, copies their 160-byte records into one DMA
//! buffer per command (at most `ECDSA_MAX_BATCH` records, about equal shares per instance: an
//! engine runs one command at a time, so fewer, larger commands waste less at each command's
//! tail), and submits them with one doorbell. Completions run on the driver's reaper thread.

use crate::crypto::{check, clone_err, gather};
use crate::ecdsa::VerifyRequest;
use crate::{Error, Result};
use bpu_driver::regs::ECDSA_MAX_BATCH;
use bpu_driver::{Command, Completion, Device, DmaBuf, EngineType, Submission};
use parking_lot::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// Most calls pooled into one doorbell.
const MAX_JOBS: usize = 1024;

struct Job {
    reqs: Vec<VerifyRequest>,
    reply: oneshot::Sender<Result<Vec<bool>>>,
}

/// Verdicts of one call being filled in by one or more commands.
struct JobState {
    verdicts: Vec<bool>,
    error: Option<bpu_driver::Error>,
    reply: Option<oneshot::Sender<Result<Vec<bool>>>>,
    remaining: usize,
}

impl JobState {
    /// One command's part of this call is in (`Err` fails the whole call).
    fn settle(&mut self, r: std::result::Result<Vec<(usize, bool)>, bpu_driver::Error>) {
        match r {
            Ok(v) => v.into_iter().for_each(|(i, ok)| self.verdicts[i] = ok),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
        self.remaining = self.remaining.saturating_sub(1);
        if self.remaining == 0 {
            if let Some(reply) = self.reply.take() {
                let _ = reply.send(match self.error.take() {
                    Some(e) => Err(Error::Device(e)),
                    None => Ok(std::mem::take(&mut self.verdicts)),
                });
            }
        }
    }
}

/// The verification front end of a BPU backend.
pub(crate) struct BpuVerifier {
    tx: Option<crossbeam_channel::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for BpuVerifier {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl BpuVerifier {
    /// Starts the pooling thread; `None` when the device has no ECDSA engine.
    pub(crate) fn start(device: &Device) -> Result<Option<BpuVerifier>> {
        let Some(info) = device.engine(EngineType::EcdsaP256) else {
            return Ok(None);
        };
        let instances = usize::from(info.instances.max(1));
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let device = device.clone();
        let thread = std::thread::Builder::new()
            .name("bpu-verify".into())
            .spawn(move || {
                Pool {
                    device,
                    instances,
                    needs_reset: Arc::default(),
                }
                .run(&rx)
            })
            .map_err(|_| Error::Closed)?;
        Ok(Some(BpuVerifier {
            tx: Some(tx),
            thread: Some(thread),
        }))
    }

    /// Verdicts of `reqs`, in order.
    pub(crate) async fn verify(&self, reqs: &[VerifyRequest]) -> Result<Vec<bool>> {
        if reqs.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .as_ref()
            .ok_or(Error::Closed)?
            .send(Job {
                reqs: reqs.to_vec(),
                reply,
            })
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)?
    }
}

struct Pool {
    device: Device,
    instances: usize,
    needs_reset: Arc<AtomicBool>,
}

impl Pool {
    fn run(self, rx: &crossbeam_channel::Receiver<Job>) {
        while let Some(jobs) = gather(rx, MAX_JOBS, &self.device, &self.needs_reset) {
            self.dispatch(jobs);
        }
    }

    fn dispatch(&self, jobs: Vec<Job>) {
        // Every record with the call and index its verdict belongs to.
        let mut items: Vec<Item> = Vec::new();
        for job in jobs {
            let st = Arc::new(Mutex::new(JobState {
                verdicts: vec![false; job.reqs.len()],
                error: None,
                reply: Some(job.reply),
                remaining: 0,
            }));
            items.extend(
                job.reqs
                    .into_iter()
                    .enumerate()
                    .map(|(i, r)| (st.clone(), i, r)),
            );
        }
        let max = ECDSA_MAX_BATCH as usize;
        let commands = items
            .len()
            .div_ceil(max)
            .max(self.instances.min(items.len()));
        let per = items.len().div_ceil(commands).clamp(1, max);
        let mut subs = Vec::new();
        for chunk in items.chunks(per) {
            let runs = runs(chunk);
            for (st, _) in &runs {
                st.lock().remaining += 1;
            }
            match self.buffers(chunk) {
                Ok((records, bitmap)) => subs.push(self.submission(chunk, runs, records, bitmap)),
                Err(e) => {
                    for (st, _) in runs {
                        st.lock()
                            .settle(Err(bpu_driver::Error::Invalid(e.to_string())));
                    }
                }
            }
        }
        if !subs.is_empty() {
            // Failures reach each command's callback.
            let _ = self.device.submit(subs, self.device.timeout());
        }
    }

    /// A command's record table (copied from the calls' requests) and its bitmap buffer.
    fn buffers(&self, chunk: &[Item]) -> bpu_driver::Result<(DmaBuf, DmaBuf)> {
        let mut records = self.device.alloc(160 * chunk.len())?;
        for (k, (_, _, r)) in chunk.iter().enumerate() {
            records.write(160 * k, r.as_bytes())?;
        }
        Ok((records, self.device.alloc(chunk.len().div_ceil(8))?))
    }

    /// One ECDSA_P256_VERIFY over records that may belong to several calls (`runs`: each call's
    /// consecutive records in `chunk`).
    fn submission(
        &self,
        chunk: &[Item],
        runs: Vec<Run>,
        records: DmaBuf,
        bitmap: DmaBuf,
    ) -> Submission {
        let n = chunk.len();
        let bitmap = Arc::new(bitmap);
        let entry = Command::EcdsaVerify {
            records: records.iova(),
            count: n as u32,
            bitmap: bitmap.iova(),
        }
        .entry();
        let index: Vec<usize> = chunk.iter().map(|(_, i, _)| *i).collect();
        let reset = self.needs_reset.clone();
        Submission {
            entry,
            buffers: vec![Arc::new(records), bitmap.clone()],
            done: Box::new(move |r| {
                let bits = outcome(r, &reset, &bitmap, n);
                for (st, range) in runs {
                    let part = match &bits {
                        Ok(b) => Ok(range
                            .map(|j| (index[j], b[j / 8] >> (j % 8) & 1 == 1))
                            .collect()),
                        Err(e) => Err(clone_err(e)),
                    };
                    st.lock().settle(part);
                }
            }),
        }
    }
}

/// A record waiting for a command: its call, its index in the call, the record.
type Item = (Arc<Mutex<JobState>>, usize, VerifyRequest);
/// A call's consecutive records within one command.
type Run = (Arc<Mutex<JobState>>, std::ops::Range<usize>);

fn runs(chunk: &[Item]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for (k, (st, _, _)) in chunk.iter().enumerate() {
        match out.last_mut() {
            Some((last, range)) if Arc::ptr_eq(last, st) => range.end = k + 1,
            _ => out.push((st.clone(), k..k + 1)),
        }
    }
    out
}

/// The bitmap of a finished command, or why there is none. A timeout asks for a device reset.
fn outcome(
    r: bpu_driver::Result<Completion>,
    reset: &AtomicBool,
    bitmap: &DmaBuf,
    n: usize,
) -> bpu_driver::Result<Vec<u8>> {
    check(r, reset)?;
    let mut bits = vec![0u8; n.div_ceil(8)];
    bitmap.read(0, &mut bits)?;
    Ok(bits)
}
