//! Where a key lives and how many answers an operation needs. Pure functions.
//!
//! Distances are Kademlia's: the XOR of the SHA-256 of the key bytes and of the peer id, the
//! same metric `get_closest_peers` uses, so the peers a lookup returns rank the same way here.

use std::collections::HashSet;

use libp2p::kad::KBucketKey;
use libp2p::PeerId;

use crate::record::Record;

/// Peers ordered by their distance to `key`, nearest first; duplicates dropped.
pub fn rank(key: &str, peers: impl IntoIterator<Item = PeerId>) -> Vec<PeerId> {
    let target = KBucketKey::new(key.as_bytes().to_vec());
    let mut seen = HashSet::new();
    let mut ranked: Vec<(libp2p::kad::KBucketDistance, PeerId)> = peers
        .into_iter()
        .filter(|p| seen.insert(*p))
        .map(|p| (target.distance(&KBucketKey::from(p)), p))
        .collect();
    ranked.sort();
    ranked.into_iter().map(|(_, p)| p).collect()
}

/// A set of candidates ranked again and again for different keys (upkeep ranks every record
/// held): each peer's Kademlia key is hashed once, not once per record.
#[derive(Debug, Clone)]
pub struct Ranker {
    keys: Vec<KBucketKey<PeerId>>,
}

impl Ranker {
    /// The ranker of `peers` (duplicates dropped).
    pub fn new(peers: impl IntoIterator<Item = PeerId>) -> Self {
        let mut seen = HashSet::new();
        Self { keys: peers.into_iter().filter(|p| seen.insert(*p)).map(KBucketKey::from).collect() }
    }

    /// The `n` candidates nearest to `key`, nearest first: the same as `rank(key, …)[..n]`.
    pub fn nearest(&self, key: &str, n: usize) -> Vec<PeerId> {
        if n == 0 {
            return Vec::new();
        }
        let target = KBucketKey::new(key.as_bytes().to_vec());
        let mut ranked: Vec<(libp2p::kad::KBucketDistance, PeerId)> =
            self.keys.iter().map(|k| (target.distance(k), *k.preimage())).collect();
        if ranked.len() > n {
            ranked.select_nth_unstable(n - 1);
            ranked.truncate(n);
        }
        ranked.sort_unstable();
        ranked.into_iter().map(|(_, p)| p).collect()
    }
}

/// log2 of the distance between `key` and `peer` (0–255; `None` only when they coincide).
pub fn distance_log2(key: &str, peer: &PeerId) -> Option<u32> {
    KBucketKey::new(key.as_bytes().to_vec()).distance(&KBucketKey::from(*peer)).ilog2()
}

/// A majority of `n`.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// Answers an operation needs from `replicas` replicas: the quorum asked for (`--write-quorum`,
/// `--read-quorum`), capped by the replicas there are as R is, else a majority of them. Never 0.
/// Every quorum in peerkv comes from here.
pub fn quorum(asked: Option<usize>, replicas: usize) -> usize {
    let replicas = replicas.max(1);
    asked.map_or_else(|| majority(replicas), |q| q.min(replicas)).max(1)
}

/// The replica set of one operation and the answers it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The replicas, nearest first (R of them, or all candidates when fewer).
    pub replicas: Vec<PeerId>,
    /// Further candidates, nearest first, asked in place of a replica that cannot be reached.
    pub spares: Vec<PeerId>,
    /// Answers needed.
    pub needed: usize,
}

/// Chooses the replicas for `key` among `candidates` (which may include the local peer): the
/// `replication` nearest, capped by how many there are; the quorum is [`quorum`] of the replicas
/// chosen.
pub fn plan(
    key: &str,
    candidates: impl IntoIterator<Item = PeerId>,
    replication: usize,
    quorum: Option<usize>,
) -> Plan {
    let mut ranked = rank(key, candidates);
    let spares = ranked.split_off(replication.min(ranked.len()));
    let needed = self::quorum(quorum, ranked.len());
    Plan { replicas: ranked, spares, needed }
}

/// The newest record among replies (`None` when no reply holds one).
pub fn newest<'a>(replies: impl IntoIterator<Item = &'a Option<Record>>) -> Option<&'a Record> {
    replies.into_iter().flatten().max_by(|a, b| a.precedence(b))
}

/// The repliers that need `newest` sent to them: those that hold nothing or an older record.
pub fn stale<'a>(
    newest: &Record,
    replies: impl IntoIterator<Item = &'a (PeerId, Option<Record>)>,
) -> Vec<PeerId> {
    replies
        .into_iter()
        .filter(|(_, held)| match held {
            None => true,
            Some(r) => r.precedence(newest) == std::cmp::Ordering::Less,
        })
        .map(|(p, _)| *p)
        .collect()
}

#[cfg(test)]
mod tests {
    use libp2p::identity::Keypair;

    use super::*;
    use crate::clock::Hlc;

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n).map(|_| PeerId::random()).collect()
    }

    #[test]
    fn rank_sorts_by_xor_distance_and_dedups() {
        let ps = peers(20);
        let mut input = ps.clone();
        input.extend(ps.iter().take(5));
        let ranked = rank("k", input);
        assert_eq!(ranked.len(), 20);
        let target = KBucketKey::new(b"k".to_vec());
        for w in ranked.windows(2) {
            assert!(
                target.distance(&KBucketKey::from(w[0]))
                    <= target.distance(&KBucketKey::from(w[1]))
            );
        }
    }

    #[test]
    fn a_ranker_ranks_as_rank_does() {
        let all = peers(30);
        let ranker = Ranker::new(all.iter().copied().chain(all.iter().copied()));
        for key in ["a", "b", "some/longer/key"] {
            assert_eq!(ranker.nearest(key, 5), rank(key, all.clone())[..5].to_vec());
            assert_eq!(ranker.nearest(key, 100), rank(key, all.clone()));
        }
    }

    #[test]
    fn plan_caps_replicas_and_takes_a_majority() {
        let p = plan("k", peers(8), 5, None);
        assert_eq!((p.replicas.len(), p.spares.len(), p.needed), (5, 3, 3));
        let p = plan("k", peers(2), 5, None);
        assert_eq!((p.replicas.len(), p.spares.len(), p.needed), (2, 0, 2));
        // A quorum above the replicas there are is capped, as R is: a put that cannot meet
        // it would fail yet leave its value on the replicas that acknowledged.
        let p = plan("k", peers(3), 5, Some(4));
        assert_eq!((p.replicas.len(), p.needed), (3, 3));
        assert_eq!(quorum(Some(2), 5), 2);
        assert_eq!(quorum(None, 0), 1);
        assert_eq!(quorum(Some(0), 3), 1);
        assert_eq!(majority(1), 1);
        assert_eq!(majority(4), 3);
        assert_eq!(majority(5), 3);
    }

    #[test]
    fn stale_finds_missing_and_older_replicas() {
        let kp = Keypair::generate_ed25519();
        let old = Record::sign(&kp, "k".into(), Some(b"a".to_vec()), Hlc::new(1, 0), None).unwrap();
        let new = Record::sign(&kp, "k".into(), Some(b"b".to_vec()), Hlc::new(2, 0), None).unwrap();
        let ps = peers(3);
        let replies = vec![(ps[0], Some(old.clone())), (ps[1], Some(new.clone())), (ps[2], None)];
        let best = newest(replies.iter().map(|(_, r)| r)).unwrap().clone();
        assert_eq!(best, new);
        assert_eq!(stale(&best, &replies), vec![ps[0], ps[2]]);
    }
}
