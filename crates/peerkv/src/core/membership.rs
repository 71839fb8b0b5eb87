//! Membership: which peers count as down, and whom the rejoin timer dials.
//!
//! A peer that stops answering leaves the routing table, but it may still hold the newest write
//! of the keys it replicates (a host cut off by a partition goes on serving its side). So a
//! peer lost *silently* — a dial or a ping with no answer — becomes a *suspect*: for
//! [`SUSPECT_FOR`], or until it talks again, searches count it as a failed member of the
//! window ([`Search::suspect`](super::Search::suspect)) and replicas name it in their answers
//! (`Found.down`), so a quorum still needs it or enough others. A peer whose host *refused*
//! the connection is forgotten instead: nothing listens there, the process is gone and writes
//! nothing meanwhile.
//!
//! The rejoin timer redials what was lost ([`rejoin`]): peers mDNS told of, the routing table
//! while it is LAN-sized (so pings notice a peer that is gone), the suspects longest untried,
//! and — while the table is empty — the bootstrap addresses and the peers saved before a
//! restart.
//!
//! Both drivers use this: the node's event loop (which turns libp2p's dial and ping errors
//! into a [`Loss`]) and the simulator. Time is passed in as the monotonic part of
//! [`Now`](super::Now).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use libp2p::kad::KBucketKey;
use libp2p::{Multiaddr, PeerId};

/// How long a peer lost without an answer still counts, as failed, in quorums (then it is
/// taken as gone for good).
pub const SUSPECT_FOR: Duration = Duration::from_secs(600);
/// At most this many suspects are remembered (the oldest makes room).
pub const SUSPECTS_CAP: usize = 1024;
/// Suspects the rejoin timer dials per round.
pub const SUSPECT_REDIALS: usize = 4;
/// Most dials per rejoin round, all reasons together.
pub const MAX_REJOIN_DIALS: usize = 16;
/// Up to this many routing-table peers, every one of them is kept connected (and so pinged).
pub const KEEP_CONNECTED_MAX: usize = 64;
/// The rejoin timer's first pause for a peer mDNS told of whose handshake failed (a program
/// with another `--psk` key, or none, on the same LAN); it doubles with each failure in a row.
pub const HANDSHAKE_BACKOFF_FIRST: Duration = Duration::from_secs(30);
/// The longest such pause.
pub const HANDSHAKE_BACKOFF_MAX: Duration = Duration::from_secs(600);

/// Peers whose handshakes failed, and until when the rejoin timer leaves them alone: a peer
/// that answers mDNS but cannot join this swarm (another key) is not redialed every round. A
/// host that is down or cut off fails differently (no answer, or refused) and is not held
/// back here: it must come back as soon as it can.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failed: HashMap<PeerId, (u32, Duration)>,
}

impl Backoff {
    /// A handshake with `peer` failed at `now`.
    pub fn failed(&mut self, peer: PeerId, now: Duration) {
        let (failures, until) = self.failed.entry(peer).or_insert((0, now));
        *failures = failures.saturating_add(1);
        let doublings = (*failures - 1).min(16);
        let pause = HANDSHAKE_BACKOFF_FIRST.saturating_mul(1 << doublings);
        *until = now + pause.min(HANDSHAKE_BACKOFF_MAX);
    }

    /// `peer` connected (or is forgotten): no pause.
    pub fn clear(&mut self, peer: &PeerId) {
        self.failed.remove(peer);
    }

    /// Whether the rejoin timer may dial `peer` at `now`.
    pub fn allows(&self, peer: &PeerId, now: Duration) -> bool {
        self.failed.get(peer).map_or(true, |(_, until)| now >= *until)
    }

    /// Peers held back.
    pub fn len(&self) -> usize {
        self.failed.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.failed.is_empty()
    }
}

/// How a peer was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Its host refused the connection (an RST): the process is gone and is forgotten.
    Refused,
    /// No answer at all (a dial or request timed out, a ping failed): a crash, or a partition
    /// that hides a peer still serving the other side. It becomes a suspect.
    Silent,
}

/// One peer believed down.
#[derive(Debug, Clone)]
struct Suspect {
    /// Its Kademlia key (hashed once).
    key: KBucketKey<PeerId>,
    /// Since when.
    since: Duration,
    /// When the rejoin timer last dialed it.
    tried: Duration,
    /// Where it was.
    addrs: Vec<Multiaddr>,
}

/// The peers believed down.
#[derive(Debug, Clone, Default)]
pub struct Suspects {
    peers: HashMap<PeerId, Suspect>,
}

