//! Queue pairs: submission and completion rings in DMA memory, command ids, back-pressure, reaping.
//!
//! Submitters fill submission entries under the queue's lock and ring the tail doorbell once per
//! batch. The device's completions are matched to their submitter by command id, in whatever
//! order they arrive; the reaper (see `device.rs`) calls [`QueuePair::reap`] after interrupts or
//! while polling. A command holds its DMA buffers until its completion arrives (even after its
//! submitter gave up on a timeout), so the device never writes into memory that was reused.

use crate::dma::{DmaBuf, Iova};
use crate::error::{Error, Result};
use crate::regs::{queue, CompletionEntry, Status, SubmissionEntry};
use crate::transport::Transport;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A finished command as the device reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// Status code (`Status::Success` when the command did its job).
    pub status: Status,
    /// Opcode-specific result word.
    pub result: u32,
    /// Queue the command went through.
    pub queue: u16,
    /// Device cycle counter when the reaper saw the completion (simulation only; 0 elsewhere).
    pub seen_cycles: u64,
}

impl Completion {
    /// `Ok(self)` when the status is SUCCESS, the status as an error otherwise.
    pub fn ok(self) -> Result<Completion> {
        if self.status == Status::Success {
            Ok(self)
        } else {
            Err(Error::Status(self.status))
        }
    }
}

/// Called once with the command's outcome: the completion, a timeout, or an abort by reset.
/// It runs on the driver's reaper thread: keep it short, and never call `Device::reset` from it
/// (the reaper holds the device's gate; ask another thread to reset instead).
pub type Callback = Box<dyn FnOnce(Result<Completion>) + Send>;

/// One command to submit: the entry (its `cid` is assigned here), the buffers it names, and
/// where its outcome goes.
pub struct Submission {
    pub entry: SubmissionEntry,
    pub buffers: Vec<Arc<DmaBuf>>,
    pub done: Callback,
}

struct Pending {
    deadline: Instant,
    done: Option<Callback>,
    _buffers: Vec<Arc<DmaBuf>>,
}

struct State {
    sq: DmaBuf,
    cq: DmaBuf,
    sq_tail: u16,
    sq_head: u16,
    cq_head: u16,
    phase: bool,
    pending: Vec<Option<Pending>>,
    free_cids: Vec<u16>,
    faulted: bool,
}

/// Ring sizes and timing of a queue pair.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// log2 of submission ring entries.
    pub sq_log2: u8,
    /// log2 of completion ring entries.
    pub cq_log2: u8,
    /// Interrupt after this many completions (1 = every one).
    pub coalesce_count: u8,
    /// ... or after this many device cycles since the oldest unsignalled one (0 = never).
    pub coalesce_cycles: u16,
    /// Use interrupts (false: the reaper polls).
    pub irq: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            sq_log2: 8,
            cq_log2: 8,
            coalesce_count: 1,
            coalesce_cycles: 0,
            irq: true,
        }
    }
}

/// A submission ring, a completion ring and their bookkeeping.
pub struct QueuePair {
    id: u16,
    base: u32,
    sq_iova: Iova,
    cq_iova: Iova,
    sq_size: u16,
    cq_size: u16,
    config: QueueConfig,
    state: Mutex<State>,
    space: Condvar,
}

const SQE: usize = std::mem::size_of::<SubmissionEntry>();
const CQE: usize = std::mem::size_of::<CompletionEntry>();

impl QueuePair {
    /// Allocates rings for queue `id` whose registers start at `base`.
    pub(crate) fn new(
        t: &dyn Transport,
        id: u16,
        base: u32,
        config: QueueConfig,
    ) -> Result<QueuePair> {
        let sq_size = 1u16 << config.sq_log2;
        let cq_size = 1u16 << config.cq_log2;
        let sq = t.alloc_dma(SQE * usize::from(sq_size))?;
        let cq = t.alloc_dma(CQE * usize::from(cq_size))?;
        // At most cq_size - 1 completions can sit in the ring, so that many commands in flight.
        let slots = cq_size - 1;
        Ok(QueuePair {
            id,
            base,
            sq_iova: sq.iova(),
            cq_iova: cq.iova(),
            sq_size,
            cq_size,
            config,
            state: Mutex::new(State {
                sq,
                cq,
                sq_tail: 0,
                sq_head: 0,
                cq_head: 0,
                phase: true,
                pending: (0..slots).map(|_| None).collect(),
                free_cids: (0..slots).rev().collect(),
                faulted: false,
            }),
            space: Condvar::new(),
        })
    }

