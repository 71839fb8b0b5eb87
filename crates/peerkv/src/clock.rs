//! Hybrid logical clock: versions that follow wall time but never go backwards.
//!
//! A version is `(ms, counter)`: the physical milliseconds since the Unix epoch the peer had seen
//! when it wrote, and a counter that orders writes within one millisecond (or while the wall
//! clock lags a version seen from another peer). Everything here is pure: `now` is passed in.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A record version: physical milliseconds and a logical counter, compared in that order.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch (the writer's view, pushed forward by versions it saw).
    pub ms: u64,
    /// Orders versions that share `ms`.
    pub counter: u32,
}

impl Hlc {
    /// A version from its two parts.
    pub const fn new(ms: u64, counter: u32) -> Self {
        Self { ms, counter }
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.ms, self.counter)
    }
}

impl FromStr for Hlc {
    type Err = String;

    /// Parses the `ms.counter` form that [`Display`](fmt::Display) writes.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ms, counter) = s.split_once('.').unwrap_or((s, "0"));
        let ms = ms.parse().map_err(|_| format!("bad version {s:?}: expected MS.COUNTER"))?;
        let counter =
            counter.parse().map_err(|_| format!("bad version {s:?}: expected MS.COUNTER"))?;
        Ok(Self { ms, counter })
    }
}

/// The local clock of one peer: hands out strictly increasing versions.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// The greatest version handed out or observed; every tick is greater than this.
    last: Hlc,
}

impl Clock {
    /// A clock that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new version for a local write at wall time `now_ms`; strictly greater than every
    /// version this clock handed out or observed before.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        self.last = if now_ms > self.last.ms {
            Hlc::new(now_ms, 0)
        } else if self.last.counter == u32::MAX {
            Hlc::new(self.last.ms.saturating_add(1), 0)
        } else {
            Hlc::new(self.last.ms, self.last.counter + 1)
        };
        self.last
    }

    /// Takes note of a version written elsewhere so that the next tick is greater than it.
    /// The caller bounds how far in the future an accepted version may be.
    pub fn observe(&mut self, seen: Hlc) {
        if seen > self.last {
            self.last = seen;
        }
    }

    /// The greatest version handed out or observed so far.
    pub fn last(&self) -> Hlc {
        self.last
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 if the system clock is before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn tick_follows_wall_time_and_counts_within_a_millisecond() {
        let mut c = Clock::new();
        assert_eq!(c.tick(100), Hlc::new(100, 0));
        assert_eq!(c.tick(100), Hlc::new(100, 1));
        assert_eq!(c.tick(101), Hlc::new(101, 0));
    }

    #[test]
    fn tick_after_a_backwards_jump_keeps_counting() {
        let mut c = Clock::new();
        c.tick(500);
        assert_eq!(c.tick(10), Hlc::new(500, 1));
    }

    #[test]
    fn observe_pushes_the_next_tick_past_a_remote_version() {
        let mut c = Clock::new();
        c.tick(100);
        c.observe(Hlc::new(900, 7));
        assert_eq!(c.tick(100), Hlc::new(900, 8));
        c.observe(Hlc::new(5, 0));
        assert_eq!(c.tick(100), Hlc::new(900, 9));
    }

    #[test]
    fn counter_overflow_moves_to_the_next_millisecond() {
        let mut c = Clock::new();
        c.observe(Hlc::new(7, u32::MAX));
        assert_eq!(c.tick(0), Hlc::new(8, 0));
    }

    #[test]
    fn display_and_parse_round_trip() {
        let v = Hlc::new(1_764_000_000_123, 42);
        assert_eq!(v.to_string().parse::<Hlc>(), Ok(v));
        assert!("x.1".parse::<Hlc>().is_err());
    }

    proptest! {
        /// Whatever the wall clock does and whatever is observed, ticks strictly increase.
        #[test]
        fn never_goes_backwards(steps in proptest::collection::vec((any::<bool>(), 0u64..10_000, 0u32..5), 1..200)) {
            let mut c = Clock::new();
            let mut prev = Hlc::default();
            for (observe, ms, counter) in steps {
                if observe {
                    c.observe(Hlc::new(ms, counter));
                    prop_assert!(c.last() >= prev);
                    prev = c.last();
                } else {
                    let v = c.tick(ms);
                    prop_assert!(v > prev, "{v} after {prev}");
                    prev = v;
                }
            }
        }
    }
}
