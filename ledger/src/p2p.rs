//! Node-to-node transport for consensus: authenticated TCP links between nodes, per-channel admission, bounded queues.
//!
//! Purpose: the consensus driver hands frames (opaque bytes) to [`Network::broadcast`] and
//! [`Network::send`] and reads what its peers sent from one bounded receiver per channel. The
//! theory of operation is `docs/network.md`.
//!
//! Invariants:
//! - Every node dials every configured address and sends only on the connections it dialed
//!   (outbound); it receives only on the connections it accepted (inbound). Between two nodes
//!   there is one link per direction, so there is no duplicate-connection race to resolve.
//! - No data frame is sent or delivered before a mutual handshake: each side signs the other's
//!   fresh nonce with its P-256 node key, so a peer is the holder of the key its [`PeerId`] is.
//! - A frame is delivered to a channel only while its sender is in that channel's [`Admit`] set
//!   (checked per frame) and both nodes hold the channel with the same genesis hash.
//! - Nothing blocks the caller: outbound queues are bounded in frames and drop (and count) what
//!   does not fit; inbound delivery applies back-pressure to the sending peer instead of dropping.
//! - Frames are neither encrypted nor individually authenticated (see `docs/network.md`).

use bpu_runtime::{cpu_verify, PublicKey, Signature, SigningKey, VerifyRequest};
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::{Mutex, RwLock};
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

/// The handshake's protocol version; both sides must speak the same.
pub const PROTOCOL_VERSION: u16 = 1;
/// Default largest payload of a frame, bytes.
pub const DEFAULT_MAX_FRAME: usize = 64 << 20;
/// Default per-peer outbound queue, frames.
pub const DEFAULT_QUEUE: usize = 1024;
/// Frames buffered per channel on the receive side before readers wait (back-pressure).
pub const INBOUND_CAPACITY: usize = 4096;
/// A handshake (connect included, for the dialer) must finish within this, or the link closes.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest handshake message, bytes (before authentication nothing larger is buffered).
pub const HANDSHAKE_MAX_FRAME: usize = 64 << 10;
/// Unauthenticated inbound connections handled at once; more are closed at accept.
pub const MAX_PENDING_HANDSHAKES: usize = 64;
/// A link with nothing to send sends a keep-alive after this long.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// A link on which nothing arrived for this long is closed (half-open TCP).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// First reconnection delay; doubles per failure up to [`MAX_BACKOFF`], each jittered to 50–100 %.
pub const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest reconnection delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Most channels a node may serve (they are all listed in its handshake).
pub const MAX_CHANNELS: usize = 256;
/// Longest channel name, bytes.
pub const MAX_CHANNEL_NAME: usize = 64;
/// Bytes of a data frame before its payload: the tag and the channel index.
pub const FRAME_HEADER: usize = 3;
/// First byte of a data frame: `TAG_DATA`, channel index (u16 big-endian), payload.
pub const TAG_DATA: u8 = 0;
/// The whole keep-alive frame (one byte).
pub const TAG_KEEPALIVE: u8 = 1;
/// Domain separation of the dialer's handshake signature.
pub const HELLO_LABEL: &[u8] = b"bpu.p2p.hello.v1";
/// Domain separation of the listener's handshake signature.
pub const WELCOME_LABEL: &[u8] = b"bpu.p2p.welcome.v1";
/// Largest frame on the listener → dialer direction, which carries only keep-alives.
const REVERSE_MAX_FRAME: usize = 16;
/// Longest reject reason kept from a peer for the log.
const MAX_REASON_LOGGED: usize = 300;

/// A peer's identity: its SEC1 uncompressed P-256 public key (0x04 ‖ x ‖ y).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub [u8; 65]);

impl PeerId {
    /// The identity of a public key.
    pub fn of(key: &PublicKey) -> PeerId {
        PeerId(key.to_sec1())
    }

    /// 65 bytes starting 0x04, else `None` (compressed points are not identities).
    pub fn from_sec1(bytes: &[u8]) -> Option<PeerId> {
        let arr: [u8; 65] = bytes.try_into().ok()?;
        (arr[0] == 0x04).then_some(PeerId(arr))
    }

    /// The public key (coordinates taken raw; verification rejects points off the curve).
    pub fn public_key(&self) -> PublicKey {
        let mut x = [0u8; 32];
        let mut y = [0u8; 32];
        x.copy_from_slice(&self.0[1..33]);
        y.copy_from_slice(&self.0[33..]);
        PublicKey { x, y }
    }

    /// The first 8 bytes of x in hex, enough to tell nodes apart in logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[1..9])
    }
}

impl std::fmt::Debug for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PeerId({}…)", self.short())
    }
}

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}…", self.short())
    }
}

/// Where a network listens, whom it dials, and its limits.
#[derive(Debug)]
pub struct NetConfig {
    /// Listening address; port 0 picks a free port ([`Network::local_addr`] tells which).
    pub listen: SocketAddr,
    /// `host:port` addresses to dial. Our own address may be among them: it is dropped once the
    /// handshake shows the listener holds our key.
    pub peers: Vec<String>,
    /// This node's key: its [`PeerId`] and the handshake signatures.
    pub key: SigningKey,
    /// Largest payload sent or accepted, bytes; a larger incoming frame closes its connection.
    pub max_frame: usize,
    /// Per-peer outbound queue, frames.
    pub queue: usize,
}

impl NetConfig {
    /// No peers, [`DEFAULT_MAX_FRAME`], [`DEFAULT_QUEUE`].
    pub fn new(listen: SocketAddr, key: SigningKey) -> NetConfig {
        NetConfig {
            listen,
            peers: Vec::new(),
            key,
            max_frame: DEFAULT_MAX_FRAME,
            queue: DEFAULT_QUEUE,
        }
    }
}

/// A channel as the handshake lists it: its name and its genesis hash.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChannelSpec {
    pub name: String,
    pub genesis_hash: [u8; 32],
}

impl ChannelSpec {
    /// A channel spec.
    pub fn new(name: impl Into<String>, genesis_hash: [u8; 32]) -> ChannelSpec {
        ChannelSpec {
            name: name.into(),
            genesis_hash,
        }
    }
}

