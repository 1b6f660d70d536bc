//! `bpu bench ledger`: token transfers validated and committed per second by one node, the
//! verification efficiency against `openssl speed`, contract executions per second, and
//! submit-to-commit latency at half of the peak rate.
//!
//! The node runs in this process on the chosen crypto backend with its TCP server; clients
//! submit pre-signed transactions over TCP (signing is not measured). The workload and its
//! checks are those of [`crate::load`]: rounds of disjoint accounts, every transaction's fate
//! checked, valid commits only counted.

pub use crate::load::LoadFigures;
use crate::load::{self, err, CHANNEL};
use crate::verify::{openssl_figures, OpensslFigures};
use bpu_ledger::membership::ChannelParams;
use bpu_ledger::node::{Node, NodeConfig};
use bpu_ledger::order::CutterConfig;
use bpu_runtime::contract::{CallContext, ContractConfig, ContractService};
use bpu_runtime::{CryptoService, StateVersion};
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// What to run.
pub struct Options<'a> {
    /// Crypto backend of the node.
    pub device: String,
    /// Smaller network and shorter runs.
    pub quick: bool,
    /// Token accounts (each a member with its own key).
    pub accounts: usize,
    /// Transfers submitted in the peak run.
    pub transfers: usize,
    /// The token contract's ELF.
    pub token_elf: PathBuf,
    /// Block cutter timeout (ms); the channel default is 2,000.
    pub block_timeout_ms: u32,
    /// Concurrent client connections.
    pub connections: usize,
    pub progress: &'a dyn Fn(&str),
}

/// Contract executions outside the node (token transfers on the contract service).
#[derive(Debug, Serialize)]
pub struct ContractFigures {
    pub sequential_calls_per_s: f64,
    pub parallel_calls_per_s: f64,
    pub threads: usize,
    pub gas_per_call: u64,
}

/// Everything `bpu bench ledger` reports.
#[derive(Debug, Serialize)]
pub struct LedgerReport {
    pub device_uri: String,
    pub backend: String,
    pub cpu_model: Option<String>,
    pub cores: usize,
    pub openssl: Option<OpensslFigures>,
    pub openssl_unavailable: Option<String>,
    pub accounts: usize,
    pub block_max_txs: u32,
    pub block_max_bytes: u32,
    pub block_timeout_ms: u32,
    pub setup_seconds: f64,
    pub peak: LoadFigures,
    pub half: LoadFigures,
    /// peak TPS × verifications per transaction ÷ OpenSSL verifications/s on all cores.
    pub verification_efficiency: Option<f64>,
    pub contract: ContractFigures,
}

/// Token transfers on the contract service alone: sequential, then on all cores.
fn contract_figures(elf: &[u8], quick: bool) -> Result<ContractFigures, String> {
    let svc = ContractService::new(ContractConfig::default());
    let program = svc.load(elf).map_err(err)?;
    let key = [4u8; 65];
    let from: [u8; 32] = Sha256::digest(key).into();
    let mut state: BTreeMap<Vec<u8>, (Vec<u8>, StateVersion)> = BTreeMap::new();
    let mut bk = vec![b'b'];
    bk.extend(from);
    state.insert(
        bk,
        (u64::MAX.to_le_bytes().to_vec(), StateVersion::default()),
    );
    let args = load::transfer_args(&[9; 32], 1);
    let ctx = CallContext {
        channel: CHANNEL,
        contract: "token",
        contract_version: 1,
        caller_index: 2,
        caller_key: &key,
        tx_id: [0; 32],
        height: 1,
        time_ms: 0,
        method: "transfer",
        args: &args,
        gas_limit: 1_000_000,
    };
    let n: usize = if quick { 20_000 } else { 200_000 };
    let first = svc.execute(&program, &ctx, &state);
    first
        .result
        .map_err(|e| format!("token transfer reverted: {e}"))?;
    let t = Instant::now();
    for _ in 0..n {
        if svc.execute(&program, &ctx, &state).result.is_err() {
            return Err("token transfer reverted".into());
        }
    }
    let seq = n as f64 / t.elapsed().as_secs_f64();
    let threads = rayon::current_num_threads();
    let t = Instant::now();
    let ok = (0..n)
        .into_par_iter()
        .all(|_| svc.execute(&program, &ctx, &state).result.is_ok());
    if !ok {
        return Err("token transfer reverted".into());
    }
    let par = n as f64 / t.elapsed().as_secs_f64();
    Ok(ContractFigures {
        sequential_calls_per_s: seq,
        parallel_calls_per_s: par,
        threads,
        gas_per_call: first.gas_used,
    })
}

