//! CPU time and memory of running processes, read from `/proc`.
//!
//! CPU is `utime + stime` of `/proc/<pid>/stat`; for a process tree (PostgreSQL forks a
//! backend per connection) the children's times are added: `cutime + cstime` of every live
//! process in the tree already hold its reaped children, so summing all four fields over the
//! live tree counts every CPU second once. Memory is `VmRSS` (now) and `VmHWM` (peak) of
//! `/proc/<pid>/status`.

use std::collections::HashMap;
use std::fs;
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result};

/// The four time fields and the parent of one `/proc/<pid>/stat` line, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatTimes {
    /// Parent pid (field 4).
    pub ppid: u32,
    /// User time of the process itself (field 14).
    pub utime: u64,
    /// System time of the process itself (field 15).
    pub stime: u64,
    /// User time of its waited-for children (field 16).
    pub cutime: u64,
    /// System time of its waited-for children (field 17).
    pub cstime: u64,
}

impl StatTimes {
    /// Own CPU only.
    pub fn own_ticks(&self) -> u64 {
        self.utime + self.stime
    }

    /// Own CPU plus that of reaped children.
    pub fn with_children_ticks(&self) -> u64 {
        self.own_ticks() + self.cutime + self.cstime
    }
}

/// Parses a `/proc/<pid>/stat` line. The command name (field 2) may contain spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat(line: &str) -> Option<StatTimes> {
    let after_name = &line[line.rfind(')')? + 1..];
    // after_name starts at field 3 (state); field n is index n - 3.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(StatTimes {
        ppid: u32::try_from(field(4)?).ok()?,
        utime: field(14)?,
        stime: field(15)?,
        cutime: field(16)?,
        cstime: field(17)?,
    })
}

/// The value in kB of `key` (`VmHWM`, `VmRSS`) in a `/proc/<pid>/status` text, in bytes.
pub fn parse_status_bytes(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        let kib: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kib * 1024)
    })
}

/// Clock ticks per second (`getconf CLK_TCK`; 100, Linux's USER_HZ, if that fails).
pub fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn stat(pid: u32) -> Result<StatTimes> {
    let path = format!("/proc/{pid}/stat");
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_stat(&text).with_context(|| format!("unexpected format of {path}"))
}

/// CPU seconds used so far by `pid` itself.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    Ok(stat(pid)?.own_ticks() as f64 / ticks_per_second())
}

/// CPU seconds used so far by `root` and every process below it, live or reaped.
pub fn tree_cpu_seconds(root: u32) -> Result<f64> {
    let mut children: HashMap<u32, Vec<(u32, StatTimes)>> = HashMap::new();
    for entry in fs::read_dir("/proc")
        .context("cannot list /proc")?
        .flatten()
    {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes come and go while we scan; one that vanished simply does not count.
        if let Ok(times) = stat(pid) {
            children.entry(times.ppid).or_default().push((pid, times));
        }
    }
    let mut ticks = stat(root)?.with_children_ticks();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        for (child, times) in children.get(&pid).into_iter().flatten() {
            ticks += times.with_children_ticks();
            stack.push(*child);
        }
    }
    Ok(ticks as f64 / ticks_per_second())
}

fn status_bytes(pid: u32, key: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    parse_status_bytes(&text, key).with_context(|| format!("no {key} in {path}"))
}

/// Resident memory of `pid` now, in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    status_bytes(pid, "VmRSS")
}

/// Peak resident memory of `pid` since it started (`VmHWM`), in bytes.
pub fn peak_rss_bytes(pid: u32) -> Result<u64> {
    status_bytes(pid, "VmHWM")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_a_command_name_with_spaces_and_parentheses() {
        let line = "4242 (tokio (rt) 1) S 17 4242 17 0 -1 4194560 1209 0 0 0 \
                    350 120 7 3 20 0 9 0 12345 1000000 500 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(StatTimes {
                ppid: 17,
                utime: 350,
                stime: 120,
                cutime: 7,
                cstime: 3,
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_values_are_read_in_kib_and_returned_in_bytes() {
        let status = "Name:\tingest\nVmPeak:\t  900 kB\nVmHWM:\t   20480 kB\nVmRSS:\t 10240 kB\n";
        assert_eq!(parse_status_bytes(status, "VmHWM"), Some(20 * 1024 * 1024));
        assert_eq!(parse_status_bytes(status, "VmRSS"), Some(10 * 1024 * 1024));
        assert_eq!(parse_status_bytes(status, "VmSwap"), None);
    }

    #[test]
    fn this_process_has_a_cpu_time_and_a_peak_rss() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert!(tree_cpu_seconds(pid).unwrap() >= cpu_seconds(pid).unwrap());
        assert!(peak_rss_bytes(pid).unwrap() >= rss_bytes(pid).unwrap() / 2);
    }
}
