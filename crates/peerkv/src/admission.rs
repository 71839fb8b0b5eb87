//! Admission control: what a peer takes in from others before it does any work for them.
//!
//! The network is not trusted and identities cost nothing, so every limit here bounds either
//! one connection, one peer, or the whole process:
//!
//! | what | bound | default | flag |
//! |---|---|---|---|
//! | connections, established | whole peer | 1,024 | `--max-connections` |
//! | connections to one peer | per peer | 4 | `--max-connections-per-peer` |
//! | connections being set up | each way | 128 | `--max-pending-connections` |
//! | new connections | process memory | refused above 80 % of the machine's | `--max-memory-percent` |
//! | value-protocol streams | per connection | 64 (libp2p's default: 100) | `--max-streams` |
//! | bytes of requests being read | whole peer | 64 MiB | `--request-budget` |
//! | time to read one request | per request | 3 s | `--read-timeout` |
//! | requests | per peer | 500 a second (bursts of 1,000) | `--peer-rate` |
//! | upkeep requests (Summary, Digest, StoreMany) | per peer | 10 a second (bursts of 50) | `--upkeep-rate` |
//! | upkeep requests | all known peers | 100 a second | (10 × `--upkeep-rate`) |
//! | upkeep requests | all strangers together | 5 a second | (`--upkeep-rate` / 2) |
//!
//! What a refused peer sees: a connection past a connection limit is closed during set-up
//! (its dial fails: "connection denied"); a stream past `--max-streams` is reset; a request that
//! does not fit the byte budget is read to its end without being kept and answered
//! [`Response::Rejected`](crate::Response::Rejected) ("busy: …"); one not read within the
//! deadline is dropped unanswered; one past a rate limit is answered `Rejected` ("rate limit:
//! …"), and its cost is not charged. A stranger is a peer neither in the routing table nor
//! named by `--bootstrap`: strangers share one upkeep budget, so that a flood of them cannot
//! starve the peers that replicate with us.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Default of [`Admission::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
/// Default of [`Admission::max_connections_per_peer`].
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: u32 = 4;
/// Default of [`Admission::max_pending_connections`].
pub const DEFAULT_MAX_PENDING_CONNECTIONS: u32 = 128;
/// Default of [`Admission::max_memory_percent`].
pub const DEFAULT_MAX_MEMORY_PERCENT: u8 = 80;
/// Default of [`Admission::max_streams`].
pub const DEFAULT_MAX_STREAMS: usize = 64;
/// Default of [`Admission::request_budget`]: 64 MiB.
pub const DEFAULT_REQUEST_BUDGET: usize = 64 << 20;
/// Default of [`Admission::read_timeout`].
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(3);
/// Default of [`Admission::peer_rate`].
pub const DEFAULT_PEER_RATE: u32 = 500;
/// Default of [`Admission::upkeep_rate`].
pub const DEFAULT_UPKEEP_RATE: u32 = 10;

/// The part of the request budget only requests of at most [`SMALL_REQUEST`] bytes may use:
/// while large requests hold the rest, gets, small puts and the members exchange still get in.
pub const SMALL_RESERVE: usize = 4 << 20;
/// A request up to this size may use [`SMALL_RESERVE`].
pub const SMALL_REQUEST: usize = 16 << 10;

/// The limits of [`Config::admission`](crate::Config::admission). Every field states its
/// default; the module documentation has them all in one table.
#[derive(Debug, Clone, PartialEq)]
pub struct Admission {
    /// Most established connections, both ways together. Default: 1,024.
    pub max_connections: u32,
    /// Most established connections with one peer. Default: 4 (two peers dialing each other
    /// at once make two).
    pub max_connections_per_peer: u32,
    /// Most connections being set up (TCP, Noise, Yamux), inbound and outbound each. Default:
    /// 128.
    pub max_pending_connections: u32,
    /// New connections are refused while this process uses more than this share of the
    /// machine's memory, in percent (libp2p-memory-connection-limits). Default: 80.
    pub max_memory_percent: u8,
    /// Most value-protocol streams open on one connection at once, both ways (a stream past it
    /// is reset). Default: 64.
    pub max_streams: usize,
    /// Most bytes held for requests still being read, all connections together. Default:
    /// 64 MiB. A request that does not fit is read without being kept and refused.
    pub request_budget: usize,
    /// Longest time to read one request, from its stream's start. Default: 3 s.
    pub read_timeout: Duration,
    /// Requests a peer may send a second (bursts of twice that). Default: 500.
    pub peer_rate: u32,
    /// Upkeep requests (Summary, Digest, StoreMany: each costs a scan or a batch of writes) a
    /// peer may send a second (bursts of five times that). Known peers together get ten times
    /// that, strangers together half of it (at least 1). Default: 10.
    pub upkeep_rate: u32,
}

