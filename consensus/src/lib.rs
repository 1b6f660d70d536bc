//! bpu-consensus: Byzantine fault-tolerant ordering for a channel (spec: `docs/consensus.md`).
//!
//! Purpose: n = 3f + 1 validators agree on one block per height while up to f crash or lie.
//! The protocol is of the Tendermint family (propose, prevote, precommit per round; locks;
//! rotating proposers; round timeouts with exponential back-off). Votes are BLS12-381
//! signatures aggregated into quorum certificates, so a certificate costs the same to check for
//! 4 or 100 validators.
//!
//! Invariants:
//! - The protocol core is a pure state machine: messages and timeouts in, actions out; no
//!   clock, network or randomness inside, so the simulation replays any run from its seed.
//! - No two different blocks are certified at one height (safety), whatever f validators do.
//!
//! Start reading at `docs/consensus.md`, then [`core::Core`] (the protocol) and [`bls`] (votes
//! and certificates, `docs/consensus-certs.md`).

pub mod bls;
pub mod core;
pub mod light;
