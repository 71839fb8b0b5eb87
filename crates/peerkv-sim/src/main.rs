//! `peerkv-sim`: runs N peerkv cores in one process in virtual time and reports, per kind of
//! operation, success, latency in round trips, hops, messages, bytes and replica overlap, and
//! what the history checker found.
//!
//! ```text
//! cargo run --release -p peerkv-sim -- --nodes 1000 --ops 10000 --seed 1
//! cargo run --release -p peerkv-sim -- --nodes 1000 --ops 10000 --seed 1 --faults churn,partition,skew --json
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use peerkv_sim::{Faults, SimConfig};

/// Simulate a peerkv overlay in virtual time (no network, no libp2p: the protocol core alone).
#[derive(Debug, Parser)]
#[command(name = "peerkv-sim", version)]
struct Cli {
    /// Peers.
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// Client operations (45 % puts, 45 % gets, 10 % deletes), then one read of every key
    /// written.
    #[arg(long, default_value_t = 10_000)]
    ops: usize,
    /// Seed: the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Faults, comma-separated: churn (10 % of peers crash and restart per simulated minute,
    /// 60–180 s), partition (two halves for 60–120 s), skew (one clock 2 minutes ahead).
    #[arg(long, default_value = "none")]
    faults: String,
    /// Replication factor R.
    #[arg(short = 'r', long, default_value_t = 5)]
    replication: usize,
    /// Write quorum W (default: a majority).
    #[arg(long)]
    write_quorum: Option<usize>,
    /// Read quorum Q (default: a majority).
    #[arg(long)]
    read_quorum: Option<usize>,
    /// Simulated seconds the workload runs (default: 60, or 300 with faults).
    #[arg(long)]
    duration: Option<u64>,
    /// Keys the workload uses (default: ops / 10).
    #[arg(long)]
    keys: Option<usize>,
    /// Share of messages lost, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let faults = match Faults::parse(&cli.faults) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.nodes < 2
        || cli.replication == 0
        || cli.replication > 20
        || !(0.0..=1.0).contains(&cli.loss)
    {
        eprintln!("error: --nodes must be at least 2, -r between 1 and 20, --loss between 0 and 1");
        return ExitCode::from(2);
    }
    let cfg = SimConfig {
        faults,
        replication: cli.replication,
        write_quorum: cli.write_quorum,
        read_quorum: cli.read_quorum,
        duration: cli.duration.map(Duration::from_secs),
        keys: cli.keys,
        loss: cli.loss,
        ..SimConfig::new(cli.nodes, cli.ops, cli.seed)
    };
    let report = peerkv_sim::run(&cfg);
    if cli.json {
        match serde_json::to_string(&report) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        println!("{}", report.human());
    }
    ExitCode::SUCCESS
}
