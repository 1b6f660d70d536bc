//! The typed Rust client of a node: connect, submit signed transactions, follow their status,
//! query, fetch blocks and proofs, subscribe to events from a cursor.

use crate::api::{
    Cursor, EventRecord, NodeInfo, Rejection, Request, Response, TxProof, TxState,
    MAX_BATCH_REQUEST, MAX_REQUEST, MAX_RESPONSE, PROTOCOL,
};
use crate::format::{Block, Sig, Transaction, TxBody, Wire, VERSION};
use bpu_runtime::SigningKey;
use futures::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

/// What went wrong talking to a node.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the node at {addr}: {source}; is `bpu up` or `bpu node` running?")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connection to the node: {0}")]
    Io(std::io::Error),
    #[error("the node closed the connection")]
    Closed,
    #[error("the node sent an undecodable message: {0}")]
    Decode(String),
    #[error("the node refused: {0}")]
    Rejected(Rejection),
    #[error("node error: {0}")]
    Node(String),
    #[error("unexpected answer from the node: {0}")]
    Unexpected(String),
    #[error("timed out after {0:?} waiting for the node")]
    Timeout(Duration),
    #[error("signing: {0}")]
    Sign(String),
}

// Manual conversions: the messages above already include the inner error, so it is not also
// reported as a source (which would print it twice in error chains).
impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        ClientError::Io(e)
    }
}

impl From<Rejection> for ClientError {
    fn from(r: Rejection) -> Self {
        ClientError::Rejected(r)
    }
}

/// How long a request waits for its answer by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to one node.
pub struct Client {
    reader: FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    writer: FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
    addr: String,
    timeout: Duration,
}

impl Client {
    /// Connects and checks the protocol version.
    pub async fn connect(addr: &str) -> Result<Client, ClientError> {
        let sock = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = sock.set_nodelay(true);
        let (r, w) = sock.into_split();
        let mut c = Client {
            reader: FramedRead::new(r, crate::server::codec(MAX_RESPONSE)),
            writer: FramedWrite::new(w, crate::server::codec(MAX_BATCH_REQUEST)),
            addr: addr.to_string(),
            timeout: DEFAULT_TIMEOUT,
        };
        match c.call(&Request::Hello { protocol: PROTOCOL }).await? {
            Response::Hello { .. } => Ok(c),
            other => Err(unexpected(other)),
        }
    }

