//! A private PostgreSQL cluster and throwaway databases in it.

use std::fs::{self, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use tempfile::TempDir;

use crate::process::{self, Guarded, LaunchError, RunAs, TIMEOUT};

/// Layout of the temp dir: the cluster, the unix socket dir, the server log.
const DATA: &str = "data";
const SOCKETS: &str = "sockets";
const LOG_FILE: &str = "postgres.log";

/// Server settings: durability against *OS* crashes is traded for speed,
/// these are throwaway tests. `synchronous_commit` deliberately stays on:
/// with it off, a commit returns before its WAL leaves the server's memory,
/// so `kill()` would lose transactions that clients saw committed, which
/// defeats crash tests. With `fsync=off` it costs just one `write()`.
const SETTINGS: [&str; 4] = [
    "fsync=off",
    "full_page_writes=off",
    "max_connections=200",
    "shared_buffers=64MB",
];

/// A PostgreSQL cluster (`initdb` + `postgres`) on a free port of 127.0.0.1
/// with its own temp dir; superuser `postgres`, trust authentication.
///
/// Dropping it stops the server and removes the dir.
#[derive(Debug)]
pub struct PostgresServer {
    port: u16,
    bin: PathBuf,
    run_as: Option<RunAs>,
    /// Canonical path of the temp dir (compared with `/proc/PID/cwd`).
    root: PathBuf,
    /// `None` after `kill()` or `stop()`.
    process: Option<Guarded>,
    /// Declared last: removed only after `Drop` has stopped the server.
    _dir: TempDir,
}

impl PostgresServer {
    /// Creates a new cluster with `initdb` and starts `postgres` on it.
    pub fn start() -> Result<PostgresServer> {
        let bin = bin_dir()?;
        let run_as = RunAs::unprivileged_if_root()?;
        let dir = create_dir(run_as)?;
        let root = dir.path().canonicalize()?;
        initdb(&bin, &root, run_as)?;
        let (port, process) =
            process::launch_on_free_port(|port| launch(&bin, &root, run_as, port))?;
        Ok(PostgresServer {
            port,
            bin,
            run_as,
            root,
            process: Some(process),
            _dir: dir,
        })
    }

    /// One cluster per test process, started on first use. It is never
    /// dropped; the watchdog shuts it down and removes it when the process ends.
    ///
    /// # Panics
    ///
    /// If the cluster cannot be started.
    pub fn shared() -> &'static PostgresServer {
        static SHARED: OnceLock<PostgresServer> = OnceLock::new();
        SHARED.get_or_init(|| {
            PostgresServer::start().unwrap_or_else(|error| {
                panic!("bus-testkit: cannot start the shared PostgreSQL server: {error:#}")
            })
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The postmaster's pid, `None` after `kill()` or `stop()`.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Guarded::pid)
    }

    /// The temp dir holding the cluster (`data/`), sockets and `postgres.log`.
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The directory of the PostgreSQL binaries in use (`psql`, `pg_dump`, ...).
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// Creates a fresh, uniquely named database (`test_<pid>_<counter>_<nanos>`),
    /// dropped again when the returned [`TestDatabase`] is dropped.
    pub fn create_database(&self) -> Result<TestDatabase> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("test_{}_{counter}_{nanos}", std::process::id());
        let output = client(&self.bin, "createdb", self.port).arg(&name).output();
        check(output, || format!("createdb {name} on port {}", self.port))?;
        Ok(TestDatabase {
            name,
            port: self.port,
            bin: self.bin.clone(),
        })
    }

    /// Runs `sql` with `psql` in `database`; returns the unaligned,
    /// tuples-only output (`psql -tA`).
    pub fn psql(&self, database: &str, sql: &str) -> Result<String> {
        psql(&self.bin, self.port, database, sql)
    }

    /// SIGKILLs the postmaster (a crash: no shutdown checkpoint) and reaps it,
    /// then waits until its backends have noticed and exited too, so that
    /// `restart()` can reuse the port and the data dir. Idempotent.
    pub fn kill(&mut self) {
        if let Some(process) = self.process.take() {
            drop(process);
            self.wait_for_backends();
        }
    }

    /// Fast shutdown (SIGINT: roll back sessions, checkpoint, exit) and wait;
    /// SIGKILL if that takes longer than 30 s. Idempotent.
    pub fn stop(&mut self) {
        if let Some(process) = self.process.take() {
            process.stop("INT", TIMEOUT);
            self.wait_for_backends();
        }
    }

    /// Stops the server if it runs, then starts it again on the same port
    /// with the same data dir (crash recovery runs after `kill()`) and waits
    /// until it accepts connections.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let process = launch(&self.bin, &self.root, self.run_as, self.port)
            .map_err(LaunchError::into_inner)?;
        self.process = Some(process);
        Ok(())
    }

    /// Whether the postmaster process is alive (it may still be starting).
    pub fn is_running(&self) -> bool {
        self.process.as_ref().is_some_and(Guarded::is_alive)
    }

    fn wait_for_backends(&self) {
        // All server processes run in the data dir. Should one hang, the
        // next start reports the shared memory still in use.
        let _ = process::wait_until_no_process_in(&self.root.join(DATA));
    }

    /// After a `kill()`, the postmaster's SysV shared memory segment is left
    /// behind (a `restart()` would have reclaimed it); remove it so that
    /// killed clusters do not eat into the system-wide segment limit.
    fn release_leftover_shared_memory(&self) {
        let Ok(pid_file) = fs::read_to_string(self.root.join(DATA).join("postmaster.pid")) else {
            return; // clean shutdown: nothing left
        };
        // Line 7 of postmaster.pid: "<shared memory key> <shared memory id>".
        let shmid = pid_file
            .lines()
            .nth(6)
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|id| id.parse::<u64>().ok());
        if let Some(shmid) = shmid {
            let _ = Command::new("ipcrm")
                .arg("-m")
                .arg(shmid.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
        self.release_leftover_shared_memory();
    }
}

/// A database created by [`PostgresServer::create_database`].
///
/// Dropping it drops the database (`dropdb --force`), ignoring errors since
/// the server may be gone by then.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    port: u16,
    bin: PathBuf,
}

