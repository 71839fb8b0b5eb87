//! `peerkv-bench`: peerkv measured side by side with a plain libp2p-kad DHT.
//!
//! Starts N peers of each system in one process on 127.0.0.1 (mDNS off), lets the overlay
//! settle, then runs the same seeded workload on both: K puts from random peers, K gets from
//! peers that hold no copy, K gets from peers that do (reported apart), K lookups, and gets at
//! concurrency C. Each system runs in a child process of its own (in a network namespace of its
//! own when possible), so memory, CPU and wire figures are its alone. Writes one JSON document
//! and a Markdown table; `--plot` draws get latency against N from several documents.
//!
//! ```text
//! cargo run --release --bin peerkv-bench -- --nodes 100 --keys 200 --out bench/n100.json
//! cargo run --release --bin peerkv-bench -- --plot bench/n*.json --svg bench/get_latency.svg --table bench/results.md
//! ```
//!
//! Layout: `peer.rs` (one interface over both systems), `kad_node.rs` (the libp2p-kad
//! baseline peer), `workload.rs` (phases and measurement), `sys.rs` (`/proc` readings),
//! `child.rs` (child processes and network namespaces), `report.rs` (JSON, Markdown, SVG).

mod child;
mod kad_node;
mod peer;
mod report;
mod sys;
mod workload;

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use child::Isolate;
use peer::{PeerParams, System};
use report::{Machine, Params, RunDoc};

/// Which systems a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Systems {
    /// peerkv's value protocol.
    Peerkv,
    /// The libp2p-kad baseline.
    Kad,
    /// Both, one after the other, same parameters.
    Both,
}

/// peerkv measured side by side with plain libp2p-kad: N peers in one process on 127.0.0.1.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Peers per system (N).
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Keys put and read (K).
    #[arg(long, default_value_t = 100)]
    keys: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 1024)]
    value_size: usize,
    /// Gets in flight at once in the concurrent phase (C).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Gets in the concurrent phase (default: 2 × K).
    #[arg(long)]
    concurrent_ops: Option<usize>,
    /// peerkv's replication factor R; both systems' puts wait for a majority of R.
    #[arg(long, default_value_t = 5)]
    replication: usize,
    /// libp2p-kad's replication factor (its default is 20).
    #[arg(long, default_value_t = 20)]
    kad_replication: usize,
    /// Seed of keys, values, putters, getters and the bootstrap tree.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Systems to run.
    #[arg(long, value_enum, default_value_t = Systems::Both)]
    system: Systems,
    /// Write the JSON document here (and the Markdown table beside it, as .md).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Deadline of one operation, seconds (peerkv's default).
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Idle-connection timeout of every peer, seconds.
    #[arg(long, default_value_t = 10.0)]
    idle_timeout: f64,
    /// Give the libp2p-kad baseline peerkv's lazy stream negotiation (a request goes out with
    /// its protocol, one round trip instead of two); by default it keeps libp2p's default, as
    /// the rust-libp2p examples do.
    #[arg(long)]
    kad_lazy: bool,
    /// Longest wait for the overlay to settle, seconds (default: 60 + N / 5).
    #[arg(long)]
    settle_timeout: Option<f64>,
    /// Open descriptors above which the harness waits for idle connections to close before
    /// starting more work (default: 70 % of the open-files limit).
    #[arg(long)]
    fd_high_water: Option<usize>,
    /// Run each system in a network namespace of its own (exact wire counts).
    #[arg(long, value_enum, default_value_t = Isolate::Auto)]
    isolate: Isolate,
    /// Longest run of one system, seconds; the child is stopped after it.
    #[arg(long, default_value_t = 1800)]
    run_timeout: u64,
    /// Plot mode: read these JSON documents (of this program, or of scripts/opendht_bench.py)
    /// and write the SVG plot and the Markdown table.
    #[arg(long, num_args = 1.., value_name = "FILE.json")]
    plot: Vec<PathBuf>,
    /// Plot mode: where the SVG goes.
    #[arg(long, default_value = "bench/get_latency.svg")]
    svg: PathBuf,
    /// Plot mode: where the Markdown table of all runs goes.
    #[arg(long, default_value = "bench/results.md")]
    table: PathBuf,
    /// Internal: run one system in this process and write its result to `--child-out`.
    #[arg(long, value_enum, hide = true)]
    child: Option<System>,
    /// Internal: where a child writes its result.
    #[arg(long, hide = true)]
    child_out: Option<PathBuf>,
    /// Internal: whether the child has a network namespace of its own.
    #[arg(long, hide = true)]
    child_isolated: bool,
}

