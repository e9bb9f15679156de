//! The private Redis and PostgreSQL of a run, and fresh databases in it.
//!
//! Redis is always a private `redis-server` from bus-testkit (no persistence). PostgreSQL is
//! either a server the caller started (`--postgres-url`; `scripts/bench.sh` starts one with
//! the durable defaults, fsync on) or a private bus-testkit cluster, which trades fsync for
//! speed. The settings that decide durability are read back from the server and recorded.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bus_core::redis::aio::MultiplexedConnection;
use bus_core::sqlx::{self, AssertSqlSafe, Connection, PgConnection, PgPool};
use bus_testkit::{PostgresServer, RedisServer};
use serde::Serialize;

use crate::procstat;

/// The private Redis.
#[derive(Debug)]
pub struct Redis {
    server: RedisServer,
    client: bus_core::redis::Client,
}

impl Redis {
    /// Starts a private `redis-server`.
    pub async fn start() -> Result<Redis> {
        let server = tokio::task::spawn_blocking(RedisServer::start).await??;
        let client = bus_core::redis::Client::open(server.url())?;
        Ok(Redis { server, client })
    }

    /// `redis://127.0.0.1:PORT/`
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// A new connection for the driver's own commands.
    pub async fn connection(&self) -> Result<MultiplexedConnection> {
        Ok(self.client.get_multiplexed_async_connection().await?)
    }

    /// Deletes `keys`.
    pub async fn delete(&self, keys: &[String]) -> Result<()> {
        let mut conn = self.connection().await?;
        let _: () = bus_core::redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// `redis_version` from `INFO server`.
    pub async fn version(&self) -> Result<String> {
        Ok(self
            .info_field("server", "redis_version")
            .await?
            .unwrap_or_default())
    }

    /// CPU seconds the server used so far (`used_cpu_user + used_cpu_sys` of `INFO cpu`).
    pub async fn cpu_seconds(&self) -> Result<f64> {
        let user = self.info_field("cpu", "used_cpu_user").await?;
        let sys = self.info_field("cpu", "used_cpu_sys").await?;
        let parse = |v: Option<String>| v.and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        Ok(parse(user) + parse(sys))
    }

    async fn info_field(&self, section: &str, key: &str) -> Result<Option<String>> {
        let mut conn = self.connection().await?;
        let info: String = bus_core::redis::cmd("INFO")
            .arg(section)
            .query_async(&mut conn)
            .await?;
        Ok(info.lines().find_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            (k == key).then(|| v.to_owned())
        }))
    }
}

/// The PostgreSQL settings that decide what a commit costs and guarantees.
#[derive(Debug, Clone, Serialize)]
pub struct PgSettings {
    /// `server_version`.
    pub version: String,
    /// `fsync`: `on` makes commits durable across an OS crash.
    pub fsync: String,
    /// `synchronous_commit`.
    pub synchronous_commit: String,
    /// `full_page_writes`.
    pub full_page_writes: String,
    /// `shared_buffers`.
    pub shared_buffers: String,
    /// `max_wal_size`.
    pub max_wal_size: String,
}

impl PgSettings {
    /// Commits wait for the WAL to reach the disk.
    pub fn durable(&self) -> bool {
        self.fsync == "on" && self.synchronous_commit != "off"
    }
}

/// The PostgreSQL server of a run.
#[derive(Debug)]
pub struct Postgres {
    admin_url: String,
    postmaster: Option<u32>,
    /// Held so a private cluster lives as long as the run.
    _private: Option<PostgresServer>,
    /// What the server runs with.
    pub settings: PgSettings,
}

impl Postgres {
    /// A private bus-testkit cluster with `track_commit_timestamp` on (set, then restarted).
    pub async fn start_private() -> Result<Postgres> {
        let server = tokio::task::spawn_blocking(|| -> Result<PostgresServer> {
            let mut server = PostgresServer::start()?;
            server.psql("postgres", "ALTER SYSTEM SET track_commit_timestamp = on")?;
            server.restart()?;
            Ok(server)
        })
        .await??;
        let admin_url = server.admin_url();
        let postmaster = server.pid();
        Postgres::open(admin_url, postmaster, Some(server)).await
    }