impl TestDatabase {
    /// `postgres://postgres@127.0.0.1:PORT/NAME`
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{}", self.port, self.name)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs `sql` with `psql` in this database; returns the unaligned,
    /// tuples-only output (`psql -tA`).
    pub fn psql(&self, sql: &str) -> Result<String> {
        psql(&self.bin, self.port, &self.name, sql)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // --force (PostgreSQL 13+) terminates sessions the test left open.
        let _ = client(&self.bin, "dropdb", self.port)
            .args(["--force", "--if-exists"])
            .arg(&self.name)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// `$BUS_TESTKIT_PG_BIN`, else the highest `/usr/lib/postgresql/<version>/bin`
/// (Debian layout), else the directory of `initdb` on `PATH`.
fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("BUS_TESTKIT_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for entry in fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name();
        let Some(version) = name
            .to_str()
            .and_then(|name| name.split('.').map(|part| part.parse().ok()).collect())
        else {
            continue;
        };
        let bin = entry.path().join("bin");
        let newer = best.as_ref().is_none_or(|(highest, _)| version > *highest);
        if newer && bin.join("postgres").is_file() {
            best = Some((version, bin));
        }
    }
    best.map(|(_, bin)| bin)
        .or_else(|| Some(process::find_in_path("initdb")?.parent()?.to_path_buf()))
        .context("no PostgreSQL binaries: none in /usr/lib/postgresql/*/bin, no initdb on PATH (set BUS_TESTKIT_PG_BIN)")
}

/// The temp dir, mode 0700, owned by the user the server runs as.
fn create_dir(run_as: Option<RunAs>) -> Result<TempDir> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("bus-testkit-pg-");
    // The server user must be able to reach the dir: /tmp is traversable by
    // everyone, a root's $TMPDIR may not be. A short path also keeps the unix
    // socket path under its 107-byte limit.
    let dir = match run_as {
        Some(_) => builder.tempdir_in("/tmp"),
        None => builder.tempdir(),
    }
    .context("cannot create a temp dir for PostgreSQL")?;
    fs::set_permissions(dir.path(), Permissions::from_mode(0o700))?;
    let sockets = dir.path().join(SOCKETS);
    fs::create_dir(&sockets)?;
    if let Some(user) = run_as {
        user.chown(dir.path())?;
        user.chown(&sockets)?;
    }
    Ok(dir)
}

