//! The result document (JSON), its Markdown tables and the SVG plot of get latency against N.
//!
//! Every field is always present; a figure that could not be measured is `null`, and the
//! document's `not_measured` list says why. Fields added after the first layout carry
//! `#[serde(default)]`, so older documents still read.
//!
//! Layout: this file (one run's document, ratios and the pairs compared), `merge.rs` (runs of
//! several seeds: grouping, medians and spreads, the merged document), `table.rs` (Markdown),
//! `plot.rs` (SVG).

mod merge;
mod plot;
mod table;

use serde::{Deserialize, Serialize};

pub use merge::{merge, MergedDoc, MERGED_SCHEMA};
pub use plot::plot;
pub use table::{markdown, markdown_all, markdown_merged};

/// Version tag of the document layout.
pub const SCHEMA: &str = "peerkv-bench/1";

/// Latency distribution of one kind of operation, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Successful operations measured.
    pub samples: usize,
    /// Median.
    pub median_ms: Option<f64>,
    /// 95th percentile (nearest rank).
    pub p95_ms: Option<f64>,
    /// 99th percentile (nearest rank).
    pub p99_ms: Option<f64>,
    /// Slowest.
    pub max_ms: Option<f64>,
    /// Mean.
    pub mean_ms: Option<f64>,
}

impl Latency {
    /// Summarises `ms` (sorted in place).
    pub fn of(ms: &mut [f64]) -> Self {
        ms.sort_by(f64::total_cmp);
        let n = ms.len();
        let rank = |p: f64| -> Option<f64> {
            if n == 0 {
                return None;
            }
            // Nearest rank: the smallest value with at least p of the samples at or below it.
            let idx = ((p * n as f64).ceil() as usize).clamp(1, n) - 1;
            ms.get(idx).copied()
        };
        Self {
            samples: n,
            median_ms: rank(0.50),
            p95_ms: rank(0.95),
            p99_ms: rank(0.99),
            max_ms: ms.last().copied(),
            mean_ms: (n > 0).then(|| ms.iter().sum::<f64>() / n as f64),
        }
    }
}

/// A phase's latency in round trips of the emulated link (`--link-delay`): each figure of its
/// `latency` divided by the round trip, twice the link delay. Round trips are what a protocol
/// decides; the milliseconds on top are the machine's (CPU, queueing, timers).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RoundTrips {
    /// The round trip of the emulated link, ms: twice `params.link_delay_ms`.
    pub rtt_ms: f64,
    /// Median latency / RTT.
    pub median: Option<f64>,
    /// 95th percentile / RTT.
    pub p95: Option<f64>,
    /// 99th percentile / RTT.
    pub p99: Option<f64>,
    /// Slowest / RTT.
    pub max: Option<f64>,
    /// Mean / RTT.
    pub mean: Option<f64>,
}

impl RoundTrips {
    /// `latency` in round trips of `rtt_ms`; `None` without a positive round trip.
    pub fn of(latency: &Latency, rtt_ms: f64) -> Option<Self> {
        if !(rtt_ms.is_finite() && rtt_ms > 0.0) {
            return None;
        }
        let per = |v: Option<f64>| v.map(|ms| ms / rtt_ms);
        Some(Self {
            rtt_ms,
            median: per(latency.median_ms),
            p95: per(latency.p95_ms),
            p99: per(latency.p99_ms),
            max: per(latency.max_ms),
            mean: per(latency.mean_ms),
        })
    }
}

