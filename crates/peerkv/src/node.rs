//! [`Node`]: the cheap, cloneable handle through which everything talks to a running peer.
//!
//! Each method files one `Command` with its own reply channel on a bounded queue and awaits
//! the answer. Every operation has a deadline inside the event loop, so none of them hangs.
//! Dropping a method's future early is safe (the loop notices the closed reply channel); the
//! operation itself may still complete on the network.

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::behaviour::build_swarm;
use crate::command::{
    BootstrapReport, ClosestReport, Command, GetReport, KeyEntry, NodeInfo, PeerSummary, PutReport,
    RouteEntry,
};
use crate::config::Config;
use crate::error::{chain, Error, Result};
use crate::event_loop::EventLoop;
use crate::protocol::{Request, Response};
use crate::record::check_key;

/// Known peers tried at start after a restart.
const MAX_REJOIN_AT_START: usize = 8;

/// Capacity of the command queue from handles to the event loop.
pub const COMMAND_CAP: usize = 256;

/// Handle to a running peer. Clone it freely; the peer stops on [`Node::shutdown`].
#[derive(Clone, Debug)]
pub struct Node {
    /// Queue into the event loop, which owns all mutable state.
    commands: mpsc::Sender<Command>,
    /// The local peer id (immutable).
    peer_id: PeerId,
    /// Checked before anything is sent, so an oversized value never leaves the caller.
    max_value_size: usize,
    /// The event loop's task, to await on shutdown.
    task: std::sync::Arc<tokio::sync::Mutex<Option<JoinHandle<()>>>>,
}

impl Node {
    /// Starts a peer: builds the swarm, listens, starts the event loop on the current tokio
    /// runtime, waits until the listen addresses are known, then bootstraps from each address
    /// in `config.bootstrap` (a bootstrap that fails is logged as a warning and the peer runs
    /// on; see [`Node::bootstrap`] to handle it yourself).
    ///
    /// # Errors
    /// A bad configuration, a transport that cannot start, or an address it cannot listen on.
    pub async fn spawn(config: Config) -> Result<Node> {
        config.validate()?;
        let (keypair, store) = match &config.data_dir {
            Some(dir) => crate::data_dir::open(dir, config.keypair.as_ref())?,
            None => (
                config.keypair.clone().unwrap_or_else(Keypair::generate_ed25519),
                crate::store::Store::new(),
            ),
        };
        Self::start(config, keypair, store).await
    }

    /// [`Node::spawn`] with a store of the caller's instead of `config.data_dir` (which must
    /// be unset): one whose commits go through a [`Committer`](crate::store::Committer) of its
    /// own, such as one that fails every batch to see what peers are told then. The identity
    /// is `config.keypair`, or a new one.
    ///
    /// # Errors
    /// As [`Node::spawn`]; a `config.data_dir` is refused.
    pub async fn spawn_with_store(config: Config, store: crate::store::Store) -> Result<Node> {
        config.validate()?;
        if config.data_dir.is_some() {
            return Err(Error::Config(
                "a node given a store of its own takes no data directory".into(),
            ));
        }
        let keypair = config.keypair.clone().unwrap_or_else(Keypair::generate_ed25519);
        Self::start(config, keypair, store).await
    }

