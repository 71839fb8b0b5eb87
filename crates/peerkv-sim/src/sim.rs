//! The engine: a queue of events in virtual time (µs), the network model, faults, the
//! workload, and the bookkeeping the report reads.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::identity::Keypair;
use libp2p::PeerId;
use peerkv::core::members::MEMBERS_CAP;
use peerkv::core::membership::{self, Loss};
use peerkv::core::{Input, OpConfig, Outcome, UpkeepConfig};
use peerkv::protocol::{Request, Response};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::checker::History;
use crate::node::{Node, OpKind, Out, Purpose, SimOp};
use crate::report::{Collector, Report};
use crate::routing::{self, Index, K};
use crate::SimConfig;

const MS: u64 = 1000;
const SEC: u64 = 1_000_000;
/// A request unanswered this long fails (60 % of the operation's 10 s, as in the node).
const REQUEST_TIMEOUT: u64 = 6 * SEC;
/// When faults start, when churn stops, how long the partition lasts.
const FAULTS_FROM: u64 = 60 * SEC;
const CHURN_UNTIL: u64 = 180 * SEC;
const PARTITION_UNTIL: u64 = 120 * SEC;
/// A crashed peer is down this long (uniform).
const DOWN_MIN: u64 = 5 * SEC;
const DOWN_MAX: u64 = 30 * SEC;
/// Upkeep rounds: the period, and the delay after the routing table changed.
const UPKEEP_EVERY: u64 = 60 * SEC;
const UPKEEP_SOON: u64 = 2 * SEC;
/// A peer's first members exchange comes within this after it joined (then the core's
/// `Members::next_exchange` says when).
const EXCHANGE_FIRST: u64 = 5 * SEC;
/// The rejoin timer's period (whom it dials is the core's `membership::rejoin`).
const REJOIN_EVERY: u64 = 5 * SEC;
/// Quiet time between the workload's end and the final reads.
const SETTLE: u64 = 30 * SEC;
/// Clients start this long after the overlay formed: the members exchanges (every 5 s while a
/// view still grows) have filled the one-hop views by then, as in an overlay that has run a
/// while. Faults keep their times (from 60 s).
const WARMUP: u64 = 30 * SEC;
/// One-way latency of a link: uniform between these (µs); the mean round trip is their sum.
const LAT_MIN: u64 = MS;
const LAT_MAX: u64 = 10 * MS;

/// The mean round trip of the latency model, the unit of `rtt_multiple`.
pub const MEAN_RTT: Duration = Duration::from_micros(LAT_MIN + LAT_MAX);

/// What travels.
#[derive(Debug)]
enum Msg {
    Request(Request),
    Response(Response),
    /// Kademlia's FIND_NODE for the sender's own id (libp2p-kad, not the value protocol).
    Hello,
    HelloAnswer(Vec<PeerId>),
}

