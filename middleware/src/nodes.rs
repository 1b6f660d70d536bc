//! The nodes behind the gateway: health checks, the primary node (healthy and not lagging,
//! kept while it stays so), and pooled client connections to it. Node addresses never leave
//! this module except through the admin-only network view.

use bpu_ledger::api::NodeInfo;
use bpu_ledger::client::{Client, ClientError};
use parking_lot::Mutex;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use utoipa::ToSchema;

/// Pooled connections idle longer than this are dropped (the node's server closes connections
/// idle for five minutes).
const IDLE_REUSE: Duration = Duration::from_secs(60);

/// How the gateway watches its nodes.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// Time between health checks of each node.
    pub check_every: Duration,
    /// A node this many blocks behind the highest is lagging (not used as primary).
    pub max_lag: u64,
    /// Each request to a node waits at most this long.
    pub timeout: Duration,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            check_every: Duration::from_millis(250),
            max_lag: 5,
            timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Health {
    info: Option<NodeInfo>,
    healthy: bool,
    last_error: Option<String>,
    checked: Option<Instant>,
    rtt_ms: f64,
}

struct Inner {
    addrs: Vec<String>,
    opts: NodeOptions,
    health: Mutex<Vec<Health>>,
    primary: watch::Sender<Option<usize>>,
    /// Idle connections per node, with when they were last used.
    idle: Mutex<Vec<Vec<(Client, Instant)>>>,
    switches: std::sync::atomic::AtomicU64,
}

/// The node pool.
#[derive(Clone)]
pub struct Nodes {
    inner: Arc<Inner>,
}

/// One node as the admin network view shows it.
#[derive(Serialize, serde::Deserialize, ToSchema, Clone, Debug)]
pub struct NodeStatus {
    /// Position in the gateway's node list.
    pub index: usize,
    pub address: String,
    pub healthy: bool,
    /// `primary` (the node the gateway submits to and reads from), `standby` or `down`.
    pub role: String,
    pub height: Option<u64>,
    /// Blocks behind the highest node.
    pub lag: Option<u64>,
    /// The node's membership index in the channel.
    pub member: Option<u32>,
    pub pending: Option<u64>,
    pub backend: Option<String>,
    pub rtt_ms: f64,
    pub last_error: Option<String>,
}

/// A connection to a node, returned to the pool when dropped unless marked broken.
pub struct Conn {
    pub node: usize,
    client: Option<Client>,
    pool: Arc<Inner>,
    broken: bool,
}

impl Conn {
    pub fn client(&mut self) -> &mut Client {
        self.client
            .as_mut()
            .expect("a connection holds its client until dropped")
    }

    /// The connection failed: do not reuse it, and check the node at once.
    pub fn broken(&mut self) {
        self.broken = true;
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            if !self.broken {
                let mut idle = self.pool.idle.lock();
                if let Some(v) = idle.get_mut(self.node) {
                    if v.len() < 32 {
                        v.push((c, Instant::now()));
                    }
                }
            }
        }
        if self.broken {
            self.pool.mark_down(self.node, "a request failed");
        }
    }
}

impl Inner {
    fn mark_down(&self, i: usize, why: &str) {
        {
            let mut h = self.health.lock();
            if let Some(h) = h.get_mut(i) {
                h.healthy = false;
                h.last_error = Some(why.to_string());
            }
        }
        self.idle.lock().get_mut(i).map(Vec::clear);
        self.choose();
    }

