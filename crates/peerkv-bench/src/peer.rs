//! One peer of either system behind one interface, so the workload code is the same for both.

use std::num::NonZeroUsize;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

use crate::kad_node::{KadParams, KadPeer};

/// Which system a run measures: two implementations, each read two ways. Side by side at equal
/// consistency: `peerkv-q1` with `kad` (a get answers with the first record), `peerkv` with
/// `kad-q3` (a get waits for Q answers, a majority of R: 3 at R = 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    /// peerkv's value protocol with its default read quorum Q (a majority of R).
    Peerkv,
    /// libp2p-kad's own records (the baseline): a get answers with the first record.
    Kad,
    /// peerkv with read quorum 1: a get answers with the first replica's record.
    #[value(name = "peerkv-q1")]
    PeerkvQ1,
    /// libp2p-kad whose get waits for records from Q distinct peers (or the query's end).
    #[value(name = "kad-q3")]
    KadQ3,
}

impl System {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            System::Peerkv => "peerkv",
            System::Kad => "kad",
            System::PeerkvQ1 => "peerkv-q1",
            System::KadQ3 => "kad-q3",
        }
    }

    /// Whether its peers are libp2p-kad baseline peers (else peerkv nodes).
    pub fn is_kad(self) -> bool {
        matches!(self, System::Kad | System::KadQ3)
    }

    /// Answers (records from distinct peers) a get waits for, given peerkv's read quorum `q`.
    pub fn read_quorum(self, q: NonZeroUsize) -> NonZeroUsize {
        match self {
            System::Peerkv | System::KadQ3 => q,
            System::Kad | System::PeerkvQ1 => NonZeroUsize::MIN,
        }
    }
}

/// How a put went.
#[derive(Debug, Clone, Default)]
pub struct PutOut {
    /// Requests the origin sent, where the system reports it.
    pub requests: Option<u32>,
    /// Replicas asked, where the system reports it.
    pub replicas: Option<usize>,
}

/// How a get went.
#[derive(Debug, Clone, Default)]
pub struct GetOut {
    /// The value found, if any.
    pub value: Option<Vec<u8>>,
    /// Requests the origin sent before the answer, where the system reports it.
    pub requests: Option<u32>,
    /// Round trips on the longest path to the answer, where the system reports it.
    pub hops: Option<u8>,
    /// Replicas asked, where the system reports it.
    pub replicas: Option<usize>,
    /// Answered from the local store.
    pub local: bool,
    /// Answered with fewer records than the read quorum, because the query ended first
    /// (libp2p-kad with a quorum above 1).
    pub short: bool,
}

/// How a lookup went.
#[derive(Debug, Clone, Default)]
pub struct LookupOut {
    /// Peers it returned.
    pub peers: usize,
    /// Requests it sent, where the system reports it.
    pub requests: Option<u32>,
}

/// A peer's view of the overlay.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overlay {
    /// Routing-table entries.
    pub routing_table: usize,
    /// Members of the one-hop view (peerkv); the routing table's entries (libp2p-kad).
    pub members: usize,
    /// Peers with an open connection.
    pub connected: usize,
    /// Connections opened since the start.
    pub opened: u64,
    /// Kademlia lookups running (bootstrap refreshes included).
    pub lookups: usize,
}

/// Settings shared by both systems.
#[derive(Debug, Clone)]
pub struct PeerParams {
    /// peerkv's replication factor R.
    pub replication: usize,
    /// libp2p-kad's replication factor.
    pub kad_replication: NonZeroUsize,
    /// Deadline of one operation.
    pub op_timeout: Duration,
    /// Idle-connection timeout.
    pub idle_timeout: Duration,
    /// Lazy stream negotiation for the libp2p-kad baseline (peerkv always negotiates lazily).
    pub kad_lazy: bool,
    /// Value size, bytes.
    pub value_size: usize,
    /// Keys in the run (sizes libp2p-kad's record store).
    pub keys: usize,
    /// peerkv's default read quorum Q (a majority of R); the systems that wait for Q answers
    /// use it, the others 1.
    pub read_quorum: NonZeroUsize,
    /// peerkv's warm connections per peer (see `warm_connections` in main.rs).
    pub warm_connections: usize,
    /// `--durable`: each peerkv peer keeps a data directory under here; `None`: in memory.
    pub data_root: Option<std::path::PathBuf>,
    /// `--link-delay`: delay of each byte read on each TCP connection, every system's peers
    /// (zero: none). The peers listen on TCP only, so all their traffic is delayed.
    pub link_delay: Duration,
}

