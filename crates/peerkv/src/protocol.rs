//! The value protocol `/peerkv/kv/1.0.0`: wire types and their codec.
//!
//! One request per stream, CBOR-encoded (cbor4ii + serde), answered by one response. The codec
//! bounds what it reads from `max_value_size`, and turns a request it cannot read (malformed or
//! oversized) into [`Request::Malformed`] so the event loop answers it with a
//! [`Response::Rejected`] reason instead of dropping the stream without a word.

use std::io;

use futures::prelude::*;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use serde::{Deserialize, Serialize};

use std::time::Duration;

use crate::admission::{BudgetedBuf, ReadBudget};
use crate::clock::Hlc;
use crate::record::{Record, Stamp, MAX_KEY_LEN};

/// Protocol id of the value protocol.
pub const KV_PROTOCOL: StreamProtocol = StreamProtocol::new("/peerkv/kv/1.0.0");

/// Most peers a [`Response::Found`] names (Kademlia's K), and most addresses per peer.
pub const MAX_NEAR: usize = 20;
/// Most addresses given for one peer in a [`Response::Found`].
pub const MAX_NEAR_ADDRS: usize = 4;

/// Default Kademlia protocol id (routing only; values travel over [`KV_PROTOCOL`]).
pub const DEFAULT_KAD_PROTOCOL: &str = "/peerkv/kad/1.0.0";

/// Room for everything in a message besides the value and the key: version, writer key,
/// signature, CBOR framing.
const ENVELOPE_BYTES: u64 = 4096;

/// A request a peer sends to a replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// Merge this record into your store (a delete is a Store of a tombstone).
    Store {
        /// The signed record.
        record: Record,
    },
    /// Send me the record you hold for this key, and the peers you know nearest to it.
    Fetch {
        /// The key.
        key: String,
        /// How many peers nearest to the key to name in the answer (capped at
        /// [`MAX_NEAR`]; 0 for none).
        #[serde(default)]
        near: u16,
        /// Answer with the record's [`Stamp`] only ([`Response::Version`]), not the record: a
        /// get fetches one whole record and the versions of the others, a put only the
        /// versions. A peer that does not know the field answers [`Response::Found`].
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        version_only: bool,
    },
    /// Replica upkeep: the keys and versions I hold that you should hold too; answer with the
    /// ones you lack or hold older.
    Digest {
        /// `(key, version)` pairs.
        entries: Vec<(String, Hlc)>,
    },
    /// Replica upkeep: per bucket of the keys I would offer you, `(bucket, count, hash)`;
    /// answer with the buckets where yours differ.
    Summary {
        /// `(bucket, count, xor of (key, version) hashes)`, non-empty buckets only.
        buckets: Vec<(u16, u32, u64)>,
    },
    /// Replica upkeep: merge each of these records (each is checked like a single Store).
    StoreMany {
        /// The signed records.
        records: Vec<Record>,
    },
    /// Membership exchange: name up to `max` value-protocol peers you know (at most your
    /// members table's cap), with how long ago each was last heard from directly.
    Members {
        /// How many at most.
        max: u16,
    },
    /// Not a wire message: what the codec hands the event loop for a request it could not
    /// read, so that the sender still gets a [`Response::Rejected`].
    #[serde(skip)]
    Malformed {
        /// What was wrong with it.
        reason: String,
    },
    /// Not a wire message: a request the codec read without keeping it, because the bytes of
    /// requests being read had reached the budget ([`ReadBudget`]); answered
    /// [`Response::Rejected`] with the reason.
    #[serde(skip)]
    Refused {
        /// Why, with the budget and its flag.
        reason: String,
    },
}