    /// Queue number.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Programs the queue's registers and enables it (indices start at 0, phase at 1).
    pub(crate) fn enable(&self, t: &dyn Transport, irq: bool) -> Result<()> {
        let r = |off: u32| self.base + off;
        t.write32(r(queue::CTRL), 0)?;
        t.write32(r(queue::SQ_BASE_LO), self.sq_iova.0 as u32)?;
        t.write32(r(queue::SQ_BASE_HI), (self.sq_iova.0 >> 32) as u32)?;
        t.write32(r(queue::CQ_BASE_LO), self.cq_iova.0 as u32)?;
        t.write32(r(queue::CQ_BASE_HI), (self.cq_iova.0 >> 32) as u32)?;
        t.write32(
            r(queue::SIZE),
            queue::SIZE_SQ_LOG2.set(self.config.sq_log2.into())
                | queue::SIZE_CQ_LOG2.set(self.config.cq_log2.into()),
        )?;
        t.write32(
            r(queue::COALESCE),
            queue::COALESCE_COUNT.set(self.config.coalesce_count.into())
                | queue::COALESCE_TIME.set(self.config.coalesce_cycles.into()),
        )?;
        t.write32(
            r(queue::CTRL),
            queue::CTRL_ENABLE.set(1) | queue::CTRL_IRQ_EN.set(u32::from(irq)),
        )?;
        Ok(())
    }

    /// Forgets the rings' contents after a device reset: every command in flight completes with
    /// ABORTED, indices and phase start over. The caller re-enables the queue.
    pub(crate) fn abort_all(&self) -> Vec<Callback> {
        let mut st = self.state.lock();
        let mut out = Vec::new();
        for slot in st.pending.iter_mut() {
            if let Some(mut p) = slot.take() {
                if let Some(done) = p.done.take() {
                    out.push(done);
                }
            }
        }
        let slots = st.pending.len() as u16;
        st.free_cids = (0..slots).rev().collect();
        st.sq_tail = 0;
        st.sq_head = 0;
        st.cq_head = 0;
        st.phase = true;
        st.faulted = false;
        // The device was reset, so nothing writes the ring while it is cleared.
        st.cq.fill(0);
        st.sq.fill(0);
        self.space.notify_all();
        out
    }

    fn free_sq_slots(st: &State, size: u16) -> u16 {
        // One slot stays empty so that head == tail means empty.
        (st.sq_head.wrapping_sub(st.sq_tail).wrapping_sub(1)) & (size - 1)
    }

