//! One system, measured: start N peers, let the overlay settle, run the phases, read memory.
//! Runs inside a child process of its own (see `child.rs`), so the process-wide figures (RSS,
//! CPU time, loopback counters) belong to this system alone.

use std::cell::RefCell;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use libp2p::{Multiaddr, PeerId};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};

use crate::peer::{designated_holders, Peer, PeerParams, System};
use crate::report::{Latency, Memory, Phase, RoundTrips, Settle, Startup, SystemResult};
use crate::sys::{self, Wire};

/// Most peers started (and bootstrapped) at once.
const WAVE_MAX: usize = 50;
/// Bootstrap attempts per peer, each through another earlier peer.
const BOOTSTRAP_TRIES: usize = 3;
/// How often the overlay is looked at while it settles.
const SETTLE_POLL: Duration = Duration::from_millis(500);
/// Polls in a row without change that count as settled (3 s).
const SETTLE_STREAK: usize = 6;
/// The one-hop views count as settled when they grew by fewer than N / 20 entries in all over
/// this many polls (10 s: two rounds of the members exchange while views grow).
const VIEW_POLLS: usize = 20;
/// Candidates checked for "holds no copy" per key.
const GETTER_TRIES: usize = 6;
/// Longest wait for descriptors to drop below the high-water mark before going on anyway.
const PACE_MAX: Duration = Duration::from_secs(60);
/// How often the descriptor sampler looks.
const FD_SAMPLE: Duration = Duration::from_millis(250);
/// Distinct errors kept per phase.
const ERRORS_KEPT: usize = 5;
/// Longest wait for all peers to shut down.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(20);

/// What one child run does.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The system measured.
    pub system: System,
    /// Peers (N).
    pub nodes: usize,
    /// Keys (K).
    pub keys: usize,
    /// Gets in flight at once in the concurrent phase (C).
    pub concurrency: usize,
    /// Gets in the concurrent phase.
    pub concurrent_ops: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Settings of the peers.
    pub peer: PeerParams,
    /// W: acknowledgements a put waits for (libp2p-kad's `Quorum::N`).
    pub write_quorum: NonZeroUsize,
    /// Longest wait for the overlay to settle.
    pub settle_timeout: Duration,
    /// Open descriptors above which new work waits for idle connections to close.
    pub fd_high_water: usize,
    /// Whether this process has a network namespace of its own.
    pub isolated: bool,
    /// How long idle traffic is measured once settled.
    pub idle_window: Duration,
}

/// The RNG of key `i` (a stream of its own, so one key's choices never shift another's).
fn key_rng(seed: u64, salt: u64, i: usize) -> StdRng {
    StdRng::seed_from_u64(seed ^ salt ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

const SALT_CHOICE: u64 = 0x6368_6f69_6365;
const SALT_VALUE: u64 = 0x0076_616c_7565;
const SALT_TREE: u64 = 0x7472_6565;
const SALT_CONCURRENT: u64 = 0x636f_6e63;

/// Samples the open-descriptor count in the background, so pacing costs no syscalls per op.
#[derive(Clone)]
struct FdGauge(Arc<AtomicUsize>);

impl FdGauge {
    fn start() -> (Self, tokio::task::JoinHandle<()>) {
        let gauge = FdGauge(Arc::new(AtomicUsize::new(sys::open_fds().unwrap_or(0))));
        let inner = gauge.0.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(FD_SAMPLE);
            loop {
                tick.tick().await;
                inner.store(sys::open_fds().unwrap_or(0), Ordering::Relaxed);
            }
        });
        (gauge, task)
    }

    /// Waits (at most [`PACE_MAX`]) while descriptors are above `high`; returns seconds waited.
    async fn pace(&self, high: usize) -> f64 {
        let start = Instant::now();
        while self.0.load(Ordering::Relaxed) > high && start.elapsed() < PACE_MAX {
            tokio::time::sleep(FD_SAMPLE).await;
        }
        start.elapsed().as_secs_f64()
    }
}

