//! Property tests of the protocol core alone (no swarm, no clock read): a [`PutOp`] or
//! [`GetOp`] runs against a small universe of honest replicas, each served by the same
//! `replica::serve` the node uses, while proptest picks the order of answers, failures,
//! duplicates, answers from peers never asked, and when the deadline strikes.
//!
//! What must hold, whatever the schedule:
//! - a put never reports success with fewer than W acknowledgements, and every one it counts
//!   came from one of the R nearest peers, which really stored the record;
//! - a get never returns a version older than one that enough of the R nearest held before it
//!   started (enough: every read quorum of the R nearest includes one of them — W of them when
//!   W + Q > R), and never a record only a peer it never asked sent;
//! - after a successful put, a get returns that version or a newer one (W + Q > R);
//! - repairs go only to replicas that answered with less than the record repaired;
//! - every op answers exactly once and ends on its deadline; nothing panics.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::PeerId;
use peerkv::clock::Clock;
use peerkv::core::replica::{self, Holdings, Limits};
use peerkv::core::{Action, Env, GetOp, Input, Kind, Now, OpConfig, Outcome, PutOp, Rtts, View};
use peerkv::protocol::{Request, Response};
use peerkv::{placement, Hlc, Record};
use proptest::prelude::*;

const KEY: &str = "the-key";
const BASE_MS: u64 = 1_700_000_000_000;

/// One replica's store.
#[derive(Default, Clone)]
struct Mem(HashMap<String, Record>);

impl Holdings for Mem {
    fn get(&self, key: &str) -> Option<&Record> {
        self.0.get(key)
    }
    fn count(&self) -> usize {
        self.0.len()
    }
    fn bytes(&self) -> usize {
        self.0.values().map(replica::held_size).sum()
    }
    fn for_each(&self, f: &mut dyn FnMut(&Record)) {
        self.0.values().for_each(f);
    }
    fn writer_usage(&self, writer: &[u8]) -> replica::Usage {
        let mut tally = replica::Writers::default();
        self.0.values().filter(|r| r.writer == writer).for_each(|r| tally.add(r));
        tally.usage(writer)
    }
}

fn keypair(i: u8) -> Keypair {
    Keypair::ed25519_from_bytes([i.wrapping_add(1); 32]).unwrap()
}

fn record(writer: &Keypair, ms: u64, value: &str) -> Record {
    Record::sign(writer, KEY.into(), Some(value.as_bytes().to_vec()), Hlc::new(ms, 0), None)
        .unwrap()
}

fn limits(local: PeerId, r: usize) -> Limits {
    let guard = Some(replica::Guard { local, nearest: replica::guard_width(r) });
    Limits {
        max_value_size: 1 << 20,
        max_records: 1000,
        max_store_bytes: 1 << 30,
        max_records_per_writer: 1000,
        max_bytes_per_writer: 1 << 30,
        guard,
    }
}

fn op_config(r: usize, w: Option<usize>, q: Option<usize>) -> OpConfig {
    OpConfig {
        replication: r,
        write_quorum: w,
        read_quorum: q,
        max_value_size: 1 << 20,
        timeout: Duration::from_secs(10),
        search_budget: (8 * r).max(16),
        mdns: false,
        bootstrap: 0,
    }
}

/// The peers, their stores, and this peer (`ids[0]`).
struct World {
    ids: Vec<PeerId>,
    local_key: Keypair,
    stores: HashMap<PeerId, Mem>,
    clock: Clock,
    rtts: Rtts,
    step: u64,
}

impl World {
    fn new(n: usize) -> Self {
        let keys: Vec<Keypair> = (0..n).map(|i| keypair(i as u8)).collect();
        let ids: Vec<PeerId> = keys.iter().map(|k| k.public().to_peer_id()).collect();
        let stores = ids.iter().map(|p| (*p, Mem::default())).collect();
        World {
            local_key: keys[0].clone(),
            ids,
            stores,
            clock: Clock::new(),
            rtts: Rtts::default(),
            step: 0,
        }
    }

    fn local(&self) -> PeerId {
        self.ids[0]
    }

    fn now(&self) -> Now {
        Now { mono: Duration::from_millis(self.step), wall_ms: BASE_MS + self.step }
    }

    /// The R peers nearest to the key in the whole universe.
    fn true_nearest(&self, r: usize) -> Vec<PeerId> {
        let mut ranked = placement::rank(KEY, self.ids.iter().copied());
        ranked.truncate(r);
        ranked
    }

