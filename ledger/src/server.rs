//! The node's client server: length-delimited postcard frames over TCP, one request → one
//! response, except `Subscribe`, which turns the connection into an event stream.
//!
//! Frames are a 4-byte big-endian length and a postcard [`Request`] / [`Response`]; frames over
//! [`MAX_BATCH_REQUEST`] bytes, requests other than `SubmitBatch` over [`MAX_REQUEST`] bytes, and
//! requests that do not decode get [`Response::Error`] and the connection closes; a connection
//! idle for [`IDLE_TIMEOUT`] is closed.

use crate::api::{
    Cursor, Rejection, Request, Response, MAX_BATCH, MAX_BATCH_REQUEST, MAX_REQUEST, MAX_RESPONSE,
    PROTOCOL,
};
use crate::node::Node;
use futures::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::net::SocketAddr;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

/// Blocks of events read from the store per step of a subscription.
const EVENT_BLOCKS_PER_STEP: u64 = 64;

/// A connection with no complete request for this long is closed.
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// The postcard variant index of [`Request::SubmitBatch`]: the first byte of its frame.
const SUBMIT_BATCH_TAG: u8 = 9;

/// Longest rejection text in a batch answer; longer ones are cut (at a character boundary). No
/// rejection the node gives today is longer (revert reasons are at most 64 KiB), so this only
/// guarantees the bound below.
const BATCH_REASON: usize = 64 << 10;

// A full batch answer always fits a response frame: per element at most the `Err` and
// rejection tags, a 3-byte length and the text; plus the response tag and the count.
const _: () = assert!(16 + MAX_BATCH * (5 + BATCH_REASON) <= MAX_RESPONSE);

/// A frame codec with the given maximum frame length.
pub fn codec(max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(max)
        .length_field_length(4)
        .new_codec()
}

/// Serves clients on `listener` until the task is dropped.
pub async fn serve(node: Node, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((sock, peer)) => {
                let _ = sock.set_nodelay(true);
                tokio::spawn(connection(node.clone(), sock, peer));
            }
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Binds `addr` and serves in a background task; returns the bound address.
pub async fn spawn(node: Node, addr: &str) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(serve(node, listener));
    Ok(local)
}

/// The read half of a connection: frames up to [`MAX_BATCH_REQUEST`].
type Reader = FramedRead<OwnedReadHalf, LengthDelimitedCodec>;
/// The write half: frames up to [`MAX_RESPONSE`].
type Conn = FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>;

async fn send(conn: &mut Conn, r: &Response) -> bool {
    let bytes = match postcard::to_allocvec(r) {
        Ok(b) if b.len() <= MAX_RESPONSE => b,
        _ => return false,
    };
    conn.send(bytes.as_slice()).await.is_ok()
}

async fn connection(node: Node, sock: TcpStream, peer: SocketAddr) {
    // Reads are bounded by the batch request limit (a longer length prefix is refused before
    // any payload is buffered); responses may be as large as a block.
    let (r, w) = sock.into_split();
    let mut reader: Reader = FramedRead::new(r, codec(MAX_BATCH_REQUEST));
    let mut conn: Conn = FramedWrite::new(w, codec(MAX_RESPONSE));
    loop {
        let frame = match tokio::time::timeout(IDLE_TIMEOUT, reader.next()).await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => {
                let _ = send(&mut conn, &Response::Error("idle for too long".into())).await;
                return;
            }
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                let _ = send(&mut conn, &Response::Error(format!("bad frame: {e}"))).await;
                return;
            }
        };
        // Checked on the raw frame, before decoding: only a batch may exceed `MAX_REQUEST`, and
        // a batch over `MAX_BATCH` is refused without decoding its elements (a frame of
        // millions of empty transactions would cost far more memory decoded than read).
        let batch = frame.first() == Some(&SUBMIT_BATCH_TAG);
        if !batch && frame.len() > MAX_REQUEST {
            let msg = format!(
                "request of {} bytes over the limit of {MAX_REQUEST} (only SubmitBatch may be longer)",
                frame.len()
            );
            let _ = send(&mut conn, &Response::Error(msg)).await;
            return;
        }
        if batch {
            if let Some(n) = varint(&frame[1..]).filter(|&n| n > MAX_BATCH as u64) {
                if !send(&mut conn, &Response::Rejected(too_many(n))).await {
                    return;
                }
                continue;
            }
        }
        let req: Request = match postcard::from_bytes(&frame) {
            Ok(r) => r,
            Err(e) => {
                let _ = send(&mut conn, &Response::Error(format!("bad request: {e}"))).await;
                return;
            }
        };
        if let Request::Subscribe { from } = req {
            subscribe(&node, &mut conn, &mut reader, from).await;
            return;
        }
        let resp = handle(&node, req).await;
        if !send(&mut conn, &resp).await {
            return;
        }
    }
    tracing::trace!("client {peer} left");
}

