//! What a run measured, per kind of operation, and the JSON object `--json` prints.

use std::time::Duration;

use serde::Serialize;

use crate::checker::Verdict;
use crate::node::OpKind;
use crate::sim::MEAN_RTT;
use crate::{Faults, SimConfig};

#[derive(Debug, Default)]
struct Samples {
    count: u64,
    ok: u64,
    latency_us: Vec<u64>,
    hops: Vec<u8>,
    messages: Vec<u32>,
    bytes: Vec<u64>,
    overlap: Vec<f64>,
}

impl Samples {
    /// One operation that succeeded.
    fn ok(&mut self, elapsed_us: u64, hops: u8, sent: u32, bytes: u64, overlap: f64) {
        self.ok += 1;
        self.latency_us.push(elapsed_us);
        self.hops.push(hops);
        self.messages.push(sent);
        self.bytes.push(bytes);
        self.overlap.push(overlap);
    }
}

/// Figures of one kind of operation.
#[derive(Debug, Clone, Serialize)]
pub struct KindReport {
    /// Operations started.
    pub count: u64,
    /// Operations that succeeded (a get that found nothing succeeded).
    pub ok: u64,
    /// ok / count.
    pub success_rate: f64,
    /// Latency to the answer, ms: median and 99th percentile.
    pub latency_ms_p50: f64,
    /// See `latency_ms_p50`.
    pub latency_ms_p99: f64,
    /// Latency in multiples of the mean round trip: median and 99th percentile.
    pub rtt_multiple_p50: f64,
    /// See `rtt_multiple_p50`.
    pub rtt_multiple_p99: f64,
    /// Round trips on the longest path to an answer that counted.
    pub hops_mean: f64,
    /// See `hops_mean`.
    pub hops_p99: f64,
    /// Requests an operation sent (mean).
    pub messages_mean: f64,
    /// Bytes of those requests (mean, CBOR as on the wire).
    pub bytes_mean: f64,
    /// Share of the true R nearest live peers among the replicas the operation used (mean).
    pub overlap: f64,
}

/// The report of one run (`--json` prints it as one object).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Peers.
    pub nodes: usize,
    /// Client operations.
    pub ops: usize,
    /// The seed.
    pub seed: u64,
    /// Faults injected.
    pub faults: Faults,
    /// Share of client operations that succeeded.
    pub success_rate: f64,
    /// Gets that missed an acknowledged put (the history checker).
    pub acked_lost: u64,
    /// Distinct acknowledged puts some get missed.
    pub acked_writes_missed: u64,
    /// Gets older than a get that ended before they started.
    pub reads_back_in_time: u64,
    /// Gets that returned a value an acknowledged delete had removed.
    pub tombstones_resurrected: u64,
    /// Hops of gets: mean and 99th percentile.
    pub hops_mean: f64,
    /// See `hops_mean`.
    pub hops_p99: f64,
    /// Get latency in mean round trips: median and 99th percentile.
    pub rtt_multiple_p50: f64,
    /// See `rtt_multiple_p50`.
    pub rtt_multiple_p99: f64,
    /// Overlap of the replicas gets and puts used with the true R nearest live peers (mean).
    pub overlap: f64,
    /// Seconds from the end of churn until every operation's overlap was 1 again (`null`
    /// without churn, or when some operation near the end still missed a replica).
    pub overlap_recovery_s: Option<f64>,
    /// The mean round trip of the latency model, ms.
    pub mean_rtt_ms: f64,
    /// Puts.
    pub put: KindReport,
    /// Gets.
    pub get: KindReport,
    /// The gets that found a record (a get of a key nobody wrote waits for all R nearest:
    /// its "not found" takes a second round trip when the first Q asked say so).
    pub get_found: KindReport,
    /// Deletes.
    pub del: KindReport,
    /// The final reads of every key written (after the workload and 30 quiet seconds).
    pub verify: KindReport,
    /// Messages (requests and responses of the value protocol).
    pub messages: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Upkeep rounds run.
    pub upkeep_rounds: u64,
    /// Members tables (the one-hop view) at the end, over live peers: mean size ...
    pub members_mean: f64,
    /// ... and the smallest.
    pub members_min: usize,
    /// Crashes injected.
    pub crashes: u64,
    /// Records the replicas' pollution guard refused (a new key from a peer that is not
    /// among the key's 2R nearest by the replica's view): every sender here is honest, so each
    /// is a write, repair or hand-off the guard turned away.
    pub guard_refusals: u64,
    /// Events processed.
    pub events: u64,
    /// What the checker saw.
    pub history: Verdict,
    /// Failed operations by the start of their error message (what failed, and why).
    pub errors: std::collections::BTreeMap<String, u64>,
    /// Wall-clock seconds the run took.
    pub wall_s: f64,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mib: f64,
}