/// One phase of the workload.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Phase {
    /// Operations started.
    pub ops: usize,
    /// Operations that succeeded (a get: returned the value that was put).
    pub ok: usize,
    /// `ok / ops`.
    pub success_rate: Option<f64>,
    /// Latency of the successful operations, timed by the harness around the library call.
    pub latency: Latency,
    /// `latency` in round trips of the emulated link; `null` without `--link-delay` (and in
    /// documents from before it).
    #[serde(default)]
    pub round_trips: Option<RoundTrips>,
    /// Operations in flight at once (1: one after another).
    pub concurrency: usize,
    /// Wall time of the phase.
    pub seconds: f64,
    /// Operations per second of wall time.
    pub ops_per_s: Option<f64>,
    /// Gets answered from the getter's own store (no network).
    pub local_hits: usize,
    /// Gets whose getter held a copy that the harness removed first so the get takes the
    /// network path (libp2p-kad stores on its replication factor's closest peers: at small N,
    /// on every peer).
    pub evicted: usize,
    /// Gets answered with fewer records than their read quorum because the query ended first
    /// (`kad-q3`); counted among the successes when the value was right.
    #[serde(default)]
    pub below_quorum: usize,
    /// Requests the origin sent per operation, where the system reports them (libp2p-kad's
    /// `QueryStats::num_requests`: lookup and value requests together).
    pub requests_per_op: Option<f64>,
    /// Round trips on the longest path to the answer, mean over operations, where the system
    /// reports it (peerkv's gets).
    pub hops_per_op: Option<f64>,
    /// The most round trips one operation took.
    pub hops_max: Option<u8>,
    /// Latency of the network gets by the round trips they took, where the system reports
    /// hops: `(hops, latency)`, fewest first.
    #[serde(default)]
    pub latency_by_hops: Vec<(u8, Latency)>,
    /// Replicas asked per operation, where the system reports it (peerkv's reports).
    pub replicas_per_op: Option<f64>,
    /// CPU seconds of the whole process during the phase, per operation.
    pub cpu_s_per_op: Option<f64>,
    /// Packets the loopback interface carried during the phase, per operation.
    pub wire_packets_per_op: Option<f64>,
    /// Bytes (IP packets with headers) the loopback interface carried during the phase, per
    /// operation.
    pub wire_bytes_per_op: Option<f64>,
    /// `wire_bytes_per_op` less the idle background traffic (pings, identify, keep-alive
    /// redials) measured while the overlay settled.
    pub wire_bytes_per_op_net: Option<f64>,
    /// Seconds spent waiting for idle connections to close before starting operations, to
    /// stay under the open-files limit.
    pub throttled_s: f64,
    /// The first few distinct errors.
    pub errors: Vec<String>,
}

/// How the peers were started.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Startup {
    /// From the first spawn to the last peer's bootstrap answer.
    pub seconds: f64,
    /// Peers whose bootstrap failed three times (they run on without it).
    pub bootstrap_failures: usize,
    /// Seconds spent waiting for idle connections to close between waves of spawns.
    pub throttled_s: f64,
}

/// How the overlay settled after start-up.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Settle {
    /// From the end of start-up until routing tables stopped changing.
    pub seconds: f64,
    /// Whether they stopped changing before the settle timeout.
    pub settled: bool,
    /// Mean routing-table size once settled.
    pub routing_table_mean: f64,
    /// Smallest routing table once settled.
    pub routing_table_min: usize,
    /// Mean one-hop view once settled (peerkv's members; libp2p-kad's routing table).
    #[serde(default)]
    pub members_mean: f64,
    /// Open connections between the peers once settled.
    pub connections: usize,
    /// Loopback bytes per second while the settled overlay was idle.
    pub background_bytes_per_s: Option<f64>,
    /// Loopback packets per second while the settled overlay was idle.
    pub background_packets_per_s: Option<f64>,
}

/// Memory and descriptors.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Memory {
    /// Process RSS before any peer started (runtime, binary).
    pub rss_before_peers_bytes: Option<u64>,
    /// Process RSS once the overlay settled.
    pub rss_after_settle_bytes: Option<u64>,
    /// Process RSS after the workload.
    pub rss_after_workload_bytes: Option<u64>,
    /// `rss_after_settle_bytes / N`.
    pub rss_per_peer_after_settle_bytes: Option<u64>,
    /// `rss_after_workload_bytes / N`.
    pub rss_per_peer_after_workload_bytes: Option<u64>,
    /// Peak RSS of the process.
    pub peak_rss_bytes: Option<u64>,
    /// Open descriptors once settled.
    pub open_fds_after_settle: Option<usize>,
    /// Open descriptors after the workload.
    pub open_fds_after_workload: Option<usize>,
    /// Open connections between the peers after the workload.
    pub connections_after_workload: usize,
}

