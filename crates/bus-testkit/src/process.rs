//! Server processes that cannot outlive the test process, plus the small
//! Linux helpers (`/proc`, `/etc/passwd`, polling) the servers share.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Upper bound for every start, readiness and shutdown wait.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);

/// Pause between two checks of a polled condition.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The watchdog: a shell whose stdin is a pipe whose only write end lives in
/// the test process. The kernel closes that end however the test process
/// ends (normal exit, panic, SIGKILL), so `read` returning EOF is a reliable
/// "the test process is gone" signal; statics (the shared PostgreSQL) are
/// covered too, although Rust never drops them.
///
/// Protocol on stdin, one line each:
/// * a signal name (`INT`, ...): forwarded to the server (used for graceful stops);
/// * `DISARM`: exit without touching the server; the test process then
///   retires the server itself (it is its parent and reaps it);
/// * EOF: the test process died: send `$2` (the server's own quick-shutdown
///   signal), wait up to 10 s, SIGKILL if still alive, wait again, then
///   remove the server's temp dir `$3` that no `Drop` will remove now.
///
/// Arguments: `$1` server pid, `$2` signal on orphaning, `$3` dir to remove.
/// SIGINT/SIGHUP are ignored so that a Ctrl-C hitting the whole process group
/// cannot kill the watchdog before it has done its job.
/// While the test process lives, the server is its unreaped child, so `$1`
/// cannot name a recycled pid; after orphaning, every signal is preceded by
/// an `alive` check, which keeps the remaining race window tiny.
const WATCHDOG: &str = r#"
trap '' INT HUP
pid=$1
alive() {
  s=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  s=${s##*") "}
  [ "${s%% *}" != Z ]
}
while read -r cmd; do
  case $cmd in
    DISARM) exit 0 ;;
    *) kill -s "$cmd" "$pid" 2>/dev/null ;;
  esac
done
alive && kill -s "$2" "$pid" 2>/dev/null
i=0
while alive && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
alive && kill -s KILL "$pid" 2>/dev/null
i=0
while alive && [ $i -lt 200 ]; do sleep 0.05; i=$((i + 1)); done
[ -n "$3" ] && rm -rf -- "$3"
exit 0
"#;

/// A server process (a direct child of the test process) together with the
/// watchdog shell that kills it should the test process die first.
///
/// Dropping it SIGKILLs and reaps the server: nothing is left behind.
#[derive(Debug)]
pub(crate) struct Guarded {
    server: Child,
    watchdog: Child,
    /// The test process's end of the watchdog's stdin pipe.
    watchdog_stdin: Option<ChildStdin>,
}

impl Guarded {
    /// Spawns `command` and its watchdog. If the test process dies, the
    /// watchdog sends `orphan_signal` (then SIGKILL) and removes `cleanup_dir`.
    pub(crate) fn spawn(
        mut command: Command,
        orphan_signal: &str,
        cleanup_dir: &Path,
    ) -> Result<Guarded> {
        let program = command.get_program().to_string_lossy().into_owned();
        let mut server = command
            .spawn()
            .with_context(|| format!("cannot start {program}"))?;
        let watchdog = Command::new("/bin/sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("bus-testkit-watchdog")
            .arg(server.id().to_string())
            .arg(orphan_signal)
            .arg(cleanup_dir)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match watchdog {
            Ok(mut watchdog) => {
                let watchdog_stdin = watchdog.stdin.take();
                Ok(Guarded {
                    server,
                    watchdog,
                    watchdog_stdin,
                })
            }
            Err(err) => {
                let _ = server.kill();
                let _ = server.wait();
                Err(err).context("cannot start the watchdog shell /bin/sh")
            }
        }
    }

    /// The server's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.server.id()
    }

    /// Whether the server has not exited yet. Does not reap it, so the pid
    /// stays reserved for us (and for the watchdog) until `Drop`.
    pub(crate) fn is_alive(&self) -> bool {
        process_is_alive(self.server.id())
    }