impl Suspects {
    /// `peer` (last seen at `addrs`) was lost at `now`, as `loss` says. Returns whether it is
    /// a suspect now. A peer suspected already keeps the time it was first lost.
    pub fn lost(&mut self, peer: PeerId, loss: Loss, addrs: Vec<Multiaddr>, now: Duration) -> bool {
        match loss {
            Loss::Refused => {
                self.peers.remove(&peer);
                false
            }
            Loss::Silent => {
                if let Some(s) = self.peers.get_mut(&peer) {
                    if !addrs.is_empty() {
                        s.addrs = addrs;
                    }
                    return true;
                }
                if self.peers.len() >= SUSPECTS_CAP {
                    let oldest =
                        self.peers.iter().min_by_key(|(p, s)| (s.since, **p)).map(|(p, _)| *p);
                    if let Some(oldest) = oldest {
                        self.peers.remove(&oldest);
                    }
                }
                let key = KBucketKey::from(peer);
                self.peers.insert(peer, Suspect { key, since: now, tried: now, addrs });
                true
            }
        }
    }

    /// `peer` talked (a connection, an answer): it is up. Returns whether it was a suspect.
    pub fn heard(&mut self, peer: &PeerId) -> bool {
        self.peers.remove(peer).is_some()
    }

    /// Forgets the suspects lost [`SUSPECT_FOR`] ago or longer.
    pub fn expire(&mut self, now: Duration) {
        self.peers.retain(|_, s| now.saturating_sub(s.since) < SUSPECT_FOR);
    }

    /// The suspects nearest to `key`, at most `n`, nearest first: what a search counts as
    /// failed, and what a replica names in `Found.down`.
    pub fn near(&self, key: &str, n: usize) -> Vec<PeerId> {
        if self.peers.is_empty() || n == 0 {
            return Vec::new();
        }
        let target = KBucketKey::new(key.as_bytes().to_vec());
        let mut ranked: Vec<_> =
            self.peers.iter().map(|(p, s)| (target.distance(&s.key), *p)).collect();
        if ranked.len() > n {
            ranked.select_nth_unstable(n - 1);
            ranked.truncate(n);
        }
        ranked.sort_unstable();
        ranked.into_iter().map(|(_, p)| p).collect()
    }

    /// The `n` suspects longest untried (ties: the longest suspected), marked as tried at
    /// `now`, with their addresses: what a rejoin round redials.
    pub fn redial(&mut self, n: usize, now: Duration) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let mut due: Vec<(Duration, Duration, PeerId)> =
            self.peers.iter().map(|(p, s)| (s.tried, s.since, *p)).collect();
        due.sort_unstable();
        due.into_iter()
            .take(n)
            .filter_map(|(_, _, p)| {
                let s = self.peers.get_mut(&p)?;
                s.tried = now;
                Some((p, s.addrs.clone()))
            })
            .collect()
    }

    /// Whether `peer` is a suspect.
    pub fn contains(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

/// What a rejoin round knows (lent by the driver for one call).
pub struct Known<'a> {
    /// This peer.
    pub local: PeerId,
    /// The routing table's peers.
    pub routed: &'a HashSet<PeerId>,
    /// Whether a connection to a peer is open.
    pub connected: &'a dyn Fn(&PeerId) -> bool,
    /// Peers mDNS told of, with their addresses.
    pub mdns: Vec<(PeerId, Vec<Multiaddr>)>,
    /// `--bootstrap` addresses that name their peer.
    pub bootstrap: Vec<(PeerId, Multiaddr)>,
    /// Peers saved before the last restart.
    pub saved: &'a [(PeerId, Vec<Multiaddr>)],
    /// Whether connections are meant to last (a short idle timeout says "do not keep them":
    /// redialing the table would fight it).
    pub keep_connected: bool,
}

/// One dial of a rejoin round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redial {
    /// Whom.
    pub peer: PeerId,
    /// Where (empty: wherever the routing table has it).
    pub addrs: Vec<Multiaddr>,
}

