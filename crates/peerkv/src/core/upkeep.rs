//! Replica upkeep as plain decisions: every record is re-offered to the peers that should hold
//! it now.
//!
//! A round ([`Upkeep::round`], every `upkeep_interval` and soon after the routing view changed)
//! first removes expired records and tombstones older than `tombstone_ttl`, then, for each
//! record, ranks the view's value-protocol peers and this peer by distance to the key. Every one
//! of the R nearest (but us) gets a [`Request::Summary`]: per bucket of keys, the count and the
//! XOR of the hashes of the `(key, version)` pairs we would offer it. It answers with the
//! buckets where its own holdings differ ([`answer_summary`]); only for those do the full
//! `(key, version)` [`Request::Digest`]s follow ([`Upkeep::on_mismatch`]); it answers with the
//! keys it lacks or holds older, and only those records follow, in [`Request::StoreMany`]
//! batches ([`Upkeep::on_missing`]). So a closer peer that appeared gets its keys (hand-off),
//! the survivors of a replica that left restore R copies, and a stable overlay exchanges one
//! small summary per peer pair.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use libp2p::PeerId;

use super::members::Members;
use super::replica::Holdings;
use super::Now;
use crate::clock::Hlc;
use crate::protocol::{Request, Response};

/// Buckets a summary splits the keys into.
pub const SUMMARY_BUCKETS: u64 = 256;

/// Most bytes of keys in one digest message (well under the codec's smallest limit).
pub const DIGEST_CHUNK_BYTES: usize = 256 * 1024;

/// FNV-1a, 64 bits: stable across peers and builds (the std hasher is not).
pub fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in *part {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// The summary bucket of a key.
pub fn bucket_of(key: &str) -> u16 {
    u16::try_from(fnv1a(&[key.as_bytes()]) % SUMMARY_BUCKETS).unwrap_or(0)
}

/// `(bucket, count, xor of entry hashes)` for every non-empty bucket, sorted by bucket: equal
/// for equal sets of `(key, version)`, whatever their order.
pub fn summarize<'a>(entries: impl Iterator<Item = (&'a str, Hlc)>) -> Vec<(u16, u32, u64)> {
    let mut buckets: BTreeMap<u16, (u32, u64)> = BTreeMap::new();
    for (key, version) in entries {
        let hash =
            fnv1a(&[key.as_bytes(), &version.ms.to_be_bytes(), &version.counter.to_be_bytes()]);
        let slot = buckets.entry(bucket_of(key)).or_default();
        slot.0 += 1;
        slot.1 ^= hash;
    }
    buckets.into_iter().map(|(b, (c, h))| (b, c, h)).collect()
}

/// Whether `local` is among `key`'s R nearest, by the view `members`.
pub fn is_replica_of(key: &str, local: PeerId, members: &Members, replication: usize) -> bool {
    members.replicas(local, key, replication).contains(&local)
}

/// What an upkeep step asks its driver to do.
#[derive(Debug, Clone)]
pub enum UpkeepAction {
    /// Remove `key` from the store (expired, or a tombstone past its time to live).
    Remove(String),
    /// Send `request` (a Summary, Digest or StoreMany) to `peer`; feed a Summary's
    /// `Mismatch` to [`Upkeep::on_mismatch`] and a Digest's `Missing` to
    /// [`Upkeep::on_missing`].
    Send {
        /// To whom.
        peer: PeerId,
        /// What.
        request: Request,
    },
}

/// The settings upkeep reads.
#[derive(Debug, Clone, Copy)]
pub struct UpkeepConfig {
    /// R.
    pub replication: usize,
    /// How long a tombstone is kept.
    pub tombstone_ttl: Duration,
    /// Most bytes of one StoreMany batch.
    pub batch_bytes: usize,
}

/// One peer's upkeep: what its last round offered each peer, for the digests a mismatch asks
/// for.
#[derive(Debug, Default)]
pub struct Upkeep {
    offers: HashMap<PeerId, Vec<(String, Hlc)>>,
}

impl Upkeep {
    /// A round: garbage first (as `Remove` actions; the summaries below leave those keys out),
    /// then a summary to every peer that should hold some of our keys by the view `members`.
    pub fn round(
        &mut self,
        holdings: &dyn Holdings,
        local: PeerId,
        members: &Members,
        config: UpkeepConfig,
        now: Now,
    ) -> Vec<UpkeepAction> {
        let tombstone_ms = u64::try_from(config.tombstone_ttl.as_millis()).unwrap_or(u64::MAX);
        let mut actions = Vec::new();
        let mut doomed = HashSet::new();
        holdings.for_each(&mut |r| {
            if r.is_expired(now.wall_ms)
                || (r.is_tombstone() && r.version.ms.saturating_add(tombstone_ms) <= now.wall_ms)
            {
                doomed.insert(r.key.clone());
            }
        });
        actions.extend(doomed.iter().cloned().map(UpkeepAction::Remove));
        self.offers.clear();
        if !members.is_empty() {
            let mut offers: HashMap<PeerId, Vec<(String, Hlc)>> = HashMap::new();
            holdings.for_each(&mut |r| {
                if doomed.contains(&r.key) {
                    return;
                }
                let replicas = members.replicas(local, &r.key, config.replication);
                for peer in replicas.into_iter().filter(|p| *p != local) {
                    offers.entry(peer).or_default().push((r.key.clone(), r.version));
                }
            });
            let mut peers: Vec<PeerId> = offers.keys().copied().collect();
            peers.sort();
            for peer in peers {
                let Some(entries) = offers.remove(&peer) else { continue };
                let buckets = summarize(entries.iter().map(|(k, v)| (k.as_str(), *v)));
                actions.push(UpkeepAction::Send { peer, request: Request::Summary { buckets } });
                self.offers.insert(peer, entries);
            }
        }
        actions
    }