/// Numbers the peers' data directories.
static NEXT_DATA_DIR: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A running peer of either system.
#[derive(Debug, Clone)]
pub enum Peer {
    /// A peerkv node, driven only through the library's public API.
    Peerkv(peerkv::Node),
    /// A baseline libp2p-kad peer.
    Kad(KadPeer),
}

fn err(e: peerkv::Error) -> String {
    e.to_string()
}

impl Peer {
    /// Starts a peer of `system` on 127.0.0.1 (mDNS off); returns it and its dialable address.
    ///
    /// # Errors
    /// When the peer cannot start.
    pub async fn spawn(system: System, p: &PeerParams) -> Result<(Peer, Multiaddr), String> {
        match system {
            System::Peerkv | System::PeerkvQ1 => {
                // The write quorum stays at peerkv's default, a majority of the replicas; so
                // does the read quorum of `peerkv` (W = Q), while `peerkv-q1` reads with 1.
                let read_quorum = (system == System::PeerkvQ1).then_some(1);
                let config = peerkv::Config {
                    replication: p.replication,
                    read_quorum,
                    timeout: p.op_timeout,
                    idle_connection_timeout: p.idle_timeout,
                    warm_connections: p.warm_connections,
                    max_value_size: p.value_size.max(peerkv::config::DEFAULT_MAX_VALUE_SIZE),
                    data_dir: p.data_root.as_ref().map(|root| {
                        let n = NEXT_DATA_DIR.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        root.join(format!("peer-{n}"))
                    }),
                    link_delay: (!p.link_delay.is_zero()).then_some(p.link_delay),
                    // TCP on 127.0.0.1 only: QUIC, which the link delay does not reach, is off.
                    ..peerkv::Config::local()
                };
                let node = peerkv::Node::spawn(config).await.map_err(err)?;
                let addr = node
                    .listen_addrs()
                    .await
                    .map_err(err)?
                    .into_iter()
                    .next()
                    .ok_or_else(|| "peerkv node has no listen address".to_owned())?;
                Ok((Peer::Peerkv(node), addr))
            }
            System::Kad | System::KadQ3 => {
                let params = KadParams {
                    replication: p.kad_replication,
                    op_timeout: p.op_timeout,
                    idle_timeout: p.idle_timeout,
                    lazy: p.kad_lazy,
                    value_size: p.value_size,
                    max_records: p.keys + 1024,
                    read_quorum: system.read_quorum(p.read_quorum),
                    link_delay: p.link_delay,
                };
                let peer = KadPeer::spawn(&params).await?;
                let addr = peer.addr();
                Ok((Peer::Kad(peer), addr))
            }
        }
    }

    /// The peer id.
    pub fn peer_id(&self) -> PeerId {
        match self {
            Peer::Peerkv(n) => n.peer_id(),
            Peer::Kad(k) => k.peer_id(),
        }
    }

    /// Joins the overlay through `addr`.
    pub async fn bootstrap(&self, addr: Multiaddr) -> Result<(), String> {
        match self {
            Peer::Peerkv(n) => n.bootstrap(addr).await.map(|_| ()).map_err(err),
            Peer::Kad(k) => k.bootstrap(addr).await,
        }
    }