/// Which peer keys may exchange frames on a channel (the driver updates it when membership
/// changes; it is read on every frame).
pub type Admit = Arc<RwLock<HashSet<PeerId>>>;

/// A frame received on a channel, with its authenticated sender.
#[derive(Clone, Debug)]
pub struct Inbound {
    pub peer: PeerId,
    pub bytes: Bytes,
}

/// Counters since start. Frames count payloads (keep-alives and handshakes are not counted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames written to a connection, and their payload bytes.
    pub sent_frames: u64,
    pub sent_bytes: u64,
    /// Frames delivered to a channel's receiver, and their payload bytes.
    pub received_frames: u64,
    pub received_bytes: u64,
    /// Outbound frames refused or evicted because a peer's queue was full.
    pub dropped_queue_full: u64,
    /// Frames to or from a peer in the [`Network::set_blocked`] set.
    pub dropped_blocked: u64,
    /// Frames refused: the peer is not admitted on the channel, the channel is not common, the
    /// payload is over `max_frame`, the peer is unknown, or the receiver is gone.
    pub dropped_rejected: u64,
    /// Connections closed during the handshake (either side): bad signature, not admitted, other
    /// genesis, wrong version, timeout, malformed messages.
    pub handshakes_failed: u64,
    /// Connections closed because the peer sent a frame over the limit.
    pub closed_frame_too_large: u64,
}

/// Transport errors. Configuration errors come from [`Network::start`]; the others close one
/// connection and are logged (the dialer retries).
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot listen on {addr}: {source}; choose a free address, or port 0")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("channel {0:?} is listed twice; give each channel once")]
    DuplicateChannel(String),
    #[error("{0} channels; a node serves at most {MAX_CHANNELS}")]
    TooManyChannels(usize),
    #[error("channel name {0:?} is empty or longer than {MAX_CHANNEL_NAME} bytes; use the channel's genesis name")]
    ChannelName(String),
    #[error("max_frame {0} is out of range; give 1 ..= {max} bytes", max = u32::MAX as usize - FRAME_HEADER)]
    MaxFrame(usize),
    #[error("queue is 0; the per-peer outbound queue needs room for at least one frame")]
    ZeroQueue,
    #[error("cannot connect to {addr}: {source}; is the node running and the address right?")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("the connection closed")]
    Closed,
    #[error("the handshake did not finish within {0:?}; the peer is overloaded, unreachable or not a bpu node")]
    HandshakeTimeout(Duration),
    #[error("protocol version {theirs} is not supported (this node speaks {ours}); run the same bpu release on both nodes")]
    Version { theirs: u16, ours: u16 },
    #[error("protocol violation: {0}; the peer is not a compatible bpu node")]
    Protocol(String),
    #[error(
        "the handshake signature of {0} does not verify; the peer does not hold the key it claims"
    )]
    BadSignature(PeerId),
    #[error("peer {peer} has another genesis for channel(s) {channels:?}; start every node of a channel from the same genesis file")]
    OtherGenesis { peer: PeerId, channels: Vec<String> },
    #[error("peer {0} serves no channel that this node serves; configure a common channel")]
    NoCommonChannel(PeerId),
    #[error("key {0} is not admitted on any channel both nodes serve; add it to the channel's validators")]
    NotAdmitted(PeerId),
    #[error("the listener refused: {reason}")]
    Rejected { addr: String, reason: String },
    #[error("frame of more than {limit} bytes from {from}; raise max_frame if such frames are legitimate")]
    FrameTooLarge { from: String, limit: usize },
    #[error("another process dialed with this node's key {0}; give every node its own key")]
    DuplicateKey(PeerId),
    #[error("nothing received for {0:?}; the connection is presumed dead (half-open)")]
    Idle(Duration),
    #[error("signing the handshake: {0}")]
    Sign(String),
}

/// Handshake messages (postcard-encoded, one per length-delimited frame); see
/// `docs/network.md` for the exchange and the signed bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Handshake {
    /// Listener → dialer, first: the version and the listener's fresh nonce.
    Challenge { version: u16, nonce: [u8; 32] },
    /// Dialer → listener: its key (65-byte SEC1), nonce, channels and the signature (64-byte
    /// r‖s) over [`hello_digest`].
    Hello {
        version: u16,
        key: Vec<u8>,
        nonce: [u8; 32],
        channels: Vec<ChannelSpec>,
        sig: Vec<u8>,
    },
    /// Listener → dialer on success: its key, channels and signature over [`welcome_digest`].
    Welcome {
        key: Vec<u8>,
        channels: Vec<ChannelSpec>,
        sig: Vec<u8>,
    },
    /// Listener → dialer on failure, then the listener closes.
    Reject { reason: String },
}

fn transcript(
    label: &[u8],
    first: &[u8; 32],
    second: &[u8; 32],
    key: &PeerId,
    channels: &[ChannelSpec],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(label);
    h.update(first);
    h.update(second);
    h.update(key.0);
    // A Vec of plain structs always encodes; the fallback is never taken.
    h.update(postcard::to_allocvec(channels).unwrap_or_default());
    h.finalize().into()
}

/// What the dialer signs: SHA-256("bpu.p2p.hello.v1" ‖ nonce_l ‖ nonce_d ‖ key ‖ postcard(channels)).
pub fn hello_digest(
    nonce_l: &[u8; 32],
    nonce_d: &[u8; 32],
    key: &PeerId,
    channels: &[ChannelSpec],
) -> [u8; 32] {
    transcript(HELLO_LABEL, nonce_l, nonce_d, key, channels)
}

/// What the listener signs: SHA-256("bpu.p2p.welcome.v1" ‖ nonce_d ‖ nonce_l ‖ key ‖
/// postcard(channels)).
pub fn welcome_digest(
    nonce_d: &[u8; 32],
    nonce_l: &[u8; 32],
    key: &PeerId,
    channels: &[ChannelSpec],
) -> [u8; 32] {
    transcript(WELCOME_LABEL, nonce_d, nonce_l, key, channels)
}

