//! Replica upkeep: every record is re-offered to the peers that should hold it now.
//!
//! A round (every `upkeep_interval`, and 2 s after the routing table changed) first removes
//! expired records and tombstones older than `tombstone_ttl`, then, for each record, ranks the
//! routing table's value-protocol peers and this peer by distance to the key. Every one of the
//! R nearest (but us) gets a [`Request::Summary`]: per bucket of keys, the count and the XOR of
//! the hashes of the `(key, version)` pairs we would offer it. It answers with the buckets
//! where its own holdings differ ([`Response::Mismatch`]); only for those do the full
//! `(key, version)` [`Request::Digest`]s follow, it answers with the keys it lacks or holds
//! older ([`Response::Missing`]), and only those records follow, in [`Request::StoreMany`]. So a
//! closer peer that appeared gets its keys (hand-off), the survivors of a replica that left
//! restore R copies, and a stable overlay exchanges one small summary per peer pair.

use std::collections::HashMap;
use std::time::Instant;

use libp2p::PeerId;

use super::{EventLoop, Outbound};
use crate::clock::{now_ms, Hlc};
use crate::command::UpkeepReport;
use crate::placement;
use crate::protocol::{encode, Request, Response};
use crate::record::Record;

/// Buckets a summary splits the keys into.
const SUMMARY_BUCKETS: u64 = 256;

/// FNV-1a, 64 bits: stable across peers and builds (the std hasher is not).
fn fnv1a(parts: &[&[u8]]) -> u64 {
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
fn bucket_of(key: &str) -> u16 {
    u16::try_from(fnv1a(&[key.as_bytes()]) % SUMMARY_BUCKETS).unwrap_or(0)
}

/// `(bucket, count, xor of entry hashes)` for every non-empty bucket, sorted by bucket: equal
/// for equal sets of `(key, version)`, whatever their order.
pub(crate) fn summarize<'a>(entries: impl Iterator<Item = (&'a str, Hlc)>) -> Vec<(u16, u32, u64)> {
    let mut buckets: std::collections::BTreeMap<u16, (u32, u64)> =
        std::collections::BTreeMap::new();
    for (key, version) in entries {
        let hash =
            fnv1a(&[key.as_bytes(), &version.ms.to_be_bytes(), &version.counter.to_be_bytes()]);
        let slot = buckets.entry(bucket_of(key)).or_default();
        slot.0 += 1;
        slot.1 ^= hash;
    }
    buckets.into_iter().map(|(b, (c, h))| (b, c, h)).collect()
}

/// Most bytes of keys in one digest message (well under the codec's smallest limit).
const DIGEST_CHUNK_BYTES: usize = 256 * 1024;

impl EventLoop {
    /// The peers that count for placement from this peer's view: the routing table's peers not
    /// known to lack the value protocol.
    pub(super) fn placement_peers(&mut self) -> Vec<PeerId> {
        let mut peers = Vec::new();
        for bucket in self.swarm.behaviour_mut().kad.kbuckets() {
            for entry in bucket.iter() {
                let peer = *entry.node.key.preimage();
                if self.kv_support.get(&peer) != Some(&false) {
                    peers.push(peer);
                }
            }
        }
        peers
    }

    /// Whether this peer is among `key`'s R closest by its own view.
    pub(super) fn is_replica_of(&self, key: &str, peers: &[PeerId]) -> bool {
        let local = self.local_peer_id();
        let plan = placement::plan(
            key,
            peers.iter().copied().chain(std::iter::once(local)),
            self.config.replication,
            None,
        );
        plan.replicas.contains(&local)
    }

    /// Runs one upkeep round now.
    pub(super) fn upkeep_round(&mut self) -> UpkeepReport {
        let started = Instant::now();
        let mut report =
            UpkeepReport { removed: self.collect_garbage(), ..UpkeepReport::default() };
        let local = self.local_peer_id();
        let peers = self.placement_peers();
        let mut batches: HashMap<PeerId, Vec<(String, Hlc)>> = HashMap::new();
        if !peers.is_empty() {
            for record in self.store.iter() {
                let plan = placement::plan(
                    &record.key,
                    peers.iter().copied().chain(std::iter::once(local)),
                    self.config.replication,
                    None,
                );
                for peer in plan.replicas.into_iter().filter(|p| *p != local) {
                    batches.entry(peer).or_default().push((record.key.clone(), record.version));
                }
            }
        }
        // First a summary per peer: one (count, hash) per bucket of keys. Only the buckets
        // whose summary differs on the other side are followed by their full digests.
        self.upkeep_offers.clear();
        for (peer, entries) in batches {
            let buckets = summarize(entries.iter().map(|(k, v)| (k.as_str(), *v)));
            report.summaries += 1;
            let request = Request::Summary { buckets };
            report.digest_bytes += encode(&request).map_or(0, |b| b.len() as u64);
            let id = self.swarm.behaviour_mut().kv.send_request(&peer, request);
            self.requests.insert(id, Outbound::Summary);
            self.upkeep_offers.insert(peer, entries);
        }
        self.stats.upkeep_rounds += 1;
        self.stats.summaries_sent += report.summaries;
        self.stats.digests_sent += report.digests;
        self.stats.digest_entries_sent += report.entries;
        self.stats.digest_bytes_sent += report.digest_bytes;
        self.stats.records_removed += report.removed;
        self.stats.last_round_ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::debug!(?report, "upkeep round");
        report
    }

