//! The value protocol on arbitrary bytes, as a hostile peer would send them.
//!
//! Input: one byte that picks the codec's `max_value_size` (0 to 255 × 64 bytes, so both sides
//! of the size limit are reached), then the message.
//! - `decode::<Request>` and `decode::<Response>` never panic; what decodes encodes again, and
//!   that encoding decodes to the same value and re-encodes to the same bytes (one canonical
//!   form per value).
//! - The request-response codec reads the bytes as a stream: a request always becomes a value
//!   (a real request or `Request::Malformed`), never an error or a panic; a response is a value
//!   or an error.

#![no_main]

use futures::executor::block_on;
use libfuzzer_sys::fuzz_target;
use libp2p::request_response::Codec;
use peerkv::protocol::{decode, encode, KvCodec, KV_PROTOCOL};
use peerkv::{Request, Response};

/// Decodes `bytes` as a `T`; if that works, checks that encoding round-trips.
fn round_trip<T>(bytes: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok(first) = decode::<T>(bytes) else { return };
    let encoded = encode(&first).expect("a decoded message encodes");
    let second: T = decode(&encoded).expect("an encoded message decodes");
    assert_eq!(first, second, "decode ∘ encode changed the message");
    assert_eq!(encode(&second).expect("encodes"), encoded, "two encodings of one message");
}

fuzz_target!(|data: &[u8]| {
    let Some((limit, body)) = data.split_first() else { return };
    round_trip::<Request>(body);
    round_trip::<Response>(body);

    let mut codec = KvCodec::new(usize::from(*limit) * 64);
    let request = block_on(codec.read_request(&KV_PROTOCOL, &mut futures::io::Cursor::new(body)));
    match request.expect("reading a request from memory never fails") {
        Request::Malformed { reason } => assert!(!reason.is_empty()),
        request => {
            assert!(body.len() as u64 <= codec.message_limit(), "read past the limit");
            assert_eq!(decode::<Request>(body).ok(), Some(request));
        }
    }
    if let Ok(response) =
        block_on(codec.read_response(&KV_PROTOCOL, &mut futures::io::Cursor::new(body)))
    {
        assert!(body.len() as u64 <= codec.message_limit(), "read past the limit");
        assert_eq!(decode::<Response>(body).ok(), Some(response));
    }
});
