//! A `peerkv` process driven through its stdin and stdout, as a user or script would.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;

/// Longest wait for one line of output.
pub const LINE_WAIT: Duration = Duration::from_secs(30);

/// Lines of stderr held for a test before the reader waits ([`Peer::err_line`]).
const STDERR_CAP: usize = 1024;

/// One running peer.
pub struct Peer {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: Lines<BufReader<ChildStdout>>,
    /// Lines of stderr that are not logs: the errors a user reads. Log lines (they start with a
    /// timestamp) are passed on to the test's stderr.
    pub stderr: mpsc::Receiver<String>,
}

/// Whether a line of stderr is a log line: tracing's format starts with an RFC 3339 timestamp
/// (or, from a build that colours its logs, with an escape sequence).
pub fn is_log_line(line: &str) -> bool {
    let b = line.as_bytes();
    b.first() == Some(&0x1b)
        || (b.len() > 20 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b'T')
}

impl Peer {
    /// Starts `program args…` with piped stdin, stdout and stderr. The process is killed if the
    /// `Peer` is dropped.
    pub fn spawn(program: &str, args: &[String]) -> Peer {
        Self::spawn_with(program, args, Stdio::piped())
    }

    /// As [`Peer::spawn`], with `stdin` as the process's stdin (`Stdio::null()` for a peer that
    /// must not read it).
    pub fn spawn_with(program: &str, args: &[String], stdin: Stdio) -> Peer {
        let mut child = Command::new(program)
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut err_lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let (tx, stderr) = mpsc::channel(STDERR_CAP);
        tokio::spawn(async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                if is_log_line(&line) {
                    eprintln!("{line}");
                } else {
                    eprintln!("peerkv stderr: {line}");
                    let _ = tx.send(line).await;
                }
            }
        });
        Peer { child, stdin, stdout, stderr }
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

    /// The next `n` bytes of stdout, as they are (`get --raw`).
    pub async fn raw(&mut self, n: usize) -> Vec<u8> {
        let mut bytes = vec![0; n];
        match tokio::time::timeout(LINE_WAIT, self.stdout.get_mut().read_exact(&mut bytes)).await {
            Ok(Ok(_)) => bytes,
            Ok(Err(e)) => panic!("reading stdout: {e}"),
            Err(_) => panic!("no {n} bytes within {LINE_WAIT:?}"),
        }
    }

    /// The next line of stderr that is not a log line.
    pub async fn err_line(&mut self) -> String {
        match tokio::time::timeout(LINE_WAIT, self.stderr.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => panic!("peerkv closed its stderr"),
            Err(_) => panic!("no error line within {LINE_WAIT:?}"),
        }
    }

    /// The next line of stdout, which must be one JSON object.
    pub async fn json(&mut self) -> Value {
        let line = self.line().await;
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not one JSON object: {line:?}: {e}"))
    }

    /// Writes one command line.
    pub async fn send(&mut self, command: &str) {
        self.send_bytes(format!("{command}\n").as_bytes()).await;
    }

    /// Writes bytes as they are.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(bytes).await.expect("write stdin");
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

    /// Sends a command and reads `n` lines of its human answer.
    pub async fn ask_lines(&mut self, command: &str, n: usize) -> Vec<String> {
        self.send(command).await;
        let mut lines = Vec::with_capacity(n);
        for _ in 0..n {
            lines.push(self.line().await);
        }
        lines
    }

    /// Sends a command that fails and reads its one-line error from stderr (human mode).
    pub async fn ask_err(&mut self, command: &str) -> String {
        self.send(command).await;
        self.err_line().await
    }

    /// Closes stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn exit_code(&mut self) -> i32 {
        let status = tokio::time::timeout(LINE_WAIT, self.child.wait())
            .await
            .expect("exit in time")
            .expect("wait");
        status.code().unwrap_or_else(|| panic!("ended by a signal: {status}"))
    }

    /// Waits for the process to exit and checks it succeeded.
    pub async fn exits_cleanly(&mut self) {
        assert_eq!(self.exit_code().await, 0, "exit code");
    }

    /// Sends SIGTERM to this process, by its PID.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("still running").to_string();
        let status =
            std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(status.success(), "kill -TERM {pid}");
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

/// What a one-shot run printed, and how it ended.
pub struct Finished {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Finished {
    /// Stdout as text.
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr without log lines.
    pub fn errors(&self) -> String {
        String::from_utf8_lossy(&self.stderr)
            .lines()
            .filter(|l| !is_log_line(l))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Runs `program args…` with `input` on stdin (then end of input) to its end, within
/// [`LINE_WAIT`].
pub async fn run_once(program: &str, args: &[String], input: &[u8]) -> Finished {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    // A peer may end (a start-up failure) before reading: a broken pipe is no failure here.
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
    });
    let output = tokio::time::timeout(LINE_WAIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} did not end within {LINE_WAIT:?}"))
        .expect("wait");
    let _ = writer.await;
    Finished { code: output.status.code(), stdout: output.stdout, stderr: output.stderr }
}
