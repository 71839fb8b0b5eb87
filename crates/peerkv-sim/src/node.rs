//! One simulated peer: the real core's operations, replica and upkeep, with an in-memory
//! store, a routing table model and a clock that may run ahead.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::PeerId;
use peerkv::clock::Clock;
use peerkv::core::members::{Members, MEMBERS_CAP};
use peerkv::core::membership::Suspects;
use peerkv::core::replica::{self, Holdings, Limits};
use peerkv::core::{
    Action, Env, GetOp, Input, Kind, Now, OpConfig, PutOp, Rtts, Upkeep, UpkeepAction,
    UpkeepConfig, View,
};
use peerkv::protocol::{Request, Response};
use peerkv::Record;

use crate::routing::{Key, Table};

/// Wall-clock milliseconds at virtual time 0.
pub const BASE_WALL_MS: u64 = 1_800_000_000_000;

/// A replica's records (ordered, so that runs are reproducible).
#[derive(Debug, Default)]
pub struct Mem {
    records: BTreeMap<String, Record>,
    bytes: usize,
    writers: replica::Writers,
}

impl Mem {
    /// Writes a record that won (the core decided it).
    pub fn write(&mut self, record: Record) {
        let size = replica::held_size(&record);
        self.writers.add(&record);
        if let Some(old) = self.records.insert(record.key.clone(), record) {
            self.bytes -= replica::held_size(&old);
            self.writers.remove(&old);
        }
        self.bytes += size;
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) {
        if let Some(old) = self.records.remove(key) {
            self.bytes -= replica::held_size(&old);
            self.writers.remove(&old);
        }
    }
}

impl Holdings for Mem {
    fn get(&self, key: &str) -> Option<&Record> {
        self.records.get(key)
    }
    fn count(&self) -> usize {
        self.records.len()
    }
    fn bytes(&self) -> usize {
        self.bytes
    }
    fn for_each(&self, f: &mut dyn FnMut(&Record)) {
        self.records.values().for_each(f);
    }
    fn writer_usage(&self, writer: &[u8]) -> replica::Usage {
        self.writers.usage(writer)
    }
}

/// What a request of this node is for, to route its answer.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    /// An operation's request.
    Op {
        /// The operation.
        op: u64,
        /// Which of its requests.
        kind: Kind,
    },
    /// A read repair or a Store nobody waits for.
    Repair,
    /// Upkeep.
    Summary,
    /// Upkeep: the digest's id.
    Digest(u64),
    /// Upkeep's StoreMany.
    Push,
    /// A members exchange.
    Exchange,
    /// Kademlia's FIND_NODE of a rejoin; with `cascade`, the peers its answer names are
    /// greeted too (one step of a lookup, never more).
    Hello {
        /// Whether to greet the peers the answer names.
        cascade: bool,
    },
}

/// What the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// A put.
    Put,
    /// A get.
    Get,
    /// A delete.
    Del,
}

/// An operation in flight at a node.
pub enum SimOp {
    /// A put or delete.
    Put(PutOp),
    /// A get.
    Get(GetOp),
}

/// An operation and what the workload knows of it.
pub struct Running {
    /// The core's state machine.
    pub op: SimOp,
    /// Which kind.
    pub kind: OpKind,
    /// The key.
    pub key: String,
    /// When it started (µs).
    pub started: u64,
    /// Requests it sent (messages).
    pub sent: u32,
    /// Bytes of those requests.
    pub bytes: u64,
    /// Whether this is a verification read (after the workload).
    pub verify: bool,
}

impl Running {
    /// Whether the op has nothing left to do.
    pub fn is_done(&self) -> bool {
        match &self.op {
            SimOp::Put(op) => op.is_done(),
            SimOp::Get(op) => op.is_done(),
        }
    }
}

/// Something a node asks the simulator to do.
pub enum Out {
    /// Send `request` to node `to`.
    Send {
        /// To whom.
        to: PeerId,
        /// What its answer is for.
        purpose: Purpose,
        /// The request.
        request: Request,
    },
    /// An op's result (the op may live on).
    Reply {
        /// The operation.
        op: u64,
        /// Its result.
        outcome: peerkv::core::Outcome,
    },
    /// Feed the op `Input::Wake` at virtual time `at` (µs).
    Wake {
        /// The operation.
        op: u64,
        /// When.
        at: u64,
    },
}