    /// `peer` answered our summary with the buckets that differ there: their full digests
    /// follow, in chunks.
    pub fn on_mismatch(&mut self, peer: PeerId, buckets: &[u16]) -> Vec<UpkeepAction> {
        let Some(entries) = self.offers.remove(&peer) else { return Vec::new() };
        let wanted: HashSet<u16> = buckets.iter().copied().collect();
        let mut actions = Vec::new();
        let mut chunk = Vec::new();
        let mut bytes = 0;
        for entry in entries.into_iter().filter(|(k, _)| wanted.contains(&bucket_of(k))) {
            bytes += entry.0.len() + 16;
            chunk.push(entry);
            if bytes >= DIGEST_CHUNK_BYTES {
                let entries = std::mem::take(&mut chunk);
                actions.push(UpkeepAction::Send { peer, request: Request::Digest { entries } });
                bytes = 0;
            }
        }
        if !chunk.is_empty() {
            actions.push(UpkeepAction::Send { peer, request: Request::Digest { entries: chunk } });
        }
        actions
    }

    /// `peer` lacks these keys (or holds them older): send it the records, in batches under
    /// `batch_bytes`.
    pub fn on_missing(
        &mut self,
        peer: PeerId,
        keys: Vec<String>,
        holdings: &dyn Holdings,
        config: UpkeepConfig,
    ) -> Vec<UpkeepAction> {
        let mut actions = Vec::new();
        let mut batch = Vec::new();
        let mut bytes = 0;
        for key in keys {
            let Some(record) = holdings.get(&key).cloned() else { continue };
            let size = record.key.len() + record.value_len() + 256;
            if !batch.is_empty() && bytes + size > config.batch_bytes {
                let records = std::mem::take(&mut batch);
                actions.push(UpkeepAction::Send { peer, request: Request::StoreMany { records } });
                bytes = 0;
            }
            bytes += size;
            batch.push(record);
        }
        if !batch.is_empty() {
            actions
                .push(UpkeepAction::Send { peer, request: Request::StoreMany { records: batch } });
        }
        actions
    }

    /// Forgets what was offered to `peer` (its summary matched, or it is gone).
    pub fn forget(&mut self, peer: &PeerId) {
        self.offers.remove(peer);
    }
}

/// A summary from `peer`: the buckets where what we hold of the keys `peer` would offer us
/// (those whose R nearest, by our view `members`, include `peer`) differs from what it holds.
pub fn answer_summary(
    peer: PeerId,
    theirs: Vec<(u16, u32, u64)>,
    holdings: &dyn Holdings,
    local: PeerId,
    members: &Members,
    replication: usize,
    now: Now,
) -> Response {
    let mut entries: Vec<(String, Hlc)> = Vec::new();
    holdings.for_each(&mut |r| {
        if r.is_expired(now.wall_ms) {
            return;
        }
        if members.replicas(local, &r.key, replication).contains(&peer) {
            entries.push((r.key.clone(), r.version));
        }
    });
    let ours: HashMap<u16, (u32, u64)> = summarize(entries.iter().map(|(k, v)| (k.as_str(), *v)))
        .into_iter()
        .map(|(b, c, h)| (b, (c, h)))
        .collect();
    let buckets =
        theirs.into_iter().filter(|(b, c, h)| ours.get(b) != Some(&(*c, *h))).map(|(b, _, _)| b);
    Response::Mismatch { buckets: buckets.collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_ignores_order_and_sees_any_difference() {
        let a = [("x", Hlc::new(1, 0)), ("y", Hlc::new(2, 0)), ("z", Hlc::new(3, 1))];
        let mut b = a;
        b.reverse();
        assert_eq!(summarize(a.iter().copied()), summarize(b.iter().copied()));
        let newer = [("x", Hlc::new(1, 0)), ("y", Hlc::new(2, 1)), ("z", Hlc::new(3, 1))];
        assert_ne!(summarize(a.iter().copied()), summarize(newer.iter().copied()));
        let fewer = [("x", Hlc::new(1, 0)), ("y", Hlc::new(2, 0))];
        assert_ne!(summarize(a.iter().copied()), summarize(fewer.iter().copied()));
        assert!(summarize(std::iter::empty()).is_empty());
        assert_eq!(fnv1a(&[b"a"]), 0xaf63_dc4c_8601_ec8c, "FNV-1a must not change between builds");
    }
}
