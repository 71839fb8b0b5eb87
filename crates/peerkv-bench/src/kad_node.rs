//! The baseline: the peer a libp2p user writes today to store values in a DHT. One swarm per
//! peer on the same transport as peerkv (TCP, Noise, Yamux on 127.0.0.1), with libp2p-kad on a
//! `MemoryStore` using its own `put_record` / `get_record`, plus identify (which feeds listen
//! addresses to Kademlia, as peerkv does) and ping with peerkv's settings. A get answers once
//! records from `read_quorum` distinct peers arrived, or when its query ends, and then stops the
//! query (see `quorum_read.rs`): with quorum 1 (the `kad` system) that is the first record, as
//! the rust-libp2p examples do.
//!
//! Like peerkv, every peer is a task owning its swarm, driven by commands on a bounded queue;
//! every operation has a deadline.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, Transport};
use libp2p::core::upgrade::Version;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig, RecordStore};
use libp2p::kad::{self, QueryId, QueryResult, Quorum};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{identify, identity, noise, ping, tcp, yamux, Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot};

/// The baseline's pings: libp2p-ping every 10 s, 5 s to answer (what peerkv used before its
/// one-ended probes; the baseline's connections idle out, so they cost nothing when idle).
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// See [`PING_INTERVAL`].
const PING_TIMEOUT: Duration = Duration::from_secs(5);

use crate::peer::{GetOut, LookupOut, Overlay, PutOut};
use crate::quorum_read::{QuorumRead, ReadAnswer};

/// Capacity of a peer's command queue.
const COMMAND_CAP: usize = 64;
/// How often deadlines are checked.
const SWEEP: Duration = Duration::from_millis(100);
/// How long start-up waits for the listen address.
const LISTEN_WAIT: Duration = Duration::from_secs(5);
/// Identify protocol string of the baseline peers.
const IDENTIFY_PROTOCOL: &str = "/peerkv-bench/kad-baseline/1.0.0";

/// How the baseline peers are configured.
#[derive(Debug, Clone)]
pub struct KadParams {
    /// Kademlia replication factor (libp2p's default: 20).
    pub replication: NonZeroUsize,
    /// Deadline of one operation; also the Kademlia query timeout.
    pub op_timeout: Duration,
    /// Idle-connection timeout of the swarm.
    pub idle_timeout: Duration,
    /// Negotiate streams lazily, as peerkv does (libp2p's default waits a round trip).
    pub lazy: bool,
    /// Largest value stored (sizes the record store and the message limit).
    pub value_size: usize,
    /// Most records one peer's store holds.
    pub max_records: usize,
    /// Records from this many distinct peers answer a get (1: the first record).
    pub read_quorum: NonZeroUsize,
    /// Delay of each byte read on each TCP connection (`--link-delay`; zero: none).
    pub link_delay: Duration,
}

mod composed {
    // The derive generates `BaselineEvent`, whose variants cannot carry docs.
    #![allow(missing_docs)]
    use libp2p::kad::store::MemoryStore;
    use libp2p::swarm::NetworkBehaviour;
    use libp2p::{identify, kad, ping};

    /// The baseline peer's protocols.
    #[derive(NetworkBehaviour)]
    #[behaviour(to_swarm = "BaselineEvent")]
    pub struct Baseline {
        pub kad: kad::Behaviour<MemoryStore>,
        pub identify: identify::Behaviour,
        pub ping: ping::Behaviour,
    }

    /// Events of [`Baseline`].
    #[derive(Debug)]
    pub enum BaselineEvent {
        Kad(Box<kad::Event>),
        Identify(Box<identify::Event>),
        /// Ping results are not used (libp2p's default: liveness is the connection's).
        Ping,
    }