/// Creates the cluster in `root/data`.
fn initdb(bin: &Path, root: &Path, run_as: Option<RunAs>) -> Result<()> {
    let initdb = bin.join("initdb");
    let mut command = Command::new(&initdb);
    command
        .arg("-D")
        .arg(root.join(DATA))
        .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
        .arg("--no-sync");
    if accepts_no_instructions(&initdb) {
        command.arg("--no-instructions");
    }
    command.current_dir(root).stdin(Stdio::null());
    if let Some(user) = run_as {
        // initdb refuses to run as root.
        user.apply(&mut command);
    }
    check(command.output(), || format!("{}", initdb.display()))?;
    Ok(())
}

/// Whether this `initdb` knows `--no-instructions` (PostgreSQL 13+).
fn accepts_no_instructions(initdb: &Path) -> bool {
    Command::new(initdb)
        .arg("--help")
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).contains("--no-instructions"))
}

/// Starts `postgres` on the cluster in `root` and waits until it is ready.
fn launch(
    bin: &Path,
    root: &Path,
    run_as: Option<RunAs>,
    port: u16,
) -> Result<Guarded, LaunchError> {
    let data = root.join(DATA);
    let log_path = root.join(LOG_FILE);
    let (log, log_offset) = process::open_log(&log_path)?;
    let stdout = log.try_clone().map_err(anyhow::Error::from)?;
    let mut command = Command::new(bin.join("postgres"));
    command
        .arg("-D")
        .arg(&data)
        .arg("-p")
        .arg(port.to_string())
        .args(["-h", "127.0.0.1"])
        .arg("-k")
        .arg(root.join(SOCKETS));
    for setting in SETTINGS {
        command.args(["-c", setting]);
    }
    command
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(log);
    if let Some(user) = run_as {
        user.apply(&mut command);
    }
    // Orphaned, it gets SIGQUIT (immediate shutdown), which unlike SIGKILL
    // still releases its shared memory and lets the backends go first.
    let process = Guarded::spawn(command, "QUIT", root)?;

    let ready = process::wait_for(TIMEOUT, || {
        if !process.is_alive() {
            return Err(anyhow!("postgres on port {port} exited during startup"));
        }
        // postmaster.pid says "ready" only once *this* postmaster listens, so
        // pg_isready cannot be answered by some other server on the port.
        Ok(postmaster_status(&data).as_deref() == Some("ready") && pg_isready(bin, port))
    });
    let error = match ready {
        Ok(true) => return Ok(process),
        Ok(false) => {
            anyhow!("postgres on port {port} did not accept connections within {TIMEOUT:?}")
        }
        Err(error) => error,
    };
    drop(process);
    let this_launch = process::log_since(&log_path, log_offset);
    let error = anyhow!("{error:#}\n{}", process::log_tail(&log_path));
    Err(LaunchError::from_log(error, &this_launch))
}

/// Line 8 of `postmaster.pid`: `starting`, `stopping`, `ready` or `standby`.
fn postmaster_status(data: &Path) -> Option<String> {
    let pid_file = fs::read_to_string(data.join("postmaster.pid")).ok()?;
    Some(pid_file.lines().nth(7)?.trim().to_owned())
}

fn pg_isready(bin: &Path, port: u16) -> bool {
    Command::new(bin.join("pg_isready"))
        .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "postgres", "-d", "postgres", "-t", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// A client program (`psql`, `createdb`, `dropdb`) aimed at our server,
/// never prompting for a password.
fn client(bin: &Path, program: &str, port: u16) -> Command {
    let mut command = Command::new(bin.join(program));
    command
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-w",
        ])
        .env("PGCONNECT_TIMEOUT", "10")
        .env_remove("PGOPTIONS")
        .env_remove("PGSERVICE")
        .stdin(Stdio::null());
    command
}

fn psql(bin: &Path, port: u16, database: &str, sql: &str) -> Result<String> {
    let output = client(bin, "psql", port)
        .args([
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            database,
            "-c",
            sql,
        ])
        .output();
    let output = check(output, || {
        format!("psql -c {sql:?} in {database} on port {port}")
    })?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Turns a failed spawn or a non-zero exit into an error showing the output.
fn check(output: std::io::Result<Output>, what: impl Fn() -> String) -> Result<Output> {
    let output = output.with_context(|| format!("cannot run {}", what()))?;
    if !output.status.success() {
        bail!(
            "{} failed ({}):\n{}{}",
            what(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}
