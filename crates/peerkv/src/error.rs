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
    #[error("no peers yet: {}", no_peers_hint(*.known, *.mdns, *.bootstrap))]
    NoPeers {
        /// Peers in the routing table (none of them answered when this is above 0).
        known: usize,
        /// Whether mDNS discovery runs (then peers on the LAN may still turn up by themselves).
        mdns: bool,
        /// `--bootstrap` addresses this peer started with (they did not answer, or left).
        bootstrap: usize,
    },
    /// Peers are known, but none of those tried could be reached.
    #[error(
        "{op} failed: none of the {known} {} known could be reached{} — check that they are running, or join through another with `bootstrap MULTIADDR/p2p/PEERID`",
        if *.known == 1 { "peer" } else { "peers" }, detail_suffix(.failures)
    )]
    NoReplicas {
        /// `put`, `del` or `get`.
        op: &'static str,
        /// Peers in the routing table.
        known: usize,
        /// Why each one tried could not be reached (first few).
        failures: Vec<String>,
    },
    /// Fewer replicas acknowledged than the quorum needs.
    #[error(
        "quorum not met: {acked} of {replicas} replicas {} (needed {needed}); {known} peers known — wait for more peers, or restart this peer with a lower {}{}{}",
        verb(.op), quorum_flag(.op), detail_suffix(.failures), kept_suffix(.op, *.acked)
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

fn no_peers_hint(known: usize, mdns: bool, bootstrap: usize) -> String {
    let mut hint = if known > 0 {
        format!("{known} in the routing table, none reachable that speaks /peerkv/kv/1.0.0 — ")
    } else {
        String::new()
    };
    if bootstrap > 0 {
        let peers = if bootstrap == 1 { "peer" } else { "peers" };
        hint.push_str(&format!(
            "the {bootstrap} --bootstrap {peers} did not answer or left; check the address, or join through another with `bootstrap MULTIADDR/p2p/PEERID`"
        ));
    } else {
        hint.push_str(
            "join through a running peer with `bootstrap MULTIADDR/p2p/PEERID` (an address it printed at start), or start with --bootstrap",
        );
    }
    if mdns {
        hint.push_str("; mDNS is on, so peers on this LAN also turn up by themselves");
    }
    hint
}

/// What a failed write leaves behind: the replicas that acknowledged keep the value.
fn kept_suffix(op: &str, acked: usize) -> String {
    match (op, acked) {
        ("get", _) | (_, 0) => String::new(),
        (_, 1) => ". The 1 replica that acknowledged keeps the write (a failed put is not undone)"
            .to_owned(),
        (_, n) => format!(
            ". The {n} replicas that acknowledged keep the write (a failed put is not undone)"
        ),
    }
}

/// The last characters of a peer id, enough to tell peers apart in a message (`…Ab3xYz9q`).
pub fn short_id(peer: &PeerId) -> String {
    let s = peer.to_base58();
    let tail = s.len().saturating_sub(8);
    format!("…{}", &s[tail..])
}

/// An error and its sources as one line: `outer: inner: innermost`. Parts that say nothing
/// (libp2p's `TransportError::Other` displays as an empty string) or only repeat a part already
/// written are left out, so a message never ends in a bare colon nor says the same thing twice.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        let text = e.to_string();
        let text = text.trim();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(text)) {
            parts.push(text.to_owned());
        }
        next = e.source();
    }
    if parts.is_empty() {
        "no reason given".to_owned()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn a_chain_skips_empty_and_repeated_parts() {
        let e = Layer("", Some(Box::new(Layer("Address already in use (os error 98)", None))));
        assert_eq!(chain(&e), "Address already in use (os error 98)");
        let e = Layer(
            "dial failed: connection refused",
            Some(Box::new(Layer(
                "connection refused",
                Some(Box::new(Layer("os error 111", None))),
            ))),
        );
        assert_eq!(chain(&e), "dial failed: connection refused: os error 111");
        assert_eq!(chain(&Layer("", None)), "no reason given");
    }
}
