//! The command line: clap derive, each flag's doc comment is its `--help` text.

use std::time::Duration;

use clap::Parser;
use peerkv::Multiaddr;

use peerkv::admission;
use peerkv::config::{self, Config};
use peerkv::protocol::DEFAULT_KAD_PROTOCOL;

/// A peer-to-peer key-value store: start a peer, put and get keys from its REPL.
///
/// Peers find each other by mDNS on the LAN or through --bootstrap addresses, and store each key
/// on the peers closest to it (Kademlia XOR metric). Commands are read from stdin: a line editor
/// on a terminal, plain lines from a pipe. Type `help` for the list.
#[derive(Debug, Parser)]
#[command(name = "peerkv", version)]
pub struct Cli {
    /// Address to listen on (repeatable). Default: /ip4/0.0.0.0/tcp/0 and /ip4/0.0.0.0/udp/0/quic-v1.
    #[arg(short, long, value_name = "MULTIADDR")]
    pub listen: Vec<Multiaddr>,

    /// Peer to join through, as printed at its start: MULTIADDR/p2p/PEERID (repeatable).
    #[arg(short, long, value_name = "MULTIADDR")]
    pub bootstrap: Vec<Multiaddr>,

    /// Turn mDNS discovery off (use it outside a LAN you own, and in tests).
    #[arg(long)]
    pub no_mdns: bool,

    /// Print every result as one JSON object per line.
    #[arg(long)]
    pub json: bool,

    /// Run without a REPL: read nothing from stdin and serve until SIGTERM or Ctrl-C (for a peer
    /// in the background, `peerkv --headless &`, or under a service manager).
    #[arg(long)]
    pub headless: bool,

    /// Kademlia protocol id; peers must share it to route for each other.
    #[arg(long, value_name = "ID", default_value = DEFAULT_KAD_PROTOCOL)]
    pub kad_protocol: String,

    /// Replication factor R: how many of the closest peers hold each key (capped by the peers there are).
    #[arg(allow_negative_numbers = true, short = 'r', long, value_name = "R", default_value_t = config::DEFAULT_REPLICATION)]
    pub replication: usize,

    /// Acknowledgements a put waits for (W). Default: a majority of the replicas.
    #[arg(allow_negative_numbers = true, long, value_name = "W")]
    pub write_quorum: Option<usize>,

    /// Replies a get waits for (Q). Default: a majority of the replicas.
    #[arg(allow_negative_numbers = true, long, value_name = "Q")]
    pub read_quorum: Option<usize>,

    /// Largest value accepted, in bytes.
    #[arg(allow_negative_numbers = true, long, value_name = "BYTES", default_value_t = config::DEFAULT_MAX_VALUE_SIZE)]
    pub max_value_size: usize,

    /// Deadline of one operation, in seconds.
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", default_value_t = config::DEFAULT_TIMEOUT.as_secs_f64())]
    pub timeout: f64,

    /// Seconds an unused connection stays open.
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", default_value_t = config::DEFAULT_IDLE_CONNECTION_TIMEOUT.as_secs_f64())]
    pub idle_timeout: f64,

    /// Connections kept open whatever the idle timeout, to the peers nearest to this one (a
    /// get or put to them skips the handshakes); 0 for none.
    #[arg(long, value_name = "N", default_value_t = config::DEFAULT_WARM_CONNECTIONS)]
    pub warm_connections: usize,

    /// Most records this peer holds; past it new keys are refused (nothing held is dropped).
    #[arg(allow_negative_numbers = true, long, value_name = "N", default_value_t = config::DEFAULT_MAX_RECORDS)]
    pub max_records: usize,

    /// Most key and value bytes this peer holds.
    #[arg(allow_negative_numbers = true, long, value_name = "BYTES", default_value_t = config::DEFAULT_MAX_STORE_BYTES)]
    pub max_store_bytes: usize,

