//! `bpu bench consensus`: BFT consensus throughput and commit latency for several validator
//! counts (every validator a full node in this process, on its own loopback p2p network), the
//! largest count that still sustains a target rate, and certificate verification time per block
//! for small and large validator sets.
//!
//! Each validator count gets a fresh network: new keys and genesis, one data directory per node
//! in a tempdir, `Node::start_bft` over `p2p::Network`s on 127.0.0.1. Clients spread over all
//! nodes submit the pre-signed token transfers of [`crate::load`]; commit times, statuses and
//! block figures are node 0's. After the runs every node must hold node 0's block at its height,
//! and its certificate must verify against the validator set: figures of a network that forked
//! or stalled are an error, not a number.

use crate::load::{self, err, LoadFigures, CHANNEL};
use bpu_consensus::bls::{Aggregator, BlsSecretKey, ValidatorSet, VoteKind};
use bpu_consensus::core::Timeouts;
use bpu_consensus::light::verify_commit;
use bpu_ledger::bft::{default_timeouts, BftSetup};
use bpu_ledger::format::{Block, Wire};
use bpu_ledger::membership::ChannelParams;
use bpu_ledger::node::{Node, NodeConfig};
use bpu_ledger::order::CutterConfig;
use bpu_ledger::p2p::{Admit, ChannelSpec, NetConfig, Network, PeerId};
use bpu_runtime::CryptoService;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to run.
pub struct Options<'a> {
    /// One network of 4 validators, a small workload.
    pub quick: bool,
    /// Validator counts to measure, ascending.
    pub nodes: Vec<usize>,
    /// Token accounts (each a member with its own key).
    pub accounts: usize,
    /// Transfers submitted in each peak run.
    pub transfers: usize,
    /// The token contract's ELF.
    pub token_elf: PathBuf,
    /// Block cutter timeout (ms).
    pub block_timeout_ms: u32,
    /// Client connections (at least one per node, rounded up to a multiple of the node count).
    pub connections: usize,
    /// The rate a network must sustain (valid transfers committed per second).
    pub target_tps: f64,
    /// Past the largest count of `nodes`, go on in steps of 3 while the peak meets the target.
    pub extend: bool,
    /// Largest validator count tried when extending.
    pub max_nodes: usize,
    pub progress: &'a dyn Fn(&str),
}

/// Decision rounds of the heights a run committed (from their certificates).
#[derive(Debug, Serialize, Clone, Default)]
pub struct RoundFigures {
    pub heights: u64,
    /// Mean rounds per height (1: every height decided in round 0).
    pub rounds_per_height: f64,
    /// Highest decision round seen (0-based).
    pub max_round: u32,
    /// Heights decided after round 0 (a proposer's timeout or a failed round).
    pub heights_past_round_0: u64,
}

/// One validator count.
#[derive(Debug, Serialize, Clone)]
pub struct NetworkRun {
    pub validators: usize,
    /// Client connections, spread evenly over the nodes.
    pub connections: usize,
    /// Keys, genesis, nodes, token deployment and funding.
    pub setup_seconds: f64,
    /// Closed loop: as fast as the network commits.
    pub peak: LoadFigures,
    pub peak_rounds: RoundFigures,
    /// p2p payload bytes sent by all nodes per valid transfer at peak.
    pub peak_p2p_bytes_per_tx: f64,
    /// CPU time of this process per wall second at peak (cores busy), if measurable.
    pub peak_cpu_cores_busy: Option<f64>,
    /// Cores busy on the whole machine at peak (this process and any other), if measurable.
    pub peak_machine_cores_busy: Option<f64>,
    /// Paced at half of the peak.
    pub paced: LoadFigures,
    pub paced_rounds: RoundFigures,
    /// Whether the peak met the target rate.
    pub meets_target: bool,
}

/// Certificate verification for one validator set.
#[derive(Debug, Serialize, Clone)]
pub struct CertFigures {
    pub validators: usize,
    /// Signers of the certificate (a quorum).
    pub signers: usize,
    pub cert_bytes: usize,
    pub iterations: usize,
    /// `QuorumCert::verify`, µs per certificate.
    pub verify_us: f64,
    /// `light::verify_commit` (decode, group check of the signature, verify), µs.
    pub verify_commit_us: f64,
    /// Verifying each signer's vote on its own instead (what a non-aggregated certificate
    /// costs), µs for all of them.
    pub individual_votes_us: f64,
}