    impl From<kad::Event> for BaselineEvent {
        fn from(e: kad::Event) -> Self {
            Self::Kad(Box::new(e))
        }
    }
    impl From<identify::Event> for BaselineEvent {
        fn from(e: identify::Event) -> Self {
            Self::Identify(Box::new(e))
        }
    }
    impl From<ping::Event> for BaselineEvent {
        fn from(_: ping::Event) -> Self {
            Self::Ping
        }
    }
}
use composed::{Baseline, BaselineEvent};

type Reply<T> = oneshot::Sender<Result<T, String>>;

enum Cmd {
    Put { key: Vec<u8>, value: Vec<u8>, quorum: NonZeroUsize, reply: Reply<PutOut> },
    Get { key: Vec<u8>, reply: Reply<GetOut> },
    Lookup { key: Vec<u8>, reply: Reply<LookupOut> },
    Holds { key: Vec<u8>, reply: Reply<bool> },
    Evict { key: Vec<u8>, reply: Reply<bool> },
    Overlay { reply: Reply<Overlay> },
    Bootstrap { addr: Multiaddr, reply: Reply<()> },
    Shutdown { reply: Reply<()> },
}

/// Handle to one baseline peer.
#[derive(Clone, Debug)]
pub struct KadPeer {
    commands: mpsc::Sender<Cmd>,
    peer_id: PeerId,
    addr: Multiaddr,
}

enum Pending {
    Put { reply: Reply<PutOut> },
    Get { reply: Reply<GetOut>, read: QuorumRead },
    Lookup { reply: Reply<LookupOut> },
    Bootstrap { reply: Reply<()> },
}

struct Loop {
    swarm: Swarm<Baseline>,
    commands: mpsc::Receiver<Cmd>,
    pending: HashMap<QueryId, (Instant, Pending)>,
    op_timeout: Duration,
    /// Records from this many distinct peers answer a get.
    read_quorum: NonZeroUsize,
    /// Connections established since the start.
    opened: u64,
}

/// The transport of libp2p's `SwarmBuilder::with_tcp` (TCP with nodelay, lazy multistream-select,
/// Noise, Yamux), with each socket under peerkv's link delay: the same delay as peerkv's peers
/// (`--link-delay`; with none the wrapper passes every call straight through).
fn transport(
    key: &identity::Keypair,
    delay: Duration,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, Box<dyn std::error::Error + Send + Sync>> {
    Ok(tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .and_then(move |socket, endpoint| peerkv::link_delay::delayed(socket, &endpoint, delay))
        .upgrade(Version::V1Lazy)
        .authenticate(noise::Config::new(key)?)
        .multiplex(yamux::Config::default())
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed())
}

fn build(params: &KadParams) -> Result<Swarm<Baseline>, String> {
    let keypair = identity::Keypair::generate_ed25519();
    let peer_id = keypair.public().to_peer_id();
    let mut config = kad::Config::new(kad::PROTOCOL_NAME);
    config.set_replication_factor(params.replication);
    config.set_query_timeout(params.op_timeout);
    // The default 16 KiB message limit refuses values near it; a user storing larger values
    // raises it, so the baseline does too.
    config.set_max_packet_size((params.value_size + 8 * 1024).max(16 * 1024));
    let store_config = MemoryStoreConfig {
        max_records: params.max_records,
        max_value_bytes: params.value_size.max(65 * 1024),
        ..MemoryStoreConfig::default()
    };
    let mut kad = kad::Behaviour::with_config(
        peer_id,
        MemoryStore::with_config(peer_id, store_config),
        config,
    );
    kad.set_mode(Some(kad::Mode::Server));
    let identify =
        identify::Behaviour::new(identify::Config::new(IDENTIFY_PROTOCOL.into(), keypair.public()));
    let ping = ping::Behaviour::new(
        ping::Config::new().with_interval(PING_INTERVAL).with_timeout(PING_TIMEOUT),
    );
    let behaviour = Baseline { kad, identify, ping };
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|key| transport(key, params.link_delay))
        .map_err(|e| format!("tcp: {e}"))?
        .with_behaviour(|_| behaviour)
        .map_err(|e| format!("behaviour: {e}"))?
        .with_swarm_config(|c| {
            let c = c.with_idle_connection_timeout(params.idle_timeout);
            if params.lazy {
                c.with_substream_upgrade_protocol_override(Version::V1Lazy)
            } else {
                c
            }
        })
        .build();
    Ok(swarm)
}