/// Everything measured for one system.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SystemResult {
    /// `peerkv`, `kad`, `peerkv-q1` or `kad-q3`.
    pub system: String,
    /// Answers (records from distinct peers) a get waits for: peerkv's Q (a majority of R) for
    /// `peerkv` and `kad-q3`, 1 for `kad` and `peerkv-q1`. `null` in documents from before the
    /// four systems.
    #[serde(default)]
    pub read_quorum: Option<usize>,
    /// Peers started.
    pub nodes: usize,
    /// Whether the run had a network namespace of its own, so the loopback counters count its
    /// traffic alone.
    pub isolated_network: bool,
    /// Start-up.
    pub startup: Startup,
    /// Settling.
    pub settle: Settle,
    /// K puts, one at a time, each from a random peer.
    pub put: Phase,
    /// K gets, one at a time, each from a random peer that holds no copy of the key.
    pub get: Phase,
    /// K gets from a peer that holds a copy (for libp2p-kad a local read: reported apart).
    pub get_from_holder: Phase,
    /// K lookups of the closest peers (peerkv `closest`, libp2p-kad `get_closest_peers`) from
    /// the same getters: the routing part of a get.
    pub lookup: Phase,
    /// Gets from peers without a copy, `concurrency` in flight at once.
    pub concurrent_get: Phase,
    /// Puts of new keys from random peers, `concurrency` in flight at once (absent in
    /// documents from before this phase).
    #[serde(default)]
    pub concurrent_put: Phase,
    /// Store transactions and records committed by all peers (peerkv): with data directories,
    /// fewer transactions than records means writes shared commits (group commit).
    #[serde(default)]
    pub store_commits: Option<u64>,
    /// Records committed by all peers (peerkv).
    #[serde(default)]
    pub records_committed: Option<u64>,
    /// Memory and descriptors.
    pub memory: Memory,
    /// Figures this system cannot report, and why.
    pub not_measured: Vec<String>,
    /// The machine's 1-minute load average when this system started and when it finished:
    /// above the core count, something else competed for the CPU and times are inflated.
    #[serde(default)]
    pub load_average: [Option<f64>; 2],
}

/// The parameters of a run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Params {
    /// Peers per system (N).
    pub nodes: usize,
    /// Keys (K).
    pub keys: usize,
    /// Value size in bytes.
    pub value_size: usize,
    /// Gets in flight at once in the concurrent phase (C).
    pub concurrency: usize,
    /// Gets in the concurrent phase.
    pub concurrent_ops: usize,
    /// peerkv's replication factor R.
    pub replication: usize,
    /// Acknowledgements a put waits for in both systems (W: a majority of R).
    pub write_quorum: usize,
    /// Replies a `peerkv` (and a `kad-q3`) get waits for (Q: a majority of R); `kad` and
    /// `peerkv-q1` answer with the first record (each system's `read_quorum` says it).
    pub read_quorum: usize,
    /// libp2p-kad's replication factor (its default, 20, unless `--kad-replication`).
    pub kad_replication: usize,
    /// RNG seed: keys, values, putters, getters, bootstrap tree.
    pub seed: u64,
    /// Deadline of one operation, seconds.
    pub op_timeout_s: f64,
    /// Idle-connection timeout of every swarm, seconds.
    pub idle_timeout_s: f64,
    /// Whether the libp2p-kad baseline negotiated streams lazily like peerkv (`--kad-lazy`);
    /// false: libp2p's default.
    #[serde(default)]
    pub kad_lazy: bool,
    /// Whether peerkv's peers kept data directories (`--durable`): every write committed to
    /// disk before it is acknowledged. false: in memory.
    #[serde(default)]
    pub durable: bool,
    /// Delay of each byte read on each TCP connection of every peer, ms (`--link-delay`): a
    /// round trip of twice this. 0: none (and in documents from before it).
    #[serde(default)]
    pub link_delay_ms: f64,
    /// Open descriptors above which the harness waits before starting more work.
    pub fd_high_water: usize,
}

/// The machine and build.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    /// Open-files limit in force.
    pub nofile_limit: u64,
    /// `release` or `debug`.
    pub profile: String,
    /// peerkv's version.
    pub peerkv_version: String,
    /// When the run started (seconds since the epoch).
    pub started_unix_s: u64,
}