/// The frame codec: a 4-byte big-endian length, then that many bytes, at most `max`.
pub fn codec(max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(max)
        .new_codec()
}

/// True when `sig` (64-byte r‖s) by `key` verifies over `digest`.
fn verifies(key: &PeerId, sig: &[u8], digest: [u8; 32]) -> bool {
    match Signature::from_fixed(sig) {
        Ok(s) => cpu_verify(&VerifyRequest::new(&key.public_key(), &s, digest)),
        Err(_) => false,
    }
}

fn random_nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

/// A fresh nonce registered as this process's own for as long as the handshake lasts.
struct OwnNonce<'a> {
    sh: &'a Shared,
    nonce: [u8; 32],
}

impl<'a> OwnNonce<'a> {
    fn new(sh: &'a Shared) -> OwnNonce<'a> {
        let nonce = random_nonce();
        sh.own_nonces.lock().insert(nonce);
        OwnNonce { sh, nonce }
    }
}

impl Drop for OwnNonce<'_> {
    fn drop(&mut self) {
        self.sh.own_nonces.lock().remove(&self.nonce);
    }
}

#[derive(Default)]
struct Counters {
    sent_frames: AtomicU64,
    sent_bytes: AtomicU64,
    received_frames: AtomicU64,
    received_bytes: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_blocked: AtomicU64,
    dropped_rejected: AtomicU64,
    handshakes_failed: AtomicU64,
    closed_frame_too_large: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn add(c: &AtomicU64, n: usize) {
    c.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
}

struct Chan {
    spec: ChannelSpec,
    admit: Admit,
}

/// The outbound side of one peer: its queue survives reconnections.
struct PeerOut {
    id: PeerId,
    state: Mutex<OutState>,
    wake: Notify,
}

struct OutState {
    queue: VecDeque<(u16, Bytes)>,
    /// A dialed, authenticated connection is writing this queue.
    connected: bool,
    /// Per local channel: the peer holds it with the same genesis (as of the last handshake).
    routes: Vec<bool>,
}

struct Shared {
    me: PeerId,
    key: SigningKey,
    local: SocketAddr,
    max_frame: usize,
    queue: usize,
    chans: Vec<Chan>,
    by_name: HashMap<String, usize>,
    specs: Vec<ChannelSpec>,
    /// Per local channel; `None` after shutdown so receivers end once readers have stopped.
    inbound: Mutex<Option<Vec<mpsc::Sender<Inbound>>>>,
    out: RwLock<HashMap<PeerId, Arc<PeerOut>>>,
    blocked: RwLock<HashSet<PeerId>>,
    dialing: Mutex<HashSet<String>>,
    stats: Counters,
    cancel: CancellationToken,
    rt: tokio::runtime::Handle,
    pending: Arc<Semaphore>,
    /// Nonces of this process's handshakes in progress: a handshake signed with our own key is
    /// with ourselves only if the other side's copy of our nonce is one of these.
    own_nonces: Mutex<HashSet<[u8; 32]>>,
}

/// Shuts the network down when the last [`Network`] handle is dropped.
struct Owner(Arc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

/// The transport of one node: cheap to clone; every clone drives the same sockets.
#[derive(Clone)]
pub struct Network {
    sh: Arc<Shared>,
    _owner: Arc<Owner>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("me", &self.sh.me)
            .field("local", &self.sh.local)
            .finish()
    }
}

impl Network {
    /// Binds, starts accepting and dialing on the current tokio runtime. Returns one receiver per
    /// channel, by name.
    pub async fn start(
        cfg: NetConfig,
        channels: Vec<(ChannelSpec, Admit)>,
    ) -> Result<(Network, HashMap<String, mpsc::Receiver<Inbound>>), NetError> {
        if cfg.max_frame == 0 || cfg.max_frame > u32::MAX as usize - FRAME_HEADER {
            return Err(NetError::MaxFrame(cfg.max_frame));
        }
        if cfg.queue == 0 {
            return Err(NetError::ZeroQueue);
        }
        if channels.len() > MAX_CHANNELS {
            return Err(NetError::TooManyChannels(channels.len()));
        }
        let mut by_name = HashMap::new();
        let mut chans = Vec::new();
        let mut senders = Vec::new();
        let mut receivers = HashMap::new();
        for (i, (spec, admit)) in channels.into_iter().enumerate() {
            if spec.name.is_empty() || spec.name.len() > MAX_CHANNEL_NAME {
                return Err(NetError::ChannelName(spec.name));
            }
            if by_name.insert(spec.name.clone(), i).is_some() {
                return Err(NetError::DuplicateChannel(spec.name));
            }
            let (tx, rx) = mpsc::channel(INBOUND_CAPACITY);
            senders.push(tx);
            receivers.insert(spec.name.clone(), rx);
            chans.push(Chan { spec, admit });
        }
        let listener = TcpListener::bind(cfg.listen)
            .await
            .map_err(|source| NetError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let local = listener.local_addr().map_err(|source| NetError::Bind {
            addr: cfg.listen,
            source,
        })?;
        let specs = chans.iter().map(|c| c.spec.clone()).collect();
        let sh = Arc::new(Shared {
            me: PeerId::of(&cfg.key.public_key()),
            key: cfg.key,
            local,
            max_frame: cfg.max_frame,
            queue: cfg.queue,
            chans,
            by_name,
            specs,
            inbound: Mutex::new(Some(senders)),
            out: RwLock::new(HashMap::new()),
            blocked: RwLock::new(HashSet::new()),
            dialing: Mutex::new(HashSet::new()),
            stats: Counters::default(),
            cancel: CancellationToken::new(),
            rt: tokio::runtime::Handle::current(),
            pending: Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES)),
            own_nonces: Mutex::new(HashSet::new()),
        });
        tracing::info!("p2p: node {} listening on {local}", sh.me);
        tokio::spawn(accept_loop(sh.clone(), listener));
        let net = Network {
            _owner: Arc::new(Owner(sh.clone())),
            sh,
        };
        for addr in cfg.peers {
            net.add_peer(addr);
        }
        Ok((net, receivers))
    }