    /// What `peer` answers to `request`, served by the node's own replica code; writes land.
    fn serve(&mut self, peer: PeerId, request: Request, r: usize) -> Response {
        let now = self.now();
        let others: Vec<PeerId> = self.ids.iter().copied().filter(|p| *p != peer).collect();
        let mut near = |key: &str, n: usize| {
            let mut ranked = placement::rank(key, others.iter().copied());
            ranked.truncate(n.min(r));
            replica::Near {
                peers: ranked.into_iter().map(|p| (p, Vec::new())).collect(),
                down: Vec::new(),
            }
        };
        let store = self.stores.get(&peer).cloned().unwrap_or_default();
        let served =
            replica::serve(request, peer != self.ids[0], &store, &mut near, limits(peer, r), now);
        let store = self.stores.entry(peer).or_default();
        for w in served.writes {
            store.0.insert(w.key.clone(), w);
        }
        served.response
    }
}

/// What the schedule does next.
#[derive(Debug, Clone)]
enum Step {
    Deliver(usize),
    Fail(usize),
    Duplicate(usize),
    Stranger(usize),
    /// A wake (asked for or not: a hedged get takes any as "ask one more").
    Wake,
    Deadline,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        9 => any::<usize>().prop_map(Step::Deliver),
        2 => any::<usize>().prop_map(Step::Fail),
        2 => any::<usize>().prop_map(Step::Duplicate),
        2 => any::<usize>().prop_map(Step::Stranger),
        2 => Just(Step::Wake),
        1 => Just(Step::Deadline),
    ]
}

/// Either op, to run one schedule for both.
enum Op {
    Put(PutOp),
    Get(GetOp),
}

impl Op {
    fn handle(&mut self, input: Input, env: &mut Env<'_>) -> Vec<Action> {
        match self {
            Op::Put(op) => op.handle(input, env),
            Op::Get(op) => op.handle(input, env),
        }
    }
    fn is_done(&self) -> bool {
        match self {
            Op::Put(op) => op.is_done(),
            Op::Get(op) => op.is_done(),
        }
    }
}

/// What a run saw.
#[derive(Default)]
struct Trace {
    replies: Vec<Outcome>,
    /// Every answer an asked peer gave, by peer.
    answers: HashMap<PeerId, Vec<Response>>,
    /// Peers that answered a Store with `Stored`.
    stored: HashSet<PeerId>,
    /// Repairs: to whom, what, and what that peer had answered.
    repairs: Vec<(PeerId, Record)>,
    /// Records strangers sent.
    stranger_records: Vec<Record>,
}

/// Feeds `op` the schedule, then its deadline; returns the trace.
fn run(world: &mut World, mut op: Op, first: Vec<Action>, schedule: &[Step], r: usize) -> Trace {
    let mut trace = Trace::default();
    let mut pending: Vec<(PeerId, Kind, Request)> = Vec::new();
    let mut delivered: Vec<(PeerId, Kind, Response)> = Vec::new();
    let stranger_key = keypair(200);
    let take =
        |actions: Vec<Action>, pending: &mut Vec<(PeerId, Kind, Request)>, trace: &mut Trace| {
            for a in actions {
                match a {
                    Action::Send { peer, kind, request } => pending.push((peer, kind, request)),
                    Action::Repair { peer, record } => trace.repairs.push((peer, record)),
                    Action::Learn { .. } | Action::Wake { .. } => {}
                    Action::Reply(outcome) => trace.replies.push(outcome),
                }
            }
        };
    take(first, &mut pending, &mut trace);
    let local = world.local();
    let key = world.local_key.clone();
    let feed = |world: &mut World, op: &mut Op, input: Input| -> Vec<Action> {
        world.step += 1;
        let now = world.now();
        let not_kv = |_: &PeerId| false;
        let mut env = Env {
            now,
            local,
            clock: &mut world.clock,
            keypair: &key,
            known: world.ids.len() - 1,
            not_kv: &not_kv,
            rtts: &mut world.rtts,
        };
        op.handle(input, &mut env)
    };
    for s in schedule {
        match s {
            Step::Deliver(i) if !pending.is_empty() => {
                let (peer, kind, request) = pending.remove(i % pending.len());
                let response = world.serve(peer, request, r);
                trace.answers.entry(peer).or_default().push(response.clone());
                if matches!(response, Response::Stored { .. }) && kind == Kind::Store {
                    trace.stored.insert(peer);
                }
                delivered.push((peer, kind, response.clone()));
                let actions = feed(world, &mut op, Input::Answer { peer, kind, response });
                take(actions, &mut pending, &mut trace);
            }
            Step::Fail(i) if !pending.is_empty() => {
                let (peer, kind, _) = pending.remove(i % pending.len());
                let input = Input::Failed { peer, kind, reason: "test: failed".into() };
                let actions = feed(world, &mut op, input);
                take(actions, &mut pending, &mut trace);
            }
            Step::Duplicate(i) if !delivered.is_empty() => {
                let (peer, kind, response) = delivered[i % delivered.len()].clone();
                let actions = feed(world, &mut op, Input::Answer { peer, kind, response });
                take(actions, &mut pending, &mut trace);
            }
            Step::Stranger(i) => {
                // A peer nobody asked (in the universe or not) answers with a valid record
                // newer than anything written, and names itself as the nearest peer.
                let peer =
                    if i % 2 == 0 { PeerId::random() } else { world.ids[i % world.ids.len()] };
                if pending.iter().any(|(p, _, _)| *p == peer) {
                    continue;
                }
                let rec = record(&stranger_key, BASE_MS + 90_000, "from a stranger");
                trace.stranger_records.push(rec.clone());
                let response = if i % 3 == 0 {
                    Response::Stored { version: Hlc::new(BASE_MS + 90_000, 0) }
                } else if i % 5 == 0 {
                    Response::Version {
                        held: Some(rec.stamp()),
                        near: vec![(peer, Vec::new())],
                        down: Vec::new(),
                    }
                } else {
                    Response::Found {
                        record: Some(rec),
                        near: vec![(peer, Vec::new())],
                        down: Vec::new(),
                    }
                };
                let kind = if i % 3 == 0 { Kind::Store } else { Kind::Fetch };
                let actions = feed(world, &mut op, Input::Answer { peer, kind, response });
                take(actions, &mut pending, &mut trace);
            }
            Step::Wake => {
                let actions = feed(world, &mut op, Input::Wake);
                take(actions, &mut pending, &mut trace);
            }
            Step::Deadline => {
                let actions = feed(world, &mut op, Input::Deadline);
                take(actions, &mut pending, &mut trace);
            }
            _ => {}
        }
    }
    let actions = feed(world, &mut op, Input::Deadline);
    take(actions, &mut pending, &mut trace);
    assert!(op.is_done(), "an op outlived its deadline");
    // Answers after the end change nothing.
    for (peer, kind, response) in delivered.into_iter().take(3) {
        let actions = feed(world, &mut op, Input::Answer { peer, kind, response });
        assert!(actions.is_empty(), "an op that ended still acted");
    }
    trace
}