    /// Most records of one writer (a record's signing key) this peer holds: past it, new keys
    /// of that writer from other peers are refused (keys held are still updated). Default: a
    /// quarter of --max-records.
    #[arg(allow_negative_numbers = true, long, value_name = "N")]
    pub max_records_per_writer: Option<usize>,

    /// Most key and value bytes of one writer this peer holds, the same way. Default: a quarter
    /// of --max-store-bytes.
    #[arg(allow_negative_numbers = true, long, value_name = "BYTES")]
    pub max_bytes_per_writer: Option<usize>,

    /// Where this peer keeps its identity, records and known peers (created if missing). Default:
    /// $XDG_DATA_HOME/peerkv or ~/.local/share/peerkv. A second peer on the same machine needs
    /// its own.
    #[arg(long, value_name = "DIR", conflicts_with = "ephemeral")]
    pub data_dir: Option<std::path::PathBuf>,

    /// Keep everything in memory: a new peer id at every start, nothing survives a restart.
    #[arg(long)]
    pub ephemeral: bool,

    /// Join a private swarm: only peers with the same key file can connect (libp2p-pnet). The
    /// file is kubo's swarm.key format: /key/swarm/psk/1.0.0/, /base16/, 64 hex digits, one a
    /// line. QUIC cannot carry the key, so the peer then speaks TCP only: it listens on
    /// /ip4/0.0.0.0/tcp/0 by default, and QUIC --listen or --bootstrap addresses are refused.
    #[arg(long, value_name = "FILE")]
    pub psk: Option<std::path::PathBuf>,

    /// Seconds between replica upkeep rounds (every record re-offered to its closest peers).
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", default_value_t = config::DEFAULT_UPKEEP_INTERVAL.as_secs_f64())]
    pub upkeep_interval: f64,

    /// Seconds a tombstone (a delete) is kept before it is removed everywhere.
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", default_value_t = config::DEFAULT_TOMBSTONE_TTL.as_secs_f64())]
    pub tombstone_ttl: f64,

    /// Seconds between mDNS queries on the LAN (at least 1).
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", default_value_t = config::DEFAULT_MDNS_QUERY_INTERVAL.as_secs_f64())]
    pub mdns_interval: f64,

    /// Seconds between two liveness probes of a connection, sent by the end that dialed it; a
    /// host cut off is noticed within this plus 11 s by those, 1.5 times this plus 5 s by the
    /// others.
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", default_value_t = peerkv::alive::DEFAULT_INTERVAL.as_secs_f64())]
    pub probe_interval: f64,

    /// Limits on what other peers may make this one hold and do.
    #[command(flatten)]
    pub limits: LimitFlags,

    /// More log output on stderr (-v info, -vv debug). RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Admission control (the library's `peerkv::admission`): what another peer past a limit sees
/// is in the README, "Limits".
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Limits on other peers")]
pub struct LimitFlags {
    /// Most open connections, both ways together; past it new ones are refused.
    #[arg(long, value_name = "N", default_value_t = admission::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: u32,

    /// Most open connections with one peer.
    #[arg(long, value_name = "N", default_value_t = admission::DEFAULT_MAX_CONNECTIONS_PER_PEER)]
    pub max_connections_per_peer: u32,

    /// Most connections being set up at once, inbound and outbound each.
    #[arg(long, value_name = "N", default_value_t = admission::DEFAULT_MAX_PENDING_CONNECTIONS)]
    pub max_pending_connections: u32,

    /// Refuse new connections while this process uses more than this share of the machine's
    /// memory (percent).
    #[arg(long, value_name = "PERCENT", default_value_t = admission::DEFAULT_MAX_MEMORY_PERCENT)]
    pub max_memory_percent: u8,

    /// Most value-protocol streams open at once on one connection, both ways.
    #[arg(long, value_name = "N", default_value_t = admission::DEFAULT_MAX_STREAMS)]
    pub max_streams: usize,

