//! Process-wide readings from `/proc`: resident memory, CPU time, open descriptors, and the
//! loopback interface's counters. All of them are whole-process or whole-namespace figures,
//! which is why each system runs in a process of its own (see `child.rs`).

use std::fs;

/// Clock ticks per second of `/proc/self/stat` (`USER_HZ`): 100 on every Linux architecture
/// this runs on (it is part of the kernel ABI, not the configured `HZ`).
const USER_HZ: f64 = 100.0;

/// A field of `/proc/self/status` given in kB, in bytes.
fn status_kb(field: &str) -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kb * 1024)
    })
}

/// Resident set size of the process now.
pub fn rss_bytes() -> Option<u64> {
    status_kb("VmRSS")
}

/// Peak resident set size of the process.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kb("VmHWM")
}

/// User plus system CPU time of the whole process (every thread, live or ended), in seconds.
/// Resolution: 10 ms.
pub fn cpu_seconds() -> Option<f64> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain numbers.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) sit at 11 and 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Open file descriptors of the process.
pub fn open_fds() -> Option<usize> {
    Some(fs::read_dir("/proc/self/fd").ok()?.count())
}

/// What the loopback interface of this network namespace has sent so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wire {
    /// Bytes sent (IP packets with their headers).
    pub bytes: u64,
    /// Packets sent (TCP segments, data and bare acknowledgements alike).
    pub packets: u64,
}

/// The loopback interface's transmit counters, from `/proc/net/dev`.
pub fn loopback() -> Option<Wire> {
    let dev = fs::read_to_string("/proc/net/dev").ok()?;
    dev.lines().find_map(|line| {
        let rest = line.trim_start().strip_prefix("lo:")?;
        let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        // Receive: bytes packets errs drop fifo frame compressed multicast; then transmit.
        Some(Wire { bytes: *f.get(8)?, packets: *f.get(9)? })
    })
}

/// Raises the soft open-files limit to the hard limit; returns the limit in force.
pub fn raise_nofile_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft).unwrap_or(1024),
    }
}

/// The kernel release, for the report.
pub fn kernel() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The machine's 1-minute load average.
pub fn load_average() -> Option<f64> {
    fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}