/// Process-wide counters at the start of a phase.
struct Meter {
    started: Instant,
    cpu: Option<f64>,
    wire: Option<Wire>,
}

impl Meter {
    fn start() -> Self {
        Self { started: Instant::now(), cpu: sys::cpu_seconds(), wire: sys::loopback() }
    }
}

/// Results of one phase as they come in.
#[derive(Default)]
struct Acc {
    ops: usize,
    ok: usize,
    latencies: Vec<f64>,
    requests: Vec<u32>,
    hops: Vec<u8>,
    /// Network get latencies by the hops the get took.
    by_hops: std::collections::BTreeMap<u8, Vec<f64>>,
    replicas: Vec<usize>,
    local_hits: usize,
    evicted: usize,
    /// Gets answered with fewer records than the read quorum (the query ended first).
    below_quorum: usize,
    throttled_s: f64,
    errors: Vec<String>,
}

impl Acc {
    /// Counts one put that took `ms` (and waited `throttled` s for descriptors); whether it
    /// succeeded.
    fn put(
        &mut self,
        result: Result<Result<crate::peer::PutOut, String>, tokio::time::error::Elapsed>,
        ms: f64,
        throttled: f64,
        limit: Duration,
    ) -> bool {
        self.ops += 1;
        self.throttled_s += throttled;
        match result {
            Ok(Ok(out)) => {
                self.ok += 1;
                self.latencies.push(ms);
                self.requests.extend(out.requests);
                self.replicas.extend(out.replicas);
                true
            }
            Ok(Err(e)) => {
                self.error(e);
                false
            }
            Err(_) => {
                self.error(format!("no answer within {:.0} s", limit.as_secs_f64()));
                false
            }
        }
    }

    fn error(&mut self, e: String) {
        if self.errors.len() < ERRORS_KEPT && !self.errors.contains(&e) {
            self.errors.push(e);
        }
    }

    fn mean<T: Copy + Into<f64>>(v: &[T]) -> Option<f64> {
        (!v.is_empty()).then(|| v.iter().map(|x| (*x).into()).sum::<f64>() / v.len() as f64)
    }

    fn finish(mut self, meter: &Meter, concurrency: usize, w: &Workload, bg: Option<f64>) -> Phase {
        let seconds = meter.started.elapsed().as_secs_f64();
        let per_op = |x: f64| (self.ops > 0).then(|| x / self.ops as f64);
        let cpu = match (meter.cpu, sys::cpu_seconds()) {
            (Some(a), Some(b)) => per_op(b - a),
            _ => None,
        };
        let wire = match (w.isolated, meter.wire, sys::loopback()) {
            (true, Some(a), Some(b)) => Some((b.bytes - a.bytes, b.packets - a.packets)),
            _ => None,
        };
        let replicas: Vec<f64> = self.replicas.iter().map(|r| *r as f64).collect();
        let latency = Latency::of(&mut self.latencies);
        // A round trip of the emulated link is twice its one-way delay; none without one.
        let rtt_ms = 2.0 * w.peer.link_delay.as_secs_f64() * 1000.0;
        Phase {
            ops: self.ops,
            ok: self.ok,
            success_rate: (self.ops > 0).then(|| self.ok as f64 / self.ops as f64),
            round_trips: RoundTrips::of(&latency, rtt_ms),
            latency,
            concurrency,
            seconds,
            ops_per_s: (seconds > 0.0 && self.ops > 0).then(|| self.ok as f64 / seconds),
            local_hits: self.local_hits,
            evicted: self.evicted,
            below_quorum: self.below_quorum,
            requests_per_op: Self::mean(&self.requests),
            hops_per_op: Self::mean(&self.hops),
            hops_max: self.hops.iter().max().copied(),
            latency_by_hops: std::mem::take(&mut self.by_hops)
                .into_iter()
                .map(|(h, mut ms)| (h, Latency::of(&mut ms)))
                .collect(),
            replicas_per_op: Self::mean(&replicas),
            cpu_s_per_op: cpu,
            wire_packets_per_op: wire.and_then(|(_, p)| per_op(p as f64)),
            wire_bytes_per_op: wire.and_then(|(b, _)| per_op(b as f64)),
            wire_bytes_per_op_net: wire
                .and_then(|(b, _)| per_op((b as f64 - bg.unwrap_or(0.0) * seconds).max(0.0))),
            throttled_s: self.throttled_s,
            errors: self.errors,
        }
    }
}

