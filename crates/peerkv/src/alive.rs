//! Liveness of connections, probed from one end: the peer that dialed a connection sends a
//! one-byte probe every interval on a stream of `/peerkv/alive/1.0.0` and the other end echoes
//! it. A connection is reported dead when two probes in a row go unanswered (the dialer's
//! side), or when probes stop coming for one and a half intervals and a timeout after one came
//! (the other side's watchdog). A host cut off the LAN is thus noticed from both ends, while an
//! idle connection carries one probe and its echo per interval instead of libp2p-ping's two
//! pings each way (at N = 100 with every peer connected to all others, libp2p-ping every 10 s
//! cost 5.7 KiB/s a peer).
//!
//! What a probe costs on the wire is mostly not the probe: it wakes the connection, and Yamux
//! then measures its round trip with a ping of its own from each end (at most every 10 s, on a
//! connection that is polled; libp2p-yamux has no setting for it), so one probe is about 9
//! packets and 670 bytes on loopback (40 peers, 780 connections, measured in a namespace).
//! Hence the 30 s default: at N = 100, 1.7 KiB/s a peer.
//!
//! The probe stream does not keep a connection open (warm connections and the idle timeout
//! decide that). A peer that does not speak the protocol (a plain libp2p-kad peer) is not
//! probed, and the watchdog judges a connection only once its remote probed, or identify said
//! it speaks the protocol ([`Behaviour::expect_probes`]): a host cut off before its first probe
//! is noticed too.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::{AsyncReadExt, AsyncWriteExt, FutureExt};
use libp2p::core::transport::PortUse;
use libp2p::core::upgrade::ReadyUpgrade;
use libp2p::core::Endpoint;
use libp2p::swarm::handler::{
    ConnectionEvent, DialUpgradeError, FullyNegotiatedInbound, FullyNegotiatedOutbound,
};
use libp2p::swarm::{
    ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
    NetworkBehaviour, NotifyHandler, Stream, StreamUpgradeError, SubstreamProtocol, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId, StreamProtocol};

/// The protocol id.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/peerkv/alive/1.0.0");

/// Default time between two probes of a connection (`--probe-interval`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);

/// How long a probe's echo may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// How soon a probe that went unanswered is sent again (on a new stream).
const RETRY: Duration = Duration::from_secs(1);

/// What a connection's probes showed.
#[derive(Debug, Clone)]
pub struct Event {
    /// The remote peer.
    pub peer: PeerId,
    /// The connection.
    pub connection: ConnectionId,
    /// A probe's round trip, or why the connection counts as dead.
    pub result: Result<Duration, String>,
}

/// Probes connections from the end that dialed them; see the module documentation.
#[derive(Debug)]
pub struct Behaviour {
    interval: Duration,
    events: VecDeque<Event>,
    connections: HashMap<PeerId, Vec<ConnectionId>>,
    notify: VecDeque<(PeerId, ConnectionId)>,
}

impl Behaviour {
    /// Probing every `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            events: VecDeque::new(),
            connections: HashMap::new(),
            notify: VecDeque::new(),
        }
    }

    /// `peer` speaks the protocol (identify said so): on the connections it dialed, its probes
    /// are expected from now on, and silence counts even before its first probe.
    pub fn expect_probes(&mut self, peer: PeerId) {
        if let Some(conns) = self.connections.get(&peer) {
            self.notify.extend(conns.iter().map(|c| (peer, *c)));
        }
    }

    fn track(&mut self, peer: PeerId, connection: ConnectionId) {
        self.connections.entry(peer).or_default().push(connection);
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Event;

    fn handle_established_inbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.track(peer, connection);
        Ok(Handler::new(false, self.interval))
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.track(peer, connection);
        Ok(Handler::new(true, self.interval).first_probe_in(spread(
            self.interval,
            connection,
            &peer,
        )))
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        result: THandlerOutEvent<Self>,
    ) {
        self.events.push_back(Event { peer, connection, result });
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        if let Some((peer_id, connection)) = self.notify.pop_front() {
            return Poll::Ready(ToSwarm::NotifyHandler {
                peer_id,
                handler: NotifyHandler::One(connection),
                event: Expect,
            });
        }
        match self.events.pop_front() {
            Some(event) => Poll::Ready(ToSwarm::GenerateEvent(event)),
            None => Poll::Pending,
        }
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ConnectionClosed(closed) = event {
            if let Some(conns) = self.connections.get_mut(&closed.peer_id) {
                conns.retain(|c| *c != closed.connection_id);
                if conns.is_empty() {
                    self.connections.remove(&closed.peer_id);
                }
            }
        }
    }
}

