//! Faults: stalled engines, DMA errors on data and on rings, invalid commands. Each gives its
//! typed outcome within its timeout, and the device serves the next commands.

mod common;

use bpu_driver::regs::{global, Field};
use bpu_driver::{hash_descriptor, Command, Device, EngineType, Error, Fault, Iova, Status};
use common::*;
use std::sync::Arc;

fn healthy(d: &Device) {
    let (c, got) = sha(d, b"still alive", 5, None).expect("next command runs");
    assert_eq!(
        (c.status, got),
        (Status::Success, cpu_sha(None, b"still alive"))
    );
}

#[test]
fn a_stalled_engine_times_out_and_reset_recovers() {
    let d = sim("timeout=300");
    d.set_stall(EngineType::Sha256, u32::MAX)
        .expect("stall all");
    match sha(&d, b"stuck", 0, None) {
        Err(Error::Timeout(..)) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    d.reset().expect("reset");
    healthy(&d);
}

#[test]
fn one_stalled_instance_does_not_block_the_others() {
    let d = sim("");
    d.set_stall(EngineType::Sha256, 0b0001)
        .expect("stall instance 0");
    for i in 0..20u8 {
        let (c, got) = sha(&d, &[i; 100], 0, None).expect("served by the other instances");
        assert_eq!((c.status, got), (Status::Success, cpu_sha(None, &[i; 100])));
    }
    d.set_stall(EngineType::Sha256, 0).expect("unstall");
    healthy(&d);
}

#[test]
fn data_dma_errors_complete_with_dma_status() {
    let d = sim("");
    let dst = Arc::new(d.alloc(32).expect("alloc"));
    // A source outside host memory: the read gets an AXI error.
    let bad = Command::Sha256 {
        src: Iova(0x10),
        len: 100,
        dst: dst.iova(),
        prefix: None,
    };
    let c = d
        .execute(bad.entry(), vec![dst.clone()])
        .expect("completes");
    assert_eq!(c.status, Status::DmaRead);
    healthy(&d);
    // A destination outside host memory: the digest write fails.
    let src = dma_with(&d, b"data", 0);
    let bad = Command::Sha256 {
        src: src.iova(),
        len: 4,
        dst: Iova(0x40),
        prefix: None,
    };
    let c = d
        .execute(bad.entry(), vec![src.clone()])
        .expect("completes");
    assert_eq!(c.status, Status::DmaWrite);
    healthy(&d);
    // Injected bus errors: the digest write is the next write after submission.
    d.inject(Fault::FailWrites(1)).expect("inject");
    let (c, _) = sha(&d, b"data", 0, None).expect("completes");
    assert_eq!(c.status, Status::DmaWrite);
    healthy(&d);
}

#[test]
fn a_batch_stops_at_the_failing_message_and_reports_how_far_it_got() {
    let d = sim("");
    let mut data = d.alloc(64).expect("alloc");
    data.write(0, b"good message").expect("write");
    let mut table = d.alloc(48).expect("alloc");
    table
        .write_obj(0, &hash_descriptor(data.iova(), 12))
        .expect("desc");
    table
        .write_obj(16, &hash_descriptor(Iova(0x80), 12))
        .expect("desc");
    table
        .write_obj(32, &hash_descriptor(data.iova(), 4))
        .expect("desc");
    let out = Arc::new(d.alloc(96).expect("alloc"));
    let cmd = Command::Sha256Batch {
        table: table.iova(),
        count: 3,
        dst: out.iova(),
        prefix: None,
    };
    let c = d
        .execute(
            cmd.entry(),
            vec![Arc::new(data), Arc::new(table), out.clone()],
        )
        .expect("completes");
    assert_eq!((c.status, c.result), (Status::DmaRead, 1));
    assert_eq!(&out.to_vec()[..32], &cpu_sha(None, b"good message"));
    healthy(&d);
}

#[test]
fn invalid_commands_get_their_status_without_touching_memory() {
    let d = sim("");
    let mut e = Command::Nop.entry();
    e.opcode = 0x7F;
    assert_eq!(
        d.execute(e, vec![]).expect("completes").status,
        Status::BadOpcode
    );

    let mut e = Command::Sha256 {
        src: Iova(0),
        len: 0,
        dst: Iova(0),
        prefix: None,
    }
    .entry();
    e.flags = 0x80;
    assert_eq!(
        d.execute(e, vec![]).expect("completes").status,
        Status::BadField
    );

    let e = Command::Sha256Batch {
        table: Iova(0),
        count: 0,
        dst: Iova(0),
        prefix: None,
    }
    .entry();
    assert_eq!(
        d.execute(e, vec![]).expect("completes").status,
        Status::BadLength
    );

    let e = Command::MerkleLevel {
        src: Iova(0),
        pairs: 0,
        dst: Iova(0),
    }
    .entry();
    assert_eq!(
        d.execute(e, vec![]).expect("completes").status,
        Status::BadLength
    );

    d.set_enabled(EngineType::Sha256, 0).expect("disable all");
    let e = Command::Sha256 {
        src: Iova(0),
        len: 0,
        dst: Iova(0),
        prefix: None,
    }
    .entry();
    assert_eq!(
        d.execute(e, vec![]).expect("completes").status,
        Status::Disabled
    );
    d.set_enabled(EngineType::Sha256, u32::MAX)
        .expect("enable all");
    healthy(&d);
}

/// A ring DMA fault: the queue stops (the command times out), ERROR records which ring, and a
/// reset restores service.
fn ring_fault_stops_the_queue_until_reset(fault: Fault, bit: Field) {
    let d = sim("timeout=300&queues=1");
    d.inject(fault).expect("inject");
    assert!(matches!(
        d.execute(Command::Nop.entry(), vec![]),
        Err(Error::Timeout(..))
    ));
    let err = d.take_errors().expect("read ERROR");
    assert_ne!(
        bit.get(err),
        0,
        "{fault:?} sets its ERROR bit (ERROR = {err:#x})"
    );
    d.reset().expect("reset");
    healthy(&d);
}

#[test]
fn a_failed_ring_fetch_stops_the_queue_until_reset() {
    // The next DMA read is the fetch of this command's submission entry.
    ring_fault_stops_the_queue_until_reset(Fault::FailReads(1), global::ERROR_SQ_FETCH);
}

#[test]
fn a_failed_completion_write_stops_the_queue_until_reset() {
    // A NOP writes nothing but its completion entry.
    ring_fault_stops_the_queue_until_reset(Fault::FailWrites(1), global::ERROR_CQ_WRITE);
}

#[test]
fn registers_outside_the_map_answer_slverr_and_set_decode() {
    let d = sim("");
    assert!(
        d.transport().read32(0x0FF0).is_err(),
        "unmapped read is a bus error"
    );
    let err = d.take_errors().expect("read ERROR");
    assert_ne!(global::ERROR_DECODE.get(err), 0);
    healthy(&d);
}