    /// Starts dialing `addr` (`host:port`) too, unless it is dialed already. Usable before the
    /// peers' ports are known (start every node with no peers, then add them).
    pub fn add_peer(&self, addr: String) {
        if self.sh.cancel.is_cancelled() || !self.sh.dialing.lock().insert(addr.clone()) {
            return;
        }
        self.sh.rt.spawn(dial_loop(self.sh.clone(), addr));
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.sh.local
    }

    /// This node's identity.
    pub fn me(&self) -> PeerId {
        self.sh.me
    }

    /// Queues a frame to every known peer admitted on `channel` that holds it with the same
    /// genesis. Never blocks; a full queue drops the frame for that peer and counts it. A peer
    /// that is disconnected keeps its queue (the oldest frame gives way when it is full).
    pub fn broadcast(&self, channel: &str, bytes: Bytes) {
        let Some(ci) = self.sh.outbound_channel(channel, &bytes) else {
            return;
        };
        let peers: Vec<Arc<PeerOut>> = self.sh.out.read().values().cloned().collect();
        for p in peers {
            if self.sh.is_routed(ci, &p) && self.sh.is_admitted(ci, &p.id) {
                self.sh.offer(ci, &p, bytes.clone());
            }
        }
    }

    /// Queues a frame to one peer, by the rules of [`Network::broadcast`]. False when the peer
    /// was never reached by a dialed connection, is not admitted on (or does not hold) the
    /// channel, is blocked, the payload is over `max_frame`, or its queue is full while
    /// connected.
    pub fn send(&self, channel: &str, peer: PeerId, bytes: Bytes) -> bool {
        let Some(ci) = self.sh.outbound_channel(channel, &bytes) else {
            return false;
        };
        let p = self.sh.out.read().get(&peer).cloned();
        match p {
            Some(p) if self.sh.is_routed(ci, &p) && self.sh.is_admitted(ci, &peer) => {
                self.sh.offer(ci, &p, bytes)
            }
            _ => {
                bump(&self.sh.stats.dropped_rejected);
                false
            }
        }
    }

    /// Peers with a live authenticated (dialed) connection that are admitted on `channel` and
    /// hold it with the same genesis. Blocked peers are included (their link stays up).
    pub fn peers(&self, channel: &str) -> Vec<PeerId> {
        let Some(&ci) = self.sh.by_name.get(channel) else {
            return Vec::new();
        };
        let mut v: Vec<PeerId> = self
            .sh
            .out
            .read()
            .values()
            .filter(|p| {
                let st = p.state.lock();
                st.connected && st.routes.get(ci).copied().unwrap_or(false)
            })
            .map(|p| p.id)
            .filter(|id| self.sh.is_admitted(ci, id))
            .collect();
        v.sort();
        v
    }

    /// Test and operations hook: frames to and from these peers are dropped in both directions
    /// (a network partition), until changed. Links stay up; keep-alives still pass.
    pub fn set_blocked(&self, peers: HashSet<PeerId>) {
        *self.sh.blocked.write() = peers;
    }

    /// Counters since start.
    pub fn stats(&self) -> NetStats {
        let c = &self.sh.stats;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NetStats {
            sent_frames: l(&c.sent_frames),
            sent_bytes: l(&c.sent_bytes),
            received_frames: l(&c.received_frames),
            received_bytes: l(&c.received_bytes),
            dropped_queue_full: l(&c.dropped_queue_full),
            dropped_blocked: l(&c.dropped_blocked),
            dropped_rejected: l(&c.dropped_rejected),
            handshakes_failed: l(&c.handshakes_failed),
            closed_frame_too_large: l(&c.closed_frame_too_large),
        }
    }

    /// Stops listening and closes every connection; queued frames are dropped and the channel
    /// receivers end once the connection tasks have stopped. Later sends are refused.
    pub fn shutdown(&self) {
        self.sh.shutdown();
    }
}

impl Shared {
    fn shutdown(&self) {
        if self.cancel.is_cancelled() {
            return;
        }
        self.cancel.cancel();
        self.inbound.lock().take();
        self.out.write().clear();
        tracing::info!("p2p: node {} on {} shut down", self.me, self.local);
    }

    fn is_blocked(&self, p: &PeerId) -> bool {
        self.blocked.read().contains(p)
    }

    fn is_admitted(&self, ci: usize, p: &PeerId) -> bool {
        self.chans
            .get(ci)
            .is_some_and(|c| c.admit.read().contains(p))
    }

    fn is_routed(&self, ci: usize, p: &PeerOut) -> bool {
        p.state.lock().routes.get(ci).copied().unwrap_or(false)
    }

    /// The local channel index for an outgoing frame, or `None` (logged and counted) when the
    /// network is shut down, the channel unknown or the payload too large.
    fn outbound_channel(&self, channel: &str, bytes: &Bytes) -> Option<usize> {
        if self.cancel.is_cancelled() {
            return None;
        }
        let Some(&ci) = self.by_name.get(channel) else {
            tracing::warn!(
                "p2p: frame for channel {channel:?}, which this network does not serve; dropped"
            );
            bump(&self.stats.dropped_rejected);
            return None;
        };
        if bytes.len() > self.max_frame {
            tracing::warn!(
                "p2p: frame of {} bytes for channel {channel:?} is over max_frame ({}); dropped",
                bytes.len(),
                self.max_frame
            );
            bump(&self.stats.dropped_rejected);
            return None;
        }
        Some(ci)
    }

    /// Queues a frame for a routed, admitted peer.
    fn offer(&self, ci: usize, p: &PeerOut, bytes: Bytes) -> bool {
        if self.is_blocked(&p.id) {
            bump(&self.stats.dropped_blocked);
            return false;
        }
        let Ok(ci) = u16::try_from(ci) else {
            return false;
        };
        let mut st = p.state.lock();
        if st.queue.len() >= self.queue {
            bump(&self.stats.dropped_queue_full);
            if st.connected {
                return false;
            }
            st.queue.pop_front();
        }
        st.queue.push_back((ci, bytes));
        drop(st);
        p.wake.notify_one();
        true
    }

