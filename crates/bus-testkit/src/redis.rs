//! A private `redis-server`.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tempfile::TempDir;

use crate::process::{self, Guarded, LaunchError, TIMEOUT};

const LOG_FILE: &str = "redis.log";

/// A `redis-server` on a free port of 127.0.0.1 with its own temp dir.
///
/// Dropping it kills the server and removes the dir.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    aof: bool,
    binary: PathBuf,
    /// `None` after `kill()`.
    process: Option<Guarded>,
    /// Declared last: removed only after `Drop` has killed the server.
    dir: TempDir,
}

impl RedisServer {
    /// Starts a server without persistence (`--save "" --appendonly no`).
    pub fn start() -> Result<RedisServer> {
        RedisServer::start_with(false)
    }

    /// Starts a server with `--appendonly yes --appendfsync always`, its AOF
    /// in its temp dir, so that writes survive `kill()` + `restart()`.
    pub fn start_with_aof() -> Result<RedisServer> {
        RedisServer::start_with(true)
    }

    fn start_with(aof: bool) -> Result<RedisServer> {
        let binary = redis_binary();
        let dir = tempfile::Builder::new()
            .prefix("bus-testkit-redis-")
            .tempdir()
            .context("cannot create a temp dir for redis-server")?;
        let (port, process) =
            process::launch_on_free_port(|port| launch(&binary, dir.path(), port, aof))?;
        Ok(RedisServer {
            port,
            aof,
            binary,
            process: Some(process),
            dir,
        })
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's pid, `None` after `kill()`.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Guarded::pid)
    }

    /// The server's temp dir (its `--dir`: log, AOF).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGKILLs the server and reaps it; the port is free on return.
    /// Idempotent.
    pub fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            drop(process);
            // A background AOF rewrite child would still run in the dir.
            let _ = process::wait_until_no_process_in(self.dir.path());
        }
    }

    /// Kills the server if it runs, then starts it again on the same port
    /// with the same dir (so an AOF is reloaded) and waits until it answers
    /// PING with PONG (not `-LOADING`).
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let process = launch(&self.binary, self.dir.path(), self.port, self.aof)
            .map_err(LaunchError::into_inner)?;
        self.process = Some(process);
        Ok(())
    }

    /// Whether the server process is alive (it may still be starting).
    pub fn is_running(&self) -> bool {
        self.process.as_ref().is_some_and(Guarded::is_alive)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `$BUS_TESTKIT_REDIS_SERVER`, else `redis-server` from `PATH`, else
/// `/usr/bin/redis-server`.
fn redis_binary() -> PathBuf {
    std::env::var_os("BUS_TESTKIT_REDIS_SERVER")
        .map(PathBuf::from)
        .or_else(|| process::find_in_path("redis-server"))
        .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"))
}

/// Starts `redis-server` in `dir` on `port` and waits until it is ready.
fn launch(binary: &Path, dir: &Path, port: u16, aof: bool) -> Result<Guarded, LaunchError> {
    let log_path = dir.join(LOG_FILE);
    let (log, log_offset) = process::open_log(&log_path)?;
    let mut command = Command::new(binary);
    command
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&log_path)
        .args(["--daemonize", "no", "--protected-mode", "no", "--save", ""]);
    if aof {
        // No automatic rewrite: its forked child would outlive a SIGKILL.
        command.args([
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--auto-aof-rewrite-percentage",
            "0",
        ]);
    } else {
        command.args(["--appendonly", "no"]);
    }
    // Messages printed before the log file is opened (config errors) go to
    // the same file.
    let stdout = log.try_clone().map_err(anyhow::Error::from)?;
    command
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(log);
    let process = Guarded::spawn(command, "KILL", dir)?;

    let this_launch = || process::log_since(&log_path, log_offset);
    let ready = process::wait_for(TIMEOUT, || {
        if !process.is_alive() {
            return Err(anyhow!("redis-server on port {port} exited during startup"));
        }
        // "Ready" in our own log proves that *this* server owns the port,
        // so the PONG cannot come from some other process.
        Ok(this_launch().contains("Ready to accept connections") && ping(port))
    });
    let error = match ready {
        Ok(true) => return Ok(process),
        Ok(false) => anyhow!("redis-server on port {port} did not answer PING within {TIMEOUT:?}"),
        Err(error) => error,
    };
    drop(process);
    let error = anyhow!("{error:#}\n{}", process::log_tail(&log_path));
    Err(LaunchError::from_log(error, &this_launch()))
}

/// Whether a raw `PING` on `port` is answered with `+PONG`.
fn ping(port: u16) -> bool {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_secs(1)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_secs(1)))
        .and_then(|()| stream.write_all(b"PING\r\n"))
        .is_err()
    {
        return false;
    }
    let mut reply = Vec::new();
    let mut buffer = [0_u8; 128];
    while !reply.ends_with(b"\r\n") {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return false,
            Ok(n) => reply.extend_from_slice(&buffer[..n]),
        }
    }
    // `-LOADING ...` while an AOF is being loaded means not yet.
    reply.starts_with(b"+PONG")
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn a_taken_port_is_reported_as_such_so_that_another_one_is_tried() -> Result<()> {
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = taken.local_addr()?.port();
        let dir = tempfile::tempdir()?;
        match launch(&redis_binary(), dir.path(), port, false) {
            Err(LaunchError::PortInUse(error)) => {
                assert!(format!("{error:#}").contains("Address already in use"));
                Ok(())
            }
            Err(LaunchError::Failed(error)) => Err(error.context("expected PortInUse")),
            Ok(_) => anyhow::bail!("redis-server started on a taken port"),
        }
    }

    #[test]
    fn a_server_that_cannot_start_is_reported_with_its_log() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let Err(error) = launch(
            Path::new("/bin/false"),
            dir.path(),
            crate::free_port(),
            false,
        ) else {
            anyhow::bail!("/bin/false cannot become ready");
        };
        let message = format!("{:#}", error.into_inner());
        assert!(message.contains("exited during startup"), "{message}");
        assert!(message.contains("last lines of"), "{message}");
        Ok(())
    }
}
