//! A link delay for benchmarks and tests: a socket wrapper that makes every byte readable only
//! a fixed time `D` after it arrived, so that peers on loopback see a wide-area round trip
//! (`2 × D`: each end delays what it reads) and latencies can be counted in round trips.
//!
//! What it emulates and what it does not:
//! - Every byte in each direction is delayed by `D`, in order; end of stream and read errors
//!   are delayed the same way, after the bytes before them.
//! - A dial waits `2 × D` before its socket is handed on ([`delayed`]), as the TCP handshake
//!   (SYN, SYN-ACK) would on such a link; the kernel's own handshake on loopback is not delayed.
//! - Bandwidth is not limited and nothing is lost or reordered. Writes go straight through.
//! - A byte is stamped when the wrapper reads it, not when the kernel received it: while the
//!   reading task waits for a core, that wait adds to `D` instead of overlapping it. tokio's
//!   timer rounds each wait up to its next millisecond, so a delay is `D` to `D` + 1 ms.
//! - Only what runs over the wrapped socket is delayed: peerkv wraps TCP, not QUIC
//!   ([`crate::Config::link_delay`]).
//!
//! The wrapper reads the socket as soon as bytes are there (each read stamped with the time it
//! was made) into a queue of at most [`QUEUE_CAP`] bytes; past that it stops reading and TCP's
//! flow control holds the sender. One timer per socket waits for the first chunk not yet due.
//! With a delay of zero every call goes straight to the socket.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{AsyncRead, AsyncWrite};
use libp2p::core::ConnectedPoint;
use tokio::time::{Instant, Sleep};

/// Most bytes read from the socket and not yet delivered, per socket: 1 MiB, 100 MB/s per
/// connection at a 10 ms delay (values are at most `max_value_size`, 1 MiB by default, and a
/// larger one still passes: the queue only stops reading ahead).
pub const QUEUE_CAP: usize = 1 << 20;

/// Most bytes taken from the socket in one read.
const READ_CHUNK: usize = 16 * 1024;

/// A socket whose bytes become readable `delay` after they arrived (see the module doc).
#[derive(Debug)]
pub struct LinkDelay<S> {
    inner: S,
    delay: Duration,
    /// What was read from `inner` and is not yet delivered, oldest first.
    queue: VecDeque<Arrival>,
    /// Bytes of data in `queue`, against [`QUEUE_CAP`].
    queued: usize,
    /// `inner` gave its end of stream or an error: it is not read again.
    ended: bool,
    /// The kind of the error delivered, returned again to later reads.
    failed: Option<io::ErrorKind>,
    /// The timer of the first arrival not yet due; made at the first wait.
    timer: Option<Pin<Box<Sleep>>>,
    /// Most bytes queued at once (for the tests).
    #[cfg(test)]
    high_water: usize,
}

/// One read of the socket and when it may be delivered.
#[derive(Debug)]
struct Arrival {
    due: Instant,
    what: Event,
}

#[derive(Debug)]
enum Event {
    /// Bytes, of which the first `taken` were delivered already.
    Data { bytes: Vec<u8>, taken: usize },
    /// End of stream: stays in the queue, so every later read sees it too.
    Eof,
    /// A read error, delivered once.
    Error(io::Error),
}

impl<S> LinkDelay<S> {
    /// Wraps `inner`: its bytes become readable `delay` after they arrive. A zero `delay`
    /// changes nothing.
    pub fn new(inner: S, delay: Duration) -> Self {
        Self {
            inner,
            delay,
            queue: VecDeque::new(),
            queued: 0,
            ended: false,
            failed: None,
            timer: None,
            #[cfg(test)]
            high_water: 0,
        }
    }

    /// The delay of each byte.
    pub fn delay(&self) -> Duration {
        self.delay
    }
}

/// Wraps the socket of a new connection at `endpoint` in a [`LinkDelay`] of `delay`; the
/// socket of a dial is handed on after `2 × delay`, the round trip of a TCP handshake on the
/// emulated link. Made for [`libp2p::core::Transport::and_then`] on a TCP transport:
///
/// ```no_run
/// use libp2p::core::Transport;
/// use libp2p::tcp;
/// let delay = std::time::Duration::from_millis(10);
/// let tcp = tcp::tokio::Transport::new(tcp::Config::default())
///     .and_then(move |socket, endpoint| peerkv::link_delay::delayed(socket, &endpoint, delay));
/// ```
///
/// # Errors
/// None: the `io::Result` is the error type `and_then` asks for.
pub fn delayed<S>(
    socket: S,
    endpoint: &ConnectedPoint,
    delay: Duration,
) -> impl Future<Output = io::Result<LinkDelay<S>>> {
    let handshake = if endpoint.is_dialer() { delay.saturating_mul(2) } else { Duration::ZERO };
    async move {
        if !handshake.is_zero() {
            tokio::time::sleep(handshake).await;
        }
        Ok(LinkDelay::new(socket, delay))
    }
}