    /// Frame senders of the local channels, `None` once shut down.
    fn senders(&self) -> Option<Vec<mpsc::Sender<Inbound>>> {
        self.inbound.lock().clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Framing.

type Reader = FramedRead<OwnedReadHalf, LengthDelimitedCodec>;
type Writer = BufWriter<OwnedWriteHalf>;

fn frame_len(body: usize) -> Result<[u8; 4], NetError> {
    u32::try_from(body)
        .map(u32::to_be_bytes)
        .map_err(|_| NetError::Protocol(format!("frame of {body} bytes cannot be framed")))
}

async fn write_msg(w: &mut Writer, msg: &Handshake) -> Result<(), NetError> {
    let body = postcard::to_allocvec(msg)
        .map_err(|e| NetError::Protocol(format!("cannot encode a handshake message: {e}")))?;
    if body.len() > HANDSHAKE_MAX_FRAME {
        return Err(NetError::Protocol(format!(
            "handshake message of {} bytes is over {HANDSHAKE_MAX_FRAME}",
            body.len()
        )));
    }
    w.write_all(&frame_len(body.len())?).await?;
    w.write_all(&body).await?;
    w.flush().await?;
    Ok(())
}

/// The next frame, with codec errors typed (an over-limit length is [`NetError::FrameTooLarge`]).
async fn next_frame(r: &mut Reader, from: &str, limit: usize) -> Result<bytes::BytesMut, NetError> {
    match r.next().await {
        None => Err(NetError::Closed),
        Some(Ok(f)) => Ok(f),
        Some(Err(e)) => {
            let too_large = e
                .get_ref()
                .is_some_and(|i| i.is::<tokio_util::codec::LengthDelimitedCodecError>());
            if too_large {
                Err(NetError::FrameTooLarge {
                    from: from.to_string(),
                    limit,
                })
            } else {
                Err(NetError::Io(e))
            }
        }
    }
}

async fn read_msg(r: &mut Reader, from: &str) -> Result<Handshake, NetError> {
    let frame = next_frame(r, from, HANDSHAKE_MAX_FRAME).await?;
    match postcard::take_from_bytes::<Handshake>(&frame) {
        Ok((m, [])) => Ok(m),
        Ok(_) => Err(NetError::Protocol(
            "trailing bytes after a handshake message".into(),
        )),
        Err(e) => Err(NetError::Protocol(format!(
            "undecodable handshake message ({e})"
        ))),
    }
}

async fn write_data(w: &mut Writer, ci: u16, payload: &[u8]) -> Result<(), NetError> {
    let mut head = [0u8; 4 + FRAME_HEADER];
    head[..4].copy_from_slice(&frame_len(FRAME_HEADER + payload.len())?);
    head[4] = TAG_DATA;
    head[5..].copy_from_slice(&ci.to_be_bytes());
    w.write_all(&head).await?;
    w.write_all(payload).await?;
    Ok(())
}

async fn write_keepalive(w: &mut Writer) -> Result<(), NetError> {
    w.write_all(&[0, 0, 0, 1, TAG_KEEPALIVE]).await?;
    w.flush().await?;
    Ok(())
}

fn split(sock: TcpStream, max: usize) -> (Reader, Writer) {
    let _ = sock.set_nodelay(true);
    let (r, w) = sock.into_split();
    (FramedRead::new(r, codec(max)), BufWriter::new(w))
}

// ---------------------------------------------------------------------------------------------
// Listener side: accept, authenticate, receive.

async fn accept_loop(sh: Arc<Shared>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            _ = sh.cancel.cancelled() => return,
            r = listener.accept() => r,
        };
        let (sock, addr) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("p2p: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = sh.pending.clone().try_acquire_owned() else {
            tracing::warn!(
                "p2p: {MAX_PENDING_HANDSHAKES} handshakes pending; closing the connection from {addr}"
            );
            bump(&sh.stats.handshakes_failed);
            continue;
        };
        tokio::spawn(inbound_conn(sh.clone(), sock, addr, permit));
    }
}

/// An authenticated inbound connection: who it is, and for each channel index of its Hello the
/// local channel it routes to.
struct Accepted {
    peer: PeerId,
    routes: Vec<Option<usize>>,
}

async fn inbound_conn(
    sh: Arc<Shared>,
    sock: TcpStream,
    addr: SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let (mut reader, mut writer) = split(sock, HANDSHAKE_MAX_FRAME);
    let from = addr.to_string();
    let hs = tokio::select! {
        _ = sh.cancel.cancelled() => return,
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, listener_handshake(&sh, &from, &mut reader, &mut writer)) => r,
    };
    drop(permit);
    let acc = match hs {
        Ok(Ok(Some(acc))) => acc,
        Ok(Ok(None)) => return, // our own dialer: it stops dialing this address
        Ok(Err(e)) => {
            tracing::warn!("p2p: refused inbound connection from {addr}: {e}");
            bump(&sh.stats.handshakes_failed);
            return;
        }
        Err(_) => {
            let e = NetError::HandshakeTimeout(HANDSHAKE_TIMEOUT);
            tracing::warn!("p2p: refused inbound connection from {addr}: {e}");
            bump(&sh.stats.handshakes_failed);
            return;
        }
    };
    let Some(senders) = sh.senders() else {
        return;
    };
    reader
        .decoder_mut()
        .set_max_frame_length(sh.max_frame + FRAME_HEADER);
    tracing::debug!("p2p: inbound link from {} ({addr}) up", acc.peer);
    let from = format!("{} ({addr})", acc.peer);
    let r = tokio::select! {
        _ = sh.cancel.cancelled() => Ok(()),
        r = receive_loop(&sh, &mut reader, &from, &acc, &senders) => r,
        r = keepalive_loop(&mut writer) => r,
    };
    match r {
        Ok(()) | Err(NetError::Closed) => {
            tracing::debug!("p2p: inbound link from {from} closed")
        }
        Err(e @ NetError::FrameTooLarge { .. }) => {
            bump(&sh.stats.closed_frame_too_large);
            tracing::warn!("p2p: closing the inbound link from {from}: {e}");
        }
        Err(e) => tracing::warn!("p2p: closing the inbound link from {from}: {e}"),
    }
}