    /// The node's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// How long each request waits for its answer (a node that stalls gives
    /// [`ClientError::Timeout`]); event subscriptions wait without limit.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    async fn send(&mut self, req: &Request) -> Result<(), ClientError> {
        let bytes = postcard::to_allocvec(req).map_err(|e| ClientError::Decode(e.to_string()))?;
        // The node's limits, checked here so that an oversized request fails alone instead of
        // closing the connection.
        let max = match req {
            Request::SubmitBatch { .. } => MAX_BATCH_REQUEST,
            _ => MAX_REQUEST,
        };
        if bytes.len() > max {
            return Err(ClientError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("a request of {} bytes; the limit is {max}", bytes.len()),
            )));
        }
        self.writer.send(bytes.as_slice()).await?;
        Ok(())
    }

    async fn recv(&mut self) -> Result<Response, ClientError> {
        let frame = self.reader.next().await.ok_or(ClientError::Closed)??;
        let r: Response =
            postcard::from_bytes(&frame).map_err(|e| ClientError::Decode(e.to_string()))?;
        match r {
            Response::Error(e) => Err(ClientError::Node(e)),
            Response::Rejected(r) => Err(ClientError::Rejected(r)),
            r => Ok(r),
        }
    }

    async fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        let t = self.timeout;
        tokio::time::timeout(t, async {
            self.send(req).await?;
            self.recv().await
        })
        .await
        .map_err(|_| ClientError::Timeout(t))?
    }

    /// Node facts (channel, height, digest).
    pub async fn info(&mut self) -> Result<NodeInfo, ClientError> {
        match self.call(&Request::Info).await? {
            Response::Info(i) => Ok(i),
            other => Err(unexpected(other)),
        }
    }

    /// The membership index of a public key (SEC1), if it is a member.
    pub async fn member(&mut self, key: &[u8]) -> Result<Option<u32>, ClientError> {
        match self.call(&Request::Member { key: key.to_vec() }).await? {
            Response::Member(m) => Ok(m),
            other => Err(unexpected(other)),
        }
    }

    /// Submits encoded transaction bytes; returns the id, or the node's rejection.
    pub async fn submit_bytes(&mut self, tx: &[u8]) -> Result<[u8; 32], ClientError> {
        match self.call(&Request::Submit { tx: tx.to_vec() }).await? {
            Response::Submitted { id } => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    /// Submits a signed transaction.
    pub async fn submit(&mut self, tx: &Transaction) -> Result<[u8; 32], ClientError> {
        self.submit_bytes(&tx.encode()).await
    }

    /// Submits encoded transactions in one round trip ([`crate::api::MAX_BATCH`] at most, in a
    /// request of at most [`MAX_BATCH_REQUEST`] bytes); returns, in the same order, each one's id
    /// or rejection, as [`Client::submit_bytes`] would. A batch the node refuses as a whole (too
    /// many transactions: [`Rejection::Malformed`], none submitted) is `Err(Rejected)`; a request
    /// over the size limit is refused here as [`ClientError::Io`].
    pub async fn submit_batch(
        &mut self,
        txs: &[Vec<u8>],
    ) -> Result<Vec<Result<[u8; 32], Rejection>>, ClientError> {
        let req = Request::SubmitBatch { txs: txs.to_vec() };
        match self.call(&req).await? {
            Response::SubmittedBatch(r) if r.len() == txs.len() => Ok(r),
            Response::SubmittedBatch(r) => Err(ClientError::Unexpected(format!(
                "{} answers to a batch of {} transactions",
                r.len(),
                txs.len()
            ))),
            other => Err(unexpected(other)),
        }
    }

    /// Where a transaction is.
    pub async fn status(&mut self, id: &[u8; 32]) -> Result<TxState, ClientError> {
        match self.call(&Request::Status { id: *id }).await? {
            Response::Status(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    /// Polls until the transaction is committed (valid or not), or `timeout`.
    pub async fn wait(
        &mut self,
        id: &[u8; 32],
        timeout: Duration,
    ) -> Result<crate::Receipt, ClientError> {
        let end = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(5);
        loop {
            if let TxState::Committed(r) = self.status(id).await? {
                return Ok(r);
            }
            if tokio::time::Instant::now() >= end {
                return Err(ClientError::Timeout(timeout));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Runs a signed read-only call; returns the contract's response.
    pub async fn query(&mut self, tx: &Transaction) -> Result<Vec<u8>, ClientError> {
        match self.call(&Request::Query { tx: tx.encode() }).await? {
            Response::Query(v) => Ok(v),
            other => Err(unexpected(other)),
        }
    }

    /// The block at `height`, if committed.
    pub async fn block(&mut self, height: u64) -> Result<Option<Block>, ClientError> {
        match self.call(&Request::Block { height }).await? {
            Response::Block(None) => Ok(None),
            Response::Block(Some(b)) => Block::decode(&b)
                .map(Some)
                .map_err(|e| ClientError::Decode(e.to_string())),
            other => Err(unexpected(other)),
        }
    }

    /// A committed transaction with its inclusion proof (checked here before it is returned).
    pub async fn tx(&mut self, id: &[u8; 32]) -> Result<Option<TxProof>, ClientError> {
        match self.call(&Request::Tx { id: *id }).await? {
            Response::Tx(None) => Ok(None),
            Response::Tx(Some(p)) if p.verify() => Ok(Some(*p)),
            Response::Tx(Some(_)) => Err(ClientError::Decode(
                "the inclusion proof does not verify".into(),
            )),
            other => Err(unexpected(other)),
        }
    }

    /// Turns this connection into an event stream from `from`.
    pub async fn subscribe(mut self, from: Cursor) -> Result<Subscription, ClientError> {
        self.send(&Request::Subscribe { from }).await?;
        Ok(Subscription {
            client: self,
            cursor: from,
        })
    }
}

/// Event records in commit order; [`Subscription::cursor`] resumes after the last one seen.
pub struct Subscription {
    client: Client,
    cursor: Cursor,
}

impl Subscription {
    /// The next record (waits for new commits).
    pub async fn next(&mut self) -> Result<EventRecord, ClientError> {
        match self.client.recv().await? {
            Response::Event(r) => {
                self.cursor = r.next();
                Ok(r)
            }
            other => Err(unexpected(other)),
        }
    }

    /// Where to resume after the records returned so far.
    pub fn cursor(&self) -> Cursor {
        self.cursor
    }
}

fn unexpected(r: Response) -> ClientError {
    let s = format!("{r:?}");
    ClientError::Unexpected(s.chars().take(200).collect())
}

/// Builds and signs transactions for one member.
pub struct Signer {
    pub key: SigningKey,
    pub channel: String,
    pub member: u32,
}

impl Signer {
    /// A signed transaction calling `contract.method(args)`; `nonce` makes it unique.
    pub fn sign(
        &self,
        contract: &str,
        version: Option<u32>,
        method: &str,
        args: Vec<u8>,
        nonce: u64,
    ) -> Result<Transaction, ClientError> {
        let body = TxBody {
            version: VERSION,
            channel: self.channel.clone(),
            nonce,
            creator: self.member,
            contract: contract.to_string(),
            contract_version: version,
            method: method.to_string(),
            args,
        };
        let sig: Sig = self
            .key
            .sign_digest(&body.digest().0)
            .map_err(|e| ClientError::Sign(e.to_string()))?
            .into();
        Ok(Transaction { body, sig })
    }
}

/// A fresh random nonce.
pub fn nonce() -> u64 {
    rand::random()
}
