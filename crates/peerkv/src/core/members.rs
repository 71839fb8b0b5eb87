//! The one-hop view: every value-protocol peer this peer has heard of and not lost, bounded.
//!
//! Kademlia's k-buckets hold at most 20 peers per distance range, so in an overlay of a few
//! hundred peers a routing table often lacks the true R nearest of a key, and a get takes a
//! second round trip to learn them from the replicas' hints. The members table holds every
//! live value-protocol peer seen (up to a cap), so up to about the cap a get asks the true R
//! nearest at once. Above it the view is a large random sample, and the search's walk finds
//! the rest, as before.
//!
//! Each member carries when it was last heard from directly — by this peer (a connection, an
//! answer, a ping) or, as reported in an exchange, by another: exchanges pass on the age of
//! that sighting, never a fresh one, so a peer that died is forgotten everywhere
//! [`MEMBER_TTL`] after anyone last heard from it, however often it is passed on. A member only
//! *named* in a Fetch hint (which carries no age) gets [`HINT_LIFE`] unless it is confirmed.
//! A member this peer could not reach is removed at once and remembered as lost
//! ([`Members::lost`]): what others report of it afterwards is older news and is ignored, until
//! it talks with us again (the suspects list also remembers it if it was silent). The cheap periodic exchange (a `Members` request to one
//! member, answered with up to [`SHARE_MAX`] members spread over the key space) keeps the
//! views of a stable overlay complete and fresh.
//!
//! Ranking is by the same XOR distance as [`placement`](crate::placement): the members are
//! indexed by their Kademlia key, and the n nearest to a target lie in the smallest
//! key-prefix range around it that holds n of them, so a query reads about 2n entries, not
//! the whole table.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::kad::KBucketKey;
use libp2p::{Multiaddr, PeerId};

use crate::protocol::{Response, MAX_NEAR_ADDRS};

/// Members held by default: an overlay up to this size is one hop wide.
pub const MEMBERS_CAP: usize = 2048;
/// A member nobody has heard from directly for this long is forgotten.
pub const MEMBER_TTL: Duration = Duration::from_secs(600);
/// How long a member only named in a Fetch hint lasts unless confirmed.
pub const HINT_LIFE: Duration = Duration::from_secs(60);
/// Members this peer keeps connected whatever the idle timeout (warm connections), by default:
/// the nearest to it. In the bench at N = 100 (a full mesh of 99 connections a peer) a peer's
/// resident memory is 7.5 MiB, 0.4 MiB more than when idle connections closed after 10 s.
pub const WARM_CAP: usize = 128;
/// Warm members dialed per rejoin round (every 5 s).
pub const WARM_DIALS: usize = 8;
/// Most members one periodic exchange passes on (a joiner asks for all).
pub const SHARE_MAX: usize = 256;
/// A peer's first exchanges ask for every member the other peer knows: a joiner's view is
/// complete after a few, not after N / [`SHARE_MAX`] rounds.
pub const FULL_EXCHANGES: u32 = 4;
/// Exchanges in a row that name nobody new before a peer exchanges at the slow pace.
pub const QUIET_AFTER: u32 = 3;
/// How often a peer exchanges members once its view is complete ...
pub const EXCHANGE_EVERY: Duration = Duration::from_secs(30);
/// ... and while it is young (its first [`FULL_EXCHANGES`]) or its view still grows (one of the
/// last [`QUIET_AFTER`] exchanges brought a member it did not know): while peers join, news of
/// them spreads in rounds of 5 s, not 30.
pub const EXCHANGE_YOUNG: Duration = Duration::from_secs(5);

/// A Kademlia key as 32 big-endian bytes: orders as the XOR metric's U256 does.
type Key = [u8; 32];

fn key_of(hashed: &[u8]) -> Key {
    let mut k = [0u8; 32];
    let n = hashed.len().min(32);
    k[..n].copy_from_slice(&hashed[..n]);
    k
}

/// The bounds of the keys that share the first `bits` bits with `target`.
fn prefix_range(target: &Key, bits: usize) -> (Key, Key) {
    let (mut low, mut high) = (*target, *target);
    for i in 0..32 {
        let keep = bits.saturating_sub(i * 8).min(8);
        let mask: u8 = if keep == 0 { 0 } else { 0xffu8 << (8 - keep) };
        low[i] &= mask;
        high[i] |= !mask;
    }
    (low, high)
}

fn xor(a: &Key, b: &Key) -> Key {
    let mut d = [0u8; 32];
    for i in 0..32 {
        d[i] = a[i] ^ b[i];
    }
    d
}

