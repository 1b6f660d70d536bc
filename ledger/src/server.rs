//! The node's client server: length-delimited postcard frames over TCP, one request → one
//! response, except `Subscribe`, which turns the connection into an event stream.
//!
//! Frames are a 4-byte big-endian length and a postcard [`Request`] / [`Response`]; requests over
//! [`MAX_REQUEST`] bytes or that do not decode get [`Response::Error`] and the connection closes;
//! a connection idle for [`IDLE_TIMEOUT`] is closed.

use crate::api::{Cursor, Request, Response, MAX_REQUEST, MAX_RESPONSE, PROTOCOL};
use crate::node::Node;
use futures::{SinkExt, StreamExt};
use std::net::SocketAddr;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

/// Blocks of events read from the store per step of a subscription.
const EVENT_BLOCKS_PER_STEP: u64 = 64;

/// A connection with no complete request for this long is closed.
pub const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

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

/// The read half of a connection: frames up to [`MAX_REQUEST`].
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
    // Reads are bounded by the request limit (a longer length prefix is refused before any
    // payload is buffered); responses may be as large as a block.
    let (r, w) = sock.into_split();
    let mut reader: Reader = FramedRead::new(r, codec(MAX_REQUEST));
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