/// A routing view that holds the R nearest (a stable overlay) and some others.
fn view(world: &World, r: usize, extra: u16) -> Vec<PeerId> {
    let local = world.local();
    let mut v: Vec<PeerId> = world.true_nearest(r).into_iter().filter(|p| *p != local).collect();
    for (i, p) in world.ids.iter().enumerate() {
        if *p != local && extra & (1 << (i % 16)) != 0 && !v.contains(p) {
            v.push(*p);
        }
    }
    v
}

fn start_get(world: &mut World, cfg: OpConfig, nearest: Vec<PeerId>) -> (GetOp, Vec<Action>) {
    world.step += 1;
    let (now, local, key) = (world.now(), world.local(), world.local_key.clone());
    let not_kv = |_: &PeerId| false;
    let known = world.ids.len() - 1;
    let mut env = Env {
        now,
        local,
        clock: &mut world.clock,
        keypair: &key,
        known,
        not_kv: &not_kv,
        rtts: &mut world.rtts,
    };
    let view = View { nearest, suspects: Vec::new(), connected: true };
    GetOp::start(KEY.into(), view, cfg, &mut env).expect("a get starts")
}

fn start_put(world: &mut World, cfg: OpConfig, nearest: Vec<PeerId>) -> (PutOp, Vec<Action>) {
    world.step += 1;
    let (now, local, key) = (world.now(), world.local(), world.local_key.clone());
    let not_kv = |_: &PeerId| false;
    let known = world.ids.len() - 1;
    let mut env = Env {
        now,
        local,
        clock: &mut world.clock,
        keypair: &key,
        known,
        not_kv: &not_kv,
        rtts: &mut world.rtts,
    };
    let value = Some(b"new value".to_vec());
    let view = View { nearest, suspects: Vec::new(), connected: true };
    PutOp::start(KEY.into(), value, None, view, cfg, &mut env).expect("a put starts")
}

fn the_get_reply(trace: &Trace) -> Option<&peerkv::Result<peerkv::GetReport>> {
    assert_eq!(trace.replies.len(), 1, "a get answers exactly once");
    match &trace.replies[0] {
        Outcome::Get(result) => Some(result),
        Outcome::Put(_) => None,
    }
}

fn the_put_reply(trace: &Trace) -> Option<&peerkv::Result<peerkv::PutReport>> {
    assert_eq!(trace.replies.len(), 1, "a put answers exactly once");
    match &trace.replies[0] {
        Outcome::Put(result) => Some(result),
        Outcome::Get(_) => None,
    }
}