#[derive(Debug)]
enum Event {
    Deliver { to: usize, from: usize, req: u64, msg: Msg, sent: u64 },
    Fail { node: usize, req: u64, lost_peer: bool, reason: &'static str },
    Deadline { node: usize, op: u64 },
    Client { index: usize },
    Verify,
    Upkeep { node: usize, periodic: bool },
    Rejoin { node: usize },
    Exchange { node: usize },
    Wake { node: usize, op: u64 },
    ChurnTick,
    Restart { node: usize },
}

struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// One client operation of the workload.
#[derive(Debug, Clone)]
struct ClientOp {
    at: u64,
    kind: OpKind,
    key: String,
}

struct Sim {
    cfg: SimConfig,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<Node>,
    index_of: HashMap<PeerId, usize>,
    index: Index,
    rng: StdRng,
    op_config: OpConfig,
    upkeep_config: UpkeepConfig,
    workload: Vec<ClientOp>,
    next_req: u64,
    next_op: u64,
    partitioned: bool,
    rejoin_pending: Vec<bool>,
    history: History,
    collect: Collector,
    events: u64,
}

/// A random key whose distance to `own` has its highest bit at `bucket` (0 = lowest).
fn random_in_bucket(own: &routing::Key, bucket: usize, rng: &mut StdRng) -> routing::Key {
    let mut d = [0u8; 32];
    rng.fill(&mut d);
    let (byte, bit) = (31 - bucket / 8, bucket % 8);
    for b in d.iter_mut().take(byte) {
        *b = 0;
    }
    d[byte] &= (1u8 << bit).wrapping_sub(1) | (1u8 << bit);
    d[byte] &= if bit == 7 { 0xff } else { (1u8 << (bit + 1)) - 1 };
    d[byte] |= 1u8 << bit;
    routing::distance(own, &d)
}

/// Runs one simulation and reports on it.
pub fn run(cfg: &SimConfig) -> Report {
    let wall = Instant::now();
    let mut sim = Sim::new(cfg.clone());
    sim.build_overlay();
    sim.schedule_workload();
    sim.run_events();
    let verdict = sim.history.check();
    let members: Vec<usize> =
        sim.nodes.iter().filter(|n| n.alive).map(|n| n.members.len()).collect();
    let mut report = sim.collect.report(cfg, verdict, sim.events, &members, wall.elapsed());
    report.guard_refusals = sim.nodes.iter().map(|n| n.guard_refusals).sum();
    report
}

impl Sim {
    fn new(cfg: SimConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let mut nodes: Vec<Node> = (0..cfg.nodes)
            .map(|_| {
                let mut secret = [0u8; 32];
                rng.fill(&mut secret);
                let keypair = Keypair::ed25519_from_bytes(secret)
                    .unwrap_or_else(|_| Keypair::generate_ed25519());
                Node::new(keypair)
            })
            .collect();
        for node in &mut nodes {
            node.replication = cfg.replication;
        }
        if cfg.faults.skew {
            if let Some(n) = nodes.first_mut() {
                n.skew_ms = 120_000;
            }
        }
        let index_of = nodes.iter().enumerate().map(|(i, n)| (n.id, i)).collect();
        let keys: Vec<routing::Key> = nodes.iter().map(|n| n.key).collect();
        let op_config = OpConfig {
            replication: cfg.replication,
            write_quorum: cfg.write_quorum,
            read_quorum: cfg.read_quorum,
            max_value_size: 1 << 20,
            timeout: Duration::from_secs(10),
            search_budget: (peerkv::core::SEARCH_BUDGET_PER_REPLICA * cfg.replication)
                .max(peerkv::core::SEARCH_BUDGET_MIN),
            mdns: false,
            bootstrap: 0,
        };
        let upkeep_config = UpkeepConfig {
            replication: cfg.replication,
            tombstone_ttl: Duration::from_secs(86_400),
            batch_bytes: 512 * 1024,
        };
        let n = nodes.len();
        Sim {
            cfg,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            index_of,
            index: Index::new(&keys),
            rng,
            op_config,
            upkeep_config,
            workload: Vec::new(),
            next_req: 0,
            next_op: 0,
            partitioned: false,
            rejoin_pending: vec![false; n],
            history: History::default(),
            collect: Collector::default(),
            events: 0,
        }
    }

