//! Private `redis-server` and PostgreSQL instances for integration tests.
//!
//! Every server is started from the system binaries (`redis-server` from
//! `PATH` or `/usr/bin`; PostgreSQL from the highest `/usr/lib/postgresql/*/bin`)
//! on a fresh free port on 127.0.0.1, with its files in its own temp dir. Servers
//! already running on the standard ports are never touched. Tests can kill and
//! restart the servers (same port, same data) to exercise crash recovery; there
//! are no mocks.
//!
//! * [`RedisServer`]: `start()` without persistence, `start_with_aof()` with an
//!   fsync-always append-only file that survives `kill()` + `restart()`.
//! * [`ServiceProcess`]: a service's real binary as a child process (log file, SIGKILL,
//!   SIGTERM with a deadline); [`workspace_binaries`] builds and locates them.
//! * [`ChannelListener`]: every payload published on a Pub/Sub channel, and
//!   `settled()` to wait until everything published before the call has arrived.
//! * [`PostgresServer`]: `start()` runs `initdb` and `postgres` for a new
//!   cluster, `shared()` gives one cluster per test process, and
//!   `create_database()` hands out uniquely named [`TestDatabase`]s that are
//!   dropped with them. As root, PostgreSQL runs as the `postgres` user (or
//!   `nobody`), since `initdb` refuses to run as root.
//!
//! # Orphan protection
//!
//! Servers must not outlive the test process, even if it panics or is
//! SIGKILLed, and even for the shared cluster living in a static (which Rust
//! never drops). Each server is a direct child of the test process (so
//! `kill()` SIGKILLs and reaps the real server process), paired with a tiny
//! watchdog `sh` whose stdin is a pipe held only by the test process. However
//! the test process ends, the kernel closes that pipe; the watchdog's `read`
//! then sees EOF, shuts the server down (SIGQUIT for PostgreSQL, SIGKILL for
//! Redis, SIGKILL after 10 s in any case) and removes its temp dir. When the
//! test process retires a server itself, it first tells the watchdog to exit
//! (`DISARM`), so the watchdog never signals a pid that may have been recycled.
//!
//! # Example
//!
//! ```no_run
//! use bus_testkit::{PostgresServer, RedisServer};
//!
//! # fn main() -> anyhow::Result<()> {
//! let mut redis = RedisServer::start_with_aof()?;
//! let redis_url = redis.url(); // redis://127.0.0.1:PORT/
//!
//! let db = PostgresServer::shared().create_database()?;
//! let database_url = db.url(); // postgres://postgres@127.0.0.1:PORT/test_...
//!
//! // ... run the service against redis_url and database_url ...
//! redis.kill(); // simulate a crash
//! redis.restart()?; // same port, AOF data reloaded
//! # let _ = (redis_url, database_url);
//! # Ok(())
//! # }
//! ```

mod channel;
mod poll;
mod postgres;
mod process;
mod redis;
mod service;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};

use anyhow::{Context, Result, bail};

pub use crate::channel::ChannelListener;
pub use crate::poll::{eventually, poll, poll_until, until};
pub use crate::postgres::{PostgresServer, TestDatabase};
pub use crate::redis::RedisServer;
pub use crate::service::{ServiceProcess, workspace_binaries};

/// Ports this process has handed out, so that two servers of one test
/// process never race for the same port.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A TCP port on 127.0.0.1 that was free a moment ago and that this process
/// has not handed out before (binds port 0, reads the port, drops the listener).
///
/// # Panics
///
/// If no port can be bound on 127.0.0.1.
pub fn free_port() -> u16 {
    match try_free_port() {
        Ok(port) => port,
        Err(error) => panic!("bus-testkit: no free TCP port on 127.0.0.1: {error:#}"),
    }
}

pub(crate) fn try_free_port() -> Result<u16> {
    for _ in 0..100 {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("cannot bind a TCP port on 127.0.0.1")?;
        let port = listener.local_addr()?.port();
        drop(listener);
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
    bail!("the kernel keeps returning ports this process already handed out")
}