/// Runs the listener's side of the handshake. `Ok(None)`: the dialer is this node itself
/// (answered with a Welcome so it stops). On error a Reject with the reason was sent.
async fn listener_handshake(
    sh: &Shared,
    from: &str,
    reader: &mut Reader,
    writer: &mut Writer,
) -> Result<Option<Accepted>, NetError> {
    let own = OwnNonce::new(sh);
    let nonce_l = own.nonce;
    write_msg(
        writer,
        &Handshake::Challenge {
            version: PROTOCOL_VERSION,
            nonce: nonce_l,
        },
    )
    .await?;
    let Handshake::Hello {
        version,
        key,
        nonce: nonce_d,
        channels,
        sig,
    } = read_msg(reader, from).await?
    else {
        return reject(writer, NetError::Protocol("expected Hello".into())).await;
    };
    let acc = match check_hello(sh, version, &key, &nonce_l, &nonce_d, &channels, &sig) {
        Ok(a) => a,
        Err(e) => return reject(writer, e).await,
    };
    let digest = welcome_digest(&nonce_d, &nonce_l, &sh.me, &sh.specs);
    let sig = sh
        .key
        .sign_digest(&digest)
        .map_err(|e| NetError::Sign(e.to_string()))?;
    write_msg(
        writer,
        &Handshake::Welcome {
            key: sh.me.0.to_vec(),
            channels: sh.specs.clone(),
            sig: sig.to_fixed().to_vec(),
        },
    )
    .await?;
    Ok((acc.peer != sh.me).then_some(acc))
}

async fn reject<T>(writer: &mut Writer, e: NetError) -> Result<T, NetError> {
    let _ = write_msg(
        writer,
        &Handshake::Reject {
            reason: e.to_string(),
        },
    )
    .await;
    Err(e)
}

/// Verifies a Hello and decides admission.
fn check_hello(
    sh: &Shared,
    version: u16,
    key: &[u8],
    nonce_l: &[u8; 32],
    nonce_d: &[u8; 32],
    channels: &[ChannelSpec],
    sig: &[u8],
) -> Result<Accepted, NetError> {
    if version != PROTOCOL_VERSION {
        return Err(NetError::Version {
            theirs: version,
            ours: PROTOCOL_VERSION,
        });
    }
    let peer = PeerId::from_sec1(key).ok_or_else(|| {
        NetError::Protocol(format!(
            "the key is {} bytes; a node key is a 65-byte uncompressed SEC1 point",
            key.len()
        ))
    })?;
    if channels.len() > MAX_CHANNELS {
        return Err(NetError::Protocol(format!(
            "{} channels listed; at most {MAX_CHANNELS}",
            channels.len()
        )));
    }
    if !verifies(&peer, sig, hello_digest(nonce_l, nonce_d, &peer, channels)) {
        return Err(NetError::BadSignature(peer));
    }
    if peer == sh.me {
        if !sh.own_nonces.lock().contains(nonce_d) {
            return Err(NetError::DuplicateKey(peer));
        }
        return Ok(Accepted {
            peer,
            routes: Vec::new(),
        });
    }
    let mut seen = HashSet::new();
    let mut other_genesis = Vec::new();
    let mut routes = Vec::with_capacity(channels.len());
    for c in channels {
        if !seen.insert(c.name.as_str()) {
            return Err(NetError::Protocol(format!(
                "channel {:?} listed twice",
                c.name
            )));
        }
        let route = match sh.by_name.get(&c.name) {
            Some(&ci) if sh.chans[ci].spec.genesis_hash == c.genesis_hash => Some(ci),
            Some(&ci) => {
                warn_other_genesis(
                    &peer,
                    &c.name,
                    &c.genesis_hash,
                    &sh.chans[ci].spec.genesis_hash,
                );
                other_genesis.push(c.name.clone());
                None
            }
            None => None,
        };
        routes.push(route);
    }
    let admitted = routes.iter().flatten().any(|&ci| sh.is_admitted(ci, &peer));
    if admitted {
        return Ok(Accepted { peer, routes });
    }
    if routes.iter().any(Option::is_some) {
        Err(NetError::NotAdmitted(peer))
    } else if !other_genesis.is_empty() {
        Err(NetError::OtherGenesis {
            peer,
            channels: other_genesis,
        })
    } else {
        Err(NetError::NoCommonChannel(peer))
    }
}

fn warn_other_genesis(peer: &PeerId, channel: &str, theirs: &[u8; 32], ours: &[u8; 32]) {
    tracing::warn!(
        "p2p: node {peer} has another genesis for channel {channel:?}: theirs {}, ours {}; the channel is not routed with it",
        hex::encode(theirs),
        hex::encode(ours)
    );
}

/// Delivers data frames from an authenticated dialer until it closes or misbehaves.
async fn receive_loop(
    sh: &Shared,
    reader: &mut Reader,
    from: &str,
    acc: &Accepted,
    senders: &[mpsc::Sender<Inbound>],
) -> Result<(), NetError> {
    let limit = sh.max_frame;
    loop {
        let frame = tokio::time::timeout(IDLE_TIMEOUT, next_frame(reader, from, limit))
            .await
            .map_err(|_| NetError::Idle(IDLE_TIMEOUT))??;
        match frame.first().copied() {
            Some(TAG_KEEPALIVE) if frame.len() == 1 => continue,
            Some(TAG_DATA) if frame.len() >= FRAME_HEADER => {}
            _ => {
                return Err(NetError::Protocol(format!(
                    "a frame of {} bytes is neither data nor keep-alive",
                    frame.len()
                )))
            }
        }
        let idx = usize::from(u16::from_be_bytes([frame[1], frame[2]]));
        let Some(route) = acc.routes.get(idx) else {
            return Err(NetError::Protocol(format!(
                "channel index {idx} beyond the {} channels of its Hello",
                acc.routes.len()
            )));
        };
        let Some(ci) = *route else {
            bump(&sh.stats.dropped_rejected);
            continue;
        };
        if sh.is_blocked(&acc.peer) {
            bump(&sh.stats.dropped_blocked);
            continue;
        }
        if !sh.is_admitted(ci, &acc.peer) {
            bump(&sh.stats.dropped_rejected);
            continue;
        }
        let payload = frame.freeze().slice(FRAME_HEADER..);
        let n = payload.len();
        let Some(tx) = senders.get(ci) else {
            bump(&sh.stats.dropped_rejected);
            continue;
        };
        // Back-pressure: a full channel makes this peer's reader wait (TCP then slows it).
        let inbound = Inbound {
            peer: acc.peer,
            bytes: payload,
        };
        if tx.send(inbound).await.is_err() {
            bump(&sh.stats.dropped_rejected);
            continue;
        }
        bump(&sh.stats.received_frames);
        add(&sh.stats.received_bytes, n);
    }
}

