//! When a libp2p-kad get answers: the stop rule of the baseline's `get_record`, apart from the
//! swarm so that it can be tested as plain data.
//!
//! libp2p-kad reports every record its query finds (`GetRecordOk::FoundRecord`, the local
//! store's first) and leaves it to the caller when to stop. The `kad` system stops at the first
//! record, as the rust-libp2p examples do (quorum 1); `kad-q3` waits for records from Q distinct
//! peers (Q = 3 at the default R = 5: peerkv's read quorum), or for the query's end, whichever
//! comes first: then it answers with what it found, and "not found" when it found nothing.

use std::num::NonZeroUsize;

use libp2p::PeerId;

/// One get's records so far.
#[derive(Debug, Clone)]
pub struct QuorumRead {
    /// Records from this many distinct peers answer the get.
    quorum: NonZeroUsize,
    /// Peers whose record was counted; `None` is the getter's own store.
    sources: Vec<Option<PeerId>>,
    /// Each distinct value found with the number of peers that returned it, in the order found.
    values: Vec<(Vec<u8>, usize)>,
}

/// How a get answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAnswer {
    /// The value most peers returned (of equals, the first found); `None`: not found.
    pub value: Option<Vec<u8>>,
    /// Distinct peers whose record the answer counted.
    pub records: usize,
    /// Fewer than the quorum: the query ended first.
    pub short: bool,
    /// Every record counted came from the getter's own store.
    pub local: bool,
}

impl QuorumRead {
    /// A get that answers once records from `quorum` distinct peers arrived.
    pub fn new(quorum: NonZeroUsize) -> Self {
        Self { quorum, sources: Vec::new(), values: Vec::new() }
    }

    /// A record from `source` (`None`: the getter's own store). Returns the answer when this
    /// record completes the quorum; a second record from a peer already counted changes
    /// nothing.
    pub fn record(&mut self, source: Option<PeerId>, value: Vec<u8>) -> Option<ReadAnswer> {
        if self.sources.contains(&source) {
            return None;
        }
        self.sources.push(source);
        match self.values.iter_mut().find(|(v, _)| *v == value) {
            Some((_, count)) => *count += 1,
            None => self.values.push((value, 1)),
        }
        (self.sources.len() >= self.quorum.get()).then(|| self.answer())
    }

    /// The query ended (finished, failed or timed out) before the quorum: the answer is what
    /// was found, `value: None` when nothing was.
    pub fn end(&self) -> ReadAnswer {
        self.answer()
    }

    /// Whether any record arrived.
    pub fn found_any(&self) -> bool {
        !self.sources.is_empty()
    }

    fn answer(&self) -> ReadAnswer {
        // `max_by_key` keeps the last of equals; the first found wins ties, so search reversed.
        let value =
            self.values.iter().rev().max_by_key(|(_, count)| *count).map(|(v, _)| v.clone());
        ReadAnswer {
            value,
            records: self.sources.len(),
            short: self.sources.len() < self.quorum.get(),
            local: !self.sources.is_empty() && self.sources.iter().all(Option::is_none),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(n: usize) -> QuorumRead {
        QuorumRead::new(NonZeroUsize::new(n).unwrap())
    }

    #[test]
    fn quorum_one_answers_with_the_first_record() {
        let mut read = q(1);
        let answer = read.record(Some(PeerId::random()), b"v".to_vec()).unwrap();
        assert_eq!(
            answer,
            ReadAnswer { value: Some(b"v".to_vec()), records: 1, short: false, local: false }
        );
    }

    #[test]
    fn quorum_one_answers_a_local_record_as_local() {
        let answer = q(1).record(None, b"v".to_vec()).unwrap();
        assert!(answer.local);
    }

    #[test]
    fn quorum_three_waits_for_three_distinct_peers() {
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut read = q(3);
        assert_eq!(read.record(Some(a), b"v".to_vec()), None);
        // The same peer again is not a second record.
        assert_eq!(read.record(Some(a), b"v".to_vec()), None);
        assert_eq!(read.record(Some(b), b"v".to_vec()), None);
        let answer = read.record(Some(c), b"v".to_vec()).unwrap();
        assert_eq!(answer.records, 3);
        assert!(!answer.short && !answer.local);
    }

    #[test]
    fn the_own_store_counts_as_one_peer() {
        let mut read = q(3);
        assert_eq!(read.record(None, b"v".to_vec()), None);
        assert_eq!(read.record(None, b"v".to_vec()), None);
        assert_eq!(read.record(Some(PeerId::random()), b"v".to_vec()), None);
        let answer = read.record(Some(PeerId::random()), b"v".to_vec()).unwrap();
        assert_eq!(answer.records, 3);
        assert!(!answer.local);
    }

    #[test]
    fn the_query_ending_first_answers_with_what_was_found() {
        let mut read = q(3);
        read.record(Some(PeerId::random()), b"v".to_vec());
        let answer = read.end();
        assert_eq!(
            answer,
            ReadAnswer { value: Some(b"v".to_vec()), records: 1, short: true, local: false }
        );
    }

    #[test]
    fn the_query_ending_with_nothing_is_not_found() {
        let read = q(3);
        assert!(!read.found_any());
        assert_eq!(read.end(), ReadAnswer { value: None, records: 0, short: true, local: false });
    }

    #[test]
    fn the_value_most_peers_returned_wins_and_the_first_breaks_ties() {
        let mut read = q(3);
        read.record(Some(PeerId::random()), b"old".to_vec());
        read.record(Some(PeerId::random()), b"new".to_vec());
        assert_eq!(read.end().value, Some(b"old".to_vec()));
        let answer = read.record(Some(PeerId::random()), b"new".to_vec()).unwrap();
        assert_eq!(answer.value, Some(b"new".to_vec()));
    }
}
