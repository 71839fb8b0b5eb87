//! `peerkv-bench`: peerkv measured side by side with a plain libp2p-kad DHT.
//!
//! Starts N peers of each system in one process on 127.0.0.1 (mDNS off), lets the overlay
//! settle, then runs the same seeded workload on each: K puts from random peers, K gets from
//! peers that hold no copy, K gets from peers that do (reported apart), K lookups, and gets at
//! concurrency C. The systems: `peerkv` (a get waits for Q of R replicas) and `kad` (libp2p-kad,
//! the first record answers), and at equal consistency beside them `peerkv-q1` (read quorum 1)
//! and `kad-q3` (libp2p-kad waiting for records from Q distinct peers). Each system runs in a
//! child process of its own (in a network namespace of its own when possible), so memory, CPU
//! and wire figures are its alone. Writes one JSON document and a Markdown table per seed, and
//! with several seeds a merged document (medians and spreads); `--plot` draws get latency
//! against N from several documents, merging runs of one configuration.
//!
//! ```text
//! cargo run --release --bin peerkv-bench -- --nodes 100 --keys 200 --system all --seed 1,2,3 --out bench/n100.json
//! cargo run --release --bin peerkv-bench -- --plot bench/n*.json --svg bench/get_latency.svg --table bench/results.md
//! ```
//!
//! Layout: `peer.rs` (one interface over the systems), `kad_node.rs` (the libp2p-kad
//! baseline peer) and `quorum_read.rs` (its get's stop rule), `workload.rs` (phases and
//! measurement), `sys.rs` (`/proc` readings), `child.rs` (child processes and network
//! namespaces), `report/` (JSON, merging over seeds, Markdown, SVG).

mod child;
mod kad_node;
mod peer;
mod quorum_read;
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
use report::{Machine, MergedDoc, Params, RunDoc};

/// jemalloc, not the system allocator: it keeps its bookkeeping out of the blocks it hands out,
/// so memory allocated and never written is never mapped in (libp2p-kad allocates 256 buckets of
/// 20 entries for each peer, ~1.7 MiB, and fills a handful), and it hands freed memory back
/// to the system over time.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Which systems a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Systems {
    /// peerkv's value protocol (a get waits for Q of R).
    Peerkv,
    /// The libp2p-kad baseline (a get answers with the first record).
    Kad,
    /// peerkv with read quorum 1.
    #[value(name = "peerkv-q1")]
    PeerkvQ1,
    /// libp2p-kad waiting for records from Q distinct peers.
    #[value(name = "kad-q3")]
    KadQ3,
    /// peerkv and kad, one after the other, same parameters.
    Both,
    /// All four: peerkv-q1, kad, peerkv, kad-q3 (each pair at equal consistency side by side).
    All,
}