type Res<T> = Result<T, String>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .try_init();
    let outcome = if !cli.plot.is_empty() {
        plot(&cli)
    } else if let Some(system) = cli.child {
        run_child(&cli, system)
    } else {
        run_parent(&cli)
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("peerkv-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_quorum(cli: &Cli) -> usize {
    peerkv::placement::majority(cli.replication.min(cli.nodes.max(1)))
}

fn params(cli: &Cli, fd_high_water: usize) -> Params {
    Params {
        nodes: cli.nodes,
        keys: cli.keys,
        value_size: cli.value_size,
        concurrency: cli.concurrency,
        concurrent_ops: cli.concurrent_ops.unwrap_or(2 * cli.keys),
        replication: cli.replication,
        write_quorum: write_quorum(cli),
        read_quorum: write_quorum(cli),
        kad_replication: cli.kad_replication,
        seed: cli.seed,
        op_timeout_s: cli.timeout,
        idle_timeout_s: cli.idle_timeout,
        kad_lazy: cli.kad_lazy,
        fd_high_water,
    }
}

fn check(cli: &Cli) -> Res<()> {
    if cli.nodes < 2 {
        return Err("--nodes must be at least 2 (a get needs a peer without a copy)".into());
    }
    if cli.keys == 0 || cli.concurrency == 0 {
        return Err("--keys and --concurrency must be at least 1".into());
    }
    if cli.replication == 0 || cli.kad_replication == 0 {
        return Err("--replication and --kad-replication must be at least 1".into());
    }
    for (name, v) in [("--timeout", cli.timeout), ("--idle-timeout", cli.idle_timeout)] {
        if !(v.is_finite() && v > 0.0 && v <= 3600.0) {
            return Err(format!("{name} must be above 0 and at most 3600 s"));
        }
    }
    Ok(())
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Runs one system here and writes its result for the parent.
fn run_child(cli: &Cli, system: System) -> Res<()> {
    check(cli)?;
    let out = cli.child_out.clone().ok_or("--child needs --child-out")?;
    let limit = sys::raise_nofile_limit() as usize;
    let fd_high_water = cli.fd_high_water.unwrap_or(limit * 7 / 10);
    let p = params(cli, fd_high_water);
    let w = workload::Workload {
        system,
        nodes: cli.nodes,
        keys: cli.keys,
        concurrency: cli.concurrency,
        concurrent_ops: p.concurrent_ops,
        seed: cli.seed,
        peer: PeerParams {
            replication: cli.replication,
            kad_replication: NonZeroUsize::new(cli.kad_replication).ok_or("--kad-replication 0")?,
            op_timeout: secs(cli.timeout),
            idle_timeout: secs(cli.idle_timeout),
            kad_lazy: cli.kad_lazy,
            value_size: cli.value_size,
            keys: cli.keys,
        },
        write_quorum: NonZeroUsize::new(p.write_quorum).ok_or("write quorum 0")?,
        settle_timeout: secs(cli.settle_timeout.unwrap_or(60.0 + cli.nodes as f64 / 5.0)),
        fd_high_water,
        isolated: cli.child_isolated,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let result = runtime.block_on(workload::run(&w))?;
    let json = serde_json::to_vec_pretty(&result).map_err(|e| e.to_string())?;
    std::fs::write(&out, json).map_err(|e| format!("{}: {e}", out.display()))?;
    // Peers that did not stop in time must not hold the process open.
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

fn child_args(cli: &Cli, system: System, out: &Path, isolated: bool) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "--child".into(),
        system.name().into(),
        "--child-out".into(),
        out.display().to_string(),
        "--nodes".into(),
        cli.nodes.to_string(),
        "--keys".into(),
        cli.keys.to_string(),
        "--value-size".into(),
        cli.value_size.to_string(),
        "--concurrency".into(),
        cli.concurrency.to_string(),
        "--replication".into(),
        cli.replication.to_string(),
        "--kad-replication".into(),
        cli.kad_replication.to_string(),
        "--seed".into(),
        cli.seed.to_string(),
        "--timeout".into(),
        cli.timeout.to_string(),
        "--idle-timeout".into(),
        cli.idle_timeout.to_string(),
    ];
    let optional = [
        ("--concurrent-ops", cli.concurrent_ops.map(|v| v.to_string())),
        ("--settle-timeout", cli.settle_timeout.map(|v| v.to_string())),
        ("--fd-high-water", cli.fd_high_water.map(|v| v.to_string())),
    ];
    for (flag, value) in optional {
        if let Some(v) = value {
            a.push(flag.into());
            a.push(v);
        }
    }
    if cli.kad_lazy {
        a.push("--kad-lazy".into());
    }
    if isolated {
        a.push("--child-isolated".into());
    }
    a
}

/// Runs each system in a child process and assembles the document.
fn run_parent(cli: &Cli) -> Res<()> {
    check(cli)?;
    let systems = match cli.system {
        Systems::Peerkv => vec![System::Peerkv],
        Systems::Kad => vec![System::Kad],
        Systems::Both => vec![System::Peerkv, System::Kad],
    };
    let isolated = match cli.isolate {
        Isolate::Off => false,
        Isolate::Auto => child::netns_available(),
        Isolate::On => {
            if !child::netns_available() {
                return Err("--isolate on: cannot create a network namespace here (needs root, unshare and ip)".into());
            }
            true
        }
    };
    let limit = sys::raise_nofile_limit();
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let mut doc = RunDoc {
        schema: report::SCHEMA.into(),
        params: params(cli, cli.fd_high_water.unwrap_or(limit as usize * 7 / 10)),
        machine: Machine {
            cores: std::thread::available_parallelism().map_or(0, NonZeroUsize::get),
            kernel: sys::kernel(),
            nofile_limit: limit,
            profile: if cfg!(debug_assertions) { "debug" } else { "release" }.into(),
            peerkv_version: env!("CARGO_PKG_VERSION").into(),
            started_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        },
        ..RunDoc::default()
    };
    let mut failures = Vec::new();
    for system in systems {
        let out = std::env::temp_dir().join(format!(
            "peerkv-bench-{}-{}.json",
            std::process::id(),
            system.name()
        ));
        let args = child_args(cli, system, &out, isolated);
        eprintln!(
            "peerkv-bench: {} with N = {}, K = {}{}",
            system.name(),
            cli.nodes,
            cli.keys,
            if isolated { " (own network namespace)" } else { "" }
        );
        let ran = child::run_child(&exe, &args, isolated, Duration::from_secs(cli.run_timeout));
        let read = ran.and_then(|()| {
            let text = std::fs::read(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", out.display()))
        });
        let _ = std::fs::remove_file(&out);
        // A system that fails or runs past --run-timeout is reported as such; the other
        // system's figures are kept.
        match read {
            Ok(result) => doc.systems.push(result),
            Err(e) => {
                eprintln!("peerkv-bench: {}: {e}", system.name());
                failures.push(format!("{}: {e}", system.name()));
            }
        }
    }
    doc.compute_ratios();
    doc.not_measured = vec![
        "lookup hops of libp2p-kad: it reports requests per query, not hops (peerkv reports the hops of its gets: hops_per_op)".into(),
    ];
    doc.not_measured.extend(failures.iter().map(|f| format!("no figures for {f}")));
    let table = report::markdown(&doc);
    println!("{table}");
    if let Some(ratios) = &doc.ratios {
        println!(
            "peerkv / kad: get median {}, get p99 {}",
            ratios.get_median.map_or_else(|| "–".into(), |r| format!("{r:.2}")),
            ratios.get_p99.map_or_else(|| "–".into(), |r| format!("{r:.2}"))
        );
    }
    if let Some(path) = &cli.out {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let json = serde_json::to_vec_pretty(&doc).map_err(|e| e.to_string())?;
        std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display()))?;
        let md = path.with_extension("md");
        std::fs::write(&md, table).map_err(|e| format!("{}: {e}", md.display()))?;
        eprintln!("peerkv-bench: wrote {} and {}", path.display(), md.display());
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// Plot mode: several documents → one SVG and one Markdown file.
fn plot(cli: &Cli) -> Res<()> {
    let mut docs = Vec::new();
    let mut opendht = Vec::new();
    for path in &cli.plot {
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let value: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(o) = report::OpenDht::from_json(&value) {
            opendht.push(o);
            continue;
        }
        let doc: RunDoc =
            serde_json::from_value(value).map_err(|e| format!("{}: {e}", path.display()))?;
        docs.push(doc);
    }
    docs.sort_by_key(|d| d.params.nodes);
    opendht.sort_by_key(|o| o.nodes);
    for path in [&cli.svg, &cli.table] {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
    }
    report::plot(&docs, &opendht, &cli.svg)?;
    std::fs::write(&cli.table, report::markdown_all(&docs, &opendht))
        .map_err(|e| format!("{}: {e}", cli.table.display()))?;
    eprintln!("peerkv-bench: wrote {} and {}", cli.svg.display(), cli.table.display());
    Ok(())
}