/// Whom a rejoin round dials, at most [`MAX_REJOIN_DIALS`], in this order:
/// 1. peers mDNS told of that are neither connected nor routed (after a cut heals, mDNS stays
///    quiet because its cache still holds them);
/// 2. while the table holds at most [`KEEP_CONNECTED_MAX`] peers and connections are meant to
///    last, its peers that are not connected (pings then notice a peer that is gone, and a
///    dial that fails takes it out of the table);
/// 3. the [`SUSPECT_REDIALS`] suspects longest untried (one that answers no longer counts as
///    failed: after a partition heals, or a crash);
/// 4. while the table is empty, the bootstrap addresses and the peers saved before a restart.
///
/// Never this peer, and never a peer already connected. A peer routed already is dialed only
/// by step 2 (its addresses are the table's).
pub fn rejoin(suspects: &mut Suspects, known: Known<'_>, now: Duration) -> Vec<Redial> {
    let mut candidates: Vec<Redial> = Vec::new();
    candidates.extend(known.mdns.into_iter().map(|(peer, addrs)| Redial { peer, addrs }));
    if known.keep_connected && known.routed.len() <= KEEP_CONNECTED_MAX {
        let mut routed: Vec<PeerId> = known.routed.iter().copied().collect();
        routed.sort_unstable();
        candidates.extend(routed.into_iter().map(|peer| Redial { peer, addrs: Vec::new() }));
    }
    candidates.extend(
        suspects
            .redial(SUSPECT_REDIALS, now)
            .into_iter()
            .map(|(peer, addrs)| Redial { peer, addrs }),
    );
    if known.routed.is_empty() {
        candidates.extend(
            known.bootstrap.into_iter().map(|(peer, addr)| Redial { peer, addrs: vec![addr] }),
        );
        candidates.extend(
            known.saved.iter().map(|(peer, addrs)| Redial { peer: *peer, addrs: addrs.clone() }),
        );
    }
    let mut seen = HashSet::new();
    candidates
        .into_iter()
        .filter(|d| {
            // A routed peer is redialed only at the table's own addresses (step 2).
            let table_dial = d.addrs.is_empty() || !known.routed.contains(&d.peer);
            d.peer != known.local
                && table_dial
                && !(known.connected)(&d.peer)
                && seen.insert(d.peer)
        })
        .take(MAX_REJOIN_DIALS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_handshake_pauses_redials_longer_each_time_until_it_connects() {
        let (peer, other) = (PeerId::random(), PeerId::random());
        let mut b = Backoff::default();
        let t = Duration::from_secs(100);
        assert!(b.allows(&peer, t));
        b.failed(peer, t);
        assert!(!b.allows(&peer, t + HANDSHAKE_BACKOFF_FIRST - Duration::from_secs(1)));
        assert!(b.allows(&peer, t + HANDSHAKE_BACKOFF_FIRST));
        assert!(b.allows(&other, t), "only that peer");
        let t2 = t + HANDSHAKE_BACKOFF_FIRST;
        b.failed(peer, t2);
        assert!(!b.allows(&peer, t2 + HANDSHAKE_BACKOFF_FIRST));
        assert!(b.allows(&peer, t2 + 2 * HANDSHAKE_BACKOFF_FIRST), "doubled");
        for _ in 0..40 {
            b.failed(peer, t2);
        }
        assert!(!b.allows(&peer, t2 + HANDSHAKE_BACKOFF_MAX - Duration::from_secs(1)));
        assert!(b.allows(&peer, t2 + HANDSHAKE_BACKOFF_MAX), "capped");
        b.clear(&peer);
        assert!(b.allows(&peer, t2) && b.is_empty());
    }

    fn peer() -> PeerId {
        PeerId::random()
    }

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_refusal_forgets_and_silence_suspects() {
        let mut s = Suspects::default();
        let (a, b) = (peer(), peer());
        assert!(s.lost(a, Loss::Silent, vec![addr(1)], S));
        assert!(!s.lost(b, Loss::Refused, vec![addr(2)], S));
        assert!(s.contains(&a) && !s.contains(&b));
        // A refusal later says the process is gone after all.
        assert!(!s.lost(a, Loss::Refused, vec![], 2 * S));
        assert!(s.is_empty());
    }

    #[test]
    fn talking_clears_and_time_expires() {
        let mut s = Suspects::default();
        let (a, b) = (peer(), peer());
        s.lost(a, Loss::Silent, vec![], S);
        s.lost(b, Loss::Silent, vec![], 2 * S);
        assert!(s.heard(&a));
        assert!(!s.heard(&a));
        s.expire(S + SUSPECT_FOR);
        assert!(s.contains(&b));
        s.expire(2 * S + SUSPECT_FOR);
        assert!(s.is_empty());
    }

    #[test]
    fn losing_again_keeps_the_first_time() {
        let mut s = Suspects::default();
        let a = peer();
        s.lost(a, Loss::Silent, vec![addr(1)], S);
        s.lost(a, Loss::Silent, vec![], SUSPECT_FOR);
        s.expire(S + SUSPECT_FOR);
        assert!(s.is_empty(), "a peer silent for SUSPECT_FOR is forgotten");
    }

    #[test]
    fn the_cap_drops_the_oldest() {
        let mut s = Suspects::default();
        let first = peer();
        s.lost(first, Loss::Silent, vec![], Duration::ZERO);
        for i in 1..SUSPECTS_CAP as u64 {
            s.lost(peer(), Loss::Silent, vec![], Duration::from_millis(i));
        }
        assert_eq!(s.len(), SUSPECTS_CAP);
        let newest = peer();
        s.lost(newest, Loss::Silent, vec![], S * 10);
        assert_eq!(s.len(), SUSPECTS_CAP);
        assert!(!s.contains(&first) && s.contains(&newest));
    }

    #[test]
    fn near_ranks_as_placement_does() {
        let mut s = Suspects::default();
        let peers: Vec<PeerId> = (0..50).map(|_| peer()).collect();
        for p in &peers {
            s.lost(*p, Loss::Silent, vec![], S);
        }
        for key in ["a", "b", "some/key"] {
            let want = crate::placement::Ranker::new(peers.iter().copied()).nearest(key, 5);
            assert_eq!(s.near(key, 5), want);
        }
        assert!(s.near("a", 0).is_empty());
        assert!(Suspects::default().near("a", 5).is_empty());
    }

    #[test]
    fn redials_go_to_the_longest_untried_in_turn() {
        let mut s = Suspects::default();
        let peers: Vec<PeerId> = (0..6).map(|_| peer()).collect();
        for (i, p) in peers.iter().enumerate() {
            s.lost(*p, Loss::Silent, vec![addr(i as u16 + 1)], S * i as u32);
        }
        let first: Vec<PeerId> = s.redial(4, S * 10).into_iter().map(|(p, _)| p).collect();
        assert_eq!(first, peers[..4]);
        let second: Vec<PeerId> = s.redial(4, S * 15).into_iter().map(|(p, _)| p).collect();
        assert_eq!(second, [peers[4], peers[5], peers[0], peers[1]]);
        let (p, addrs) = &s.redial(1, S * 20)[0];
        assert_eq!((*p, addrs.clone()), (peers[2], vec![addr(3)]));
    }

    #[test]
    fn a_rejoin_round_dials_what_was_lost_in_order_and_within_bounds() {
        let local = peer();
        let mut suspects = Suspects::default();
        let lost = peer();
        suspects.lost(lost, Loss::Silent, vec![addr(9)], S);
        let (routed_up, routed_down, mdns_new, mdns_connected) = (peer(), peer(), peer(), peer());
        let routed: HashSet<PeerId> = [routed_up, routed_down].into();
        let connected = |p: &PeerId| *p == routed_up || *p == mdns_connected;
        let saved = vec![(peer(), vec![addr(7)])];
        let known = Known {
            local,
            routed: &routed,
            connected: &connected,
            mdns: vec![
                (mdns_new, vec![addr(1)]),
                (mdns_connected, vec![addr(2)]),
                (local, vec![addr(3)]),
                (routed_down, vec![addr(4)]),
            ],
            bootstrap: vec![(peer(), addr(5))],
            saved: &saved,
            keep_connected: true,
        };
        let dials = rejoin(&mut suspects, known, S);
        let want = vec![
            Redial { peer: mdns_new, addrs: vec![addr(1)] },
            Redial { peer: routed_down, addrs: vec![] },
            Redial { peer: lost, addrs: vec![addr(9)] },
        ];
        assert_eq!(dials, want, "no bootstrap or saved peers while the table has peers");

        // An empty table: bootstrap and saved peers too; a short idle timeout: no table redials.
        let empty = HashSet::new();
        let nobody = |_: &PeerId| false;
        let many: Vec<(PeerId, Vec<Multiaddr>)> =
            (0..40).map(|_| (peer(), vec![addr(8)])).collect();
        let known = Known {
            local,
            routed: &empty,
            connected: &nobody,
            mdns: vec![],
            bootstrap: vec![(saved[0].0, addr(5))],
            saved: &many,
            keep_connected: false,
        };
        let dials = rejoin(&mut suspects, known, 2 * S);
        assert_eq!(dials.len(), MAX_REJOIN_DIALS);
        assert_eq!(dials[0].peer, lost);
        assert_eq!(dials[1], Redial { peer: saved[0].0, addrs: vec![addr(5)] });
    }
}