impl<S: AsyncRead + Unpin> LinkDelay<S> {
    /// Reads whatever `inner` has ready into the queue, stamped with the time it is due, until
    /// the queue holds [`QUEUE_CAP`] bytes or `inner` has nothing more (then its waker is set).
    fn fill(&mut self, cx: &mut Context<'_>) {
        let mut chunk = [0u8; READ_CHUNK];
        while !self.ended && self.queued < QUEUE_CAP {
            let want = READ_CHUNK.min(QUEUE_CAP - self.queued);
            let what = match Pin::new(&mut self.inner).poll_read(cx, &mut chunk[..want]) {
                Poll::Pending => return,
                Poll::Ready(Ok(0)) => Event::Eof,
                Poll::Ready(Ok(n)) => {
                    self.queued += n;
                    Event::Data { bytes: chunk[..n].to_vec(), taken: 0 }
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Poll::Ready(Err(e)) => Event::Error(e),
            };
            self.ended = !matches!(what, Event::Data { .. });
            self.queue.push_back(Arrival { due: Instant::now() + self.delay, what });
            #[cfg(test)]
            {
                self.high_water = self.high_water.max(self.queued);
            }
        }
    }

    /// Copies the due data at the head of the queue into `buf` and says how many bytes: 0 when
    /// the head is not data that is due.
    fn take_due(&mut self, now: Instant, buf: &mut [u8]) -> usize {
        let mut filled = 0;
        while filled < buf.len() {
            let Some(head) = self.queue.front_mut() else { break };
            if head.due > now {
                break;
            }
            let Event::Data { bytes, taken } = &mut head.what else { break };
            let n = (bytes.len() - *taken).min(buf.len() - filled);
            buf[filled..filled + n].copy_from_slice(&bytes[*taken..*taken + n]);
            *taken += n;
            filled += n;
            self.queued -= n;
            if *taken == bytes.len() {
                self.queue.pop_front();
            }
        }
        filled
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LinkDelay<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.delay.is_zero() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            this.fill(cx);
            let now = Instant::now();
            let filled = this.take_due(now, buf);
            if filled > 0 {
                return Poll::Ready(Ok(filled));
            }
            let Some(head) = this.queue.front() else {
                // Nothing queued: after an error, the same kind again; else `fill` left the
                // socket's waker set.
                return match this.failed {
                    Some(kind) => Poll::Ready(Err(kind.into())),
                    None => Poll::Pending,
                };
            };
            if head.due <= now {
                // Due and not data: the end of stream or an error.
                if matches!(head.what, Event::Eof) {
                    return Poll::Ready(Ok(0));
                }
                if let Some(Arrival { what: Event::Error(e), .. }) = this.queue.pop_front() {
                    this.failed = Some(e.kind());
                    return Poll::Ready(Err(e));
                }
                continue;
            }
            let due = head.due;
            let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if timer.deadline() != due {
                timer.as_mut().reset(due);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The timer fired between reading the clock and polling it: look again.
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LinkDelay<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    //! Real time, short delays: each test asserts only lower bounds on when bytes arrive (a
    //! tokio timer never fires early), and bounds every wait with a timeout.

    use futures::channel::mpsc;
    use futures::{AsyncReadExt, AsyncWriteExt, FutureExt, TryStreamExt};

    use super::*;

    const D: Duration = Duration::from_millis(40);
    /// Bound of every await: far above D, so only a hang trips it.
    const WAIT: Duration = Duration::from_secs(10);

    type Sender = mpsc::UnboundedSender<io::Result<Vec<u8>>>;

    /// An in-memory stream whose sender side the test drives, wrapped with delay `D`.
    fn pipe() -> (Sender, LinkDelay<impl AsyncRead + Unpin>) {
        let (tx, rx) = mpsc::unbounded::<io::Result<Vec<u8>>>();
        (tx, LinkDelay::new(rx.into_async_read(), D))
    }

    async fn read_some<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Vec<u8>> {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(WAIT, r.read(&mut buf)).await.expect("read hung")?;
        Ok(buf[..n].to_vec())
    }

    #[tokio::test]
    async fn bytes_arrive_no_earlier_than_the_delay() {
        let (tx, mut rx) = pipe();
        let sent = Instant::now();
        tx.unbounded_send(Ok(b"hello".to_vec())).unwrap();
        assert_eq!(read_some(&mut rx).await.unwrap(), b"hello");
        assert!(sent.elapsed() >= D, "delivered after {:?}", sent.elapsed());
    }

    #[tokio::test]
    async fn order_is_kept_and_each_chunk_waits_from_its_own_arrival() {
        let (tx, mut rx) = pipe();
        let mut sent = Vec::new();
        let writer = async {
            for i in 0..5u8 {
                sent.push(Instant::now());
                tx.unbounded_send(Ok(vec![i; 3])).unwrap();
                tokio::time::sleep(D / 4).await;
            }
        };
        let reader = async {
            let mut got = Vec::new();
            let mut at = Vec::new();
            while got.len() < 15 {
                let bytes = read_some(&mut rx).await.unwrap();
                at.extend(bytes.iter().map(|_| Instant::now()));
                got.extend(bytes);
            }
            (got, at)
        };
        let ((), (got, at)) = futures::join!(writer, reader);
        let want: Vec<u8> = (0..5u8).flat_map(|i| [i; 3]).collect();
        assert_eq!(got, want);
        for (i, when) in at.iter().enumerate() {
            let chunk_sent = sent[i / 3];
            assert!(*when >= chunk_sent + D, "byte {i} early: {:?}", *when - chunk_sent);
        }
    }

    #[tokio::test]
    async fn end_of_stream_comes_after_the_data_and_no_earlier_than_the_delay() {
        let (tx, mut rx) = pipe();
        tx.unbounded_send(Ok(b"last".to_vec())).unwrap();
        let closed = Instant::now();
        drop(tx);
        assert_eq!(read_some(&mut rx).await.unwrap(), b"last");
        assert_eq!(read_some(&mut rx).await.unwrap(), b"");
        assert!(closed.elapsed() >= D);
        // And it stays ended.
        assert_eq!(read_some(&mut rx).await.unwrap(), b"");
    }

    #[tokio::test]
    async fn an_error_comes_after_the_data_before_it() {
        let (tx, mut rx) = pipe();
        tx.unbounded_send(Ok(b"ok".to_vec())).unwrap();
        tx.unbounded_send(Err(io::ErrorKind::ConnectionReset.into())).unwrap();
        let sent = Instant::now();
        assert_eq!(read_some(&mut rx).await.unwrap(), b"ok");
        let err = read_some(&mut rx).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
        assert!(sent.elapsed() >= D);
        // Later reads fail the same way; the socket is not read again.
        assert_eq!(read_some(&mut rx).await.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
    }

    #[tokio::test]
    async fn a_small_buffer_takes_a_chunk_in_parts() {
        let (tx, mut rx) = pipe();
        tx.unbounded_send(Ok(b"abcdef".to_vec())).unwrap();
        let mut two = [0u8; 2];
        let mut got = Vec::new();
        while got.len() < 6 {
            let n = tokio::time::timeout(WAIT, rx.read(&mut two)).await.unwrap().unwrap();
            got.extend_from_slice(&two[..n]);
        }
        assert_eq!(got, b"abcdef");
        assert_eq!(rx.queued, 0);
    }

    #[tokio::test]
    async fn reading_ahead_stops_at_the_cap() {
        let (tx, mut rx) = pipe();
        let block = vec![7u8; READ_CHUNK];
        let blocks = 2 * QUEUE_CAP / READ_CHUNK;
        for _ in 0..blocks {
            tx.unbounded_send(Ok(block.clone())).unwrap();
        }
        drop(tx);
        let mut total = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = tokio::time::timeout(WAIT, rx.read(&mut buf)).await.unwrap().unwrap();
            if n == 0 {
                break;
            }
            assert!(buf[..n].iter().all(|b| *b == 7));
            total += n;
        }
        assert_eq!(total, blocks * READ_CHUNK);
        // It read ahead up to the cap, and never past it.
        assert_eq!(rx.high_water, QUEUE_CAP);
    }

    #[tokio::test]
    async fn writes_go_straight_through() {
        let mut w = LinkDelay::new(futures::io::Cursor::new(Vec::new()), D);
        // Done at the first poll: nothing waits.
        w.write_all(b"now").now_or_never().unwrap().unwrap();
        w.flush().now_or_never().unwrap().unwrap();
        assert_eq!(w.inner.get_ref(), b"now");
    }

    #[tokio::test]
    async fn zero_delay_reads_straight_through() {
        let (tx, rx) = mpsc::unbounded::<io::Result<Vec<u8>>>();
        let mut rx = LinkDelay::new(rx.into_async_read(), Duration::ZERO);
        tx.unbounded_send(Ok(b"x".to_vec())).unwrap();
        assert_eq!(read_some(&mut rx).await.unwrap(), b"x");
        assert!(rx.queue.is_empty());
    }

    #[tokio::test]
    async fn a_dial_waits_one_round_trip_a_listener_none() {
        let dialer = ConnectedPoint::Dialer {
            address: "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
            role_override: libp2p::core::Endpoint::Dialer,
            port_use: libp2p::core::transport::PortUse::Reuse,
        };
        let start = Instant::now();
        let s = delayed((), &dialer, D).await.unwrap();
        assert!(start.elapsed() >= 2 * D);
        assert_eq!(s.delay(), D);
        let listener = ConnectedPoint::Listener {
            local_addr: "/ip4/127.0.0.1/tcp/1".parse().unwrap(),
            send_back_addr: "/ip4/127.0.0.1/tcp/2".parse().unwrap(),
        };
        // Ready at the first poll.
        delayed((), &listener, D).now_or_never().unwrap().unwrap();
    }
}
