//! Servers never outlive their owner: not after `Drop`, not after the test
//! process itself is SIGKILLed.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bus_testkit::{PostgresServer, RedisServer};

/// Set when this test binary runs as the child of
/// `a_sigkilled_test_process_leaves_no_server_behind`.
const HELPER_ENV: &str = "BUS_TESTKIT_ORPHAN_HELPER";
const HELPER_TEST: &str = "helper_starts_servers_and_waits_to_be_killed";

/// Whether `pid` is gone (a zombie nobody reaps counts as gone).
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => true,
    }
}

fn eventually(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    done()
}

/// `kill -0 PID`, which fails once the process is gone.
fn kill_0(pid: u32) -> Result<bool> {
    Ok(Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()?
        .success())
}

#[test]
fn dropping_a_server_leaves_no_process() -> Result<()> {
    let redis = RedisServer::start()?;
    let redis_pid = redis.pid().context("running redis has a pid")?;
    let redis_dir = redis.dir().to_path_buf();
    let postgres = PostgresServer::start()?;
    let postgres_pid = postgres.pid().context("running postgres has a pid")?;
    let postgres_dir = postgres.dir().to_path_buf();
    assert!(kill_0(redis_pid)?);
    assert!(kill_0(postgres_pid)?);

    drop(redis);
    drop(postgres);

    assert!(
        !kill_0(redis_pid)?,
        "redis-server {redis_pid} survived Drop"
    );
    assert!(
        !kill_0(postgres_pid)?,
        "postgres {postgres_pid} survived Drop"
    );
    assert!(!Path::new(&format!("/proc/{redis_pid}")).exists());
    assert!(!Path::new(&format!("/proc/{postgres_pid}")).exists());
    assert!(!redis_dir.exists());
    assert!(!postgres_dir.exists());
    Ok(())
}

#[test]
fn killing_a_server_leaves_no_process() -> Result<()> {
    let mut postgres = PostgresServer::start()?;
    let pid = postgres.pid().context("running postgres has a pid")?;
    postgres.kill();
    assert!(!kill_0(pid)?, "postgres {pid} survived kill()");
    assert!(postgres.pid().is_none());
    Ok(())
}

/// Runs only as the child process of the next test.
#[test]
fn helper_starts_servers_and_waits_to_be_killed() -> Result<()> {
    if std::env::var_os(HELPER_ENV).is_none() {
        return Ok(());
    }
    let redis = RedisServer::start()?;
    let postgres = PostgresServer::shared();
    println!(
        "\nSERVERS {} {} {} {}",
        redis.pid().context("redis pid")?,
        redis.dir().display(),
        postgres.pid().context("postgres pid")?,
        postgres.dir().display()
    );
    // Block until the parent kills us (or, should it die, closes our stdin).
    std::io::stdin().read_to_end(&mut Vec::new())?;
    Ok(())
}

#[test]
fn a_sigkilled_test_process_leaves_no_server_behind() -> Result<()> {
    let mut helper = Command::new(std::env::current_exe()?)
        .args(["--exact", HELPER_TEST, "--nocapture", "--test-threads=1"])
        .env(HELPER_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = helper.stdout.take().context("piped stdout")?;
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|line| line.starts_with("SERVERS "));
    let Some(line) = line else {
        let _ = helper.kill();
        let status = helper.wait()?;
        anyhow::bail!("the helper did not report its servers ({status})");
    };
    let fields: Vec<&str> = line.split_whitespace().skip(1).collect();
    let [redis_pid, redis_dir, postgres_pid, postgres_dir] = fields[..] else {
        anyhow::bail!("unexpected helper line {line:?}");
    };
    let (redis_pid, postgres_pid): (u32, u32) = (redis_pid.parse()?, postgres_pid.parse()?);
    let (redis_dir, postgres_dir) = (PathBuf::from(redis_dir), PathBuf::from(postgres_dir));
    assert!(!is_gone(redis_pid) && !is_gone(postgres_pid));

    helper.kill()?; // SIGKILL: no Drop, no atexit, nothing runs in the helper
    helper.wait()?;

    assert!(
        eventually(|| is_gone(redis_pid)),
        "orphaned redis-server {redis_pid} survived"
    );
    assert!(
        eventually(|| is_gone(postgres_pid)),
        "orphaned postgres {postgres_pid} survived"
    );
    assert!(
        eventually(|| !redis_dir.exists()),
        "{} was not removed",
        redis_dir.display()
    );
    assert!(
        eventually(|| !postgres_dir.exists()),
        "{} was not removed",
        postgres_dir.display()
    );
    Ok(())
}