/// Which peers play which part for one key.
#[derive(Debug, Clone, Default)]
struct KeyPlan {
    putter: usize,
    put_ok: bool,
    /// Peers checked to hold no copy (a copy evicted first counts: see `evicted`).
    getters: Vec<usize>,
    /// Whether the getter's copy was evicted to get one.
    evicted: bool,
    /// A peer that holds a copy.
    holder: Option<usize>,
}

fn progress(system: System, len: u64) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{prefix:>7} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
    {
        pb.set_style(style);
    }
    pb.set_prefix(system.name());
    pb
}

fn say(pb: &ProgressBar, line: String) {
    pb.suspend(|| eprintln!("{line}"));
}

fn fmt_phase(name: &str, p: &Phase) -> String {
    let f = |v: Option<f64>| v.map_or_else(|| "–".into(), |v| format!("{v:.2}"));
    format!(
        "  {name}: {}/{} ok, median {} ms, p99 {} ms, max {} ms{}",
        p.ok,
        p.ops,
        f(p.latency.median_ms),
        f(p.latency.p99_ms),
        f(p.latency.max_ms),
        p.errors.first().map_or_else(String::new, |e| format!(" (e.g. {e})"))
    )
}

/// A deadline for one harness call: the system's own deadline plus slack.
fn op_deadline(w: &Workload) -> Duration {
    w.peer.op_timeout + Duration::from_secs(5)
}

async fn spawn_peers(
    w: &Workload,
    fds: &FdGauge,
    pb: &ProgressBar,
) -> Result<(Vec<Peer>, Startup), String> {
    let started = Instant::now();
    let mut tree = StdRng::seed_from_u64(w.seed ^ SALT_TREE);
    let (first, first_addr) = Peer::spawn(w.system, &w.peer).await?;
    let mut peers = vec![first];
    let mut addrs: Vec<Multiaddr> = vec![first_addr];
    let mut startup = Startup::default();
    pb.inc(1);
    while peers.len() < w.nodes {
        startup.throttled_s += fds.pace(w.fd_high_water).await;
        let have = peers.len();
        let wave = WAVE_MAX.min(have).min(w.nodes - have);
        // Each new peer joins through random peers started before this wave: a random tree.
        let via: Vec<Vec<usize>> = (0..wave)
            .map(|_| (0..BOOTSTRAP_TRIES).map(|_| tree.gen_range(0..have)).collect())
            .collect();
        let addrs_ref = &addrs;
        let results = join_all(via.into_iter().map(|tries| async move {
            let (peer, addr) = Peer::spawn(w.system, &w.peer).await?;
            let mut joined = false;
            for t in tries {
                let attempt =
                    tokio::time::timeout(op_deadline(w), peer.bootstrap(addrs_ref[t].clone()));
                if let Ok(Ok(())) = attempt.await {
                    joined = true;
                    break;
                }
            }
            Ok::<_, String>((peer, addr, joined))
        }))
        .await;
        for r in results {
            let (peer, addr, joined) = r?;
            if !joined {
                startup.bootstrap_failures += 1;
            }
            peers.push(peer);
            addrs.push(addr);
            pb.inc(1);
        }
    }
    startup.seconds = started.elapsed().as_secs_f64();
    Ok((peers, startup))
}