    /// Most bytes held for requests still being read, all peers together; a request that does
    /// not fit is refused ("busy"). At least the largest message plus 4 MiB.
    #[arg(long, value_name = "BYTES", default_value_t = admission::DEFAULT_REQUEST_BUDGET)]
    pub request_budget: usize,

    /// Seconds a peer has to send a whole request; a slower one is dropped unanswered.
    #[arg(allow_negative_numbers = true, long, value_name = "SECS", default_value_t = admission::DEFAULT_READ_TIMEOUT.as_secs_f64())]
    pub read_timeout: f64,

    /// Requests a second one peer may send (bursts of twice that); past it they are refused
    /// ("rate limit").
    #[arg(long, value_name = "N", default_value_t = admission::DEFAULT_PEER_RATE)]
    pub peer_rate: u32,

    /// Upkeep requests (Summary, Digest, StoreMany) a second one peer may send; peers outside
    /// the routing table share half of it, the peers in it ten times it.
    #[arg(long, value_name = "N", default_value_t = admission::DEFAULT_UPKEEP_RATE)]
    pub upkeep_rate: u32,
}

impl LimitFlags {
    /// The limits.
    ///
    /// # Errors
    /// A flag out of range.
    pub fn admission(&self) -> Result<admission::Admission, String> {
        Ok(admission::Admission {
            max_connections: self.max_connections,
            max_connections_per_peer: self.max_connections_per_peer,
            max_pending_connections: self.max_pending_connections,
            max_memory_percent: self.max_memory_percent,
            max_streams: self.max_streams,
            request_budget: self.request_budget,
            read_timeout: seconds("read-timeout", self.read_timeout)?,
            peer_rate: self.peer_rate,
            upkeep_rate: self.upkeep_rate,
        })
    }
}

fn seconds(name: &str, secs: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("--{name} {secs}: must be a positive number of seconds"))
}

impl Cli {
    /// The peer's configuration.
    ///
    /// # Errors
    /// A flag out of range, in words for the user.
    pub fn config(&self) -> Result<Config, String> {
        let psk = match &self.psk {
            Some(path) => Some(config::read_psk(path).map_err(|e| e.to_string())?),
            None => None,
        };
        let config = Config {
            listen: if self.listen.is_empty() && psk.is_some() {
                config::default_listen_tcp()
            } else if self.listen.is_empty() {
                config::default_listen()
            } else {
                self.listen.clone()
            },
            bootstrap: self.bootstrap.clone(),
            mdns: !self.no_mdns,
            kad_protocol: self.kad_protocol.clone(),
            replication: self.replication,
            write_quorum: self.write_quorum,
            read_quorum: self.read_quorum,
            max_value_size: self.max_value_size,
            timeout: seconds("timeout", self.timeout)?,
            idle_connection_timeout: seconds("idle-timeout", self.idle_timeout)?,
            warm_connections: self.warm_connections,
            mdns_query_interval: seconds("mdns-interval", self.mdns_interval)?,
            max_records: self.max_records,
            upkeep_interval: seconds("upkeep-interval", self.upkeep_interval)?,
            tombstone_ttl: seconds("tombstone-ttl", self.tombstone_ttl)?,
            max_store_bytes: self.max_store_bytes,
            max_records_per_writer: self.max_records_per_writer,
            max_bytes_per_writer: self.max_bytes_per_writer,
            keypair: None,
            psk,
            link_delay: None,
            data_dir: if self.ephemeral {
                None
            } else {
                match self.data_dir.clone().or_else(peerkv::data_dir::default_data_dir) {
                    Some(dir) => Some(dir),
                    None => {
                        return Err("no data directory: HOME and XDG_DATA_HOME are unset — give --data-dir DIR or --ephemeral".into())
                    }
                }
            },
            admission: self.limits.admission()?,
            probe_interval: seconds("probe-interval", self.probe_interval)?,
        };
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_to_the_config() {
        let cli = Cli::try_parse_from([
            "peerkv",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--no-mdns",
            "--json",
            "-r",
            "3",
            "--write-quorum",
            "2",
            "--max-value-size",
            "100",
            "--timeout",
            "2.5",
        ])
        .unwrap();
        let c = cli.config().unwrap();
        assert!(!c.mdns && cli.json);
        assert_eq!((c.replication, c.write_quorum, c.max_value_size), (3, Some(2), 100));
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.listen.len(), 1);
    }