    /// Keeps the primary while it is healthy and not lagging; otherwise picks the highest
    /// healthy node.
    fn choose(&self) {
        let h = self.health.lock();
        let top = h
            .iter()
            .filter(|x| x.healthy)
            .filter_map(|x| x.info.as_ref().map(|i| i.height))
            .max();
        let usable = |i: usize| {
            let x = &h[i];
            x.healthy
                && match (top, x.info.as_ref()) {
                    (Some(t), Some(info)) => t.saturating_sub(info.height) <= self.opts.max_lag,
                    _ => false,
                }
        };
        let cur = *self.primary.borrow();
        let next = match cur {
            Some(c) if c < h.len() && usable(c) => Some(c),
            _ => (0..h.len())
                .filter(|&i| usable(i))
                .max_by_key(|&i| (h[i].info.as_ref().map_or(0, |x| x.height), usize::MAX - i)),
        };
        drop(h);
        if next != cur {
            if let Some(n) = next {
                tracing::info!("gateway: primary node is now node {n}");
            } else {
                tracing::warn!("gateway: no healthy node");
            }
            self.switches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.primary.send_replace(next);
        }
    }
}

impl Nodes {
    /// Starts watching `addrs`.
    pub fn start(addrs: Vec<String>, opts: NodeOptions) -> Nodes {
        let n = addrs.len();
        let (primary, _) = watch::channel(None);
        let inner = Arc::new(Inner {
            addrs,
            opts,
            health: Mutex::new(vec![Health::default(); n]),
            primary,
            idle: Mutex::new((0..n).map(|_| Vec::new()).collect()),
            switches: Default::default(),
        });
        for i in 0..n {
            tokio::spawn(watch_node(inner.clone(), i));
        }
        Nodes { inner }
    }

    pub fn len(&self) -> usize {
        self.inner.addrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.addrs.is_empty()
    }

    pub fn primary(&self) -> Option<usize> {
        *self.inner.primary.borrow()
    }