    /// The buckets of our last summary to `peer` that differ there: send their full digests.
    pub(super) fn send_digests_for(&mut self, peer: PeerId, buckets: &[u16]) {
        let Some(entries) = self.upkeep_offers.remove(&peer) else { return };
        let wanted: std::collections::HashSet<u16> = buckets.iter().copied().collect();
        let mut report = UpkeepReport::default();
        let mut chunk = Vec::new();
        let mut bytes = 0;
        for entry in entries.into_iter().filter(|(k, _)| wanted.contains(&bucket_of(k))) {
            bytes += entry.0.len() + 16;
            chunk.push(entry);
            if bytes >= DIGEST_CHUNK_BYTES {
                self.send_digest(peer, std::mem::take(&mut chunk), &mut report);
                bytes = 0;
            }
        }
        if !chunk.is_empty() {
            self.send_digest(peer, chunk, &mut report);
        }
        self.stats.digests_sent += report.digests;
        self.stats.digest_entries_sent += report.entries;
        self.stats.digest_bytes_sent += report.digest_bytes;
    }

    /// A summary from `peer`: the buckets where what we hold of the keys `peer` would offer us
    /// differs from what it holds.
    pub(super) fn answer_summary(
        &mut self,
        peer: PeerId,
        theirs: Vec<(u16, u32, u64)>,
    ) -> Response {
        self.stats.digests_received += 1;
        let local = self.local_peer_id();
        let peers = self.placement_peers();
        let now = now_ms();
        // The keys `peer` offers us are those it holds and we should hold too; of what we hold,
        // the matching set is the keys whose replicas (by our view) include `peer`.
        let ours = summarize(
            self.store
                .iter()
                .filter(|r| !r.is_expired(now))
                .filter(|r| {
                    placement::plan(
                        &r.key,
                        peers.iter().copied().chain(std::iter::once(local)),
                        self.config.replication,
                        None,
                    )
                    .replicas
                    .contains(&peer)
                })
                .map(|r| (r.key.as_str(), r.version)),
        );
        let ours: HashMap<u16, (u32, u64)> =
            ours.into_iter().map(|(b, c, h)| (b, (c, h))).collect();
        let buckets = theirs
            .into_iter()
            .filter(|(b, c, h)| ours.get(b) != Some(&(*c, *h)))
            .map(|(b, _, _)| b)
            .collect();
        Response::Mismatch { buckets }
    }

    fn send_digest(
        &mut self,
        peer: PeerId,
        entries: Vec<(String, Hlc)>,
        report: &mut UpkeepReport,
    ) {
        report.digests += 1;
        report.entries += entries.len() as u64;
        let request = Request::Digest { entries };
        report.digest_bytes += encode(&request).map_or(0, |b| b.len() as u64);
        let id = self.swarm.behaviour_mut().kv.send_request(&peer, request);
        self.requests.insert(id, Outbound::Digest);
    }

    /// Removes expired records and tombstones past `tombstone_ttl`; returns how many.
    fn collect_garbage(&mut self) -> u64 {
        let now = now_ms();
        let tombstone_ms = u64::try_from(self.config.tombstone_ttl.as_millis()).unwrap_or(u64::MAX);
        let doomed: Vec<String> = self
            .store
            .iter()
            .filter(|r| {
                r.is_expired(now)
                    || (r.is_tombstone() && r.version.ms.saturating_add(tombstone_ms) <= now)
            })
            .map(|r| r.key.clone())
            .collect();
        let mut removed = 0;
        for key in doomed {
            match self.store.remove(&key) {
                Ok(Some(_)) => removed += 1,
                Ok(None) => {}
                Err(e) => tracing::warn!(%key, "cannot remove: {e}"),
            }
        }
        removed
    }

    /// A peer lacks these keys: send it the records, batched under the codec's limit.
    pub(super) fn push_missing(&mut self, peer: PeerId, keys: Vec<String>) {
        let limit = usize::try_from(crate::protocol::message_limit(self.config.max_value_size))
            .unwrap_or(usize::MAX)
            / 2;
        let mut batch = Vec::new();
        let mut bytes = 0;
        for key in keys {
            let Some(record) = self.store.get(&key).cloned() else { continue };
            let size = record.key.len() + record.value_len() + 256;
            if !batch.is_empty() && bytes + size > limit {
                self.send_batch(peer, std::mem::take(&mut batch));
                bytes = 0;
            }
            bytes += size;
            batch.push(record);
        }
        if !batch.is_empty() {
            self.send_batch(peer, batch);
        }
    }

    fn send_batch(&mut self, peer: PeerId, records: Vec<Record>) {
        self.stats.records_pushed += records.len() as u64;
        let request = Request::StoreMany { records };
        self.stats.push_bytes_sent += encode(&request).map_or(0, |b| b.len() as u64);
        let id = self.swarm.behaviour_mut().kv.send_request(&peer, request);
        self.requests.insert(id, Outbound::Repair { key: "(upkeep batch)".into() });
    }
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
