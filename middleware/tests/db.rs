//! The group-committing writer on SQLite and PostgreSQL: many concurrent jobs committed in
//! multi-row statements keep each job's all-or-nothing meaning — a taken idempotency key drops
//! its whole job, states of one transaction fold in order, the last balance wins, events get
//! gap-free sequence numbers in commit order.

#[path = "support/postgres.rs"]
mod postgres;

use bpu_gateway::db::{self, Outcome, TxRow, Write};
use std::collections::HashSet;

fn row(i: usize, user: i64, key: &str) -> TxRow {
    TxRow {
        id: format!("tx{i:05}"),
        user_id: user,
        idem_key: key.into(),
        req_hash: vec![i as u8; 32],
        kind: "transfer".into(),
        from_account: Some(1),
        to_account: Some(2),
        to_ledger_id: vec![7; 32],
        amount: i as u64 + 1,
        state: "preconfirmed".into(),
        reason: None,
        ledger_tx: vec![1, 2, 3],
        ledger_tx_id: vec![i as u8; 32],
        attempts: 1,
        height: None,
        created_ms: 1000 + i as i64,
        submitted_ms: None,
        final_ms: None,
        seq: 0,
    }
}

fn event(body: String) -> Write {
    Write::Event {
        kind: "tx".into(),
        user_a: Some(1),
        user_b: None,
        body,
    }
}

fn state(id: &str, state: &str, height: Option<i64>, sub: Option<i64>, fin: Option<i64>) -> Write {
    Write::TxState {
        id: id.into(),
        state: state.into(),
        reason: None,
        height,
        attempt: None,
        submitted_ms: sub,
        final_ms: fin,
    }
}

async fn writer_keeps_each_jobs_meaning(url: &str) {
    let db = db::open(url).await.expect("open the database");
    let seq0 = *db.events_watch().borrow();
    // 400 new transactions and, racing them, 100 second requests with keys already in use:
    // sent at once, so the writer takes many per commit.
    const N: usize = 400;
    let mut jobs = Vec::new();
    for i in 0..N + 100 {
        let key = format!("key{}", i % N);
        let db = db.clone();
        jobs.push(tokio::spawn(async move {
            let r = row(i, 1, &key);
            let ev = event(format!("insert {i}"));
            (i, db.write(vec![Write::InsertTx(Box::new(r)), ev]).await)
        }));
    }
    let mut won = HashSet::new();
    let mut bodies = HashSet::new();
    let mut done = 0;
    for j in jobs {
        let (i, out) = j.await.expect("job");
        match out.expect("commit") {
            Outcome::Done => {
                assert!(won.insert(i % N), "key{} stored twice", i % N);
                bodies.insert(format!("insert {i}"));
                done += 1;
            }
            Outcome::Duplicate => {}
        }
    }
    assert_eq!(done, N, "each key stored exactly once");
    // The stored row of each key is the one that answered Done.
    for k in 0..N {
        let r = db
            .tx_by_key(1, &format!("key{k}"))
            .await
            .expect("read")
            .expect("stored");
        let i: usize = r.id[2..].parse().expect("id");
        assert_eq!(i % N, k);
        assert_eq!(r.amount, i as u64 + 1, "the row's own fields");
    }
    // Only the jobs that stood wrote their events, gap-free and in order.
    let evs = db.events_after(seq0, None, 10_000).await.expect("events");
    assert_eq!(evs.len(), N, "one event per stored transaction");
    for (k, e) in evs.iter().enumerate() {
        assert_eq!(e.seq, seq0 + 1 + k as i64, "sequence numbers without gaps");
        assert!(
            bodies.remove(&e.body),
            "event {:?} of a job that did not stand",
            e.body
        );
    }
    assert_eq!(*db.events_watch().borrow(), seq0 + N as i64);

    let acc1 = db
        .insert_account(1, "a", &[1; 32], &[2; 33], &[3])
        .await
        .expect("account");
    let acc2 = db
        .insert_account(1, "b", &[4; 32], &[5; 33], &[6])
        .await
        .expect("account");
    // States of one transaction in one commit fold in order; absent fields keep earlier ones.
    let a = db
        .tx_by_key(1, "key0")
        .await
        .expect("read")
        .expect("stored");
    let b = db
        .tx_by_key(1, "key1")
        .await
        .expect("read")
        .expect("stored");
    db.write(vec![
        state(&a.id, "submitted", None, Some(5), None),
        state(&b.id, "submitted", None, Some(5), None),
        state(&a.id, "committed", Some(9), None, Some(7)),
        Write::TxState {
            id: b.id.clone(),
            state: "rejected".into(),
            reason: Some("mvcc".into()),
            height: None,
            attempt: Some((vec![9, 9], vec![8; 32], 2)),
            submitted_ms: None,
            final_ms: Some(8),
        },
        Write::Balance {
            account: acc1,
            balance: 10,
        },
        Write::Balance {
            account: acc2,
            balance: 20,
        },
        Write::Balance {
            account: acc1,
            balance: 11,
        },
        Write::Meta("height".into(), "9".into()),
        Write::Meta("height".into(), "10".into()),
    ])
    .await
    .expect("commit");
    let a = db.tx(&a.id).await.expect("read").expect("stored");
    assert_eq!(
        (
            a.state.as_str(),
            a.height,
            a.submitted_ms,
            a.final_ms,
            a.reason
        ),
        ("committed", Some(9), Some(5), Some(7), None)
    );
    let b = db.tx(&b.id).await.expect("read").expect("stored");
    assert_eq!(
        (
            b.state.as_str(),
            b.submitted_ms,
            b.final_ms,
            b.reason.as_deref()
        ),
        ("rejected", Some(5), Some(8), Some("mvcc"))
    );
    assert_eq!((b.ledger_tx, b.attempts), (vec![9, 9], 2));
    let balance = |a: Option<db::AccountRow>| a.expect("account").balance;
    assert_eq!(
        balance(db.account(acc1).await.expect("read")),
        11,
        "the last balance wins"
    );
    assert_eq!(balance(db.account(acc2).await.expect("read")), 20);
    assert_eq!(
        db.meta("height").await.expect("meta").as_deref(),
        Some("10")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_keeps_each_jobs_meaning_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("gw.db").display());
    writer_keeps_each_jobs_meaning(&url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_keeps_each_jobs_meaning_postgres() {
    if let Some(url) = postgres::fresh_database() {
        writer_keeps_each_jobs_meaning(&url).await;
    }
}