/// One system's figures divided by another's (below 1: the first smaller).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Ratios {
    /// Get median latency.
    pub get_median: Option<f64>,
    /// Get p99 latency.
    pub get_p99: Option<f64>,
    /// Put median latency.
    pub put_median: Option<f64>,
    /// Put p99 latency.
    pub put_p99: Option<f64>,
    /// Concurrent gets per second.
    pub concurrent_ops_per_s: Option<f64>,
    /// RSS per peer after the workload.
    pub rss_per_peer_after_workload: Option<f64>,
    /// CPU seconds per get.
    pub cpu_s_per_get: Option<f64>,
}

/// Two systems compared: `a / b`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Pair {
    /// What it compares, e.g. `q1: peerkv-q1 / kad`.
    pub name: String,
    /// The system divided.
    pub a: String,
    /// The system it is divided by.
    pub b: String,
    /// `a / b`.
    pub ratios: Ratios,
}

/// A comparison of two systems: its name, the system divided, the system divided by.
pub type PairSpec = (&'static str, &'static str, &'static str);

/// Today's comparison: peerkv's quorum read against libp2p-kad's first record.
pub const LEGACY_PAIR: PairSpec = ("peerkv / kad", "peerkv", "kad");

/// The comparisons at equal consistency: a get that answers with the first record, and one
/// that waits for Q answers (3 of R = 5).
pub const EQUAL_PAIRS: [PairSpec; 2] =
    [("q1: peerkv-q1 / kad", "peerkv-q1", "kad"), ("q3: peerkv / kad-q3", "peerkv", "kad-q3")];

/// Every comparison a table shows when both its systems ran: today's first, then the two at
/// equal consistency.
pub fn all_pairs() -> impl Iterator<Item = PairSpec> {
    std::iter::once(LEGACY_PAIR).chain(EQUAL_PAIRS)
}

/// One run: the parameters, each system's figures and the ratios.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunDoc {
    /// [`SCHEMA`].
    pub schema: String,
    /// Parameters.
    pub params: Params,
    /// Machine and build.
    pub machine: Machine,
    /// One entry per system run.
    pub systems: Vec<SystemResult>,
    /// peerkv / kad, when both ran (unequal consistency: Q answers against the first record).
    pub ratios: Option<Ratios>,
    /// The equal-consistency pairs that ran: `peerkv-q1 / kad` and `peerkv / kad-q3`.
    #[serde(default)]
    pub pairs: Vec<Pair>,
    /// What no system could report, and why.
    pub not_measured: Vec<String>,
}

/// `a / b` when both are known and `b` is positive.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

impl RunDoc {
    /// The result of `system`, if it ran.
    pub fn system(&self, system: &str) -> Option<&SystemResult> {
        self.systems.iter().find(|s| s.system == system)
    }

    /// `a / b` for the systems of `pair`, when both ran.
    pub fn ratios_of(&self, (_, a, b): PairSpec) -> Option<Ratios> {
        Some(Ratios::between(self.system(a)?, self.system(b)?))
    }

    /// Fills `ratios` (peerkv / kad) and `pairs` (the equal-consistency pairs) from the
    /// systems' results.
    pub fn compute_ratios(&mut self) {
        self.ratios = self.ratios_of(LEGACY_PAIR);
        self.pairs = EQUAL_PAIRS
            .into_iter()
            .filter_map(|spec @ (name, a, b)| {
                let ratios = self.ratios_of(spec)?;
                Some(Pair { name: name.into(), a: a.into(), b: b.into(), ratios })
            })
            .collect();
    }
}