/// A replica's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The record was verified and merged; `version` is what the replica holds now (greater
    /// than the sent one when a newer write had already arrived there).
    Stored {
        /// The version the replica holds after the merge.
        version: Hlc,
    },
    /// The record held for a fetched key, if any (a tombstone is a record too).
    Found {
        /// The record, or `None` when the replica holds nothing for the key.
        record: Option<Record>,
        /// The peers this replica knows nearest to the key, with their addresses, nearest
        /// first (as many as the fetch asked for).
        #[serde(default)]
        near: Vec<(PeerId, Vec<Multiaddr>)>,
        /// Peers near the key this replica believes down (a request to them failed
        /// recently): a search counts them as failed replicas instead of forgetting them, so
        /// the two sides of a partition do not each form a quorum of their own. Empty when
        /// none (and left out on the wire).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        down: Vec<PeerId>,
    },
    /// The answer to a [`Request::Fetch`] with `version_only`: what [`Response::Found`] says,
    /// with the record's stamp in place of the record.
    Version {
        /// The stamp of the record held, or `None` when the replica holds nothing for the key.
        held: Option<Stamp>,
        /// As in [`Response::Found`].
        #[serde(default)]
        near: Vec<(PeerId, Vec<Multiaddr>)>,
        /// As in [`Response::Found`].
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        down: Vec<PeerId>,
    },
    /// The keys of a [`Request::Digest`] this replica lacks or holds older.
    Missing {
        /// Those keys.
        keys: Vec<String>,
    },
    /// The buckets of a [`Request::Summary`] that differ here.
    Mismatch {
        /// Those buckets.
        buckets: Vec<u16>,
    },
    /// How a [`Request::StoreMany`] went.
    StoredMany {
        /// Records merged.
        stored: u32,
        /// `(key, reason)` of the records refused.
        rejected: Vec<(String, String)>,
    },
    /// The answer to [`Request::Members`]: `(peer, addresses, seconds since anyone last heard
    /// from it directly)`.
    Members {
        /// The members passed on.
        peers: Vec<(PeerId, Vec<Multiaddr>, u32)>,
    },
    /// The request was refused and changed nothing.
    Rejected {
        /// Why, in words for a person.
        reason: String,
    },
}

/// The request-response codec of the value protocol.
#[derive(Debug, Clone)]
pub struct KvCodec {
    /// Largest request or response read, in bytes.
    message_limit: u64,
    /// The byte budget and read deadline of requests; `None`: a request is read whole, for as
    /// long as libp2p's stream timeout allows (tests, tools, fuzzing).
    admission: Option<(ReadBudget, Duration)>,
}

impl KvCodec {
    /// A codec whose limits follow from the largest value a peer accepts.
    pub fn new(max_value_size: usize) -> Self {
        Self { message_limit: message_limit(max_value_size), admission: None }
    }

    /// This codec, reading requests within `budget` (shared by every stream of the peer) and
    /// each within `read_timeout`. The deadline needs a tokio runtime (the swarm's).
    pub fn with_admission(mut self, budget: ReadBudget, read_timeout: Duration) -> Self {
        self.admission = Some((budget, read_timeout));
        self
    }

    /// The largest message this codec reads.
    pub fn message_limit(&self) -> u64 {
        self.message_limit
    }
}

/// The largest encoded message that can carry a value of `max_value_size` bytes.
pub fn message_limit(max_value_size: usize) -> u64 {
    (max_value_size as u64).saturating_add(MAX_KEY_LEN as u64).saturating_add(ENVELOPE_BYTES)
}

/// Encodes a message.
///
/// # Errors
/// An `io::Error` if serde refuses the value (a [`Request::Malformed`] is never sent).
pub fn encode<T: Serialize>(message: &T) -> io::Result<Vec<u8>> {
    cbor4ii::serde::to_vec(Vec::new(), message)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
}

/// Decodes a message.
///
/// # Errors
/// An `io::Error` of kind `InvalidData` with the decoder's complaint.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    cbor4ii::serde::from_slice(bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
}

/// Reads a whole message of at most `limit` bytes. `Ok(Err(len))` when it is larger; with
/// `drain` the rest is read and discarded (up to a ceiling) so the sender can still read our
/// answer, and `len` is the whole size.
async fn read_bounded<T>(io: &mut T, limit: u64, drain: bool) -> io::Result<Result<Vec<u8>, u64>>
where
    T: AsyncRead + Unpin + Send,
{
    let mut buf = Vec::new();
    (&mut *io).take(limit.saturating_add(1)).read_to_end(&mut buf).await?;
    if buf.len() as u64 <= limit {
        return Ok(Ok(buf));
    }
    if !drain {
        return Ok(Err(buf.len() as u64));
    }
    // Oversized: count and discard the rest, but not for ever.
    let drained = discard(io, limit.saturating_mul(4).max(1 << 20)).await?;
    Ok(Err(buf.len() as u64 + drained))
}

/// Reads the rest of a stream without keeping it, up to `ceiling` bytes. The bytes read.
async fn discard<T>(io: &mut T, ceiling: u64) -> io::Result<u64>
where
    T: AsyncRead + Unpin + Send,
{
    let drained = futures::io::copy((&mut *io).take(ceiling), &mut futures::io::sink()).await?;
    if drained >= ceiling {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message over {ceiling} bytes; stream dropped"),
        ));
    }
    Ok(drained)
}