    /// Stores `value` under `key`; `quorum` acknowledgements needed (peerkv has it in its
    /// config).
    pub async fn put(
        &self,
        key: &str,
        value: &[u8],
        quorum: NonZeroUsize,
    ) -> Result<PutOut, String> {
        match self {
            Peer::Peerkv(n) => {
                let report = n.put(key, value.to_vec()).await.map_err(err)?;
                Ok(PutOut { requests: None, replicas: Some(report.replicas) })
            }
            Peer::Kad(k) => k.put(key, value, quorum).await,
        }
    }

    /// Reads `key`.
    pub async fn get(&self, key: &str) -> Result<GetOut, String> {
        match self {
            Peer::Peerkv(n) => {
                let report = n.get(key).await.map_err(err)?;
                Ok(GetOut {
                    value: report.value().map(<[u8]>::to_vec),
                    requests: Some(u32::try_from(report.asked).unwrap_or(u32::MAX)),
                    hops: Some(report.hops),
                    replicas: Some(report.replicas),
                    local: false,
                    short: false,
                })
            }
            Peer::Kad(k) => k.get(key).await,
        }
    }

    /// Looks up the peers closest to `key`.
    pub async fn lookup(&self, key: &str) -> Result<LookupOut, String> {
        match self {
            Peer::Peerkv(n) => {
                let report = n.closest(key).await.map_err(err)?;
                Ok(LookupOut { peers: report.peers.len(), requests: None })
            }
            Peer::Kad(k) => k.lookup(key).await,
        }
    }

    /// Whether this peer's own store holds `key`.
    pub async fn holds(&self, key: &str) -> Result<bool, String> {
        match self {
            Peer::Peerkv(n) => Ok(n.keys().await.map_err(err)?.iter().any(|e| e.key == key)),
            Peer::Kad(k) => k.holds(key).await,
        }
    }

    /// Removes this peer's own copy of `key` when the system allows it (libp2p-kad); `None`
    /// when it does not (peerkv has no local-only delete in its public API).
    pub async fn evict(&self, key: &str) -> Option<Result<bool, String>> {
        match self {
            Peer::Peerkv(_) => None,
            Peer::Kad(k) => Some(k.evict(key).await),
        }
    }

    /// Routing-table size and connections.
    pub async fn overlay(&self) -> Result<Overlay, String> {
        match self {
            Peer::Peerkv(n) => {
                let info = n.info().await.map_err(err)?;
                Ok(Overlay {
                    routing_table: info.routing_table,
                    members: info.members,
                    connected: info.connections,
                    opened: info.connections_opened,
                    lookups: info.lookups_running,
                })
            }
            Peer::Kad(k) => k.overlay().await,
        }
    }

    /// Store transactions committed and records committed since the start (peerkv only).
    pub async fn store_counters(&self) -> Option<(u64, u64)> {
        match self {
            Peer::Peerkv(n) => n.info().await.ok().map(|i| (i.store_commits, i.records_committed)),
            Peer::Kad(_) => None,
        }
    }

    /// Stops the peer.
    pub async fn shutdown(&self) {
        match self {
            Peer::Peerkv(n) => {
                let _ = n.shutdown().await;
            }
            Peer::Kad(k) => k.shutdown().await,
        }
    }
}

/// The peers (by index into `ids`) that hold `key` by design: peerkv's R closest by its
/// placement ranking, libp2p-kad's replication-factor closest by Kademlia distance.
pub fn designated_holders(system: System, key: &str, ids: &[PeerId], p: &PeerParams) -> Vec<usize> {
    let index = |id: &PeerId| ids.iter().position(|x| x == id);
    if system.is_kad() {
        let target = libp2p::kad::KBucketKey::new(libp2p::kad::RecordKey::new(&key));
        let mut by_distance: Vec<(libp2p::kad::KBucketDistance, usize)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (target.distance(&libp2p::kad::KBucketKey::from(*id)), i))
            .collect();
        by_distance.sort();
        by_distance.into_iter().take(p.kad_replication.get()).map(|(_, i)| i).collect()
    } else {
        peerkv::placement::rank(key, ids.iter().copied())
            .iter()
            .take(p.replication)
            .filter_map(index)
            .collect()
    }
}