impl KadPeer {
    /// Starts a peer listening on 127.0.0.1 and returns once its address is known.
    ///
    /// # Errors
    /// When the swarm cannot be built or does not listen within 5 s.
    pub async fn spawn(params: &KadParams) -> Result<KadPeer, String> {
        let mut swarm = build(params)?;
        let listen: Multiaddr =
            "/ip4/127.0.0.1/tcp/0".parse().map_err(|e| format!("listen address: {e}"))?;
        swarm.listen_on(listen).map_err(|e| format!("listen: {e}"))?;
        let addr = tokio::time::timeout(LISTEN_WAIT, async {
            loop {
                if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                    return address;
                }
            }
        })
        .await
        .map_err(|_| "no listen address within 5 s".to_owned())?;
        let peer_id = *swarm.local_peer_id();
        let addr = addr.with(Protocol::P2p(peer_id));
        let (tx, rx) = mpsc::channel(COMMAND_CAP);
        let event_loop = Loop {
            swarm,
            commands: rx,
            pending: HashMap::new(),
            op_timeout: params.op_timeout,
            read_quorum: params.read_quorum,
            opened: 0,
        };
        tokio::spawn(event_loop.run());
        Ok(KadPeer { commands: tx, peer_id, addr })
    }

    /// The peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The dialable address, with `/p2p/<peer id>`.
    pub fn addr(&self) -> Multiaddr {
        self.addr.clone()
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Cmd) -> Result<T, String> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| "peer stopped".to_owned())?;
        rx.await.map_err(|_| "peer stopped".to_owned())?
    }

    /// `put_record` with `Quorum::N(quorum)`.
    pub async fn put(
        &self,
        key: &str,
        value: &[u8],
        quorum: NonZeroUsize,
    ) -> Result<PutOut, String> {
        let (key, value) = (key.as_bytes().to_vec(), value.to_vec());
        self.call(|reply| Cmd::Put { key, value, quorum, reply }).await
    }

    /// `get_record`, answered once records from the read quorum's distinct peers arrived, or
    /// with what was found when the query ends first.
    pub async fn get(&self, key: &str) -> Result<GetOut, String> {
        let key = key.as_bytes().to_vec();
        self.call(|reply| Cmd::Get { key, reply }).await
    }

    /// `get_closest_peers`.
    pub async fn lookup(&self, key: &str) -> Result<LookupOut, String> {
        let key = key.as_bytes().to_vec();
        self.call(|reply| Cmd::Lookup { key, reply }).await
    }

    /// Whether the local store holds `key`.
    pub async fn holds(&self, key: &str) -> Result<bool, String> {
        let key = key.as_bytes().to_vec();
        self.call(|reply| Cmd::Holds { key, reply }).await
    }

    /// Removes `key` from the local store; true when it was there.
    pub async fn evict(&self, key: &str) -> Result<bool, String> {
        let key = key.as_bytes().to_vec();
        self.call(|reply| Cmd::Evict { key, reply }).await
    }

    /// Routing-table size and connected peers.
    pub async fn overlay(&self) -> Result<Overlay, String> {
        self.call(|reply| Cmd::Overlay { reply }).await
    }

    /// Adds `addr` (`…/p2p/PEERID`) to the routing table and runs a Kademlia bootstrap.
    pub async fn bootstrap(&self, addr: Multiaddr) -> Result<(), String> {
        self.call(|reply| Cmd::Bootstrap { addr, reply }).await
    }

    /// Stops the peer.
    pub async fn shutdown(&self) {
        let _ = self.call(|reply| Cmd::Shutdown { reply }).await;
    }
}

