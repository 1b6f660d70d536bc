//! The transaction service: pre-confirmation (balance net of everything pending, idempotency,
//! a durable outbox row before the 202), the submitter (batches of non-conflicting
//! transactions to the primary node), and the follower (every block of the primary, in
//! order: commits, rejections, MVCC retries, balances and contract events), all around one
//! in-memory view rebuilt from the database at start.
//!
//! Invariants:
//! - A transaction is answered 202 only after its row (with its signed ledger transaction) is
//!   committed to the database; the submitter only sends what is in the database.
//! - A new attempt (new nonce, so a new ledger id) is made only after the previous attempt is
//!   seen invalid in a block; until then the same bytes are resent, and the ledger refuses a
//!   second copy of the same id. So each pre-confirmed transaction is valid on the ledger at
//!   most once, and is retried until it is.
//! - Two transactions touching the same account (or the token supply) are never in flight at
//!   once, and a transaction is endorsed only by a node whose state includes every block the
//!   follower processed, so the gateway's own transactions do not conflict at MVCC.
//! - available = confirmed balance − pending debits; incoming pending credits do not count.

use crate::db::{now_ms, Db, Outcome, TxRow, Write};
use crate::error::AppError;
use crate::nodes::Nodes;
use bpu_ledger::api::Rejection;
use bpu_ledger::client::Signer;
use bpu_ledger::format::{TxStatus, Wire};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify, Semaphore};
use utoipa::ToSchema;

/// Settings of the transaction service.
#[derive(Clone, Debug)]
pub struct TxOptions {
    /// The token contract's name on the ledger.
    pub token: String,
    /// Most transactions in one submission batch.
    pub batch_max: usize,
    /// How long the submitter waits to fill a batch.
    pub batch_wait: Duration,
    /// Batches in flight at once.
    pub batches_in_flight: usize,
    /// A submitted transaction not seen in a block after this long is sent again (same bytes).
    pub resend_after: Duration,
    /// Attempts (MVCC conflicts with outside transactions) before a transaction is rejected.
    pub max_attempts: i64,
    /// How often the follower asks the primary for new blocks when idle.
    pub poll: Duration,
}

impl Default for TxOptions {
    fn default() -> Self {
        TxOptions {
            token: "token".into(),
            batch_max: bpu_ledger::api::MAX_BATCH,
            batch_wait: Duration::from_millis(5),
            batches_in_flight: 4,
            resend_after: Duration::from_secs(10),
            max_attempts: 8,
            poll: Duration::from_millis(10),
        }
    }
}

/// What a transaction does.
#[derive(Serialize, Deserialize, ToSchema, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum TxKind {
    /// Move `amount` from the account `from` to `to` (or `to_ledger_id`).
    #[default]
    Transfer,
    /// Create `amount` new tokens on `to` (operators and admins).
    Mint,
}

impl TxKind {
    fn as_str(self) -> &'static str {
        match self {
            TxKind::Transfer => "transfer",
            TxKind::Mint => "mint",
        }
    }
}

/// Where tokens go: an account of this gateway (its id) or any ledger identity (64 hex
/// digits: SHA-256 of the member's SEC1 key).
#[derive(Serialize, Deserialize, Clone, Debug)]
#[serde(untagged)]
pub enum Dest {
    Account(i64),
    LedgerId(String),
}

impl utoipa::PartialSchema for Dest {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Int64,
                    )))
                    .description(Some("an account id of this gateway")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[0-9a-fA-F]{64}$"))
                    .description(Some("a ledger identity")),
            )
            .into()
    }
}

impl ToSchema for Dest {}

/// A new transfer.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct NewTx {
    /// The paying account.
    pub from: i64,
    pub to: Dest,
    /// Tokens, at least 1.
    #[schema(minimum = 1, maximum = 9223372036854775807_i64)]
    pub amount: u64,
}

/// A new mint (operators and admins).
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct NewMint {
    pub to: Dest,
    /// Tokens, at least 1.
    #[schema(minimum = 1, maximum = 9223372036854775807_i64)]
    pub amount: u64,
}

/// A transfer or a mint, as the service takes it.
#[derive(Serialize, Clone, Debug)]
pub struct Request {
    pub kind: TxKind,
    pub from: Option<i64>,
    pub to: Dest,
    pub amount: u64,
}

impl From<&NewTx> for Request {
    fn from(t: &NewTx) -> Request {
        Request {
            kind: TxKind::Transfer,
            from: Some(t.from),
            to: t.to.clone(),
            amount: t.amount,
        }
    }
}

impl From<&NewMint> for Request {
    fn from(m: &NewMint) -> Request {
        Request {
            kind: TxKind::Mint,
            from: None,
            to: m.to.clone(),
            amount: m.amount,
        }
    }
}

/// A gateway transaction.
#[derive(Serialize, Deserialize, ToSchema, Clone, Debug)]
pub struct TxView {
    pub id: String,
    pub kind: TxKind,
    /// `preconfirmed` → `submitted` → `committed` | `rejected`.
    pub state: String,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub to_ledger_id: String,
    pub amount: u64,
    /// Why it was rejected (the ledger's reason).
    pub reason: Option<String>,
    /// The ledger transaction id of the current attempt.
    pub ledger_tx_id: String,
    pub attempts: i64,
    /// The block that committed it.
    pub height: Option<i64>,
    pub created_ms: i64,
    pub submitted_ms: Option<i64>,
    pub final_ms: Option<i64>,
}