/// The overlay summed over the peers that answered.
struct Totals {
    /// Routing-table entries in all.
    routing: usize,
    /// The smallest routing table.
    routing_min: usize,
    /// Members of the one-hop views in all (peerkv; libp2p-kad's routing table).
    members: usize,
    /// Open connections.
    connections: usize,
    /// Connections opened since the start.
    opened: u64,
    /// Lookups running.
    lookups: usize,
    /// Peers that answered.
    answered: usize,
}

async fn overlay(peers: &[Peer]) -> Totals {
    let infos = join_all(peers.iter().map(|p| p.overlay())).await;
    let ok: Vec<_> = infos.into_iter().filter_map(Result::ok).collect();
    let connected: usize = ok.iter().map(|o| o.connected).sum();
    Totals {
        routing: ok.iter().map(|o| o.routing_table).sum(),
        routing_min: ok.iter().map(|o| o.routing_table).min().unwrap_or(0),
        members: ok.iter().map(|o| o.members).sum(),
        // Each connection is counted at both ends.
        connections: connected / 2,
        opened: ok.iter().map(|o| o.opened).sum::<u64>() / 2,
        lookups: ok.iter().map(|o| o.lookups).sum(),
        answered: ok.len(),
    }
}

/// Waits until the overlay settled: routing-table and one-hop-view sizes unchanged, (almost) no
/// Kademlia lookup running and (almost) no connection opened for [`SETTLE_STREAK`] polls in a
/// row — the members exchanges have spread the news of the last joiners, the
/// bootstraps' bucket refreshes are over (a bootstrap runs one lookup per bucket, one after
/// another; N of them at once keep the two cores busy for a while); idle connections closing
/// does not count. Then measures the idle background traffic for `idle_window`.
async fn settle(w: &Workload, peers: &[Peer], pb: &ProgressBar) -> Settle {
    let start = Instant::now();
    let mut last: Option<(usize, u64)> = None;
    let mut views: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    let mut streak = 0;
    let mut base = Instant::now();
    let mut out = Settle::default();
    loop {
        let Totals {
            routing: total,
            routing_min: min,
            members,
            connections,
            opened,
            lookups,
            answered,
        } = overlay(peers).await;
        let now = Instant::now();
        let close = |a: usize, b: usize| a.abs_diff(b) <= (b / 200).max(1);
        // Idle connections closing is no change: only new ones (lookups still running) are.
        // A few per poll are allowed (a ping that failed, a peer redialed).
        let few = (peers.len() / 50).max(1);
        let quiet = |o: u64| opened.saturating_sub(o) <= few as u64;
        views.push_back(members);
        if views.len() > VIEW_POLLS + 1 {
            views.pop_front();
        }
        let views_settled = views.len() > VIEW_POLLS
            && views
                .front()
                .is_some_and(|then| members.saturating_sub(*then) < few.max(peers.len() / 20));
        let stable = lookups <= few
            && views_settled
            && last.is_some_and(|(t, o)| close(total, t) && quiet(o));
        if stable {
            streak += 1;
        } else {
            streak = 0;
            base = now;
        }
        last = Some((total, opened));
        out.routing_table_mean = total as f64 / answered.max(1) as f64;
        out.members_mean = members as f64 / answered.max(1) as f64;
        out.routing_table_min = min;
        out.connections = connections;
        pb.set_message(format!(
            "settling: routing tables {:.1}, views {:.1} on average, {connections} connections, {lookups} lookups",
            out.routing_table_mean, out.members_mean
        ));
        if streak >= SETTLE_STREAK {
            out.settled = true;
            break;
        }
        if now.duration_since(start) >= w.settle_timeout {
            break;
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
    out.seconds = base.duration_since(start).as_secs_f64();
    if w.isolated {
        pb.set_message("measuring idle traffic");
        let before = (Instant::now(), sys::loopback());
        tokio::time::sleep(w.idle_window).await;
        let idle = before.0.elapsed().as_secs_f64();
        if let (Some(a), Some(b)) = (before.1, sys::loopback()) {
            out.background_bytes_per_s = Some((b.bytes - a.bytes) as f64 / idle);
            out.background_packets_per_s = Some((b.packets - a.packets) as f64 / idle);
        }
    }
    out
}

/// Picks, for each key, peers that hold no copy (the getters) and one that does.
async fn choose(w: &Workload, peers: &[Peer], keys: &[String], plans: &mut [KeyPlan]) {
    let ids: Vec<PeerId> = peers.iter().map(Peer::peer_id).collect();
    for (i, (key, plan)) in keys.iter().zip(plans.iter_mut()).enumerate() {
        let mut rng = key_rng(w.seed, SALT_CHOICE ^ 1, i);
        let designated = designated_holders(w.system, key, &ids, &w.peer);
        let mut candidates: Vec<usize> =
            (0..peers.len()).filter(|j| *j != plan.putter && !designated.contains(j)).collect();
        candidates.shuffle(&mut rng);
        for j in candidates.into_iter().take(GETTER_TRIES) {
            if let Ok(false) = peers[j].holds(key).await {
                plan.getters.push(j);
            }
        }
        if plan.getters.is_empty() {
            // Every peer is a designated holder (libp2p-kad at N ≤ its replication factor):
            // remove one peer's copy so its get takes the network path.
            let mut others: Vec<usize> = (0..peers.len()).filter(|j| *j != plan.putter).collect();
            others.shuffle(&mut rng);
            for j in others.into_iter().take(GETTER_TRIES) {
                match peers[j].holds(key).await {
                    Ok(false) => plan.getters.push(j),
                    Ok(true) => {
                        if let Some(Ok(_)) = peers[j].evict(key).await {
                            plan.getters.push(j);
                            plan.evicted = true;
                        }
                    }
                    Err(_) => {}
                }
                if !plan.getters.is_empty() {
                    break;
                }
            }
        }
        // A holder: the putter when it kept a copy, else a designated holder that has one.
        for j in std::iter::once(plan.putter).chain(designated) {
            if let Ok(true) = peers[j].holds(key).await {
                plan.holder = Some(j);
                break;
            }
        }
    }
}

/// Runs one timed get and records it.
async fn timed_get(peer: &Peer, key: &str, want: &[u8], limit: Duration, acc: &RefCell<Acc>) {
    let t = Instant::now();
    let result = tokio::time::timeout(limit, peer.get(key)).await;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    let mut acc = acc.borrow_mut();
    acc.ops += 1;
    match result {
        Ok(Ok(out)) if out.value.as_deref() == Some(want) => {
            acc.ok += 1;
            if out.short {
                acc.below_quorum += 1;
            }
            if out.local {
                // A local read is no network get: counted apart, not in the latencies.
                acc.local_hits += 1;
            } else {
                acc.latencies.push(ms);
                if let Some(h) = out.hops {
                    acc.by_hops.entry(h).or_default().push(ms);
                }
            }
            acc.requests.extend(out.requests);
            acc.hops.extend(out.hops);
            acc.replicas.extend(out.replicas);
        }
        Ok(Ok(out)) => {
            let what = if out.value.is_some() { "a different value" } else { "not found" };
            acc.error(format!("get returned {what}"));
        }
        Ok(Err(e)) => acc.error(e),
        Err(_) => acc.error(format!("no answer within {:.0} s", limit.as_secs_f64())),
    }
}

/// Measures `w.system` end to end.
///
/// # Errors
/// When a peer cannot start; every failed operation is counted instead.
pub async fn run(w: &Workload) -> Result<SystemResult, String> {
    let k = w.keys;
    let len = (w.nodes + 4 * k + 2 * w.concurrent_ops) as u64;
    let pb = progress(w.system, len);
    let (fds, sampler) = FdGauge::start();
    let mut result = SystemResult {
        system: w.system.name().into(),
        read_quorum: Some(w.system.read_quorum(w.peer.read_quorum).get()),
        nodes: w.nodes,
        isolated_network: w.isolated,
        ..SystemResult::default()
    };
    let rss_before = sys::rss_bytes();
    result.load_average[0] = sys::load_average();

    pb.set_message("starting peers");
    let (peers, startup) = spawn_peers(w, &fds, &pb).await?;
    result.startup = startup;
    say(
        &pb,
        format!(
            "{}: {} peers started in {:.1} s ({} bootstrap failures)",
            w.system.name(),
            w.nodes,
            result.startup.seconds,
            result.startup.bootstrap_failures
        ),
    );

    result.settle = settle(w, &peers, &pb).await;
    let rss_settled = sys::rss_bytes();
    let fds_settled = sys::open_fds();
    say(&pb, format!(
        "{}: settled={} after {:.1} s: routing tables {:.1} on average (min {}), views {:.1}, {} connections, RSS {:.1} MiB",
        w.system.name(),
        result.settle.settled,
        result.settle.seconds,
        result.settle.routing_table_mean,
        result.settle.routing_table_min,
        result.settle.members_mean,
        result.settle.connections,
        rss_settled.unwrap_or(0) as f64 / 1048576.0
    ));
    let bg = result.settle.background_bytes_per_s;

    let keys: Vec<String> = (0..k).map(|i| format!("bench-{}-{i}", w.seed)).collect();
    let values: Vec<Vec<u8>> = (0..k)
        .map(|i| {
            let mut v = vec![0u8; w.peer.value_size];
            key_rng(w.seed, SALT_VALUE, i).fill_bytes(&mut v);
            v
        })
        .collect();
    let mut plans: Vec<KeyPlan> = (0..k)
        .map(|i| KeyPlan {
            putter: key_rng(w.seed, SALT_CHOICE, i).gen_range(0..w.nodes),
            ..KeyPlan::default()
        })
        .collect();
    let limit = op_deadline(w);

    // Puts, one at a time.
    pb.set_message("puts");
    let acc = RefCell::new(Acc::default());
    let meter = Meter::start();
    for (i, plan) in plans.iter_mut().enumerate() {
        let throttled = fds.pace(w.fd_high_water).await;
        let t = Instant::now();
        let result = tokio::time::timeout(
            limit,
            peers[plan.putter].put(&keys[i], &values[i], w.write_quorum),
        )
        .await;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if acc.borrow_mut().put(result, ms, throttled, limit) {
            plan.put_ok = true;
        }
        pb.inc(1);
    }
    result.put = acc.into_inner().finish(&meter, 1, w, bg);
    say(&pb, fmt_phase("put", &result.put));

    // Who gets what (not timed): a peer without a copy, and one with.
    pb.set_message("choosing getters");
    choose(w, &peers, &keys, &mut plans).await;

    // Gets from peers without a copy, one at a time.
    pb.set_message("gets");
    let acc = RefCell::new(Acc::default());
    let meter = Meter::start();
    for (i, plan) in plans.iter().enumerate() {
        acc.borrow_mut().throttled_s += fds.pace(w.fd_high_water).await;
        match plan.getters.first() {
            Some(g) => {
                timed_get(&peers[*g], &keys[i], &values[i], limit, &acc).await;
                if plan.evicted {
                    acc.borrow_mut().evicted += 1;
                }
            }
            None => {
                let mut a = acc.borrow_mut();
                a.ops += 1;
                a.error("no peer without a copy to get from".into());
            }
        }
        pb.inc(1);
    }
    result.get = acc.into_inner().finish(&meter, 1, w, bg);
    say(&pb, fmt_phase("get (no local copy)", &result.get));

    // Gets from a peer that holds a copy: a local read for libp2p-kad, reported apart.
    pb.set_message("gets from holders");
    let acc = RefCell::new(Acc::default());
    let meter = Meter::start();
    for (i, plan) in plans.iter().enumerate() {
        if let Some(h) = plan.holder {
            acc.borrow_mut().throttled_s += fds.pace(w.fd_high_water).await;
            timed_get(&peers[h], &keys[i], &values[i], limit, &acc).await;
        }
        pb.inc(1);
    }
    result.get_from_holder = acc.into_inner().finish(&meter, 1, w, bg);
    say(&pb, fmt_phase("get from a holder", &result.get_from_holder));

    // Lookups alone, from the same getters.
    pb.set_message("lookups");
    let acc = RefCell::new(Acc::default());
    let meter = Meter::start();
    for (i, plan) in plans.iter().enumerate() {
        if let Some(g) = plan.getters.first() {
            let throttled = fds.pace(w.fd_high_water).await;
            let t = Instant::now();
            let result = tokio::time::timeout(limit, peers[*g].lookup(&keys[i])).await;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            let mut a = acc.borrow_mut();
            a.ops += 1;
            a.throttled_s += throttled;
            match result {
                Ok(Ok(out)) if out.peers > 0 => {
                    a.ok += 1;
                    a.latencies.push(ms);
                    a.requests.extend(out.requests);
                }
                Ok(Ok(_)) => a.error("the lookup found no peer".into()),
                Ok(Err(e)) => a.error(e),
                Err(_) => a.error(format!("no answer within {:.0} s", limit.as_secs_f64())),
            }
        }
        pb.inc(1);
    }
    result.lookup = acc.into_inner().finish(&meter, 1, w, bg);
    say(&pb, fmt_phase("lookup", &result.lookup));

    // Concurrent gets from peers without a copy.
    pb.set_message(format!("concurrent gets (C = {})", w.concurrency));
    let gettable: Vec<usize> = (0..k).filter(|i| !plans[*i].getters.is_empty()).collect();
    let mut rng = key_rng(w.seed, SALT_CONCURRENT, 0);
    let jobs: Vec<(usize, usize)> = if gettable.is_empty() {
        Vec::new()
    } else {
        (0..w.concurrent_ops)
            .filter_map(|_| {
                let i = *gettable.choose(&mut rng)?;
                Some((i, *plans[i].getters.choose(&mut rng)?))
            })
            .collect()
    };
    let acc = RefCell::new(Acc::default());
    let meter = Meter::start();
    let (acc_ref, peers_ref, keys_ref, values_ref, fds_ref, pb_ref) =
        (&acc, &peers, &keys, &values, &fds, &pb);
    futures::stream::iter(jobs)
        .for_each_concurrent(w.concurrency.max(1), |(i, g)| async move {
            let throttled = fds_ref.pace(w.fd_high_water).await;
            acc_ref.borrow_mut().throttled_s += throttled;
            timed_get(&peers_ref[g], &keys_ref[i], &values_ref[i], limit, acc_ref).await;
            pb_ref.inc(1);
        })
        .await;
    result.concurrent_get = acc.into_inner().finish(&meter, w.concurrency, w, bg);
    say(
        &pb,
        format!(
            "{} — {:.0} ops/s",
            fmt_phase("concurrent get", &result.concurrent_get),
            result.concurrent_get.ops_per_s.unwrap_or(0.0)
        ),
    );

    // Concurrent puts of new keys from random peers (with --durable each is committed to
    // disk on W replicas before it counts).
    pb.set_message(format!("concurrent puts (C = {})", w.concurrency));
    let mut rng = key_rng(w.seed, SALT_CONCURRENT, 1);
    let puts: Vec<(String, Vec<u8>, usize)> = (0..w.concurrent_ops)
        .map(|i| {
            let mut value = vec![0u8; w.peer.value_size];
            rng.fill_bytes(&mut value);
            (format!("bench-{}-c{i}", w.seed), value, rng.gen_range(0..w.nodes))
        })
        .collect();
    let acc = RefCell::new(Acc::default());
    let meter = Meter::start();
    let (acc_ref, peers_ref, fds_ref, pb_ref) = (&acc, &peers, &fds, &pb);
    futures::stream::iter(puts)
        .for_each_concurrent(w.concurrency.max(1), |(key, value, putter)| async move {
            let throttled = fds_ref.pace(w.fd_high_water).await;
            let t = Instant::now();
            let result =
                tokio::time::timeout(limit, peers_ref[putter].put(&key, &value, w.write_quorum))
                    .await;
            let ms = t.elapsed().as_secs_f64() * 1000.0;
            acc_ref.borrow_mut().put(result, ms, throttled, limit);
            pb_ref.inc(1);
        })
        .await;
    result.concurrent_put = acc.into_inner().finish(&meter, w.concurrency, w, bg);
    let counters = join_all(peers.iter().map(Peer::store_counters)).await;
    if counters.iter().any(Option::is_some) {
        result.store_commits = Some(counters.iter().flatten().map(|c| c.0).sum());
        result.records_committed = Some(counters.iter().flatten().map(|c| c.1).sum());
    }
    say(
        &pb,
        format!(
            "{} — {:.0} ops/s; store: {} commits for {} records",
            fmt_phase("concurrent put", &result.concurrent_put),
            result.concurrent_put.ops_per_s.unwrap_or(0.0),
            result.store_commits.unwrap_or(0),
            result.records_committed.unwrap_or(0)
        ),
    );

    let connections = overlay(&peers).await.connections;
    let rss_after = sys::rss_bytes();
    let n = w.nodes.max(1) as u64;
    result.memory = Memory {
        rss_before_peers_bytes: rss_before,
        rss_after_settle_bytes: rss_settled,
        rss_after_workload_bytes: rss_after,
        rss_per_peer_after_settle_bytes: rss_settled.map(|r| r / n),
        rss_per_peer_after_workload_bytes: rss_after.map(|r| r / n),
        peak_rss_bytes: sys::peak_rss_bytes(),
        open_fds_after_settle: fds_settled,
        open_fds_after_workload: sys::open_fds(),
        connections_after_workload: connections,
    };
    result.not_measured = not_measured(w);
    result.load_average[1] = sys::load_average();
    pb.finish_and_clear();

    sampler.abort();
    let _ = tokio::time::timeout(SHUTDOWN_WAIT, join_all(peers.iter().map(Peer::shutdown))).await;
    Ok(result)
}

fn not_measured(w: &Workload) -> Vec<String> {
    let mut out = vec![
        "lookup hops: libp2p-kad's QueryStats counts requests, not hops; peerkv reports them for gets (hops_per_op), not for its put's libp2p-kad lookup".to_owned(),
    ];
    match w.system {
        System::Peerkv | System::PeerkvQ1 => out.push(
            "requests_per_op of puts and lookups: peerkv's API reports the Fetch requests of a get (requests_per_op of gets), not the Kademlia requests of a put's lookup; the kad system's lookup row is the same libp2p-kad lookup on default settings".into(),
        ),
        System::Kad | System::KadQ3 => out.push(
            "replicas_per_op: libp2p-kad reports requests (requests_per_op), not which peers stored or answered".into(),
        ),
    }
    if w.system == System::KadQ3 {
        out.push(
            "versions: libp2p-kad records carry none, so a kad-q3 get answers with the value most of its Q peers returned (the first found among equals), not the newest; each key is put once here, so they agree".into(),
        );
    }
    if !w.isolated {
        out.push(
            "wire_* and background_*: no network namespace of its own (needs root, unshare(1) and ip(8)), so the loopback counters would count other processes' traffic too".into(),
        );
    }
    out
}