/// Seconds, as a member's times are kept (a member is 136 bytes: a simulator holds millions).
fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// One member.
#[derive(Debug, Clone)]
struct Member {
    /// Its Kademlia key: the table is sorted by it.
    key: Key,
    peer: PeerId,
    /// Where it listens (at most [`MAX_NEAR_ADDRS`]).
    addrs: Box<[Multiaddr]>,
    /// When anyone last heard from it directly, as far as we know (seconds of the core's
    /// monotonic time).
    seen: u32,
    /// Whether it talked with this peer itself.
    direct: bool,
    /// Whether only Fetch answers named it (nobody vouched for it: it never talked with us and
    /// no exchange reported a sighting): the pollution guard does not rank by it.
    named: bool,
}

/// The members table: one vector sorted by Kademlia key (a lookup by peer hashes its id and
/// searches; a nearest-first query reads a key-prefix range).
#[derive(Debug, Clone)]
pub struct Members {
    local: PeerId,
    members: Vec<Member>,
    cap: usize,
    /// Exchange answers taken in so far.
    merged: u32,
    /// Exchange answers in a row that named no member this peer did not know.
    quiet: u32,
    /// Peers this peer lost, and when (seconds): reports of a sighting before that are
    /// ignored.
    gone: HashMap<PeerId, u32>,
}

impl Members {
    /// An empty table of this peer (`local` is never a member), holding at most `cap`.
    pub fn new(local: PeerId, cap: usize) -> Self {
        Self {
            local,
            members: Vec::new(),
            cap: cap.max(1),
            merged: 0,
            quiet: 0,
            gone: HashMap::new(),
        }
    }

    /// Where `key` is, or would go.
    fn find(&self, key: &Key) -> Result<usize, usize> {
        self.members.binary_search_by(|m| m.key.cmp(key))
    }

    fn get(&self, peer: &PeerId) -> Option<&Member> {
        let key = key_of(KBucketKey::from(*peer).hashed_bytes());
        self.find(&key).ok().map(|i| &self.members[i])
    }

    fn get_mut(&mut self, peer: &PeerId) -> Option<&mut Member> {
        let key = key_of(KBucketKey::from(*peer).hashed_bytes());
        self.find(&key).ok().map(|i| &mut self.members[i])
    }

    /// `peer` talked with us at `now` (a connection, an answer, a ping); `addrs` are where it
    /// listens (kept, at most [`MAX_NEAR_ADDRS`], when given).
    pub fn seen(&mut self, peer: PeerId, addrs: &[Multiaddr], now: Duration) {
        self.upsert(peer, addrs, secs(now), true);
    }

    /// An exchange said someone heard from `peer` directly at `seen_at` (now less the age it
    /// reported).
    pub fn reported(
        &mut self,
        peer: PeerId,
        addrs: &[Multiaddr],
        seen_at: Duration,
        now: Duration,
    ) {
        if now.saturating_sub(seen_at) < MEMBER_TTL {
            self.upsert(peer, addrs, secs(seen_at), false);
        }
    }

    /// A Fetch answer named `peer` near a key at `now`: a member for [`HINT_LIFE`] unless
    /// something confirms it.
    pub fn named(&mut self, peer: PeerId, addrs: &[Multiaddr], now: Duration) {
        let seen_at = now.saturating_sub(MEMBER_TTL.saturating_sub(HINT_LIFE));
        self.insert(peer, addrs, secs(seen_at), false, true);
    }

    fn upsert(&mut self, peer: PeerId, addrs: &[Multiaddr], seen: u32, direct: bool) {
        self.insert(peer, addrs, seen, direct, false);
    }

    fn insert(&mut self, peer: PeerId, addrs: &[Multiaddr], seen: u32, direct: bool, named: bool) {
        if peer == self.local {
            return;
        }
        if direct {
            self.gone.remove(&peer);
        } else if self.gone.get(&peer).is_some_and(|lost| *lost >= seen) {
            return; // news older than our own failure to reach it
        }
        let key = key_of(KBucketKey::from(peer).hashed_bytes());
        match self.find(&key) {
            Ok(i) => {
                let m = &mut self.members[i];
                m.seen = m.seen.max(seen);
                m.direct |= direct;
                m.named &= named;
                if !addrs.is_empty() && (direct || m.addrs.is_empty()) {
                    m.addrs = addrs.iter().take(MAX_NEAR_ADDRS).cloned().collect();
                }
            }
            Err(i) => {
                if !direct && self.members.len() >= self.cap {
                    return; // full: hearsay does not push out what we know
                }
                let addrs = addrs.iter().take(MAX_NEAR_ADDRS).cloned().collect();
                self.members.insert(i, Member { key, peer, addrs, seen, direct, named });
                if self.members.len() > self.cap + self.cap / 8 {
                    self.trim();
                }
            }
        }
    }

