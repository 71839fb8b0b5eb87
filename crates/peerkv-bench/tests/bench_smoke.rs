//! Smoke runs of the benchmark binary: N = 10, K = 50, peerkv and kad (every operation
//! succeeds, the JSON document has every field, plot mode reads it back); and N = 10, K = 10,
//! all four systems with two seeds (each seed's document, the merged one, plot mode merging
//! them). Never a time. The idle traffic is measured over 2 s here (`--idle-window`), not a
//! whole probe interval.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_peerkv-bench");
/// Longest a run may take before the test kills it (a hang guard, not a figure).
const LIMIT: Duration = Duration::from_secs(600);

/// Runs the benchmark with `args`; kills it past [`LIMIT`].
fn bench(args: &[&str]) -> Output {
    let mut child = Command::new(BENCH)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start peerkv-bench");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > LIMIT {
            child.kill().expect("kill");
            panic!("peerkv-bench {args:?} ran past {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().expect("output")
}

/// The value at `path` (`a/b/c`), which must exist (it may be `null`).
fn field<'a>(doc: &'a Value, path: &str) -> &'a Value {
    let pointer = format!("/{path}");
    doc.pointer(&pointer).unwrap_or_else(|| panic!("the document has no {path}"))
}

const TOP: &[&str] = &[
    "schema",
    "params/nodes",
    "params/keys",
    "params/value_size",
    "params/concurrency",
    "params/concurrent_ops",
    "params/replication",
    "params/write_quorum",
    "params/read_quorum",
    "params/kad_replication",
    "params/seed",
    "params/op_timeout_s",
    "params/idle_timeout_s",
    "params/fd_high_water",
    "machine/cores",
    "machine/kernel",
    "machine/nofile_limit",
    "machine/profile",
    "machine/peerkv_version",
    "machine/started_unix_s",
    "ratios/get_median",
    "ratios/get_p99",
    "ratios/put_median",
    "ratios/put_p99",
    "ratios/concurrent_ops_per_s",
    "ratios/rss_per_peer_after_workload",
    "ratios/cpu_s_per_get",
    "pairs",
    "not_measured",
];

const SYSTEM: &[&str] = &[
    "system",
    "nodes",
    "isolated_network",
    "startup/seconds",
    "startup/bootstrap_failures",
    "startup/throttled_s",
    "settle/seconds",
    "settle/settled",
    "settle/routing_table_mean",
    "settle/routing_table_min",
    "settle/connections",
    "settle/background_bytes_per_s",
    "settle/background_packets_per_s",
    "memory/rss_before_peers_bytes",
    "memory/rss_after_settle_bytes",
    "memory/rss_after_workload_bytes",
    "memory/rss_per_peer_after_settle_bytes",
    "memory/rss_per_peer_after_workload_bytes",
    "memory/peak_rss_bytes",
    "memory/open_fds_after_settle",
    "memory/open_fds_after_workload",
    "memory/connections_after_workload",
    "load_average",
    "read_quorum",
    "not_measured",
];

const PHASES: &[&str] = &["put", "get", "get_from_holder", "lookup", "concurrent_get"];

const PHASE: &[&str] = &[
    "ops",
    "ok",
    "success_rate",
    "latency/samples",
    "latency/median_ms",
    "latency/p95_ms",
    "latency/p99_ms",
    "latency/max_ms",
    "latency/mean_ms",
    "concurrency",
    "seconds",
    "ops_per_s",
    "local_hits",
    "evicted",
    "below_quorum",
    "requests_per_op",
    "hops_per_op",
    "hops_max",
    "replicas_per_op",
    "cpu_s_per_op",
    "wire_packets_per_op",
    "wire_bytes_per_op",
    "wire_bytes_per_op_net",
    "throttled_s",
    "errors",
];

/// Checks a run's document: every field there, the systems `expect` ran, every operation of
/// `keys` succeeded.
fn check_document(doc: &Value, expect: &[&str], keys: u64) {
    for path in TOP {
        field(doc, path);
    }
    assert_eq!(field(doc, "schema"), "peerkv-bench/1");
    let systems = field(doc, "systems").as_array().expect("systems is a list");
    let names: Vec<&str> = systems.iter().map(|s| s["system"].as_str().unwrap()).collect();
    assert_eq!(names, expect);
    for s in systems {
        let name = s["system"].as_str().unwrap();
        for path in SYSTEM {
            field(s, path);
        }
        for phase in PHASES {
            for path in PHASE {
                field(s, &format!("{phase}/{path}"));
            }
        }
        // Every operation succeeded, in both systems.
        for phase in ["put", "get", "concurrent_get"] {
            let p = field(s, phase);
            assert_eq!(
                p["success_rate"].as_f64(),
                Some(1.0),
                "{name} {phase}: {} of {} ok, errors {}",
                p["ok"],
                p["ops"],
                p["errors"]
            );
        }
        assert_eq!(s["put"]["ops"], keys, "{name}");
        assert_eq!(s["get"]["ops"], keys, "{name}");
        // Gets are timed from peers without a copy: none is a local read.
        assert_eq!(s["get"]["local_hits"], 0, "{name}");
        assert_eq!(s["get"]["latency"]["samples"], keys, "{name}");
        // A get waits for Q = 3 answers (peerkv, kad-q3) or the first (kad, peerkv-q1).
        let quorum = if matches!(name, "peerkv" | "kad-q3") { 3 } else { 1 };
        assert_eq!(s["read_quorum"], quorum, "{name}");
        if name.starts_with("peerkv") {
            // peerkv reports the requests and round trips of its gets: at least one each, and
            // in a settled 10-peer overlay every table holds the replicas: one round trip (two
            // if a table missed a peer for a moment).
            assert!(field(s, "get/requests_per_op").as_f64().unwrap() >= 1.0);
            let hops = field(s, "get/hops_max").as_u64().unwrap();
            assert!((1..=2).contains(&hops), "{name}: a get took {hops} round trips");
        }
        // What Linux always lets us measure is there.
        for path in [
            "get/latency/median_ms",
            "get/latency/p99_ms",
            "concurrent_get/ops_per_s",
            "concurrent_get/cpu_s_per_op",
            "memory/rss_per_peer_after_settle_bytes",
            "memory/rss_per_peer_after_workload_bytes",
        ] {
            assert!(field(s, path).is_number(), "{name} {path} is {}", field(s, path));
        }
    }
    assert!(field(doc, "ratios/get_median").is_number());
}

