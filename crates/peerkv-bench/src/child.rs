//! The parent side: each system runs in a child process of its own (this binary again, with
//! `--child`), one after the other, so that RSS, CPU time and loopback counters measure that
//! system alone. When this process may create network namespaces (root, with unshare(1) and
//! ip(8)), the child gets one of its own with only a loopback interface: its traffic then stays
//! on a loopback nobody else uses, and the interface counters count exactly its packets.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How often the parent looks whether a child ended.
const CHILD_POLL: Duration = Duration::from_millis(200);

/// Whether children run in a network namespace of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Isolate {
    /// When it works here.
    Auto,
    /// Always (fail when it does not work).
    On,
    /// Never: the shared loopback, no wire figures.
    Off,
}

/// Whether `unshare -n` with a loopback brought up works here.
pub fn netns_available() -> bool {
    Command::new("unshare")
        .args(["--net", "--", "ip", "link", "set", "lo", "up"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs this binary with `args`, in a new network namespace when `isolated`, and waits at
/// most `limit` (then kills it).
///
/// # Errors
/// When the child cannot start, fails, or runs past `limit`.
pub fn run_child(
    exe: &Path,
    args: &[String],
    isolated: bool,
    limit: Duration,
) -> Result<(), String> {
    let mut command = if isolated {
        // unshare and sh exec in place: the child's pid is the benchmark's own.
        let mut c = Command::new("unshare");
        c.args(["--net", "--", "sh", "-c", "ip link set lo up && exec \"$0\" \"$@\""]).arg(exe);
        c
    } else {
        Command::new(exe)
    };
    command.args(args).stdin(Stdio::null());
    let mut child = command.spawn().map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("the benchmark child failed ({status})")),
            Ok(None) if start.elapsed() >= limit => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the benchmark child ran past {} s and was stopped",
                    limit.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(CHILD_POLL),
            Err(e) => return Err(format!("waiting for the child: {e}")),
        }
    }
}