    /// Back to the cap: named members first, then the longest unheard.
    fn trim(&mut self) {
        let excess = self.members.len().saturating_sub(self.cap);
        if excess == 0 {
            return;
        }
        let mut order: Vec<(bool, u32, Key)> =
            self.members.iter().map(|m| (m.direct, m.seen, m.key)).collect();
        order.sort_unstable();
        let doomed: std::collections::HashSet<Key> =
            order.into_iter().take(excess).map(|(_, _, k)| k).collect();
        self.members.retain(|m| !doomed.contains(&m.key));
    }

    /// `peer` answered or pinged at `now`: a member already is refreshed (nobody else is made
    /// one: traffic alone does not say a peer speaks the value protocol).
    pub fn heard(&mut self, peer: &PeerId, now: Duration) {
        if let Some(m) = self.get_mut(peer) {
            m.seen = m.seen.max(secs(now));
            m.direct = true;
            m.named = false;
        }
    }

    /// `peer` could not be reached at `now`: forgotten, and reports of it heard from before
    /// `now` are ignored from here on (for [`MEMBER_TTL`], at most the cap of them).
    pub fn lost(&mut self, peer: &PeerId, now: Duration) {
        self.remove(peer);
        let now = secs(now);
        let ttl = secs(MEMBER_TTL);
        if self.gone.len() >= self.cap {
            self.gone.retain(|_, at| now.saturating_sub(*at) < ttl);
        }
        if self.gone.len() < self.cap {
            self.gone.insert(*peer, now);
        }
    }

    /// Forgets `peer` (it does not speak the value protocol). Returns whether it was a member.
    pub fn remove(&mut self, peer: &PeerId) -> bool {
        let key = key_of(KBucketKey::from(*peer).hashed_bytes());
        match self.find(&key) {
            Ok(i) => {
                self.members.remove(i);
                true
            }
            Err(_) => false,
        }
    }

    /// Forgets the members nobody has heard from for [`MEMBER_TTL`] (and losses that old).
    pub fn expire(&mut self, now: Duration) {
        let (now, ttl) = (secs(now), secs(MEMBER_TTL));
        self.gone.retain(|_, at| now.saturating_sub(*at) < ttl);
        self.members.retain(|m| now.saturating_sub(m.seen) < ttl);
    }

    /// The `n` members nearest to `key`, nearest first (the same order as
    /// [`placement::rank`](crate::placement::rank)).
    pub fn nearest(&self, key: &str, n: usize) -> Vec<PeerId> {
        let target = key_of(KBucketKey::new(key.as_bytes().to_vec()).hashed_bytes());
        self.nearest_to(&target, n)
    }

    /// [`Members::nearest`] among the members someone vouched for: those that talked with us
    /// or that an exchange reported, not those only named in Fetch answers (what the pollution
    /// guard ranks by: names in answers cost a hostile peer nothing, and would make this peer
    /// refuse keys it should hold).
    pub fn nearest_vouched(&self, key: &str, n: usize) -> Vec<PeerId> {
        let target = key_of(KBucketKey::new(key.as_bytes().to_vec()).hashed_bytes());
        self.nearest_where(&target, n, &|m| !m.named).into_iter().map(|m| m.peer).collect()
    }

    /// The members someone vouched for ([`Members::nearest_vouched`]), in key order.
    pub fn vouched(&self) -> Vec<PeerId> {
        self.members.iter().filter(|m| !m.named).map(|m| m.peer).collect()
    }

    /// The `n` nearest to `key` among the members and `local` (this peer), nearest first: who
    /// should hold it by this view ([`placement::rank`](crate::placement::rank) of both).
    pub fn replicas(&self, local: PeerId, key: &str, n: usize) -> Vec<PeerId> {
        if n == 0 {
            return Vec::new();
        }
        let target = key_of(KBucketKey::new(key.as_bytes().to_vec()).hashed_bytes());
        let near = self.nearest_members(&target, n);
        let own = xor(&key_of(KBucketKey::from(local).hashed_bytes()), &target);
        let at = near.iter().position(|m| own < xor(&m.key, &target)).unwrap_or(near.len());
        let mut out: Vec<PeerId> = near.iter().map(|m| m.peer).collect();
        out.insert(at, local);
        out.truncate(n);
        out
    }

