//! Answers held until the writes they acknowledge are committed.
//!
//! A request that wrote (job `own`), or whose answer rests on a write still queued by an
//! earlier request (job `dep`: a duplicate Store answered "held" from the pending record), is
//! held here. A batch reported ([`Committed`]) releases every answer whose jobs are all
//! reported; an answer is `Ok` only if none of its jobs was in a batch that failed.

use std::collections::BTreeMap;

use super::{Committed, Seq};

/// Held answers, by the last job each waits for.
#[derive(Debug)]
pub(crate) struct Acks<W> {
    /// (last job waited for, hold number) → (the other job waited for, the answer).
    held: BTreeMap<(Seq, u64), (Option<Seq>, W)>,
    /// Numbers the holds, so two holds on one job both stay.
    next: u64,
    /// Batches that failed, (first, last, reason), while an answer held may still rest on one.
    failed: Vec<(Seq, Seq, String)>,
}

impl<W> Default for Acks<W> {
    fn default() -> Self {
        Self { held: BTreeMap::new(), next: 0, failed: Vec::new() }
    }
}

impl<W> Acks<W> {
    /// Holds `answer` until jobs `a` and `b` (either may be absent) are reported. With neither,
    /// the answer is handed back at once: nothing to wait for.
    pub(crate) fn hold(&mut self, a: Option<Seq>, b: Option<Seq>, answer: W) -> Option<W> {
        let (last, other) = match (a, b) {
            (None, None) => return Some(answer),
            (Some(x), None) | (None, Some(x)) => (x, None),
            (Some(x), Some(y)) => (x.max(y), Some(x.min(y))),
        };
        self.next += 1;
        self.held.insert((last, self.next), (other, answer));
        None
    }

    /// A batch was reported: the answers it releases, each with `Err(reason)` when one of its
    /// jobs failed (this batch or an earlier one).
    pub(crate) fn release(&mut self, batch: &Committed) -> Vec<(W, Result<(), String>)> {
        if let Err(reason) = &batch.result {
            self.failed.push((batch.first, batch.last, reason.clone()));
        }
        let mut out = Vec::new();
        while let Some(entry) = self.held.first_entry() {
            if entry.key().0 > batch.last {
                break;
            }
            let ((last, _), (other, answer)) = entry.remove_entry();
            let failure = self.failed.iter().find(|(first, end, _)| {
                (*first..=*end).contains(&last)
                    || other.is_some_and(|o| (*first..=*end).contains(&o))
            });
            out.push((answer, failure.map_or(Ok(()), |(_, _, reason)| Err(reason.clone()))));
        }
        if !self.failed.is_empty() {
            // Forget failures no answer held can rest on any more.
            let oldest =
                self.held.iter().map(|((last, _), (other, _))| other.unwrap_or(*last)).min();
            match oldest {
                None => self.failed.clear(),
                Some(oldest) => self.failed.retain(|(_, end, _)| *end >= oldest),
            }
        }
        out
    }

    /// Answers held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.held.len()
    }

    /// Every answer still held (shutdown: the store could not report their batches).
    pub(crate) fn drain(&mut self) -> Vec<W> {
        std::mem::take(&mut self.held).into_values().map(|(_, w)| w).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first: Seq, last: Seq, ok: bool) -> Committed {
        Committed {
            first,
            last,
            result: if ok { Ok(()) } else { Err("disk full".into()) },
            records: 0,
            changes: Vec::new(),
        }
    }

    #[test]
    fn nothing_is_released_before_its_batch() {
        let mut acks = Acks::default();
        assert_eq!(acks.hold(None, None, "fetch"), Some("fetch"), "no write: answered at once");
        assert_eq!(acks.hold(Some(1), None, "a"), None);
        assert_eq!(acks.hold(Some(2), None, "b"), None);
        assert_eq!(acks.hold(Some(3), Some(1), "c"), None);
        let out = acks.release(&batch(1, 1, true));
        assert_eq!(out, vec![("a", Ok(()))]);
        let out = acks.release(&batch(2, 2, true));
        assert_eq!(out, vec![("b", Ok(()))]);
        assert_eq!(acks.len(), 1);
        assert_eq!(acks.release(&batch(3, 3, true)), vec![("c", Ok(()))]);
        assert_eq!(acks.len(), 0);
    }

    #[test]
    fn a_failed_batch_refuses_all_that_rest_on_it() {
        let mut acks = Acks::default();
        acks.hold(Some(1), None, "a");
        acks.hold(Some(2), None, "b");
        // c wrote in job 4, and its answer also rests on job 2 (a write it found queued).
        acks.hold(Some(4), Some(2), "c");
        acks.hold(Some(4), None, "d");
        let out = acks.release(&batch(1, 3, false));
        assert_eq!(out, vec![("a", Err("disk full".into())), ("b", Err("disk full".into()))]);
        let out = acks.release(&batch(4, 4, true));
        assert_eq!(out, vec![("c", Err("disk full".into())), ("d", Ok(()))]);
        assert!(acks.failed.is_empty(), "nothing held: failures forgotten");
    }
}
