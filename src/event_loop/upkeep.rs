//! Replica upkeep: every record is re-offered to the peers that should hold it now.
//!
//! A round (every `upkeep_interval`, and 2 s after the routing table changed) first removes
//! expired records and tombstones older than `tombstone_ttl`, then, for each record, ranks the
//! routing table's value-protocol peers and this peer by distance to the key and sends every
//! one of the R nearest (but us) a [`Request::Digest`] of `(key, version)` pairs — chunked —
//! and nothing else. A replica answers with the keys it lacks or holds older
//! ([`Response::Missing`]); only those records follow, batched in [`Request::StoreMany`]. So a
//! closer peer that appeared gets its keys (hand-off), the survivors of a replica that left
//! restore R copies, and a stable overlay exchanges digests only.

use std::collections::HashMap;
use std::time::Instant;

use libp2p::PeerId;

use super::{EventLoop, Outbound};
use crate::clock::{now_ms, Hlc};
use crate::command::UpkeepReport;
use crate::placement;
use crate::protocol::{encode, Request, Response};
use crate::record::Record;

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
        for (peer, entries) in batches {
            let mut chunk = Vec::new();
            let mut bytes = 0;
            for entry in entries {
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
        }
        self.stats.upkeep_rounds += 1;
        self.stats.digests_sent += report.digests;
        self.stats.digest_entries_sent += report.entries;
        self.stats.digest_bytes_sent += report.digest_bytes;
        self.stats.records_removed += report.removed;
        self.stats.last_round_ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::debug!(?report, "upkeep round");
        report
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

    /// A digest from a peer: the keys among it we lack or hold older.
    pub(super) fn answer_digest(&mut self, entries: Vec<(String, Hlc)>) -> Response {
        self.stats.digests_received += 1;
        let now = now_ms();
        let keys = entries
            .into_iter()
            .filter(|(key, version)| match self.store.get(key) {
                None => true,
                Some(held) => held.version < *version || held.is_expired(now),
            })
            .map(|(key, _)| key)
            .collect();
        Response::Missing { keys }
    }

    /// A batch of records from a peer's upkeep: each is checked and merged like a Store.
    pub(super) fn answer_store_many(&mut self, records: Vec<Record>) -> Response {
        let mut stored = 0;
        let mut rejected = Vec::new();
        for record in records {
            let key = record.key.clone();
            match self.accept(record) {
                Response::Stored { .. } => stored += 1,
                Response::Rejected { reason } => rejected.push((key, reason)),
                _ => {}
            }
        }
        Response::StoredMany { stored, rejected }
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
