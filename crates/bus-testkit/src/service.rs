//! The services' real binaries as child processes, for end-to-end tests: started with a clean
//! environment, logging to a file, killed with SIGKILL or stopped with SIGTERM, and never
//! outliving the test. When the test is failing, dropping one prints the tail of its log.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Log lines printed for each process of a failing test.
const LOG_TAIL: usize = 40;

/// Builds `packages` of this workspace with the cargo that runs the tests (same profile and
/// target directory) and returns the path of each binary (named like its package).
///
/// `test_binary` is any binary of that target directory, typically
/// `env!("CARGO_BIN_EXE_<name>")` of the test's own package, or the test executable itself
/// (`std::env::current_exe()`).
pub fn workspace_binaries(
    cargo: &str,
    test_binary: &Path,
    packages: &[&str],
) -> Result<Vec<PathBuf>> {
    let mut cmd = Command::new(cargo);
    cmd.arg("build");
    for p in packages {
        cmd.args(["-p", p]);
    }
    let status = cmd.status().context("cannot run cargo build")?;
    if !status.success() {
        bail!("cargo build -p {} failed: {status}", packages.join(" -p "));
    }
    // Test executables live in target/<profile>/deps, binaries in target/<profile>.
    let mut dir = test_binary.parent().context("binary without a directory")?;
    if dir.ends_with("deps") {
        dir = dir.parent().context("deps without a parent")?;
    }
    Ok(packages.iter().map(|p| dir.join(p)).collect())
}

/// A service binary running as a child process. SIGKILLed when dropped.
#[derive(Debug)]
pub struct ServiceProcess {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ServiceProcess {
    /// Starts `binary` as `name` with only `PATH`, `RUST_LOG=info` and `env` in its
    /// environment; stdout and stderr go to `<logs>/<name>.log`.
    pub fn spawn(name: &str, binary: &Path, env: &[(&str, String)], logs: &Path) -> Result<Self> {
        let log = logs.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        Ok(ServiceProcess {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// The name it was started as.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// What it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no drain, no ack, no goodbye.
    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `timeout` for it to exit and returns how it exited.
    pub async fn terminate(mut self, timeout: Duration) -> Result<ExitStatus> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        if !sent.success() {
            bail!("kill -TERM {} failed", self.name);
        }
        self.exited(timeout)
            .await
            .with_context(|| format!("after SIGTERM to {}", self.name))
    }

    /// Waits up to `timeout` for it to exit by itself (a refused start-up, say) and returns
    /// how it exited; [`log`](Self::log) then holds everything it printed.
    pub async fn exited(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let child = &mut self.child;
        let status = crate::poll(timeout, || {
            let status = child.try_wait().ok().flatten();
            async move { status }
        })
        .await;
        status.with_context(|| format!("{} did not exit within {timeout:?}", self.name))
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.sigkill();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("--- {} (last lines of its log) ---", self.name);
            for line in &lines[lines.len().saturating_sub(LOG_TAIL)..] {
                eprintln!("{line}");
            }
        }
    }
}