impl Ratios {
    /// `a / b`, figure by figure.
    pub fn between(a: &SystemResult, b: &SystemResult) -> Self {
        let per_peer =
            |s: &SystemResult| s.memory.rss_per_peer_after_workload_bytes.map(|bytes| bytes as f64);
        Self {
            get_median: ratio(a.get.latency.median_ms, b.get.latency.median_ms),
            get_p99: ratio(a.get.latency.p99_ms, b.get.latency.p99_ms),
            put_median: ratio(a.put.latency.median_ms, b.put.latency.median_ms),
            put_p99: ratio(a.put.latency.p99_ms, b.put.latency.p99_ms),
            concurrent_ops_per_s: ratio(a.concurrent_get.ops_per_s, b.concurrent_get.ops_per_s),
            rss_per_peer_after_workload: ratio(per_peer(a), per_peer(b)),
            cpu_s_per_get: ratio(a.concurrent_get.cpu_s_per_op, b.concurrent_get.cpu_s_per_op),
        }
    }
}

/// Get figures of OpenDHT, measured by `scripts/opendht_bench.py` on the same machine: only
/// what the summary table and the plot show.
#[derive(Debug, Clone, Default)]
pub struct OpenDht {
    pub nodes: usize,
    pub get: Latency,
    pub success_rate: Option<f64>,
    /// Resident memory per node after the workload, the interpreter's share left out.
    pub rss_per_node_bytes: Option<u64>,
}

impl OpenDht {
    /// Reads a document of `scripts/opendht_bench.py`; `None` when it is not one.
    pub fn from_json(doc: &serde_json::Value) -> Option<Self> {
        if doc.get("system")?.as_str()? != "opendht" {
            return None;
        }
        let get = doc.get("get")?;
        let memory = doc.get("memory");
        Some(Self {
            nodes: usize::try_from(doc.get("params")?.get("nodes")?.as_u64()?).ok()?,
            get: serde_json::from_value(get.get("latency")?.clone()).ok()?,
            success_rate: get.get("success_rate").and_then(serde_json::Value::as_f64),
            rss_per_node_bytes: memory
                .and_then(|m| m.get("rss_per_node_less_interpreter_after_workload_bytes"))
                .and_then(serde_json::Value::as_u64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_divide_each_figure_by_the_rtt() {
        let latency = Latency::of(&mut [20.0, 30.0, 40.0, 60.0]);
        let r = RoundTrips::of(&latency, 20.0).unwrap();
        assert_eq!((r.rtt_ms, r.median, r.max), (20.0, Some(1.5), Some(3.0)));
        assert_eq!(r.mean, Some(1.875));
        // No delay, no round trips; an empty phase has none to divide.
        assert!(RoundTrips::of(&latency, 0.0).is_none());
        assert_eq!(RoundTrips::of(&Latency::default(), 20.0).unwrap().median, None);
    }

    #[test]
    fn documents_from_before_the_link_delay_still_read() {
        let mut doc = serde_json::to_value(RunDoc {
            systems: vec![SystemResult::default()],
            ..RunDoc::default()
        })
        .unwrap();
        doc["params"].as_object_mut().unwrap().remove("link_delay_ms");
        doc["systems"][0]["get"].as_object_mut().unwrap().remove("round_trips");
        let back: RunDoc = serde_json::from_value(doc).unwrap();
        assert_eq!(back.params.link_delay_ms, 0.0);
        assert!(back.systems[0].get.round_trips.is_none());
    }

    #[test]
    fn a_delayed_run_shows_round_trips_and_a_plain_one_does_not() {
        let latency = Latency::of(&mut [25.0]);
        let get =
            Phase { round_trips: RoundTrips::of(&latency, 20.0), latency, ..Phase::default() };
        let mut doc = RunDoc {
            params: Params { link_delay_ms: 10.0, ..Params::default() },
            systems: vec![SystemResult { system: "peerkv".into(), get, ..SystemResult::default() }],
            ..RunDoc::default()
        };
        let table = markdown(&doc);
        assert!(table.contains("round trip (RTT) 20 ms"), "{table}");
        assert!(
            table.contains("| get (no local copy) median / p95 / p99 / max, round trips | 1.25 /"),
            "{table}"
        );
        let merged = markdown_merged(&merge(&[&doc]));
        assert!(merged.contains("| get (no local copy) median, round trips | 1.25 |"), "{merged}");
        doc.params.link_delay_ms = 0.0;
        doc.systems[0].get.round_trips = None;
        assert!(!markdown(&doc).contains("round trips"));
        assert!(!markdown_merged(&merge(&[&doc])).contains("round trips"));
    }
}