/// To a connection's handler: its remote speaks the protocol, so expect its probes.
#[derive(Debug, Clone, Copy)]
pub struct Expect;

/// When a new connection is first probed: somewhere in the second half of an interval and the
/// first half of the next, told apart by the connection (connections opened together, as at a
/// start, would otherwise be probed together, every interval, in one burst).
fn spread(interval: Duration, connection: ConnectionId, peer: &PeerId) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    connection.hash(&mut hasher);
    peer.hash(&mut hasher);
    let permille = u32::try_from(hasher.finish() % 1000).unwrap_or(0);
    interval / 2 + interval * permille / 1000
}

/// Sends one probe on `stream` and waits for its echo: the stream back and the round trip.
async fn probe(mut stream: Stream, byte: u8) -> io::Result<(Stream, Duration)> {
    let started = Instant::now();
    let exchange = async {
        stream.write_all(&[byte]).await?;
        stream.flush().await?;
        let mut echo = [0u8; 1];
        stream.read_exact(&mut echo).await?;
        if echo[0] == byte {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::InvalidData, "the echo differs from the probe"))
        }
    };
    match tokio::time::timeout(TIMEOUT, exchange).await {
        Ok(Ok(())) => Ok((stream, started.elapsed())),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "no echo within 5 s")),
    }
}

/// Waits for the next probe on `stream` and echoes it: the stream back.
async fn echo(mut stream: Stream) -> io::Result<Stream> {
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).await?;
    stream.write_all(&byte).await?;
    stream.flush().await?;
    Ok(stream)
}

/// The probing end's state.
enum Prober {
    /// Waiting for the timer, with the stream of the last probe if it is still usable.
    Idle(Option<Stream>),
    /// A stream was asked for.
    Opening,
    /// A probe is out.
    Probing(BoxFuture<'static, io::Result<(Stream, Duration)>>),
    /// The remote does not speak the protocol, or this end does not probe.
    Off,
}

/// One connection's probes (as the dialer) or echoes and watchdog (as the listener).
pub struct Handler {
    /// This end dialed the connection (and probes it).
    dialer: bool,
    interval: Duration,
    prober: Prober,
    /// When the next probe goes out.
    next_probe: Pin<Box<tokio::time::Sleep>>,
    /// Probes in a row that went unanswered.
    failures: u32,
    /// A counter, sent as the probe.
    sent: u8,
    /// The stream the remote probes us on, waiting for its next probe.
    echoing: Option<BoxFuture<'static, io::Result<Stream>>>,
    /// When the remote last probed (`None`: never, and the watchdog is off).
    last_probe: Option<Instant>,
    /// Fires when the remote has been silent too long.
    watchdog: Pin<Box<tokio::time::Sleep>>,
    /// The connection was reported dead (once is enough).
    dead: bool,
    events: VecDeque<Result<Duration, String>>,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("alive::Handler")
            .field("failures", &self.failures)
            .field("last_probe", &self.last_probe)
            .field("dead", &self.dead)
            .finish()
    }
}

impl Handler {
    fn new(dialer: bool, interval: Duration) -> Self {
        let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
        Self {
            dialer,
            interval,
            prober: if dialer { Prober::Idle(None) } else { Prober::Off },
            next_probe: Box::pin(tokio::time::sleep(interval)),
            failures: 0,
            sent: 0,
            echoing: None,
            last_probe: None,
            watchdog: Box::pin(tokio::time::sleep_until(far)),
            dead: false,
            events: VecDeque::new(),
        }
    }

    /// This handler, probing first after `delay` (then every interval).
    fn first_probe_in(mut self, delay: Duration) -> Self {
        self.next_probe.as_mut().reset(tokio::time::Instant::now() + delay);
        self
    }

    /// The longest the remote may stay silent once it probed.
    fn silence_limit(&self) -> Duration {
        self.interval * 3 / 2 + TIMEOUT
    }

    fn failed(&mut self, why: String) {
        self.failures += 1;
        if self.failures >= 2 {
            self.report_dead(format!("two probes in a row unanswered ({why})"));
        }
        self.next_probe.as_mut().reset(tokio::time::Instant::now() + RETRY);
    }

    fn report_dead(&mut self, why: String) {
        if !self.dead {
            self.dead = true;
            self.events.push_back(Err(why));
        }
    }
}

