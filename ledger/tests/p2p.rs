//! The node-to-node transport over loopback TCP: mesh delivery, admission, genesis and signature checks, limits, reconnection, partitions, bulk order.

use bpu_ledger::p2p::{
    hello_digest, welcome_digest, Admit, ChannelSpec, Handshake, Inbound, NetConfig, NetError,
    Network, PeerId, FRAME_HEADER, PROTOCOL_VERSION, TAG_DATA, TAG_KEEPALIVE,
};
use bpu_runtime::SigningKey;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc::Receiver;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

const CH: &str = "consensus";
const GENESIS: [u8; 32] = [7; 32];
/// How long a condition may take to become true (reconnection back-off is at most 5 s).
const WAIT: Duration = Duration::from_secs(20);
/// How long to watch for frames that must not arrive.
const QUIET: Duration = Duration::from_millis(300);

/// Runs a test body with an overall deadline so nothing hangs.
async fn bounded(secs: u64, body: impl Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(secs), body)
        .await
        .expect("test timed out");
}

fn key() -> SigningKey {
    SigningKey::generate().expect("keygen")
}

fn id(k: &SigningKey) -> PeerId {
    PeerId::of(&k.public_key())
}

fn admit(ids: &[PeerId]) -> Admit {
    Arc::new(parking_lot::RwLock::new(ids.iter().copied().collect()))
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().expect("addr")
}

/// Starts a network serving `CH` with `genesis`, no peers configured.
async fn start(key: SigningKey, admit: Admit, genesis: [u8; 32]) -> (Network, Receiver<Inbound>) {
    start_cfg(NetConfig::new(loopback(), key), admit, genesis).await
}

async fn start_cfg(
    cfg: NetConfig,
    admit: Admit,
    genesis: [u8; 32],
) -> (Network, Receiver<Inbound>) {
    let (net, mut rx) = Network::start(cfg, vec![(ChannelSpec::new(CH, genesis), admit)])
        .await
        .expect("start");
    let rx = rx.remove(CH).expect("receiver of the channel");
    (net, rx)
}

/// Makes every network dial every other.
fn mesh(nets: &[&Network]) {
    for a in nets {
        for b in nets {
            if a.me() != b.me() {
                a.add_peer(b.local_addr().to_string());
            }
        }
    }
}

