//! Queue behaviour: ring wrap-around, full rings, concurrent submitters, out-of-order
//! completions matched by command id, interrupt and polling modes, lost interrupts.

mod common;

use bpu_driver::regs::global;
use bpu_driver::{Command, Device, EngineType, Error, Fault, Status};
use common::*;
use std::sync::{mpsc, Arc};
use std::time::Duration;

fn nops(
    d: &Device,
    n: usize,
    tx: &mpsc::Sender<(usize, bpu_driver::Result<bpu_driver::Completion>)>,
) -> Vec<bpu_driver::Submission> {
    let _ = d;
    (0..n)
        .map(|i| tagged(Command::Nop.entry(), vec![], i, tx))
        .collect()
}

#[test]
fn rings_wrap_around_many_times() {
    // 4-entry rings: 3 usable slots, so 200 commands wrap each ring ~50 times and flip the phase.
    let d = sim("depth=4&queues=1");
    for i in 0..200usize {
        let data = vec![i as u8; i % 97];
        let (c, got) = sha(&d, &data, i % 7, None).expect("runs");
        assert_eq!(c.status, Status::Success, "command {i}");
        assert_eq!(got, cpu_sha(None, &data), "command {i}");
    }
}

#[test]
fn a_full_ring_applies_back_pressure_and_everything_completes() {
    let d = sim("depth=4&queues=1");
    let (tx, rx) = mpsc::channel();
    // 300 commands into a ring of 4 in one call: submit waits for space as the device drains.
    let n = d
        .submit(nops(&d, 300, &tx), Duration::from_secs(10))
        .expect("submit");
    assert_eq!(n, 300);
    let mut seen = vec![false; 300];
    for _ in 0..300 {
        let (tag, r) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("completion arrives");
        assert_eq!(r.expect("ok").status, Status::Success);
        assert!(!seen[tag], "command {tag} completed twice");
        seen[tag] = true;
    }
    assert!(seen.iter().all(|s| *s));
}

#[test]
fn a_ring_that_stays_full_times_out_instead_of_hanging() {
    let d = sim("depth=4&queues=1");
    d.set_stall(EngineType::Sha256, u32::MAX).expect("stall");
    let (tx, rx) = mpsc::channel();
    let src = dma_with(&d, b"x", 0);
    let dst = Arc::new(d.alloc(32).expect("alloc"));
    let cmd = Command::Sha256 {
        src: src.iova(),
        len: 1,
        dst: dst.iova(),
        prefix: None,
    };
    // The engines never finish, so after the ring and the engines fill up, submit must give up.
    let subs = (0..32)
        .map(|i| tagged(cmd.entry(), vec![src.clone(), dst.clone()], i, &tx))
        .collect();
    match d.submit(subs, Duration::from_millis(300)) {
        Err(Error::Timeout(..)) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    // Every command hears back: a timeout, or an abort when the reset below clears the device.
    d.reset().expect("reset");
    for _ in 0..32 {
        let (_, r) = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("every callback runs");
        match r {
            Err(Error::Timeout(..)) => {}
            Ok(c) => assert_eq!(c.status, Status::Aborted),
            Err(e) => panic!("unexpected {e}"),
        }
    }
    let (c, _) = sha(&d, b"after", 0, None).expect("device works after reset");
    assert_eq!(c.status, Status::Success);
}

#[test]
fn many_concurrent_submitters_get_their_own_results() {
    let d = sim("");
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let d = d.clone();
            std::thread::spawn(move || {
                for i in 0..60usize {
                    let data: Vec<u8> = (0..(t * 131 + i * 17) % 900)
                        .map(|k| (k ^ t ^ i) as u8)
                        .collect();
                    let (c, got) = sha(&d, &data, i % 5, None).expect("runs");
                    assert_eq!(c.status, Status::Success);
                    assert_eq!(got, cpu_sha(None, &data), "thread {t} command {i}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("submitter thread");
    }
}

#[test]
fn completions_out_of_submission_order_are_matched_by_command_id() {
    let d = sim("queues=1");
    let (tx, rx) = mpsc::channel();
    let long = vec![0xabu8; 256 << 10];
    let short = b"short".to_vec();
    let mut subs = Vec::new();
    let mut outs = Vec::new();
    for (tag, data) in [(0usize, &long), (1, &short)] {
        let src = dma_with(&d, data, 0);
        let dst = Arc::new(d.alloc(32).expect("alloc"));
        let cmd = Command::Sha256 {
            src: src.iova(),
            len: data.len() as u32,
            dst: dst.iova(),
            prefix: None,
        };
        subs.push(tagged(cmd.entry(), vec![src, dst.clone()], tag, &tx));
        outs.push(dst);
    }
    d.submit(subs, Duration::from_secs(10)).expect("submit");
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("first completion");
    let second = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("second completion");
    assert_eq!(
        (first.0, second.0),
        (1, 0),
        "the short hash, submitted second, completes first"
    );
    assert_eq!(first.1.expect("ok").status, Status::Success);
    assert_eq!(second.1.expect("ok").status, Status::Success);
    assert_eq!(outs[0].to_vec(), cpu_sha(None, &long));
    assert_eq!(outs[1].to_vec(), cpu_sha(None, &short));
}

fn workload(d: &Device) {
    let (tx, rx) = mpsc::channel();
    d.submit(nops(d, 50, &tx), Duration::from_secs(5))
        .expect("submit");
    for _ in 0..50 {
        let (_, r) = rx.recv_timeout(Duration::from_secs(5)).expect("completes");
        assert_eq!(r.expect("ok").status, Status::Success);
    }
    let (c, got) = sha(d, b"mode", 3, None).expect("runs");
    assert_eq!((c.status, got), (Status::Success, cpu_sha(None, b"mode")));
}

#[test]
fn interrupt_mode_raises_interrupts_and_polling_mode_does_not() {
    let irq = sim("irq=on");
    assert!(irq.uses_interrupts());
    workload(&irq);
    let status = irq.transport().read32(global::IRQ_STATUS).expect("read");
    assert_ne!(status, 0, "completions raised interrupts");

    let poll = sim("irq=off");
    assert!(!poll.uses_interrupts());
    workload(&poll);
    let status = poll.transport().read32(global::IRQ_STATUS).expect("read");
    assert_eq!(status, 0, "polling mode raises no interrupt");
}

#[test]
fn coalesced_interrupts_still_deliver_every_completion() {
    // One interrupt per 8 completions, or after 500 cycles for a straggler.
    let d = sim("coalesce=8:500");
    workload(&d);
}

#[test]
fn lost_interrupts_are_recovered_by_polling() {
    let d = sim("irq=on&queues=1");
    d.inject(Fault::DropIrqs(20)).expect("inject");
    for i in 0..30u8 {
        let (c, got) = sha(&d, &[i; 40], 0, None).expect("completes despite lost interrupts");
        assert_eq!((c.status, got), (Status::Success, cpu_sha(None, &[i; 40])));
    }
}