impl From<&TxRow> for TxView {
    fn from(r: &TxRow) -> TxView {
        TxView {
            id: r.id.clone(),
            kind: if r.kind == "mint" {
                TxKind::Mint
            } else {
                TxKind::Transfer
            },
            state: r.state.clone(),
            from: r.from_account,
            to: r.to_account,
            to_ledger_id: hex::encode(&r.to_ledger_id),
            amount: r.amount,
            reason: r.reason.clone(),
            ledger_tx_id: hex::encode(&r.ledger_tx_id),
            attempts: r.attempts,
            height: r.height,
            created_ms: r.created_ms,
            submitted_ms: r.submitted_ms,
            final_ms: r.final_ms,
        }
    }
}

/// Who is calling (from the auth layer).
#[derive(Clone, Debug)]
pub struct Caller {
    pub user: i64,
    pub name: String,
    pub role: crate::auth::Role,
}

impl Caller {
    pub fn is_staff(&self) -> bool {
        matches!(
            self.role,
            crate::auth::Role::Admin | crate::auth::Role::Operator
        )
    }
}

/// What the in-memory view holds of an account.
pub struct Acct {
    pub id: i64,
    pub owner: i64,
    pub ledger_id: [u8; 32],
    pub active: bool,
    pub balance: u64,
    pub pending_out: u64,
    pub signer: Arc<Signer>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Lock {
    Account([u8; 32]),
    Supply,
}

struct Open {
    row: TxRow,
    locks: Vec<Lock>,
    /// Owner of the receiving account (for events).
    to_owner: Option<i64>,
    /// The node it was last sent to, and when.
    sent: Option<(usize, Instant)>,
    /// In a batch being sent right now.
    sending: bool,
    queued: bool,
    started: Instant,
}

#[derive(Default)]
struct View {
    accounts: HashMap<i64, Acct>,
    by_ledger: HashMap<[u8; 32], i64>,
    open: HashMap<String, Open>,
    by_ledger_tx: HashMap<[u8; 32], String>,
    queue: VecDeque<String>,
    locks: HashMap<Lock, String>,
    idem: HashMap<(i64, String), String>,
    /// The last [`RECENT`] final transactions (durable, never changing again): answers
    /// reads of a just-finished transaction without the database.
    recent: HashMap<String, TxRow>,
    recent_order: VecDeque<String>,
}

/// How many final transactions the view keeps for reads.
const RECENT: usize = 16_384;

impl View {
    fn owner_of(&self, ledger_id: &[u8]) -> Option<i64> {
        let id: [u8; 32] = ledger_id.try_into().ok()?;
        self.by_ledger
            .get(&id)
            .and_then(|a| self.accounts.get(a))
            .map(|a| a.owner)
    }

    /// Forgets a final transaction (its reservation, locks, idempotency entry) once its final
    /// row is durable; keeps that row for reads.
    fn finish(&mut self, id: &str) {
        let Some(row) = self.close(id) else {
            return;
        };
        if self.recent.insert(row.id.clone(), row).is_none() {
            self.recent_order.push_back(id.to_string());
        }
        while self.recent_order.len() > RECENT {
            if let Some(old) = self.recent_order.pop_front() {
                self.recent.remove(&old);
            }
        }
    }

    /// The row of an open or recently final transaction.
    fn row(&self, id: &str) -> Option<&TxRow> {
        self.open
            .get(id)
            .map(|o| &o.row)
            .or_else(|| self.recent.get(id))
    }

    /// Undoes an open transaction's reservation, locks and idempotency entry; its row.
    fn close(&mut self, id: &str) -> Option<TxRow> {
        let o = self.open.remove(id)?;
        if o.row.kind == "transfer" {
            if let Some(a) = o.row.from_account.and_then(|f| self.accounts.get_mut(&f)) {
                a.pending_out = a.pending_out.saturating_sub(o.row.amount);
            }
        }
        if let Ok(lid) = <[u8; 32]>::try_from(o.row.ledger_tx_id.as_slice()) {
            self.by_ledger_tx.remove(&lid);
        }
        self.release(id, &o.locks);
        self.idem.remove(&(o.row.user_id, o.row.idem_key.clone()));
        Some(o.row)
    }