    /// Asks the watchdog to send `signal` (a name such as `INT`) to the server.
    fn signal(&mut self, signal: &str) -> bool {
        match &mut self.watchdog_stdin {
            Some(stdin) => writeln!(stdin, "{signal}")
                .and_then(|()| stdin.flush())
                .is_ok(),
            None => false,
        }
    }

    /// Sends `signal` and waits up to `timeout` for the server to exit, then
    /// kills (if needed) and reaps it. Returns whether it exited by itself.
    pub(crate) fn stop(mut self, signal: &str, timeout: Duration) -> bool {
        let exited = self.signal(signal)
            && wait_for(timeout, || Ok(!self.is_alive())).is_ok_and(|done| done);
        drop(self);
        exited
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // The server is our unreaped child, so this cannot hit a recycled pid.
        let _ = self.server.kill();
        // Retire the watchdog before reaping the server: once reaped, the pid
        // could be recycled, and the watchdog must never signal it then.
        if let Some(mut stdin) = self.watchdog_stdin.take() {
            let _ = stdin.write_all(b"DISARM\n");
        }
        let _ = self.watchdog.wait();
        let _ = self.server.wait();
    }
}

/// Polls `done` until it returns `Ok(true)` (→ `Ok(true)`), an error
/// (→ that error) or `timeout` passes (→ `Ok(false)`).
pub(crate) fn wait_for(timeout: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<bool> {
    let deadline = Instant::now() + timeout;
    loop {
        if done()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Whether `pid` names a process that has not exited (zombies count as exited).
pub(crate) fn process_is_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may contain ") ".
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .is_some_and(|state| state != "Z" && state != "X")
}

/// Pids of the live processes whose working directory is `dir`. Servers
/// chdir into their data dir and their children inherit it, so this finds
/// e.g. PostgreSQL backends that are still exiting after their postmaster.
fn processes_in(dir: &Path) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir))
        .collect()
}

/// Waits until no process works in `dir` any more (see [`processes_in`]).
pub(crate) fn wait_until_no_process_in(dir: &Path) -> Result<()> {
    // `/proc/PID/cwd` shows canonical paths; $TMPDIR may contain a symlink.
    let dir = &dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    if wait_for(TIMEOUT, || Ok(processes_in(dir).is_empty()))? {
        Ok(())
    } else {
        bail!(
            "processes {:?} still run in {} after {TIMEOUT:?}",
            processes_in(dir),
            dir.display()
        )
    }
}

/// Opens (creating) a server log for appending; returns it with its length,
/// so that what one launch wrote can be told apart from earlier launches.
pub(crate) fn open_log(path: &Path) -> Result<(File, u64)> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open log {}", path.display()))?;
    let len = file.metadata()?.len();
    Ok((file, len))
}

/// What was appended to the log at `path` after byte `offset` (lossy UTF-8).
pub(crate) fn log_since(path: &Path, offset: u64) -> String {
    let mut bytes = Vec::new();
    let read = File::open(path).and_then(|mut file| {
        file.seek(SeekFrom::Start(offset))?;
        file.read_to_end(&mut bytes)
    });
    match read {
        Ok(_) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    }
}

/// The last lines of the log at `path`, for error messages.
pub(crate) fn log_tail(path: &Path) -> String {
    const LINES: usize = 30;
    let log = log_since(path, 0);
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(LINES)..].join("\n");
    format!("--- last lines of {} ---\n{tail}", path.display())
}

/// An error from launching a server, telling apart a lost port race (which
/// is worth retrying on another free port) from anything else.
#[derive(Debug)]
pub(crate) enum LaunchError {
    PortInUse(anyhow::Error),
    Failed(anyhow::Error),
}

impl LaunchError {
    /// Classifies `error` by what the server logged during this launch.
    pub(crate) fn from_log(error: anyhow::Error, log_of_this_launch: &str) -> LaunchError {
        if log_of_this_launch.contains("Address already in use") {
            LaunchError::PortInUse(error)
        } else {
            LaunchError::Failed(error)
        }
    }

    pub(crate) fn into_inner(self) -> anyhow::Error {
        match self {
            LaunchError::PortInUse(error) | LaunchError::Failed(error) => error,
        }
    }
}