impl Systems {
    /// The systems, in the order of the document's columns.
    fn list(self) -> Vec<System> {
        match self {
            Systems::Peerkv => vec![System::Peerkv],
            Systems::Kad => vec![System::Kad],
            Systems::PeerkvQ1 => vec![System::PeerkvQ1],
            Systems::KadQ3 => vec![System::KadQ3],
            Systems::Both => vec![System::Peerkv, System::Kad],
            Systems::All => vec![System::PeerkvQ1, System::Kad, System::Peerkv, System::KadQ3],
        }
    }
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
    /// Seeds of keys, values, putters, getters and the bootstrap tree: `1,2,3` runs the whole
    /// benchmark once per seed (JSON and table per seed beside --out as NAME-seedS.json, and the
    /// merged document with medians and spreads at --out).
    #[arg(long, value_delimiter = ',', num_args = 1.., default_value = "1")]
    seed: Vec<u64>,
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
    /// Give every peerkv peer a data directory (in a temporary folder, removed after the run):
    /// each write is committed to disk (redb, fsync, group commit) before it is acknowledged.
    /// Without it peerkv's peers run in memory. The libp2p-kad baseline always runs in memory.
    #[arg(long)]
    durable: bool,
    /// Longest wait for the overlay to settle, seconds (default: 60 + N / 5).
    #[arg(long)]
    settle_timeout: Option<f64>,
    /// How long idle traffic is measured once settled, seconds (default: one liveness probe
    /// interval, 30 s, so that each connection is probed about once in it).
    #[arg(long)]
    idle_window: Option<f64>,
    /// Open descriptors above which the harness waits for idle connections to close before
    /// starting more work (default: 70 % of the open-files limit).
    #[arg(long)]
    fd_high_water: Option<usize>,
    /// Delay every byte each TCP connection of every peer reads by this many milliseconds (a
    /// dial waits twice this first), for all systems of the run: a round trip (RTT) of twice
    /// this on loopback, as on a wide-area link. The report then gives latencies in round trips
    /// too. Peers listen on TCP only, so all their traffic is delayed. Default: 0, none.
    #[arg(long, default_value_t = 0.0, value_name = "MS")]
    link_delay: f64,
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

fn params(cli: &Cli, seed: u64, fd_high_water: usize) -> Params {
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
        seed,
        op_timeout_s: cli.timeout,
        idle_timeout_s: cli.idle_timeout,
        kad_lazy: cli.kad_lazy,
        durable: cli.durable,
        link_delay_ms: cli.link_delay,
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
    let max_delay = peerkv::config::MAX_LINK_DELAY.as_secs_f64() * 1000.0;
    if !(cli.link_delay.is_finite() && (0.0..=max_delay).contains(&cli.link_delay)) {
        return Err(format!("--link-delay must be between 0 and {max_delay} ms"));
    }
    let mut seeds = cli.seed.clone();
    seeds.sort_unstable();
    seeds.dedup();
    if seeds.len() != cli.seed.len() {
        return Err(format!(
            "--seed {:?} names a seed twice: each seed's run writes a file of its own",
            cli.seed
        ));
    }
    Ok(())
}

/// peerkv's warm connections per peer in the bench: the node's default up to 200 peers; none
/// above. N peers in one process share its descriptors (two a connection) and its two cores,
/// and N × 128 warm connections (a million descriptors at N = 1,000, each pinged every 10 s)
/// are past both; a deployment of one peer per process has no such limit.
fn warm_connections(nodes: usize) -> usize {
    if nodes <= 200 {
        peerkv::config::DEFAULT_WARM_CONNECTIONS
    } else {
        0
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Runs one system here and writes its result for the parent.
fn run_child(cli: &Cli, system: System) -> Res<()> {
    check(cli)?;
    let out = cli.child_out.clone().ok_or("--child needs --child-out")?;
    let seed = match cli.seed.as_slice() {
        [seed] => *seed,
        _ => return Err("--child runs one seed".into()),
    };
    let limit = sys::raise_nofile_limit() as usize;
    let fd_high_water = cli.fd_high_water.unwrap_or(limit * 7 / 10);
    let p = params(cli, seed, fd_high_water);
    // The peers' data directories, removed when this returns.
    let data = match cli.durable && !system.is_kad() {
        true => Some(tempfile::Builder::new().prefix("peerkv-bench-").tempdir().map_err(|e| {
            format!("cannot make a temporary folder for the data directories: {e}")
        })?),
        false => None,
    };
    let w = workload::Workload {
        system,
        nodes: cli.nodes,
        keys: cli.keys,
        concurrency: cli.concurrency,
        concurrent_ops: p.concurrent_ops,
        seed,
        peer: PeerParams {
            replication: cli.replication,
            kad_replication: NonZeroUsize::new(cli.kad_replication).ok_or("--kad-replication 0")?,
            op_timeout: secs(cli.timeout),
            idle_timeout: secs(cli.idle_timeout),
            kad_lazy: cli.kad_lazy,
            value_size: cli.value_size,
            keys: cli.keys,
            read_quorum: NonZeroUsize::new(p.read_quorum).ok_or("read quorum 0")?,
            warm_connections: warm_connections(cli.nodes),
            data_root: data.as_ref().map(|d| d.path().to_path_buf()),
            link_delay: secs(cli.link_delay / 1000.0),
        },
        write_quorum: NonZeroUsize::new(p.write_quorum).ok_or("write quorum 0")?,
        settle_timeout: secs(cli.settle_timeout.unwrap_or(60.0 + cli.nodes as f64 / 5.0)),
        fd_high_water,
        isolated: cli.child_isolated,
        idle_window: cli.idle_window.map_or(peerkv::alive::DEFAULT_INTERVAL, secs),
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

fn child_args(cli: &Cli, system: System, seed: u64, out: &Path, isolated: bool) -> Vec<String> {
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
        seed.to_string(),
        "--timeout".into(),
        cli.timeout.to_string(),
        "--idle-timeout".into(),
        cli.idle_timeout.to_string(),
    ];
    let optional = [
        ("--concurrent-ops", cli.concurrent_ops.map(|v| v.to_string())),
        ("--settle-timeout", cli.settle_timeout.map(|v| v.to_string())),
        ("--idle-window", cli.idle_window.map(|v| v.to_string())),
        ("--fd-high-water", cli.fd_high_water.map(|v| v.to_string())),
        ("--link-delay", (cli.link_delay > 0.0).then(|| cli.link_delay.to_string())),
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
    if cli.durable {
        a.push("--durable".into());
    }
    if isolated {
        a.push("--child-isolated".into());
    }
    a
}

/// The order the systems of the `index`-th seed run in: as listed for even indices, reversed
/// for odd ones, so that over several seeds no system always runs first (or always right after
/// another) while the machine drifts.
fn run_order(systems: &[System], index: usize) -> Vec<System> {
    let mut order = systems.to_vec();
    if index % 2 == 1 {
        order.reverse();
    }
    order
}

/// Where the run of `seed` goes when several seeds run: `DIR/NAME-seedS.json` beside `out`.
fn seed_path(out: &Path, seed: u64) -> PathBuf {
    let stem = out.file_stem().map_or_else(|| "bench".into(), |s| s.to_string_lossy());
    out.with_file_name(format!("{stem}-seed{seed}.json"))
}

/// Writes `json` to `path` and `table` beside it (`.md`), creating the folder.
fn write_out(path: &Path, json: Vec<u8>, table: &str) -> Res<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    let md = path.with_extension("md");
    std::fs::write(&md, table).map_err(|e| format!("{}: {e}", md.display()))?;
    eprintln!("peerkv-bench: wrote {} and {}", path.display(), md.display());
    Ok(())
}

/// Everything one seed's run needs besides the command line.
struct RunEnv {
    exe: PathBuf,
    isolated: bool,
    nofile_limit: u64,
}

/// Runs each system for `seed` in a child process and assembles the document; the systems
/// that failed are listed in the second value.
fn run_seed(cli: &Cli, env: &RunEnv, seed: u64, index: usize) -> (RunDoc, Vec<String>) {
    let limit = env.nofile_limit;
    let mut doc = RunDoc {
        schema: report::SCHEMA.into(),
        params: params(cli, seed, cli.fd_high_water.unwrap_or(limit as usize * 7 / 10)),
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
    let systems = cli.system.list();
    let mut failures = Vec::new();
    for system in run_order(&systems, index) {
        let out = std::env::temp_dir().join(format!(
            "peerkv-bench-{}-{}-seed{seed}.json",
            std::process::id(),
            system.name()
        ));
        let args = child_args(cli, system, seed, &out, env.isolated);
        eprintln!(
            "peerkv-bench: {} with N = {}, K = {}, seed {seed}{}",
            system.name(),
            cli.nodes,
            cli.keys,
            if env.isolated { " (own network namespace)" } else { "" }
        );
        let ran =
            child::run_child(&env.exe, &args, env.isolated, Duration::from_secs(cli.run_timeout));
        let read = ran.and_then(|()| {
            let text = std::fs::read(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", out.display()))
        });
        let _ = std::fs::remove_file(&out);
        // A system that fails or runs past --run-timeout is reported as such; the other
        // systems' figures are kept.
        match read {
            Ok(result) => doc.systems.push(result),
            Err(e) => {
                eprintln!("peerkv-bench: {} (seed {seed}): {e}", system.name());
                failures.push(format!("{} (seed {seed}): {e}", system.name()));
            }
        }
    }
    // The document lists the systems in the order of `--system`, whatever order they ran in.
    doc.systems.sort_by_key(|s| systems.iter().position(|x| x.name() == s.system));
    doc.compute_ratios();
    doc.not_measured = vec![
        "lookup hops of libp2p-kad: it reports requests per query, not hops (peerkv reports the hops of its gets: hops_per_op)".into(),
    ];
    doc.not_measured.extend(failures.iter().map(|f| format!("no figures for {f}")));
    (doc, failures)
}

/// The get ratios of each comparison in `doc`, one line each.
fn ratio_lines(doc: &RunDoc) -> String {
    let show = |r: Option<f64>| r.map_or_else(|| "–".into(), |r| format!("{r:.2}"));
    let mut lines = String::new();
    let legacy = doc.ratios.iter().map(|r| ("peerkv / kad", r));
    for (name, r) in legacy.chain(doc.pairs.iter().map(|p| (p.name.as_str(), &p.ratios))) {
        lines.push_str(&format!(
            "{name}: get median {}, get p99 {}\n",
            show(r.get_median),
            show(r.get_p99)
        ));
    }
    lines
}

/// Runs every seed, each system in a child process, and writes the documents.
fn run_parent(cli: &Cli) -> Res<()> {
    check(cli)?;
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
    let env = RunEnv {
        exe: std::env::current_exe().map_err(|e| format!("own path: {e}"))?,
        isolated,
        nofile_limit: sys::raise_nofile_limit(),
    };
    let several = cli.seed.len() > 1;
    let mut runs = Vec::new();
    let mut failures = Vec::new();
    for (index, seed) in cli.seed.iter().enumerate() {
        let (doc, failed) = run_seed(cli, &env, *seed, index);
        failures.extend(failed);
        let table = report::markdown(&doc);
        println!("{table}");
        print!("{}", ratio_lines(&doc));
        if let Some(out) = &cli.out {
            let path = if several { seed_path(out, *seed) } else { out.clone() };
            let json = serde_json::to_vec_pretty(&doc).map_err(|e| e.to_string())?;
            write_out(&path, json, &table)?;
        }
        runs.push(doc);
    }
    if several {
        let merged = report::merge(&runs.iter().collect::<Vec<_>>());
        let mut table = report::markdown_merged(&merged);
        println!("\n{table}");
        for run in &runs {
            table.push('\n');
            table.push_str(&report::markdown(run));
        }
        if let Some(out) = &cli.out {
            let doc = MergedDoc { schema: report::MERGED_SCHEMA.into(), merged, runs };
            let json = serde_json::to_vec_pretty(&doc).map_err(|e| e.to_string())?;
            write_out(out, json, &table)?;
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

/// Plot mode: several documents → one SVG and one Markdown file. A merged document stands for
/// its runs; a run given twice (its own file and in a merged document) counts once.
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
        let merged =
            value.get("schema").and_then(serde_json::Value::as_str) == Some(report::MERGED_SCHEMA);
        if merged {
            let doc: MergedDoc =
                serde_json::from_value(value).map_err(|e| format!("{}: {e}", path.display()))?;
            docs.extend(doc.runs);
        } else {
            let doc: RunDoc =
                serde_json::from_value(value).map_err(|e| format!("{}: {e}", path.display()))?;
            docs.push(doc);
        }
    }
    // Stable: of one N, the document given first stays first (its configuration is plotted).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_seeds_run_the_systems_in_reverse() {
        let all = Systems::All.list();
        assert_eq!(run_order(&all, 0), all);
        let mut reversed = all.clone();
        reversed.reverse();
        assert_eq!(run_order(&all, 1), reversed);
    }

    #[test]
    fn each_seed_writes_beside_the_merged_document() {
        let out = Path::new("/tmp/b/n100.json");
        assert_eq!(seed_path(out, 2), Path::new("/tmp/b/n100-seed2.json"));
    }

    #[test]
    fn seeds_parse_as_a_comma_list() {
        let cli =
            Cli::try_parse_from(["peerkv-bench", "--seed", "1,2,3", "--system", "all"]).unwrap();
        assert_eq!(cli.seed, [1, 2, 3]);
        assert_eq!(cli.system, Systems::All);
        assert!(check(&cli).is_ok());
        let twice = Cli::try_parse_from(["peerkv-bench", "--seed", "1,1"]).unwrap();
        assert!(check(&twice).is_err());
    }
}
