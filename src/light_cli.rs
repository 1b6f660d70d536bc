//! `bpu verify-block`: a small client's check of a committed block (its header's quorum
//! certificate against the channel's validator set) and of a transaction in it (its inclusion
//! proof under that header), without running a node (`bpu_ledger::light`).

use anyhow::{anyhow, Context, Result};
use bpu_ledger::format::{Block, Wire};
use bpu_ledger::light::{verify_header, verify_tx};
use bpu_ledger::Genesis;
use std::path::PathBuf;
use std::process::ExitCode;

/// `bpu verify-block` arguments.
#[derive(clap::Args)]
pub struct VerifyBlockArgs {
    /// The channel's genesis file: its validators (the validator role, with BLS keys) are the
    /// set whose quorum certifies blocks.
    #[arg(long, short)]
    pub genesis: PathBuf,
    /// Height of the block to fetch from the node (`--node`).
    #[arg(long, conflicts_with = "block")]
    pub height: Option<u64>,
    /// An encoded block file (`bpu block get --out FILE`) instead of asking a node.
    #[arg(long)]
    pub block: Option<PathBuf>,
    /// A transaction id (hex): fetch its inclusion proof from the node and check it under its
    /// block's certified header.
    #[arg(long)]
    pub tx: Option<String>,
    /// The node's client address (only for `--height` and `--tx`).
    #[arg(long, default_value = crate::ledger_cli::DEFAULT_ADDR, env = "BPU_NODE")]
    pub node: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// What was verified, for printing.
struct Verdict {
    what: String,
    height: u64,
    hash: [u8; 32],
    result: Result<(u32, usize, usize), String>,
}

/// `bpu verify-block`.
pub fn verify_block(a: &VerifyBlockArgs) -> Result<ExitCode> {
    let g =
        std::fs::read(&a.genesis).with_context(|| format!("reading {}", a.genesis.display()))?;
    let genesis = Genesis::decode(&g)
        .with_context(|| format!("{} is not a valid genesis", a.genesis.display()))?;
    let validators = genesis
        .membership
        .validator_set()
        .context("the genesis has no usable validator set")?;
    let set = validators.set;
    let n = set.len();
    let explain = |e: bpu_ledger::light::LightTxError| {
        let s = e.to_string();
        if s.contains("another validator set") {
            format!("{s} (the validators changed since the genesis; this check needs the set that signed)")
        } else {
            s
        }
    };
    let mut verdicts = Vec::new();
    if let Some(path) = &a.block {
        let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let block = Block::decode(&b)
            .with_context(|| format!("{} is not a valid block", path.display()))?;
        verdicts.push(header_verdict(&block, &set, &explain));
    }
    if a.height.is_some() || a.tx.is_some() {
        let rt = crate::runtime()?;
        rt.block_on(async {
            let mut c = bpu_ledger::client::Client::connect(&a.node).await?;
            if let Some(h) = a.height {
                let block = c
                    .block(h)
                    .await?
                    .ok_or_else(|| anyhow!("the node has no block at height {h}"))?;
                verdicts.push(header_verdict(&block, &set, &explain));
            }
            if let Some(id) = &a.tx {
                let id: [u8; 32] = ::hex::decode(id)
                    .ok()
                    .and_then(|v| v.try_into().ok())
                    .ok_or_else(|| anyhow!("--tx {id:?}: expected 64 hex digits"))?;
                let p = c.tx(&id).await?.ok_or_else(|| {
                    anyhow!(
                        "the node has no committed transaction {}",
                        ::hex::encode(id)
                    )
                })?;
                verdicts.push(Verdict {
                    what: format!(
                        "transaction {} (index {}, {:?})",
                        ::hex::encode(id),
                        p.receipt.index,
                        p.receipt.status
                    ),
                    height: p.header.height,
                    hash: p.header.hash().0,
                    result: verify_tx(&p, &set)
                        .map(|qc| (qc.round, qc.signer_indexes().len(), n))
                        .map_err(explain),
                });
            }
            Ok::<_, anyhow::Error>(())
        })?;
    }
    if verdicts.is_empty() {
        anyhow::bail!("nothing to verify: give --height, --block or --tx");
    }
    let ok = verdicts.iter().all(|v| v.result.is_ok());
    if a.json {
        let v: Vec<_> = verdicts
            .iter()
            .map(|v| {
                serde_json::json!({
                    "what": v.what,
                    "height": v.height,
                    "hash": ::hex::encode(v.hash),
                    "verified": v.result.is_ok(),
                    "round": v.result.as_ref().ok().map(|r| r.0),
                    "signers": v.result.as_ref().ok().map(|r| r.1),
                    "validators": n,
                    "error": v.result.as_ref().err(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "channel": genesis.channel, "checks": v })
        );
    } else {
        for v in &verdicts {
            match &v.result {
                Ok((round, signers, n)) => println!(
                    "{} at height {} (block {}): certified by {signers} of {n} validators in round {round}",
                    v.what,
                    v.height,
                    &::hex::encode(v.hash)[..16]
                ),
                Err(e) => println!(
                    "{} at height {} (block {}): NOT VERIFIED: {e}",
                    v.what,
                    v.height,
                    &::hex::encode(v.hash)[..16]
                ),
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn header_verdict(
    block: &Block,
    set: &bpu_consensus::bls::ValidatorSet,
    explain: &dyn Fn(bpu_ledger::light::LightTxError) -> String,
) -> Verdict {
    Verdict {
        what: "header".into(),
        height: block.header.height,
        hash: block.header.hash().0,
        result: verify_header(&block.header, &block.cert, set)
            .map(|qc| (qc.round, qc.signer_indexes().len(), set.len()))
            .map_err(explain),
    }
}