impl From<anyhow::Error> for LaunchError {
    fn from(error: anyhow::Error) -> Self {
        LaunchError::Failed(error)
    }
}

/// Launches a server on a fresh free port, retrying on a few other ports if
/// another process grabbed the port between [`crate::free_port`] and the bind.
pub(crate) fn launch_on_free_port<T>(
    mut launch: impl FnMut(u16) -> Result<T, LaunchError>,
) -> Result<(u16, T)> {
    const ATTEMPTS: usize = 5;
    let mut attempt = 1;
    loop {
        let port = crate::try_free_port()?;
        match launch(port) {
            Ok(server) => return Ok((port, server)),
            Err(LaunchError::PortInUse(_)) if attempt < ATTEMPTS => attempt += 1,
            Err(error) => return Err(error.into_inner()),
        }
    }
}

/// The unprivileged user a server runs as when the test process is root.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunAs {
    uid: u32,
    gid: u32,
}

impl RunAs {
    /// `None` when not root (servers then run as the current user); else the
    /// `postgres` user, or `nobody` if there is none.
    pub(crate) fn unprivileged_if_root() -> Result<Option<RunAs>> {
        if effective_uid()? != 0 {
            return Ok(None);
        }
        let passwd = fs::read_to_string("/etc/passwd").context("cannot read /etc/passwd")?;
        ["postgres", "nobody"]
            .iter()
            .find_map(|name| lookup_user(&passwd, name))
            .map(Some)
            .context("running as root, but there is neither a `postgres` nor a `nobody` user to run the server as")
    }

    pub(crate) fn apply(self, command: &mut Command) {
        command.uid(self.uid).gid(self.gid);
    }

    pub(crate) fn chown(self, path: &Path) -> io::Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid))
    }
}

/// Parses `name`'s uid and gid out of an `/etc/passwd` text.
fn lookup_user(passwd: &str, name: &str) -> Option<RunAs> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(RunAs { uid, gid })
    })
}

/// The effective uid, from `/proc/self/status` (no `unsafe` libc call).
fn effective_uid() -> Result<u32> {
    let status =
        fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .context("no effective uid in /proc/self/status")
}

/// `name` found in one of the `PATH` directories.
pub(crate) fn find_in_path(name: impl AsRef<OsStr>) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name.as_ref()))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(dir: &Path) -> Result<Guarded> {
        let mut command = Command::new("sleep");
        command.arg("1000").current_dir(dir);
        Guarded::spawn(command, "TERM", dir)
    }

    #[test]
    fn dropping_a_guarded_process_reaps_it_and_its_watchdog() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let guarded = sleeper(dir.path())?;
        let (server, watchdog) = (guarded.pid(), guarded.watchdog.id());
        assert!(guarded.is_alive());
        drop(guarded);
        assert!(!Path::new(&format!("/proc/{server}")).exists());
        assert!(!Path::new(&format!("/proc/{watchdog}")).exists());
        assert!(
            dir.path().exists(),
            "a disarmed watchdog must not remove the dir"
        );
        Ok(())
    }

    #[test]
    fn closing_the_watchdog_pipe_kills_the_server_and_removes_its_dir() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let mut guarded = sleeper(dir.path())?;
        // What the kernel does when the test process dies.
        drop(guarded.watchdog_stdin.take());
        let watchdog_done = wait_for(TIMEOUT, || Ok(guarded.watchdog.try_wait()?.is_some()))?;
        assert!(watchdog_done, "the watchdog did not finish");
        assert!(!guarded.is_alive());
        assert!(!dir.path().exists());
        Ok(())
    }

    #[test]
    fn a_guarded_process_stops_on_its_signal() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let guarded = sleeper(dir.path())?;
        let pid = guarded.pid();
        assert!(guarded.stop("TERM", TIMEOUT));
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        Ok(())
    }

    #[test]
    fn users_are_found_in_passwd_text() {
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\npostgres:x:101:104::/var/lib/postgresql:/bin/bash\n";
        let user = lookup_user(passwd, "postgres");
        assert!(matches!(user, Some(RunAs { uid: 101, gid: 104 })));
        assert!(lookup_user(passwd, "nobody").is_none());
    }
}