impl Default for Admission {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_peer: DEFAULT_MAX_CONNECTIONS_PER_PEER,
            max_pending_connections: DEFAULT_MAX_PENDING_CONNECTIONS,
            max_memory_percent: DEFAULT_MAX_MEMORY_PERCENT,
            max_streams: DEFAULT_MAX_STREAMS,
            request_budget: DEFAULT_REQUEST_BUDGET,
            read_timeout: DEFAULT_READ_TIMEOUT,
            peer_rate: DEFAULT_PEER_RATE,
            upkeep_rate: DEFAULT_UPKEEP_RATE,
        }
    }
}

impl Admission {
    /// Checks that the limits hold together with the largest message a peer reads.
    ///
    /// # Errors
    /// The flag and what it must be.
    pub fn validate(&self, message_limit: u64) -> Result<(), String> {
        if self.max_connections == 0 {
            return Err("--max-connections must be at least 1".into());
        }
        if self.max_connections_per_peer == 0 {
            return Err("--max-connections-per-peer must be at least 1".into());
        }
        if self.max_pending_connections == 0 {
            return Err("--max-pending-connections must be at least 1".into());
        }
        if !(1..=100).contains(&self.max_memory_percent) {
            return Err(format!(
                "--max-memory-percent {} must be between 1 and 100",
                self.max_memory_percent
            ));
        }
        if !(1..=1024).contains(&self.max_streams) {
            return Err(format!("--max-streams {} must be between 1 and 1024", self.max_streams));
        }
        let least = message_limit.saturating_add(SMALL_RESERVE as u64);
        if (self.request_budget as u64) < least {
            return Err(format!(
                "--request-budget {} must be at least the largest request ({message_limit} bytes, from --max-value-size) plus {SMALL_RESERVE} kept for small ones: {least}",
                self.request_budget
            ));
        }
        if self.read_timeout < Duration::from_millis(100) || self.read_timeout.as_secs() > 3600 {
            return Err("--read-timeout must be between 0.1 s and one hour".into());
        }
        if self.peer_rate == 0 || self.upkeep_rate == 0 {
            return Err("--peer-rate and --upkeep-rate must be at least 1".into());
        }
        Ok(())
    }
}

/// Bytes held by requests still being read, shared by every connection of one peer (the
/// codec of each stream holds a clone). Never passes its limit: a reservation that would is
/// refused.
#[derive(Debug, Clone)]
pub struct ReadBudget {
    inner: Arc<BudgetInner>,
}

#[derive(Debug)]
struct BudgetInner {
    limit: usize,
    held: AtomicUsize,
    peak: AtomicUsize,
    refused: AtomicU64,
    timed_out: AtomicU64,
}

/// The counters of a [`ReadBudget`], for `stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BudgetCounters {
    /// The budget, in bytes.
    pub limit: usize,
    /// Bytes held now.
    pub held: usize,
    /// Most bytes ever held at once.
    pub peak: usize,
    /// Requests refused because they did not fit.
    pub refused: u64,
    /// Requests dropped because they were not read within the deadline.
    pub timed_out: u64,
}

impl ReadBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            inner: Arc::new(BudgetInner {
                limit,
                held: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
                refused: AtomicU64::new(0),
                timed_out: AtomicU64::new(0),
            }),
        }
    }

    /// Takes `n` more bytes for a request whose buffer will then be `total` bytes: only a
    /// small request may use the last [`SMALL_RESERVE`] bytes. Whether it fit.
    fn take(&self, n: usize, total: usize) -> bool {
        let ceiling = if total <= SMALL_REQUEST {
            self.inner.limit
        } else {
            self.inner.limit.saturating_sub(SMALL_RESERVE)
        };
        let taken = self.inner.held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            held.checked_add(n).filter(|after| *after <= ceiling)
        });
        match taken {
            Ok(before) => {
                self.inner.peak.fetch_max(before + n, Ordering::AcqRel);
                true
            }
            Err(_) => false,
        }
    }

    fn give(&self, n: usize) {
        self.inner.held.fetch_sub(n, Ordering::AcqRel);
    }

    /// Counts a request refused for want of room.
    fn refused(&self) {
        self.inner.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request dropped at the read deadline.
    pub(crate) fn timed_out(&self) {
        self.inner.timed_out.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn counters(&self) -> BudgetCounters {
        BudgetCounters {
            limit: self.inner.limit,
            held: self.inner.held.load(Ordering::Acquire),
            peak: self.inner.peak.load(Ordering::Acquire),
            refused: self.inner.refused.load(Ordering::Relaxed),
            timed_out: self.inner.timed_out.load(Ordering::Relaxed),
        }
    }
}

/// Requests refused by the rate limits, for `stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct GateCounters {
    /// Requests refused because their peer sent too many.
    pub peer_limited: u64,
    /// Upkeep requests refused by their peer's upkeep rate or a shared one.
    pub upkeep_limited: u64,
    /// Of those, refused because strangers together sent too many.
    pub strangers_limited: u64,
}

