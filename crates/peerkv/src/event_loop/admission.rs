//! The rate limits on requests from peers (token buckets of governor), checked before a request
//! is served. The limits and what a refused peer sees are in [`crate::admission`].

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use libp2p::PeerId;

use crate::admission::{Admission, GateCounters};
use crate::protocol::Request;

/// How many times its rate a bucket holds (the burst a quiet peer may send at once).
const PEER_BURST: u32 = 2;
/// The same for upkeep requests, which come in bursts at each round.
const UPKEEP_BURST: u32 = 5;
/// Known peers together may send this many times one peer's upkeep rate.
const KNOWN_UPKEEP_SHARE: u32 = 10;

/// The token buckets.
pub(super) struct Gate {
    peer_rate: u32,
    upkeep_rate: u32,
    strangers_rate: u32,
    /// Every request, per peer.
    per_peer: DefaultKeyedRateLimiter<PeerId>,
    /// Upkeep requests, per peer.
    upkeep_per_peer: DefaultKeyedRateLimiter<PeerId>,
    /// Upkeep requests of peers in the routing table or named by `--bootstrap`, together.
    upkeep_known: DefaultDirectRateLimiter,
    /// Upkeep requests of every other peer, together.
    upkeep_strangers: DefaultDirectRateLimiter,
    counters: GateCounters,
}

fn quota(rate: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(rate.get().saturating_mul(burst)).unwrap_or(rate);
    Quota::per_second(rate).allow_burst(burst)
}

/// Whether a request costs a scan of what we hold or a batch of writes.
fn is_upkeep(request: &Request) -> bool {
    matches!(request, Request::Summary { .. } | Request::Digest { .. } | Request::StoreMany { .. })
}

impl Gate {
    pub(super) fn new(admission: &Admission) -> Self {
        let peer_rate = admission.peer_rate;
        let upkeep_rate = admission.upkeep_rate;
        let strangers_rate = (upkeep_rate / 2).max(1);
        Self {
            peer_rate,
            upkeep_rate,
            strangers_rate,
            per_peer: DefaultKeyedRateLimiter::keyed(quota(peer_rate, PEER_BURST)),
            upkeep_per_peer: DefaultKeyedRateLimiter::keyed(quota(upkeep_rate, UPKEEP_BURST)),
            upkeep_known: DefaultDirectRateLimiter::direct(quota(
                upkeep_rate.saturating_mul(KNOWN_UPKEEP_SHARE),
                UPKEEP_BURST,
            )),
            upkeep_strangers: DefaultDirectRateLimiter::direct(quota(strangers_rate, UPKEEP_BURST)),
            counters: GateCounters::default(),
        }
    }

    /// Whether `peer` may have `request` served now; `Err` with the reason to answer. `known`:
    /// the peer is in the routing table or named by `--bootstrap`. A refused request is not
    /// charged to the shared buckets.
    pub(super) fn admit(
        &mut self,
        peer: &PeerId,
        request: &Request,
        known: bool,
    ) -> Result<(), String> {
        if self.per_peer.check_key(peer).is_err() {
            self.counters.peer_limited += 1;
            return Err(format!(
                "rate limit: more than {} requests a second from one peer (--peer-rate); try again later",
                self.peer_rate
            ));
        }
        if !is_upkeep(request) {
            return Ok(());
        }
        if self.upkeep_per_peer.check_key(peer).is_err() {
            self.counters.upkeep_limited += 1;
            return Err(format!(
                "rate limit: more than {} upkeep requests (Summary, Digest, StoreMany) a second from one peer (--upkeep-rate); try again later",
                self.upkeep_rate
            ));
        }
        let (shared, rate, who) = if known {
            (&self.upkeep_known, self.upkeep_rate.saturating_mul(KNOWN_UPKEEP_SHARE), "known peers")
        } else {
            (&self.upkeep_strangers, self.strangers_rate, "peers outside the routing table")
        };
        if shared.check().is_err() {
            self.counters.upkeep_limited += 1;
            if !known {
                self.counters.strangers_limited += 1;
            }
            return Err(format!(
                "rate limit: more than {rate} upkeep requests a second from all {who} together (--upkeep-rate); try again later"
            ));
        }
        Ok(())
    }

    /// Forgets peers whose buckets are full again (they are as good as new), so that the maps
    /// do not grow with every identity ever seen.
    pub(super) fn forget_quiet(&mut self) {
        for map in [&self.per_peer, &self.upkeep_per_peer] {
            map.retain_recent();
            map.shrink_to_fit();
        }
    }

    /// Peers with a bucket in use.
    pub(super) fn tracked(&self) -> usize {
        self.per_peer.len()
    }

    pub(super) fn counters(&self) -> GateCounters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetch() -> Request {
        Request::Fetch { key: "k".into(), near: 0, version_only: false }
    }

    fn summary() -> Request {
        Request::Summary { buckets: vec![] }
    }

    #[test]
    fn a_flooding_peer_is_refused_with_a_reason_and_others_are_not() {
        let mut gate = Gate::new(&Admission { peer_rate: 10, ..Admission::default() });
        let (flooder, other) = (PeerId::random(), PeerId::random());
        let admitted = (0..100).filter(|_| gate.admit(&flooder, &fetch(), false).is_ok()).count();
        assert!((20..=25).contains(&admitted), "burst of 2 x 10, admitted {admitted}");
        let reason = gate.admit(&flooder, &fetch(), false).unwrap_err();
        assert!(reason.contains("--peer-rate"), "{reason}");
        assert!(gate.admit(&other, &fetch(), false).is_ok());
        assert!(gate.counters().peer_limited >= 75);
    }

    #[test]
    fn strangers_flooding_upkeep_do_not_starve_known_peers() {
        let mut gate = Gate::new(&Admission { upkeep_rate: 10, ..Admission::default() });
        // Many identities, each under its own limit, together past the strangers' share.
        let strangers: Vec<PeerId> = (0..50).map(|_| PeerId::random()).collect();
        let admitted =
            strangers.iter().filter(|p| gate.admit(p, &summary(), false).is_ok()).count();
        assert!(admitted <= 30, "strangers' share is 5 a second, bursts of 25: {admitted}");
        assert!(gate.counters().strangers_limited > 0);
        let known = PeerId::random();
        let known_admitted =
            (0..20).filter(|_| gate.admit(&known, &summary(), true).is_ok()).count();
        assert!(known_admitted >= 20, "a known peer still gets its upkeep in: {known_admitted}");
        // Cheap requests from strangers are not held by the upkeep share.
        assert!(gate.admit(&strangers[0], &fetch(), false).is_ok());
    }
}
