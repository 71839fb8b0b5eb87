//! The result document (JSON), its Markdown table and the SVG plot of get latency against N.
//!
//! Every field is always present; a figure that could not be measured is `null`, and the
//! document's `not_measured` list says why.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

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
    /// `peerkv` or `kad`.
    pub system: String,
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
    /// Replies a peerkv get waits for (Q: a majority of R); libp2p-kad stops at the first record.
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

/// peerkv's figures divided by libp2p-kad's (below 1: peerkv smaller).
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
    /// peerkv / kad, when both ran.
    pub ratios: Option<Ratios>,
    /// What no system could report, and why.
    pub not_measured: Vec<String>,
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
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

    /// Fills `ratios` from the two systems' results.
    pub fn compute_ratios(&mut self) {
        let (Some(p), Some(k)) = (self.system("peerkv"), self.system("kad")) else {
            self.ratios = None;
            return;
        };
        let per_peer =
            |s: &SystemResult| s.memory.rss_per_peer_after_workload_bytes.map(|b| b as f64);
        self.ratios = Some(Ratios {
            get_median: ratio(p.get.latency.median_ms, k.get.latency.median_ms),
            get_p99: ratio(p.get.latency.p99_ms, k.get.latency.p99_ms),
            put_median: ratio(p.put.latency.median_ms, k.put.latency.median_ms),
            put_p99: ratio(p.put.latency.p99_ms, k.put.latency.p99_ms),
            concurrent_ops_per_s: ratio(p.concurrent_get.ops_per_s, k.concurrent_get.ops_per_s),
            rss_per_peer_after_workload: ratio(per_peer(p), per_peer(k)),
            cpu_s_per_get: ratio(p.concurrent_get.cpu_s_per_op, k.concurrent_get.cpu_s_per_op),
        });
    }
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v < 10.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.1}"),
        None => "–".into(),
    }
}

fn num(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{:.1} %", v * 100.0))
}

fn mib(v: Option<u64>) -> String {
    v.map_or_else(|| "–".into(), |b| format!("{:.2}", b as f64 / (1024.0 * 1024.0)))
}

fn kib(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |b| format!("{:.1}", b / 1024.0))
}