async fn handle(node: &Node, req: Request) -> Response {
    let err = |e: crate::node::NodeError| Response::Error(e.to_string());
    match req {
        Request::Hello { protocol } if protocol == PROTOCOL => {
            Response::Hello { protocol: PROTOCOL }
        }
        Request::Hello { protocol } => Response::Error(format!(
            "protocol {protocol} is not supported; this node speaks {PROTOCOL}"
        )),
        Request::Info => Response::Info(node.info()),
        Request::Member { key } => Response::Member(node.member_of(&key)),
        Request::Submit { tx } => match node.submit(&tx).await {
            Ok(id) => Response::Submitted { id },
            Err(r) => Response::Rejected(r),
        },
        Request::Status { id } => node.status(&id).map_or_else(err, Response::Status),
        Request::Query { tx } => match node.query(&tx).await {
            Ok(v) => Response::Query(v),
            Err(r) => Response::Rejected(r),
        },
        Request::Block { height } => node.block(height).map_or_else(err, Response::Block),
        Request::Tx { id } => node
            .tx_proof(&id)
            .map_or_else(err, |p| Response::Tx(p.map(Box::new))),
        Request::Subscribe { .. } => Response::Error("subscribe is handled apart".into()),
        Request::SubmitBatch { txs } => submit_batch(node, &txs).await,
    }
}

/// The refusal of a batch of `n` > [`MAX_BATCH`] transactions (none of them is submitted).
fn too_many(n: u64) -> Rejection {
    Rejection::Malformed(format!(
        "a batch of {n} transactions; at most {MAX_BATCH} per SubmitBatch"
    ))
}