    #[test]
    fn per_writer_quotas_default_to_a_quarter_of_the_store() {
        let c = Cli::try_parse_from(["peerkv", "--ephemeral", "--max-records", "1000"])
            .unwrap()
            .config()
            .unwrap();
        assert_eq!((c.records_per_writer(), c.bytes_per_writer()), (250, 1 << 28));
        let c = Cli::try_parse_from([
            "peerkv",
            "--ephemeral",
            "--max-records-per-writer",
            "7",
            "--max-bytes-per-writer",
            "4096",
        ])
        .unwrap()
        .config()
        .unwrap();
        assert_eq!((c.records_per_writer(), c.bytes_per_writer()), (7, 4096));
        let e = Cli::try_parse_from(["peerkv", "--ephemeral", "--max-records-per-writer", "0"])
            .unwrap()
            .config()
            .unwrap_err();
        assert!(e.contains("--max-records-per-writer must be at least 1"), "{e}");
    }

    #[test]
    fn defaults_listen_on_tcp_and_quic_with_mdns_on() {
        let c = Cli::try_parse_from(["peerkv"]).unwrap().config().unwrap();
        assert!(c.mdns);
        assert_eq!(c.listen.len(), 2);
    }

    #[test]
    fn out_of_range_flags_are_refused() {
        let cli = Cli::try_parse_from(["peerkv", "-r", "2", "--read-quorum", "3"]).unwrap();
        assert!(cli.config().unwrap_err().contains("--read-quorum"));
        let cli = Cli::try_parse_from(["peerkv", "--timeout=-1"]).unwrap();
        assert!(cli.config().is_err());
    }

    #[test]
    fn a_key_file_makes_a_private_tcp_only_swarm() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("swarm.key");
        std::fs::write(
            &key,
            "/key/swarm/psk/1.0.0/\n/base16/\n00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
        )
        .unwrap();
        let path = key.to_str().unwrap();
        let c = Cli::try_parse_from(["peerkv", "--ephemeral", "--psk", path])
            .unwrap()
            .config()
            .unwrap();
        assert!(c.psk.is_some());
        assert_eq!(c.listen, config::default_listen_tcp());
        let e = Cli::try_parse_from([
            "peerkv",
            "--ephemeral",
            "--psk",
            path,
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
        ])
        .unwrap()
        .config()
        .unwrap_err();
        assert!(e.contains("QUIC cannot carry a pre-shared key"), "{e}");
        std::fs::write(&key, "not a key").unwrap();
        let e = Cli::try_parse_from(["peerkv", "--ephemeral", "--psk", path])
            .unwrap()
            .config()
            .unwrap_err();
        assert!(e.contains(&format!("--psk {path}: not a swarm key")), "{e}");
    }

    #[test]
    fn negative_numbers_reach_our_own_check() {
        let cli = Cli::try_parse_from(["peerkv", "--timeout", "-1"]).unwrap();
        assert_eq!(cli.config().unwrap_err(), "--timeout -1: must be a positive number of seconds");
        let cli = Cli::try_parse_from(["peerkv", "--upkeep-interval", "-0.5"]).unwrap();
        assert!(cli
            .config()
            .unwrap_err()
            .starts_with("--upkeep-interval -0.5: must be a positive"));
        let e = Cli::try_parse_from(["peerkv", "-r", "-1"]).unwrap_err().to_string();
        assert!(e.contains("invalid value '-1' for '--replication <R>'"), "{e}");
    }
}
