//! A `peerkv` process driven through its stdin and stdout, as a user or script would.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Longest wait for one line of output.
pub const LINE_WAIT: Duration = Duration::from_secs(30);

/// One running peer.
pub struct Peer {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: Lines<BufReader<ChildStdout>>,
}

impl Peer {
    /// Starts `program args…` with piped stdin and stdout; stderr goes to the test's stderr.
    /// The process is killed if the `Peer` is dropped.
    pub fn spawn(program: &str, args: &[String]) -> Peer {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Peer { child, stdin, stdout }
    }

    /// The next line of stdout.
    pub async fn line(&mut self) -> String {
        match tokio::time::timeout(LINE_WAIT, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => panic!("peerkv closed its stdout"),
            Ok(Err(e)) => panic!("reading stdout: {e}"),
            Err(_) => panic!("no output within {LINE_WAIT:?}"),
        }
    }

    /// The next line of stdout, which must be one JSON object.
    pub async fn json(&mut self) -> Value {
        let line = self.line().await;
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not one JSON object: {line:?}: {e}"))
    }

    /// Writes one command line.
    pub async fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(format!("{command}\n").as_bytes()).await.expect("write stdin");
        stdin.flush().await.expect("flush stdin");
    }

    /// Sends a command and reads its JSON answer.
    pub async fn ask_json(&mut self, command: &str) -> Value {
        self.send(command).await;
        self.json().await
    }

    /// Sends a command and reads its one-line human answer.
    pub async fn ask(&mut self, command: &str) -> String {
        self.send(command).await;
        self.line().await
    }

    /// Closes stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the process to exit and checks it succeeded.
    pub async fn exits_cleanly(&mut self) {
        let status = tokio::time::timeout(LINE_WAIT, self.child.wait())
            .await
            .expect("exit in time")
            .expect("wait");
        assert!(status.success(), "exit status {status}");
    }

    /// Peer ids in this peer's routing table (`routes`, JSON mode).
    pub async fn routes(&mut self) -> Vec<String> {
        let answer = self.ask_json("routes").await;
        answer["routes"]
            .as_array()
            .map(|r| r.iter().filter_map(|e| e["peer_id"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    /// Peer ids `peers` lists (JSON mode).
    pub async fn peers(&mut self) -> Vec<String> {
        let answer = self.ask_json("peers").await;
        answer["peers"]
            .as_array()
            .map(|r| r.iter().filter_map(|e| e["peer_id"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}
