//! Round-trip estimates: per peer (a moving average) and over all peers (a histogram for the
//! median and the 95th percentile), learnt from the answers operations get.
//!
//! A get asks the Q fastest of the R nearest first and sends one more request when an answer is
//! later than the learned p95 ([`Rtts::hedge_after`]); the estimates only order and time those
//! requests, they never decide what an answer means.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::PeerId;

/// Peers whose estimate is kept (past this, the table starts again: estimates are cheap to
/// learn back).
const PEERS_CAP: usize = 4096;
/// Histogram buckets: bucket i holds round trips in [2^(i/2), 2^((i+1)/2)) µs (√2 steps).
const BUCKETS: usize = 64;
/// Past this many samples the histogram halves its counts, so it follows a changing network.
const HISTORY: u64 = 4096;
/// Samples needed before the percentiles are trusted.
const MIN_SAMPLES: u64 = 16;
/// The hedge delay before anything is known, and its bounds.
const HEDGE_DEFAULT: Duration = Duration::from_millis(50);
const HEDGE_MIN: Duration = Duration::from_micros(500);
const HEDGE_MAX: Duration = Duration::from_secs(1);

fn bucket(rtt: Duration) -> usize {
    let us = rtt.as_micros().max(1) as f64;
    ((us.log2() * 2.0) as usize).min(BUCKETS - 1)
}

fn bucket_top(i: usize) -> Duration {
    Duration::from_micros(2f64.powf((i + 1) as f64 / 2.0) as u64)
}

/// The estimates.
#[derive(Debug, Clone)]
pub struct Rtts {
    /// Per peer: the smoothed round trip, µs (weight 1/4 for each new sample).
    peers: HashMap<PeerId, f64>,
    hist: [u64; BUCKETS],
    samples: u64,
}

impl Default for Rtts {
    fn default() -> Self {
        Self { peers: HashMap::new(), hist: [0; BUCKETS], samples: 0 }
    }
}

impl Rtts {
    /// An answer of `peer` came `rtt` after its request went out.
    pub fn observe(&mut self, peer: PeerId, rtt: Duration) {
        let us = rtt.as_micros() as f64;
        if self.peers.len() >= PEERS_CAP && !self.peers.contains_key(&peer) {
            self.peers.clear();
        }
        self.peers.entry(peer).and_modify(|e| *e += (us - *e) / 4.0).or_insert(us);
        self.hist[bucket(rtt)] += 1;
        self.samples += 1;
        if self.samples >= HISTORY {
            for h in &mut self.hist {
                *h /= 2;
            }
            self.samples = self.hist.iter().sum();
        }
    }

    /// A liveness probe to `peer` came back after `rtt`: its estimate, when no answer of an
    /// operation gave one yet. The percentiles are left alone (a probe's round trip has no
    /// request to serve in it: it would make the hedge fire early).
    pub fn seed(&mut self, peer: PeerId, rtt: Duration) {
        if self.peers.len() >= PEERS_CAP && !self.peers.contains_key(&peer) {
            return;
        }
        self.peers.entry(peer).or_insert(rtt.as_micros() as f64);
    }

    /// `peer`'s smoothed round trip, if it ever answered.
    pub fn estimate(&self, peer: &PeerId) -> Option<Duration> {
        self.peers.get(peer).map(|us| Duration::from_micros(*us as u64))
    }

    /// The round trip below which fraction `q` of the answers came (the top of its bucket),
    /// once enough are known.
    pub fn percentile(&self, q: f64) -> Option<Duration> {
        if self.samples < MIN_SAMPLES {
            return None;
        }
        let want = (self.samples as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, h) in self.hist.iter().enumerate() {
            seen += h;
            if seen >= want.max(1) {
                return Some(bucket_top(i));
            }
        }
        Some(bucket_top(BUCKETS - 1))
    }

    /// How long a get waits for its first answers before it asks one more of the R nearest:
    /// the learned p95 (50 ms until 16 answers are known), within 0.5 ms and 1 s.
    pub fn hedge_after(&self) -> Duration {
        self.percentile(0.95).unwrap_or(HEDGE_DEFAULT).clamp(HEDGE_MIN, HEDGE_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn per_peer_estimates_follow_the_answers() {
        let mut r = Rtts::default();
        let (a, b) = (PeerId::random(), PeerId::random());
        r.observe(a, MS);
        r.observe(b, MS * 20);
        assert_eq!(r.estimate(&a), Some(MS));
        assert!(r.estimate(&a) < r.estimate(&b));
        for _ in 0..20 {
            r.observe(a, MS * 40);
        }
        assert!(r.estimate(&a).unwrap() > MS * 35, "a slower peer is seen as slower");
        assert_eq!(r.estimate(&PeerId::random()), None);
    }

    #[test]
    fn a_probe_seeds_an_estimate_but_never_the_hedge() {
        let mut r = Rtts::default();
        let p = PeerId::random();
        for _ in 0..100 {
            r.seed(p, MS / 10);
        }
        assert_eq!(r.estimate(&p), Some(MS / 10));
        assert_eq!(r.hedge_after(), HEDGE_DEFAULT, "probes are not answers");
        r.observe(p, MS * 2);
        let answered = r.estimate(&p);
        assert!(answered > Some(MS / 10), "answers move the estimate");
        r.seed(p, MS / 10);
        assert_eq!(r.estimate(&p), answered, "a probe does not overwrite an estimate");
    }

    #[test]
    fn the_hedge_waits_for_the_p95() {
        let mut r = Rtts::default();
        assert_eq!(r.hedge_after(), HEDGE_DEFAULT, "nothing known yet");
        let p = PeerId::random();
        for i in 0..100u32 {
            r.observe(p, if i < 95 { MS } else { MS * 100 });
        }
        let hedge = r.hedge_after();
        assert!(hedge >= MS && hedge < MS * 3, "p95 of mostly 1 ms answers: {hedge:?}");
        for _ in 0..10_000 {
            r.observe(p, MS * 10_000);
        }
        assert_eq!(r.hedge_after(), HEDGE_MAX, "old samples fade and the bound holds");
    }

    #[test]
    fn percentiles_are_ordered() {
        let mut r = Rtts::default();
        let p = PeerId::random();
        for i in 1..=200u64 {
            r.observe(p, Duration::from_micros(i * 50));
        }
        let (p50, p95) = (r.percentile(0.5).unwrap(), r.percentile(0.95).unwrap());
        assert!(p50 <= p95);
        assert!(p50 >= Duration::from_millis(3) && p50 <= Duration::from_millis(8), "{p50:?}");
    }
}