/// One Markdown table for one run: a row per figure, a column per system, and peerkv / kad.
pub fn markdown(doc: &RunDoc) -> String {
    let p = &doc.params;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### N = {} peers, K = {} keys, {} B values, R = {}, W = Q = {}, C = {} ({} build, seed {}{})\n",
        p.nodes,
        p.keys,
        p.value_size,
        p.replication,
        p.write_quorum,
        p.concurrency,
        doc.machine.profile,
        p.seed,
        if p.kad_lazy { ", libp2p-kad with lazy stream negotiation" } else { "" }
    );
    let systems: Vec<&SystemResult> = doc.systems.iter().collect();
    let both = doc.system("peerkv").is_some() && doc.system("kad").is_some();
    let mut header = String::from("| figure |");
    let mut rule = String::from("| --- |");
    for s in &systems {
        let name = if s.system == "kad" { "libp2p-kad" } else { s.system.as_str() };
        let _ = write!(header, " {name} |");
        rule.push_str(" ---: |");
    }
    if both {
        header.push_str(" peerkv / kad |");
        rule.push_str(" ---: |");
    }
    let _ = writeln!(out, "{header}\n{rule}");
    type Cell = fn(&SystemResult) -> (String, Option<f64>);
    let rows: Vec<(&str, Cell)> = vec![
        ("put median / p95 / p99 / max, ms", |s| {
            let l = &s.put.latency;
            (
                format!(
                    "{} / {} / {} / {}",
                    ms(l.median_ms),
                    ms(l.p95_ms),
                    ms(l.p99_ms),
                    ms(l.max_ms)
                ),
                l.median_ms,
            )
        }),
        ("put success", |s| (pct(s.put.success_rate), None)),
        ("get (no local copy) median, ms", |s| {
            (ms(s.get.latency.median_ms), s.get.latency.median_ms)
        }),
        ("get (no local copy) p95, ms", |s| (ms(s.get.latency.p95_ms), s.get.latency.p95_ms)),
        ("get (no local copy) p99, ms", |s| (ms(s.get.latency.p99_ms), s.get.latency.p99_ms)),
        ("get (no local copy) max, ms", |s| (ms(s.get.latency.max_ms), s.get.latency.max_ms)),
        ("get success", |s| (pct(s.get.success_rate), None)),
        ("gets whose copy was evicted first", |s| (s.get.evicted.to_string(), None)),
        ("get from a holder median / p99, ms", |s| {
            let l = &s.get_from_holder.latency;
            (
                format!(
                    "{} / {} ({} local)",
                    ms(l.median_ms),
                    ms(l.p99_ms),
                    s.get_from_holder.local_hits
                ),
                l.median_ms,
            )
        }),
        ("lookup alone median / p99, ms", |s| {
            let l = &s.lookup.latency;
            (format!("{} / {}", ms(l.median_ms), ms(l.p99_ms)), l.median_ms)
        }),
        ("requests per get / put / lookup", |s| {
            (
                format!(
                    "{} / {} / {}",
                    num(s.get.requests_per_op, 1),
                    num(s.put.requests_per_op, 1),
                    num(s.lookup.requests_per_op, 1)
                ),
                None,
            )
        }),
        ("get hops mean (max)", |s| {
            let max = s.get.hops_max.map_or_else(|| "–".to_owned(), |m| m.to_string());
            (format!("{} ({max})", num(s.get.hops_per_op, 2)), None)
        }),
        ("get by hops: gets, median / p99 ms", |s| {
            let parts: Vec<String> = s
                .get
                .latency_by_hops
                .iter()
                .map(|(h, l)| format!("{h}: {}, {} / {}", l.samples, ms(l.median_ms), ms(l.p99_ms)))
                .collect();
            (if parts.is_empty() { "–".to_owned() } else { parts.join("; ") }, None)
        }),
        ("replicas asked per get / put", |s| {
            (format!("{} / {}", num(s.get.replicas_per_op, 1), num(s.put.replicas_per_op, 1)), None)
        }),
        ("wire packets per get / put", |s| {
            (
                format!(
                    "{} / {}",
                    num(s.get.wire_packets_per_op, 0),
                    num(s.put.wire_packets_per_op, 0)
                ),
                None,
            )
        }),
        ("wire KiB per get / put (less background)", |s| {
            (
                format!(
                    "{} / {}",
                    kib(s.get.wire_bytes_per_op_net),
                    kib(s.put.wire_bytes_per_op_net)
                ),
                s.get.wire_bytes_per_op_net,
            )
        }),
        ("concurrent gets per s", |s| {
            (num(s.concurrent_get.ops_per_s, 0), s.concurrent_get.ops_per_s)
        }),
        ("concurrent get median / p99, ms", |s| {
            let l = &s.concurrent_get.latency;
            (format!("{} / {}", ms(l.median_ms), ms(l.p99_ms)), l.p99_ms)
        }),
        ("concurrent get success", |s| (pct(s.concurrent_get.success_rate), None)),
        ("CPU ms per get (concurrent) / put", |s| {
            (
                format!(
                    "{} / {}",
                    num(s.concurrent_get.cpu_s_per_op.map(|c| c * 1000.0), 2),
                    num(s.put.cpu_s_per_op.map(|c| c * 1000.0), 2)
                ),
                s.concurrent_get.cpu_s_per_op,
            )
        }),
        ("RSS per peer after settle / workload, MiB", |s| {
            (
                format!(
                    "{} / {}",
                    mib(s.memory.rss_per_peer_after_settle_bytes),
                    mib(s.memory.rss_per_peer_after_workload_bytes)
                ),
                s.memory.rss_per_peer_after_workload_bytes.map(|b| b as f64),
            )
        }),
        ("connections after settle / workload", |s| {
            (format!("{} / {}", s.settle.connections, s.memory.connections_after_workload), None)
        }),
        ("start-up / settle, s", |s| {
            (
                format!(
                    "{:.1} / {:.1}{}",
                    s.startup.seconds,
                    s.settle.seconds,
                    if s.settle.settled { "" } else { " (not settled)" }
                ),
                // The ratio compares the whole time to a settled overlay.
                Some(s.startup.seconds + s.settle.seconds),
            )
        }),
        ("routing table mean (min)", |s| {
            (format!("{:.1} ({})", s.settle.routing_table_mean, s.settle.routing_table_min), None)
        }),
        ("idle background, KiB/s", |s| (kib(s.settle.background_bytes_per_s), None)),
        ("machine load average at start / end", |s| {
            (format!("{} / {}", num(s.load_average[0], 1), num(s.load_average[1], 1)), None)
        }),
    ];
    for (name, cell) in rows {
        let mut line = format!("| {name} |");
        let mut vals = Vec::new();
        for s in &systems {
            let (text, v) = cell(s);
            let _ = write!(line, " {text} |");
            vals.push((s.system.as_str(), v));
        }
        if both {
            let get = |n: &str| vals.iter().find(|(s, _)| *s == n).and_then(|(_, v)| *v);
            let _ = write!(line, " {} |", num(ratio(get("peerkv"), get("kad")), 2));
        }
        let _ = writeln!(out, "{line}");
    }
    out
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

