//! Accounts: ledger identities whose keys the gateway holds, sealed at rest. Creation adds the
//! members to the channel through the gateway's admin identity, many accounts per membership
//! transaction (`_membership.add_members`), one such transaction at a time (they all write the
//! member count); a row is `creating` until its member is committed, and a restart finishes
//! what a crash interrupted. Accounts are disabled, never deleted.

use crate::db::{AccountRow, Db};
use crate::nodes::Nodes;
use crate::secrets::KeyFile;
use crate::txsvc::{Acct, TxService};
use bpu_ledger::client::Signer;
use bpu_ledger::format::TxStatus;
use bpu_ledger::system::{self, AddMemberArgs};
use bpu_ledger::Role as LedgerRole;
use bpu_runtime::SigningKey;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Most members added by one membership transaction.
pub const MAX_PER_TX: usize = 256;

struct Job {
    row: AccountRow,
    done: oneshot::Sender<Result<i64, String>>,
}

/// Adds accounts' members to the channel in batches.
#[derive(Clone)]
pub struct Creator {
    jobs: mpsc::Sender<Job>,
}

/// What the creator needs.
pub struct CreatorCtx {
    pub db: Db,
    pub nodes: Nodes,
    pub keys: Arc<KeyFile>,
    pub issuer: Arc<Signer>,
    pub tx: TxService,
    /// The organization the gateway's members join.
    pub org: String,
}

impl Creator {
    pub fn start(ctx: CreatorCtx) -> Creator {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(Arc::new(ctx), rx));
        Creator { jobs: tx }
    }

    /// Adds `row`'s member; answers its membership index once committed.
    pub async fn create(&self, row: AccountRow, timeout: Duration) -> Result<i64, String> {
        let (done, rx) = oneshot::channel();
        self.jobs
            .send(Job { row, done })
            .await
            .map_err(|_| "the account creator stopped".to_string())?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err("the account creator stopped".into()),
            Err(_) => Err(format!(
                "the ledger did not add the member within {timeout:?}; the account stays \
                 `creating` and is finished in the background"
            )),
        }
    }
}

/// A fresh account key as stored.
pub struct NewKey {
    /// SEC1 public key.
    pub sec1: Vec<u8>,
    pub ledger_id: [u8; 32],
    /// The private key's PEM, sealed under the key file and bound to the ledger id.
    pub sealed: Vec<u8>,
}

/// A fresh key for an account.
pub fn new_key(keys: &KeyFile) -> Result<NewKey, String> {
    let k = SigningKey::generate().map_err(|e| e.to_string())?;
    let sec1 = k.public_key().to_sec1().to_vec();
    let lid: [u8; 32] = Sha256::digest(&sec1).into();
    let pem = k.to_pem().map_err(|e| e.to_string())?;
    let sealed = keys.seal(pem.as_bytes(), &lid).map_err(|e| e.to_string())?;
    Ok(NewKey {
        sec1,
        ledger_id: lid,
        sealed,
    })
}

/// The view's entry of a stored account (its key unsealed).
pub fn acct_of(row: &AccountRow, keys: &KeyFile, channel: &str) -> Result<Option<Acct>, String> {
    let Some(member) = row.member else {
        return Ok(None);
    };
    let pem = keys
        .open(&row.sealed_key, &row.ledger_id)
        .map_err(|e| format!("account {}: {e}", row.id))?;
    let key = SigningKey::from_pem(&pem).map_err(|e| format!("account {}: {e}", row.id))?;
    let lid: [u8; 32] = row
        .ledger_id
        .as_slice()
        .try_into()
        .map_err(|_| format!("account {}: bad ledger id", row.id))?;
    Ok(Some(Acct {
        id: row.id,
        owner: row.owner,
        ledger_id: lid,
        active: row.state == "active",
        balance: row.balance,
        pending_out: 0,
        signer: Arc::new(Signer {
            key,
            channel: channel.to_string(),
            member: member as u32,
        }),
    }))
}

fn member_name(id: i64) -> String {
    format!("gw-{id}")
}

async fn run(ctx: Arc<CreatorCtx>, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        // Gather what arrives while a block would be cut anyway.
        let until = tokio::time::Instant::now() + Duration::from_millis(20);
        while jobs.len() < MAX_PER_TX {
            match tokio::time::timeout_at(until, rx.recv()).await {
                Ok(Some(j)) => jobs.push(j),
                _ => break,
            }
        }
        let result = add(&ctx, &jobs).await;
        for (j, r) in jobs.into_iter().zip(result) {
            let _ = j.done.send(r);
        }
    }
}

/// Adds the members of `jobs` (those already members are only looked up); one answer each.
async fn add(ctx: &CreatorCtx, jobs: &[Job]) -> Vec<Result<i64, String>> {
    match add_inner(ctx, jobs).await {
        Ok(r) => r,
        Err(e) => jobs.iter().map(|_| Err(e.clone())).collect(),
    }
}

