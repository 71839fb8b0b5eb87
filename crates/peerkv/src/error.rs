//! The library's error type. Messages are lower case, say what happened and what to do, and
//! carry the numbers a user needs.

use std::time::Duration;

use libp2p::{Multiaddr, PeerId};

use crate::record::RecordError;

/// Result alias for peerkv operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a peerkv operation can fail with.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration does not hold together.
    #[error("bad configuration: {0}")]
    Config(String),
    /// The value is larger than `max_value_size`; nothing was sent.
    #[error("value too large: {size} bytes (limit {limit}, --max-value-size)")]
    ValueTooLarge {
        /// Size of the value.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The key is empty, too long, or belongs to another peer; nothing was sent.
    #[error("bad key: {0}")]
    BadKey(RecordError),
    /// No other peer is known, so there is nowhere to store or read from.
    #[error("no peers yet: start with --bootstrap ADDR or wait for mDNS{}", known_suffix(*.known))]
    NoPeers {
        /// Peers in the routing table (none of them answered when this is above 0).
        known: usize,
    },
    /// Fewer replicas acknowledged than the quorum needs.
    #[error(
        "quorum not met: {acked} of {replicas} replicas {} (needed {needed}); {known} peers known — wait for more peers or lower {}{}",
        verb(.op), quorum_flag(.op), detail_suffix(.failures)
    )]
    QuorumNotMet {
        /// `put`, `del` or `get`.
        op: &'static str,
        /// Replicas that acknowledged (or answered a get).
        acked: usize,
        /// Replicas needed.
        needed: usize,
        /// Replicas chosen.
        replicas: usize,
        /// Peers in the routing table.
        known: usize,
        /// What the others said or why they could not be reached (first few).
        failures: Vec<String>,
    },
    /// The operation ran out of time.
    #[error("timed out after {:.1} s: {acked} of {needed} needed replicas answered{} — check that peers are reachable or raise --timeout", .after.as_secs_f64(), detail_suffix(.failures))]
    Timeout {
        /// How long it ran.
        after: Duration,
        /// Replies received.
        acked: usize,
        /// Replies needed.
        needed: usize,
        /// What went wrong with the others (first few).
        failures: Vec<String>,
    },
    /// A dial or bootstrap address could not be reached.
    #[error("cannot reach {addr}: {reason}")]
    Unreachable {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// A bootstrap address lacks the `/p2p/PEERID` suffix.
    #[error("bootstrap address {0} has no /p2p/PEERID at its end: copy the full address a peer prints at start")]
    NoPeerIdInAddr(Multiaddr),
    /// Listening on an address failed.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// Another peer runs on this data directory.
    #[error("data directory {} is in use by another peerkv process — give a second peer on this machine its own --data-dir DIR, or run it with --ephemeral", .0.display())]
    DataDirLocked(std::path::PathBuf),
    /// The data directory cannot be used (foreign, corrupt, unreadable); it was left as it is.
    #[error("cannot use data directory {}: {reason} — it was left untouched; pick another --data-dir or --ephemeral", .dir.display())]
    DataDir {
        /// The directory.
        dir: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Building the transport or a behaviour failed.
    #[error("cannot start the swarm: {0}")]
    Swarm(String),
    /// A peer answered a raw request with something that is not an answer.
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// Signing failed (never for Ed25519 keys).
    #[error("cannot sign: {0}")]
    Signing(String),
    /// The node is shutting down or has stopped.
    #[error("the node has shut down")]
    Shutdown,
    /// Too many operations are in flight.
    #[error("busy: {0} operations in flight — retry shortly")]
    Busy(usize),
}

fn detail_suffix(failures: &[String]) -> String {
    if failures.is_empty() {
        String::new()
    } else {
        format!(" [{}]", failures.join("; "))
    }
}

fn verb(op: &str) -> &'static str {
    if op == "get" {
        "answered"
    } else {
        "acknowledged"
    }
}

fn quorum_flag(op: &str) -> &'static str {
    if op == "get" {
        "--read-quorum"
    } else {
        "--write-quorum"
    }
}

fn known_suffix(known: usize) -> String {
    if known > 0 {
        format!(" ({known} in the routing table; none reachable that speaks /peerkv/kv/1.0.0)")
    } else {
        String::new()
    }
}

/// The last characters of a peer id, enough to tell peers apart in a message (`…Ab3xYz9q`).
pub fn short_id(peer: &PeerId) -> String {
    let s = peer.to_base58();
    let tail = s.len().saturating_sub(8);
    format!("…{}", &s[tail..])
}