/// Reads a request within `budget`: its buffer grows only while the budget has room. A request
/// that does not fit is read to its end without being kept and comes back as
/// [`Request::Refused`]; one over `limit` as [`Request::Malformed`].
async fn read_budgeted<T>(io: &mut T, limit: u64, budget: &ReadBudget) -> io::Result<Request>
where
    T: AsyncRead + Unpin + Send,
{
    // One byte past the limit is read to tell an oversized request.
    let max = usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX);
    let ceiling = limit.saturating_mul(4).max(1 << 20);
    let mut buf = BudgetedBuf::new(budget.clone());
    loop {
        let len = buf.as_slice().len();
        let room = match buf.spare(max) {
            Ok(room) => room,
            Err(_) if len >= max => {
                let len = len as u64;
                drop(buf);
                let rest = discard(io, ceiling).await?;
                return Ok(Request::Malformed {
                    reason: format!(
                        "request too large: {} bytes (limit {limit} bytes)",
                        len + rest
                    ),
                });
            }
            Err(counters) => {
                drop(buf);
                discard(io, ceiling).await?;
                return Ok(Request::Refused {
                    reason: format!(
                        "busy: {} bytes of requests are being read here (budget {} bytes, --request-budget); try again later",
                        counters.held, counters.limit
                    ),
                });
            }
        };
        let n = io.read(room).await?;
        if n == 0 {
            break;
        }
        buf.filled(n);
    }
    Ok(decode(buf.as_slice())
        .unwrap_or_else(|e| Request::Malformed { reason: format!("malformed request: {e}") }))
}

