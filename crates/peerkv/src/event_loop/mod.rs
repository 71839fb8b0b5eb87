//! The event loop: owns the swarm, the store, the clock and every map of work in flight.
//!
//! One task runs [`EventLoop::run`]: a biased `select!` in a fixed order — local commands
//! first, then the deadline sweep (ready only every `SWEEP_INTERVAL`), then swarm events — so a
//! user's command is never starved by network chatter, and a peer flooding us cannot keep
//! operations from ending by their deadline. Nothing here panics on what a peer or a
//! user sends: handlers log and carry on.
//!
//! - `command.rs`: one handler per [`Command`](crate::command::Command).
//! - `network.rs`: swarm events — Kademlia, identify, mDNS, connections, listeners; losses and
//!   rejoin rounds through the core's `membership`.
//! - `value.rs`: the value protocol — requests served by the core's `replica::serve`, answers
//!   routed back to their op or upkeep.
//! - `ops.rs`: operations in flight: the driver of the core's `PutOp` and `GetOp`.
//! - `upkeep.rs`: the driver of the core's `Upkeep` (rounds, digests, hand-off, expiry).
//! - `admission.rs`: the rate limits a request from a peer passes before it is served.

mod admission;
mod command;
mod network;
pub(crate) mod ops;
mod upkeep;
mod value;

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::identity::Keypair;
use libp2p::kad::{KBucketKey, QueryId};
use libp2p::request_response::OutboundRequestId;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::mpsc;

use crate::behaviour::Behaviour;
use crate::clock::Clock;
use crate::command::{BootstrapReport, ClosestReport, Command, PeerSummary, Reply};
use crate::config::Config;
use crate::core::members::{Members, EXCHANGE_YOUNG, MEMBERS_CAP};
use crate::core::membership::{Loss, Suspects};
use crate::core::replica::Limits;
use crate::core::{Kind, OpConfig};
use crate::error::Error;
use crate::protocol::Request;
use crate::protocol::Response;
use crate::store::{Acks, Store};
use ops::{OpId, Running};

/// Most operations (puts, gets, lookups, dials) in flight at once; more are refused as busy.
pub const MAX_PENDING_OPS: usize = 1024;

/// How often deadlines are checked.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// How often peers known from mDNS or `--bootstrap` that fell out of the routing table are
/// redialed.
const REJOIN_INTERVAL: Duration = Duration::from_secs(5);

/// How soon after the routing table changed an upkeep round runs (hand-off to a closer peer,
/// restoring R copies after a peer left).
const UPKEEP_DEBOUNCE: Duration = Duration::from_secs(2);

/// Most often the peers known are written to the data directory.
const PEER_SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// ... but only when idle connections are kept at least this long (the default 300 s is).
const KEEP_CONNECTED_MIN_IDLE: Duration = Duration::from_secs(60);

/// How long a finished bootstrap waits for identify to say whether the peer serves our
/// Kademlia protocol (a peer without identify is taken as it is).
const IDENTIFY_WAIT: Duration = Duration::from_secs(2);

/// How long shutdown waits for the store to commit the writes queued.
const STORE_CLOSE_WAIT: Duration = Duration::from_secs(10);

/// How long start-up waits for every listener to report an address.
const LISTEN_WAIT: Duration = Duration::from_secs(5);

/// What a finished Kademlia query was for.
enum Lookup {
    /// `closest KEY`.
    Closest { key: String, started: Instant, deadline: Instant, reply: Reply<ClosestReport> },
    /// A bootstrap after dialing `peer`.
    Bootstrap { peer: PeerId, deadline: Instant, reply: Reply<BootstrapReport> },
}

/// What an outbound value-protocol request was for.
enum Outbound {
    /// A put's or get's request: its answer or failure goes back to the op.
    Op { op: OpId, kind: Kind },
    /// A read repair or another write nobody waits for.
    Repair { key: String },
    /// Upkeep's hand-off of these records (key, version): the keys a `StoredMany` rejects are
    /// not sent to that peer again at those versions for a while ([`Upkeep::refused`]).
    ///
    /// [`Upkeep::refused`]: crate::core::upkeep::Upkeep::refused
    Handoff { sent: Vec<(String, crate::Hlc)> },
    /// An upkeep digest (its id): its answer says which records to push.
    Digest(u64),
    /// An upkeep summary: its answer says which buckets to send digests for.
    Summary,
    /// A members exchange: its answer joins the members table.
    Exchange,
    /// A raw request from [`Node::send_request`](crate::Node::send_request).
    Raw(Reply<Response>),
}