    fn at(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at, seq: self.seq, event }));
    }

    /// Each peer joins through a random earlier one as libp2p-kad's bootstrap does: a lookup of
    /// its own id, then one of a random id in every bucket farther than its closest neighbour
    /// (every peer contacted and the joiner learn each other, as identify makes them).
    fn build_overlay(&mut self) {
        for i in 1..self.nodes.len() {
            let via = self.rng.gen_range(0..i);
            let own = self.nodes[i].key;
            self.lookup(i, via, own);
            // A joiner's first members exchange, with the peer it joined through.
            let share = self.nodes[via].members.share(MEMBERS_CAP, 0, Duration::ZERO);
            self.nodes[i].members.merge(share, Duration::ZERO);
            let nearest = self.nodes[i].table.nearest(&own, 1);
            let Some(closest) = nearest.first().and_then(|p| self.index_of.get(p)) else {
                continue;
            };
            let d = routing::distance(&own, &self.nodes[*closest].key);
            let zeros = d.iter().position(|b| *b != 0).unwrap_or(31);
            let closest_bucket = (31 - zeros) * 8 + (7 - d[zeros].leading_zeros() as usize);
            for bucket in closest_bucket + 1..256 {
                let target = random_in_bucket(&own, bucket, &mut self.rng);
                self.lookup(i, via, target);
            }
        }
    }

    /// An iterative FIND_NODE from `node` for `target`, starting at `via` (α = 3, k = 20),
    /// done at once (the overlay forms before the clock starts).
    fn lookup(&mut self, node: usize, via: usize, target: routing::Key) {
        let mut candidates: Vec<(routing::Key, usize)> =
            vec![(routing::distance(&target, &self.nodes[via].key), via)];
        let mut queried = std::collections::HashSet::new();
        loop {
            candidates.sort_unstable();
            candidates.dedup();
            let next: Vec<usize> = candidates
                .iter()
                .take(K)
                .map(|(_, i)| *i)
                .filter(|i| !queried.contains(i) && *i != node)
                .take(3)
                .collect();
            if next.is_empty() {
                break;
            }
            for q in next {
                queried.insert(q);
                self.contact(node, q);
                let found = self.nodes[q].table.nearest(&target, K);
                for p in found {
                    if let Some(&i) = self.index_of.get(&p) {
                        if !candidates.iter().any(|(_, c)| *c == i) {
                            candidates.push((routing::distance(&target, &self.nodes[i].key), i));
                        }
                    }
                }
            }
        }
    }

    /// `a` and `b` talked: each inserts the other (a connection and identify both ways), and
    /// neither suspects the other any more.
    fn contact(&mut self, a: usize, b: usize) {
        let (ida, ka, idb, kb) =
            (self.nodes[a].id, self.nodes[a].key, self.nodes[b].id, self.nodes[b].key);
        self.nodes[a].suspects.heard(&idb);
        self.nodes[b].suspects.heard(&ida);
        let now = Duration::from_micros(self.now);
        self.nodes[a].members.seen(idb, &[], now);
        self.nodes[b].members.seen(ida, &[], now);
        let new_b = !self.nodes[a].table.contains(&idb, &kb) && self.nodes[a].table.insert(idb, kb);
        let new_a = !self.nodes[b].table.contains(&ida, &ka) && self.nodes[b].table.insert(ida, ka);
        if new_b {
            self.membership_changed(a);
        }
        if new_a {
            self.membership_changed(b);
        }
    }

    /// `node`'s table changed: an upkeep round soon (once the clock runs).
    fn membership_changed(&mut self, node: usize) {
        if self.now == 0 && self.queue.is_empty() {
            return; // building the overlay
        }
        if !self.nodes[node].upkeep_soon {
            self.nodes[node].upkeep_soon = true;
            self.at(self.now + UPKEEP_SOON, Event::Upkeep { node, periodic: false });
        }
    }

    fn schedule_workload(&mut self) {
        let span = u64::try_from(self.cfg.workload_span().as_micros()).unwrap_or(u64::MAX);
        let keys = self.cfg.keys.unwrap_or((self.cfg.ops / 10).max(10));
        let mut ops: Vec<ClientOp> = (0..self.cfg.ops)
            .map(|_| {
                let roll: f64 = self.rng.gen();
                let kind = if roll < 0.45 {
                    OpKind::Put
                } else if roll < 0.9 {
                    OpKind::Get
                } else {
                    OpKind::Del
                };
                let key = format!("key-{}", self.rng.gen_range(0..keys));
                ClientOp { at: WARMUP + self.rng.gen_range(0..span.max(1)), kind, key }
            })
            .collect();
        ops.sort_by_key(|o| o.at);
        for (index, op) in ops.iter().enumerate() {
            self.at(op.at, Event::Client { index });
        }
        self.workload = ops;
        for node in 0..self.nodes.len() {
            let phase = self.rng.gen_range(0..UPKEEP_EVERY);
            self.at(phase, Event::Upkeep { node, periodic: true });
            // A peer's first exchange follows its join closely (the overlay forms at 0).
            let phase = self.rng.gen_range(0..EXCHANGE_FIRST);
            self.at(phase, Event::Exchange { node });
        }
        if self.cfg.faults.churn {
            self.at(FAULTS_FROM, Event::ChurnTick);
        }
        self.at(WARMUP + span + SETTLE, Event::Verify);
    }

    fn run_events(&mut self) {
        let end_of_faults = if self.cfg.faults.partition { PARTITION_UNTIL } else { 0 };
        while let Some(Reverse(s)) = self.queue.pop() {
            self.now = s.at;
            self.events += 1;
            if self.cfg.faults.partition {
                self.partitioned = (FAULTS_FROM..end_of_faults).contains(&self.now);
            }
            match s.event {
                Event::Deliver { to, from, req, msg, sent } => {
                    self.deliver(to, from, req, msg, sent)
                }
                Event::Fail { node, req, lost_peer, reason } => {
                    self.fail(node, req, lost_peer, reason)
                }
                Event::Deadline { node, op } => {
                    if self.nodes[node].alive {
                        let out = self.nodes[node].feed(op, Input::Deadline, self.now);
                        self.handle(node, out);
                    }
                }
                Event::Client { index } => self.client(index),
                Event::Verify => self.verify(),
                Event::Upkeep { node, periodic } => self.upkeep(node, periodic),
                Event::Rejoin { node } => self.rejoin(node),
                Event::Exchange { node } => self.exchange(node),
                Event::Wake { node, op } => {
                    if self.nodes[node].alive {
                        let out = self.nodes[node].feed(op, Input::Wake, self.now);
                        self.handle(node, out);
                    }
                }
                Event::ChurnTick => self.churn_tick(),
                Event::Restart { node } => self.restart(node),
            }
        }
    }

    fn latency(&mut self, a: usize, b: usize) -> u64 {
        // Per link: a stable draw from the pair; per message: ±5 % jitter.
        let (lo, hi) = (a.min(b) as u64, a.max(b) as u64);
        let mix = (lo.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ hi.wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
            .wrapping_add(self.cfg.seed)
            .wrapping_mul(0x1656_67B1_9E37_79F9);
        let base = LAT_MIN + (mix >> 11) % (LAT_MAX - LAT_MIN + 1);
        let jitter: f64 = self.rng.gen_range(0.95..1.05);
        (base as f64 * jitter) as u64
    }

    fn cut(&self, a: usize, b: usize) -> bool {
        self.partitioned && (a % 2) != (b % 2)
    }

    /// Sends from `from`; returns nothing (answers and failures come back as events).
    fn send(&mut self, from: usize, to: PeerId, purpose: Purpose, request: Request) {
        let Some(&to) = self.index_of.get(&to) else {
            // A peer id nobody has (a stranger named it): the dial fails at once.
            self.next_req += 1;
            let req = self.next_req;
            self.nodes[from].inflight.insert(req, (to, purpose));
            self.at(
                self.now + MS,
                Event::Fail { node: from, req, lost_peer: true, reason: "unknown peer" },
            );
            return;
        };
        self.next_req += 1;
        let req = self.next_req;
        let peer = self.nodes[to].id;
        self.nodes[from].inflight.insert(req, (peer, purpose));
        let bytes = peerkv::protocol::encode(&request).map_or(0, |b| b.len() as u64);
        if let Purpose::Op { op, .. } = purpose {
            if let Some(r) = self.nodes[from].ops.get_mut(&op) {
                r.bytes += bytes;
            }
        }
        self.collect.message(bytes);
        self.transmit(from, to, req, Msg::Request(request));
    }

    fn transmit(&mut self, from: usize, to: usize, req: u64, msg: Msg) {
        let lost = self.cfg.loss > 0.0 && self.rng.gen::<f64>() < self.cfg.loss;
        if self.cut(from, to) || lost {
            // Nothing arrives; whoever waits for an answer times out.
            let waiter =
                if matches!(msg, Msg::Response(_) | Msg::HelloAnswer(_)) { to } else { from };
            let lost_peer = !lost;
            self.at(
                self.now + REQUEST_TIMEOUT,
                Event::Fail { node: waiter, req, lost_peer, reason: "timed out" },
            );
            return;
        }
        let delay = self.latency(from, to);
        self.at(self.now + delay, Event::Deliver { to, from, req, msg, sent: self.now });
    }

    /// A request reached `to`, which is down: the sender hears a refusal one latency later.
    fn refused(&mut self, to: usize, from: usize, req: u64) -> bool {
        if self.nodes[to].alive {
            return false;
        }
        let back = self.latency(to, from);
        let fail = Event::Fail { node: from, req, lost_peer: true, reason: "connection refused" };
        self.at(self.now + back, fail);
        true
    }

    fn deliver(&mut self, to: usize, from: usize, req: u64, msg: Msg, _sent: u64) {
        match msg {
            Msg::Request(request) => {
                if self.refused(to, from, req) {
                    return;
                }
                self.contact(to, from);
                let from_id = self.nodes[from].id;
                let response = self.nodes[to].serve(from_id, request, self.now);
                let bytes = peerkv::protocol::encode(&response).map_or(0, |b| b.len() as u64);
                self.collect.message(bytes);
                self.transmit(to, from, req, Msg::Response(response));
            }
            Msg::Hello => {
                if self.refused(to, from, req) {
                    return;
                }
                self.contact(to, from);
                let near = self.nodes[to].table.nearest(&self.nodes[from].key, K);
                self.transmit(to, from, req, Msg::HelloAnswer(near));
            }
            Msg::Response(response) => {
                let node = &mut self.nodes[to];
                if !node.alive {
                    return;
                }
                let Some((peer, purpose)) = node.inflight.remove(&req) else { return };
                self.contact(to, from);
                self.answered(to, peer, purpose, response);
            }
            Msg::HelloAnswer(near) => {
                if !self.nodes[to].alive {
                    return;
                }
                let Some((_, purpose)) = self.nodes[to].inflight.remove(&req) else { return };
                self.contact(to, from);
                if !matches!(purpose, Purpose::Hello { cascade: true }) {
                    return;
                }
                // Peers near us that we do not know yet: say hello too (a lookup's next step).
                for p in near.into_iter().take(8) {
                    if let Some(&i) = self.index_of.get(&p) {
                        let k = self.nodes[i].key;
                        if i != to && !self.nodes[to].table.contains(&p, &k) {
                            self.hello(to, i, false);
                        }
                    }
                }
            }
        }
    }

    fn hello(&mut self, from: usize, to: usize, cascade: bool) {
        self.next_req += 1;
        let req = self.next_req;
        let peer = self.nodes[to].id;
        self.nodes[from].inflight.insert(req, (peer, Purpose::Hello { cascade }));
        self.transmit(from, to, req, Msg::Hello);
    }

    fn answered(&mut self, node: usize, peer: PeerId, purpose: Purpose, response: Response) {
        match purpose {
            Purpose::Op { op, kind } => {
                let out =
                    self.nodes[node].feed(op, Input::Answer { peer, kind, response }, self.now);
                self.handle(node, out);
            }
            Purpose::Summary | Purpose::Digest(_) => {
                let cfg = self.upkeep_config;
                let out = self.nodes[node].upkeep_answer(peer, purpose, response, cfg);
                self.handle(node, out);
            }
            Purpose::Exchange => {
                if let Response::Members { peers } = response {
                    self.nodes[node].members.merge(peers, Duration::from_micros(self.now));
                }
            }
            Purpose::Push => {
                // Refused hand-offs are not sent again at the same version for a while (the
                // node does the same; it knows the versions it sent, here the ones held now).
                if let Response::StoredMany { rejected, .. } = response {
                    let n = &mut self.nodes[node];
                    let refused = rejected
                        .into_iter()
                        .filter_map(|(key, _)| {
                            let version =
                                peerkv::core::replica::Holdings::get(&n.store, &key)?.version;
                            Some((key, version))
                        })
                        .collect();
                    n.upkeep.refused(peer, refused, Duration::from_micros(self.now));
                }
            }
            Purpose::Repair | Purpose::Hello { .. } => {}
        }
    }

    fn fail(&mut self, node: usize, req: u64, lost_peer: bool, reason: &'static str) {
        if !self.nodes[node].alive {
            return;
        }
        let Some((peer, purpose)) = self.nodes[node].inflight.remove(&req) else { return };
        if lost_peer {
            // A refusal says the process is gone (forgotten); no answer at all may be a
            // partition (a suspect), as in the node.
            let loss = if reason == "timed out" { Loss::Silent } else { Loss::Refused };
            self.lose(node, peer, loss);
        }
        if let Purpose::Op { op, kind } = purpose {
            let input = Input::Failed { peer, kind, reason: reason.to_owned() };
            let out = self.nodes[node].feed(op, input, self.now);
            self.handle(node, out);
        }
    }

    /// A request to `peer` failed: it leaves the table and becomes a suspect, which the rejoin
    /// timer redials.
    fn lose(&mut self, node: usize, peer: PeerId, loss: Loss) {
        let Some(&i) = self.index_of.get(&peer) else { return };
        let key = self.nodes[i].key;
        if self.nodes[node].table.remove(&peer, &key) {
            self.membership_changed(node);
        }
        let now = Duration::from_micros(self.now);
        self.nodes[node].suspects.lost(peer, loss, Vec::new(), now);
        self.nodes[node].members.lost(&peer, now);
        if !self.rejoin_pending[node] {
            self.rejoin_pending[node] = true;
            self.at(self.now + REJOIN_EVERY, Event::Rejoin { node });
        }
    }

    fn rejoin(&mut self, node: usize) {
        self.rejoin_pending[node] = false;
        if !self.nodes[node].alive {
            return;
        }
        // The node's rejoin rule; a simulated peer has no mDNS, no connections to keep and,
        // once running, no bootstrap list: what it dials are its suspects, in turn.
        let now = Duration::from_micros(self.now);
        let n = &mut self.nodes[node];
        n.suspects.expire(now);
        let routed: HashSet<PeerId> = n.table.peers().into_iter().collect();
        let nobody = |_: &PeerId| false;
        let known = membership::Known {
            local: n.id,
            routed: &routed,
            connected: &nobody,
            mdns: Vec::new(),
            bootstrap: Vec::new(),
            saved: &[],
            keep_connected: false,
        };
        for dial in membership::rejoin(&mut n.suspects, known, now) {
            if let Some(&i) = self.index_of.get(&dial.peer) {
                self.hello(node, i, false);
            }
        }
        if !self.nodes[node].suspects.is_empty() {
            self.rejoin_pending[node] = true;
            self.at(self.now + REJOIN_EVERY, Event::Rejoin { node });
        }
    }

    /// Carries out what a node asked for, then serves its own queued requests.
    fn handle(&mut self, node: usize, out: Vec<Out>) {
        let mut out = out;
        loop {
            for o in std::mem::take(&mut out) {
                match o {
                    Out::Send { to, purpose, request } => self.send(node, to, purpose, request),
                    Out::Reply { op, outcome } => self.reply(node, op, outcome),
                    Out::Wake { op, at } => self.at(at.max(self.now), Event::Wake { node, op }),
                }
            }
            let more = self.nodes[node].drain_local(self.now);
            if more.is_empty() {
                break;
            }
            out = more;
        }
        let done: Vec<u64> =
            self.nodes[node].ops.iter().filter(|(_, r)| r.is_done()).map(|(id, _)| *id).collect();
        for id in done {
            self.nodes[node].ops.remove(&id);
        }
    }

    fn reply(&mut self, node: usize, op: u64, outcome: Outcome) {
        let Some(running) = self.nodes[node].ops.get(&op) else { return };
        let elapsed = self.now - running.started;
        let key = running.key.clone();
        let window: Vec<PeerId> = match &running.op {
            SimOp::Get(g) => g.search().window_peers(),
            SimOp::Put(p) => p.window().to_vec(),
        };
        let hops = match (&running.op, &outcome) {
            (_, Outcome::Get(Ok(r))) => r.hops,
            (SimOp::Put(p), _) => p.hops(),
            _ => 0,
        };
        let (kind, verify, sent, bytes, started) =
            (running.kind, running.verify, running.sent, running.bytes, running.started);
        // The true R nearest live peers of the key, for the overlap.
        let target = routing::record_key(&key);
        let nodes = &self.nodes;
        let truth: Vec<PeerId> = self
            .index
            .nearest(&target, self.cfg.replication, &|i| nodes[i].alive)
            .into_iter()
            .map(|i| nodes[i].id)
            .collect();
        let overlap = if truth.is_empty() {
            1.0
        } else {
            truth.iter().filter(|p| window.contains(p)).count() as f64 / truth.len() as f64
        };
        if std::env::var("PEERKV_SIM_TRACE_KEY").is_ok_and(|k| k == key) {
            let short = |p: &PeerId| peerkv::short_id(p);
            let truth_s: Vec<String> = truth.iter().map(short).collect();
            let detail = match (&self.nodes[node].ops.get(&op).map(|r| &r.op), &outcome) {
                (Some(SimOp::Get(g)), Outcome::Get(r)) => format!(
                    "get from {} started {started} -> {:?}; window {:?}",
                    short(&self.nodes[node].id),
                    r.as_ref()
                        .map(|r| r.record.as_ref().map(|x| x.version))
                        .map_err(|e| e.to_string()),
                    g.search()
                        .window_states()
                        .iter()
                        .map(|(p, s)| format!(
                            "{}={}",
                            short(p),
                            match s {
                                peerkv::core::search::Reach::Answered(Some(r)) =>
                                    r.version.to_string(),
                                peerkv::core::search::Reach::Answered(None) => "none".into(),
                                other => format!("{other:?}"),
                            }
                        ))
                        .collect::<Vec<_>>()
                ),
                (Some(SimOp::Put(p)), Outcome::Put(r)) => format!(
                    "put from {} started {started} version {} -> {:?}; window {:?}",
                    short(&self.nodes[node].id),
                    p.record().version,
                    r.as_ref()
                        .map(|r| r.stored_on.iter().map(short).collect::<Vec<_>>())
                        .map_err(|e| e.to_string()),
                    p.window().iter().map(short).collect::<Vec<_>>()
                ),
                _ => String::new(),
            };
            eprintln!("trace {key} at {}: {detail}; true nearest {truth_s:?}", self.now);
        }
        let ok = match &outcome {
            Outcome::Put(Ok(r)) => {
                if let Some(SimOp::Put(p)) = self.nodes[node].ops.get(&op).map(|r| &r.op) {
                    self.history.acked(&key, p.record(), self.now);
                }
                let _ = r;
                true
            }
            Outcome::Get(Ok(r)) => {
                self.history.read(&key, r.record.as_ref(), started, self.now);
                if r.record.is_some() && !verify {
                    self.collect.found(elapsed, hops, sent, bytes, overlap);
                }
                true
            }
            Outcome::Put(Err(e)) | Outcome::Get(Err(e)) => {
                self.collect.error(kind, &e.to_string());
                false
            }
        };
        self.collect.op(kind, verify, ok, elapsed, hops, sent, bytes, overlap, self.now);
    }

    fn client(&mut self, index: usize) {
        let Some(op) = self.workload.get(index).cloned() else { return };
        let live: Vec<usize> = (0..self.nodes.len()).filter(|i| self.nodes[*i].alive).collect();
        if live.is_empty() {
            return;
        }
        let node = live[self.rng.gen_range(0..live.len())];
        self.start(node, op.kind, op.key, false);
    }

    fn start(&mut self, node: usize, kind: OpKind, key: String, verify: bool) {
        self.next_op += 1;
        let id = self.next_op;
        let value = match kind {
            OpKind::Put => Some(format!("value {id}").into_bytes()),
            _ => None,
        };
        let cfg = self.op_config.clone();
        match self.nodes[node].start(id, kind, key, value, &cfg, self.now, verify) {
            Ok(out) => {
                let deadline =
                    self.now + u64::try_from(cfg.timeout.as_micros()).unwrap_or(u64::MAX);
                self.at(deadline, Event::Deadline { node, op: id });
                self.handle(node, out);
            }
            Err(_) => self.collect.op(kind, verify, false, 0, 0, 0, 0, 0.0, self.now),
        }
    }

    /// After the workload and a quiet spell: every key written is read once more.
    fn verify(&mut self) {
        let keys = self.history.written_keys();
        let live: Vec<usize> = (0..self.nodes.len()).filter(|i| self.nodes[*i].alive).collect();
        for key in keys {
            if live.is_empty() {
                break;
            }
            let node = live[self.rng.gen_range(0..live.len())];
            self.start(node, OpKind::Get, key, true);
        }
    }

    fn upkeep(&mut self, node: usize, periodic: bool) {
        if periodic {
            let end = u64::try_from(self.cfg.workload_span().as_micros()).unwrap_or(u64::MAX)
                + WARMUP
                + SETTLE;
            if self.now + UPKEEP_EVERY <= end {
                self.at(self.now + UPKEEP_EVERY, Event::Upkeep { node, periodic: true });
            }
        } else {
            self.nodes[node].upkeep_soon = false;
        }
        if !self.nodes[node].alive {
            return;
        }
        let cfg = self.upkeep_config;
        let out = self.nodes[node].upkeep_round(cfg, self.now);
        self.collect.upkeep_round();
        self.handle(node, out);
    }

    /// A members exchange: ask one member (drawn at random among those this peer talked
    /// with) for up to `SHARE_MAX` of its members; forget the members nobody heard from.
    fn exchange(&mut self, node: usize) {
        let end = u64::try_from(self.cfg.workload_span().as_micros()).unwrap_or(u64::MAX)
            + WARMUP
            + SETTLE;
        let next = self.nodes[node].members.next_exchange(Duration::from_micros(self.now));
        let next = u64::try_from(next.as_micros()).unwrap_or(u64::MAX);
        if next <= end {
            self.at(next, Event::Exchange { node });
        }
        if !self.nodes[node].alive {
            return;
        }
        self.nodes[node].members.expire(Duration::from_micros(self.now));
        let pick = self.rng.gen_range(0..usize::MAX);
        if let Some(peer) = self.nodes[node].members.pick(pick) {
            let max = self.nodes[node].members.wanted();
            self.send(node, peer, Purpose::Exchange, Request::Members { max });
        }
    }

    fn churn_tick(&mut self) {
        if self.now >= CHURN_UNTIL {
            self.collect.churn_stopped(self.now);
            return;
        }
        // 10 % of peers per minute: each live peer crashes with 0.1/60 per second.
        for node in 0..self.nodes.len() {
            if self.nodes[node].alive && self.rng.gen::<f64>() < 0.1 / 60.0 {
                // Ops in flight at the crashed peer end without an answer (not acknowledged).
                let pending: Vec<OpKind> = self.nodes[node].ops.values().map(|r| r.kind).collect();
                for kind in pending {
                    self.collect.op(kind, false, false, 0, 0, 0, 0, 0.0, self.now);
                }
                self.nodes[node].crash();
                self.collect.crash();
                let down = self.rng.gen_range(DOWN_MIN..=DOWN_MAX);
                self.at(self.now + down, Event::Restart { node });
            }
        }
        self.at(self.now + SEC, Event::ChurnTick);
    }

    /// A crashed peer comes back with its store and saved peers, and says hello to the peers
    /// nearest to itself (a Kademlia bootstrap).
    fn restart(&mut self, node: usize) {
        self.nodes[node].alive = true;
        let own = self.nodes[node].key;
        let near = self.nodes[node].table.nearest(&own, 8);
        for p in near {
            if let Some(&i) = self.index_of.get(&p) {
                self.hello(node, i, true);
            }
        }
        self.membership_changed(node);
    }
}