impl libp2p::request_response::Codec for KvCodec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        if let Some((budget, deadline)) = &self.admission {
            let read = read_budgeted(io, self.message_limit, budget);
            return match tokio::time::timeout(*deadline, read).await {
                Ok(request) => request,
                Err(_) => {
                    budget.timed_out();
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("request not read within {deadline:?} (--read-timeout)"),
                    ))
                }
            };
        }
        Ok(match read_bounded(io, self.message_limit, true).await? {
            Err(len) => Request::Malformed {
                reason: format!(
                    "request too large: {len} bytes (limit {} bytes)",
                    self.message_limit
                ),
            },
            Ok(bytes) => decode(&bytes).unwrap_or_else(|e| Request::Malformed {
                reason: format!("malformed request: {e}"),
            }),
        })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        match read_bounded(io, self.message_limit, false).await? {
            Err(len) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("response too large: over {len} bytes (limit {})", self.message_limit),
            )),
            Ok(bytes) => decode(&bytes),
        }
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&encode(&req)?).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&encode(&res)?).await
    }
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;
    use libp2p::identity::Keypair;
    use libp2p::request_response::Codec;
    use proptest::prelude::*;

    use super::*;

    fn read_req(codec: &mut KvCodec, bytes: Vec<u8>) -> io::Result<Request> {
        block_on(codec.read_request(&KV_PROTOCOL, &mut futures::io::Cursor::new(bytes)))
    }

    fn sample_record(value: Option<Vec<u8>>) -> Record {
        let kp = Keypair::ed25519_from_bytes([7u8; 32]).unwrap();
        Record::sign(&kp, "key".into(), value, Hlc::new(5, 1), Some(99)).unwrap()
    }

    #[test]
    fn requests_and_responses_round_trip_through_the_codec() {
        let mut codec = KvCodec::new(1024);
        for req in [
            Request::Store { record: sample_record(Some(b"v".to_vec())) },
            Request::Store { record: sample_record(None) },
            Request::Fetch { key: "k".into(), near: 5, version_only: false },
            Request::Fetch { key: "k".into(), near: 5, version_only: true },
            Request::Digest { entries: vec![("k".into(), Hlc::new(3, 4))] },
            Request::Summary { buckets: vec![(7, 2, 0xdead_beef)] },
            Request::StoreMany { records: vec![sample_record(None)] },
        ] {
            let mut out = Vec::new();
            block_on(codec.write_request(&KV_PROTOCOL, &mut out, req.clone())).unwrap();
            assert_eq!(read_req(&mut codec, out).unwrap(), req);
        }
        for res in [
            Response::Stored { version: Hlc::new(1, 2) },
            Response::Found {
                record: Some(sample_record(Some(vec![0xff, 0]))),
                near: vec![],
                down: vec![],
            },
            Response::Found {
                record: None,
                near: vec![(PeerId::random(), vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()])],
                down: vec![PeerId::random()],
            },
            Response::Version {
                held: Some(sample_record(None).stamp()),
                near: vec![(PeerId::random(), vec![])],
                down: vec![],
            },
            Response::Version { held: None, near: vec![], down: vec![PeerId::random()] },
            Response::Rejected { reason: "no".into() },
            Response::Missing { keys: vec!["a".into()] },
            Response::Mismatch { buckets: vec![1, 200] },
            Response::StoredMany {
                stored: 2,
                rejected: vec![("b".into(), "bad signature".into())],
            },
        ] {
            let mut out = Vec::new();
            block_on(codec.write_response(&KV_PROTOCOL, &mut out, res.clone())).unwrap();
            let back =
                block_on(codec.read_response(&KV_PROTOCOL, &mut futures::io::Cursor::new(out)))
                    .unwrap();
            assert_eq!(back, res);
        }
    }

    #[test]
    fn values_travel_as_byte_strings_not_arrays() {
        let small =
            encode(&Request::Store { record: sample_record(Some(vec![0xab; 1000])) }).unwrap();
        assert!(small.len() < 1000 + 400, "encoded {} bytes", small.len());
    }

    #[test]
    fn garbage_becomes_malformed_not_an_error() {
        let mut codec = KvCodec::new(1024);
        for bytes in [vec![], vec![0xff, 0x00, 0x13], b"hello".to_vec()] {
            match read_req(&mut codec, bytes).unwrap() {
                Request::Malformed { reason } => assert!(reason.starts_with("malformed request")),
                other => panic!("decoded garbage as {other:?}"),
            }
        }
    }

    #[test]
    fn an_oversized_request_is_reported_with_the_limit() {
        let mut codec = KvCodec::new(16);
        let big = encode(&Request::Store { record: sample_record(Some(vec![1; 10_000])) }).unwrap();
        match read_req(&mut codec, big).unwrap() {
            Request::Malformed { reason } => {
                assert!(reason.contains("too large"), "{reason}");
                assert!(reason.contains(&codec.message_limit().to_string()), "{reason}");
            }
            other => panic!("accepted {other:?}"),
        }
    }

    /// With a budget, a request that does not fit is read to its end without being kept and
    /// refused with the budget named; one that fits reads as before; the budget is whole again
    /// after both.
    #[tokio::test]
    async fn a_request_past_the_budget_is_refused_and_the_budget_given_back() {
        use crate::admission::{ReadBudget, SMALL_RESERVE};
        let budget = ReadBudget::new(SMALL_RESERVE + (256 << 10));
        let mut codec =
            KvCodec::new(1 << 20).with_admission(budget.clone(), Duration::from_secs(5));
        let big =
            encode(&Request::Store { record: sample_record(Some(vec![1; 600 << 10])) }).unwrap();
        let mut cursor = futures::io::Cursor::new(big.clone());
        match codec.read_request(&KV_PROTOCOL, &mut cursor).await.unwrap() {
            Request::Refused { reason } => {
                assert!(reason.contains("--request-budget"), "{reason}")
            }
            other => panic!("took {other:?}"),
        }
        assert_eq!(cursor.position(), big.len() as u64, "read to its end");
        let small = Request::Store { record: sample_record(Some(vec![2; 100 << 10])) };
        let mut cursor = futures::io::Cursor::new(encode(&small).unwrap());
        assert_eq!(codec.read_request(&KV_PROTOCOL, &mut cursor).await.unwrap(), small);
        let counters = budget.counters();
        assert_eq!(counters.held, 0);
        assert_eq!(counters.refused, 1);
        assert!(counters.peak <= counters.limit - SMALL_RESERVE, "{counters:?}");
        // Too large stays "too large", not "busy".
        let mut tight = KvCodec::new(16).with_admission(budget, Duration::from_secs(5));
        let mut cursor = futures::io::Cursor::new(big);
        match tight.read_request(&KV_PROTOCOL, &mut cursor).await.unwrap() {
            Request::Malformed { reason } => assert!(reason.contains("too large"), "{reason}"),
            other => panic!("took {other:?}"),
        }
    }

    /// A request whose sender stops half-way is dropped at the read deadline, and what it held
    /// is given back.
    #[tokio::test]
    async fn a_request_not_sent_in_time_is_dropped_at_the_deadline() {
        use crate::admission::ReadBudget;
        let budget = ReadBudget::new(64 << 20);
        let mut codec =
            KvCodec::new(1 << 20).with_admission(budget.clone(), Duration::from_millis(200));
        let bytes =
            encode(&Request::Store { record: sample_record(Some(vec![1; 300 << 10])) }).unwrap();
        // Half the request, then silence (a reader that never ends).
        let half = futures::io::Cursor::new(bytes[..bytes.len() / 2].to_vec());
        let mut stalled = half.chain(futures::io::AsyncReadExt::take(
            futures::stream::pending::<io::Result<Vec<u8>>>().into_async_read(),
            u64::MAX,
        ));
        let err = codec.read_request(&KV_PROTOCOL, &mut stalled).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("--read-timeout"), "{err}");
        let counters = budget.counters();
        assert_eq!((counters.held, counters.timed_out), (0, 1));
        assert!(counters.peak >= bytes.len() / 2, "the half read was counted: {counters:?}");
    }

    #[test]
    fn the_malformed_marker_never_goes_on_the_wire() {
        assert!(encode(&Request::Malformed { reason: "x".into() }).is_err());
    }

    /// A fetch and its answer as a peer without the `near` fields sends them: they still read,
    /// as asking for (and naming) no peers.
    #[test]
    fn fetch_without_near_fields_still_reads() {
        #[derive(Serialize)]
        enum OldRequest {
            Fetch { key: String },
        }
        #[derive(Serialize)]
        enum OldResponse {
            Found { record: Option<Record> },
        }
        let req: Request =
            decode(&encode(&OldRequest::Fetch { key: "k".into() }).unwrap()).unwrap();
        assert_eq!(req, Request::Fetch { key: "k".into(), near: 0, version_only: false });
        let res: Response = decode(&encode(&OldResponse::Found { record: None }).unwrap()).unwrap();
        assert_eq!(res, Response::Found { record: None, near: vec![], down: vec![] });
    }

    /// A whole-record fetch goes on the wire as before (a peer that does not know
    /// `version_only` reads it), and a version-only one reads at a peer that does not know the
    /// field as an ordinary fetch (it answers with the record, which the asker takes).
    #[test]
    fn version_only_fetches_read_at_peers_that_do_not_know_them() {
        #[derive(Serialize, Deserialize, Debug, PartialEq)]
        enum OldRequest {
            Fetch { key: String, near: u16 },
        }
        let plain = Request::Fetch { key: "k".into(), near: 5, version_only: false };
        assert_eq!(
            encode(&plain).unwrap(),
            encode(&OldRequest::Fetch { key: "k".into(), near: 5 }).unwrap()
        );
        let brief = Request::Fetch { key: "k".into(), near: 5, version_only: true };
        let old: OldRequest = decode(&encode(&brief).unwrap()).unwrap();
        assert_eq!(old, OldRequest::Fetch { key: "k".into(), near: 5 });
    }

    /// A version answer is small whatever the value's size.
    #[test]
    fn a_version_answer_carries_no_value() {
        let record = sample_record(Some(vec![0xab; 1000]));
        let found = Response::Found { record: Some(record.clone()), near: vec![], down: vec![] };
        let version = Response::Version { held: Some(record.stamp()), near: vec![], down: vec![] };
        let (found, version) = (encode(&found).unwrap().len(), encode(&version).unwrap().len());
        assert!(found > 1000 && version < 200, "found {found} bytes, version {version}");
    }

    proptest! {
        #[test]
        fn codec_round_trips(key in ".{0,40}", value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)), ms in any::<u64>(), c in any::<u32>()) {
            let kp = Keypair::ed25519_from_bytes([3u8; 32]).unwrap();
            let record = Record::sign(&kp, key.clone(), value, Hlc::new(ms, c), None).unwrap();
            let req = Request::Store { record };
            prop_assert_eq!(decode::<Request>(&encode(&req).unwrap()).unwrap(), req);
            let fetch = Request::Fetch { key, near: 3, version_only: ms % 2 == 0 };
            prop_assert_eq!(decode::<Request>(&encode(&fetch).unwrap()).unwrap(), fetch);
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut codec = KvCodec::new(1024);
            prop_assert!(read_req(&mut codec, bytes).is_ok());
        }
    }
}