/// A dial someone waits for.
struct PendingDial {
    addr: Multiaddr,
    deadline: Instant,
    purpose: DialPurpose,
}

enum DialPurpose {
    Dial(Reply<PeerId>),
    Bootstrap(PeerId, Reply<BootstrapReport>),
}

impl DialPurpose {
    /// Answers whoever waits for the dial with `err`.
    fn fail(self, err: Error) {
        match self {
            DialPurpose::Dial(reply) => {
                let _ = reply.send(Err(err));
            }
            DialPurpose::Bootstrap(_, reply) => {
                let _ = reply.send(Err(err));
            }
        }
    }
}

/// The owner of all mutable state of one peer.
pub(crate) struct EventLoop {
    /// The libp2p swarm with every behaviour.
    swarm: Swarm<Behaviour>,
    /// Signs our records.
    keypair: Keypair,
    /// Limits, quorums, timeouts.
    config: Config,
    /// Commands from [`Node`](crate::Node) handles.
    commands: mpsc::Receiver<Command>,
    /// Records held here (and, with a data directory, on disk).
    store: Store,
    /// Peers known before the last restart: rejoin candidates while the routing table is empty.
    known_peers: Vec<(PeerId, Vec<Multiaddr>)>,
    /// The peer ids last written to the store, to save again only on change.
    saved_peers: Vec<PeerId>,
    /// The routing table changed since the peers were last saved.
    peers_dirty: bool,
    /// When the next upkeep round is due.
    next_upkeep: Instant,
    /// Store and upkeep counters for `stats`.
    stats: crate::command::Stats,
    /// Connections established since the start.
    connections_opened: u64,
    /// What the last upkeep round would offer each peer, for the digests a mismatch asks for.
    upkeep: crate::core::Upkeep,
    /// Earliest time of the next save of the peers.
    next_peer_save: Instant,
    /// Versions for our writes.
    clock: Clock,
    /// The local peer as a Kademlia key, for bucket numbers.
    local_key: KBucketKey<PeerId>,
    /// Listeners that have not reported an address yet.
    listeners_waiting: HashSet<ListenerId>,
    /// Addresses we listen on (without `/p2p`).
    listen_addrs: Vec<Multiaddr>,
    /// Callers waiting for the listen addresses.
    listen_waiters: Vec<Reply<Vec<crate::Multiaddr>>>,
    /// When start-up stops waiting for silent listeners.
    listen_deadline: Instant,
    /// Which peers speak the value protocol (identify or a failed request told us).
    kv_support: HashMap<PeerId, bool>,
    /// Peers that left the routing table because a dial or a ping got no answer: until they
    /// connect again (or `SUSPECT_FOR` passes), searches count them as failed replicas
    /// (`Search::suspect`), so a quorum still needs them or enough others.
    suspects: Suspects,
    /// The one-hop view: every value-protocol peer heard of, with addresses (where searches
    /// start, what Fetch answers name, upkeep's placement).
    members: Members,
    /// When the next members exchange is due (the core's monotonic time).
    next_exchange: Duration,
    /// Where our next answer to a members exchange starts in key order.
    share_offset: usize,
    /// Peers identify showed not to serve our Kademlia protocol: kept out of the routing table.
    no_kad: HashSet<PeerId>,
    /// Addresses learnt from identify, for `peers`.
    peer_addrs: HashMap<PeerId, Vec<Multiaddr>>,
    /// Peers mDNS told us of (until their mDNS record expires), for rejoining.
    mdns_peers: HashMap<PeerId, Vec<Multiaddr>>,
    /// Of those, the ones whose handshake failed (another `--psk` key): the rejoin timer
    /// leaves them alone for a while.
    mdns_backoff: crate::core::membership::Backoff,
    /// When the next rejoin round is due.
    next_rejoin: Instant,
    /// Next [`OpId`].
    next_op: OpId,
    /// Puts and gets in flight.
    ops: HashMap<OpId, Running>,
    /// Round-trip estimates the core's ops order and time their requests by.
    rtts: crate::core::Rtts,
    /// Wakes ops asked for: (when, op), earliest first.
    wakes: std::collections::BTreeSet<(Duration, OpId)>,
    /// Requests ops sent to this peer, served after the event at hand (never re-entrantly).
    local_queue: VecDeque<(OpId, Kind, Request)>,
    /// Answers to those requests, fed back to their ops after the event at hand.
    local_answers: VecDeque<(OpId, Kind, Response)>,
    /// Answers held until the store commits the writes they acknowledge.
    acks: Acks<value::Held>,
    /// StoreMany requests being checked off the loop: who waits, their keys, when they came.
    checking: HashMap<u64, (value::Waiter, Vec<String>, crate::core::Now)>,
    /// Numbers those checks.
    next_check: u64,
    /// Where the checks report (one message each; at most `value::MAX_CHECKING` run).
    checked_tx: mpsc::Sender<(u64, crate::core::replica::Served)>,
    /// The checks' reports.
    checked_rx: mpsc::Receiver<(u64, crate::core::replica::Served)>,
    /// The settings the core's operations read.
    op_config: OpConfig,
    /// What this peer's replica accepts.
    limits: Limits,
    /// The origin of the core's monotonic time.
    started: Instant,
    /// Kademlia queries someone waits for.
    lookups: HashMap<QueryId, Lookup>,
    /// Value-protocol requests in flight.
    requests: HashMap<OutboundRequestId, Outbound>,
    /// Requests that are already a second try (see `EventLoop::resend`).
    retried: HashSet<OutboundRequestId>,
    /// Dials someone waits for.
    dials: HashMap<ConnectionId, PendingDial>,
    /// Raw requests in flight (counted against [`MAX_PENDING_OPS`]).
    raw_in_flight: usize,
    /// Bootstraps whose query ran, waiting (until the deadline) for the peer's identify.
    bootstraps_awaiting_identify: Vec<(PeerId, Instant, Reply<BootstrapReport>)>,
    /// Our own bootstrap queries whose last step has not come yet (see `on_kad`).
    joins: HashSet<QueryId>,
    /// Kademlia requests our lookups sent (bootstraps' and `closest`'s), for `info`.
    kad_requests: u64,
    /// Rate limits on requests from peers.
    gate: admission::Gate,
    /// The bytes of requests being read (the codec's, shared), for `stats`.
    budget: crate::admission::ReadBudget,
    /// Peers named by `--bootstrap`: never strangers to the rate limits.
    bootstrap_peers: HashSet<PeerId>,
    /// When the rate limits next forget quiet peers.
    next_gate_cleanup: Instant,
}