/// Collects samples as the run goes.
#[derive(Debug, Default)]
pub struct Collector {
    put: Samples,
    get: Samples,
    get_found: Samples,
    del: Samples,
    verify: Samples,
    messages: u64,
    bytes: u64,
    upkeep_rounds: u64,
    crashes: u64,
    churn_stopped: Option<u64>,
    /// The last time (after churn stopped) an operation missed one of the true replicas.
    last_imperfect: Option<u64>,
    errors: std::collections::BTreeMap<String, u64>,
}

impl Collector {
    /// One operation answered (or failed to start, or died with its peer).
    #[allow(clippy::too_many_arguments)]
    pub fn op(
        &mut self,
        kind: OpKind,
        verify: bool,
        ok: bool,
        elapsed_us: u64,
        hops: u8,
        sent: u32,
        bytes: u64,
        overlap: f64,
        now: u64,
    ) {
        let s = match (verify, kind) {
            (true, _) => &mut self.verify,
            (false, OpKind::Put) => &mut self.put,
            (false, OpKind::Get) => &mut self.get,
            (false, OpKind::Del) => &mut self.del,
        };
        s.count += 1;
        if !ok {
            return;
        }
        s.ok(elapsed_us, hops, sent, bytes, overlap);
        if let Some(stopped) = self.churn_stopped {
            if now >= stopped && overlap < 1.0 {
                self.last_imperfect = Some(now);
            }
        }
    }

    /// A client get (counted in [`Collector::op`] too) that found a record.
    pub fn found(&mut self, elapsed_us: u64, hops: u8, sent: u32, bytes: u64, overlap: f64) {
        self.get_found.count += 1;
        self.get_found.ok(elapsed_us, hops, sent, bytes, overlap);
    }

    /// An operation failed with `error` (counted by the error's first words).
    pub fn error(&mut self, kind: OpKind, error: &str) {
        let head: String = error.split(':').next().unwrap_or(error).chars().take(40).collect();
        *self.errors.entry(format!("{kind:?}: {head}")).or_default() += 1;
        if std::env::var_os("PEERKV_SIM_ERRORS").is_some() {
            eprintln!("{kind:?}: {error}");
        }
    }

    /// A message of `bytes` went out.
    pub fn message(&mut self, bytes: u64) {
        self.messages += 1;
        self.bytes += bytes;
    }

    /// An upkeep round ran.
    pub fn upkeep_round(&mut self) {
        self.upkeep_rounds += 1;
    }

    /// A peer crashed.
    pub fn crash(&mut self) {
        self.crashes += 1;
    }

    /// Churn ended at `now`.
    pub fn churn_stopped(&mut self, now: u64) {
        self.churn_stopped = Some(now);
    }