    fn release(&mut self, id: &str, locks: &[Lock]) {
        for l in locks {
            if self.locks.get(l).is_some_and(|h| h == id) {
                self.locks.remove(l);
            }
        }
    }
}

/// Latency samples and commit counts for the dashboard and the stats endpoint.
#[derive(Default)]
struct Stats {
    preconfirm_ms: VecDeque<f64>,
    commit_ms: VecDeque<f64>,
    /// (unix second, transactions committed in it)
    tps: VecDeque<(i64, u64)>,
}

const SAMPLES: usize = 4096;

fn push_sample(v: &mut VecDeque<f64>, x: f64) {
    if v.len() == SAMPLES {
        v.pop_front();
    }
    v.push_back(x);
}

fn percentile(v: &VecDeque<f64>, p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s: Vec<f64> = v.iter().copied().collect();
    s.sort_by(f64::total_cmp);
    let i = ((s.len() as f64 - 1.0) * p).round() as usize;
    s.get(i).copied()
}

/// Figures for the dashboard.
#[derive(Serialize, serde::Deserialize, ToSchema, Clone, Debug)]
pub struct TxStats {
    pub preconfirm_ms_p50: Option<f64>,
    pub preconfirm_ms_p99: Option<f64>,
    pub commit_ms_p50: Option<f64>,
    pub commit_ms_p99: Option<f64>,
    /// Committed gateway transactions per second, the last 60 seconds (oldest first).
    pub committed_per_s: Vec<u64>,
    /// Transactions pre-confirmed and not final.
    pub open: usize,
    /// Waiting to be sent.
    pub queued: usize,
    /// The last block the gateway processed.
    pub height: u64,
}

struct Svc {
    db: Db,
    nodes: Nodes,
    opts: TxOptions,
    issuer: Arc<Signer>,
    view: Mutex<View>,
    wake_submitter: Notify,
    /// Bumped whenever a transaction becomes final.
    finals: watch::Sender<u64>,
    processed: AtomicU64,
    /// (node, height) the follower last saw a node report: fresher than the health checks.
    seen_tip: Mutex<(usize, u64)>,
    stats: Mutex<Stats>,
}

/// The transaction service (cheap to clone).
#[derive(Clone)]
pub struct TxService {
    svc: Arc<Svc>,
}

fn lock_of(ledger_id: &[u8]) -> Lock {
    let mut a = [0u8; 32];
    a.copy_from_slice(&ledger_id[..32.min(ledger_id.len())]);
    Lock::Account(a)
}

fn transfer_args(to: &[u8], amount: u64) -> Vec<u8> {
    let mut v = to.to_vec();
    v.extend(amount.to_le_bytes());
    v
}

fn rejection_reason(r: &Rejection) -> Option<String> {
    match r {
        Rejection::Busy(_) | Rejection::Internal(_) | Rejection::Replay(_) => None,
        other => Some(other.to_string()),
    }
}

fn status_reason(s: TxStatus, response: &[u8]) -> String {
    match s {
        TxStatus::Reverted => format!(
            "the contract reverted: {}",
            String::from_utf8_lossy(response)
        ),
        other => format!("the ledger marked it invalid: {other:?}"),
    }
}

impl TxService {
    /// Loads the view from the database and starts the submitter and the follower.
    /// `start_height`: where the follower starts on a new database (the current tip).
    pub async fn start(
        db: Db,
        nodes: Nodes,
        opts: TxOptions,
        issuer: Arc<Signer>,
        accounts: Vec<Acct>,
        start_height: u64,
    ) -> Result<TxService, String> {
        let processed = match db.meta("height").await.map_err(|e| e.to_string())? {
            Some(h) => h.parse::<u64>().map_err(|e| format!("meta height: {e}"))?,
            None => {
                db.set_meta("height", &start_height.to_string())
                    .await
                    .map_err(|e| e.to_string())?;
                start_height
            }
        };
        let mut view = View::default();
        for a in accounts {
            view.by_ledger.insert(a.ledger_id, a.id);
            view.accounts.insert(a.id, a);
        }
        let open = db.open_txs().await.map_err(|e| e.to_string())?;
        for row in open {
            let locks = locks_for(&view, &row);
            if row.kind == "transfer" {
                if let Some(a) = row.from_account.and_then(|f| view.accounts.get_mut(&f)) {
                    a.pending_out = a.pending_out.saturating_add(row.amount);
                }
            }
            if let Ok(lid) = <[u8; 32]>::try_from(row.ledger_tx_id.as_slice()) {
                view.by_ledger_tx.insert(lid, row.id.clone());
            }
            view.idem
                .insert((row.user_id, row.idem_key.clone()), row.id.clone());
            view.queue.push_back(row.id.clone());
            let to_owner = view.owner_of(&row.to_ledger_id);
            view.open.insert(
                row.id.clone(),
                Open {
                    row,
                    locks,
                    to_owner,
                    sent: None,
                    sending: false,
                    queued: true,
                    started: Instant::now(),
                },
            );
        }
        let recovered = view.open.len();
        if recovered > 0 {
            tracing::info!("gateway: {recovered} open transactions recovered from the outbox");
        }
        let (finals, _) = watch::channel(0);
        let svc = Arc::new(Svc {
            db,
            nodes,
            opts,
            issuer,
            view: Mutex::new(view),
            wake_submitter: Notify::new(),
            finals,
            processed: AtomicU64::new(processed),
            seen_tip: Mutex::new((usize::MAX, 0)),
            stats: Mutex::new(Stats::default()),
        });
        tokio::spawn(submitter(svc.clone()));
        tokio::spawn(follower(svc.clone()));
        tokio::spawn(resender(svc.clone()));
        Ok(TxService { svc })
    }

    /// Adds (or replaces) an account in the view.
    pub fn put_account(&self, a: Acct) {
        let mut v = self.svc.view.lock();
        v.by_ledger.insert(a.ledger_id, a.id);
        let pending = v.accounts.get(&a.id).map_or(0, |x| x.pending_out);
        v.accounts.insert(
            a.id,
            Acct {
                pending_out: pending,
                ..a
            },
        );
    }

    pub fn set_account_active(&self, id: i64, active: bool) {
        if let Some(a) = self.svc.view.lock().accounts.get_mut(&id) {
            a.active = active;
        }
    }

    /// The row of an open or recently final transaction, from memory (`None`: ask the
    /// database).
    pub fn row(&self, id: &str) -> Option<TxRow> {
        self.svc.view.lock().row(id).cloned()
    }

    /// (confirmed balance, pending debits) of an account in the view.
    pub fn balance(&self, id: i64) -> Option<(u64, u64)> {
        self.svc
            .view
            .lock()
            .accounts
            .get(&id)
            .map(|a| (a.balance, a.pending_out))
    }

    /// Open transactions touching an account.
    pub fn open_for(&self, id: i64) -> usize {
        self.svc
            .view
            .lock()
            .open
            .values()
            .filter(|o| o.row.from_account == Some(id) || o.row.to_account == Some(id))
            .count()
    }

