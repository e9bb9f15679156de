//! Where and on what a run happened: commit, machine, load average.

use std::fs;
use std::process::Command;

use serde::Serialize;

/// The commit the binaries were built from and whether the tree had local changes.
#[derive(Debug, Clone, Serialize)]
pub struct Commit {
    /// Short SHA of `HEAD`, `unknown` outside a git checkout.
    pub sha: String,
    /// The working tree differed from `HEAD`.
    pub dirty: bool,
}

impl Commit {
    /// Asks `git` in the current directory.
    pub fn current() -> Commit {
        let git = |args: &[&str]| {
            Command::new("git")
                .args(args)
                .output()
                .ok()
                .filter(|out| out.status.success())
                .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        };
        Commit {
            sha: git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into()),
            dirty: git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty()),
        }
    }

    /// `abc123` or `abc123-dirty`, for file names and the table.
    pub fn label(&self) -> String {
        if self.dirty {
            format!("{}-dirty", self.sha)
        } else {
            self.sha.clone()
        }
    }
}

/// The machine the run used.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// `model name` of `/proc/cpuinfo`.
    pub cpu: String,
    /// CPUs available to this process.
    pub cpus: usize,
    /// `MemTotal`, MiB.
    pub memory_mib: u64,
    /// Kernel release.
    pub kernel: String,
}

impl Machine {
    /// Reads `/proc`.
    pub fn current() -> Machine {
        let read = |path: &str| fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim())
            })
            .unwrap_or("unknown")
            .to_owned();
        let memory_mib = read("/proc/meminfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("MemTotal:")?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            })
            .map_or(0, |kib: u64| kib / 1024);
        Machine {
            cpu,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_mib,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        }
    }
}

/// The 1, 5 and 15 minute load averages, so noisy runs are visible.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LoadAverage(pub [f64; 3]);

impl LoadAverage {
    /// Reads `/proc/loadavg` (zeros if unreadable).
    pub fn now() -> LoadAverage {
        LoadAverage(parse_loadavg(
            &fs::read_to_string("/proc/loadavg").unwrap_or_default(),
        ))
    }
}

impl std::fmt::Display for LoadAverage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c] = self.0;
        write!(f, "{a:.2} {b:.2} {c:.2}")
    }
}

fn parse_loadavg(text: &str) -> [f64; 3] {
    let mut it = text.split_whitespace().map(|v| v.parse().unwrap_or(0.0));
    [
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_load_averages_are_the_first_three_fields() {
        assert_eq!(
            parse_loadavg("1.52 0.43 0.15 3/144 8353\n"),
            [1.52, 0.43, 0.15]
        );
        assert_eq!(parse_loadavg(""), [0.0, 0.0, 0.0]);
    }
}