    async fn start(config: Config, keypair: Keypair, store: crate::store::Store) -> Result<Node> {
        let known = store.load_peers();
        let peer_id = keypair.public().to_peer_id();
        let budget = crate::admission::ReadBudget::new(config.admission.request_budget);
        let mut swarm = build_swarm(&config, keypair.clone(), budget.clone())?;
        let mut listeners = Vec::new();
        let last_run = store.load_listen_addrs();
        for addr in &config.listen {
            // After a restart, take the ports of the last run where the address asks for any
            // port: peers that knew us find us where we were (unless another process took it).
            if let Some(same) = same_port(addr, &last_run) {
                if port_in_use(&same).is_none() {
                    if let Ok(id) = swarm.listen_on(same.clone()) {
                        tracing::debug!(%same, "listening on the port of the last run");
                        listeners.push(id);
                        continue;
                    }
                }
            }
            // libp2p sets SO_REUSEPORT on its listeners, so a second peer on a port in use
            // would listen beside the first and take half of its dials: refuse it here.
            if let Some(port) = port_in_use(addr) {
                return Err(Error::Listen {
                    addr: addr.clone(),
                    reason: format!(
                        "port {port} is in use by another process — stop it, pick another port, or give port 0 for any free one"
                    ),
                });
            }
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| Error::Listen { addr: addr.clone(), reason: chain(&e) })?;
            listeners.push(id);
        }
        let (tx, rx) = mpsc::channel(COMMAND_CAP);
        // The loop's config carries the identity in use (the data directory's, or a new one):
        // the replica's pollution guard ranks this peer by it (`replica::Limits::of`).
        let loop_config = Config { keypair: Some(keypair.clone()), ..config.clone() };
        let event_loop =
            EventLoop::new(swarm, keypair, loop_config, rx, listeners, store, known.clone())
                .with_budget(budget);
        let task = tokio::spawn(event_loop.run());
        let node = Node {
            commands: tx,
            peer_id,
            max_value_size: config.max_value_size,
            task: std::sync::Arc::new(tokio::sync::Mutex::new(Some(task))),
        };
        node.listen_addrs().await?;
        for addr in &config.bootstrap {
            if let Err(e) = node.bootstrap(addr.clone()).await {
                tracing::warn!(%addr, "bootstrap failed: {e}");
            }
        }
        if config.bootstrap.is_empty() && !known.is_empty() {
            // A restart: rejoin through the peers known before, in the background, so that the
            // caller (the REPL's prompt) does not wait for peers that may be down. The first
            // that answers is enough; the event loop's rejoin timer keeps trying the others.
            tokio::spawn(rejoin(node.clone(), known, config.timeout));
        }
        Ok(node)
    }

    /// The local peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| Error::Shutdown)?;
        rx.await.map_err(|_| Error::Shutdown)?
    }

    fn check_put(&self, key: &str, value: Option<&[u8]>) -> Result<()> {
        check_key(key, &self.peer_id).map_err(Error::BadKey)?;
        let size = value.map_or(0, <[u8]>::len);
        if size > self.max_value_size {
            return Err(Error::ValueTooLarge { size, limit: self.max_value_size });
        }
        Ok(())
    }

    /// Stores `value` under `key` on the R closest peers; returns once W acknowledged.
    ///
    /// # Errors
    /// [`Error::ValueTooLarge`] or [`Error::BadKey`] before anything is sent;
    /// [`Error::NoPeers`], [`Error::QuorumNotMet`] or [`Error::Timeout`] from the network.
    pub async fn put(
        &self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
    ) -> Result<PutReport> {
        self.put_with_ttl(key, value, None).await
    }

    /// As [`Node::put`], with a time to live: after `ttl` the record expires on every replica
    /// (it is no longer served and upkeep removes it). `None` lives until deleted.
    ///
    /// # Errors
    /// As [`Node::put`].
    pub async fn put_with_ttl(
        &self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
        ttl: Option<std::time::Duration>,
    ) -> Result<PutReport> {
        let (key, value) = (key.into(), value.into());
        self.check_put(&key, Some(&value))?;
        if ttl.is_some_and(|t| t.is_zero() || t > crate::config::MAX_TTL) {
            return Err(Error::Config(format!(
                "--ttl must be above 0 and at most {} days",
                crate::config::MAX_TTL.as_secs() / 86_400
            )));
        }
        self.call(|reply| Command::Put { key, value: Some(value), ttl, reply }).await
    }

    /// This peer's store and upkeep counters.
    ///
    /// # Errors
    /// [`Error::Shutdown`] when the node has stopped.
    pub async fn stats(&self) -> Result<crate::command::Stats> {
        self.call(|reply| Command::Stats { reply }).await
    }

    /// Runs one replica upkeep round now (they also run by themselves every
    /// `upkeep_interval`) and says what it sent.
    ///
    /// # Errors
    /// [`Error::Shutdown`] when the node has stopped.
    pub async fn upkeep(&self) -> Result<crate::command::UpkeepReport> {
        self.call(|reply| Command::Upkeep { reply }).await
    }

    /// Deletes `key`: a put of a tombstone, acknowledged like a put.
    ///
    /// # Errors
    /// As [`Node::put`].
    pub async fn delete(&self, key: impl Into<String>) -> Result<PutReport> {
        let key = key.into();
        self.check_put(&key, None)?;
        self.call(|reply| Command::Put { key, value: None, ttl: None, reply }).await
    }

    /// Reads `key` from the closest replicas; answers once Q of them replied, with the newest
    /// record among the replies, and repairs replicas that were stale or missing.
    ///
    /// # Errors
    /// [`Error::BadKey`], [`Error::NoPeers`], [`Error::QuorumNotMet`] or [`Error::Timeout`].
    pub async fn get(&self, key: impl Into<String>) -> Result<GetReport> {
        let key = key.into();
        if key.is_empty() || key.len() > crate::record::MAX_KEY_LEN {
            return Err(Error::BadKey(
                check_key(&key, &self.peer_id)
                    .err()
                    .unwrap_or(crate::record::RecordError::EmptyKey),
            ));
        }
        self.call(|reply| Command::Get { key, reply }).await
    }

    /// Peers known: in the routing table or connected.
    ///
    /// # Errors
    /// [`Error::Shutdown`] when the node has stopped.
    pub async fn peers(&self) -> Result<Vec<PeerSummary>> {
        self.call(|reply| Command::Peers { reply }).await
    }

    /// The routing table, by bucket.
    ///
    /// # Errors
    /// [`Error::Shutdown`] when the node has stopped.
    pub async fn routes(&self) -> Result<Vec<RouteEntry>> {
        self.call(|reply| Command::Routes { reply }).await
    }

    /// Looks up the peers closest to `key` (a Kademlia lookup), the local peer ranked among them.
    ///
    /// # Errors
    /// [`Error::NoPeers`] or [`Error::Timeout`].
    pub async fn closest(&self, key: impl Into<String>) -> Result<ClosestReport> {
        let key = key.into();
        self.call(|reply| Command::Closest { key, reply }).await
    }

    /// Joins the overlay through `addr` (which must end in `/p2p/PEERID`): dials it, then runs a
    /// Kademlia bootstrap.
    ///
    /// # Errors
    /// [`Error::NoPeerIdInAddr`], [`Error::Unreachable`] or [`Error::Timeout`].
    pub async fn bootstrap(&self, addr: Multiaddr) -> Result<BootstrapReport> {
        self.call(|reply| Command::Bootstrap { addr, reply }).await
    }

    /// Connects to `addr` and returns the peer id that answered.
    ///
    /// # Errors
    /// [`Error::Unreachable`] or [`Error::Timeout`].
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId> {
        self.call(|reply| Command::Dial { addr, reply }).await
    }

    /// Identity, addresses and counts.
    ///
    /// # Errors
    /// [`Error::Shutdown`] when the node has stopped.
    pub async fn info(&self) -> Result<NodeInfo> {
        self.call(|reply| Command::Info { reply }).await
    }

    /// The records held locally.
    ///
    /// # Errors
    /// [`Error::Shutdown`] when the node has stopped.
    pub async fn keys(&self) -> Result<Vec<KeyEntry>> {
        self.call(|reply| Command::Keys { reply }).await
    }

    /// The dialable listen addresses (each with `/p2p/<peer id>`), once every listener reported.
    ///
    /// # Errors
    /// [`Error::Shutdown`] when the node has stopped.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>> {
        self.call(|reply| Command::WaitListening { reply }).await
    }

    /// Sends one raw value-protocol request to `peer` and returns its response, bypassing
    /// placement and quorums. For tools and tests that speak the wire protocol directly.
    ///
    /// # Errors
    /// [`Error::Request`] when the peer cannot be reached or does not answer.
    pub async fn send_request(&self, peer: PeerId, request: Request) -> Result<Response> {
        self.call(|reply| Command::Request { peer, request, reply }).await
    }

    /// Stops the peer: fails operations in flight with [`Error::Shutdown`], closes the swarm
    /// and waits for the event loop to end. Calling it twice is harmless.
    ///
    /// # Errors
    /// None in practice; a node already stopped returns `Ok`.
    pub async fn shutdown(&self) -> Result<()> {
        let _ = self.call(|reply| Command::Shutdown { reply }).await;
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
        Ok(())
    }
}

