//! Smoke run of the benchmark binary (N = 10, K = 50, both systems): every operation
//! succeeds, the JSON document has every field, and plot mode reads it back. Never a time.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_peerkv-bench");
/// Longest a run may take before the test kills it (a debug build takes ~20 s).
const LIMIT: Duration = Duration::from_secs(300);

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

fn check_document(doc: &Value) {
    for path in TOP {
        field(doc, path);
    }
    assert_eq!(field(doc, "schema"), "peerkv-bench/1");
    let systems = field(doc, "systems").as_array().expect("systems is a list");
    let names: Vec<&str> = systems.iter().map(|s| s["system"].as_str().unwrap()).collect();
    assert_eq!(names, ["peerkv", "kad"]);
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
        assert_eq!(s["put"]["ops"], 50, "{name}");
        assert_eq!(s["get"]["ops"], 50, "{name}");
        // Gets are timed from peers without a copy: none is a local read.
        assert_eq!(s["get"]["local_hits"], 0, "{name}");
        assert_eq!(s["get"]["latency"]["samples"], 50, "{name}");
        if name == "peerkv" {
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
    check_document(&doc);
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
    assert!(drawn.contains("<svg") && drawn.contains("peerkv median"), "{drawn}");
    assert!(Path::new(&md).exists());
}
