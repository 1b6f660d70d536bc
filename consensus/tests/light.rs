//! Light verification of committed headers: a certificate made from a core's decision verifies
//! with only the validator set (4 and 100 validators); anything else is refused with its reason.

use bpu_consensus::bls::{Aggregator, BlsSecretKey, ValidatorSet, VoteKind};
use bpu_consensus::core::{Action, Config, Core, Proposal, Timeouts, Vote};
use bpu_consensus::light::{verify_commit, LightError};
use std::sync::Arc;

fn network(n: usize) -> (Vec<BlsSecretKey>, Arc<ValidatorSet>) {
    let keys: Vec<BlsSecretKey> = (0..n)
        .map(|i| BlsSecretKey::from_ikm(&[i as u8 + 1; 32]).expect("key"))
        .collect();
    let set = ValidatorSet::new(
        keys.iter()
            .map(|k| (k.public_key(), k.prove_possession()))
            .collect(),
    )
    .expect("set");
    (keys, Arc::new(set))
}

/// Drives one core to a decision on `block` with every validator's votes; returns the
/// certificate bytes built from the precommit voters it reports.
fn decide_and_certify(
    n: usize,
    keys: &[BlsSecretKey],
    set: &Arc<ValidatorSet>,
    block: [u8; 32],
) -> (u64, Vec<u8>) {
    let height = 5;
    let cfg = Config {
        n: n as u32,
        me: Some(0),
        timeouts: Timeouts::default(),
    };
    let (mut core, _) = Core::new(cfg, height);
    let proposer = bpu_consensus::core::proposer(n as u32, height, 0);
    core.on_proposal(
        Proposal {
            height,
            round: 0,
            block,
            valid_round: None,
            proposer,
        },
        true,
    );
    let mut decision = None;
    for kind in [VoteKind::Prevote, VoteKind::Precommit] {
        for voter in 0..n as u32 {
            for a in core.on_vote(Vote {
                height,
                round: 0,
                kind,
                block: Some(block),
                voter,
            }) {
                if let Action::Decide {
                    round,
                    block,
                    precommits,
                    ..
                } = a
                {
                    decision = Some((round, block, precommits));
                }
            }
        }
    }
    let (round, decided, precommits) = decision.expect("decided");
    assert_eq!(decided, block);
    let mut agg = Aggregator::new(
        set.clone(),
        "chan",
        height,
        round,
        VoteKind::Precommit,
        Some(block),
    );
    for v in precommits {
        let sig =
            keys[v as usize].sign_vote("chan", height, round, VoteKind::Precommit, Some(block));
        agg.add(v, &sig).expect("valid vote");
    }
    (height, agg.certificate().expect("quorum").to_bytes())
}

#[test]
fn a_committed_header_verifies_with_only_the_validator_set() {
    for n in [4, 100] {
        let (keys, set) = network(n);
        let header = [0xab; 32];
        let (height, cert) = decide_and_certify(n, &keys, &set, header);
        let qc = verify_commit("chan", height, &header, &cert, &set).expect("verifies");
        assert!(qc.signer_indexes().len() >= set.quorum());
        // Another header, height, channel or set; a damaged or a prevote certificate.
        assert_eq!(
            verify_commit("chan", height, &[0xac; 32], &cert, &set).err(),
            Some(LightError::OtherBlock)
        );
        assert!(matches!(
            verify_commit("chan", height + 1, &header, &cert, &set),
            Err(LightError::Height { .. })
        ));
        assert!(matches!(
            verify_commit("other", height, &header, &cert, &set),
            Err(LightError::Cert(_))
        ));
        let (_, other_set) = network(n + 1);
        assert!(matches!(
            verify_commit("chan", height, &header, &cert, &other_set),
            Err(LightError::Cert(_))
        ));
        let mut bad = cert.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(verify_commit("chan", height, &header, &bad, &set).is_err());
        assert!(matches!(
            verify_commit("chan", height, &header, &cert[..10], &set),
            Err(LightError::Decode(_))
        ));
        let mut agg = Aggregator::new(
            set.clone(),
            "chan",
            height,
            0,
            VoteKind::Prevote,
            Some(header),
        );
        for (i, k) in keys.iter().enumerate() {
            agg.add(
                i as u32,
                &k.sign_vote("chan", height, 0, VoteKind::Prevote, Some(header)),
            )
            .expect("vote");
        }
        let prevotes = agg.certificate().expect("quorum").to_bytes();
        assert_eq!(
            verify_commit("chan", height, &header, &prevotes, &set).err(),
            Some(LightError::NotPrecommit)
        );
    }
}