/// A simulated peer.
pub struct Node {
    /// Its id.
    pub id: PeerId,
    /// Its Kademlia key.
    pub key: Key,
    /// Its identity (signs its writes).
    pub keypair: Keypair,
    /// Its records: kept across a crash (they are on disk).
    pub store: Mem,
    /// Versions of its writes.
    pub clock: Clock,
    /// How far its wall clock runs ahead, ms.
    pub skew_ms: u64,
    /// Its routing table (kept across a crash: the real node saves its peers).
    pub table: Table,
    /// Whether the process runs.
    pub alive: bool,
    /// Operations in flight.
    pub ops: HashMap<u64, Running>,
    /// Requests in flight: id → (to whom, what for).
    pub inflight: HashMap<u64, (PeerId, Purpose)>,
    /// Requests ops sent to this node itself, served after the event at hand.
    pub local: VecDeque<(u64, Kind, Request)>,
    /// Upkeep's state.
    pub upkeep: Upkeep,
    /// An upkeep round is scheduled (membership changed).
    pub upkeep_soon: bool,
    /// Peers it lost (a request failed), since when and when last redialed (µs): counted as
    /// failed replicas until they talk again, and redialed by the rejoin timer, as the node's
    /// suspects are.
    pub suspects: Suspects,
    /// Round-trip estimates the ops order and time their requests by.
    pub rtts: Rtts,
    /// The one-hop view: where searches start, what Fetch answers name, upkeep's replicas.
    pub members: Members,
    /// Where the next members exchange answer starts in key order.
    pub share_offset: usize,
    /// R.
    pub replication: usize,
    /// Records its pollution guard refused (see `Report::guard_refusals`).
    pub guard_refusals: u64,
}

impl Node {
    /// A node with identity `keypair`.
    pub fn new(keypair: Keypair) -> Self {
        let id = keypair.public().to_peer_id();
        let key = crate::routing::peer_key(&id);
        Node {
            id,
            key,
            keypair,
            store: Mem::default(),
            clock: Clock::new(),
            skew_ms: 0,
            table: Table::new(key),
            alive: true,
            ops: HashMap::new(),
            inflight: HashMap::new(),
            local: VecDeque::new(),
            upkeep: Upkeep::default(),
            upkeep_soon: false,
            suspects: Suspects::default(),
            members: Members::new(id, MEMBERS_CAP),
            rtts: Rtts::default(),
            share_offset: 0,
            replication: 5,
            guard_refusals: 0,
        }
    }

    /// The time as this node's core sees it at virtual time `t` (µs).
    pub fn now(&self, t: u64) -> Now {
        Now { mono: Duration::from_micros(t), wall_ms: BASE_WALL_MS + t / 1000 + self.skew_ms }
    }

    /// A crash: everything in memory is gone, the store and the saved peers stay.
    pub fn crash(&mut self) {
        self.alive = false;
        self.ops.clear();
        self.inflight.clear();
        self.local.clear();
        self.upkeep = Upkeep::default();
        self.upkeep_soon = false;
        self.suspects = Suspects::default();
        self.rtts = Rtts::default();
        self.clock = Clock::new();
    }