    /// The last processed height.
    pub fn height(&self) -> u64 {
        self.svc.processed.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> TxStats {
        let (open, queued) = {
            let v = self.svc.view.lock();
            (v.open.len(), v.queue.len())
        };
        let s = self.svc.stats.lock();
        let now = now_ms() / 1000;
        let per_s = (now - 59..=now)
            .map(|t| s.tps.iter().find(|(x, _)| *x == t).map_or(0, |(_, n)| *n))
            .collect();
        TxStats {
            preconfirm_ms_p50: percentile(&s.preconfirm_ms, 0.5),
            preconfirm_ms_p99: percentile(&s.preconfirm_ms, 0.99),
            commit_ms_p50: percentile(&s.commit_ms, 0.5),
            commit_ms_p99: percentile(&s.commit_ms, 0.99),
            committed_per_s: per_s,
            open,
            queued,
            height: self.height(),
        }
    }

    /// Pre-confirms a transaction: checks it can commit, reserves the amount, writes it
    /// durably; answers the stored transaction (the existing one for a reused key).
    pub async fn submit(
        &self,
        caller: &Caller,
        idem_key: &str,
        req: &Request,
    ) -> Result<(bool, TxView), AppError> {
        let t0 = Instant::now();
        let svc = &self.svc;
        if idem_key.is_empty() || idem_key.len() > 200 || !idem_key.is_ascii() {
            return Err(AppError::bad(
                "bad_idempotency_key",
                "the Idempotency-Key header must be 1–200 ASCII characters",
            ));
        }
        if req.amount == 0 || req.amount > i64::MAX as u64 {
            return Err(AppError::bad(
                "bad_amount",
                format!("amount must be between 1 and {}", i64::MAX),
            ));
        }
        let req_hash =
            Sha256::digest(serde_json::to_vec(req).map_err(AppError::internal)?).to_vec();
        match self.preconfirm(caller, idem_key, req, &req_hash, t0).await {
            Ok(r) => Ok(r),
            // A key used before (its transaction may be final and gone from memory): the
            // stored transaction is the answer, whatever the checks say now. Only refusals
            // read it; a new transaction with a used key is caught by the insert.
            Err(e) => match svc.db.tx_by_key(caller.user, idem_key).await? {
                Some(row) => same_request(&row, &req_hash).map(|v| (false, v)),
                None => Err(e),
            },
        }
    }

    async fn preconfirm(
        &self,
        caller: &Caller,
        idem_key: &str,
        req: &Request,
        req_hash: &[u8],
        t0: Instant,
    ) -> Result<(bool, TxView), AppError> {
        let svc = &self.svc;
        let req_hash = req_hash.to_vec();
        let to_ledger_id: Option<[u8; 32]> = match &req.to {
            Dest::LedgerId(h) => Some(
                hex::decode(h)
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or_else(|| {
                        AppError::bad("bad_ledger_id", "a ledger id is 64 hex digits")
                    })?,
            ),
            Dest::Account(_) => None,
        };
        // Checks and reservation, under the view lock (no await inside).
        let (row, to_owner, locks, signer) = {
            let mut v = svc.view.lock();
            if let Some(id) = v.idem.get(&(caller.user, idem_key.to_string())) {
                if let Some(o) = v.open.get(id) {
                    return same_request(&o.row, &req_hash).map(|v| (false, v));
                }
            }
            let (to_account, to_lid) = match (&req.to, to_ledger_id) {
                (Dest::Account(t), _) => {
                    let t = *t;
                    let a = v
                        .accounts
                        .get(&t)
                        .filter(|a| a.active)
                        .ok_or_else(|| AppError::NotFound(format!("account {t}")))?;
                    (Some(t), a.ledger_id)
                }
                (_, Some(l)) => (v.by_ledger.get(&l).copied(), l),
                (_, None) => unreachable_dest()?,
            };
            let (signer, from_lid, method) = match req.kind {
                TxKind::Transfer => {
                    let f = req
                        .from
                        .ok_or_else(|| AppError::internal("a transfer without a paying account"))?;
                    let a = v
                        .accounts
                        .get(&f)
                        .filter(|a| {
                            a.owner == caller.user || caller.role == crate::auth::Role::Admin
                        })
                        .ok_or_else(|| AppError::NotFound(format!("account {f}")))?;
                    if !a.active {
                        return Err(AppError::Conflict(
                            "account_disabled",
                            format!("account {f} is disabled"),
                        ));
                    }
                    if a.ledger_id == to_lid {
                        return Err(AppError::Conflict(
                            "same_account",
                            "a transfer needs two different accounts".into(),
                        ));
                    }
                    let available = a.balance.saturating_sub(a.pending_out);
                    if req.amount > available {
                        metrics::counter!("gateway_refused_total", "reason" => "insufficient_funds")
                            .increment(1);
                        return Err(AppError::Conflict(
                            "insufficient_funds",
                            format!(
                                "account {f} has {available} available ({} confirmed, {} pending); \
                                 the transfer needs {}",
                                a.balance, a.pending_out, req.amount
                            ),
                        ));
                    }
                    (a.signer.clone(), Some(a.ledger_id), "transfer")
                }
                TxKind::Mint => {
                    if !caller.is_staff() {
                        return Err(AppError::forbidden(
                            "minting needs the operator or admin role",
                        ));
                    }
                    (svc.issuer.clone(), None, "mint")
                }
            };
            let nonce: u64 = rand::random();
            let tx = signer
                .sign(
                    &svc.opts.token,
                    None,
                    method,
                    transfer_args(&to_lid, req.amount),
                    nonce,
                )
                .map_err(AppError::internal)?;
            let bytes = tx.encode();
            let ledger_tx_id = tx.id().0;
            let id = crate::secrets::random_id();
            let row = TxRow {
                id: id.clone(),
                user_id: caller.user,
                idem_key: idem_key.to_string(),
                req_hash: req_hash.clone(),
                kind: req.kind.as_str().into(),
                from_account: req.from,
                to_account,
                to_ledger_id: to_lid.to_vec(),
                amount: req.amount,
                state: "preconfirmed".into(),
                reason: None,
                ledger_tx: bytes,
                ledger_tx_id: ledger_tx_id.to_vec(),
                attempts: 1,
                height: None,
                created_ms: now_ms(),
                submitted_ms: None,
                final_ms: None,
                seq: 0,
            };
            let mut locks = vec![Lock::Account(to_lid)];
            match from_lid {
                Some(f) => locks.push(Lock::Account(f)),
                None => locks.push(Lock::Supply),
            }
            if let Some(f) = req.from.and_then(|f| v.accounts.get_mut(&f)) {
                f.pending_out += req.amount;
            }
            let to_owner = v.owner_of(&to_lid);
            v.idem
                .insert((caller.user, idem_key.to_string()), id.clone());
            v.by_ledger_tx.insert(ledger_tx_id, id.clone());
            v.open.insert(
                id.clone(),
                Open {
                    row: row.clone(),
                    locks: locks.clone(),
                    to_owner,
                    sent: None,
                    sending: false,
                    queued: false,
                    started: t0,
                },
            );
            (row, to_owner, locks, signer)
        };
        drop((locks, signer));
        let event = tx_event(&row, to_owner);
        let outcome = svc
            .db
            .write(vec![Write::InsertTx(Box::new(row.clone())), event])
            .await;
        match outcome {
            Ok(Outcome::Done) => {
                {
                    let mut v = svc.view.lock();
                    if let Some(o) = v.open.get_mut(&row.id) {
                        o.queued = true;
                        v.queue.push_back(row.id.clone());
                    }
                }
                svc.wake_submitter.notify_one();
                let ms = t0.elapsed().as_secs_f64();
                metrics::histogram!("gateway_preconfirm_seconds").record(ms);
                metrics::counter!("gateway_preconfirmed_total").increment(1);
                push_sample(&mut svc.stats.lock().preconfirm_ms, ms * 1e3);
                Ok((true, TxView::from(&row)))
            }
            Ok(Outcome::Duplicate) => {
                svc.view.lock().finish_unsent(&row.id);
                match svc.db.tx_by_key(caller.user, idem_key).await? {
                    Some(r) => same_request(&r, &req_hash).map(|v| (false, v)),
                    None => Err(AppError::internal("idempotency key taken but not found")),
                }
            }
            Err(e) => {
                svc.view.lock().finish_unsent(&row.id);
                Err(AppError::Unavailable(format!(
                    "the transaction could not be stored ({e}); nothing was sent, retry with the same Idempotency-Key"
                )))
            }
        }
    }

    /// Waits until transaction `id` is final or `timeout` passes; returns whether it is final.
    pub async fn wait_final(&self, id: &str, timeout: Duration) -> bool {
        let mut rx = self.svc.finals.subscribe();
        let end = tokio::time::Instant::now() + timeout;
        loop {
            if !self.svc.view.lock().open.contains_key(id) {
                return true;
            }
            if tokio::time::timeout_at(end, rx.changed()).await.is_err() {
                return false;
            }
        }
    }
}

impl View {
    /// Undoes a reservation whose row was never stored.
    fn finish_unsent(&mut self, id: &str) {
        self.close(id);
    }
}

fn unreachable_dest() -> Result<(Option<i64>, [u8; 32]), AppError> {
    Err(AppError::internal(
        "a ledger id destination without its bytes",
    ))
}

fn same_request(row: &TxRow, req_hash: &[u8]) -> Result<TxView, AppError> {
    if row.req_hash != req_hash {
        return Err(AppError::Unprocessable(
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request".into(),
        ));
    }
    Ok(TxView::from(row))
}

fn locks_for(v: &View, row: &TxRow) -> Vec<Lock> {
    let mut l = vec![lock_of(&row.to_ledger_id)];
    match row.from_account.and_then(|f| v.accounts.get(&f)) {
        Some(a) => l.push(Lock::Account(a.ledger_id)),
        None => l.push(Lock::Supply),
    }
    l
}

fn tx_event(row: &TxRow, to_owner: Option<i64>) -> Write {
    let body = serde_json::to_string(&serde_json::json!({
        "type": "tx",
        "tx": TxView::from(row),
    }))
    .unwrap_or_default();
    Write::Event {
        kind: "tx".into(),
        user_a: Some(row.user_id),
        user_b: to_owner.filter(|o| *o != row.user_id),
        body,
    }
}

// ---- submitter ----------------------------------------------------------------------------

/// Takes batches of queued transactions whose locks are free and sends them to the primary.
async fn submitter(svc: Arc<Svc>) {
    let slots = Arc::new(Semaphore::new(svc.opts.batches_in_flight.max(1)));
    let mut last_primary = None;
    loop {
        let woke = tokio::time::timeout(Duration::from_millis(50), svc.wake_submitter.notified());
        let _ = woke.await;
        if Arc::strong_count(&svc) == 1 {
            return;
        }
        while let Some(primary) = svc.nodes.primary() {
            if last_primary != Some(primary) {
                if last_primary.is_some() {
                    requeue_sent_elsewhere(&svc, primary);
                }
                last_primary = Some(primary);
            }
            // Endorse only on a node whose state has every block the follower processed.
            let processed = svc.processed.load(Ordering::Acquire);
            let checked = svc.nodes.info(primary).map_or(0, |i| i.height);
            let seen = match *svc.seen_tip.lock() {
                (n, h) if n == primary => h,
                _ => 0,
            };
            if checked.max(seen) < processed {
                break;
            }
            tokio::time::sleep(svc.opts.batch_wait).await;
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let batch = take_batch(&svc);
            if batch.is_empty() {
                break;
            }
            let svc2 = svc.clone();
            tokio::spawn(async move {
                send_batch(&svc2, primary, batch).await;
                drop(permit);
                svc2.wake_submitter.notify_one();
            });
        }
    }
}

/// On a new primary, everything sent to another node is sent again (same bytes): the old
/// node may have died before passing it on.
fn requeue_sent_elsewhere(svc: &Svc, primary: usize) {
    let mut v = svc.view.lock();
    let mut again = Vec::new();
    for (id, o) in v.open.iter_mut() {
        if let Some((n, _)) = o.sent {
            if n != primary && !o.queued && !o.sending {
                o.queued = true;
                again.push((o.row.seq, id.clone()));
            }
        }
    }
    again.sort();
    for (_, id) in again.into_iter().rev() {
        v.queue.push_front(id);
    }
}

fn take_batch(svc: &Svc) -> Vec<(String, Vec<u8>)> {
    let mut v = svc.view.lock();
    let mut batch = Vec::new();
    let mut blocked: HashSet<Lock> = HashSet::new();
    let mut keep = VecDeque::with_capacity(v.queue.len());
    let queue = std::mem::take(&mut v.queue);
    for id in queue {
        if batch.len() >= svc.opts.batch_max {
            keep.push_back(id);
            continue;
        }
        let Some(o) = v.open.get(&id) else { continue };
        let locks = o.locks.clone();
        let free = locks
            .iter()
            .all(|l| !blocked.contains(l) && v.locks.get(l).is_none_or(|holder| *holder == id));
        if !free {
            blocked.extend(locks);
            keep.push_back(id);
            continue;
        }
        for l in &locks {
            v.locks.insert(*l, id.clone());
        }
        if let Some(o) = v.open.get_mut(&id) {
            o.queued = false;
            o.sending = true;
            batch.push((id.clone(), o.row.ledger_tx.clone()));
        }
    }
    v.queue = keep;
    batch
}

async fn send_batch(svc: &Svc, node: usize, batch: Vec<(String, Vec<u8>)>) {
    let bytes: Vec<Vec<u8>> = batch.iter().map(|(_, b)| b.clone()).collect();
    let t0 = Instant::now();
    let result = match svc.nodes.conn_to(node).await {
        Ok(mut c) => {
            let r = c.client().submit_batch(&bytes).await;
            if r.is_err() {
                c.broken();
            }
            r
        }
        Err(e) => Err(e),
    };
    metrics::histogram!("gateway_submit_batch_seconds").record(t0.elapsed());
    let results = match result {
        Ok(r) if r.len() == batch.len() => r,
        Ok(r) => {
            tracing::warn!(
                "node {node} answered {} results for {} transactions",
                r.len(),
                batch.len()
            );
            svc.nodes.mark_down(node, "wrong batch answer");
            return requeue(svc, &batch);
        }
        Err(e) => {
            tracing::warn!("gateway: sending a batch to node {node}: {e}");
            return requeue(svc, &batch);
        }
    };
    let now = now_ms();
    let mut writes = Vec::new();
    let mut retry = Vec::new();
    let mut finals = Vec::new();
    {
        let mut v = svc.view.lock();
        for ((id, _), r) in batch.iter().zip(results) {
            let Some(o) = v.open.get_mut(id) else {
                continue;
            };
            o.sending = false;
            match r {
                Ok(_) | Err(Rejection::Replay(_)) => {
                    o.sent = Some((node, Instant::now()));
                    if o.row.state == "preconfirmed" {
                        o.row.state = "submitted".into();
                        o.row.submitted_ms = Some(now);
                        writes.push(Write::TxState {
                            id: id.clone(),
                            state: "submitted".into(),
                            reason: None,
                            height: None,
                            attempt: None,
                            submitted_ms: Some(now),
                            final_ms: None,
                        });
                        writes.push(tx_event(&o.row, o.to_owner));
                    }
                }
                Err(rej) => match rejection_reason(&rej) {
                    None => retry.push(id.clone()),
                    Some(reason) => {
                        o.row.state = "rejected".into();
                        o.row.reason = Some(reason.clone());
                        o.row.final_ms = Some(now);
                        writes.push(Write::TxState {
                            id: id.clone(),
                            state: "rejected".into(),
                            reason: Some(reason),
                            height: None,
                            attempt: None,
                            submitted_ms: None,
                            final_ms: Some(now),
                        });
                        writes.push(tx_event(&o.row, o.to_owner));
                        finals.push(id.clone());
                    }
                },
            }
        }
    }
    if !retry.is_empty() {
        let mut v = svc.view.lock();
        for id in retry.iter().rev() {
            if let Some(o) = v.open.get_mut(id) {
                o.queued = true;
                v.queue.push_front(id.clone());
            }
        }
    }
    if writes.is_empty() {
        return;
    }
    if let Err(e) = svc.db.write(writes).await {
        tracing::error!("gateway: recording submissions: {e}");
    }
    if !finals.is_empty() {
        let mut v = svc.view.lock();
        for id in &finals {
            v.finish(id);
        }
        drop(v);
        metrics::counter!("gateway_rejected_total").increment(finals.len() as u64);
        svc.finals.send_modify(|n| *n += 1);
    }
}

fn requeue(svc: &Svc, batch: &[(String, Vec<u8>)]) {
    let mut v = svc.view.lock();
    for (id, _) in batch.iter().rev() {
        if let Some(o) = v.open.get_mut(id) {
            o.sending = false;
            o.queued = true;
            v.queue.push_front(id.clone());
        }
    }
}

/// Sends again what was sent long ago and never seen in a block (same bytes).
async fn resender(svc: Arc<Svc>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if Arc::strong_count(&svc) == 1 {
            return;
        }
        let mut v = svc.view.lock();
        let mut again = Vec::new();
        for (id, o) in v.open.iter_mut() {
            if let Some((_, at)) = o.sent {
                if !o.queued && !o.sending && at.elapsed() >= svc.opts.resend_after {
                    o.queued = true;
                    o.sent = None;
                    again.push(id.clone());
                }
            }
        }
        if !again.is_empty() {
            tracing::info!("gateway: sending {} transactions again", again.len());
            metrics::counter!("gateway_resent_total").increment(again.len() as u64);
        }
        for id in again {
            v.queue.push_back(id);
        }
        drop(v);
        svc.wake_submitter.notify_one();
    }
}

// ---- follower -----------------------------------------------------------------------------

/// Follows the primary's blocks in order from the last processed height.
async fn follower(svc: Arc<Svc>) {
    let mut conn = None;
    let mut tip = 0u64;
    loop {
        if Arc::strong_count(&svc) == 1 {
            return;
        }
        let Some(primary) = svc.nodes.primary() else {
            conn = None;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let c = match &mut conn {
            Some(c @ crate::nodes::Conn { .. }) if c.node == primary => c,
            _ => match svc.nodes.conn_to(primary).await {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let next = svc.processed.load(Ordering::Acquire) + 1;
        if tip < next {
            match c.client().info().await {
                Ok(i) => {
                    tip = i.height;
                    *svc.seen_tip.lock() = (primary, tip);
                }
                Err(_) => {
                    if let Some(mut c) = conn.take() {
                        c.broken();
                    }
                    continue;
                }
            }
            if tip < next {
                tokio::time::sleep(svc.opts.poll).await;
                continue;
            }
        }
        let block = match c.client().block(next).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                // Below a pruned base, or not yet there: wait.
                tip = 0;
                tokio::time::sleep(svc.opts.poll).await;
                continue;
            }
            Err(e) => {
                tracing::warn!("gateway: reading block {next}: {e}");
                if let Some(mut c) = conn.take() {
                    c.broken();
                }
                continue;
            }
        };
        if let Err(e) = process_block(&svc, next, &block).await {
            tracing::error!("gateway: processing block {next}: {e}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// What one block changes, computed under the lock, applied after it is durable.
struct BlockChanges {
    writes: Vec<Write>,
    balances: Vec<(i64, u64)>,
    /// Final rows.
    committed: Vec<TxRow>,
    rejected: Vec<TxRow>,
    /// (id, new signed bytes, new ledger id)
    retries: Vec<(String, Vec<u8>, [u8; 32])>,
}

async fn process_block(svc: &Svc, height: u64, block: &bpu_ledger::Block) -> Result<(), String> {
    let now = now_ms();
    let mut ch = BlockChanges {
        writes: Vec::new(),
        balances: Vec::new(),
        committed: Vec::new(),
        rejected: Vec::new(),
        retries: Vec::new(),
    };
    {
        let v = svc.view.lock();
        let mut bal: HashMap<i64, u64> = HashMap::new();
        for (i, etx) in block.txs.iter().enumerate() {
            let status = block.status.get(i).copied().unwrap_or(TxStatus::Pending);
            let lid = etx.tx.id().0;
            let valid = status == TxStatus::Valid;
            if valid {
                for ev in &etx.result.events {
                    let token = etx.tx.body.contract == svc.opts.token;
                    let (from, to, amount) = match (token, ev.name.as_str(), ev.data.len()) {
                        (true, "Mint", 40) => (None, Some(&ev.data[0..32]), u64_at(&ev.data, 32)),
                        (true, "Transfer", 72) => (
                            Some(&ev.data[0..32]),
                            Some(&ev.data[32..64]),
                            u64_at(&ev.data, 64),
                        ),
                        _ => (None, None, 0),
                    };
                    let mut apply = |who: &[u8], credit: bool| {
                        let Ok(k) = <[u8; 32]>::try_from(who) else {
                            return;
                        };
                        let Some(&acc) = v.by_ledger.get(&k) else {
                            return;
                        };
                        let cur = bal
                            .get(&acc)
                            .copied()
                            .or_else(|| v.accounts.get(&acc).map(|a| a.balance))
                            .unwrap_or(0);
                        let new = if credit {
                            cur.saturating_add(amount)
                        } else {
                            cur.saturating_sub(amount)
                        };
                        bal.insert(acc, new);
                    };
                    if let Some(f) = from {
                        apply(f, false);
                    }
                    if let Some(t) = to {
                        apply(t, true);
                    }
                    let owner_a = from.and_then(|f| v.owner_of(f));
                    let owner_b = to.and_then(|t| v.owner_of(t));
                    let body = serde_json::json!({
                        "type": "contract",
                        "height": height,
                        "index": i,
                        "ledger_tx_id": hex::encode(lid),
                        "contract": etx.tx.body.contract,
                        "name": ev.name,
                        "data": hex::encode(&ev.data),
                        "from": from.map(hex::encode),
                        "to": to.map(hex::encode),
                        "amount": (from.is_some() || to.is_some()).then_some(amount),
                    });
                    ch.writes.push(Write::Event {
                        kind: "contract".into(),
                        user_a: owner_a,
                        user_b: owner_b.filter(|b| Some(*b) != owner_a),
                        body: body.to_string(),
                    });
                }
            }
            let Some(gid) = v.by_ledger_tx.get(&lid) else {
                continue;
            };
            let Some(o) = v.open.get(gid) else { continue };
            let mut row = o.row.clone();
            if valid {
                row.state = "committed".into();
                row.height = Some(height as i64);
                row.final_ms = Some(now);
                ch.writes.push(Write::TxState {
                    id: gid.clone(),
                    state: "committed".into(),
                    reason: None,
                    height: Some(height as i64),
                    attempt: None,
                    submitted_ms: None,
                    final_ms: Some(now),
                });
                ch.writes.push(tx_event(&row, o.to_owner));
                ch.committed.push(row);
            } else if status == TxStatus::Replay {
                // A second copy of an attempt: the first decided it.
                continue;
            } else if status == TxStatus::MvccConflict && row.attempts < svc.opts.max_attempts {
                let signer = match row.from_account.and_then(|f| v.accounts.get(&f)) {
                    Some(a) => a.signer.clone(),
                    None => svc.issuer.clone(),
                };
                let method = if row.kind == "mint" {
                    "mint"
                } else {
                    "transfer"
                };
                let tx = signer
                    .sign(
                        &svc.opts.token,
                        None,
                        method,
                        transfer_args(&row.to_ledger_id, row.amount),
                        rand::random(),
                    )
                    .map_err(|e| e.to_string())?;
                let bytes = tx.encode();
                let new_id = tx.id().0;
                ch.writes.push(Write::TxState {
                    id: gid.clone(),
                    state: row.state.clone(),
                    reason: None,
                    height: None,
                    attempt: Some((bytes.clone(), new_id.to_vec(), row.attempts + 1)),
                    submitted_ms: None,
                    final_ms: None,
                });
                ch.retries.push((gid.clone(), bytes, new_id));
            } else {
                let reason = status_reason(status, &etx.result.response);
                row.state = "rejected".into();
                row.reason = Some(reason.clone());
                row.height = Some(height as i64);
                row.final_ms = Some(now);
                ch.writes.push(Write::TxState {
                    id: gid.clone(),
                    state: "rejected".into(),
                    reason: Some(reason),
                    height: Some(height as i64),
                    attempt: None,
                    submitted_ms: None,
                    final_ms: Some(now),
                });
                ch.writes.push(tx_event(&row, o.to_owner));
                ch.rejected.push(row);
            }
        }
        for (acc, b) in bal {
            ch.writes.push(Write::Balance {
                account: acc,
                balance: b,
            });
            ch.balances.push((acc, b));
        }
    }
    ch.writes
        .push(Write::Meta("height".into(), height.to_string()));
    svc.db.write(ch.writes).await?;
    // Durable: apply to the view.
    let (n_committed, n_rejected) = (ch.committed.len(), ch.rejected.len());
    let mut commit_ms = Vec::new();
    {
        let mut v = svc.view.lock();
        for (acc, b) in &ch.balances {
            if let Some(a) = v.accounts.get_mut(acc) {
                a.balance = *b;
            }
        }
        for row in ch.committed.into_iter().chain(ch.rejected) {
            let id = row.id.clone();
            if let Some(o) = v.open.get_mut(&id) {
                commit_ms.push(o.started.elapsed().as_secs_f64());
                o.row = row;
            }
            v.finish(&id);
        }
        for (id, bytes, new_id) in ch.retries {
            let Some(o) = v.open.get_mut(&id) else {
                continue;
            };
            let old: Option<[u8; 32]> = o.row.ledger_tx_id.as_slice().try_into().ok();
            o.row.ledger_tx = bytes;
            o.row.ledger_tx_id = new_id.to_vec();
            o.row.attempts += 1;
            o.sent = None;
            let requeue = !o.queued && !o.sending;
            if requeue {
                o.queued = true;
            }
            if let Some(old) = old {
                v.by_ledger_tx.remove(&old);
            }
            v.by_ledger_tx.insert(new_id, id.clone());
            if requeue {
                v.queue.push_front(id);
            }
            metrics::counter!("gateway_retries_total").increment(1);
        }
    }
    svc.processed.store(height, Ordering::Release);
    if n_committed + n_rejected > 0 {
        metrics::counter!("gateway_committed_total").increment(n_committed as u64);
        metrics::counter!("gateway_rejected_total").increment(n_rejected as u64);
        let mut s = svc.stats.lock();
        for ms in &commit_ms {
            metrics::histogram!("gateway_commit_seconds").record(*ms);
            push_sample(&mut s.commit_ms, ms * 1e3);
        }
        let sec = now / 1000;
        match s.tps.back_mut() {
            Some((t, n)) if *t == sec => *n += n_committed as u64,
            _ => {
                s.tps.push_back((sec, n_committed as u64));
                if s.tps.len() > 120 {
                    s.tps.pop_front();
                }
            }
        }
        drop(s);
        svc.finals.send_modify(|n| *n += 1);
    }
    metrics::gauge!("gateway_height").set(height as f64);
    svc.wake_submitter.notify_one();
    Ok(())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}
