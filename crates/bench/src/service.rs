//! The services under test, run as real release binaries in child processes.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bus_testkit::ServiceProcess;

use crate::procstat;

/// How long a service gets to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// One running service process (bus-testkit's), plus what the benchmark reads from `/proc`;
/// killed when dropped.
#[derive(Debug)]
pub struct Service(ServiceProcess);

impl Service {
    /// Starts `binary` with `env` and quiet logging, its output in `<logs>/<name>.log`.
    pub fn spawn(binary: &Path, name: &str, env: &[(String, String)], logs: &Path) -> Result<Self> {
        let mut all: Vec<(&str, String)> =
            vec![("RUST_LOG", "warn".into()), ("NO_COLOR", "1".into())];
        all.extend(env.iter().map(|(k, v)| (k.as_str(), v.clone())));
        Ok(Service(ServiceProcess::spawn(name, binary, &all, logs)?))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.pid()
    }

    /// The service's name in this run.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// CPU seconds it used so far.
    pub fn cpu_seconds(&self) -> Result<f64> {
        procstat::cpu_seconds(self.pid())
    }

    /// Its peak resident memory so far, in bytes.
    pub fn peak_rss(&self) -> Result<u64> {
        procstat::peak_rss_bytes(self.pid())
    }

    /// Its resident memory now, in bytes.
    pub fn rss(&self) -> Result<u64> {
        procstat::rss_bytes(self.pid())
    }

    /// An error with the end of its log if it has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if !self.0.is_running() {
            bail!("{} exited:\n{}", self.name(), self.log_tail());
        }
        Ok(())
    }

    /// SIGTERM, then waits for the exit (SIGKILL on drop after the deadline). A clean stop
    /// is exit 0.
    pub async fn stop(self) -> Result<()> {
        let name = self.name().to_owned();
        let tail = self.log_tail();
        let status = self.0.terminate(STOP_TIMEOUT).await?;
        if !status.success() {
            bail!("{name} exited with {status}:\n{tail}");
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        let log = self.0.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

/// The defaults a binary documents in its `--help` (`  NAME  (default: VALUE)` lines).
pub fn help_defaults(binary: &Path) -> Result<Vec<(String, String)>> {
    let out = Command::new(binary)
        .arg("--help")
        .output()
        .with_context(|| format!("cannot run {} --help", binary.display()))?;
    Ok(parse_help_defaults(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_help_defaults(help: &str) -> Vec<(String, String)> {
    help.lines()
        .filter_map(|line| {
            let (name, rest) = line.trim().split_once(char::is_whitespace)?;
            let value = rest.trim().strip_prefix("(default: ")?;
            let value = value.split_once(';').map_or(value, |(v, _)| v);
            Some((name.to_owned(), value.trim_end_matches(')').to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_read_from_help_lines() {
        let help = "ingest 0.1.0\n\nSERVICE SETTINGS:\n  TOKENS_BATCH_SIZE        (default: 10)\n  \
                    WORKER__GROUP_START_ID   (default: 0)\n  OTEL_EXPORTER_OTLP_ENDPOINT  (default: unset; export traces)\n";
        assert_eq!(
            parse_help_defaults(help),
            vec![
                ("TOKENS_BATCH_SIZE".to_owned(), "10".to_owned()),
                ("WORKER__GROUP_START_ID".to_owned(), "0".to_owned()),
                ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), "unset".to_owned()),
            ]
        );
    }
}