    /// Times the primary changed.
    pub fn switches(&self) -> u64 {
        self.inner
            .switches
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until there is a primary (at most `timeout`).
    pub async fn wait_primary(&self, timeout: Duration) -> Option<usize> {
        let mut rx = self.inner.primary.subscribe();
        let r = tokio::time::timeout(timeout, rx.wait_for(Option::is_some)).await;
        match r {
            Ok(Ok(p)) => *p,
            _ => None,
        }
    }

    /// The last info of node `i`.
    pub fn info(&self, i: usize) -> Option<NodeInfo> {
        self.inner.health.lock().get(i).and_then(|h| h.info.clone())
    }

    /// Whether any node is healthy.
    pub fn any_healthy(&self) -> bool {
        self.inner.health.lock().iter().any(|h| h.healthy)
    }

    /// A connection to the primary.
    pub async fn conn(&self) -> Result<Conn, ClientError> {
        let node = self
            .primary()
            .ok_or_else(|| ClientError::Node("no healthy node".into()))?;
        self.conn_to(node).await
    }

    /// A connection to node `node`.
    pub async fn conn_to(&self, node: usize) -> Result<Conn, ClientError> {
        // Nodes close connections idle for minutes; older ones are not reused.
        let idle = {
            let mut all = self.inner.idle.lock();
            let v = all.get_mut(node);
            v.and_then(|v| {
                v.retain(|(_, at)| at.elapsed() < IDLE_REUSE);
                v.pop().map(|(c, _)| c)
            })
        };
        let client = match idle {
            Some(c) => c,
            None => {
                let addr = &self.inner.addrs[node];
                let t = self.inner.opts.timeout;
                let mut c = tokio::time::timeout(t, Client::connect(addr))
                    .await
                    .map_err(|_| ClientError::Timeout(t))?
                    .inspect_err(|_| self.inner.mark_down(node, "connection refused"))?;
                c.set_timeout(t);
                c
            }
        };
        Ok(Conn {
            node,
            client: Some(client),
            pool: self.inner.clone(),
            broken: false,
        })
    }

    /// Marks node `i` down until its next good health check.
    pub fn mark_down(&self, i: usize, why: &str) {
        self.inner.mark_down(i, why);
    }

    /// `text` with every node address replaced by `node N` (for messages to non-admins).
    pub fn scrub(&self, text: &str) -> String {
        let mut t = text.to_string();
        for (i, a) in self.inner.addrs.iter().enumerate() {
            t = t.replace(a.as_str(), &format!("node {i}"));
        }
        t
    }

    /// Every node's status (admin view).
    pub fn status(&self) -> Vec<NodeStatus> {
        let h = self.inner.health.lock();
        let top = h
            .iter()
            .filter_map(|x| x.info.as_ref().map(|i| i.height))
            .max();
        let primary = self.primary();
        h.iter()
            .enumerate()
            .map(|(i, x)| NodeStatus {
                index: i,
                address: self.inner.addrs[i].clone(),
                healthy: x.healthy,
                role: if !x.healthy {
                    "down"
                } else if primary == Some(i) {
                    "primary"
                } else {
                    "standby"
                }
                .into(),
                height: x.info.as_ref().map(|i| i.height),
                lag: match (top, x.info.as_ref()) {
                    (Some(t), Some(info)) => Some(t.saturating_sub(info.height)),
                    _ => None,
                },
                member: x.info.as_ref().map(|i| i.node),
                pending: x.info.as_ref().map(|i| i.pending),
                backend: x.info.as_ref().map(|i| i.backend.clone()),
                rtt_ms: x.rtt_ms,
                last_error: x.last_error.clone(),
            })
            .collect()
    }

    /// Heights per node (no addresses): what every signed-in user may see.
    pub fn heights(&self) -> Vec<Option<u64>> {
        self.inner
            .health
            .lock()
            .iter()
            .map(|h| {
                h.healthy
                    .then(|| h.info.as_ref().map(|i| i.height))
                    .flatten()
            })
            .collect()
    }
}

/// Checks node `i` forever on its own connection.
async fn watch_node(inner: Arc<Inner>, i: usize) {
    let mut client: Option<Client> = None;
    // A node is down after two failed checks in a row (one slow answer is not a failover);
    // a failed request marks it down at once (`mark_down`).
    let mut fails = 0u32;
    let mut tick = tokio::time::interval(inner.opts.check_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if Arc::strong_count(&inner) == 1 {
            return; // the pool is gone
        }
        let t0 = Instant::now();
        let t = inner.opts.timeout.min(Duration::from_secs(2));
        let r = tokio::time::timeout(t, async {
            if client.is_none() {
                let mut c = Client::connect(&inner.addrs[i]).await?;
                c.set_timeout(t);
                client = Some(c);
            }
            match client.as_mut() {
                Some(c) => c.info().await,
                None => Err(ClientError::Closed),
            }
        })
        .await
        .unwrap_or(Err(ClientError::Timeout(t)));
        let mut h = inner.health.lock();
        let x = &mut h[i];
        x.checked = Some(Instant::now());
        match r {
            Ok(info) => {
                fails = 0;
                x.rtt_ms = t0.elapsed().as_secs_f64() * 1e3;
                x.info = Some(info);
                x.healthy = true;
                x.last_error = None;
            }
            Err(e) => {
                client = None;
                fails += 1;
                if fails >= 2 || x.info.is_none() {
                    x.healthy = false;
                }
                x.last_error = Some(e.to_string());
            }
        }
        drop(h);
        inner.choose();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_for_users_carry_no_node_address() {
        let n = Nodes::start(
            vec!["127.0.0.1:1".into(), "10.0.0.7:7051".into()],
            NodeOptions::default(),
        );
        let s = n.scrub("cannot reach the node at 10.0.0.7:7051: refused (127.0.0.1:1 too)");
        assert_eq!(s, "cannot reach the node at node 1: refused (node 0 too)");
        // Nothing listens on port 1: no primary, and the view says why.
        assert_eq!(n.wait_primary(Duration::from_millis(600)).await, None);
        let st = n.status();
        assert!(
            st.iter()
                .all(|x| !x.healthy && x.role == "down" && x.last_error.is_some()),
            "{st:?}"
        );
    }
}