/// Bootstraps through the peers `known` before a restart, all at once (at most
/// [`MAX_REJOIN_AT_START`]), until one answers; says on stderr (a warning) when none did within
/// `timeout`, and that the rejoin timer goes on trying.
async fn rejoin(node: Node, known: Vec<(PeerId, Vec<Multiaddr>)>, timeout: std::time::Duration) {
    use futures::stream::{FuturesUnordered, StreamExt};
    let peers = known.len();
    let mut attempts: FuturesUnordered<_> = known
        .into_iter()
        .take(MAX_REJOIN_AT_START)
        .flat_map(|(peer, addrs)| addrs.into_iter().filter_map(move |a| a.with_p2p(peer).ok()))
        .map(|addr| {
            let node = node.clone();
            async move { (node.bootstrap(addr.clone()).await, addr) }
        })
        .collect();
    let first = tokio::time::timeout(timeout, async {
        while let Some((result, addr)) = attempts.next().await {
            match result {
                Ok(_) => return true,
                Err(Error::Shutdown) => return true,
                Err(e) => tracing::debug!(%addr, "rejoin: {e}"),
            }
        }
        false
    })
    .await;
    if first == Ok(true) {
        tracing::info!("rejoined through a peer known before the restart");
    } else {
        tracing::warn!(
            "none of the {peers} peers known before the restart answered yet; still trying in the background"
        );
    }
}