/// Runs the ledger benchmark.
pub fn run(opts: &Options<'_>) -> Result<LedgerReport, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let elf = std::fs::read(&opts.token_elf).map_err(|e| {
        format!(
            "reading {}: {e}; build the contracts with `contracts/build.sh` or pass --token",
            opts.token_elf.display()
        )
    })?;
    (opts.progress)("contract service: token transfers, sequential and parallel");
    let contract = contract_figures(&elf, opts.quick)?;
    let seconds: u32 = if opts.quick { 1 } else { 3 };
    (opts.progress)(&format!(
        "openssl speed -seconds {seconds} ecdsap256 (1 core, -multi {cores})"
    ));
    let (openssl, openssl_unavailable) = match openssl_figures(seconds, cores) {
        Ok(f) => (Some(f), None),
        Err(why) => (None, Some(why)),
    };

    let t_setup = Instant::now();
    (opts.progress)(&format!("{} accounts: keys and genesis", opts.accounts));
    let net = load::make_net(
        opts.accounts,
        1,
        ChannelParams {
            block_timeout_ms: opts.block_timeout_ms,
            ..ChannelParams::default()
        },
    )?;
    let dir = tempfile::tempdir().map_err(err)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(err)?;
    let params = net.genesis.params.clone();
    let report = rt.block_on(async {
        let crypto = CryptoService::open(&opts.device).map_err(err)?;
        let node = Node::start(NodeConfig {
            data_dir: dir.path().to_path_buf(),
            genesis: net.genesis.clone(),
            key: load::copy_key(net.validators.first().ok_or("no validator key")?)?,
            crypto,
            cutter: Some(CutterConfig::from_params(&params)),
            clock: None,
        })
        .await
        .map_err(err)?;
        let addr = bpu_ledger::server::spawn(node.clone(), "127.0.0.1:0")
            .await
            .map_err(err)?
            .to_string();
        (opts.progress)("deploying the token and funding every account");
        load::setup(&node, &addr, &net, &elf, opts.connections).await?;
        let setup_seconds = t_setup.elapsed().as_secs_f64();
        let groups = load::groups_for(opts.accounts);
        let addrs = [addr];
        (opts.progress)(&format!("signing {} transfers", opts.transfers));
        let peak_plan = load::plan(&net, groups, opts.transfers, 1_000_000)?;
        (opts.progress)(&format!(
            "peak: {} transfers over {} connections, as fast as the node commits",
            opts.transfers, opts.connections
        ));
        let peak = load::run_load(
            std::slice::from_ref(&node),
            &addrs,
            opts.connections,
            &peak_plan,
            None,
        )
        .await?;
        let half_rate = (peak.tps / 2.0).max(1.0);
        let half_n = ((half_rate * if opts.quick { 3.0 } else { 10.0 }) as usize).max(1000);
        let half_plan = load::plan(&net, groups, half_n, 2_000_000)?;
        (opts.progress)(&format!(
            "half load: {half_n} transfers at {half_rate:.0}/s"
        ));
        let half = load::run_load(
            std::slice::from_ref(&node),
            &addrs,
            opts.connections,
            &half_plan,
            Some(half_rate),
        )
        .await?;
        let efficiency = openssl
            .as_ref()
            .and_then(|o| o.verify_per_s_multi.or(Some(o.verify_per_s_1core)))
            .map(|v| peak.tps * peak.verifications_per_tx / v);
        Ok::<_, String>(LedgerReport {
            device_uri: opts.device.clone(),
            backend: node.info().backend,
            cpu_model: crate::verify::cpu_model(),
            cores,
            openssl,
            openssl_unavailable,
            accounts: opts.accounts,
            block_max_txs: params.block_max_txs,
            block_max_bytes: params.block_max_bytes,
            block_timeout_ms: params.block_timeout_ms,
            setup_seconds,
            peak,
            half,
            verification_efficiency: efficiency,
            contract,
        })
    })?;
    Ok(report)
}

impl LedgerReport {
    /// The report as markdown.
    pub fn markdown(&self) -> String {
        let mut o = String::from("## Ledger: token transfers on one node\n\n");
        o.push_str(&format!(
            "CPU: {} ({} cores). Node crypto backend: {}. {} accounts; blocks of at most {} \
             transactions / {} bytes / {} ms. Setup (genesis, deploy, funding) took {:.1} s.\n\n",
            self.cpu_model.as_deref().unwrap_or("unknown"),
            self.cores,
            self.backend,
            self.accounts,
            self.block_max_txs,
            self.block_max_bytes,
            self.block_timeout_ms,
            self.setup_seconds
        ));
        o.push_str("| run | offered tx/s | valid tx/s | valid / invalid / rejected | blocks | tx per block | bytes per block | block interval | latency p50 | latency p99 | verifications per tx |\n");
        o.push_str("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n");
        for (name, f) in [("peak", &self.peak), ("half of peak", &self.half)] {
            o.push_str(&format!(
                "| {name} | {} | **{:.0}** | {} / {} / {} | {} | {:.0} | {:.0} | {:.0} ms | {:.0} ms | {:.0} ms | {:.2} |\n",
                f.offered_tps.map_or("max".to_string(), |r| format!("{r:.0}")),
                f.tps,
                f.valid,
                f.invalid,
                f.rejected,
                f.blocks,
                f.txs_per_block,
                f.bytes_per_block,
                f.block_interval_ms,
                f.latency_ms_p50,
                f.latency_ms_p99,
                f.verifications_per_tx
            ));
        }
        match (&self.openssl, self.verification_efficiency) {
            (Some(s), Some(e)) => o.push_str(&format!(
                "\nVerification efficiency = {:.0} tx/s × {:.2} verifications/tx ÷ {:.0} \
                 (`openssl speed -multi {}` ecdsap256 verify/s, same run) = **{e:.2}** (goal ≥ 0.8).\n",
                self.peak.tps,
                self.peak.verifications_per_tx,
                s.verify_per_s_multi.unwrap_or(s.verify_per_s_1core),
                s.multi
            )),
            _ => o.push_str(&format!(
                "\nOpenSSL not measured: {}\n",
                self.openssl_unavailable.as_deref().unwrap_or("unknown")
            )),
        }
        for (name, f) in [("peak", &self.peak), ("half of peak", &self.half)] {
            o.push_str(&format!(
                "\nPer block at {name}: validation {:.0} ms, block store {:.0} ms, state commit {:.0} ms.",
                f.validate_ms_per_block, f.store_ms_per_block, f.state_ms_per_block
            ));
        }
        o.push('\n');
        o.push_str(&format!(
            "\nContract service, token transfer ({} gas): {:.0} calls/s sequential, {:.0} calls/s on {} threads.\n",
            self.contract.gas_per_call,
            self.contract.sequential_calls_per_s,
            self.contract.parallel_calls_per_s,
            self.contract.threads
        ));
        o
    }
}
