//! The private redis-server: reachable, restartable, persistent with AOF.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bus_testkit::RedisServer;

/// Sends one command as a RESP array and returns the raw reply.
fn command(port: u16, args: &[&str]) -> Result<String> {
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(request.as_bytes())?;
    let mut reply = Vec::new();
    let mut buffer = [0_u8; 512];
    // Enough for the short replies used here: a status, an error or a bulk
    // string, each complete once a line ends after the (optional) header.
    loop {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            bail!("connection closed after {reply:?}");
        }
        reply.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&reply);
        let complete = match text.strip_prefix('$') {
            Some(bulk) => bulk.starts_with("-1\r\n") || text.matches("\r\n").count() >= 2,
            None => text.ends_with("\r\n"),
        };
        if complete {
            return Ok(text.into_owned());
        }
    }
}

#[test]
fn redis_answers_ping_on_its_private_port() -> Result<()> {
    let redis = RedisServer::start()?;
    assert_ne!(redis.port(), 6379);
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{}/", redis.port()));
    assert!(redis.is_running());

    let mut stream = TcpStream::connect(("127.0.0.1", redis.port()))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"PING\r\n")?;
    let mut reply = [0_u8; 7];
    stream.read_exact(&mut reply)?;
    assert_eq!(&reply, b"+PONG\r\n");
    Ok(())
}

#[test]
fn redis_with_aof_keeps_data_across_kill_and_restart() -> Result<()> {
    let mut redis = RedisServer::start_with_aof()?;
    let port = redis.port();
    assert_eq!(command(port, &["SET", "greeting", "hello"])?, "+OK\r\n");

    redis.kill();
    assert!(!redis.is_running());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "killed server still listens"
    );

    redis.restart()?;
    assert!(redis.is_running());
    assert_eq!(redis.port(), port);
    assert_eq!(command(port, &["GET", "greeting"])?, "$5\r\nhello\r\n");
    Ok(())
}

#[test]
fn redis_without_aof_starts_empty_after_restart() -> Result<()> {
    let mut redis = RedisServer::start()?;
    assert_eq!(command(redis.port(), &["SET", "k", "v"])?, "+OK\r\n");
    redis.restart()?;
    assert_eq!(command(redis.port(), &["GET", "k"])?, "$-1\r\n");
    Ok(())
}

#[test]
fn killing_redis_twice_is_harmless() -> Result<()> {
    let mut redis = RedisServer::start()?;
    let pid = redis.pid().context("a started server has a pid")?;
    redis.kill();
    redis.kill();
    assert!(redis.pid().is_none());
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    Ok(())
}
