//! The driver of replica upkeep: runs the core's [`Upkeep`](crate::core::Upkeep) rounds on
//! the timer, carries out their actions (removals, Summary, Digest and StoreMany requests),
//! feeds the answers back, and keeps the counters `stats` shows. The decisions — who should
//! hold what, which buckets differ, what to push — are the core's
//! ([`crate::core::upkeep`]).

use std::time::Instant;

use libp2p::PeerId;

use super::{EventLoop, Outbound};
use crate::command::UpkeepReport;
use crate::core::upkeep::{self, UpkeepAction, UpkeepConfig};
use crate::protocol::{encode, Request, Response};

impl EventLoop {
    /// Whether this peer is among `key`'s R closest by its own view.
    pub(super) fn is_replica_of(&self, key: &str) -> bool {
        upkeep::is_replica_of(key, self.local_peer_id(), &self.members, self.config.replication)
    }

    fn upkeep_config(&self) -> UpkeepConfig {
        let limit = usize::try_from(crate::protocol::message_limit(self.config.max_value_size))
            .unwrap_or(usize::MAX);
        UpkeepConfig {
            replication: self.config.replication,
            tombstone_ttl: self.config.tombstone_ttl,
            batch_bytes: limit / 2,
        }
    }

    /// Runs one upkeep round now.
    pub(super) fn upkeep_round(&mut self) -> UpkeepReport {
        let started = Instant::now();
        let (local, now, config) = (self.local_peer_id(), self.now(), self.upkeep_config());
        let actions = self.upkeep.round(&self.store, local, &self.members, config, now);
        let report = self.carry_out(actions);
        self.stats.upkeep_rounds += 1;
        self.stats.last_round_ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::debug!(?report, "upkeep round");
        report
    }

    /// A summary from `peer`: the buckets where our holdings differ.
    pub(super) fn answer_summary(
        &mut self,
        peer: PeerId,
        theirs: Vec<(u16, u32, u64)>,
    ) -> Response {
        self.stats.digests_received += 1;
        self.upkeep.answer_summary(&peer, theirs)
    }

    /// The record of `key` held here went from `old` to `new` (`None`: not held): the sums
    /// upkeep answers summaries from follow.
    pub(super) fn note_write(
        &mut self,
        key: &str,
        old: Option<crate::Hlc>,
        new: Option<crate::Hlc>,
    ) {
        let (local, r) = (self.local_peer_id(), self.config.replication);
        self.upkeep.wrote(key, old, new, local, &self.members, r);
    }

    /// The answer to one of our summaries.
    pub(super) fn on_mismatch(&mut self, peer: PeerId, buckets: &[u16]) {
        let actions = self.upkeep.on_mismatch(peer, buckets);
        self.carry_out(actions);
    }

    /// The answer to one of our digests: the keys `peer` lacks.
    pub(super) fn on_missing(&mut self, peer: PeerId, id: u64, keys: Vec<String>) {
        let config = self.upkeep_config();
        let actions = self.upkeep.on_missing(peer, id, keys, &self.store, config);
        self.carry_out(actions);
    }

    /// Carries out upkeep actions and counts them.
    fn carry_out(&mut self, actions: Vec<UpkeepAction>) -> UpkeepReport {
        let mut report = UpkeepReport::default();
        for action in actions {
            match action {
                // Queued to the store's writer; nobody waits for it.
                UpkeepAction::Remove(key) => match self.store.queue_remove(&key) {
                    Ok(true) => report.removed += 1,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(%key, "cannot remove: {e}"),
                },
                UpkeepAction::Digest { peer, id, request } => {
                    if let Request::Digest { entries } = &request {
                        report.digests += 1;
                        report.entries += entries.len() as u64;
                        report.digest_bytes += encode(&request).map_or(0, |b| b.len() as u64);
                    }
                    let sent = self.swarm.behaviour_mut().kv.send_request(&peer, request);
                    self.requests.insert(sent, Outbound::Digest(id));
                }
                UpkeepAction::Send { peer, request } => {
                    let bytes = encode(&request).map_or(0, |b| b.len() as u64);
                    let outbound = match &request {
                        Request::Summary { .. } => {
                            report.summaries += 1;
                            report.digest_bytes += bytes;
                            Outbound::Summary
                        }
                        Request::StoreMany { records } => {
                            self.stats.records_pushed += records.len() as u64;
                            self.stats.push_bytes_sent += bytes;
                            let sent = records.iter().map(|r| (r.key.clone(), r.version)).collect();
                            Outbound::Handoff { sent }
                        }
                        _ => Outbound::Repair { key: "(upkeep)".into() },
                    };
                    let id = self.swarm.behaviour_mut().kv.send_request(&peer, request);
                    self.requests.insert(id, outbound);
                }
            }
        }
        self.stats.summaries_sent += report.summaries;
        self.stats.digests_sent += report.digests;
        self.stats.digest_entries_sent += report.entries;
        self.stats.digest_bytes_sent += report.digest_bytes;
        self.stats.records_removed += report.removed;
        report
    }
}