/// Repairs go to peers that answered with less than the record repaired.
fn check_repairs(trace: &Trace) {
    for (peer, rec) in &trace.repairs {
        let answered =
            trace.answers.get(peer).expect("a repair went to a peer that never answered");
        for a in answered {
            let held = match a {
                Response::Found { record: Some(held), .. } => held.stamp(),
                Response::Version { held: Some(held), .. } => held.clone(),
                _ => continue,
            };
            assert_eq!(
                rec.stamp().precedence(&held),
                std::cmp::Ordering::Greater,
                "repaired a replica that held as much"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_get_never_goes_back_past_a_quorum_held_version(
        n in 2usize..10,
        r in 1usize..6,
        q in proptest::option::of(1usize..6),
        held_mask in any::<u16>(),
        old_mask in any::<u16>(),
        extra in any::<u16>(),
        schedule in proptest::collection::vec(step(), 0..60),
    ) {
        let mut world = World::new(n);
        let writer = keypair(100);
        let old = record(&writer, BASE_MS - 5_000, "old");
        let newer = record(&writer, BASE_MS - 1_000, "newer");
        for (i, p) in world.ids.clone().iter().enumerate() {
            let store = world.stores.get_mut(p).unwrap();
            if held_mask & (1 << i) != 0 {
                store.0.insert(KEY.into(), newer.clone());
            } else if old_mask & (1 << i) != 0 {
                store.0.insert(KEY.into(), old.clone());
            }
        }
        let cfg = op_config(r, None, q);
        let nearest = view(&world, r, extra);
        let window = world.true_nearest(r);
        let holders = window
            .iter()
            .filter(|p| world.stores[*p].0.get(KEY).is_some_and(|h| h.version == newer.version))
            .count();
        let needed = placement::quorum(q, r.min(n));
        let (op, first) = start_get(&mut world, cfg, nearest);
        let trace = run(&mut world, Op::Get(op), first, &schedule, r);
        if let Some(Ok(report)) = the_get_reply(&trace) {
            prop_assert!(report.replies >= report.needed);
            if let Some(rec) = &report.record {
                prop_assert!(
                    !trace.stranger_records.contains(rec),
                    "returned a record only a stranger sent"
                );
            }
            if holders + needed > window.len() {
                let got = report.record.as_ref().map(|r| r.version);
                prop_assert!(
                    got >= Some(newer.version),
                    "read back in time: got {got:?}, {holders} of {} nearest held {}",
                    window.len(),
                    newer.version
                );
            }
        }
        check_repairs(&trace);
    }

    #[test]
    fn a_put_counts_only_real_acknowledgements_and_a_get_then_sees_it(
        n in 2usize..10,
        r in 1usize..6,
        w in proptest::option::of(1usize..6),
        q in proptest::option::of(1usize..6),
        extra in any::<u16>(),
        put_schedule in proptest::collection::vec(step(), 0..60),
        get_schedule in proptest::collection::vec(step(), 0..60),
    ) {
        let mut world = World::new(n);
        let cfg = op_config(r, w, q);
        let nearest = view(&world, r, extra);
        let window = world.true_nearest(r);
        let (op, first) = start_put(&mut world, cfg.clone(), nearest.clone());
        let trace = run(&mut world, Op::Put(op), first, &put_schedule, r);
        let Some(Ok(report)) = the_put_reply(&trace) else { return Ok(()) };
        prop_assert!(report.acked >= report.needed, "{report:?}");
        prop_assert_eq!(report.acked, report.stored_on.len());
        let distinct: HashSet<_> = report.stored_on.iter().collect();
        prop_assert_eq!(distinct.len(), report.stored_on.len(), "an acknowledgement counted twice");
        for p in &report.stored_on {
            prop_assert!(trace.stored.contains(p), "counted {p} which never stored");
            prop_assert!(window.contains(p), "counted {p}, not one of the R nearest");
            let held = world.stores[p].0.get(KEY).map(|h| h.version);
            prop_assert!(held >= Some(report.version));
        }
        // A get after it, with the same settings, whatever fails.
        let put_needed = report.needed;
        let (op, first) = start_get(&mut world, cfg, nearest);
        let trace = run(&mut world, Op::Get(op), first, &get_schedule, r);
        if let Some(Ok(got)) = the_get_reply(&trace) {
            if put_needed + got.needed > window.len() {
                let version = got.record.as_ref().map(|r| r.version);
                prop_assert!(
                    version >= Some(report.version),
                    "an acknowledged put was not seen: got {version:?}, put {} (W {put_needed}, Q {})",
                    report.version,
                    got.needed
                );
            }
        }
        check_repairs(&trace);
    }
}