/// What admission control held and refused, for `stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct AdmissionStats {
    /// The bytes of requests being read.
    pub budget: BudgetCounters,
    /// Requests refused by the rate limits.
    pub rate: GateCounters,
    /// Peers the rate limits track now (a quiet peer is forgotten within seconds).
    pub rate_tracked_peers: usize,
    /// Inbound connections refused by a connection limit.
    pub connections_denied_in: u64,
    /// Our own dials refused by a connection limit.
    pub connections_denied_out: u64,
}

/// A buffer whose capacity is held against a [`ReadBudget`], given back when it is dropped
/// (also when the read is abandoned half-way: libp2p drops the future at its timeout). Bytes
/// are read straight into it, [`READ_STEP`] at a time: its capacity doubles as it fills (and
/// the budget is charged for the capacity), but only the bytes read are ever written, so the
/// memory a request really takes stays under what the budget counts.
pub(crate) struct BudgetedBuf {
    budget: ReadBudget,
    held: usize,
    buf: Vec<u8>,
    /// Bytes read (`buf` may be longer by the room lent to the read under way).
    len: usize,
}

/// The first capacity a request's buffer takes, and the most read at once.
const READ_STEP: usize = 4 << 10;

impl BudgetedBuf {
    pub(crate) fn new(budget: ReadBudget) -> Self {
        Self { budget, held: 0, buf: Vec::new(), len: 0 }
    }

    /// Room to read into (at most [`READ_STEP`]), growing the buffer within the budget, to at
    /// most `max` bytes in all. `Err` with the counters when the growth does not fit the budget
    /// (the buffer is unchanged), or when the buffer already holds `max` bytes.
    pub(crate) fn spare(&mut self, max: usize) -> Result<&mut [u8], BudgetCounters> {
        let len = self.len;
        if len >= max {
            return Err(self.budget.counters());
        }
        let step = READ_STEP.min(max - len);
        if len + step > self.held {
            let want = (self.held * 2).max(len + step).max(READ_STEP).min(max);
            if !self.budget.take(want - self.held, want) {
                self.budget.refused();
                return Err(self.budget.counters());
            }
            self.buf.reserve_exact(want - len);
            self.held = want;
        }
        self.buf.resize(len + step, 0);
        Ok(&mut self.buf[len..])
    }

    /// `n` bytes of the room [`BudgetedBuf::spare`] gave were read (the rest is let go).
    pub(crate) fn filled(&mut self, n: usize) {
        self.len = (self.len + n).min(self.buf.len());
        self.buf.truncate(self.len);
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for BudgetedBuf {
    fn drop(&mut self) {
        self.budget.give(self.held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_never_passes_its_limit_and_keeps_room_for_small_requests() {
        let budget = ReadBudget::new(SMALL_RESERVE + (1 << 20));
        let mut big = BudgetedBuf::new(budget.clone());
        let mut refused = None;
        for _ in 0..10_000 {
            match big.spare(4 << 20) {
                Ok(room) => {
                    let n = room.len();
                    big.filled(n);
                }
                Err(c) => {
                    refused = Some(c);
                    break;
                }
            }
        }
        let counters = refused.expect("a large request must hit the budget");
        assert!(counters.held <= counters.limit - SMALL_RESERVE, "{counters:?}");
        assert_eq!(counters.refused, 1);
        // A small request still fits beside it.
        let mut small = BudgetedBuf::new(budget.clone());
        let room = small.spare(1 << 20).expect("room kept for small requests").len();
        small.filled(room);
        assert_eq!(small.as_slice().len(), READ_STEP);
        assert!(budget.counters().held <= budget.counters().limit);
        drop(big);
        drop(small);
        assert_eq!(budget.counters().held, 0, "everything given back");
        assert!(budget.counters().peak <= budget.counters().limit);
    }

    #[test]
    fn defaults_hold_together() {
        let limit = crate::protocol::message_limit(crate::config::DEFAULT_MAX_VALUE_SIZE);
        Admission::default().validate(limit).unwrap();
        let small = Admission { request_budget: 1 << 20, ..Admission::default() };
        assert!(small.validate(limit).unwrap_err().contains("--request-budget"));
    }
}