/// The port of `addr` when it names one (not 0) that another socket holds: a plain bind, without
/// SO_REUSEPORT, fails there with "address in use". Other bind errors are left to libp2p.
fn port_in_use(addr: &Multiaddr) -> Option<u16> {
    use libp2p::multiaddr::Protocol;
    let mut ip = None;
    let mut port = None;
    for part in addr.iter() {
        match part {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
            Protocol::Tcp(p) if p != 0 => port = Some((p, true)),
            Protocol::Udp(p) if p != 0 => port = Some((p, false)),
            _ => {}
        }
    }
    let (ip, (port, tcp)) = (ip?, port?);
    let bound = if tcp {
        std::net::TcpListener::bind((ip, port)).map(drop)
    } else {
        std::net::UdpSocket::bind((ip, port)).map(drop)
    };
    match bound {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Some(port),
        _ => None,
    }
}

/// `wanted` with port 0 replaced by the port a matching address of the last run used: same
/// transport stack, same IP (or any IP when `wanted` listens on every interface).
fn same_port(wanted: &Multiaddr, last_run: &[Multiaddr]) -> Option<Multiaddr> {
    use libp2p::multiaddr::Protocol;
    let parts: Vec<Protocol> = wanted.iter().collect();
    if !parts.iter().any(|p| matches!(p, Protocol::Tcp(0) | Protocol::Udp(0))) {
        return None;
    }
    let unspecified = |p: &Protocol| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    };
    last_run.iter().find_map(|old| {
        let old: Vec<Protocol> = old.iter().filter(|p| !matches!(p, Protocol::P2p(_))).collect();
        if old.len() != parts.len() {
            return None;
        }
        let mut out = Multiaddr::empty();
        for (w, o) in parts.iter().zip(&old) {
            let next = match (w, o) {
                (Protocol::Tcp(0), Protocol::Tcp(port)) => Protocol::Tcp(*port),
                (Protocol::Udp(0), Protocol::Udp(port)) => Protocol::Udp(*port),
                (Protocol::Ip4(_), Protocol::Ip4(_)) | (Protocol::Ip6(_), Protocol::Ip6(_))
                    if unspecified(w) || w == o =>
                {
                    w.clone()
                }
                (w, o) if w == o => w.clone(),
                _ => return None,
            };
            out.push(next);
        }
        Some(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_restart_reuses_the_ports_of_the_last_run() {
        let last = [
            m("/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"),
            m("/ip4/10.0.0.5/udp/4002/quic-v1"),
        ];
        assert_eq!(
            same_port(&m("/ip4/127.0.0.1/tcp/0"), &last),
            Some(m("/ip4/127.0.0.1/tcp/4001"))
        );
        assert_eq!(same_port(&m("/ip4/0.0.0.0/tcp/0"), &last), Some(m("/ip4/0.0.0.0/tcp/4001")));
        assert_eq!(
            same_port(&m("/ip4/0.0.0.0/udp/0/quic-v1"), &last),
            Some(m("/ip4/0.0.0.0/udp/4002/quic-v1"))
        );
        assert_eq!(same_port(&m("/ip4/10.9.9.9/tcp/0"), &last), None);
        assert_eq!(same_port(&m("/ip4/127.0.0.1/tcp/5000"), &last), None, "an explicit port stays");
    }
}
