//! The replica side: what a peer answers to a value-protocol request, and which records it
//! writes for it. The same [`serve`] answers remote peers and this peer's own operations.
//!
//! A record is taken only if it checks out (signature, ownership, size, expiry, clock skew) and
//! fits the store's limits (a new key needs room for one more record and its bytes; a key held
//! needs room for the difference; nothing held is ever dropped to make room). The merge keeps
//! the greater by [`Record::precedence`]. The driver commits the writes before it sends the
//! response: a replica acknowledges only what is durable.

use std::collections::HashMap;

use libp2p::{Multiaddr, PeerId};

use super::Now;
use crate::clock::Hlc;
use crate::protocol::{Request, Response};
use crate::record::Record;

/// What a replica holds, read-only: the store behind it is the driver's.
pub trait Holdings {
    /// The record held for `key`.
    fn get(&self, key: &str) -> Option<&Record>;
    /// Records held (tombstones included).
    fn count(&self) -> usize;
    /// Key and value bytes held ([`held_size`] summed).
    fn bytes(&self) -> usize;
    /// Calls `f` with every record held (upkeep's rounds and summaries).
    fn for_each(&self, f: &mut dyn FnMut(&Record));
}

/// The bytes a record takes against `--max-store-bytes`: its key and value.
pub fn held_size(record: &Record) -> usize {
    record.key.len() + record.value_len()
}

/// What a replica accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest value.
    pub max_value_size: usize,
    /// Most records held.
    pub max_records: usize,
    /// Most key and value bytes held.
    pub max_store_bytes: usize,
}

impl Limits {
    /// The limits of `config`.
    pub fn of(config: &crate::Config) -> Self {
        Self {
            max_value_size: config.max_value_size,
            max_records: config.max_records,
            max_store_bytes: config.max_store_bytes,
        }
    }
}

/// A request answered: the response, and the records to write before it is sent.
#[derive(Debug, Clone)]
pub struct Served {
    /// What to answer.
    pub response: Response,
    /// Records that win over what is held (each replaces the record of its key), in order.
    pub writes: Vec<Record>,
    /// The greatest version accepted, for the clock.
    pub observed: Option<Hlc>,
}

impl Served {
    fn answer(response: Response) -> Self {
        Self { response, writes: Vec::new(), observed: None }
    }

    /// The write of `key` could not be committed: the response says so instead of
    /// acknowledging it (a replica never acknowledges what is not durable).
    pub fn write_failed(&mut self, key: &str, reason: &str) {
        let reason = format!("store write failed: {reason}");
        match &mut self.response {
            Response::StoredMany { stored, rejected } => {
                *stored = stored.saturating_sub(1);
                rejected.push((key.to_owned(), reason));
            }
            response => *response = Response::Rejected { reason },
        }
    }
}

/// What a Fetch answer says of a key's neighbourhood.
#[derive(Debug, Clone, Default)]
pub struct Near {
    /// The peers nearest to the key, with their addresses, nearest first.
    pub peers: Vec<(PeerId, Vec<Multiaddr>)>,
    /// Peers near the key believed down.
    pub down: Vec<PeerId>,
}

/// The neighbourhood of a key (at most `n` peers of each kind), from the routing view and the
/// suspects: lent by the driver.
pub type NearFn<'a> = &'a mut dyn FnMut(&str, usize) -> Near;