/// How often the rate limits forget peers that went quiet.
const GATE_CLEANUP_INTERVAL: Duration = Duration::from_secs(10);

impl EventLoop {
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        keypair: Keypair,
        config: Config,
        commands: mpsc::Receiver<Command>,
        listeners: Vec<ListenerId>,
        store: Store,
        known_peers: Vec<(PeerId, Vec<Multiaddr>)>,
    ) -> Self {
        let local_peer = *swarm.local_peer_id();
        let gate = admission::Gate::new(&config.admission);
        let bootstrap_peers =
            config.bootstrap.iter().filter_map(|a| command::split_p2p(a).1).collect();
        let local_key = KBucketKey::from(local_peer);
        let upkeep_interval = config.upkeep_interval;
        let (op_config, limits) = (OpConfig::of(&config), Limits::of(&config));
        let (checked_tx, checked_rx) = mpsc::channel(value::MAX_CHECKING);
        Self {
            swarm,
            keypair,
            config,
            commands,
            store,
            saved_peers: known_peers.iter().map(|(p, _)| *p).collect(),
            known_peers,
            peers_dirty: false,
            next_upkeep: Instant::now() + upkeep_interval,
            stats: crate::command::Stats::default(),
            connections_opened: 0,
            upkeep: crate::core::Upkeep::default(),
            next_peer_save: Instant::now(),
            clock: Clock::new(),
            local_key,
            listeners_waiting: listeners.into_iter().collect(),
            listen_addrs: Vec::new(),
            listen_waiters: Vec::new(),
            listen_deadline: Instant::now() + LISTEN_WAIT,
            kv_support: HashMap::new(),
            no_kad: HashSet::new(),
            suspects: Suspects::default(),
            members: Members::new(local_peer, MEMBERS_CAP),
            next_exchange: EXCHANGE_YOUNG,
            share_offset: 0,
            peer_addrs: HashMap::new(),
            mdns_peers: HashMap::new(),
            mdns_backoff: Default::default(),
            next_rejoin: Instant::now() + REJOIN_INTERVAL,
            next_op: 0,
            ops: HashMap::new(),
            local_queue: VecDeque::new(),
            local_answers: VecDeque::new(),
            acks: Acks::default(),
            checking: HashMap::new(),
            next_check: 0,
            checked_tx,
            checked_rx,
            rtts: crate::core::Rtts::default(),
            wakes: std::collections::BTreeSet::new(),
            op_config,
            limits,
            started: Instant::now(),
            lookups: HashMap::new(),
            requests: HashMap::new(),
            retried: HashSet::new(),
            dials: HashMap::new(),
            raw_in_flight: 0,
            bootstraps_awaiting_identify: Vec::new(),
            joins: HashSet::new(),
            kad_requests: 0,
            gate,
            budget: crate::admission::ReadBudget::new(0),
            bootstrap_peers,
            next_gate_cleanup: Instant::now() + GATE_CLEANUP_INTERVAL,
        }
    }

    /// This loop, reporting the counters of `budget` (the one the swarm's codec reads
    /// requests within) in `stats`.
    pub(crate) fn with_budget(mut self, budget: crate::admission::ReadBudget) -> Self {
        self.budget = budget;
        self
    }

    /// Runs until a shutdown command arrives or every handle is dropped.
    pub(crate) async fn run(mut self) {
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_wake = self.next_wake();
            let wake = async move {
                match next_wake {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        self.shutdown();
                        self.close_store().await;
                        let _ = reply.send(Ok(()));
                        break;
                    }
                    Some(command) => {
                        self.handle_command(command);
                        self.drain_local();
                    }
                    None => {
                        self.shutdown();
                        self.close_store().await;
                        break;
                    }
                },
                // A batch of writes committed: the answers that waited for it go out (before
                // new swarm events, so held answers do not pile up under load).
                done = self.store.committed() => {
                    self.on_committed(done);
                    self.settle();
                    self.drain_local();
                }
                // A StoreMany checked off the loop: its writes are queued now.
                Some((id, served)) = self.checked_rx.recv() => {
                    self.on_checked(id, served);
                    self.drain_local();
                }
                // Deadlines before swarm events: a peer flooding us must not keep operations
                // from ending on time (the tick is ready only every SWEEP_INTERVAL).
                _ = sweep.tick() => {
                    self.sweep(Instant::now());
                    self.drain_local();
                }
                // An op's wake (a hedged get asks one more replica).
                () = wake => {
                    self.wake_ops();
                    self.drain_local();
                }
                event = self.swarm.select_next_some() => {
                    self.handle_swarm_event(event);
                    self.drain_local();
                }
            }
        }
        tracing::debug!("event loop stopped");
    }

    fn local_peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Whether `peer` is in the routing table.
    fn is_routed(&mut self, peer: &PeerId) -> bool {
        self.swarm
            .behaviour_mut()
            .kad
            .kbucket(*peer)
            .is_some_and(|bucket| bucket.iter().any(|e| e.node.key.preimage() == peer))
    }

    fn routing_table_len(&mut self) -> usize {
        self.swarm.behaviour_mut().kad.kbuckets().map(|b| b.num_entries()).sum()
    }

    /// Work in flight, for the busy check.
    fn pending(&self) -> usize {
        self.ops.len() + self.lookups.len() + self.dials.len() + self.raw_in_flight
    }

    fn dialable(&self, addr: &Multiaddr) -> Multiaddr {
        addr.clone().with_p2p(self.local_peer_id()).unwrap_or_else(|a| a)
    }

    fn dialable_listen_addrs(&self) -> Vec<Multiaddr> {
        self.listen_addrs.iter().map(|a| self.dialable(a)).collect()
    }

    fn answer_listen_waiters(&mut self) {
        if let Err(e) = self.store.save_listen_addrs(&self.listen_addrs) {
            tracing::warn!("cannot save the listen addresses: {e}");
        }
        let addrs = self.dialable_listen_addrs();
        for reply in self.listen_waiters.drain(..) {
            let _ = reply.send(Ok(addrs.clone()));
        }
    }

    /// Lets the store's writer commit what is queued (the answers that wait for it go out, or
    /// refusals if it fails), then stops it; answers still held after `STORE_CLOSE_WAIT` are
    /// refused.
    async fn close_store(&mut self) {
        let flushed = tokio::time::timeout(STORE_CLOSE_WAIT, async {
            while let Some(done) = self.store.close().await {
                self.on_committed(done);
            }
        })
        .await;
        if flushed.is_err() {
            tracing::warn!("the store did not finish its writes within {STORE_CLOSE_WAIT:?}");
        }
        for held in self.acks.drain() {
            self.refuse(held, "the peer shut down before it was committed");
        }
        self.local_answers.clear();
    }

    /// Ends everything in flight with [`Error::Shutdown`].
    fn shutdown(&mut self) {
        self.save_peers();
        self.local_queue.clear();
        for (_, op) in self.ops.drain() {
            op.fail(Error::Shutdown);
        }
        for (_, lookup) in self.lookups.drain() {
            match lookup {
                Lookup::Closest { reply, .. } => {
                    let _ = reply.send(Err(Error::Shutdown));
                }
                Lookup::Bootstrap { reply, .. } => {
                    let _ = reply.send(Err(Error::Shutdown));
                }
            }
        }
        for (_, out) in self.requests.drain() {
            if let Outbound::Raw(reply) = out {
                let _ = reply.send(Err(Error::Shutdown));
            }
        }
        for (_, _, reply) in self.bootstraps_awaiting_identify.drain(..) {
            let _ = reply.send(Err(Error::Shutdown));
        }
        for (_, dial) in self.dials.drain() {
            dial.purpose.fail(Error::Shutdown);
        }
        let addrs = self.dialable_listen_addrs();
        for reply in self.listen_waiters.drain(..) {
            let _ = reply.send(Ok(addrs.clone()));
        }
    }

    /// `peer` left the routing table because it could not be reached (at `addrs`), as `loss`
    /// says: the core's [`Suspects`] decides whether it still counts as a failed replica.
    fn lost(&mut self, peer: PeerId, loss: Loss, addrs: Vec<Multiaddr>) {
        let now = self.now().mono;
        self.members.lost(&peer, now);
        if self.suspects.lost(peer, loss, addrs, now) {
            tracing::debug!(%peer, "suspect: counted as a failed replica until it answers");
        }
    }

    /// Ends what passed its deadline.
    fn sweep(&mut self, now: Instant) {
        if now >= self.next_gate_cleanup {
            self.gate.forget_quiet();
            self.next_gate_cleanup = now + GATE_CLEANUP_INTERVAL;
        }
        let mono = self.now().mono;
        self.suspects.expire(mono);
        if mono >= self.next_exchange {
            self.members.expire(mono);
            self.exchange_members();
            self.next_exchange = self.members.next_exchange(mono);
        }
        let waiting = std::mem::take(&mut self.bootstraps_awaiting_identify);
        for (peer, deadline, reply) in waiting {
            if deadline <= now {
                self.finish_bootstrap(peer, reply);
            } else {
                self.bootstraps_awaiting_identify.push((peer, deadline, reply));
            }
        }
        if self.peers_dirty && now >= self.next_peer_save {
            self.peers_dirty = false;
            self.next_peer_save = now + PEER_SAVE_INTERVAL;
            self.save_peers();
        }
        if now >= self.next_upkeep {
            self.next_upkeep = now + self.config.upkeep_interval;
            self.upkeep_round();
        }
        if now >= self.next_rejoin {
            self.next_rejoin = now + REJOIN_INTERVAL;
            self.rejoin();
        }
        if !self.listen_waiters.is_empty() && now >= self.listen_deadline {
            self.answer_listen_waiters();
        }
        self.sweep_ops();
        let expired: Vec<QueryId> = self
            .lookups
            .iter()
            .filter(|(_, l)| match l {
                Lookup::Closest { deadline, .. } | Lookup::Bootstrap { deadline, .. } => {
                    *deadline <= now
                }
            })
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(mut query) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                query.finish();
            }
            let timeout = Error::Timeout {
                after: self.config.timeout,
                acked: 0,
                needed: 1,
                failures: vec!["the Kademlia lookup did not finish".into()],
            };
            match self.lookups.remove(&id) {
                Some(Lookup::Closest { reply, .. }) => {
                    let _ = reply.send(Err(timeout));
                }
                Some(Lookup::Bootstrap { reply, .. }) => {
                    let _ = reply.send(Err(timeout));
                }
                None => {}
            }
        }
        let expired: Vec<ConnectionId> =
            self.dials.iter().filter(|(_, d)| d.deadline <= now).map(|(id, _)| *id).collect();
        for id in expired {
            if let Some(dial) = self.dials.remove(&id) {
                let err = Error::Unreachable {
                    addr: dial.addr,
                    reason: format!(
                        "no connection within {:.1} s",
                        self.config.timeout.as_secs_f64()
                    ),
                };
                dial.purpose.fail(err);
            }
        }
    }

    /// Writes the routing table's peers to the store when the set changed since the last save.
    fn save_peers(&mut self) {
        if !self.store.is_persistent() {
            return;
        }
        let mut peers: Vec<(PeerId, Vec<Multiaddr>)> = Vec::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for entry in bucket.iter() {
                peers
                    .push((*entry.node.key.preimage(), entry.node.value.iter().cloned().collect()));
            }
        }
        if peers.is_empty() {
            // Keep the old list: an empty table after a cut says nothing about who exists.
            return;
        }
        let mut ids: Vec<PeerId> = peers.iter().map(|(p, _)| *p).collect();
        ids.sort();
        if ids == self.saved_peers {
            return;
        }
        match self.store.save_peers(&peers) {
            Ok(()) => {
                self.known_peers = peers;
                self.saved_peers = ids;
            }
            Err(e) => tracing::warn!("cannot save the known peers: {e}"),
        }
    }

    /// Peers known: the routing table and open connections.
    fn peer_summaries(&mut self) -> Vec<PeerSummary> {
        let mut known: HashMap<PeerId, PeerSummary> = HashMap::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for entry in bucket.iter() {
                let peer = *entry.node.key.preimage();
                known.insert(
                    peer,
                    PeerSummary {
                        peer_id: peer,
                        addrs: entry.node.value.iter().cloned().collect(),
                        connected: false,
                        routable: true,
                        kv: None,
                    },
                );
            }
        }
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in connected {
            known
                .entry(peer)
                .or_insert_with(|| PeerSummary {
                    peer_id: peer,
                    addrs: Vec::new(),
                    connected: true,
                    routable: false,
                    kv: None,
                })
                .connected = true;
        }
        let mut out: Vec<PeerSummary> = known
            .into_values()
            .map(|mut p| {
                p.kv = self.kv_support.get(&p.peer_id).copied();
                if p.addrs.is_empty() {
                    p.addrs = self.peer_addrs.get(&p.peer_id).cloned().unwrap_or_default();
                }
                p
            })
            .collect();
        out.sort_by_key(|p| p.peer_id.to_base58());
        out
    }
}

impl EventLoop {
    /// The membership changed: run an upkeep round soon (debounced).
    pub(super) fn upkeep_soon(&mut self) {
        let soon = Instant::now() + UPKEEP_DEBOUNCE;
        if soon < self.next_upkeep {
            self.next_upkeep = soon;
        }
    }
}