/// Waits until `f` holds, or panics naming `what`.
async fn until(what: &str, f: impl Fn() -> bool) {
    let end = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn recv(rx: &mut Receiver<Inbound>) -> Inbound {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("a frame in time")
        .expect("the channel is open")
}

/// Asserts that nothing arrives for a while.
async fn quiet(rx: &mut Receiver<Inbound>, what: &str) {
    if let Ok(Some(f)) = tokio::time::timeout(QUIET, rx.recv()).await {
        panic!("{what}: unexpected frame {:?} from {:?}", f.bytes, f.peer);
    }
}

fn frame(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_broadcast_once_and_send_to_one() {
    bounded(60, async {
        let keys = [key(), key(), key()];
        let ids: Vec<PeerId> = keys.iter().map(id).collect();
        let mut nets = Vec::new();
        let mut rxs = Vec::new();
        for k in keys {
            let (n, rx) = start(k, admit(&ids), GENESIS).await;
            nets.push(n);
            rxs.push(rx);
        }
        mesh(&[&nets[0], &nets[1], &nets[2]]);
        // Our own address among the peers is dialed once, recognised and dropped.
        nets[0].add_peer(nets[0].local_addr().to_string());
        for n in &nets {
            until("a full mesh", || n.peers(CH).len() == 2).await;
            assert!(!n.peers(CH).contains(&n.me()));
        }
        assert_eq!(nets[0].peers("no such channel"), Vec::<PeerId>::new());

        const N: usize = 50;
        for (i, n) in nets.iter().enumerate() {
            for k in 0..N {
                n.broadcast(CH, frame(&format!("{i}:{k}")));
            }
        }
        for (i, rx) in rxs.iter_mut().enumerate() {
            let mut seen = HashSet::new();
            let mut next: HashMap<PeerId, usize> = HashMap::new();
            for _ in 0..2 * N {
                let f = recv(rx).await;
                let text = String::from_utf8(f.bytes.to_vec()).expect("utf-8");
                let (from, k) = text.split_once(':').expect("i:k");
                let from: usize = from.parse().expect("sender");
                let k: usize = k.parse().expect("seq");
                assert_ne!(from, i, "node {i} got its own frame");
                assert_eq!(f.peer, ids[from], "the sender is authenticated");
                assert!(seen.insert((from, k)), "node {i} got {text} twice");
                let want = next.entry(f.peer).or_default();
                assert_eq!(k, *want, "in order from each sender");
                *want += 1;
            }
            quiet(rx, "after the broadcasts").await;
        }

        assert!(nets[0].send(CH, ids[1], frame("direct")));
        let f = recv(&mut rxs[1]).await;
        assert_eq!((f.peer, &f.bytes[..]), (ids[0], &b"direct"[..]));
        quiet(&mut rxs[2], "a frame sent to node 1 only").await;
        // Unknown peer, unknown channel, oversized payload: refused.
        assert!(!nets[0].send(CH, id(&key()), frame("x")));
        assert!(!nets[0].send("nope", ids[1], frame("x")));
        let s = nets[0].stats();
        assert_eq!(s.sent_frames, 2 * N as u64 + 1);
        assert_eq!(s.received_frames, 2 * N as u64);
        assert_eq!(s.dropped_rejected, 2);
        assert_eq!(s.handshakes_failed, 0, "dialing ourselves is not a failure");
        for n in &nets {
            n.shutdown();
        }
        // Receivers end once the network is shut down.
        for rx in &mut rxs {
            let end = tokio::time::timeout(WAIT, rx.recv()).await.expect("ends");
            assert!(end.is_none());
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unadmitted_key_is_rejected_and_admission_is_checked_per_frame() {
    bounded(60, async {
        let (ka, kb, kx) = (key(), key(), key());
        let (a_id, b_id, x_id) = (id(&ka), id(&kb), id(&kx));
        let a_admit = admit(&[a_id, b_id]);
        let (a, mut rx_a) = start(ka, a_admit.clone(), GENESIS).await;
        let (b, mut rx_b) = start(kb, admit(&[a_id, b_id]), GENESIS).await;
        // X admits everyone, but A does not admit X.
        let (x, _rx_x) = start(kx, admit(&[a_id, b_id, x_id]), GENESIS).await;
        mesh(&[&a, &b, &x]);
        until("A and B connected", || {
            a.peers(CH) == vec![b_id] && b.peers(CH).contains(&a_id)
        })
        .await;
        until("A refused X's handshake", || {
            a.stats().handshakes_failed >= 1 && x.stats().handshakes_failed >= 1
        })
        .await;
        assert!(!x.peers(CH).contains(&a_id));
        assert!(!x.send(CH, a_id, frame("let me in")));
        x.broadcast(CH, frame("let me in"));
        // A dials X fine (X admits A) but does not admit it: nothing is sent to X.
        assert!(!a.peers(CH).contains(&x_id));
        assert!(!a.send(CH, x_id, frame("no")));
        quiet(&mut rx_a, "a frame from an unadmitted key").await;

        assert!(b.send(CH, a_id, frame("one")));
        assert_eq!(&recv(&mut rx_a).await.bytes[..], b"one");
        // Membership change: B leaves A's admit set; its frames are dropped per frame.
        a_admit.write().remove(&b_id);
        let before = a.stats().dropped_rejected;
        assert!(b.send(CH, a_id, frame("two")));
        until("A dropped B's frame", || {
            a.stats().dropped_rejected > before
        })
        .await;
        quiet(&mut rx_a, "a frame from a peer no longer admitted").await;
        assert!(a.peers(CH).is_empty());
        assert!(!a.send(CH, b_id, frame("to B")));
        quiet(&mut rx_b, "a frame to a peer no longer admitted").await;
        a_admit.write().insert(b_id);
        assert!(b.send(CH, a_id, frame("three")));
        assert_eq!(&recv(&mut rx_a).await.bytes[..], b"three");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_genesis_is_rejected_or_not_routed() {
    bounded(60, async {
        let (ka, ky, kz) = (key(), key(), key());
        let ids = [id(&ka), id(&ky), id(&kz)];
        let everyone = || admit(&ids);
        // A serves CH and "side"; Y has another genesis for CH; Z agrees on CH only.
        let (a, mut rxs_a) = Network::start(
            NetConfig::new(loopback(), ka),
            vec![
                (ChannelSpec::new(CH, GENESIS), everyone()),
                (ChannelSpec::new("side", [1; 32]), everyone()),
            ],
        )
        .await
        .expect("start A");
        let (y, _rx_y) = start(ky, everyone(), [8; 32]).await;
        let (z, mut rxs_z) = Network::start(
            NetConfig::new(loopback(), kz),
            vec![
                (ChannelSpec::new(CH, GENESIS), everyone()),
                (ChannelSpec::new("side", [2; 32]), everyone()),
            ],
        )
        .await
        .expect("start Z");
        mesh(&[&a, &y, &z]);
        until("A and Z connected on CH", || {
            a.peers(CH) == vec![ids[2]] && z.peers(CH) == vec![ids[0]]
        })
        .await;
        until("A and Y refused each other", || {
            a.stats().handshakes_failed >= 1 && y.stats().handshakes_failed >= 1
        })
        .await;
        assert!(y.peers(CH).is_empty());
        assert!(!y.send(CH, ids[0], frame("other chain")));
        assert!(a.peers("side").is_empty() && z.peers("side").is_empty());
        assert!(!z.send("side", ids[0], frame("side")));
        z.broadcast("side", frame("side"));
        assert!(z.send(CH, ids[0], frame("main")));
        let rx_a = rxs_a.get_mut(CH).expect("CH");
        let f = recv(rx_a).await;
        assert_eq!((f.peer, &f.bytes[..]), (ids[2], &b"main"[..]));
        quiet(rx_a, "a frame from another genesis").await;
        quiet(
            rxs_a.get_mut("side").expect("side"),
            "a channel with two genesis hashes",
        )
        .await;
        assert!(a.send(CH, ids[2], frame("back")));
        assert_eq!(
            &recv(rxs_z.get_mut(CH).expect("CH")).await.bytes[..],
            b"back"
        );
    })
    .await;
}

/// A hand-written client of the handshake and framing, to send what a real node never would.
struct Raw {
    r: FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    w: FramedWrite<OwnedWriteHalf, LengthDelimitedCodec>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let (r, w) = TcpStream::connect(addr)
            .await
            .expect("connect")
            .into_split();
        let c = || bpu_ledger::p2p::codec(1 << 20);
        Raw {
            r: FramedRead::new(r, c()),
            w: FramedWrite::new(w, c()),
        }
    }

    /// The next frame other than a keep-alive; `None` once the peer closed.
    async fn frame(&mut self) -> Option<Vec<u8>> {
        loop {
            match tokio::time::timeout(WAIT, self.r.next())
                .await
                .expect("read in time")
            {
                Some(Ok(f)) if f[..] == [TAG_KEEPALIVE] => continue,
                Some(Ok(f)) => return Some(f.to_vec()),
                Some(Err(_)) | None => return None,
            }
        }
    }

    async fn msg(&mut self) -> Handshake {
        let f = self.frame().await.expect("a handshake message");
        postcard::from_bytes(&f).expect("decodes")
    }

    async fn send(&mut self, m: &Handshake) {
        let b = postcard::to_allocvec(m).expect("encode");
        self.w.send(Bytes::from(b)).await.expect("send");
    }

    /// Reads the Challenge and answers with a Hello claiming `claimed`, signed by `signer`.
    async fn hello(
        addr: SocketAddr,
        version: u16,
        claimed: &SigningKey,
        signer: &SigningKey,
    ) -> (Raw, Handshake, [u8; 32]) {
        let mut raw = Raw::connect(addr).await;
        let Handshake::Challenge { version: v, nonce } = raw.msg().await else {
            panic!("expected a Challenge");
        };
        assert_eq!(v, PROTOCOL_VERSION);
        let nonce_d = [0x5a; 32];
        let channels = vec![ChannelSpec::new(CH, GENESIS)];
        let digest = hello_digest(&nonce, &nonce_d, &id(claimed), &channels);
        let sig = signer
            .sign_digest(&digest)
            .expect("sign")
            .to_fixed()
            .to_vec();
        raw.send(&Handshake::Hello {
            version,
            key: id(claimed).0.to_vec(),
            nonce: nonce_d,
            channels,
            sig,
        })
        .await;
        let reply = raw.msg().await;
        (raw, reply, nonce)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_handshake_signature_and_wrong_version_are_rejected() {
    bounded(60, async {
        let (ka, kb, kx) = (key(), key(), key());
        let (a_id, b_id) = (id(&ka), id(&kb));
        let (a, mut rx_a) = start(ka, admit(&[a_id, b_id]), GENESIS).await;
        let addr = a.local_addr();

        // Claims to be B (admitted), signed by X.
        let (mut raw, reply, _) = Raw::hello(addr, PROTOCOL_VERSION, &kb, &kx).await;
        match reply {
            Handshake::Reject { reason } => assert!(reason.contains("does not verify"), "{reason}"),
            other => panic!("expected a Reject, got {other:?}"),
        }
        assert_eq!(
            raw.frame().await,
            None,
            "the listener closes after a Reject"
        );

        let (mut raw, reply, _) = Raw::hello(addr, PROTOCOL_VERSION + 1, &kb, &kb).await;
        match reply {
            Handshake::Reject { reason } => assert!(reason.contains("version"), "{reason}"),
            other => panic!("expected a Reject, got {other:?}"),
        }
        assert_eq!(raw.frame().await, None);
        assert_eq!(a.stats().handshakes_failed, 2);

        // The same client signing honestly is welcomed, by a signature over its nonce.
        let (mut raw, reply, nonce_l) = Raw::hello(addr, PROTOCOL_VERSION, &kb, &kb).await;
        let Handshake::Welcome { key, channels, sig } = reply else {
            panic!("expected a Welcome, got {reply:?}");
        };
        assert_eq!(key, a_id.0.to_vec());
        let digest = welcome_digest(&[0x5a; 32], &nonce_l, &a_id, &channels);
        let sig = bpu_runtime::Signature::from_fixed(&sig).expect("64 bytes");
        assert!(bpu_runtime::cpu_verify(&bpu_runtime::VerifyRequest::new(
            &a_id.public_key(),
            &sig,
            digest
        )));
        raw.w
            .send(Bytes::from_static(&[TAG_DATA, 0, 0, b'h', b'i']))
            .await
            .expect("send");
        let f = recv(&mut rx_a).await;
        assert_eq!((f.peer, &f.bytes[..]), (b_id, &b"hi"[..]));
        quiet(&mut rx_a, "after the raw client's frame").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_closes_only_that_connection() {
    bounded(60, async {
        let (ka, kb, kc) = (key(), key(), key());
        let ids = [id(&ka), id(&kb), id(&kc)];
        let mut cfg = NetConfig::new(loopback(), ka);
        cfg.max_frame = 1024;
        let (a, mut rx_a) = start_cfg(cfg, admit(&ids), GENESIS).await;
        let (c, _rx_c) = start(kc, admit(&ids), GENESIS).await;
        mesh(&[&a, &c]);
        until("C connected to A", || c.peers(CH) == vec![ids[0]]).await;

        let (mut raw, reply, _) = Raw::hello(a.local_addr(), PROTOCOL_VERSION, &kb, &kb).await;
        assert!(matches!(reply, Handshake::Welcome { .. }), "{reply:?}");
        let mut ok = vec![TAG_DATA, 0, 0];
        ok.extend_from_slice(&[9u8; 1024]);
        raw.w.send(Bytes::from(ok)).await.expect("send");
        let f = recv(&mut rx_a).await;
        assert_eq!((f.peer, f.bytes.len()), (ids[1], 1024));
        // One byte over the limit: the length prefix alone closes the connection.
        let len = u32::try_from(FRAME_HEADER + 1025).expect("fits");
        let inner = raw.w.get_mut();
        inner.write_all(&len.to_be_bytes()).await.expect("write");
        inner
            .write_all(&[TAG_DATA, 0, 0, 1, 2, 3])
            .await
            .expect("write");
        inner.flush().await.expect("flush");
        assert_eq!(
            raw.frame().await,
            None,
            "the oversized sender is disconnected"
        );
        assert_eq!(a.stats().closed_frame_too_large, 1);
        quiet(&mut rx_a, "the oversized frame").await;

        // Everyone else keeps working; a sender refuses oversized payloads itself.
        assert!(c.send(CH, ids[0], frame("still here")));
        assert_eq!(&recv(&mut rx_a).await.bytes[..], b"still here");
        assert!(!a.send(CH, ids[2], Bytes::from(vec![0u8; 1025])));
        assert!(a.send(CH, ids[2], Bytes::from(vec![0u8; 1024])));
    })
    .await;
}

/// Starts a network on a fixed address, retrying while the previous listener there closes.
async fn start_on(
    addr: SocketAddr,
    pem: &str,
    peers: Vec<String>,
    admit: Admit,
) -> (Network, Receiver<Inbound>) {
    let end = Instant::now() + WAIT;
    loop {
        let mut cfg = NetConfig::new(addr, SigningKey::from_pem(pem.as_bytes()).expect("key"));
        cfg.peers = peers.clone();
        match Network::start(cfg, vec![(ChannelSpec::new(CH, GENESIS), admit.clone())]).await {
            Ok((n, mut rx)) => return (n, rx.remove(CH).expect("receiver")),
            Err(NetError::Bind { .. }) if Instant::now() < end => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("restart: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_and_delivers_what_was_queued_up_to_the_bound() {
    bounded(90, async {
        let (ka, kc) = (key(), key());
        let ids = [id(&ka), id(&kc)];
        let pem_c = kc.to_pem().expect("pem");
        let mut cfg = NetConfig::new(loopback(), ka);
        cfg.queue = 8;
        let (a, mut rx_a) = start_cfg(cfg, admit(&ids), GENESIS).await;
        let (c, mut rx_c) = start(kc, admit(&ids), GENESIS).await;
        let c_addr = c.local_addr();
        mesh(&[&a, &c]);
        until("connected", || {
            a.peers(CH).len() == 1 && c.peers(CH).len() == 1
        })
        .await;
        a.broadcast(CH, frame("before"));
        assert_eq!(&recv(&mut rx_c).await.bytes[..], b"before");

        c.shutdown();
        drop(c);
        assert!(tokio::time::timeout(WAIT, rx_c.recv())
            .await
            .expect("ends")
            .is_none());
        until("A saw C go", || a.peers(CH).is_empty()).await;
        // Queued while C is away: the queue keeps the 8 newest of 20.
        for k in 0..20 {
            a.broadcast(CH, frame(&format!("queued {k}")));
        }
        assert_eq!(a.stats().dropped_queue_full, 12);
        // While disconnected, `send` still queues (evicting the oldest).
        assert!(a.send(CH, ids[1], frame("queued 20")));

        let (c2, mut rx_c2) = start_on(
            c_addr,
            &pem_c,
            vec![a.local_addr().to_string()],
            admit(&ids),
        )
        .await;
        for k in 13..=20 {
            let f = recv(&mut rx_c2).await;
            assert_eq!(
                (f.peer, &f.bytes[..]),
                (ids[0], format!("queued {k}").as_bytes())
            );
        }
        quiet(&mut rx_c2, "only the queue bound survives").await;
        a.broadcast(CH, frame("after"));
        assert_eq!(&recv(&mut rx_c2).await.bytes[..], b"after");
        assert!(c2.send(CH, ids[0], frame("hello again")));
        assert_eq!(&recv(&mut rx_a).await.bytes[..], b"hello again");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_peers_exchange_nothing_until_unblocked() {
    bounded(60, async {
        let (ka, kb) = (key(), key());
        let ids = [id(&ka), id(&kb)];
        let (a, mut rx_a) = start(ka, admit(&ids), GENESIS).await;
        let (b, mut rx_b) = start(kb, admit(&ids), GENESIS).await;
        mesh(&[&a, &b]);
        until("connected", || {
            a.peers(CH).len() == 1 && b.peers(CH).len() == 1
        })
        .await;

        a.set_blocked([ids[1]].into_iter().collect());
        assert!(!a.send(CH, ids[1], frame("a-to-b")));
        a.broadcast(CH, frame("a-to-b"));
        assert!(
            b.send(CH, ids[0], frame("b-to-a")),
            "B does not know about the partition"
        );
        until("A dropped B's frame", || a.stats().dropped_blocked >= 3).await;
        quiet(&mut rx_a, "blocked inbound").await;
        quiet(&mut rx_b, "blocked outbound").await;

        a.set_blocked(HashSet::new());
        assert!(a.send(CH, ids[1], frame("a-to-b again")));
        assert!(b.send(CH, ids[0], frame("b-to-a again")));
        assert_eq!(&recv(&mut rx_b).await.bytes[..], b"a-to-b again");
        assert_eq!(&recv(&mut rx_a).await.bytes[..], b"b-to-a again");
        assert_eq!(a.stats().dropped_blocked, 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_frames_per_sender_arrive_complete_and_in_order() {
    bounded(180, async {
        const N: u32 = 10_000;
        const SIZE: usize = 1024;
        let keys = [key(), key(), key()];
        let ids: Vec<PeerId> = keys.iter().map(id).collect();
        let mut nets = Vec::new();
        let mut rxs = Vec::new();
        for k in keys {
            let (n, rx) = start(k, admit(&ids), GENESIS).await;
            nets.push(n);
            rxs.push(rx);
        }
        mesh(&[&nets[0], &nets[1], &nets[2]]);
        for n in &nets {
            until("a full mesh", || n.peers(CH).len() == 2).await;
        }
        let dest = ids[2];
        let mut senders = Vec::new();
        for (i, n) in nets.iter().take(2).enumerate() {
            let n = n.clone();
            senders.push(tokio::spawn(async move {
                for seq in 0..N {
                    let mut p = vec![seq as u8; SIZE];
                    p[0] = i as u8;
                    p[1..5].copy_from_slice(&seq.to_be_bytes());
                    let p = Bytes::from(p);
                    // A full queue refuses the frame: wait for room rather than lose it.
                    while !n.send(CH, dest, p.clone()) {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }));
        }
        let rx = &mut rxs[2];
        let mut next = [0u32; 2];
        for _ in 0..2 * N {
            let f = recv(rx).await;
            assert_eq!(f.bytes.len(), SIZE);
            let i = usize::from(f.bytes[0]);
            assert_eq!(f.peer, ids[i]);
            let seq = u32::from_be_bytes([f.bytes[1], f.bytes[2], f.bytes[3], f.bytes[4]]);
            assert_eq!(seq, next[i], "in order from sender {i}");
            assert!(
                f.bytes[5..].iter().all(|&b| b == seq as u8),
                "payload intact"
            );
            next[i] += 1;
        }
        for s in senders {
            s.await.expect("sender");
        }
        assert_eq!(next, [N, N]);
        quiet(rx, "after all frames").await;
        let s = nets[2].stats();
        assert_eq!(s.received_frames, 2 * u64::from(N));
        assert_eq!(s.received_bytes, 2 * u64::from(N) * SIZE as u64);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_with_one_key_refuse_each_other() {
    bounded(60, async {
        let k = key();
        let pem = k.to_pem().expect("pem");
        let me = id(&k);
        let (a1, _rx1) = start(k, admit(&[me]), GENESIS).await;
        let twin = SigningKey::from_pem(pem.as_bytes()).expect("key");
        let (a2, _rx2) = start(twin, admit(&[me]), GENESIS).await;
        mesh(&[&a1, &a2]);
        a1.add_peer(a2.local_addr().to_string());
        a2.add_peer(a1.local_addr().to_string());
        until("both refused the twin", || {
            a1.stats().handshakes_failed >= 2 && a2.stats().handshakes_failed >= 2
        })
        .await;
        assert!(a1.peers(CH).is_empty() && a2.peers(CH).is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_and_live_ones_get_keepalives() {
    bounded(90, async {
        let (ka, kb) = (key(), key());
        let ids = [id(&ka), id(&kb)];
        let (a, _rx_a) = start(ka, admit(&ids), GENESIS).await;
        let addr = a.local_addr();
        // Connects and never answers the Challenge: closed at the handshake deadline.
        let stalled = async {
            let t = Instant::now();
            let mut raw = Raw::connect(addr).await;
            assert!(matches!(raw.msg().await, Handshake::Challenge { .. }));
            assert_eq!(raw.frame().await, None);
            let waited = t.elapsed();
            assert!(
                waited >= Duration::from_secs(4) && waited < Duration::from_secs(10),
                "{waited:?}"
            );
        };
        // Authenticates, then stays silent: gets keep-alives, and is closed after the idle timeout.
        let idle = async {
            let (mut raw, reply, _) = Raw::hello(addr, PROTOCOL_VERSION, &kb, &kb).await;
            assert!(matches!(reply, Handshake::Welcome { .. }), "{reply:?}");
            let t = Instant::now();
            let mut keepalives = 0;
            loop {
                match tokio::time::timeout(Duration::from_secs(60), raw.r.next()).await {
                    Ok(Some(Ok(f))) if f[..] == [TAG_KEEPALIVE] => keepalives += 1,
                    Ok(Some(Ok(f))) => panic!("unexpected frame {f:?}"),
                    Ok(Some(Err(_)) | None) => break,
                    Err(_) => panic!("the idle connection was not closed"),
                }
            }
            let waited = t.elapsed();
            assert!(
                waited >= Duration::from_secs(29) && waited < Duration::from_secs(40),
                "{waited:?}"
            );
            assert!(keepalives >= 4, "{keepalives} keep-alives in {waited:?}");
        };
        tokio::join!(stalled, idle);
        assert_eq!(a.stats().handshakes_failed, 1);
    })
    .await;
}
