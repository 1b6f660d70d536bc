//! bpu-gateway: the seeds' proxy and web service in front of a ledger network. Applications
//! reach the channel through one REST API (`/api/v1`, OpenAPI at `/api/v1/openapi.json`)
//! without learning node addresses; people use the dashboard (`/ui/`).
//!
//! Where to start reading: `app` (configuration, start-up, `build_router`), then `txsvc` (the
//! transaction service: pre-confirmation, the outbox, the submitter and the follower), then
//! `handlers` (every route). `db` is the storage (SQLite or PostgreSQL), `nodes` the node pool
//! and failover, `auth` users, roles and sessions, `accounts` ledger identities held in custody,
//! `secrets` the key file, tokens and password hashes. Theory of operation: `docs/gateway.md`.
//!
//! Invariants:
//! - A 202 means durable: the transaction's row, with its signed ledger transaction, is
//!   committed to the database before the answer; a restarted gateway sends every open row.
//! - Each pre-confirmed transaction is valid on the ledger at most once (one ledger id per
//!   attempt; a new attempt only after the previous one is seen invalid in a block).
//! - Balances net of pending debits never go below zero, so a pre-confirmed transfer does not
//!   fail for funds; double spends are refused with 409 before the ledger sees them.
//! - Every error answer is `{"error": {"code", "message"}}`; users, accounts and transactions
//!   are never deleted (no DELETE route; the database refuses deletes).
//! - Account keys are sealed at rest (AES-256-GCM under the key file); passwords are Argon2id;
//!   tokens are random and stored as SHA-256.

pub mod accounts;
pub mod app;
pub mod auth;
pub mod dashboard;
pub mod db;
pub mod error;
pub mod handlers;
pub mod metrics;
pub mod nodes;
pub mod secrets;
pub mod txsvc;

pub use app::{build_router, start, AppState, Config, Gateway};
