//! The `bpu` command line: devices, hashing, signature verification, self-test and benchmarks
//! over CPU or BPU backends.

mod gateway_cli;
mod ledger_cli;
mod light_cli;
mod selftest;
mod verify;

/// mimalloc instead of glibc's allocator: the nodes and the gateway allocate per transaction
/// (decoded messages, rows, JSON), and glibc's arenas spent up to a fifth of the gateway's
/// time in `_int_malloc`/`_int_free` under load (`perf`, `bpu bench gateway`).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{bail, Context, Result};
use bpu_runtime::CryptoService;
use clap::{Parser, Subcommand};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// bpu: a permissioned blockchain platform whose hot paths run on a Blockchain Processing Unit.
///
/// Devices are named by URI: `cpu` (software only), `sim://` (the Verilator model of the BPU in
/// this process; options such as `sim://?crypto=2&irq=off&depth=64&mem=256M`), or
/// `vfio://0000:03:00.0` (an FPGA board bound to vfio-pci).
#[derive(Parser)]
#[command(name = "bpu", version, about, long_about)]
struct Cli {
    /// Log filter, e.g. `info` or `bpu_driver=debug` (also from RUST_LOG).
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the devices this machine can open, with their engines.
    Devices {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print SHA-256 digests of files exactly as `sha256sum` does (`-` or no file: stdin).
    Hash {
        /// Files to hash.
        files: Vec<String>,
        /// `cpu`, `sim://…` or `vfio://…`.
        #[arg(long, short, default_value = "sim://")]
        device: String,
    },
    /// Verify an ECDSA P-256 / SHA-256 signature over a file, like `openssl dgst -sha256 -verify`.
    ///
    /// The file is hashed with SHA-256 and the signature checked on the device. Prints
    /// `Verified OK` and exits 0 when the signature is valid, prints `Verification failure` and
    /// exits 1 when it is not; exits 2 with a message on errors (unreadable or malformed key or
    /// signature, missing file, device failure).
    ///
    /// Example: `openssl dgst -sha256 -sign k.pem -out f.sig f` then
    /// `bpu verify --pubkey pub.pem --signature f.sig f`.
    #[command(long_about)]
    Verify {
        /// Public key file: PEM (`-----BEGIN PUBLIC KEY-----`, as `openssl ec -pubout` writes),
        /// DER SubjectPublicKeyInfo, or a raw SEC1 point (65 bytes 04‖x‖y or 33 bytes 02/03‖x).
        /// The format is detected.
        #[arg(long, short = 'k', value_name = "KEY")]
        pubkey: PathBuf,
        /// Signature file, in the format `--sig-format` names.
        #[arg(long, short = 's', value_name = "SIG")]
        signature: PathBuf,
        /// Signature encoding.
        #[arg(long, value_enum, default_value = "der")]
        sig_format: verify::SigFormat,
        /// The signed file (`-`: stdin).
        #[arg(value_name = "FILE")]
        file: String,
        /// `cpu`, `sim://…` or `vfio://…`.
        #[arg(long, short, default_value = "sim://")]
        device: String,
        /// Print the outcome as JSON (`valid`, `digest`, `device`, `file`); the exit status is
        /// the same.
        #[arg(long)]
        json: bool,
    },
    /// Check a device end to end: registers, queues, hashing against the CPU, fault recovery.
    Selftest {
        /// `cpu`, `sim://…` or `vfio://…`.
        #[arg(long, short, default_value = "sim://")]
        device: String,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a P-256 key pair for a member or node (PEM) and its public identity file `<out>.pub`
    /// (P-256 key, the BLS key derived from the private key, its proof of possession); prints
    /// the public keys and the account id.
    Keygen(ledger_cli::KeygenArgs),
    /// Write a channel's genesis file: organizations, members with keys and roles, block cutter
    /// and endorsement parameters.
    Genesis(ledger_cli::GenesisArgs),
    /// Bring up a local network in a directory, creating keys, genesis and node configs on
    /// first use: N validator node processes ordering by BFT consensus on loopback (default 4),
    /// or one node in this process with `--nodes 1`; prints heights and throughput as it runs.
    Up(ledger_cli::UpArgs),
    /// Run the gateway (REST API, dashboard, metrics) in front of a network's nodes, or manage
    /// its users offline (`bpu gateway user add NAME --role admin --password-file F`); see
    /// docs/gateway.md.
    Gateway(gateway_cli::GatewayArgs),
    /// Run one node from a config file (TOML: data_dir, genesis, key, listen, device, optional
    /// block_max_txs / block_max_bytes / block_timeout_ms; a `[p2p]` section (listen, peers,
    /// *_timeout_ms) for BFT ordering with the other validators; `[[channels]]` entries
    /// (genesis, data_dir, listen) for more channels in the same process; snapshot_every /
    /// snapshot_keep, keep_blocks (pruning), fast_sync and checkpoint = "HEIGHT:HASH"; see
    /// docs/ledger.md, "Running a network").
    Node {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Crypto backend, overriding the config's `device`: `cpu`, `sim://…`, `vfio://…`.
        #[arg(long, short)]
        device: Option<String>,
        /// Progress lines as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Deploy, activate, call and query contracts.
    Contract {
        #[command(subcommand)]
        cmd: ledger_cli::ContractCmd,
    },
    /// Transaction status, with its inclusion proof.
    Tx {
        #[command(subcommand)]
        cmd: ledger_cli::TxCmd,
    },
    /// Read committed blocks.
    Block {
        #[command(subcommand)]
        cmd: ledger_cli::BlockCmd,
    },
    /// Change the channel's membership (admin transactions).
    Member {
        #[command(subcommand)]
        cmd: ledger_cli::MemberCmd,
    },
    /// Check a committed block's quorum certificate against the channel's validator set (from
    /// its genesis), and a transaction's inclusion proof under it, as a light client: no node
    /// state needed, one pairing check whatever the number of validators.
    VerifyBlock(light_cli::VerifyBlockArgs),
    /// Follow contract events from a cursor `HEIGHT:INDEX`; each record is printed once, and
    /// `--json` prints the cursor to resume from.
    Events {
        /// Where to start.
        #[arg(long, default_value = "0:0")]
        from: String,
        /// Stop after this many records.
        #[arg(long)]
        count: Option<usize>,
        #[command(flatten)]
        client: ledger_cli::ClientArgs,
    },
    /// Run a benchmark and print JSON or a markdown table.
    Bench {
        #[command(subcommand)]
        which: BenchCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// SHA-256 engine: cycles per block, command overhead, throughput with 1 and all engines,
    /// projected GB/s at 250 MHz, and the CPU backend on this machine.
    Hash(BenchArgs),
    /// ECDSA P-256 verification: `openssl speed ecdsap256` on 1 and all cores, the CPU backend
    /// (AWS-LC) on 1 and all threads, and their ratios; device figures once its engine exists.
    Verify(BenchArgs),
    /// The ledger node end to end (in this process, clients over TCP): validated-and-committed
    /// token transfers per second, verification efficiency against `openssl speed` on all
    /// cores (same run), latency p50/p99 at half of peak, block size and interval, contract
    /// executions per second.
    Ledger(LedgerBenchArgs),
    /// BFT consensus in this process (each validator a full node on loopback p2p, clients over
    /// TCP spread over all nodes): valid token transfers committed per second and latency
    /// p50/p99 at peak and at half of peak for 4, 7 and 10 validators, the largest validator
    /// count that still sustains 2,000 transfers/s, and certificate verification time for 4 and
    /// 100 validators.
    Consensus(ConsensusBenchArgs),
    /// The gateway's REST API in front of 4 BFT validators in this process, clients over HTTP:
    /// committed transfers/s (goal ≥ 2,000), pre-confirm latency p50/p99 (goal p99 < 50 ms) and
    /// commit latency p50/p99 at half of peak (goal p99 < 3 s), side by side with the same
    /// load sent straight to a node with the Rust client, and what the gateway costs per
    /// transaction (CPU time, latency, throughput). Exits 1 when any transfer is refused,
    /// rejected or not committed, or the ledger disagrees with the gateway.
    Gateway(GatewayBenchArgs),
}

#[derive(clap::Args)]
struct GatewayBenchArgs {
    /// Gateway accounts, created through the API (the direct run has as many, from the
    /// genesis); each pair of accounts has one transfer in flight at a time.
    #[arg(long, default_value_t = 8_192)]
    accounts: usize,
    /// Length of each gateway run (peak, then half of peak); the direct peak sends as many
    /// transfers as the gateway's peak committed, the paced runs rate × seconds.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// HTTP keep-alive connections to the gateway (one worker each, one request at a time),
    /// and Rust client connections to the node in the direct runs.
    #[arg(long, default_value_t = 128)]
    connections: usize,
    /// The token contract (`contracts/build.sh` builds it).
    #[arg(long, default_value = "contracts/build/token.elf")]
    token: PathBuf,
    /// Block cutter timeout in ms (the proposer waits at most this long for a block to fill).
    #[arg(long, default_value_t = 100)]
    block_timeout_ms: u32,
    /// Print JSON instead of markdown.
    #[arg(long)]
    json: bool,
    /// At most 1,024 accounts and 5-second runs, for a fast check.
    #[arg(long)]
    quick: bool,
}

#[derive(clap::Args)]
struct ConsensusBenchArgs {
    /// Validator counts to measure; past the largest, counts go on in steps of 3 while the peak
    /// meets `--target-tps` (up to `--max-nodes`).
    #[arg(long, value_delimiter = ',', default_value = "4,7,10")]
    nodes: Vec<usize>,
    /// Token accounts (members with their own keys); transfers in flight never share one.
    #[arg(long, default_value_t = 32_768)]
    accounts: usize,
    /// Transfers in each peak run.
    #[arg(long, default_value_t = 40_000)]
    transfers: usize,
    /// The token contract (`contracts/build.sh` builds it).
    #[arg(long, default_value = "contracts/build/token.elf")]
    token: PathBuf,
    /// Block cutter timeout in ms (the proposer waits at most this long for a block to fill).
    #[arg(long, default_value_t = 100)]
    block_timeout_ms: u32,
    /// Client connections, spread evenly over the nodes (at least one per node).
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// The rate (valid transfers/s) whose largest sustaining validator count is reported.
    #[arg(long, default_value_t = 2_000.0)]
    target_tps: f64,
    /// Largest validator count tried past `--nodes`.
    #[arg(long, default_value_t = 40)]
    max_nodes: usize,
    /// Measure only the listed counts.
    #[arg(long)]
    no_extend: bool,
    /// Print JSON instead of markdown.
    #[arg(long)]
    json: bool,
    /// 4 validators only and a small workload, for a fast check.
    #[arg(long)]
    quick: bool,
}

#[derive(clap::Args)]
struct LedgerBenchArgs {
    /// Crypto backend of the node: `cpu`, `sim://…`, `vfio://…`.
    #[arg(long, short, default_value = "cpu")]
    device: String,
    /// Token accounts (members with their own keys); transfers in flight never share one.
    #[arg(long, default_value_t = 32_768)]
    accounts: usize,
    /// Transfers in the peak run.
    #[arg(long, default_value_t = 80_000)]
    transfers: usize,
    /// The token contract (`contracts/build.sh` builds it).
    #[arg(long, default_value = "contracts/build/token.elf")]
    token: PathBuf,
    /// Block cutter timeout in ms (the channel default is 2,000).
    #[arg(long, default_value_t = 2_000)]
    block_timeout_ms: u32,
    /// Client connections submitting in parallel.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Print JSON instead of markdown.
    #[arg(long)]
    json: bool,
    /// A small network and short runs, for a fast check.
    #[arg(long)]
    quick: bool,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Device to measure (`sim://…` or `vfio://…`; `bench verify` also takes `cpu`, the CPU side
    /// only).
    #[arg(long, short, default_value = "sim://")]
    device: String,
    /// Print JSON instead of markdown.
    #[arg(long)]
    json: bool,
    /// Smaller inputs and shorter runs, for a fast check.
    #[arg(long)]
    quick: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bpu: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn run(cmd: Cmd) -> Result<ExitCode> {
    match cmd {
        Cmd::Devices { json } => devices(json),
        Cmd::Keygen(a) => ledger_cli::keygen(&a),
        Cmd::Genesis(a) => ledger_cli::genesis(&a),
        Cmd::Up(a) => ledger_cli::up(&a),
        Cmd::Gateway(a) => gateway_cli::run(&a),
        Cmd::Node {
            config,
            device,
            json,
        } => ledger_cli::node(&config, device, json),
        Cmd::Contract { cmd } => ledger_cli::contract(&cmd),
        Cmd::Tx { cmd } => ledger_cli::tx(&cmd),
        Cmd::Block { cmd } => ledger_cli::block(&cmd),
        Cmd::Member { cmd } => ledger_cli::member(&cmd),
        Cmd::VerifyBlock(a) => light_cli::verify_block(&a),
        Cmd::Events {
            from,
            count,
            client,
        } => ledger_cli::events(&from, count, &client),
        Cmd::Hash { files, device } => hash(&files, &device),
        Cmd::Verify {
            pubkey,
            signature,
            sig_format,
            file,
            device,
            json,
        } => verify::run(
            &verify::Args {
                pubkey: &pubkey,
                signature: &signature,
                sig_format,
                file: &file,
                device: &device,
                json,
            },
            &runtime()?,
        ),
        Cmd::Selftest { device, json } => {
            let report = selftest::run(&device);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.text());
            }
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Bench {
            which:
                BenchCmd::Hash(BenchArgs {
                    device,
                    json,
                    quick,
                }),
        } => {
            if device == "cpu" {
                bail!("`bpu bench hash` measures a device; give --device sim://… or vfio://… (the CPU is measured alongside)");
            }
            let dev =
                bpu_driver::Device::open(&device).with_context(|| format!("opening {device}"))?;
            let progress = |s: &str| eprintln!("bench: {s}");
            let report =
                bpu_bench::hash::run(&dev, quick, &progress).map_err(anyhow::Error::msg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.markdown());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench {
            which:
                BenchCmd::Verify(BenchArgs {
                    device,
                    json,
                    quick,
                }),
        } => {
            let progress = |s: &str| eprintln!("bench: {s}");
            let opts = bpu_bench::verify::Options {
                device,
                quick,
                progress: &progress,
            };
            let report = bpu_bench::verify::run(&opts).map_err(anyhow::Error::msg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.markdown());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench {
            which: BenchCmd::Ledger(a),
        } => {
            let progress = |s: &str| eprintln!("bench: {s}");
            let opts = bpu_bench::ledger::Options {
                device: a.device,
                quick: a.quick,
                accounts: if a.quick {
                    a.accounts.min(1024)
                } else {
                    a.accounts
                },
                transfers: if a.quick {
                    a.transfers.min(5_000)
                } else {
                    a.transfers
                },
                token_elf: a.token,
                block_timeout_ms: a.block_timeout_ms,
                connections: a.connections,
                progress: &progress,
            };
            let report = bpu_bench::ledger::run(&opts).map_err(anyhow::Error::msg)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.markdown());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench {
            which: BenchCmd::Consensus(a),
        } => {
            let progress = |s: &str| eprintln!("bench: {s}");
            let opts = bpu_bench::consensus::Options {
                quick: a.quick,
                nodes: if a.quick { vec![4] } else { a.nodes },
                accounts: if a.quick {
                    a.accounts.min(1024)
                } else {
                    a.accounts
                },
                transfers: if a.quick {
                    a.transfers.min(3_000)
                } else {
                    a.transfers
                },
                token_elf: a.token,
                block_timeout_ms: a.block_timeout_ms,
                connections: a.connections,
                target_tps: a.target_tps,
                extend: !a.quick && !a.no_extend,
                max_nodes: a.max_nodes,
                progress: &progress,
            };
            let report = bpu_bench::consensus::run(&opts).map_err(anyhow::Error::msg)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.markdown());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench {
            which: BenchCmd::Gateway(a),
        } => {
            let progress = |s: &str| eprintln!("bench: {s}");
            let opts = bpu_bench::gateway::Options {
                accounts: if a.quick {
                    a.accounts.min(1024)
                } else {
                    a.accounts
                },
                seconds: if a.quick {
                    a.seconds.min(5.0)
                } else {
                    a.seconds
                },
                connections: a.connections,
                token_elf: a.token,
                block_timeout_ms: a.block_timeout_ms,
                progress: &progress,
            };
            let report = bpu_bench::gateway::run(&opts).map_err(anyhow::Error::msg)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.markdown());
            }
            if !report.passed() {
                for f in &report.failures {
                    eprintln!("bpu: bench gateway failed: {f}");
                }
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[derive(serde::Serialize)]
struct DeviceRow {
    uri: String,
    transport: String,
    version: String,
    build_id: String,
    queues: u32,
    engines: Vec<String>,
}

fn devices(json: bool) -> Result<ExitCode> {
    let mut rows = Vec::new();
    for uri in bpu_driver::list() {
        match bpu_driver::Device::open(&uri) {
            Ok(d) => {
                let i = d.info();
                rows.push(DeviceRow {
                    uri: uri.clone(),
                    transport: i.transport.clone(),
                    version: format!("{}.{}", i.version.0, i.version.1),
                    build_id: format!("{:08x}", i.build_id),
                    queues: i.queues,
                    engines: i
                        .engines
                        .iter()
                        .map(|e| format!("{} x{} (v{})", e.name(), e.instances, e.version))
                        .collect(),
                });
            }
            Err(e) => eprintln!("bpu: {uri}: {e}"),
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        println!(
            "{:<24} {:<8} {:<10} {:<7} engines",
            "device", "regmap", "build", "queues"
        );
        for r in &rows {
            println!(
                "{:<24} {:<8} {:<10} {:<7} {}",
                r.uri,
                r.version,
                r.build_id,
                r.queues,
                r.engines.join(", ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `sha256sum`'s rendering of a file name: backslash-escaped, with a leading `\` if escaped.
fn sha256sum_line(digest: &str, name: &str) -> String {
    if name.contains(['\\', '\n', '\r']) {
        let esc = name
            .replace('\\', "\\\\")
            .replace('\n', "\\n")
            .replace('\r', "\\r");
        format!("\\{digest}  {esc}")
    } else {
        format!("{digest}  {name}")
    }
}

fn hash(files: &[String], device: &str) -> Result<ExitCode> {
    let svc = CryptoService::open(device).with_context(|| format!("opening {device}"))?;
    let names: Vec<String> = if files.is_empty() {
        vec!["-".into()]
    } else {
        files.to_vec()
    };
    // Read everything first so the backend can hash all files in one batch.
    let mut ok_names = Vec::new();
    let mut data = Vec::new();
    let mut failed = false;
    for n in &names {
        let r = if n == "-" {
            let mut v = Vec::new();
            std::io::stdin().read_to_end(&mut v).map(|_| v)
        } else {
            std::fs::read(n)
        };
        match r {
            Ok(v) => {
                ok_names.push(n.clone());
                data.push(v);
            }
            Err(e) => {
                let why = match e.kind() {
                    std::io::ErrorKind::NotFound => "No such file or directory".to_string(),
                    std::io::ErrorKind::PermissionDenied => "Permission denied".to_string(),
                    _ if std::path::Path::new(n).is_dir() => "Is a directory".to_string(),
                    _ => e.to_string(),
                };
                eprintln!("bpu: {n}: {why}");
                failed = true;
            }
        }
    }
    let digests = runtime()?.block_on(svc.sha256_batch(&data))?;
    let mut out = std::io::stdout().lock();
    for (n, d) in ok_names.iter().zip(digests) {
        writeln!(out, "{}", sha256sum_line(&d.to_string(), n))?;
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::sha256sum_line;

    #[test]
    fn escapes_names_like_sha256sum() {
        assert_eq!(sha256sum_line("ab", "x"), "ab  x");
        assert_eq!(sha256sum_line("ab", "a\\b"), "\\ab  a\\\\b");
        assert_eq!(sha256sum_line("ab", "a\nb"), "\\ab  a\\nb");
    }
}