/// Answers `request` from `holdings`. `remote` is false when this peer asks itself (then a
/// Fetch names no peers). A `Summary` needs the upkeep's view of who should hold what, and a
/// `Members` exchange the members table ([`Members::answer`](super::members::Members::answer));
/// the driver answers them there, and here they are refused.
pub fn serve(
    request: Request,
    remote: bool,
    holdings: &dyn Holdings,
    near: NearFn<'_>,
    limits: Limits,
    now: Now,
) -> Served {
    match request {
        Request::Store { record } => {
            let mut plan = Plan::new(holdings);
            match plan.take(record, limits, now) {
                Ok(version) => Served {
                    response: Response::Stored { version },
                    observed: plan.observed,
                    writes: plan.into_writes(),
                },
                Err(reason) => Served::answer(Response::Rejected { reason }),
            }
        }
        Request::StoreMany { records } => {
            let mut plan = Plan::new(holdings);
            let mut stored = 0;
            let mut rejected = Vec::new();
            for record in records {
                let key = record.key.clone();
                match plan.take(record, limits, now) {
                    Ok(_) => stored += 1,
                    Err(reason) => rejected.push((key, reason)),
                }
            }
            Served {
                response: Response::StoredMany { stored, rejected },
                observed: plan.observed,
                writes: plan.into_writes(),
            }
        }
        Request::Fetch { key, near: wanted } => {
            let near = if remote {
                near(&key, usize::from(wanted).min(crate::protocol::MAX_NEAR))
            } else {
                Near::default()
            };
            let record = holdings.get(&key).filter(|r| !r.is_expired(now.wall_ms)).cloned();
            Served::answer(Response::Found { record, near: near.peers, down: near.down })
        }
        Request::Digest { entries } => {
            let keys = entries
                .into_iter()
                .filter(|(key, version)| match holdings.get(key) {
                    None => true,
                    Some(held) => held.version < *version || held.is_expired(now.wall_ms),
                })
                .map(|(key, _)| key)
                .collect();
            Served::answer(Response::Missing { keys })
        }
        Request::Summary { .. } => {
            Served::answer(Response::Rejected { reason: "a summary needs its sender".into() })
        }
        Request::Members { .. } => Served::answer(Response::Rejected {
            reason: "a members exchange is answered from the members table".into(),
        }),
        Request::Malformed { reason } | Request::Refused { reason } => {
            Served::answer(Response::Rejected { reason })
        }
    }
}

/// The writes one request makes, with the store's counts as they will be after them.
struct Plan<'a> {
    holdings: &'a dyn Holdings,
    /// Records that win, by key (a later one of the same key replaces an earlier).
    planned: HashMap<String, Record>,
    order: Vec<String>,
    count: usize,
    bytes: usize,
    observed: Option<Hlc>,
}

impl<'a> Plan<'a> {
    fn new(holdings: &'a dyn Holdings) -> Self {
        Self {
            holdings,
            planned: HashMap::new(),
            order: Vec::new(),
            count: holdings.count(),
            bytes: holdings.bytes(),
            observed: None,
        }
    }

    /// Checks and merges one record; returns the version held for its key afterwards.
    fn take(&mut self, record: Record, limits: Limits, now: Now) -> Result<Hlc, String> {
        record.check(limits.max_value_size, now.wall_ms).map_err(|e| e.to_string())?;
        self.observed = self.observed.max(Some(record.version));
        let held = self.planned.get(&record.key).or_else(|| self.holdings.get(&record.key));
        if let Some(held) = held {
            if record.precedence(held) != std::cmp::Ordering::Greater {
                return Ok(held.version);
            }
        }
        let before = held.map(held_size);
        if before.is_none() && self.count >= limits.max_records {
            return Err(format!(
                "store full: {} records held (limit {}, --max-records); existing keys can still be updated",
                self.count, limits.max_records
            ));
        }
        let after = self.bytes - before.unwrap_or(0) + held_size(&record);
        if after > limits.max_store_bytes && after > self.bytes {
            return Err(format!(
                "store full: {after} bytes would be held (limit {}, --max-store-bytes)",
                limits.max_store_bytes
            ));
        }
        if before.is_none() {
            self.count += 1;
        }
        self.bytes = after;
        let version = record.version;
        if !self.planned.contains_key(&record.key) {
            self.order.push(record.key.clone());
        }
        self.planned.insert(record.key.clone(), record);
        Ok(version)
    }

    fn into_writes(mut self) -> Vec<Record> {
        self.order.iter().filter_map(|k| self.planned.remove(k)).collect()
    }
}