/// The listener → dialer direction: only keep-alives, so the dialer notices a dead link.
async fn keepalive_loop(writer: &mut Writer) -> Result<(), NetError> {
    loop {
        tokio::time::sleep(KEEPALIVE_INTERVAL).await;
        write_keepalive(writer).await?;
    }
}

// ---------------------------------------------------------------------------------------------
// Dialer side: connect, authenticate, send the peer's queue.

enum Dialed {
    /// The address is this node's own listener.
    Myself,
    /// An authenticated connection ran for this long and ended.
    Ran(Duration),
    /// Another address of the same peer already has the live connection.
    Duplicate(PeerId),
}

fn jitter(d: Duration) -> Duration {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(2);
    Duration::from_millis(rand::thread_rng().gen_range(ms / 2..=ms))
}

async fn dial_loop(sh: Arc<Shared>, addr: String) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let r = tokio::select! {
            _ = sh.cancel.cancelled() => return,
            r = dial_once(&sh, &addr) => r,
        };
        match r {
            Ok(Dialed::Myself) => {
                tracing::info!("p2p: {addr} is this node's own address; not dialing it");
                return;
            }
            // A link that lived a while reconnects at once; one that keeps dying backs off.
            Ok(Dialed::Ran(lasted)) if lasted >= MAX_BACKOFF => backoff = MIN_BACKOFF,
            Ok(Dialed::Ran(_)) => {}
            Ok(Dialed::Duplicate(p)) => {
                tracing::debug!("p2p: {addr} is node {p}, already connected by another address");
                backoff = MAX_BACKOFF;
            }
            Err(e @ (NetError::Connect { .. } | NetError::Closed)) => {
                tracing::debug!("p2p: dialing {addr}: {e}; retrying")
            }
            Err(e) => {
                bump(&sh.stats.handshakes_failed);
                tracing::warn!("p2p: dialing {addr}: {e}; retrying");
            }
        }
        tokio::select! {
            _ = sh.cancel.cancelled() => return,
            _ = tokio::time::sleep(jitter(backoff)) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Marks a peer's queue as written by this connection while alive.
struct Connected(Arc<PeerOut>);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.state.lock().connected = false;
    }
}

async fn dial_once(sh: &Arc<Shared>, addr: &str) -> Result<Dialed, NetError> {
    let connect_error = |source| NetError::Connect {
        addr: addr.to_string(),
        source,
    };
    // Connecting and the handshake each get the deadline: an unreachable peer is a connect
    // error (logged quietly), a peer that connects but stalls is a handshake failure.
    let sock = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(addr))
        .await
        .map_err(|_| connect_error(std::io::ErrorKind::TimedOut.into()))?
        .map_err(connect_error)?;
    let (mut reader, mut writer) = split(sock, HANDSHAKE_MAX_FRAME);
    let (peer, routes) = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        dialer_handshake(sh, addr, &mut reader, &mut writer),
    )
    .await
    .map_err(|_| NetError::HandshakeTimeout(HANDSHAKE_TIMEOUT))??;
    if peer == sh.me {
        return Ok(Dialed::Myself);
    }
    let out = {
        let mut map = sh.out.write();
        map.entry(peer)
            .or_insert_with(|| {
                Arc::new(PeerOut {
                    id: peer,
                    state: Mutex::new(OutState {
                        queue: VecDeque::new(),
                        connected: false,
                        routes: Vec::new(),
                    }),
                    wake: Notify::new(),
                })
            })
            .clone()
    };
    {
        let mut st = out.state.lock();
        if st.connected {
            return Ok(Dialed::Duplicate(peer));
        }
        st.connected = true;
        st.routes = routes;
    }
    let _live = Connected(out.clone());
    let since = std::time::Instant::now();
    reader.decoder_mut().set_max_frame_length(REVERSE_MAX_FRAME);
    tracing::debug!("p2p: outbound link to {peer} ({addr}) up");
    let from = format!("{peer} ({addr})");
    let r = tokio::select! {
        r = send_loop(sh, &out, &mut writer) => r,
        r = watch_loop(&mut reader, &from) => r,
    };
    match r {
        Ok(()) | Err(NetError::Closed) => tracing::debug!("p2p: outbound link to {from} closed"),
        Err(e) => tracing::warn!("p2p: closing the outbound link to {from}: {e}"),
    }
    Ok(Dialed::Ran(since.elapsed()))
}

