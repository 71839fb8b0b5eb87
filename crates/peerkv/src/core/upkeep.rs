//! Replica upkeep as plain decisions: every record is re-offered to the peers that should hold
//! it now.
//!
//! A round ([`Upkeep::round`], every `upkeep_interval` and soon after the routing view changed)
//! first removes expired records and tombstones older than `tombstone_ttl`, then, for each
//! record, ranks the view's value-protocol peers and this peer by distance to the key. Every one
//! of the R nearest (but us) gets a [`Request::Summary`]: per bucket of keys, the count and the
//! XOR of the hashes of the `(key, version)` pairs we would offer it. It answers with the
//! buckets where its own holdings differ ([`Upkeep::answer_summary`]); only for those do the full
//! `(key, version)` [`Request::Digest`]s follow ([`Upkeep::on_mismatch`]); it answers with the
//! keys it lacks or holds older, and only those records follow, in [`Request::StoreMany`]
//! batches ([`Upkeep::on_missing`]). So a closer peer that appeared gets its keys (hand-off),
//! the survivors of a replica that left restore R copies, and a stable overlay exchanges one
//! small summary per peer pair.
//!
//! Answering a summary costs O(buckets), not O(records held): the round keeps, per peer, the
//! bucket sums of what we hold that it should hold too (the very sets its own offers are), and
//! every write and removal updates them ([`Upkeep::wrote`]). Between rounds a view that changed
//! can make a sum stale; that costs a digest (a mismatch where there is none), never a record.
//!
//! Extra copies: a record we hold though we are not among its R nearest (a closer peer joined,
//! or a writer's view differed) is offered to the R nearest like any other. Their summaries
//! never match ours on it (they do not count us among its R nearest), so its `(key, version)`
//! goes out in a digest each round; a replica's answer that does not name it says it holds it
//! at our version or newer. Once each of the R nearest said so, and it was not written since,
//! it is removed here ([`Upkeep::on_missing`]), and its digests stop.

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
        let hash = entry_hash(key, version);
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
    /// Send `request` (a Summary or StoreMany) to `peer`; feed a Summary's `Mismatch` to
    /// [`Upkeep::on_mismatch`].
    Send {
        /// To whom.
        peer: PeerId,
        /// What.
        request: Request,
    },
    /// Send `request` (a Digest) to `peer`, and feed its `Missing` to [`Upkeep::on_missing`]
    /// with `id`.
    Digest {
        /// To whom.
        peer: PeerId,
        /// Which digest the answer is to.
        id: u64,
        /// The digest.
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

/// Bucket sums: bucket → (count, xor of entry hashes).
type Sums = HashMap<u16, (u32, u64)>;

/// The hash of one `(key, version)` entry in a summary.
fn entry_hash(key: &str, version: Hlc) -> u64 {
    fnv1a(&[key.as_bytes(), &version.ms.to_be_bytes(), &version.counter.to_be_bytes()])
}

/// An extra copy waiting for the R nearest to confirm they hold it.
#[derive(Debug, Clone)]
struct Extra {
    /// The version offered.
    version: Hlc,
    /// The R nearest that have not confirmed yet.
    waiting: HashSet<PeerId>,
}

/// One peer's upkeep: what its last round offered each peer (for the digests a mismatch asks
/// for), what it shares with each peer (for answering summaries), and its extra copies.
#[derive(Debug, Default)]
pub struct Upkeep {
    offers: HashMap<PeerId, Vec<(String, Hlc)>>,
    /// Per peer: the bucket sums of what we hold that it should hold too, by the view of the
    /// last round, kept up to date on every write.
    shared: HashMap<PeerId, Sums>,
    /// Records held here though we are not among their R nearest, by key.
    extras: HashMap<String, Extra>,
    /// Digests in flight that name extra copies: id → (to whom, those entries).
    digests: HashMap<u64, (PeerId, Vec<(String, Hlc)>)>,
    /// The id of the next digest.
    next_digest: u64,
    /// Hand-offs a peer refused (its guard, its quotas, its limits): `(peer, key)` → the
    /// version refused and until when it is not offered again ([`REFUSAL_MEMORY`]).
    refused: HashMap<(PeerId, String), (Hlc, Duration)>,
}

/// How long a record a peer refused is not handed to it again at the same version: views that
/// differ converge within minutes, and a refusal that stands costs a digest entry a round, not
/// the record.
pub const REFUSAL_MEMORY: Duration = Duration::from_secs(600);

/// Most refusals remembered; past it, new ones are not (the records go again each round).
pub const MAX_REFUSALS: usize = 65_536;

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
        self.refused.retain(|_, (_, until)| *until > now.mono);
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
        self.shared.clear();
        self.extras.clear();
        self.digests.clear();
        if !members.is_empty() {
            let mut offers: HashMap<PeerId, Vec<(String, Hlc)>> = HashMap::new();
            let mut extras = HashMap::new();
            holdings.for_each(&mut |r| {
                if doomed.contains(&r.key) {
                    return;
                }
                let replicas = members.replicas(local, &r.key, config.replication);
                if replicas.len() == config.replication && !replicas.contains(&local) {
                    let waiting = replicas.iter().copied().collect();
                    extras.insert(r.key.clone(), Extra { version: r.version, waiting });
                }
                for peer in replicas.into_iter().filter(|p| *p != local) {
                    offers.entry(peer).or_default().push((r.key.clone(), r.version));
                }
            });
            self.extras = extras;
            let mut peers: Vec<PeerId> = offers.keys().copied().collect();
            peers.sort();
            for peer in peers {
                let Some(entries) = offers.remove(&peer) else { continue };
                let buckets = summarize(entries.iter().map(|(k, v)| (k.as_str(), *v)));
                self.shared.insert(peer, buckets.iter().map(|&(b, c, h)| (b, (c, h))).collect());
                actions.push(UpkeepAction::Send { peer, request: Request::Summary { buckets } });
                self.offers.insert(peer, entries);
            }
        }
        actions
    }

    /// The record of `key` held here went from version `old` to `new` (`None`: not held), by
    /// a write or a removal: the sums shared with its R nearest by the view `members` follow,
    /// and an extra copy of it waits for a new round.
    pub fn wrote(
        &mut self,
        key: &str,
        old: Option<Hlc>,
        new: Option<Hlc>,
        local: PeerId,
        members: &Members,
        replication: usize,
    ) {
        if old == new {
            return;
        }
        self.extras.remove(key);
        let bucket = bucket_of(key);
        for peer in members.replicas(local, key, replication) {
            if peer == local {
                continue;
            }
            let (count, hash) = self.shared.entry(peer).or_default().entry(bucket).or_default();
            if let Some(old) = old {
                *count = count.saturating_sub(1);
                *hash ^= entry_hash(key, old);
            }
            if let Some(new) = new {
                *count = count.saturating_add(1);
                *hash ^= entry_hash(key, new);
            }
        }
    }

    /// A summary from `peer`: the buckets where what we hold of the keys it would offer us
    /// (those whose R nearest, by our view, include `peer`) differs from what it holds. Costs
    /// O(buckets): it reads the sums the round made and every write since kept up to date. A
    /// peer we share nothing with (by the last round's view) gets every bucket it named.
    pub fn answer_summary(&self, peer: &PeerId, theirs: Vec<(u16, u32, u64)>) -> Response {
        let empty = Sums::new();
        let ours = self.shared.get(peer).unwrap_or(&empty);
        let buckets = theirs
            .into_iter()
            .filter(|(b, c, h)| {
                // A bucket whose entries all went away reads as absent, as in `summarize`.
                let mine = ours.get(b).copied().filter(|(count, _)| *count > 0);
                mine != Some((*c, *h))
            })
            .map(|(b, _, _)| b);
        Response::Mismatch { buckets: buckets.collect() }
    }

    /// Extra copies held now.
    pub fn extras(&self) -> usize {
        self.extras.len()
    }

    /// `peer` answered our summary with the buckets that differ there (none: all match): their
    /// full digests follow, in chunks.
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
                actions.push(self.digest(peer, entries));
                bytes = 0;
            }
        }
        if !chunk.is_empty() {
            actions.push(self.digest(peer, chunk));
        }
        actions
    }

    /// A digest of `entries` to `peer`, remembering the extra copies it names.
    fn digest(&mut self, peer: PeerId, entries: Vec<(String, Hlc)>) -> UpkeepAction {
        let id = self.next_digest;
        self.next_digest = self.next_digest.wrapping_add(1);
        let extras: Vec<(String, Hlc)> =
            entries.iter().filter(|(k, _)| self.extras.contains_key(k)).cloned().collect();
        if !extras.is_empty() {
            self.digests.insert(id, (peer, extras));
        }
        UpkeepAction::Digest { peer, id, request: Request::Digest { entries } }
    }

    /// `peer` answered digest `id`: it lacks these keys (or holds them older). Sends it the
    /// records, in batches under `batch_bytes`. An extra copy the digest named and the answer
    /// does not is held there at our version or newer: once each of its R nearest said so, it
    /// is removed here.
    pub fn on_missing(
        &mut self,
        peer: PeerId,
        id: u64,
        keys: Vec<String>,
        holdings: &dyn Holdings,
        config: UpkeepConfig,
    ) -> Vec<UpkeepAction> {
        let mut actions = Vec::new();
        if let Some((to, named)) = self.digests.remove(&id) {
            let lacking: HashSet<&str> = keys.iter().map(String::as_str).collect();
            for (key, version) in
                named.iter().filter(|(k, _)| to == peer && !lacking.contains(k.as_str()))
            {
                let Some(extra) = self.extras.get_mut(key) else { continue };
                if extra.version == *version
                    && extra.waiting.remove(&peer)
                    && extra.waiting.is_empty()
                {
                    self.extras.remove(key);
                    actions.push(UpkeepAction::Remove(key.clone()));
                }
            }
        }
        let mut batch = Vec::new();
        let mut bytes = 0;
        for key in keys {
            let Some(record) = holdings.get(&key) else { continue };
            let refused = self.refused.get(&(peer, key)).map(|(version, _)| *version);
            if refused == Some(record.version) {
                continue; // refused at this version: not again until it changes or expires
            }
            let record = record.clone();
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

    /// `peer` refused these hand-offs (`(key, version sent)`, from a `StoredMany`'s rejected
    /// keys) at `now`: they are not sent to it again at that version for [`REFUSAL_MEMORY`].
    pub fn refused(&mut self, peer: PeerId, refused: Vec<(String, Hlc)>, now: Duration) {
        for (key, version) in refused {
            if self.refused.len() >= MAX_REFUSALS {
                self.refused.retain(|_, (_, until)| *until > now);
                if self.refused.len() >= MAX_REFUSALS {
                    return;
                }
            }
            self.refused.insert((peer, key), (version, now + REFUSAL_MEMORY));
        }
    }

    /// Forgets what was offered to `peer` (its summary matched, or it is gone).
    pub fn forget(&mut self, peer: &PeerId) {
        self.offers.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use libp2p::identity::Keypair;

    use super::*;
    use crate::record::Record;

    /// Records by key, for the tests.
    #[derive(Default)]
    struct Held(BTreeMap<String, Record>);

    impl Holdings for Held {
        fn get(&self, key: &str) -> Option<&Record> {
            self.0.get(key)
        }
        fn count(&self) -> usize {
            self.0.len()
        }
        fn bytes(&self) -> usize {
            0
        }
        fn for_each(&self, f: &mut dyn FnMut(&Record)) {
            self.0.values().for_each(f);
        }
        fn writer_usage(&self, _: &[u8]) -> crate::core::replica::Usage {
            crate::core::replica::Usage::default()
        }
    }

    const R: usize = 3;

    fn config() -> UpkeepConfig {
        UpkeepConfig {
            replication: R,
            tombstone_ttl: Duration::from_secs(3600),
            batch_bytes: 1 << 20,
        }
    }

    fn now() -> Now {
        Now { mono: Duration::from_secs(10), wall_ms: 1_000_000 }
    }

    fn record(kp: &Keypair, key: &str, ms: u64) -> Record {
        Record::sign(kp, key.into(), Some(b"v".to_vec()), Hlc::new(ms, 0), None).unwrap()
    }

    /// What a summary from `peer` would be answered by a full scan: the old way, the truth.
    fn scanned(held: &Held, peer: PeerId, local: PeerId, members: &Members) -> Sums {
        let mut entries = Vec::new();
        held.for_each(&mut |r| {
            if members.replicas(local, &r.key, R).contains(&peer) {
                entries.push((r.key.clone(), r.version));
            }
        });
        summarize(entries.iter().map(|(k, v)| (k.as_str(), *v)))
            .into_iter()
            .map(|(b, c, h)| (b, (c, h)))
            .collect()
    }

    fn overlay(n: usize) -> (PeerId, Vec<PeerId>, Members) {
        let local = PeerId::random();
        let peers: Vec<PeerId> = (0..n).map(|_| PeerId::random()).collect();
        let mut members = Members::new(local, 64);
        for p in &peers {
            members.seen(*p, &[], Duration::from_secs(1));
        }
        (local, peers, members)
    }

    /// The sums a summary is answered from stay equal to a full scan through writes, updates
    /// and removals after the round, for every peer: the answer costs O(buckets) and says the
    /// same as before.
    #[test]
    fn summaries_are_answered_from_sums_kept_up_to_date_on_every_write() {
        let kp = Keypair::generate_ed25519();
        let (local, peers, members) = overlay(8);
        let mut held = Held::default();
        for i in 0..300 {
            let r = record(&kp, &format!("k{i}"), 5);
            held.0.insert(r.key.clone(), r);
        }
        let mut upkeep = Upkeep::default();
        upkeep.round(&held, local, &members, config(), now());
        let write = |held: &mut Held, upkeep: &mut Upkeep, key: String, new: Option<Record>| {
            let old = held.0.get(&key).map(|r| r.version);
            upkeep.wrote(&key, old, new.as_ref().map(|r| r.version), local, &members, R);
            match new {
                Some(r) => held.0.insert(key, r),
                None => held.0.remove(&key),
            };
        };
        for i in 0..100 {
            write(&mut held, &mut upkeep, format!("k{i}"), Some(record(&kp, &format!("k{i}"), 9)));
        }
        for i in 100..150 {
            write(&mut held, &mut upkeep, format!("k{i}"), None);
        }
        for i in 300..400 {
            write(&mut held, &mut upkeep, format!("k{i}"), Some(record(&kp, &format!("k{i}"), 7)));
        }
        for peer in peers {
            let truth = scanned(&held, peer, local, &members);
            let theirs: Vec<(u16, u32, u64)> =
                truth.iter().map(|(b, (c, h))| (*b, *c, *h)).collect();
            assert_eq!(
                upkeep.answer_summary(&peer, theirs.clone()),
                Response::Mismatch { buckets: vec![] },
                "the sums drifted from a scan"
            );
            // And any difference still shows.
            let mut off = theirs;
            if let Some(first) = off.first_mut() {
                first.2 ^= 1;
                let bucket = first.0;
                assert_eq!(
                    upkeep.answer_summary(&peer, off),
                    Response::Mismatch { buckets: vec![bucket] }
                );
            }
        }
    }

    /// The digests `upkeep` sends `peer` after its summary's answer names `buckets`: (id,
    /// keys named).
    fn digests_to(upkeep: &mut Upkeep, peer: PeerId, buckets: &[u16]) -> Vec<(u64, Vec<String>)> {
        upkeep
            .on_mismatch(peer, buckets)
            .into_iter()
            .filter_map(|a| match a {
                UpkeepAction::Digest { id, request: Request::Digest { entries }, .. } => {
                    Some((id, entries.into_iter().map(|(k, _)| k).collect()))
                }
                _ => None,
            })
            .collect()
    }

    /// A record a peer refused is not handed to it again at that version until the memory
    /// expires; a newer version goes at once, and other peers are not affected.
    #[test]
    fn a_refused_hand_off_is_not_sent_again_at_the_same_version() {
        let kp = Keypair::generate_ed25519();
        let (local, _, members) = overlay(12);
        let mut held = Held::default();
        held.0.insert("k".into(), record(&kp, "k", 5));
        let (peer, other) = (PeerId::random(), PeerId::random());
        let pushed = |actions: Vec<UpkeepAction>| -> usize {
            actions
                .iter()
                .map(|a| match a {
                    UpkeepAction::Send { request: Request::StoreMany { records }, .. } => {
                        records.len()
                    }
                    _ => 0,
                })
                .sum()
        };
        let mut upkeep = Upkeep::default();
        assert_eq!(pushed(upkeep.on_missing(peer, 1, vec!["k".into()], &held, config())), 1);
        let at = now().mono;
        upkeep.refused(peer, vec![("k".into(), Hlc::new(5, 0))], at);
        assert_eq!(pushed(upkeep.on_missing(peer, 2, vec!["k".into()], &held, config())), 0);
        assert_eq!(pushed(upkeep.on_missing(other, 3, vec!["k".into()], &held, config())), 1);
        // A newer version is offered at once.
        held.0.insert("k".into(), record(&kp, "k", 6));
        assert_eq!(pushed(upkeep.on_missing(peer, 4, vec!["k".into()], &held, config())), 1);
        held.0.insert("k".into(), record(&kp, "k", 5));
        // A round past the memory forgets the refusal.
        let mut later = now();
        later.mono = at + REFUSAL_MEMORY;
        upkeep.round(&held, local, &members, config(), later);
        assert_eq!(pushed(upkeep.on_missing(peer, 5, vec!["k".into()], &held, config())), 1);
    }

    /// An extra copy (we are not among the key's R nearest) is removed once each of the R
    /// nearest answered a digest naming it without asking for it, and not before; a replica
    /// that lacks it keeps it here; a write in between keeps it.
    #[test]
    fn an_extra_copy_goes_once_every_replica_confirmed_it() {
        let kp = Keypair::generate_ed25519();
        let (local, _, members) = overlay(12);
        let key = (0..)
            .map(|i| format!("x{i}"))
            .find(|k| !members.replicas(local, k, R).contains(&local))
            .unwrap();
        let mut held = Held::default();
        held.0.insert(key.clone(), record(&kp, &key, 5));
        let replicas = members.replicas(local, &key, R);
        let bucket = [bucket_of(&key)];
        let removals = |actions: Vec<UpkeepAction>| -> Vec<String> {
            actions
                .into_iter()
                .filter_map(|a| match a {
                    UpkeepAction::Remove(k) => Some(k),
                    _ => None,
                })
                .collect()
        };
        let mut upkeep = Upkeep::default();
        upkeep.round(&held, local, &members, config(), now());
        assert_eq!(upkeep.extras(), 1);
        // All but the last hold it: nothing goes.
        for peer in &replicas[..R - 1] {
            for (id, named) in digests_to(&mut upkeep, *peer, &bucket) {
                assert_eq!(named, vec![key.clone()]);
                let done = upkeep.on_missing(*peer, id, vec![], &held, config());
                assert!(removals(done).is_empty());
            }
        }
        // The last lacks it: it is sent the record, and the copy stays.
        let last = replicas[R - 1];
        for (id, _) in digests_to(&mut upkeep, last, &bucket) {
            let done = upkeep.on_missing(last, id, vec![key.clone()], &held, config());
            assert!(done.iter().any(|a| matches!(
                a,
                UpkeepAction::Send { request: Request::StoreMany { .. }, .. }
            )));
            assert!(removals(done).is_empty());
        }
        // Next round all of them hold it: it goes, once.
        upkeep.round(&held, local, &members, config(), now());
        let mut removed = Vec::new();
        for peer in &replicas {
            for (id, _) in digests_to(&mut upkeep, *peer, &bucket) {
                removed.extend(removals(upkeep.on_missing(*peer, id, vec![], &held, config())));
            }
        }
        assert_eq!(removed, vec![key.clone()]);
        // A write between the round and the answers keeps it.
        upkeep.round(&held, local, &members, config(), now());
        let digests: Vec<_> =
            replicas.iter().map(|p| (*p, digests_to(&mut upkeep, *p, &bucket))).collect();
        upkeep.wrote(&key, Some(Hlc::new(5, 0)), Some(Hlc::new(6, 0)), local, &members, R);
        for (peer, sent) in digests {
            for (id, _) in sent {
                assert!(removals(upkeep.on_missing(peer, id, vec![], &held, config())).is_empty());
            }
        }
    }

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