impl ConnectionHandler for Handler {
    type FromBehaviour = Expect;
    type ToBehaviour = Result<Duration, String>;
    type InboundProtocol = ReadyUpgrade<StreamProtocol>;
    type OutboundProtocol = ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(ReadyUpgrade::new(PROTOCOL), ())
    }

    fn connection_keep_alive(&self) -> bool {
        false
    }

    fn on_behaviour_event(&mut self, _: Expect) {
        // The end that dialed probes; on this end, silence counts from now on.
        if !self.dialer && self.last_probe.is_none() && !self.dead {
            let now = Instant::now();
            self.last_probe = Some(now);
            let limit = tokio::time::Instant::from_std(now + self.silence_limit());
            self.watchdog.as_mut().reset(limit);
        }
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        // The echoing end: answer, and watch for silence.
        if let Some(fut) = self.echoing.as_mut() {
            match fut.poll_unpin(cx) {
                Poll::Pending => {}
                Poll::Ready(Ok(stream)) => {
                    let now = Instant::now();
                    self.last_probe = Some(now);
                    let limit = tokio::time::Instant::from_std(now + self.silence_limit());
                    self.watchdog.as_mut().reset(limit);
                    self.echoing = Some(echo(stream).boxed());
                    cx.waker().wake_by_ref();
                }
                // The remote closed its probe stream; it may open another.
                Poll::Ready(Err(_)) => self.echoing = None,
            }
        }
        if self.last_probe.is_some() && self.watchdog.as_mut().poll(cx).is_ready() {
            let silent = self.silence_limit();
            self.report_dead(format!("no probe from the remote for {silent:?}"));
            self.last_probe = None;
        }
        // The probing end.
        match std::mem::replace(&mut self.prober, Prober::Off) {
            Prober::Off => {}
            Prober::Opening => self.prober = Prober::Opening,
            Prober::Idle(stream) => {
                if self.next_probe.as_mut().poll(cx).is_ready() {
                    match stream {
                        Some(stream) => {
                            self.sent = self.sent.wrapping_add(1);
                            self.prober = Prober::Probing(probe(stream, self.sent).boxed());
                            cx.waker().wake_by_ref();
                        }
                        None => {
                            self.prober = Prober::Opening;
                            return Poll::Ready(ConnectionHandlerEvent::OutboundSubstreamRequest {
                                protocol: SubstreamProtocol::new(ReadyUpgrade::new(PROTOCOL), ())
                                    .with_timeout(TIMEOUT),
                            });
                        }
                    }
                } else {
                    self.prober = Prober::Idle(stream);
                }
            }
            Prober::Probing(mut fut) => match fut.poll_unpin(cx) {
                Poll::Pending => self.prober = Prober::Probing(fut),
                Poll::Ready(Ok((stream, rtt))) => {
                    self.failures = 0;
                    let next = tokio::time::Instant::now() + self.interval;
                    self.next_probe.as_mut().reset(next);
                    self.prober = Prober::Idle(Some(stream));
                    self.events.push_back(Ok(rtt));
                    cx.waker().wake_by_ref();
                }
                Poll::Ready(Err(e)) => {
                    self.prober = Prober::Idle(None);
                    self.failed(e.to_string());
                    cx.waker().wake_by_ref();
                }
            },
        }
        if let Some(event) = self.events.pop_front() {
            return Poll::Ready(ConnectionHandlerEvent::NotifyBehaviour(event));
        }
        Poll::Pending
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
        match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: mut stream,
                ..
            }) => {
                stream.ignore_for_keep_alive();
                self.echoing = Some(echo(stream).boxed());
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol: mut stream,
                ..
            }) => {
                stream.ignore_for_keep_alive();
                self.sent = self.sent.wrapping_add(1);
                self.prober = Prober::Probing(probe(stream, self.sent).boxed());
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { error, .. }) => match error {
                // Not a peerkv peer (or an old one): not probed.
                StreamUpgradeError::NegotiationFailed => self.prober = Prober::Off,
                StreamUpgradeError::Timeout => {
                    self.prober = Prober::Idle(None);
                    self.failed("no probe stream within 5 s".into());
                }
                StreamUpgradeError::Io(e) => {
                    self.prober = Prober::Idle(None);
                    self.failed(e.to_string());
                }
                StreamUpgradeError::Apply(never) => match never {},
            },
            _ => {}
        }
    }
}