#[test]
fn smoke_run_succeeds_and_reports_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("smoke.json");
    let out = bench(&[
        "--nodes",
        "10",
        "--keys",
        "50",
        "--idle-window",
        "2",
        "--concurrency",
        "4",
        "--seed",
        "7",
        "--out",
        json.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "peerkv-bench failed:\n{stderr}");
    let doc: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    check_document(&doc, &["peerkv", "kad"], 50);
    let table = std::fs::read_to_string(json.with_extension("md")).unwrap();
    assert!(table.contains("| get (no local copy) median, ms |"), "{table}");

    // Plot mode reads the document back and draws it.
    let svg = dir.path().join("plot.svg");
    let md = dir.path().join("all.md");
    let out = bench(&[
        "--plot",
        json.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
        "--table",
        md.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(drawn.contains("<svg") && drawn.contains("peerkv (Q = 3) median"), "{drawn}");
    assert!(Path::new(&md).exists());
}

#[test]
fn all_four_systems_with_two_seeds_merge() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("n10.json");
    let out = bench(&[
        "--nodes",
        "10",
        "--keys",
        "10",
        "--idle-window",
        "2",
        "--concurrency",
        "4",
        "--system",
        "all",
        "--seed",
        "7,8",
        "--out",
        json.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "peerkv-bench failed:\n{stderr}");
    let all = ["peerkv-q1", "kad", "peerkv", "kad-q3"];
    for seed in [7, 8] {
        let path = dir.path().join(format!("n10-seed{seed}.json"));
        let doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        check_document(&doc, &all, 10);
        assert_eq!(doc["params"]["seed"], seed);
        let pairs: Vec<&str> =
            doc["pairs"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(pairs, ["q1: peerkv-q1 / kad", "q3: peerkv / kad-q3"]);
        assert!(field(&doc, "pairs/1/ratios/get_median").is_number());
    }

    // The merged document: each system and pair over both seeds.
    let merged: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(field(&merged, "schema"), "peerkv-bench-merged/1");
    assert_eq!(field(&merged, "merged/seeds"), &serde_json::json!([7, 8]));
    assert_eq!(field(&merged, "runs").as_array().unwrap().len(), 2);
    for (i, name) in all.iter().enumerate() {
        assert_eq!(field(&merged, &format!("merged/systems/{i}/system")), name);
        let get = field(&merged, &format!("merged/systems/{i}/figures/get_median_ms"));
        assert_eq!(get["runs"], 2, "{name}");
        let (lo, median, hi) = (
            get["lo"].as_f64().unwrap(),
            get["median"].as_f64().unwrap(),
            get["hi"].as_f64().unwrap(),
        );
        assert!(lo <= median && median <= hi, "{name}: {get}");
    }
    let table = std::fs::read_to_string(json.with_extension("md")).unwrap();
    assert!(table.contains("median of 2 runs (seeds 7, 8)"), "{table}");
    assert!(table.contains("| q3: peerkv / kad-q3 |"), "{table}");

    // Plot mode merges the seeds' documents, and counts a run given twice once.
    let svg = dir.path().join("plot.svg");
    let md = dir.path().join("all.md");
    let seed7 = dir.path().join("n10-seed7.json");
    let seed8 = dir.path().join("n10-seed8.json");
    let out = bench(&[
        "--plot",
        json.to_str().unwrap(),
        seed7.to_str().unwrap(),
        seed8.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
        "--table",
        md.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let drawn = std::fs::read_to_string(&svg).unwrap();
    for line in ["peerkv-q1 (first record) median", "kad-q3 (Q = 3) median", "median of 2 seeds"] {
        assert!(drawn.contains(line), "the plot lacks {line}");
    }
    let summary = std::fs::read_to_string(&md).unwrap();
    assert!(summary.contains("| 10 | 2 runs (seeds 7, 8)"), "{summary}");
}