    /// Starts a client operation; returns what to send.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        op_id: u64,
        kind: OpKind,
        key: String,
        value: Option<Vec<u8>>,
        config: &OpConfig,
        t: u64,
        verify: bool,
    ) -> Result<Vec<Out>, peerkv::Error> {
        let nearest = self.members.nearest(&key, 2 * config.replication);
        let suspects = self.suspects.near(&key, config.replication);
        let view = View { nearest, suspects, connected: true };
        let now = self.now(t);
        let not_kv = |_: &PeerId| false;
        let known = self.table.len();
        let mut env = Env {
            now,
            local: self.id,
            clock: &mut self.clock,
            keypair: &self.keypair,
            known,
            not_kv: &not_kv,
            rtts: &mut self.rtts,
        };
        let (op, actions) = match kind {
            OpKind::Get => {
                let (op, a) = GetOp::start(key.clone(), view, config.clone(), &mut env)?;
                (SimOp::Get(op), a)
            }
            OpKind::Put | OpKind::Del => {
                let (op, a) =
                    PutOp::start(key.clone(), value, None, view, config.clone(), &mut env)?;
                (SimOp::Put(op), a)
            }
        };
        self.ops.insert(op_id, Running { op, kind, key, started: t, sent: 0, bytes: 0, verify });
        Ok(self.apply(op_id, actions, t))
    }

    /// Feeds `input` to op `op_id`; returns what to send.
    pub fn feed(&mut self, op_id: u64, input: Input, t: u64) -> Vec<Out> {
        let now = self.now(t);
        let known = self.table.len();
        let Some(running) = self.ops.get_mut(&op_id) else { return Vec::new() };
        let not_kv = |_: &PeerId| false;
        let mut env = Env {
            now,
            local: self.id,
            clock: &mut self.clock,
            keypair: &self.keypair,
            known,
            not_kv: &not_kv,
            rtts: &mut self.rtts,
        };
        let actions = match &mut running.op {
            SimOp::Put(op) => op.handle(input, &mut env),
            SimOp::Get(op) => op.handle(input, &mut env),
        };
        self.apply(op_id, actions, t)
    }

    /// Carries out an op's actions: local requests queue, others go out.
    fn apply(&mut self, op_id: u64, actions: Vec<Action>, t: u64) -> Vec<Out> {
        let mut out = Vec::new();
        for action in actions {
            match action {
                Action::Send { peer, kind, request } if peer == self.id => {
                    self.local.push_back((op_id, kind, request));
                }
                Action::Send { peer, kind, request } => {
                    if let Some(r) = self.ops.get_mut(&op_id) {
                        r.sent += 1;
                    }
                    out.push(Out::Send {
                        to: peer,
                        purpose: Purpose::Op { op: op_id, kind },
                        request,
                    });
                }
                Action::Repair { peer, record } if peer == self.id => {
                    let _ = self.serve(self.id, Request::Store { record }, t);
                }
                Action::Repair { peer, record } => {
                    out.push(Out::Send {
                        to: peer,
                        purpose: Purpose::Repair,
                        request: Request::Store { record },
                    });
                }
                Action::Learn { peer, addrs } => {
                    self.members.named(peer, &addrs, Duration::from_micros(t));
                }
                Action::Wake { at } => out.push(Out::Wake {
                    op: op_id,
                    at: u64::try_from(at.as_micros()).unwrap_or(u64::MAX),
                }),
                Action::Reply(outcome) => out.push(Out::Reply { op: op_id, outcome }),
            }
        }
        out
    }

    /// Serves the requests this node's ops sent itself; returns what they send next.
    pub fn drain_local(&mut self, t: u64) -> Vec<Out> {
        let mut out = Vec::new();
        while let Some((op, kind, request)) = self.local.pop_front() {
            let id = self.id;
            let response = self.serve(id, request, t);
            out.extend(self.feed(op, Input::Answer { peer: id, kind, response }, t));
        }
        out
    }

    /// Answers `request` from `from` with the node's replica code; writes land first.
    pub fn serve(&mut self, from: PeerId, request: Request, t: u64) -> Response {
        let now = self.now(t);
        if let Request::Members { max } = request {
            self.share_offset = self.share_offset.wrapping_add(usize::from(max));
            return self.members.answer(max, self.share_offset, Duration::from_micros(t));
        }
        if let Request::Summary { buckets } = request {
            return self.upkeep.answer_summary(&from, buckets);
        }
        let limits = Limits {
            max_value_size: 1 << 20,
            max_records: usize::MAX,
            max_store_bytes: usize::MAX,
            max_records_per_writer: usize::MAX,
            max_bytes_per_writer: usize::MAX,
            guard: Some(replica::Guard {
                local: self.id,
                nearest: replica::guard_width(self.replication),
            }),
        };
        let mut near = |key: &str, n: usize| replica::Near {
            peers: self.members.nearest_with_addrs(key, n),
            down: self.suspects.near(key, n),
        };
        let served = replica::serve(request, from != self.id, &self.store, &mut near, limits, now);
        let guarded = |reason: &str| reason.starts_with("not among");
        self.guard_refusals += match &served.response {
            Response::Rejected { reason } => u64::from(guarded(reason)),
            Response::StoredMany { rejected, .. } => {
                rejected.iter().filter(|(_, reason)| guarded(reason)).count() as u64
            }
            _ => 0,
        };
        for w in served.writes {
            let old = self.store.get(&w.key).map(|r| r.version);
            self.upkeep.wrote(
                &w.key,
                old,
                Some(w.version),
                self.id,
                &self.members,
                self.replication,
            );
            self.store.write(w);
        }
        if let Some(v) = served.observed {
            peerkv::core::observe(&mut self.clock, now, v);
        }
        served.response
    }

    /// One upkeep round; returns what to send.
    pub fn upkeep_round(&mut self, config: UpkeepConfig, t: u64) -> Vec<Out> {
        let now = self.now(t);
        let actions = self.upkeep.round(&self.store, self.id, &self.members, config, now);
        self.carry_out(actions)
    }

    /// The answer to an upkeep request of ours.
    pub fn upkeep_answer(
        &mut self,
        from: PeerId,
        purpose: Purpose,
        response: Response,
        config: UpkeepConfig,
    ) -> Vec<Out> {
        let actions = match (purpose, response) {
            (Purpose::Summary, Response::Mismatch { buckets }) => {
                self.upkeep.on_mismatch(from, &buckets)
            }
            (Purpose::Digest(id), Response::Missing { keys }) => {
                self.upkeep.on_missing(from, id, keys, &self.store, config)
            }
            _ => Vec::new(),
        };
        self.carry_out(actions)
    }

    fn carry_out(&mut self, actions: Vec<UpkeepAction>) -> Vec<Out> {
        let mut out = Vec::new();
        for action in actions {
            match action {
                UpkeepAction::Remove(key) => {
                    if let Some(old) = self.store.get(&key).map(|r| r.version) {
                        self.upkeep.wrote(
                            &key,
                            Some(old),
                            None,
                            self.id,
                            &self.members,
                            self.replication,
                        );
                    }
                    self.store.remove(&key);
                }
                UpkeepAction::Send { peer, request } => {
                    let purpose = match &request {
                        Request::Summary { .. } => Purpose::Summary,
                        _ => Purpose::Push,
                    };
                    out.push(Out::Send { to: peer, purpose, request });
                }
                UpkeepAction::Digest { peer, id, request } => {
                    out.push(Out::Send { to: peer, purpose: Purpose::Digest(id), request });
                }
            }
        }
        out
    }
}