    /// Submits commands, ringing the doorbell once for as many as fit at a time; waits (up to
    /// `timeout` in total) for ring space or command ids when the queue is full. Each command's
    /// outcome goes to its callback; a command still unanswered `timeout` after submission gets
    /// `Error::Timeout` from the reaper. Returns how many were submitted (all, unless an error
    /// stops it; unsubmitted callbacks get the error too).
    pub fn submit(
        &self,
        t: &dyn Transport,
        subs: Vec<Submission>,
        timeout: Duration,
    ) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        let mut iter = subs.into_iter().peekable();
        let mut submitted = 0;
        while iter.peek().is_some() {
            let mut st = self.state.lock();
            loop {
                if st.faulted {
                    drop(st);
                    for s in iter {
                        (s.done)(Err(Error::QueueFault(self.id)));
                    }
                    return Err(Error::QueueFault(self.id));
                }
                if Self::free_sq_slots(&st, self.sq_size) > 0 && !st.free_cids.is_empty() {
                    break;
                }
                if self.space.wait_until(&mut st, deadline).timed_out() {
                    drop(st);
                    for s in iter {
                        (s.done)(Err(Error::Timeout(
                            timeout,
                            "space in the submission queue",
                        )));
                    }
                    return Err(Error::Timeout(timeout, "space in the submission queue"));
                }
            }
            // Fill as many entries as fit, then ring once.
            let mut wrote = 0;
            while Self::free_sq_slots(&st, self.sq_size) > 0 {
                let Some(cid) = st.free_cids.pop() else { break };
                let Some(mut s) = iter.next() else {
                    st.free_cids.push(cid);
                    break;
                };
                s.entry.cid = cid;
                let slot = usize::from(st.sq_tail) * SQE;
                if let Err(e) = st.sq.write_obj(slot, &s.entry) {
                    st.free_cids.push(cid);
                    (s.done)(Err(e));
                    continue;
                }
                st.pending[usize::from(cid)] = Some(Pending {
                    deadline: Instant::now() + timeout,
                    done: Some(s.done),
                    _buffers: s.buffers,
                });
                st.sq_tail = (st.sq_tail + 1) & (self.sq_size - 1);
                wrote += 1;
            }
            if wrote > 0 {
                // Entries must be in memory before the device can see the new tail.
                fence(Ordering::Release);
                t.write32(self.base + queue::SQ_TAIL, u32::from(st.sq_tail))?;
                submitted += wrote;
            }
        }
        Ok(submitted)
    }

    /// Takes every new completion off the ring, runs its callback, expires overdue commands,
    /// and tells the device how far the host has read. Returns the number of completions taken.
    pub(crate) fn reap(&self, t: &dyn Transport, now_cycles: u64) -> Result<usize> {
        let mut done: Vec<(Callback, Result<Completion>)> = Vec::new();
        let mut taken = 0;
        {
            let mut st = self.state.lock();
            loop {
                let off = usize::from(st.cq_head) * CQE;
                let sp = st.cq.load_u16_acquire(off + 14)?;
                if (sp & 1 == 1) != st.phase {
                    break;
                }
                let e: CompletionEntry = st.cq.read_obj(off)?;
                st.cq_head = (st.cq_head + 1) & (self.cq_size - 1);
                if st.cq_head == 0 {
                    st.phase = !st.phase;
                }
                st.sq_head = e.sq_head & (self.sq_size - 1);
                taken += 1;
                let code = e.status_phase >> 1;
                let outcome = match Status::from_code(code) {
                    Some(status) => Ok(Completion {
                        status,
                        result: e.result,
                        queue: self.id,
                        seen_cycles: now_cycles,
                    }),
                    None => Err(Error::UnknownStatus(code)),
                };
                let cid = usize::from(e.cid);
                match st.pending.get_mut(cid).and_then(Option::take) {
                    Some(mut p) => {
                        if let Some(cb) = p.done.take() {
                            done.push((cb, outcome));
                        }
                        st.free_cids.push(e.cid);
                    }
                    None => tracing::warn!(
                        queue = self.id,
                        cid,
                        "completion for a command not in flight"
                    ),
                }
            }
            // Commands past their deadline: tell the submitter now, keep the slot (and buffers)
            // until the device answers or a reset aborts it.
            let now = Instant::now();
            for p in st.pending.iter_mut().flatten() {
                if p.done.is_some() && now >= p.deadline {
                    if let Some(cb) = p.done.take() {
                        done.push((
                            cb,
                            Err(Error::Timeout(Duration::ZERO, "a command's completion")),
                        ));
                    }
                }
            }
            if taken > 0 {
                t.write32(self.base + queue::CQ_HEAD, u32::from(st.cq_head))?;
                self.space.notify_all();
            }
        }
        for (cb, r) in done {
            cb(r);
        }
        Ok(taken)
    }

    /// Commands submitted and not yet answered by the device.
    pub fn in_flight(&self) -> usize {
        self.state
            .lock()
            .pending
            .iter()
            .filter(|p| p.is_some())
            .count()
    }

    /// Marks the queue as stopped by a device fault: submitters get `QueueFault` until reset.
    pub(crate) fn set_faulted(&self) {
        self.state.lock().faulted = true;
        self.space.notify_all();
    }
}
