//! The `peerkv` binary: parse flags, log to stderr, start a peer, run its REPL on stdin.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use peerkv::Node;
use tracing_subscriber::EnvFilter;

use crate::cli::Cli;
use crate::output::{render, Outcome};

mod cli;
mod output;
mod repl;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.verbose {
        0 => "warn,libp2p_kad=error",
        1 => "info,libp2p_kad=warn",
        _ => "info,peerkv=debug",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    let config = match cli.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let node = match Node::spawn(config).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = match node.listen_addrs().await {
        Ok(listen_addrs) => Outcome::Started { peer_id: node.peer_id(), listen_addrs },
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", render("start", &Ok(started), cli.json));
    if std::io::stdin().is_terminal() && !cli.json {
        println!("type help for commands");
    }

    let code = tokio::select! {
        result = repl::run(&node, cli.json) => match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: reading stdin: {e}");
                ExitCode::FAILURE
            }
        },
        () = shutdown_signal() => ExitCode::SUCCESS,
    };
    let _ = node.shutdown().await;
    // The line editor's thread may still block on the terminal: leave without waiting for it.
    std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