/// The Markdown for several runs, smallest N first: a summary table of get latency, success
/// and memory for peerkv, libp2p-kad and (where given) OpenDHT (the first run given for an N
/// stands for it), then each run's full table.
pub fn markdown_all(docs: &[RunDoc], opendht: &[OpenDht]) -> String {
    let mut out = String::from(
        "| N | peerkv get median / p99, ms | libp2p-kad get median / p99, ms | peerkv / kad median / p99 | OpenDHT get median / p99, ms | get success peerkv / kad / OpenDHT | RSS per peer peerkv / kad / OpenDHT, MiB |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let mut sizes: Vec<usize> =
        docs.iter().map(|d| d.params.nodes).chain(opendht.iter().map(|o| o.nodes)).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let pair = |l: &Latency| format!("{} / {}", ms(l.median_ms), ms(l.p99_ms));
    for n in sizes {
        let doc = docs.iter().find(|d| d.params.nodes == n);
        let p = doc.and_then(|d| d.system("peerkv"));
        let k = doc.and_then(|d| d.system("kad"));
        let o = opendht.iter().find(|o| o.nodes == n);
        let r = doc.and_then(|d| d.ratios.clone()).unwrap_or_default();
        let dash = || "–".to_owned();
        let _ = writeln!(
            out,
            "| {n} | {} | {} | {} / {} | {} | {} / {} / {} | {} / {} / {} |",
            p.map_or_else(dash, |p| pair(&p.get.latency)),
            k.map_or_else(dash, |k| pair(&k.get.latency)),
            num(r.get_median, 2),
            num(r.get_p99, 2),
            o.map_or_else(dash, |o| pair(&o.get)),
            p.map_or_else(dash, |p| pct(p.get.success_rate)),
            k.map_or_else(dash, |k| pct(k.get.success_rate)),
            o.map_or_else(dash, |o| pct(o.success_rate)),
            p.map_or_else(dash, |p| mib(p.memory.rss_per_peer_after_workload_bytes)),
            k.map_or_else(dash, |k| mib(k.memory.rss_per_peer_after_workload_bytes)),
            o.map_or_else(dash, |o| mib(o.rss_per_node_bytes)),
        );
    }
    out.push('\n');
    for d in docs {
        out.push_str(&markdown(d));
        out.push('\n');
    }
    out
}

/// Draws get latency (median and p99, from peers without a copy) against N for peerkv,
/// libp2p-kad and (where given) OpenDHT.
///
/// # Errors
/// When there is nothing to draw or the file cannot be written.
pub fn plot(docs: &[RunDoc], opendht: &[OpenDht], path: &Path) -> Result<(), String> {
    // As in the summary table, the first run given for an N stands for it; later runs of the
    // same N (other seeds, other settings) appear only in the full tables.
    let mut seen = std::collections::HashSet::new();
    let docs: Vec<&RunDoc> = docs.iter().filter(|d| seen.insert(d.params.nodes)).collect();
    let series = |system: &str, p99: bool| -> Vec<(f64, f64)> {
        docs.iter()
            .filter_map(|d| {
                let l = &d.system(system)?.get.latency;
                Some((d.params.nodes as f64, if p99 { l.p99_ms? } else { l.median_ms? }))
            })
            .collect()
    };
    let other = |p99: bool| -> Vec<(f64, f64)> {
        opendht
            .iter()
            .filter_map(|o| {
                Some((o.nodes as f64, if p99 { o.get.p99_ms? } else { o.get.median_ms? }))
            })
            .collect()
    };
    let lines = [
        ("peerkv median", series("peerkv", false), RGBColor(0, 90, 180), false),
        ("peerkv p99", series("peerkv", true), RGBColor(0, 90, 180), true),
        ("libp2p-kad median", series("kad", false), RGBColor(200, 70, 0), false),
        ("libp2p-kad p99", series("kad", true), RGBColor(200, 70, 0), true),
        ("OpenDHT median", other(false), RGBColor(0, 140, 60), false),
        ("OpenDHT p99", other(true), RGBColor(0, 140, 60), true),
    ];
    let all: Vec<(f64, f64)> = lines.iter().flat_map(|l| l.1.iter().copied()).collect();
    if all.is_empty() {
        return Err("no get latencies in the given files".into());
    }
    let xmin = all.iter().map(|p| p.0).fold(f64::MAX, f64::min);
    let xmax = all.iter().map(|p| p.0).fold(0.0, f64::max);
    let ymin = all.iter().map(|p| p.1).fold(f64::MAX, f64::min).max(0.01);
    let ymax = all.iter().map(|p| p.1).fold(0.0, f64::max).max(ymin * 2.0);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| format!("plot {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "get latency from a peer without a copy (one process, 127.0.0.1)",
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(
            ((xmin * 0.8)..(xmax * 1.25)).log_scale(),
            ((ymin * 0.7)..(ymax * 1.5)).log_scale(),
        )
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("peers N (log scale)")
        .y_desc("latency, ms (log scale)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| if *y < 1.0 { format!("{y:.2}") } else { format!("{y:.0}") })
        .draw()
        .map_err(|e| err(&e))?;
    for (name, points, color, dashed) in lines {
        if points.is_empty() {
            continue;
        }
        let mut points = points;
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let style = ShapeStyle {
            color: color.to_rgba(),
            filled: true,
            stroke_width: if dashed { 1 } else { 2 },
        };
        chart
            .draw_series(LineSeries::new(points.clone(), style))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
        chart
            .draw_series(points.iter().map(|p| {
                // p99 points are hollow, medians filled.
                let marker = if dashed { color.stroke_width(2) } else { color.filled() };
                Circle::new(*p, 4, marker)
            }))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
