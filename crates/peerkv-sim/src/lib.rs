//! # peerkv-sim — many peerkv cores in one process, in virtual time
//!
//! The simulator runs N copies of the node's protocol core ([`peerkv::core`]: `PutOp`,
//! `GetOp`, `replica::serve`, `Upkeep`) — the same code the real node's event loop drives —
//! with no libp2p and no real time. What stands in for the rest:
//!
//! - **Network** ([`sim`]): one-way latency per link drawn once from 1–10 ms (uniform) with
//!   ±5 % jitter per message; optional loss; partitions (messages across the cut are dropped);
//!   a crashed peer refuses connections (the sender hears it one latency later), a dropped
//!   request fails at the request timeout (60 % of the operation's 10 s).
//! - **Routing** ([`routing`]): Kademlia's k-buckets (20 per bucket), filled only from contact
//!   as the real node fills them (identify on a connection), never into a full bucket; a peer
//!   leaves a table when a request to it fails, and a rejoin timer redials peers lost that way.
//!   The overlay is built by each peer joining through a random earlier one with Kademlia
//!   lookups of its own id and of random ids.
//! - **Workload**: puts, gets and deletes of a key space, from random live peers at random
//!   times; then every key written is read once more.
//! - **Faults** (`--faults churn,partition,skew`): 10 % of peers crash per simulated minute and
//!   come back 5–30 s later with their store; the overlay split in two halves for a minute; one
//!   peer's clock two minutes ahead.
//! - **History checker** ([`checker`]): acknowledged writes lost, reads back in time,
//!   tombstones resurrected.
//!
//! The same seed gives the same run.

pub mod checker;
pub mod node;
pub mod report;
pub mod routing;
pub mod sim;

use std::time::Duration;

pub use report::Report;
pub use sim::run;

/// Which faults a run injects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Faults {
    /// 10 % of peers crash and restart per simulated minute (from 60 s to 180 s).
    pub churn: bool,
    /// The overlay splits into two halves from 60 s to 120 s, then heals.
    pub partition: bool,
    /// One peer's clock runs 2 minutes ahead.
    pub skew: bool,
}

impl Faults {
    /// Whether any fault is on.
    pub fn any(&self) -> bool {
        self.churn || self.partition || self.skew
    }

    /// Parses `churn,partition,skew` (any subset, comma-separated; `none` for none).
    ///
    /// # Errors
    /// An unknown fault name.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut f = Faults::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "churn" => f.churn = true,
                "partition" => f.partition = true,
                "skew" => f.skew = true,
                "none" => {}
                other => {
                    return Err(format!(
                        "unknown fault {other:?}: use churn, partition, skew (comma-separated)"
                    ))
                }
            }
        }
        Ok(f)
    }
}

/// One run's settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Peers.
    pub nodes: usize,
    /// Client operations (puts, gets, deletes), not counting the final reads.
    pub ops: usize,
    /// The seed of everything random.
    pub seed: u64,
    /// Faults to inject.
    pub faults: Faults,
    /// R.
    pub replication: usize,
    /// W (`None`: a majority).
    pub write_quorum: Option<usize>,
    /// Q (`None`: a majority).
    pub read_quorum: Option<usize>,
    /// How long the workload runs (default: 60 s, or 300 s with faults).
    pub duration: Option<Duration>,
    /// Keys the workload uses (default: ops / 10, at least 10).
    pub keys: Option<usize>,
    /// Share of messages lost (0 to 1).
    pub loss: f64,
}

impl SimConfig {
    /// Defaults for `nodes` peers, `ops` operations and `seed`.
    pub fn new(nodes: usize, ops: usize, seed: u64) -> Self {
        Self {
            nodes,
            ops,
            seed,
            faults: Faults::default(),
            replication: 5,
            write_quorum: None,
            read_quorum: None,
            duration: None,
            keys: None,
            loss: 0.0,
        }
    }

    /// How long the workload runs.
    pub fn workload_span(&self) -> Duration {
        self.duration.unwrap_or(if self.faults.any() {
            Duration::from_secs(300)
        } else {
            Duration::from_secs(60)
        })
    }
}