/// Everything `bpu bench consensus` reports.
#[derive(Debug, Serialize)]
pub struct ConsensusReport {
    pub cpu_model: Option<String>,
    pub cores: usize,
    pub backend: String,
    pub accounts: usize,
    pub transfers: usize,
    pub block_max_txs: u32,
    pub block_max_bytes: u32,
    pub block_timeout_ms: u32,
    /// Round-0 consensus timeouts used (each doubles per round).
    pub timeouts: Timeouts,
    pub target_tps: f64,
    pub runs: Vec<NetworkRun>,
    /// Largest validator count measured whose peak met the target; `None`: none did.
    pub max_validators_at_target: Option<usize>,
    /// Why no larger count was tried.
    pub stopped: String,
    pub certificates: Vec<CertFigures>,
    /// verify time of the largest set ÷ that of the smallest.
    pub cert_verify_ratio: f64,
}

/// CPU seconds this process has used (user + system), from `/proc/self/stat` (Linux; clock
/// ticks of 1/100 s, the kernel's USER_HZ on every mainstream architecture).
pub(crate) fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/stat").ok()?;
    stat_times(&s).map(|(_, secs)| secs)
}

/// The command (thread) name and the CPU seconds (user + system) of a `/proc/…/stat` line.
pub(crate) fn stat_times(s: &str) -> Option<(&str, f64)> {
    // The name is in parentheses and may hold spaces; fields follow it.
    let (open, close) = (s.find('(')?, s.rfind(')')?);
    let f: Vec<&str> = s.get(close + 1..)?.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((s.get(open + 1..close)?, (utime + stime) / 100.0))
}

/// Busy and total CPU ticks of the machine, all cores, from `/proc/stat` (Linux).
pub(crate) fn machine_ticks() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() < 8 {
        return None;
    }
    // user nice system idle iowait irq softirq steal
    let idle = v[3] + v[4];
    let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    Some((busy, busy + idle))
}

/// Decision rounds of heights `from..=to` on `node`.
fn rounds(node: &Node, from: u64, to: u64) -> Result<RoundFigures, String> {
    let mut f = RoundFigures::default();
    let mut sum = 0u64;
    for h in from..=to {
        let bytes = node
            .block(h)
            .map_err(err)?
            .ok_or_else(|| format!("block {h} missing on node 0"))?;
        let b = Block::decode(&bytes).map_err(err)?;
        let qc = bpu_consensus::bls::QuorumCert::from_bytes(&b.cert)
            .map_err(|e| format!("certificate of block {h}: {e}"))?;
        f.heights += 1;
        sum += u64::from(qc.round) + 1;
        f.max_round = f.max_round.max(qc.round);
        f.heights_past_round_0 += u64::from(qc.round > 0);
    }
    f.rounds_per_height = sum as f64 / f.heights.max(1) as f64;
    Ok(f)
}

/// Certificate verification time for a set of `n` validators and a quorum of signers.
fn cert_figures(n: usize, iterations: usize) -> Result<CertFigures, String> {
    let sks: Vec<BlsSecretKey> = (0..n).map(|_| BlsSecretKey::generate()).collect();
    let set = Arc::new(
        ValidatorSet::new(
            sks.iter()
                .map(|k| (k.public_key(), k.prove_possession()))
                .collect(),
        )
        .map_err(err)?,
    );
    let (height, round, block) = (42u64, 0u32, [7u8; 32]);
    let q = set.quorum();
    let mut agg = Aggregator::new(
        set.clone(),
        CHANNEL,
        height,
        round,
        VoteKind::Precommit,
        Some(block),
    );
    let votes: Vec<_> = sks[..q]
        .iter()
        .map(|k| k.sign_vote(CHANNEL, height, round, VoteKind::Precommit, Some(block)))
        .collect();
    for (i, v) in votes.iter().enumerate() {
        agg.add(i as u32, v).map_err(err)?;
    }
    let qc = agg.certificate().ok_or("no certificate from a quorum")?;
    let bytes = qc.to_bytes();
    verify_commit(CHANNEL, height, &block, &bytes, &set).map_err(err)?;
    let t = Instant::now();
    for _ in 0..iterations {
        qc.verify(CHANNEL, &set).map_err(err)?;
    }
    let verify_us = t.elapsed().as_secs_f64() * 1e6 / iterations as f64;
    let t = Instant::now();
    for _ in 0..iterations {
        verify_commit(CHANNEL, height, &block, &bytes, &set).map_err(err)?;
    }
    let verify_commit_us = t.elapsed().as_secs_f64() * 1e6 / iterations as f64;
    let msg = qc.message(CHANNEL);
    let reps = (iterations / q).clamp(2, 50);
    let t = Instant::now();
    for _ in 0..reps {
        for (k, v) in sks[..q].iter().zip(&votes) {
            if !k.public_key().verify(&msg, v) {
                return Err("a vote did not verify".into());
            }
        }
    }
    let individual_votes_us = t.elapsed().as_secs_f64() * 1e6 / reps as f64;
    Ok(CertFigures {
        validators: n,
        signers: q,
        cert_bytes: bytes.len(),
        iterations,
        verify_us,
        verify_commit_us,
        individual_votes_us,
    })
}