    /// The report.
    pub fn report(
        &self,
        cfg: &SimConfig,
        history: Verdict,
        events: u64,
        members: &[usize],
        wall: Duration,
    ) -> Report {
        let client = [&self.put, &self.get, &self.del];
        let count: u64 = client.iter().map(|s| s.count).sum();
        let ok: u64 = client.iter().map(|s| s.ok).sum();
        let get = kind_report(&self.get);
        let overlaps: Vec<f64> = [&self.put, &self.get, &self.del]
            .iter()
            .flat_map(|s| s.overlap.iter().copied())
            .collect();
        let overlap_recovery_s = self.churn_stopped.map(|stopped| {
            self.last_imperfect.map_or(0.0, |t| (t.saturating_sub(stopped)) as f64 / 1e6)
        });
        Report {
            nodes: cfg.nodes,
            ops: cfg.ops,
            seed: cfg.seed,
            faults: cfg.faults,
            success_rate: ratio(ok, count),
            acked_lost: history.acked_lost,
            acked_writes_missed: history.acked_writes_missed,
            reads_back_in_time: history.reads_back_in_time,
            tombstones_resurrected: history.tombstones_resurrected,
            hops_mean: get.hops_mean,
            hops_p99: get.hops_p99,
            rtt_multiple_p50: get.rtt_multiple_p50,
            rtt_multiple_p99: get.rtt_multiple_p99,
            overlap: mean(&overlaps),
            overlap_recovery_s,
            mean_rtt_ms: MEAN_RTT.as_secs_f64() * 1e3,
            put: kind_report(&self.put),
            get,
            get_found: kind_report(&self.get_found),
            del: kind_report(&self.del),
            verify: kind_report(&self.verify),
            messages: self.messages,
            bytes: self.bytes,
            upkeep_rounds: self.upkeep_rounds,
            members_mean: members.iter().sum::<usize>() as f64 / members.len().max(1) as f64,
            members_min: members.iter().copied().min().unwrap_or(0),
            crashes: self.crashes,
            guard_refusals: 0,
            events,
            history,
            errors: self.errors.clone(),
            wall_s: wall.as_secs_f64(),
            peak_rss_mib: peak_rss_mib(),
        }
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn percentile<T: Copy + Ord + Into<f64>>(v: &[T], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut sorted = v.to_vec();
    sorted.sort_unstable();
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i].into()
}

fn kind_report(s: &Samples) -> KindReport {
    let lat_ms: Vec<u64> = s.latency_us.clone();
    let rtt = MEAN_RTT.as_micros() as f64;
    let p = |q: f64| {
        if lat_ms.is_empty() {
            return 0.0;
        }
        let mut sorted = lat_ms.clone();
        sorted.sort_unstable();
        sorted[((sorted.len() - 1) as f64 * q).round() as usize] as f64
    };
    let hops: Vec<u32> = s.hops.iter().map(|h| u32::from(*h)).collect();
    KindReport {
        count: s.count,
        ok: s.ok,
        success_rate: ratio(s.ok, s.count),
        latency_ms_p50: p(0.5) / 1e3,
        latency_ms_p99: p(0.99) / 1e3,
        rtt_multiple_p50: p(0.5) / rtt,
        rtt_multiple_p99: p(0.99) / rtt,
        hops_mean: mean(&hops.iter().map(|h| f64::from(*h)).collect::<Vec<_>>()),
        hops_p99: percentile(&hops, 0.99),
        messages_mean: mean(&s.messages.iter().map(|m| f64::from(*m)).collect::<Vec<_>>()),
        bytes_mean: mean(&s.bytes.iter().map(|b| *b as f64).collect::<Vec<_>>()),
        overlap: mean(&s.overlap),
    }
}

/// Peak resident memory (VmHWM) of this process, MiB; 0 where /proc is not there.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

impl Report {
    /// A few lines for people.
    pub fn human(&self) -> String {
        let k = |name: &str, r: &KindReport| {
            format!(
                "{name:<6} {:>7} ok of {:>7} ({:.2} %)  latency p50 {:.1} ms p99 {:.1} ms ({:.2} / {:.2} RTT)  hops {:.2} (p99 {:.0})  {:.1} msgs  {:.0} B  overlap {:.3}",
                r.ok, r.count, r.success_rate * 100.0, r.latency_ms_p50, r.latency_ms_p99,
                r.rtt_multiple_p50, r.rtt_multiple_p99, r.hops_mean, r.hops_p99,
                r.messages_mean, r.bytes_mean, r.overlap
            )
        };
        [
            format!(
                "{} peers, {} operations, seed {}, faults {:?}: {:.1} s wall, {:.0} MiB peak, {} events",
                self.nodes, self.ops, self.seed, self.faults, self.wall_s, self.peak_rss_mib, self.events
            ),
            k("put", &self.put),
            k("get", &self.get),
            k("found", &self.get_found),
            k("del", &self.del),
            k("verify", &self.verify),
            format!(
                "history: {} acknowledged writes, {} reads: {} lost ({} writes), {} back in time, {} tombstones resurrected",
                self.history.writes, self.history.reads, self.acked_lost, self.acked_writes_missed,
                self.reads_back_in_time, self.tombstones_resurrected
            ),
            format!(
                "overlap {:.3}{}; {} crashes; {} upkeep rounds; {} messages, {:.1} MB; {} records refused by the pollution guard",
                self.overlap,
                self.overlap_recovery_s
                    .map_or(String::new(), |s| format!(", back to 1 within {s:.1} s after churn")),
                self.crashes, self.upkeep_rounds, self.messages, self.bytes as f64 / 1e6,
                self.guard_refusals
            ),
        ]
        .join("\n")
    }
}
