//! `perf record` around a phase, for finding where the time goes.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, Result};

/// A running `perf record -a -e cpu-clock -g` (system-wide, so PostgreSQL's backends and Redis
/// are in the profile too; `perf report --comm postgres` or `--comm redis-server` separates
/// them, and the services' threads are `tokio-rt-worker`).
#[derive(Debug)]
pub struct Profiler(Child);

impl Profiler {
    /// Starts recording into `out`.
    pub fn start(out: &Path) -> Result<Profiler> {
        let child = Command::new("perf")
            .args(["record", "-a", "-e", "cpu-clock", "-g", "-o"])
            .arg(out)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run perf (Debian package linux-perf)")?;
        Ok(Profiler(child))
    }

    /// Stops recording; perf writes its data file on SIGINT.
    pub fn stop(mut self) -> Result<()> {
        Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status()?;
        self.0.wait()?;
        Ok(())
    }
}
