//! The wire formats: proptest round trips, strict decoding of mutated and random bytes, every
//! limit and rejection, and transaction signatures through the crypto service.

use bpu_ledger::format::{
    limits, Endorsement, Event, ExecResult, KeyVersion, Read, Sig, TxStatus, Write, VERSION,
};
use bpu_ledger::{Block, BlockHeader, EndorsedTx, FormatError, Receipt, Transaction, TxBody, Wire};
use bpu_runtime::{CryptoService, PublicKey};
use p256::ecdsa::SigningKey;
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,24}"
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn sig() -> impl Strategy<Value = Sig> {
    (any::<[u8; 32]>(), any::<[u8; 32]>()).prop_map(|(r, s)| Sig { r, s })
}

fn body(channel: String) -> impl Strategy<Value = TxBody> {
    (
        any::<u64>(),
        any::<u32>(),
        name(),
        proptest::option::of(any::<u32>()),
        name(),
        bytes(300),
    )
        .prop_map(move |(nonce, creator, contract, cv, method, args)| TxBody {
            version: VERSION,
            channel: channel.clone(),
            nonce,
            creator,
            contract,
            contract_version: cv,
            method,
            args,
        })
}

fn tx(channel: String) -> impl Strategy<Value = Transaction> {
    (body(channel), sig()).prop_map(|(body, sig)| Transaction { body, sig })
}

fn event() -> impl Strategy<Value = Event> {
    (name(), bytes(40)).prop_map(|(name, data)| Event { name, data })
}

fn endorsed(channel: String) -> impl Strategy<Value = EndorsedTx> {
    let read = (
        bytes(40),
        proptest::option::of((any::<u64>(), any::<u32>())),
    )
        .prop_map(|(key, v)| Read {
            key,
            version: v.map(|(height, index)| KeyVersion { height, index }),
        });
    let write =
        (bytes(40), proptest::option::of(bytes(60))).prop_map(|(key, value)| Write { key, value });
    (
        tx(channel),
        any::<u32>(),
        proptest::collection::vec(read, 0..5),
        proptest::collection::vec(write, 0..5),
        bytes(50),
        proptest::collection::vec(event(), 0..3),
        proptest::collection::vec((any::<u32>(), sig()), 0..4),
    )
        .prop_map(|(tx, cv, reads, writes, response, events, ends)| {
            let result = ExecResult {
                version: VERSION,
                tx_id: tx.id().0,
                contract_version: cv,
                reads,
                writes,
                response,
                events,
            };
            EndorsedTx {
                tx,
                result,
                endorsements: ends
                    .into_iter()
                    .map(|(endorser, sig)| Endorsement { endorser, sig })
                    .collect(),
            }
        })
}

fn block() -> impl Strategy<Value = Block> {
    name().prop_flat_map(|channel| {
        (
            proptest::collection::vec(endorsed(channel.clone()), 0..6),
            any::<u64>(),
            any::<[u8; 32]>(),
            any::<[u8; 32]>(),
            any::<u64>(),
            any::<u32>(),
            bytes(100),
        )
            .prop_map(
                move |(txs, height, prev_hash, state_digest, time_ms, proposer, cert)| {
                    let header = BlockHeader {
                        version: VERSION,
                        channel: channel.clone(),
                        height,
                        prev_hash,
                        tx_root: Block::tx_root(&txs).0,
                        state_digest,
                        time_ms,
                        proposer,
                    };
                    Block {
                        header,
                        status: vec![TxStatus::Pending; txs.len()],
                        txs,
                        cert,
                    }
                },
            )
    })
}

