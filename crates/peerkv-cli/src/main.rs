//! The `peerkv` binary: parse flags, log to stderr, start a peer, run its REPL on stdin (or,
//! with `--headless`, serve until SIGTERM or Ctrl-C).
//!
//! Layout: `cli` (clap flags → `Config`), `commands` (the one table of REPL commands), `parse`
//! (a line → `ReplCommand`, pure), `repl` (the session: reading, running, printing), `output`
//! (rendering, pure). `commands` and `parse` live in the library target (`src/lib.rs`), so the
//! fuzz targets can reach them.
//!
//! Exit codes: [`EXIT_OK`] when every command succeeded, [`EXIT_FAILED`] when one failed,
//! [`EXIT_START`] when the peer could not start.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use peerkv::Node;
// The pure modules live in the library target (`src/lib.rs`, so the fuzz targets reach them);
// importing them here keeps their `crate::commands` and `crate::parse` paths working.
use peerkv_cli::{commands, parse};
use tracing_subscriber::EnvFilter;

use crate::cli::Cli;
use crate::output::{render, Outcome};
use crate::repl::Session;

mod cli;
mod output;
mod repl;

/// jemalloc, not the system allocator: it keeps its bookkeeping out of the blocks it hands out,
/// so memory allocated and never written is never mapped in (libp2p-kad allocates 256 buckets of
/// 20 entries for each peer, ~1.7 MiB, and fills a handful), and it hands freed memory back
/// to the system over time.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Every command succeeded (a headless peer: it stopped on a signal).
const EXIT_OK: u8 = 0;
/// A command failed (an error, or a get that found nothing), or stdin could not be read.
const EXIT_FAILED: u8 = 1;
/// The peer could not start: a bad flag, a port or data directory in use (clap's own usage
/// errors exit 2 as well).
const EXIT_START: u8 = 2;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // libp2p-request-response warns once per stream it resets past --max-streams: a peer
    // opening streams in a loop would write our stderr full. `stats` counts refusals instead.
    let default_level = match cli.verbose {
        0 => "warn,libp2p_kad=error,libp2p_request_response::handler=error",
        1 => "info,libp2p_kad=warn,libp2p_request_response::handler=error",
        _ => "info,peerkv=debug",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let (node, started) = match start(&cli).await {
        Ok(started) => started,
        Err(e) => {
            // One JSON object on stdout with --json, `error: …` on stderr without.
            let _ = render("start", &Err(e), cli.json, 0).write();
            return ExitCode::from(EXIT_START);
        }
    };
    let interactive = !cli.headless && std::io::stdin().is_terminal();
    let mut code = EXIT_OK;
    if render("start", &Ok(started), cli.json, 0).write().is_err() {
        code = EXIT_FAILED;
    } else {
        if interactive && !cli.json {
            let _ = writeln!(std::io::stdout(), "type help for commands");
        }
        let mut session = Session::new(&node, cli.json, cli.max_value_size);
        let ended = tokio::select! {
            ended = async {
                if cli.headless {
                    std::future::pending().await
                } else {
                    session.run(interactive).await
                }
            } => ended,
            // On a terminal Ctrl-C belongs to the line editor: only SIGTERM stops the peer.
            () = shutdown_signal(!interactive) => Ok(()),
        };
        if let Err(e) = ended {
            eprintln!("error: stdin or stdout: {e}");
            code = EXIT_FAILED;
        }
        if session.failed {
            code = EXIT_FAILED;
        }
    }
    let _ = node.shutdown().await;
    // The line editor's thread may still block on the terminal: leave without waiting for it.
    std::process::exit(i32::from(code));
}

/// Starts the peer and learns its listen addresses.
///
/// # Errors
/// A flag out of range, or a peer that cannot start, in words for the user.
async fn start(cli: &Cli) -> Result<(Node, Outcome), String> {
    let config = cli.config()?;
    let node = Node::spawn(config).await.map_err(|e| e.to_string())?;
    match node.listen_addrs().await {
        Ok(listen_addrs) => {
            let peer_id = node.peer_id();
            Ok((node, Outcome::Started { peer_id, listen_addrs }))
        }
        Err(e) => {
            let _ = node.shutdown().await;
            Err(e.to_string())
        }
    }
}

/// SIGTERM, or Ctrl-C when `ctrl_c` (SIGINT).
async fn shutdown_signal(ctrl_c: bool) {
    let interrupt = async {
        if ctrl_c {
            let _ = tokio::signal::ctrl_c().await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    () = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => interrupt.await,
        }
    }
    #[cfg(not(unix))]
    interrupt.await;
}