async fn add_inner(ctx: &CreatorCtx, jobs: &[Job]) -> Result<Vec<Result<i64, String>>, String> {
    let mut conn = ctx.nodes.conn().await.map_err(|e| e.to_string())?;
    let mut out: Vec<Option<Result<i64, String>>> = vec![None; jobs.len()];
    let mut to_add = Vec::new();
    for (i, j) in jobs.iter().enumerate() {
        match conn.client().member(&j.row.pubkey).await {
            Ok(Some(m)) => out[i] = Some(Ok(i64::from(m))),
            Ok(None) => to_add.push(i),
            Err(e) => {
                conn.broken();
                return Err(e.to_string());
            }
        }
    }
    if !to_add.is_empty() {
        let args: Vec<AddMemberArgs> = to_add
            .iter()
            .map(|&i| AddMemberArgs {
                org: ctx.org.clone(),
                name: member_name(jobs[i].row.id),
                key: jobs[i].row.pubkey.clone(),
                roles: LedgerRole::Writer as u8 | LedgerRole::Reader as u8,
                bls: None,
            })
            .collect();
        let raw = postcard::to_allocvec(&args).map_err(|e| e.to_string())?;
        let tx = ctx
            .issuer
            .sign(system::MEMBERSHIP, None, "add_members", raw, rand::random())
            .map_err(|e| e.to_string())?;
        let r = crate::app::submit_and_wait(conn.client(), &tx).await?;
        if r.status != TxStatus::Valid {
            let why = format!(
                "adding members failed: {:?} {}",
                r.status,
                String::from_utf8_lossy(&r.response)
            );
            for &i in &to_add {
                out[i] = Some(Err(why.clone()));
            }
        } else {
            let idx: Vec<u32> = r
                .response
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if idx.len() != to_add.len() {
                return Err(format!(
                    "add_members answered {} indexes for {} members",
                    idx.len(),
                    to_add.len()
                ));
            }
            for (&i, m) in to_add.iter().zip(idx) {
                out[i] = Some(Ok(i64::from(m)));
            }
        }
    }
    // Activate what succeeded.
    let mut answers = Vec::with_capacity(jobs.len());
    for (j, r) in jobs.iter().zip(out) {
        let r = r.unwrap_or_else(|| Err("not handled".into()));
        if let Ok(m) = r {
            let mut row = j.row.clone();
            row.member = Some(m);
            row.state = "active".into();
            if let Err(e) = ctx
                .db
                .set_account(row.id, &row.name, "active", Some(m))
                .await
            {
                answers.push(Err(format!("database: {e}")));
                continue;
            }
            let channel = ctx.issuer.channel.clone();
            match acct_of(&row, &ctx.keys, &channel) {
                Ok(Some(a)) => ctx.tx.put_account(a),
                Ok(None) => {}
                Err(e) => {
                    answers.push(Err(e));
                    continue;
                }
            }
        }
        answers.push(r);
    }
    Ok(answers)
}

/// Finishes accounts a crash left `creating` (in the background).
pub fn resume(creator: Creator, rows: Vec<AccountRow>) {
    if rows.is_empty() {
        return;
    }
    tokio::spawn(async move {
        let n = rows.len();
        let waits: Vec<_> = rows
            .into_iter()
            .map(|r| creator.create(r, Duration::from_secs(120)))
            .collect();
        let failed = futures::future::join_all(waits)
            .await
            .into_iter()
            .filter(Result::is_err)
            .count();
        tracing::info!("gateway: resumed {n} account creations ({failed} failed)");
    });
}

/// Public view of an account.
#[derive(serde::Serialize, serde::Deserialize, utoipa::ToSchema, Clone, Debug)]
pub struct AccountView {
    pub id: i64,
    pub name: String,
    /// The owning user.
    pub owner: i64,
    /// SHA-256 of the account's SEC1 public key: its id in contracts (64 hex digits).
    pub ledger_id: String,
    /// Its membership index in the channel (null while `creating`).
    pub member: Option<i64>,
    /// `creating`, `active` or `disabled`.
    pub state: String,
    /// Balance in the last block the gateway processed.
    pub balance: u64,
    /// Outgoing amounts pre-confirmed and not committed yet.
    pub pending: u64,
    /// What a new transfer may spend: balance − pending.
    pub available: u64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

pub fn view_of(row: &AccountRow, tx: &TxService) -> AccountView {
    let (balance, pending) = tx.balance(row.id).unwrap_or((row.balance, 0));
    AccountView {
        id: row.id,
        name: row.name.clone(),
        owner: row.owner,
        ledger_id: hex::encode(&row.ledger_id),
        member: row.member,
        state: row.state.clone(),
        balance,
        pending,
        available: balance.saturating_sub(pending),
        created_ms: row.created_ms,
        updated_ms: row.updated_ms,
    }
}