/// A postcard (LEB128) `u64` varint at the start of `b`, if well formed.
fn varint(b: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().take(10).enumerate() {
        if i == 9 && byte > 1 {
            return None; // over 64 bits
        }
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Submits the transactions of a batch concurrently (so the crypto service pools their signature
/// checks); the answers are in the request's order, each what a `Submit` of it would get. Copies
/// of the same bytes are submitted once: the first copy gets the node's answer, each later copy
/// `Replay` if it was accepted, else the same rejection (as if submitted one after another).
async fn submit_batch(node: &Node, txs: &[Vec<u8>]) -> Response {
    if txs.len() > MAX_BATCH {
        return Response::Rejected(too_many(txs.len() as u64));
    }
    // `distinct[slot[i]]` = the bytes of `txs[i]`; `first[u]` = where `distinct[u]` first occurs.
    let mut seen: HashMap<&[u8], usize> = HashMap::new();
    let mut distinct: Vec<&[u8]> = Vec::new();
    let mut first = Vec::new();
    let slot: Vec<usize> = txs
        .iter()
        .enumerate()
        .map(|(i, tx)| {
            *seen.entry(tx.as_slice()).or_insert_with(|| {
                distinct.push(tx);
                first.push(i);
                distinct.len() - 1
            })
        })
        .collect();
    let answers = futures::future::join_all(distinct.iter().map(|tx| node.submit(tx))).await;
    let results = slot
        .iter()
        .enumerate()
        .map(|(i, &u)| match &answers[u] {
            r if first[u] == i => r.clone().map_err(capped),
            Ok(id) => Err(Rejection::Replay(hex::encode(id))),
            Err(r) => Err(capped(r.clone())),
        })
        .collect();
    Response::SubmittedBatch(results)
}

/// `r` with its text cut to [`BATCH_REASON`] bytes.
fn capped(r: Rejection) -> Rejection {
    let cut = |mut s: String| {
        if s.len() > BATCH_REASON {
            let mut end = BATCH_REASON;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
        }
        s
    };
    match r {
        Rejection::Malformed(s) => Rejection::Malformed(cut(s)),
        Rejection::Replay(s) => Rejection::Replay(cut(s)),
        Rejection::Reverted(s) => Rejection::Reverted(cut(s)),
        Rejection::UnknownContract(s) => Rejection::UnknownContract(cut(s)),
        Rejection::Busy(s) => Rejection::Busy(cut(s)),
        Rejection::Internal(s) => Rejection::Internal(cut(s)),
        // Names and channels of decoded transactions: bounded by the transaction's limits.
        r @ (Rejection::WrongChannel { .. }
        | Rejection::UnknownMember(_)
        | Rejection::WrongRole { .. }
        | Rejection::BadSignature) => r,
    }
}

/// Streams event records from `from` on: stored blocks first, then each new commit.
async fn subscribe(node: &Node, conn: &mut Conn, reader: &mut Reader, mut from: Cursor) {
    let mut tip = node.watch_tip();
    loop {
        match node.events(from, EVENT_BLOCKS_PER_STEP) {
            Ok((records, next)) => {
                for r in records {
                    if !send(conn, &Response::Event(r)).await {
                        return;
                    }
                }
                from = next;
            }
            Err(e) => {
                let _ = send(conn, &Response::Error(e.to_string())).await;
                return;
            }
        }
        if from.height <= node.tip().height {
            continue;
        }
        // Caught up: wait for a commit, or for the client to hang up.
        tokio::select! {
            r = tip.changed() => if r.is_err() { return },
            f = reader.next() => if f.is_none() { return },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_tag_and_count_are_read_from_the_frame() {
        let req = Request::SubmitBatch {
            txs: vec![vec![1]; 300],
        };
        let bytes = postcard::to_allocvec(&req).expect("encode");
        assert_eq!(bytes[0], SUBMIT_BATCH_TAG);
        assert_eq!(varint(&bytes[1..]), Some(300));
        let other = postcard::to_allocvec(&Request::Submit { tx: vec![] }).expect("encode");
        assert_ne!(other[0], SUBMIT_BATCH_TAG);
        // Appended variants leave the existing indexes as they were (docs/formats.md).
        let tag = |r: &Response| postcard::to_allocvec(r).expect("encode")[0];
        assert_eq!(tag(&Response::Error(String::new())), 10);
        assert_eq!(tag(&Response::SubmittedBatch(Vec::new())), 11);
        let sub = postcard::to_allocvec(&Request::Subscribe {
            from: Cursor::default(),
        })
        .expect("encode");
        assert_eq!(sub[0], 8);
        assert_eq!(varint(&[0x80, 0x80, 0x01]), Some(1 << 14));
        assert_eq!(varint(&[0x80]), None);
        assert_eq!(varint(&[0xff; 11]), None);
    }

    #[test]
    fn long_rejection_texts_are_cut_at_a_character_boundary() {
        let long = "é".repeat(BATCH_REASON);
        match capped(Rejection::Reverted(long)) {
            Rejection::Reverted(s) => {
                assert!(s.len() <= BATCH_REASON && s.len() > BATCH_REASON - 2);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            capped(Rejection::Replay("ab".into())),
            Rejection::Replay("ab".into())
        );
    }
}