/// A mutated encoding either fails to decode or decodes to a value whose encoding is exactly
/// the mutated bytes (strictness: no two encodings of one value).
fn strict<T: Wire + std::fmt::Debug + PartialEq>(bytes: &[u8]) {
    if let Ok(v) = T::decode(bytes) {
        assert_eq!(
            v.encode(),
            bytes,
            "decoded {v:?} from a non-canonical encoding"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn transactions_round_trip(t in name().prop_flat_map(tx)) {
        let enc = t.encode();
        prop_assert_eq!(Transaction::decode(&enc), Ok(t.clone()));
        // The id covers the body only.
        let mut other = t.clone();
        other.sig.s[0] ^= 1;
        prop_assert_eq!(other.id(), t.id());
    }

    #[test]
    fn endorsed_transactions_round_trip(e in name().prop_flat_map(endorsed)) {
        prop_assert_eq!(EndorsedTx::decode(&e.encode()), Ok(e.clone()));
    }

    #[test]
    fn blocks_round_trip(b in block()) {
        prop_assert_eq!(Block::decode(&b.encode()), Ok(b.clone()));
        prop_assert_eq!(b.header.hash(), b.header.clone().hash());
    }

    #[test]
    fn mutated_encodings_are_rejected_or_canonical(
        b in block(),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
        cut in any::<prop::sample::Index>(),
    ) {
        let enc = b.encode();
        let mut flipped = enc.clone();
        let i = at.index(flipped.len());
        flipped[i] ^= 1 << bit;
        strict::<Block>(&flipped);
        strict::<Block>(&enc[..cut.index(enc.len())]);
        let mut longer = enc.clone();
        longer.push(0);
        prop_assert_eq!(Block::decode(&longer), Err(FormatError::NonCanonical));
    }

    #[test]
    fn random_bytes_never_panic(data in bytes(2000)) {
        strict::<Transaction>(&data);
        strict::<EndorsedTx>(&data);
        strict::<Block>(&data);
        strict::<Receipt>(&data);
    }
}

fn sample_tx() -> Transaction {
    Transaction {
        body: TxBody {
            version: VERSION,
            channel: "main".into(),
            nonce: 7,
            creator: 3,
            contract: "token".into(),
            contract_version: None,
            method: "transfer".into(),
            args: b"alice bob 10".to_vec(),
        },
        sig: Sig::default(),
    }
}

#[test]
fn limits_versions_and_names_are_enforced() {
    let t = sample_tx();
    let mut big = t.clone();
    big.body.args = vec![0; limits::ARGS + 1];
    assert!(matches!(
        Transaction::decode(&big.encode()),
        Err(FormatError::TooLarge { what: "args", .. })
    ));
    let mut v2 = t.clone();
    v2.body.version = 2;
    assert_eq!(
        Transaction::decode(&v2.encode()),
        Err(FormatError::Version(2))
    );
    for bad in ["", "has space", "ünïcode", &"x".repeat(limits::CHANNEL + 1)] {
        let mut c = t.clone();
        c.body.channel = bad.to_string();
        assert!(Transaction::decode(&c.encode()).is_err(), "channel {bad:?}");
    }
    // Larger than the message limit: rejected before decoding.
    let huge = vec![0u8; limits::TX + 1];
    assert!(matches!(
        Transaction::decode(&huge),
        Err(FormatError::TooLarge {
            what: "transaction",
            ..
        })
    ));
    // An overlong varint (nonce 7 as two bytes) is not the canonical encoding.
    let enc = t.encode();
    let at = enc.iter().position(|&b| b == 7).expect("the nonce byte");
    let mut overlong = enc[..at].to_vec();
    overlong.extend_from_slice(&[0x87, 0x00]);
    overlong.extend_from_slice(&enc[at + 1..]);
    assert!(Transaction::decode(&overlong).is_err());
    // A typical transfer is small.
    assert!(enc.len() < 120, "{} bytes", enc.len());
}

#[test]
fn blocks_check_their_root_channel_and_statuses() {
    let t = sample_tx();
    let e = EndorsedTx {
        result: ExecResult {
            version: VERSION,
            tx_id: t.id().0,
            contract_version: 1,
            reads: vec![],
            writes: vec![],
            response: vec![],
            events: vec![],
        },
        tx: t,
        endorsements: vec![],
    };
    let good = Block {
        header: BlockHeader {
            version: VERSION,
            channel: "main".into(),
            height: 1,
            prev_hash: [0; 32],
            tx_root: Block::tx_root(std::slice::from_ref(&e)).0,
            state_digest: [0; 32],
            time_ms: 0,
            proposer: 0,
        },
        txs: vec![e.clone()],
        status: vec![TxStatus::Pending],
        cert: vec![],
    };
    assert_eq!(Block::decode(&good.encode()), Ok(good.clone()));
    let mut bad_root = good.clone();
    bad_root.header.tx_root[0] ^= 1;
    assert!(matches!(
        Block::decode(&bad_root.encode()),
        Err(FormatError::Invalid(_))
    ));
    let mut other_channel = good.clone();
    other_channel.header.channel = "other".into();
    assert!(matches!(
        Block::decode(&other_channel.encode()),
        Err(FormatError::Invalid(_))
    ));
    let mut statuses = good.clone();
    statuses.status.push(TxStatus::Valid);
    assert!(matches!(
        Block::decode(&statuses.encode()),
        Err(FormatError::Invalid(_))
    ));
    let mut wrong_result = good;
    wrong_result.txs[0].result.tx_id[0] ^= 1;
    assert!(Block::decode(&wrong_result.encode()).is_err());
}

#[tokio::test]
async fn transaction_signatures_verify_through_the_crypto_service() {
    let sk = SigningKey::from_slice(&[7u8; 32]).expect("key");
    let enc = sk.verifying_key().to_encoded_point(false);
    let key = PublicKey::from_sec1(enc.as_bytes()).expect("public key");
    let mut t = sample_tx();
    let (sig, _) = sk.sign_prehash_recoverable(&t.id().0).expect("sign");
    t.sig = Sig {
        r: sig.r().to_bytes().into(),
        s: sig.s().to_bytes().into(),
    };
    let svc = CryptoService::cpu();
    assert!(svc.verify(&t.verify_request(&key)).await.expect("verify"));
    let mut tampered = t.clone();
    tampered.body.args.push(b'0');
    assert!(!svc
        .verify(&tampered.verify_request(&key))
        .await
        .expect("verify"));
}

proptest::proptest! {
    /// Random bytes as a client request frame, and as system-contract arguments, never panic
    /// (the proptest stand-in for the `decode_request` fuzz target).
    #[test]
    fn random_request_frames_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = postcard::from_bytes::<bpu_ledger::api::Request>(&data);
        let none = |_: &[u8]| Ok(None);
        let ok = |_: &[u8]| Ok(());
        let _ = bpu_ledger::system::lifecycle("install", &data, &none, &ok);
        let _ = bpu_ledger::system::membership("add_member", &data, &none);
        let _ = bpu_ledger::system::membership("add_members", &data, &none);
        let _ = bpu_ledger::system::membership("set_roles", &data, &none);
        // And a real request built from the same bytes survives the trip.
        let req = bpu_ledger::api::Request::Submit { tx: data.clone() };
        let bytes = postcard::to_allocvec(&req).expect("encode");
        proptest::prop_assert_eq!(postcard::from_bytes::<bpu_ledger::api::Request>(&bytes).ok(), Some(req));
    }
}