    /// A server someone else started; `url` must reach it as a superuser.
    pub async fn external(url: &str) -> Result<Postgres> {
        let mut conn = PgConnection::connect(url)
            .await
            .with_context(|| format!("cannot connect to --postgres-url {}", redact(url)))?;
        let data: String = sqlx::query_scalar("SHOW data_directory")
            .fetch_one(&mut conn)
            .await
            .context("SHOW data_directory (the benchmark needs a superuser)")?;
        // The first line of postmaster.pid is the postmaster's pid; the CPU of the server is
        // that of its process tree. Unreadable (another host, another user): not measured.
        let postmaster = std::fs::read_to_string(PathBuf::from(data).join("postmaster.pid"))
            .ok()
            .and_then(|text| text.lines().next()?.trim().parse().ok());
        Postgres::open(url.to_owned(), postmaster, None).await
    }

    async fn open(
        admin_url: String,
        postmaster: Option<u32>,
        private: Option<PostgresServer>,
    ) -> Result<Postgres> {
        let mut conn = PgConnection::connect(&admin_url).await?;
        let track: String = sqlx::query_scalar("SHOW track_commit_timestamp")
            .fetch_one(&mut conn)
            .await?;
        if track != "on" {
            bail!(
                "the PostgreSQL server needs track_commit_timestamp=on (commit times are the latency's end)"
            );
        }
        let mut show = async |name: &str| -> Result<String> {
            Ok(sqlx::query_scalar(AssertSqlSafe(format!("SHOW {name}")))
                .fetch_one(&mut conn)
                .await?)
        };
        let settings = PgSettings {
            version: show("server_version").await?,
            fsync: show("fsync").await?,
            synchronous_commit: show("synchronous_commit").await?,
            full_page_writes: show("full_page_writes").await?,
            shared_buffers: show("shared_buffers").await?,
            max_wal_size: show("max_wal_size").await?,
        };
        Ok(Postgres {
            admin_url,
            postmaster,
            _private: private,
            settings,
        })
    }

    /// CPU seconds of the whole server (postmaster and every backend) so far, if visible.
    pub fn cpu_seconds(&self) -> Option<f64> {
        procstat::tree_cpu_seconds(self.postmaster?).ok()
    }

    /// Creates database `name` (dropping a leftover of that name) with every migration applied.
    pub async fn fresh_database(&self, name: &str) -> Result<Database> {
        self.drop_database(name).await?;
        let mut admin = PgConnection::connect(&self.admin_url).await?;
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await?;
        let url = database_url(&self.admin_url, name);
        let pool = PgPool::connect(&url).await?;
        bus_core::MIGRATOR.run(&pool).await?;
        Ok(Database {
            name: name.to_owned(),
            url,
            pool,
        })
    }

    /// Drops database `name` if it exists, ending its sessions.
    pub async fn drop_database(&self, name: &str) -> Result<()> {
        let mut admin = PgConnection::connect(&self.admin_url).await?;
        sqlx::query(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await?;
        Ok(())
    }
}

/// A database of one run step.
#[derive(Debug)]
pub struct Database {
    /// Its name.
    pub name: String,
    /// Its URL, for the services.
    pub url: String,
    /// The driver's pool on it.
    pub pool: PgPool,
}

impl Database {
    /// `count(*)` of `table`.
    pub async fn count(&self, table: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&self.pool)
                .await?,
        )
    }
}

/// `url` with its database (the path) replaced by `name`.
fn database_url(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

fn redact(url: &str) -> String {
    bus_core::settings::redact_url(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced_and_its_query_kept() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "drain_1"),
            "postgres://postgres@127.0.0.1:5432/drain_1"
        );
        assert_eq!(
            database_url("postgres://u:p@h:1/x?sslmode=disable", "d"),
            "postgres://u:p@h:1/d?sslmode=disable"
        );
        assert_eq!(database_url("postgres://h:1", "d"), "postgres://h:1/d");
    }
}