/// Parameters shared by every network of a run.
struct Shared<'a> {
    opts: &'a Options<'a>,
    elf: Vec<u8>,
    params: ChannelParams,
}

/// Sum of the payload bytes every node sent.
fn p2p_sent(nets: &[Network]) -> u64 {
    nets.iter().map(|n| n.stats().sent_bytes).sum()
}

/// Starts `net`'s validators (networks, nodes, client APIs), waits until every pair is
/// connected; returns the nodes, their networks and client API addresses.
pub(crate) async fn start_network(
    net: &load::Net,
    dirs: &[tempfile::TempDir],
    params: &ChannelParams,
) -> Result<(Vec<Node>, Vec<Network>, Vec<String>), String> {
    let n = net.validators.len();
    let spec = ChannelSpec::new(CHANNEL, net.genesis.hash().0);
    let ids: std::collections::HashSet<PeerId> = net
        .validators
        .iter()
        .map(|k| PeerId::of(&k.public_key()))
        .collect();
    let listen: std::net::SocketAddr = "127.0.0.1:0".parse().map_err(err)?;
    let mut nets = Vec::new();
    let mut parts = Vec::new();
    for key in &net.validators {
        let admit: Admit = Default::default();
        *admit.write() = ids.clone();
        let (nw, mut rx) = Network::start(
            NetConfig::new(listen, load::copy_key(key)?),
            vec![(spec.clone(), admit.clone())],
        )
        .await
        .map_err(err)?;
        let inbound = rx.remove(CHANNEL).ok_or("no inbound for the channel")?;
        nets.push(nw);
        parts.push((inbound, admit));
    }
    let p2p: Vec<String> = nets.iter().map(|x| x.local_addr().to_string()).collect();
    for nw in &nets {
        for a in &p2p {
            nw.add_peer(a.clone());
        }
    }
    let mut nodes = Vec::new();
    let mut api = Vec::new();
    for (i, (inbound, admit)) in parts.into_iter().enumerate() {
        let node = Node::start_bft(
            NodeConfig {
                data_dir: dirs[i].path().to_path_buf(),
                genesis: net.genesis.clone(),
                key: load::copy_key(&net.validators[i])?,
                crypto: CryptoService::cpu(),
                cutter: Some(CutterConfig::from_params(params)),
                clock: None,
            },
            BftSetup {
                net: nets[i].clone(),
                inbound,
                admit,
                timeouts: None,
                sync: Default::default(),
            },
        )
        .await
        .map_err(err)?;
        api.push(
            bpu_ledger::server::spawn(node.clone(), "127.0.0.1:0")
                .await
                .map_err(err)?
                .to_string(),
        );
        nodes.push(node);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while nets.iter().any(|x| x.peers(CHANNEL).len() + 1 < n) {
        if Instant::now() > deadline {
            let got: Vec<usize> = nets.iter().map(|x| x.peers(CHANNEL).len()).collect();
            return Err(format!(
                "validators not all connected within 30 s (peers per node: {got:?})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((nodes, nets, api))
}

/// Every node reaches node 0's tip and holds the same block there, with a certificate of the
/// validator set.
pub(crate) async fn check_agreement(net: &load::Net, nodes: &[Node]) -> Result<(), String> {
    let h = nodes.first().ok_or("no nodes")?.tip().height;
    let deadline = Instant::now() + Duration::from_secs(60);
    while nodes.iter().any(|x| x.tip().height < h) {
        if Instant::now() > deadline {
            let hs: Vec<u64> = nodes.iter().map(|x| x.tip().height).collect();
            return Err(format!(
                "nodes did not reach height {h} within 60 s: {hs:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let set = net.genesis.membership.validator_set().map_err(err)?.set;
    let mut hash = None;
    for (i, node) in nodes.iter().enumerate() {
        let bytes = node
            .block(h)
            .map_err(err)?
            .ok_or_else(|| format!("node {i} has no block {h}"))?;
        let b = Block::decode(&bytes).map_err(err)?;
        let id = b.header.hash().0;
        if *hash.get_or_insert(id) != id {
            return Err(format!(
                "node {i} holds another block at height {h}: a fork"
            ));
        }
        verify_commit(CHANNEL, h, &id, &b.cert, &set)
            .map_err(|e| format!("node {i}, certificate of block {h}: {e}"))?;
    }
    Ok(())
}

/// One network of `n` validators: setup, peak, paced run, agreement check.
fn run_network(sh: &Shared<'_>, n: usize) -> Result<NetworkRun, String> {
    let opts = sh.opts;
    let progress = |s: &str| (opts.progress)(&format!("{n} validators: {s}"));
    let t_setup = Instant::now();
    progress(&format!("{} accounts: keys and genesis", opts.accounts));
    let net = load::make_net(opts.accounts, n, sh.params.clone())?;
    let dirs: Vec<tempfile::TempDir> = (0..n)
        .map(|_| tempfile::tempdir().map_err(err))
        .collect::<Result<_, _>>()?;
    let connections = opts.connections.max(n).div_ceil(n) * n;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(err)?;
    let run = rt.block_on(async {
        progress("starting nodes on loopback");
        let (nodes, nets, api) = start_network(&net, &dirs, &sh.params).await?;
        let node0 = &nodes[0];
        progress("deploying the token and funding every account");
        load::setup(node0, &api[0], &net, &sh.elf, connections).await?;
        let setup_seconds = t_setup.elapsed().as_secs_f64();
        let groups = load::groups_for(opts.accounts);
        progress(&format!("signing {} transfers", opts.transfers));
        let peak_plan = load::plan(&net, groups, opts.transfers, 1_000_000)?;
        progress(&format!(
            "peak: {} transfers over {connections} connections to {n} nodes, closed loop",
            opts.transfers
        ));
        let (h0, b0, c0, m0, t0) = (
            node0.tip().height,
            p2p_sent(&nets),
            cpu_seconds(),
            machine_ticks(),
            Instant::now(),
        );
        let peak = load::run_load(&nodes, &api, connections, &peak_plan, None).await?;
        let (wall, c1, m1) = (t0.elapsed().as_secs_f64(), cpu_seconds(), machine_ticks());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let peak_machine_cores_busy = m0.zip(m1).and_then(|(a, b)| {
            let total = b.1.checked_sub(a.1)?;
            (total > 0).then(|| b.0.saturating_sub(a.0) as f64 / total as f64 * cores)
        });
        let h1 = node0.tip().height;
        let peak_rounds = rounds(node0, h0 + 1, h1)?;
        let peak_p2p_bytes_per_tx =
            (p2p_sent(&nets) - b0) as f64 / peak.valid.max(1) as f64;
        let peak_cpu_cores_busy = c0.zip(c1).map(|(a, b)| (b - a) / wall.max(1e-9));
        let rate = (peak.tps / 2.0).max(1.0);
        let paced_n = ((rate * if opts.quick { 3.0 } else { 10.0 }) as usize).max(1000);
        let paced_plan = load::plan(&net, groups, paced_n, 2_000_000)?;
        progress(&format!(
            "peak {:.0} tx/s, p50 {:.0} ms; paced: {paced_n} transfers at {rate:.0}/s",
            peak.tps, peak.latency_ms_p50
        ));
        let h0 = node0.tip().height;
        let paced = load::run_load(&nodes, &api, connections, &paced_plan, Some(rate)).await?;
        let paced_rounds = rounds(node0, h0 + 1, node0.tip().height)?;
        progress(&format!(
            "paced p50 {:.0} ms, p99 {:.0} ms; checking that every node holds the same certified chain",
            paced.latency_ms_p50, paced.latency_ms_p99
        ));
        check_agreement(&net, &nodes).await?;
        for nw in &nets {
            nw.shutdown();
        }
        Ok::<_, String>(NetworkRun {
            validators: n,
            connections,
            setup_seconds,
            meets_target: peak.tps >= opts.target_tps,
            peak,
            peak_rounds,
            peak_p2p_bytes_per_tx,
            peak_cpu_cores_busy,
            peak_machine_cores_busy,
            paced,
            paced_rounds,
        })
    });
    // Stop every node's tasks before their data directories go.
    rt.shutdown_timeout(Duration::from_secs(10));
    drop(dirs);
    run
}

/// Runs the consensus benchmark.
pub fn run(opts: &Options<'_>) -> Result<ConsensusReport, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let elf = std::fs::read(&opts.token_elf).map_err(|e| {
        format!(
            "reading {}: {e}; build the contracts with `contracts/build.sh` or pass --token",
            opts.token_elf.display()
        )
    })?;
    let mut counts: Vec<usize> = opts.nodes.iter().copied().filter(|&n| n >= 1).collect();
    counts.sort_unstable();
    counts.dedup();
    if counts.is_empty() {
        return Err("no validator counts to measure".into());
    }

    let iterations = if opts.quick { 200 } else { 2000 };
    let mut certificates = Vec::new();
    for n in [4usize, 100] {
        (opts.progress)(&format!(
            "certificates: {n} validators, {iterations} verifications"
        ));
        certificates.push(cert_figures(n, iterations)?);
    }
    let cert_verify_ratio = match (certificates.first(), certificates.last()) {
        (Some(a), Some(b)) => b.verify_us / a.verify_us.max(1e-9),
        _ => 0.0,
    };

    let params = ChannelParams {
        block_timeout_ms: opts.block_timeout_ms,
        ..ChannelParams::default()
    };
    let t = default_timeouts(Duration::from_millis(u64::from(opts.block_timeout_ms)));
    let sh = Shared {
        opts,
        elf,
        params: params.clone(),
    };
    let mut runs: Vec<NetworkRun> = Vec::new();
    for &n in &counts {
        let r = run_network(&sh, n)?;
        (opts.progress)(&format!(
            "{n} validators: peak {:.0} tx/s (target {:.0}: {})",
            r.peak.tps,
            opts.target_tps,
            if r.meets_target { "met" } else { "not met" }
        ));
        runs.push(r);
    }
    let last = counts.last().copied().unwrap_or(0);
    let stopped = if !opts.extend {
        "not extended past the listed counts".to_string()
    } else {
        let mut n = last;
        loop {
            let Some(r) = runs.last() else {
                break "nothing measured".to_string();
            };
            if !r.meets_target {
                break format!(
                    "{} validators peaked at {:.0} tx/s, below {:.0}",
                    r.validators, r.peak.tps, opts.target_tps
                );
            }
            n += 3;
            if n > opts.max_nodes {
                break format!("the limit of {} validators was reached", opts.max_nodes);
            }
            let r = run_network(&sh, n)?;
            (opts.progress)(&format!(
                "{n} validators: peak {:.0} tx/s (target {:.0}: {})",
                r.peak.tps,
                opts.target_tps,
                if r.meets_target { "met" } else { "not met" }
            ));
            runs.push(r);
        }
    };
    let max_validators_at_target = runs
        .iter()
        .filter(|r| r.meets_target)
        .map(|r| r.validators)
        .max();
    Ok(ConsensusReport {
        cpu_model: crate::verify::cpu_model(),
        cores,
        backend: "cpu".into(),
        accounts: opts.accounts,
        transfers: opts.transfers,
        block_max_txs: params.block_max_txs,
        block_max_bytes: params.block_max_bytes,
        block_timeout_ms: params.block_timeout_ms,
        timeouts: t,
        target_tps: opts.target_tps,
        runs,
        max_validators_at_target,
        stopped,
        certificates,
        cert_verify_ratio,
    })
}

impl ConsensusReport {
    /// The report as markdown.
    pub fn markdown(&self) -> String {
        let mut o = String::from("## Consensus: BFT validators in one process\n\n");
        o.push_str(&format!(
            "CPU: {} ({} cores), crypto backend {}. Each validator is a full node in this \
             process (own data directory, p2p on 127.0.0.1); clients spread evenly over all \
             nodes submit pre-signed token transfers ({} accounts); commit times are node 0's. \
             Blocks of at most {} transactions / {} bytes / {} ms; consensus timeouts of round \
             0: propose {} ms, prevote {} ms, precommit {} ms (doubling per round).\n\n",
            self.cpu_model.as_deref().unwrap_or("unknown"),
            self.cores,
            self.backend,
            self.accounts,
            self.block_max_txs,
            self.block_max_bytes,
            self.block_timeout_ms,
            self.timeouts.propose_ms,
            self.timeouts.prevote_ms,
            self.timeouts.precommit_ms,
        ));
        o.push_str("| validators | run | offered tx/s | valid tx/s | valid / invalid / rejected | blocks | tx per block | block interval | latency p50 | latency p99 | rounds per height | p2p bytes per tx | cores busy: bench / machine |\n");
        o.push_str(
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
        );
        for r in &self.runs {
            for (name, f, rounds, extra) in [
                (
                    "peak",
                    &r.peak,
                    &r.peak_rounds,
                    Some((
                        r.peak_p2p_bytes_per_tx,
                        r.peak_cpu_cores_busy,
                        r.peak_machine_cores_busy,
                    )),
                ),
                ("half of peak", &r.paced, &r.paced_rounds, None),
            ] {
                o.push_str(&format!(
                    "| {} | {name} | {} | **{:.0}** | {} / {} / {} | {} | {:.0} | {:.0} ms | {:.0} ms | {:.0} ms | {:.2} (max round {}) | {} | {} |\n",
                    r.validators,
                    f.offered_tps.map_or("max".to_string(), |x| format!("{x:.0}")),
                    f.tps,
                    f.valid,
                    f.invalid,
                    f.rejected,
                    f.blocks,
                    f.txs_per_block,
                    f.block_interval_ms,
                    f.latency_ms_p50,
                    f.latency_ms_p99,
                    rounds.rounds_per_height,
                    rounds.max_round,
                    extra.map_or("".to_string(), |e| format!("{:.0}", e.0)),
                    extra.map_or("".to_string(), |e| {
                        let f = |x: Option<f64>| x.map_or("?".to_string(), |c| format!("{c:.2}"));
                        format!("{} / {}", f(e.1), f(e.2))
                    }),
                ));
            }
        }
        o.push_str(&format!(
            "\nLargest validator count sustaining ≥ {:.0} valid transfers/s (peak, measured): {}. \
             Stopped: {}.\n",
            self.target_tps,
            match self.max_validators_at_target {
                Some(n) => format!("**{n}**"),
                None => format!(
                    "**none** (even {} validators peak below it)",
                    self.runs.first().map_or(0, |r| r.validators)
                ),
            },
            self.stopped
        ));
        o.push_str("\nPer block at peak on node 0 (validation / block store / state commit): ");
        let parts: Vec<String> = self
            .runs
            .iter()
            .map(|r| {
                format!(
                    "{} validators {:.0} / {:.0} / {:.0} ms",
                    r.validators,
                    r.peak.validate_ms_per_block,
                    r.peak.store_ms_per_block,
                    r.peak.state_ms_per_block
                )
            })
            .collect();
        o.push_str(&parts.join("; "));
        o.push_str(".\n\n");
        o.push_str("| certificate of | signers | bytes | `QuorumCert::verify` | `light::verify_commit` | each vote verified alone |\n");
        o.push_str("| --- | --- | --- | --- | --- | --- |\n");
        for c in &self.certificates {
            o.push_str(&format!(
                "| {} validators | {} | {} | **{:.0} µs** | {:.0} µs | {:.0} µs |\n",
                c.validators,
                c.signers,
                c.cert_bytes,
                c.verify_us,
                c.verify_commit_us,
                c.individual_votes_us
            ));
        }
        if let (Some(a), Some(b)) = (self.certificates.first(), self.certificates.last()) {
            o.push_str(&format!(
                "\nCertificate verification, {} vs {} validators: ×{:.2} ({} iterations each).\n",
                b.validators, a.validators, self.cert_verify_ratio, a.iterations
            ));
        }
        o
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stat_times_reads_the_name_and_user_plus_system_time() {
        // pid (name) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime …; a name may hold spaces and parentheses.
        let line = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0 20 0";
        assert_eq!(super::stat_times(line), Some(("a (b) c", 4.0)));
        assert_eq!(super::stat_times("42 (x) S 1 2"), None);
    }
}