/// Runs the dialer's side of the handshake: the listener's identity and, per local channel,
/// whether it holds the channel with the same genesis.
async fn dialer_handshake(
    sh: &Shared,
    addr: &str,
    reader: &mut Reader,
    writer: &mut Writer,
) -> Result<(PeerId, Vec<bool>), NetError> {
    let Handshake::Challenge {
        version,
        nonce: nonce_l,
    } = read_msg(reader, addr).await?
    else {
        return Err(NetError::Protocol("expected Challenge".into()));
    };
    if version != PROTOCOL_VERSION {
        return Err(NetError::Version {
            theirs: version,
            ours: PROTOCOL_VERSION,
        });
    }
    let own = OwnNonce::new(sh);
    let nonce_d = own.nonce;
    let sig = sh
        .key
        .sign_digest(&hello_digest(&nonce_l, &nonce_d, &sh.me, &sh.specs))
        .map_err(|e| NetError::Sign(e.to_string()))?;
    write_msg(
        writer,
        &Handshake::Hello {
            version: PROTOCOL_VERSION,
            key: sh.me.0.to_vec(),
            nonce: nonce_d,
            channels: sh.specs.clone(),
            sig: sig.to_fixed().to_vec(),
        },
    )
    .await?;
    let (key, channels, sig) = match read_msg(reader, addr).await? {
        Handshake::Welcome { key, channels, sig } => (key, channels, sig),
        Handshake::Reject { reason } => {
            return Err(NetError::Rejected {
                addr: addr.to_string(),
                reason: reason.chars().take(MAX_REASON_LOGGED).collect(),
            })
        }
        _ => return Err(NetError::Protocol("expected Welcome or Reject".into())),
    };
    let peer = PeerId::from_sec1(&key).ok_or_else(|| {
        NetError::Protocol("the listener's key is not a 65-byte uncompressed SEC1 point".into())
    })?;
    if !verifies(
        &peer,
        &sig,
        welcome_digest(&nonce_d, &nonce_l, &peer, &channels),
    ) {
        return Err(NetError::BadSignature(peer));
    }
    if peer == sh.me {
        // A listener with our key welcomes only a Hello whose nonce it issued itself as a
        // dialer (another process with the same key refuses with `DuplicateKey`): this is us.
        return Ok((peer, Vec::new()));
    }
    let theirs: HashMap<&str, &[u8; 32]> = channels
        .iter()
        .map(|c| (c.name.as_str(), &c.genesis_hash))
        .collect();
    let routes = sh
        .chans
        .iter()
        .map(|c| match theirs.get(c.spec.name.as_str()) {
            Some(&g) if *g == c.spec.genesis_hash => true,
            Some(&g) => {
                warn_other_genesis(&peer, &c.spec.name, g, &c.spec.genesis_hash);
                false
            }
            None => false,
        })
        .collect();
    Ok((peer, routes))
}

/// Writes the peer's queue; a keep-alive when idle for [`KEEPALIVE_INTERVAL`].
async fn send_loop(sh: &Shared, out: &PeerOut, w: &mut Writer) -> Result<(), NetError> {
    loop {
        let next = out.state.lock().queue.pop_front();
        match next {
            Some((ci, bytes)) => {
                if sh.is_blocked(&out.id) {
                    bump(&sh.stats.dropped_blocked);
                    continue;
                }
                write_data(w, ci, &bytes).await?;
                bump(&sh.stats.sent_frames);
                add(&sh.stats.sent_bytes, bytes.len());
            }
            None => {
                w.flush().await?;
                tokio::select! {
                    _ = out.wake.notified() => {}
                    _ = tokio::time::sleep(KEEPALIVE_INTERVAL) => write_keepalive(w).await?,
                }
            }
        }
    }
}

/// Reads the listener's keep-alives; anything else, silence or EOF ends the link.
async fn watch_loop(reader: &mut Reader, from: &str) -> Result<(), NetError> {
    loop {
        let f = tokio::time::timeout(IDLE_TIMEOUT, next_frame(reader, from, REVERSE_MAX_FRAME))
            .await
            .map_err(|_| NetError::Idle(IDLE_TIMEOUT))??;
        if f.as_ref() != [TAG_KEEPALIVE] {
            return Err(NetError::Protocol(
                "the listener sent something other than a keep-alive".into(),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_round_trips_and_prints_short() {
        let k = SigningKey::generate().expect("keygen");
        let id = PeerId::of(&k.public_key());
        assert_eq!(PeerId::from_sec1(&id.0), Some(id));
        assert_eq!(id.public_key(), k.public_key());
        assert_eq!(PeerId::from_sec1(&id.0[..64]), None);
        let mut compressed = id.0;
        compressed[0] = 0x02;
        assert_eq!(PeerId::from_sec1(&compressed), None);
        let dbg = format!("{id:?}");
        assert!(dbg.starts_with("PeerId(") && dbg.len() < 40, "{dbg}");
    }

    #[test]
    fn transcripts_bind_every_field() {
        let k = SigningKey::generate().expect("keygen");
        let id = PeerId::of(&k.public_key());
        let ch = vec![ChannelSpec::new("a", [1; 32])];
        let (l, d) = ([1u8; 32], [2u8; 32]);
        let base = hello_digest(&l, &d, &id, &ch);
        // The welcome with the same inputs, swapped nonces, another channel list, another key.
        assert_ne!(base, welcome_digest(&l, &d, &id, &ch));
        assert_ne!(base, hello_digest(&d, &l, &id, &ch));
        assert_ne!(
            base,
            hello_digest(&l, &d, &id, &[ChannelSpec::new("a", [2; 32])])
        );
        assert_ne!(base, hello_digest(&l, &d, &id, &[]));
        let other = PeerId::of(&SigningKey::generate().expect("keygen").public_key());
        assert_ne!(base, hello_digest(&l, &d, &other, &ch));
        let sig = k.sign_digest(&base).expect("sign").to_fixed();
        assert!(verifies(&id, &sig, base));
        assert!(!verifies(&other, &sig, base));
        assert!(!verifies(&id, &sig[..63], base));
    }

    #[test]
    fn handshake_messages_round_trip() {
        let m = Handshake::Hello {
            version: PROTOCOL_VERSION,
            key: vec![4; 65],
            nonce: [9; 32],
            channels: vec![ChannelSpec::new("ch", [3; 32])],
            sig: vec![5; 64],
        };
        let b = postcard::to_allocvec(&m).expect("encode");
        assert_eq!(postcard::from_bytes::<Handshake>(&b).expect("decode"), m);
        // Variant 1 (Hello), version 1 as a varint.
        assert_eq!(&b[..2], &[1, 1]);
        let c = postcard::to_allocvec(&Handshake::Challenge {
            version: PROTOCOL_VERSION,
            nonce: [0xaa; 32],
        })
        .expect("encode");
        assert_eq!(c.len(), 34, "docs/network.md gives the Challenge's bytes");
        assert_eq!((c[0], c[1], c[2]), (0, 1, 0xaa));
    }
}