impl Loop {
    async fn run(mut self) {
        let mut sweep = tokio::time::interval(SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                cmd = self.commands.recv() => match cmd {
                    Some(Cmd::Shutdown { reply }) => {
                        let _ = reply.send(Ok(()));
                        break;
                    }
                    Some(cmd) => self.command(cmd),
                    None => break,
                },
                event = self.swarm.select_next_some() => self.event(event),
                _ = sweep.tick() => self.sweep(),
            }
        }
    }

    fn kad(&mut self) -> &mut kad::Behaviour<MemoryStore> {
        &mut self.swarm.behaviour_mut().kad
    }

    fn command(&mut self, cmd: Cmd) {
        let deadline = Instant::now() + self.op_timeout;
        match cmd {
            Cmd::Put { key, value, quorum, reply } => {
                let record = kad::Record::new(kad::RecordKey::new(&key), value);
                match self.kad().put_record(record, Quorum::N(quorum)) {
                    Ok(id) => {
                        self.pending.insert(id, (deadline, Pending::Put { reply }));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!("local store refused the record: {e}")));
                    }
                }
            }
            Cmd::Get { key, reply } => {
                let id = self.kad().get_record(kad::RecordKey::new(&key));
                let read = QuorumRead::new(self.read_quorum);
                self.pending.insert(id, (deadline, Pending::Get { reply, read }));
            }
            Cmd::Lookup { key, reply } => {
                let id = self.kad().get_closest_peers(key);
                self.pending.insert(id, (deadline, Pending::Lookup { reply }));
            }
            Cmd::Holds { key, reply } => {
                let held = self.kad().store_mut().get(&kad::RecordKey::new(&key)).is_some();
                let _ = reply.send(Ok(held));
            }
            Cmd::Evict { key, reply } => {
                let key = kad::RecordKey::new(&key);
                // Straight from the store: `remove_record` keeps records others published.
                let held = self.kad().store_mut().get(&key).is_some();
                self.kad().store_mut().remove(&key);
                let _ = reply.send(Ok(held));
            }
            Cmd::Overlay { reply } => {
                let routing_table = self.kad().kbuckets().map(|b| b.num_entries()).sum();
                let connected = self.swarm.connected_peers().count();
                let opened = self.opened;
                let lookups = self.kad().iter_queries().count();
                let members = routing_table;
                let _ =
                    reply.send(Ok(Overlay { routing_table, members, connected, opened, lookups }));
            }
            Cmd::Bootstrap { addr, reply } => {
                let mut transport = addr.clone();
                let Some(Protocol::P2p(peer)) = transport.pop() else {
                    let _ = reply.send(Err(format!("{addr} has no /p2p/PEERID")));
                    return;
                };
                self.kad().add_address(&peer, transport);
                match self.kad().bootstrap() {
                    Ok(id) => {
                        self.pending.insert(id, (deadline, Pending::Bootstrap { reply }));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(format!("bootstrap: {e}")));
                    }
                }
            }
            Cmd::Shutdown { reply } => {
                let _ = reply.send(Ok(()));
            }
        }
    }

    fn event(&mut self, event: SwarmEvent<BaselineEvent>) {
        match event {
            SwarmEvent::ConnectionEstablished { .. } => self.opened += 1,
            SwarmEvent::Behaviour(BaselineEvent::Kad(event)) => {
                if let kad::Event::OutboundQueryProgressed { id, result, stats, step } = *event {
                    self.query(id, result, stats.num_requests(), step.last);
                }
            }
            SwarmEvent::Behaviour(BaselineEvent::Identify(event)) => {
                if let identify::Event::Received { peer_id, info, .. } = *event {
                    if info.protocols.contains(&kad::PROTOCOL_NAME) {
                        for addr in info.listen_addrs {
                            self.kad().add_address(&peer_id, addr);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// Stops a query nobody waits for any more.
    fn finish(&mut self, id: QueryId) {
        if let Some(mut query) = self.kad().query_mut(&id) {
            query.finish();
        }
    }

    fn query(&mut self, id: QueryId, result: QueryResult, requests: u32, last: bool) {
        let Some((deadline, pending)) = self.pending.remove(&id) else {
            return;
        };
        match (pending, result) {
            (Pending::Get { reply, mut read }, QueryResult::GetRecord(result)) => match result {
                Ok(kad::GetRecordOk::FoundRecord(found)) => {
                    match read.record(found.peer, found.record.value) {
                        Some(answer) => {
                            let _ = reply.send(Ok(get_out(answer, requests)));
                            // The get has its answer: the query stops, as in the rust-libp2p
                            // examples.
                            self.finish(id);
                        }
                        None => {
                            self.pending.insert(id, (deadline, Pending::Get { reply, read }));
                        }
                    }
                }
                // The query ended before the quorum: answer with what it found.
                Ok(kad::GetRecordOk::FinishedWithNoAdditionalRecord { .. }) if read.found_any() => {
                    let _ = reply.send(Ok(get_out(read.end(), requests)));
                }
                Ok(kad::GetRecordOk::FinishedWithNoAdditionalRecord { .. }) => {
                    let _ = reply.send(Err(format!("not found after {requests} requests")));
                }
                Err(_) if read.found_any() => {
                    let _ = reply.send(Ok(get_out(read.end(), requests)));
                }
                Err(e) => {
                    let _ = reply.send(Err(format!("get_record: {e}")));
                }
            },
            (Pending::Put { reply }, QueryResult::PutRecord(result)) => {
                let _ = reply.send(match result {
                    Ok(_) => Ok(PutOut { requests: Some(requests), replicas: None }),
                    Err(e) => Err(format!("put_record: {e}")),
                });
            }
            (Pending::Lookup { reply }, QueryResult::GetClosestPeers(result)) => {
                let _ = reply.send(match result {
                    Ok(ok) => Ok(LookupOut { peers: ok.peers.len(), requests: Some(requests) }),
                    Err(e) => Err(format!("get_closest_peers: {e}")),
                });
            }
            (Pending::Bootstrap { reply }, QueryResult::Bootstrap(result)) => {
                if last {
                    let _ = reply.send(result.map(|_| ()).map_err(|e| format!("bootstrap: {e}")));
                } else {
                    self.pending.insert(id, (deadline, Pending::Bootstrap { reply }));
                }
            }
            (pending, _) => {
                // A result of another kind for this id cannot happen; keep waiting for ours.
                self.pending.insert(id, (deadline, pending));
            }
        }
    }

    fn sweep(&mut self) {
        let now = Instant::now();
        let expired: Vec<QueryId> =
            self.pending.iter().filter(|(_, (d, _))| *d <= now).map(|(id, _)| *id).collect();
        for id in expired {
            let requests = self.kad().query(&id).map_or(0, |q| q.stats().num_requests());
            self.finish(id);
            let msg = format!("timed out after {:.1} s", self.op_timeout.as_secs_f64());
            match self.pending.remove(&id) {
                Some((_, Pending::Put { reply, .. })) => {
                    let _ = reply.send(Err(msg));
                }
                Some((_, Pending::Get { reply, read })) => {
                    // Past the deadline with records found: the get answers with those.
                    let _ = reply.send(if read.found_any() {
                        Ok(get_out(read.end(), requests))
                    } else {
                        Err(msg)
                    });
                }
                Some((_, Pending::Lookup { reply, .. })) => {
                    let _ = reply.send(Err(msg));
                }
                Some((_, Pending::Bootstrap { reply })) => {
                    let _ = reply.send(Err(msg));
                }
                None => {}
            }
        }
    }
}

/// A get's report from the stop rule's answer and the query's requests so far.
fn get_out(answer: ReadAnswer, requests: u32) -> GetOut {
    GetOut {
        value: answer.value,
        requests: Some(requests),
        hops: None,
        replicas: None,
        local: answer.local,
        short: answer.short,
    }
}