    /// The `n` members nearest to `key` with their addresses (at most [`MAX_NEAR_ADDRS`]
    /// each): what a replica names in a Fetch answer.
    pub fn nearest_with_addrs(&self, key: &str, n: usize) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let target = key_of(KBucketKey::new(key.as_bytes().to_vec()).hashed_bytes());
        self.nearest_members(&target, n).into_iter().map(|m| (m.peer, m.addrs.to_vec())).collect()
    }

    fn nearest_to(&self, target: &Key, n: usize) -> Vec<PeerId> {
        self.nearest_members(target, n).into_iter().map(|m| m.peer).collect()
    }

    fn nearest_members(&self, target: &Key, n: usize) -> Vec<&Member> {
        self.nearest_where(target, n, &|_| true)
    }

    /// The `n` members nearest to `target` among those `keep` takes.
    fn nearest_where(
        &self,
        target: &Key,
        n: usize,
        keep: &dyn Fn(&Member) -> bool,
    ) -> Vec<&Member> {
        if n == 0 || self.members.is_empty() {
            return Vec::new();
        }
        // The smallest prefix range around the target that holds n members: everything in it
        // is nearer than anything outside it.
        let len = self.members.len();
        let mut bits = ((usize::BITS - len.leading_zeros()) as usize + 1).min(256);
        let range = loop {
            let (low, high) = prefix_range(target, bits);
            let start = self.members.partition_point(|m| m.key < low);
            let end = self.members.partition_point(|m| m.key <= high);
            if bits == 0 || self.members[start..end].iter().filter(|m| keep(m)).count() >= n {
                break &self.members[start..end];
            }
            bits = bits.saturating_sub(2);
        };
        let mut ranked: Vec<(Key, &Member)> =
            range.iter().filter(|m| keep(m)).map(|m| (xor(&m.key, target), m)).collect();
        ranked.sort_unstable_by_key(|a| a.0);
        ranked.into_iter().take(n).map(|(_, m)| m).collect()
    }

    /// Where `peer` listens, as far as we know.
    pub fn addrs(&self, peer: &PeerId) -> &[Multiaddr] {
        self.get(peer).map_or(&[], |m| &m.addrs)
    }

    /// Whether `peer` is a member.
    pub fn contains(&self, peer: &PeerId) -> bool {
        self.get(peer).is_some()
    }

    /// Whether `peer` talked with us (not only named by others).
    pub fn is_direct(&self, peer: &PeerId) -> bool {
        self.get(peer).is_some_and(|m| m.direct)
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members to keep connected: the `n` nearest to this peer (all of them in an overlay
    /// up to that size; the node's default is [`WARM_CAP`]).
    pub fn warm(&self, n: usize) -> Vec<PeerId> {
        let own = key_of(KBucketKey::from(self.local).hashed_bytes());
        self.nearest_to(&own, n)
    }

    /// All members, in key order.
    pub fn peers(&self) -> Vec<PeerId> {
        self.members.iter().map(|m| m.peer).collect()
    }

    /// Up to `n` members to pass on in an exchange, with the age of their last direct
    /// sighting in seconds: those heard from within [`MEMBER_TTL`], spread over the key space
    /// (every `len / n`-th in key order from `offset`, so successive exchanges pass on
    /// different members).
    pub fn share(
        &self,
        n: usize,
        offset: usize,
        now: Duration,
    ) -> Vec<(PeerId, Vec<Multiaddr>, u32)> {
        let (now, ttl) = (secs(now), secs(MEMBER_TTL));
        // A member only named in Fetch answers has no sighting to pass on.
        let fresh: Vec<&Member> =
            self.members.iter().filter(|m| !m.named && now.saturating_sub(m.seen) < ttl).collect();
        if fresh.is_empty() || n == 0 {
            return Vec::new();
        }
        let step = (fresh.len() / n).max(1);
        let start = offset % fresh.len();
        (0..fresh.len().min(n))
            .map(|i| fresh[(start + i * step) % fresh.len()])
            .map(|m| (m.peer, m.addrs.to_vec(), now.saturating_sub(m.seen)))
            .collect()
    }

    /// A member to exchange with: the `pick`-th member this peer talked with, in key order
    /// (the caller draws `pick` at random), if any.
    pub fn pick(&self, pick: usize) -> Option<PeerId> {
        self.pick_where(pick, &|_| true)
    }

    /// [`Members::pick`] among those `prefer` accepts (the driver's: connected now, so an
    /// exchange opens no connection), else among all this peer talked with.
    pub fn pick_where(&self, pick: usize, prefer: &dyn Fn(&PeerId) -> bool) -> Option<PeerId> {
        let direct: Vec<&Member> = self.members.iter().filter(|m| m.direct).collect();
        let preferred: Vec<&&Member> = direct.iter().filter(|m| prefer(&m.peer)).collect();
        if let Some(m) = preferred.get(pick % preferred.len().max(1)) {
            return Some(m.peer);
        }
        direct.get(pick % direct.len().max(1)).map(|m| m.peer)
    }

    /// The member the next exchange asks (`draw`: the caller's random number): while the view
    /// still grows, any member this peer talked with; then one it is `connected` to, if any,
    /// so that a quiet overlay's exchanges open no connection. (Always preferring connected
    /// members kept each peer asking the same few, whose views lacked the same peers: at 300
    /// peers in one process the views stalled at 260–299 for minutes.)
    pub fn partner(&self, draw: usize, connected: &dyn Fn(&PeerId) -> bool) -> Option<PeerId> {
        if self.growing() {
            self.pick(draw)
        } else {
            self.pick_where(draw, connected)
        }
    }

    /// The answer to a `Members { max }` request at `now` (`offset`: where in key order this
    /// answer starts; the driver varies it). At most the cap: a joiner asks for everything.
    pub fn answer(&self, max: u16, offset: usize, now: Duration) -> Response {
        let n = usize::from(max).min(self.cap);
        Response::Members { peers: self.share(n, offset, now) }
    }

    /// How many members the next exchange asks for: everything for the first
    /// [`FULL_EXCHANGES`] and while the view still grows (a sample of 256 from a view of 300
    /// left a tenth of the overlay unknown for minutes), then [`SHARE_MAX`].
    pub fn wanted(&self) -> u16 {
        let n = if self.growing() { self.cap } else { SHARE_MAX };
        u16::try_from(n).unwrap_or(u16::MAX)
    }

    /// Whether the view counts as still growing: a young peer, or one of whose last
    /// [`QUIET_AFTER`] exchanges named someone new (peers join one after another: one answer
    /// with nothing new does not mean the next will have nothing).
    fn growing(&self) -> bool {
        self.merged < FULL_EXCHANGES || self.quiet < QUIET_AFTER
    }

    /// When the next exchange is due after one at `now`.
    pub fn next_exchange(&self, now: Duration) -> Duration {
        let soon = self.growing();
        now + if soon { EXCHANGE_YOUNG } else { EXCHANGE_EVERY }
    }

    /// Takes in an exchange's answer received at `now`: the members known are updated in
    /// place, the new ones (up to the cap: hearsay does not push out what we know) merged in
    /// one pass.
    pub fn merge(&mut self, peers: Vec<(PeerId, Vec<Multiaddr>, u32)>, now: Duration) {
        self.merged = self.merged.saturating_add(1);
        let ttl = secs(MEMBER_TTL);
        let mut fresh: Vec<Member> = Vec::new();
        for (peer, addrs, age) in peers.into_iter().take(self.cap) {
            if peer == self.local || age >= ttl {
                continue;
            }
            let seen = secs(now).saturating_sub(age);
            if self.gone.get(&peer).is_some_and(|lost| *lost >= seen) {
                continue;
            }
            let key = key_of(KBucketKey::from(peer).hashed_bytes());
            match self.find(&key) {
                Ok(i) => {
                    let m = &mut self.members[i];
                    m.seen = m.seen.max(seen);
                    m.named = false;
                    if m.addrs.is_empty() && !addrs.is_empty() {
                        m.addrs = addrs.into_iter().take(MAX_NEAR_ADDRS).collect();
                    }
                }
                Err(_) => {
                    let addrs = addrs.into_iter().take(MAX_NEAR_ADDRS).collect();
                    fresh.push(Member { key, peer, addrs, seen, direct: false, named: false });
                }
            }
        }
        fresh.sort_unstable_by_key(|m| m.key);
        fresh.dedup_by(|a, b| a.key == b.key);
        fresh.truncate(self.cap.saturating_sub(self.members.len()));
        self.quiet = if fresh.is_empty() { self.quiet.saturating_add(1) } else { 0 };
        if fresh.is_empty() {
            return;
        }
        let old = std::mem::take(&mut self.members);
        let mut merged = Vec::with_capacity(old.len() + fresh.len());
        let (mut a, mut b) = (old.into_iter().peekable(), fresh.into_iter().peekable());
        loop {
            let take_a = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => x.key < y.key,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let next = if take_a { a.next() } else { b.next() };
            merged.extend(next);
        }
        self.members = merged;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn nearest_ranks_as_placement_does() {
        let local = PeerId::random();
        for size in [1usize, 2, 7, 50, 300] {
            let mut m = Members::new(local, MEMBERS_CAP);
            let peers: Vec<PeerId> = (0..size).map(|_| PeerId::random()).collect();
            for p in &peers {
                m.seen(*p, &[], S);
            }
            for key in ["a", "b", "some/key", "@x/y"] {
                for n in [1, 5, 10, 400] {
                    let want: Vec<PeerId> = crate::placement::rank(key, peers.iter().copied())
                        .into_iter()
                        .take(n)
                        .collect();
                    assert_eq!(m.nearest(key, n), want, "size {size}, key {key}, n {n}");
                }
            }
        }
        assert!(Members::new(local, 8).nearest("a", 3).is_empty());
    }

    #[test]
    fn replicas_rank_this_peer_among_the_members() {
        let local = PeerId::random();
        let mut m = Members::new(local, 64);
        let peers: Vec<PeerId> = (0..20).map(|_| PeerId::random()).collect();
        for p in &peers {
            m.seen(*p, &[], S);
        }
        for key in ["a", "b", "c", "d", "e", "f"] {
            let all = peers.iter().copied().chain(std::iter::once(local));
            let want: Vec<PeerId> = crate::placement::rank(key, all).into_iter().take(5).collect();
            assert_eq!(m.replicas(local, key, 5), want);
        }
        assert_eq!(Members::new(local, 4).replicas(local, "a", 5), vec![local]);
    }

    #[test]
    fn a_lost_peer_stays_out_until_it_talks_again() {
        let mut m = Members::new(PeerId::random(), 8);
        let a = PeerId::random();
        let t = MEMBER_TTL;
        m.seen(a, &[addr(1)], t);
        m.lost(&a, t + S);
        assert!(!m.contains(&a));
        // Another peer still reports the sighting it had before we lost it, or a hint names it.
        m.merge(vec![(a, vec![addr(1)], 0)], t + S);
        m.named(a, &[addr(1)], t + S * 2);
        assert!(!m.contains(&a));
        // A later sighting somewhere else counts; so does its own word.
        m.merge(vec![(a, vec![addr(1)], 0)], t + S * 3);
        assert!(m.contains(&a));
        m.lost(&a, t + S * 4);
        m.seen(a, &[], t + S * 5);
        assert!(m.is_direct(&a));
    }

    #[test]
    fn the_local_peer_is_never_a_member() {
        let local = PeerId::random();
        let mut m = Members::new(local, 8);
        m.seen(local, &[addr(1)], S);
        m.named(local, &[addr(1)], S);
        assert!(m.is_empty());
    }

    #[test]
    fn members_only_named_in_answers_are_not_vouched_for() {
        let mut m = Members::new(PeerId::random(), 64);
        let t = MEMBER_TTL;
        let peers: Vec<PeerId> = (0..20).map(|_| PeerId::random()).collect();
        let (named, known) = peers.split_at(10);
        for p in named {
            m.named(*p, &[addr(1)], t);
        }
        for p in known {
            m.seen(*p, &[addr(2)], t);
        }
        assert_eq!(m.nearest("k", 20).len(), 20, "searches still use the hints");
        let vouched = m.nearest_vouched("k", 20);
        assert_eq!(vouched.len(), 10);
        assert!(vouched.iter().all(|p| known.contains(p)), "the guard ranks by vouched members");
        let mut want = placement_rank("k", known);
        want.truncate(3);
        assert_eq!(m.nearest_vouched("k", 3), want, "nearest first");
        let shared: Vec<PeerId> = m.share(64, 0, t).into_iter().map(|(p, _, _)| p).collect();
        assert!(shared.iter().all(|p| known.contains(p)), "a hint is not passed on as a sighting");
        // Talking with us, or an exchange's report of a sighting, vouches for a named member.
        m.heard(&named[0], t + S);
        m.merge(vec![(named[1], vec![], 5)], t + S);
        m.named(named[2], &[], t + S);
        let vouched = m.vouched();
        assert!(vouched.contains(&named[0]) && vouched.contains(&named[1]));
        assert!(!vouched.contains(&named[2]));
        // A hint about a vouched member does not undo it.
        m.named(known[0], &[], t + S);
        assert!(m.vouched().contains(&known[0]));
    }

    fn placement_rank(key: &str, peers: &[PeerId]) -> Vec<PeerId> {
        crate::placement::rank(key, peers.iter().copied())
    }

    #[test]
    fn hints_are_short_lived_unless_confirmed() {
        let mut m = Members::new(PeerId::random(), 8);
        let (a, b) = (PeerId::random(), PeerId::random());
        let t = MEMBER_TTL; // any time past the start
        m.named(a, &[addr(1)], t);
        m.named(b, &[addr(2)], t);
        assert!(!m.is_direct(&a));
        m.seen(a, &[], t + S);
        assert!(m.is_direct(&a));
        assert_eq!(m.addrs(&a), &[addr(1)], "an answer without addresses keeps the known ones");
        m.expire(t + HINT_LIFE);
        assert!(m.contains(&a) && !m.contains(&b));
    }

    #[test]
    fn a_dead_peer_passed_on_is_forgotten_a_ttl_after_its_last_sighting() {
        let dead = PeerId::random();
        let (mut a, mut b) =
            (Members::new(PeerId::random(), 64), Members::new(PeerId::random(), 64));
        a.seen(dead, &[], S);
        // Passed back and forth every 30 s: the sighting's age travels with it.
        let mut now = S;
        while now < S + MEMBER_TTL + S * 120 {
            now += S * 30;
            b.merge(a.share(SHARE_MAX, 0, now), now);
            a.merge(b.share(SHARE_MAX, 0, now), now);
            a.expire(now);
            b.expire(now);
        }
        assert!(!a.contains(&dead) && !b.contains(&dead));
        // A live one, heard from by one side now and then, stays on both.
        let live = PeerId::random();
        for i in 0..40u32 {
            let now = now + S * 30 * i;
            if i % 10 == 0 {
                a.seen(live, &[], now);
            }
            b.merge(a.share(SHARE_MAX, 0, now), now);
            a.expire(now);
            b.expire(now);
            assert!(a.contains(&live) && b.contains(&live), "round {i}");
        }
    }

    #[test]
    fn the_cap_holds_and_keeps_direct_members_first() {
        let cap = 16;
        let mut m = Members::new(PeerId::random(), cap);
        let direct: Vec<PeerId> = (0..cap / 2).map(|_| PeerId::random()).collect();
        for (i, p) in direct.iter().enumerate() {
            m.seen(*p, &[], S * (i as u32 + 100));
        }
        for i in 0..cap {
            m.named(PeerId::random(), &[], S * i as u32);
        }
        assert!(m.len() <= cap, "hearsay stops at the cap");
        for i in 0..4 * cap {
            m.seen(PeerId::random(), &[], S * (200 + i as u32));
            assert!(m.len() <= cap + cap / 8);
        }
        // The newest direct members stay, in key order.
        assert!(m.members.windows(2).all(|w| w[0].key < w[1].key));
        assert!(direct.iter().all(|p| !m.contains(p)), "the longest unheard went first");
    }

    #[test]
    fn remove_forgets_everywhere() {
        let mut m = Members::new(PeerId::random(), 8);
        let a = PeerId::random();
        m.seen(a, &[], S);
        assert!(m.remove(&a));
        assert!(!m.remove(&a));
        assert!(m.nearest("k", 5).is_empty());
    }

    #[test]
    fn only_fresh_members_are_shared_with_their_age() {
        let mut m = Members::new(PeerId::random(), 64);
        let t = MEMBER_TTL;
        let fresh: Vec<PeerId> = (0..10).map(|_| PeerId::random()).collect();
        for p in &fresh {
            m.seen(*p, &[addr(1)], t);
        }
        let old = PeerId::random();
        m.seen(old, &[], Duration::ZERO);
        let now = t + S * 5;
        let all = m.share(64, 0, now);
        assert_eq!(all.len(), 10);
        assert!(all.iter().all(|(p, a, age)| fresh.contains(p) && a == &[addr(1)] && *age == 5));
        let some = m.share(3, 7, now);
        assert_eq!(some.len(), 3);
        assert!(m.pick(12345).is_some_and(|p| m.is_direct(&p)));
        let one = fresh[3];
        assert_eq!(m.pick_where(777, &|p| *p == one), Some(one));
        assert!(m.pick_where(777, &|_| false).is_some_and(|p| m.is_direct(&p)));
        // Merged elsewhere: the reported sighting, not a new one.
        let mut other = Members::new(PeerId::random(), 64);
        other.merge(all, now);
        other.expire(t + MEMBER_TTL);
        assert!(other.is_empty());
    }

    #[test]
    fn a_merge_keeps_key_order_and_the_cap() {
        let local = PeerId::random();
        let mut m = Members::new(local, 50);
        let now = MEMBER_TTL;
        let first: Vec<(PeerId, Vec<Multiaddr>, u32)> =
            (0..30).map(|_| (PeerId::random(), vec![], 1)).collect();
        m.merge(first.clone(), now);
        let mut more: Vec<(PeerId, Vec<Multiaddr>, u32)> =
            (0..40).map(|_| (PeerId::random(), vec![addr(2)], 1)).collect();
        more.extend(first.iter().take(5).cloned());
        more.push((local, vec![], 0));
        m.merge(more, now);
        assert_eq!(m.len(), 50, "hearsay fills up to the cap, no further");
        assert!(m.members.windows(2).all(|w| w[0].key < w[1].key));
        assert!(first.iter().all(|(p, _, _)| m.contains(p)));
        assert!(!m.contains(&local));
        let peers: Vec<PeerId> = m.peers();
        assert_eq!(m.nearest("k", 50), crate::placement::rank("k", peers).to_vec());
    }

    #[test]
    fn prefix_ranges_are_exact() {
        let t: Key = [0b1010_1010; 32];
        let (low, high) = prefix_range(&t, 3);
        assert_eq!(low[0], 0b1010_0000);
        assert_eq!(high[0], 0b1011_1111);
        assert!(low[1..].iter().all(|b| *b == 0) && high[1..].iter().all(|b| *b == 0xff));
        let (low, high) = prefix_range(&t, 256);
        assert_eq!((low, high), (t, t));
        let (low, high) = prefix_range(&t, 0);
        assert_eq!((low, high), ([0; 32], [0xff; 32]));
    }

    #[test]
    fn a_view_that_still_grows_exchanges_again_soon() {
        let mut m = Members::new(PeerId::random(), MEMBERS_CAP);
        let now = Duration::from_secs(100);
        let news = |n: usize| -> Vec<(PeerId, Vec<Multiaddr>, u32)> {
            (0..n).map(|i| (PeerId::random(), vec![addr(4000 + i as u16)], 1)).collect()
        };
        for _ in 0..FULL_EXCHANGES {
            m.merge(news(3), now);
        }
        // Past its first exchanges, a peer whose last answer named someone new asks again
        // after 5 s ...
        m.merge(news(2), now);
        assert_eq!(m.next_exchange(now), now + EXCHANGE_YOUNG);
        assert_eq!(usize::from(m.wanted()), MEMBERS_CAP);
        // ... until three answers in a row bring nothing new; then every 30 s.
        for _ in 1..QUIET_AFTER {
            let known: Vec<_> = m.share(MEMBERS_CAP, 0, now);
            m.merge(known, now);
            assert_eq!(m.next_exchange(now), now + EXCHANGE_YOUNG);
        }
        m.merge(Vec::new(), now);
        assert_eq!(m.next_exchange(now), now + EXCHANGE_EVERY);
        assert_eq!(usize::from(m.wanted()), SHARE_MAX);
        m.merge(news(1), now);
        assert_eq!(m.next_exchange(now), now + EXCHANGE_YOUNG);
    }

    #[test]
    fn a_growing_view_asks_anyone_a_settled_one_asks_the_connected() {
        let mut m = Members::new(PeerId::random(), MEMBERS_CAP);
        let now = Duration::from_secs(100);
        let peers: Vec<PeerId> = (0..8).map(|_| PeerId::random()).collect();
        for (i, p) in peers.iter().enumerate() {
            m.seen(*p, &[addr(5000 + i as u16)], now);
        }
        let connected = peers[3];
        let only = |p: &PeerId| *p == connected;
        let asked: std::collections::HashSet<PeerId> =
            (0..64).filter_map(|d| m.partner(d, &only)).collect();
        assert!(asked.len() > 1, "a young peer asks around: {asked:?}");
        let known: Vec<_> = m.share(MEMBERS_CAP, 0, now);
        for _ in 0..FULL_EXCHANGES + QUIET_AFTER {
            m.merge(known.clone(), now);
        }
        assert!((0..64).all(|d| m.partner(d, &only) == Some(connected)));
    }
}
