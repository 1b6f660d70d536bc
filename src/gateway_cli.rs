//! `bpu gateway`: run the gateway in front of a network, and manage its users offline.

use anyhow::{anyhow, bail, Context, Result};
use bpu_gateway::auth::Role;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// `bpu gateway`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct GatewayArgs {
    #[command(subcommand)]
    pub cmd: Option<GatewayCmd>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Where the gateway's state lives: by default everything comes from a network directory.
#[derive(clap::Args, Clone)]
pub struct StoreArgs {
    /// Network directory (`bpu up` writes it): the nodes' configs, the issuer key
    /// `admin.pem`, and the defaults `gateway.db` and `gateway.key`.
    #[arg(long, default_value = "bpu-net")]
    pub net: PathBuf,
    /// Database: `sqlite://PATH` (default `sqlite://NET/gateway.db`) or `postgres://USER@HOST/DB`.
    #[arg(long, env = "BPU_GATEWAY_DB")]
    pub db: Option<String>,
}

impl StoreArgs {
    pub fn db_url(&self) -> String {
        self.db
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.net.join("gateway.db").display()))
    }
}

/// Running the gateway.
#[derive(clap::Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// HTTP address of the API and the dashboard.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Client address of a node (repeat for each; default: every `NET/node*.toml`).
    #[arg(long = "node", value_name = "ADDR")]
    pub nodes: Vec<String>,
    /// The gateway's ledger identity: a member with the admin role; it owns the token.
    /// Default `NET/admin.pem`.
    #[arg(long)]
    pub issuer_key: Option<PathBuf>,
    /// The 32-byte key file sealing account keys (created if missing). Default `NET/gateway.key`.
    #[arg(long)]
    pub key_file: Option<PathBuf>,
    /// Deploy and initialize the token contract from this ELF when the channel lacks it.
    #[arg(long)]
    pub token_elf: Option<PathBuf>,
    /// The token contract's name.
    #[arg(long, default_value = "token")]
    pub token: String,
    /// Lifetime of login tokens and sessions, seconds.
    #[arg(long, default_value_t = 12 * 3600)]
    pub session_ttl_s: u64,
    /// Largest request body, bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_body: usize,
    /// Most transactions in one submission batch (1–256).
    #[arg(long, default_value_t = bpu_ledger::api::MAX_BATCH)]
    pub batch_max: usize,
    /// How long the submitter gathers a batch, milliseconds.
    #[arg(long, default_value_t = 5)]
    pub batch_wait_ms: u64,
    /// A node this many blocks behind the highest is not used.
    #[arg(long, default_value_t = 5)]
    pub max_lag: u64,
}

/// Offline administration.
#[derive(clap::Subcommand)]
pub enum GatewayCmd {
    /// Gateway users (created offline, e.g. the first admin).
    User {
        #[command(subcommand)]
        cmd: UserCmd,
    },
}

#[derive(clap::Subcommand)]
pub enum UserCmd {
    /// Add a user to the gateway's database (works while the gateway runs, or before it ever
    /// started).
    Add {
        /// User name: 1–64 letters, digits, `-`, `_`, `.`, `@`.
        name: String,
        /// `admin`, `operator` or `user`.
        #[arg(long, default_value = "user")]
        role: String,
        /// A file holding the password (its first line; 8–256 characters).
        #[arg(long)]
        password_file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
        /// Print the new user as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Client addresses of the node configs in `net`.
pub fn net_nodes(net: &Path) -> Result<Vec<String>> {
    let mut v = Vec::new();
    for i in 0.. {
        let p = net.join(format!("node{i}.toml"));
        if !p.exists() {
            break;
        }
        let cfg: crate::ledger_cli::NodeFile = toml::from_str(&std::fs::read_to_string(&p)?)
            .with_context(|| format!("{} is not a node config", p.display()))?;
        v.push(cfg.listen);
    }
    Ok(v)
}

pub fn run(a: &GatewayArgs) -> Result<ExitCode> {
    match &a.cmd {
        Some(GatewayCmd::User { cmd }) => user(cmd),
        None => serve(&a.run),
    }
}

fn user(cmd: &UserCmd) -> Result<ExitCode> {
    let UserCmd::Add {
        name,
        role,
        password_file,
        store,
        json,
    } = cmd;
    let role =
        Role::parse(role).ok_or_else(|| anyhow!("--role {role:?}: admin, operator or user"))?;
    let text = std::fs::read_to_string(password_file)
        .with_context(|| format!("reading {}", password_file.display()))?;
    let pw = text.lines().next().unwrap_or("").to_string();
    let rt = crate::runtime()?;
    rt.block_on(async {
        if store.db.is_none() {
            std::fs::create_dir_all(&store.net)?;
        }
        let db = bpu_gateway::db::open(&store.db_url())
            .await
            .map_err(|e| anyhow!("opening the database {}: {e}", store.db_url()))?;
        let u = bpu_gateway::handlers::add_user(&db, name, role, &pw)
            .await
            .map_err(|e| anyhow!("{e}"))?;
        db.audit(
            0,
            "user.create",
            &format!("user:{}", u.id),
            &format!("name={} role={} (offline)", u.name, u.role),
        )
        .await?;
        if *json {
            println!(
                "{}",
                serde_json::json!({"id": u.id, "name": u.name, "role": u.role})
            );
        } else {
            println!("user {} ({}) added with id {}", u.name, u.role, u.id);
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The gateway configuration from the flags.
pub fn config(a: &RunArgs) -> Result<bpu_gateway::Config> {
    let net = &a.store.net;
    let nodes = if a.nodes.is_empty() {
        net_nodes(net)?
    } else {
        a.nodes.clone()
    };
    if nodes.is_empty() {
        bail!(
            "no nodes: {} has no node0.toml; give --node ADDR (or --net DIR of a `bpu up` network)",
            net.display()
        );
    }
    if !(1..=bpu_ledger::api::MAX_BATCH).contains(&a.batch_max) {
        bail!(
            "--batch-max is between 1 and {}",
            bpu_ledger::api::MAX_BATCH
        );
    }
    let mut c = bpu_gateway::Config::new(
        a.store.db_url(),
        nodes,
        a.key_file
            .clone()
            .unwrap_or_else(|| net.join("gateway.key")),
        a.issuer_key
            .clone()
            .unwrap_or_else(|| net.join("admin.pem")),
    );
    c.listen = a.listen.clone();
    c.token_elf = a.token_elf.clone();
    c.tx.token = a.token.clone();
    c.session_ttl = Duration::from_secs(a.session_ttl_s);
    c.max_body = a.max_body;
    c.tx.batch_max = a.batch_max;
    c.tx.batch_wait = Duration::from_millis(a.batch_wait_ms);
    c.node.max_lag = a.max_lag;
    Ok(c)
}

fn serve(a: &RunArgs) -> Result<ExitCode> {
    crate::ledger_cli::exit_with_parent();
    let cfg = config(a)?;
    let rt = crate::runtime()?;
    rt.block_on(async {
        let g = bpu_gateway::start(cfg).await.map_err(|e| anyhow!("{e}"))?;
        eprintln!(
            "gateway on http://{0} (channel {1}): API http://{0}/api/v1, dashboard http://{0}/ui/",
            g.addr, g.state.channel
        );
        tokio::select! {
            _ = g.wait() => {}
            _ = tokio::signal::ctrl_c() => { eprintln!("gateway stopping"); }
        }
        Ok(ExitCode::SUCCESS)
    })
}
