//! busctl: the operator's tool for the pipeline. The seeds' producer, monitor and `redis-cli`
//! recipes as first-class commands. The logic lives here (the binary only parses and prints),
//! so tests call it directly.

pub mod monitor;
pub mod produce;
pub mod recipes;
pub mod reply;
pub mod table;

use std::io::Write;
use std::time::Duration;

use bus_core::sqlx::PgPool;
use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{
    MIGRATOR, Producer, ProducerSettings, Redis, SecretUrl, TrimMode, connect_postgres,
};
use clap::{Parser, Subcommand};

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "busctl",
    version,
    about = "Operate the pipeline's Redis streams and PostgreSQL tables"
)]
pub struct Cli {
    /// Redis server.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379/",
        global = true
    )]
    pub redis_url: String,
    /// Tenant namespace: every stream name gets the prefix `tenant:{ns}:`.
    #[arg(long, env = "REDIS_NAMESPACE", global = true)]
    pub namespace: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Append N synthetic seed-format items, DELAY seconds apart (the seed's `produce 50 0.5`).
    Produce {
        /// How many items.
        count: u64,
        /// Seconds between items (0 sends them pipelined).
        #[arg(default_value_t = 0.0)]
        delay: f64,
        /// Target stream.
        #[arg(long, default_value = "raw_items")]
        stream: String,
    },
    /// Append RATE synthetic items per second until Ctrl-C.
    Continuous {
        /// Items per second.
        rate: f64,
        /// Target stream.
        #[arg(long, default_value = "raw_items")]
        stream: String,
    },
    /// Stream length, first and last entry, consumer groups.
    Info {
        /// The stream.
        #[arg(long, default_value = "raw_items")]
        stream: String,
    },
    /// The monitoring report (stream, groups, database stats, consumers, activity, errors).
    Monitor {
        /// The stream.
        #[arg(long, default_value = "raw_items")]
        stream: String,
        /// PostgreSQL for the database sections.
        #[arg(long, env = "DATABASE_URL")]
        database_url: Option<String>,
        /// Refresh every N seconds until Ctrl-C (once when absent).
        #[arg(long)]
        every: Option<u64>,
    },
    /// Apply the system's migrations to DATABASE_URL.
    Migrate {
        /// PostgreSQL.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
    },
    /// A group's pending entries (`XPENDING`).
    Pending {
        /// The stream.
        stream: String,
        /// The consumer group.
        group: String,
        /// Entries to list individually.
        #[arg(long, default_value_t = 20)]
        count: u64,
    },
    /// A stream's consumer groups (`XINFO GROUPS`).
    Groups {
        /// The stream.
        stream: String,
    },
    /// A group's consumers (`XINFO CONSUMERS`).
    Consumers {
        /// The stream.
        stream: String,
        /// The consumer group.
        group: String,
    },
    /// The first entries of a stream (`XRANGE`).
    Range {
        /// The stream.
        stream: String,
        /// How many entries.
        #[arg(long, default_value_t = 10)]
        count: u64,
    },
    /// Trim a stream to about MAXLEN entries, never past unacknowledged ones unless --force.
    Trim {
        /// The stream.
        stream: String,
        /// Entries to keep.
        maxlen: u64,
        /// Plain `XTRIM MAXLEN ~`, even over entries groups have not acknowledged.
        #[arg(long)]
        force: bool,
    },
    /// List the dead letters of STREAM (`STREAM:dlq`) with their reasons.
    Dlq {
        /// The stream (or its `:dlq` stream).
        stream: String,
        /// How many to list.
        #[arg(long, default_value_t = 50)]
        count: u64,
    },
    /// Re-append STREAM's dead letters to it (without the dlq_* fields) and delete them.
    ReplayDlq {
        /// The stream (or its `:dlq` stream).
        stream: String,
        /// At most this many.
        #[arg(long, default_value_t = 10_000)]
        count: u64,
    },
}

/// Connects to Redis as `cli` says.
pub async fn connect(cli: &Cli) -> anyhow::Result<Redis> {
    let url = SecretUrl::new(&cli.redis_url);
    Ok(Redis::connect(&url, cli.namespace.as_deref()).await?)
}

/// A producer that only appends (trimming is the services' job).
pub fn producer(redis: &Redis) -> Producer {
    let settings = ProducerSettings {
        trim: TrimMode::None,
        maxlen: 0,
        ..ProducerSettings::default()
    };
    Producer::new(redis.clone(), std::sync::Arc::default(), settings)
}

/// Opens a small pool.
pub async fn database(url: &str) -> anyhow::Result<PgPool> {
    Ok(connect_postgres(&SecretUrl::new(url), 2).await?)
}

/// Applies every migration; returns the versions now applied.
pub async fn migrate(url: &str) -> anyhow::Result<String> {
    let pool = database(url).await?;
    MIGRATOR.run(&pool).await?;
    let applied: Vec<(i64, String)> = bus_core::sqlx::query_as(
        "SELECT version, description FROM _sqlx_migrations ORDER BY version",
    )
    .fetch_all(&pool)
    .await?;
    let rows: Vec<Vec<String>> = applied
        .into_iter()
        .map(|(v, d)| vec![v.to_string(), d])
        .collect();
    Ok(format!(
        "MIGRATIONS applied\n{}",
        table::render(&["VERSION", "DESCRIPTION"], &rows)
    ))
}

/// Runs a command, writing its output to `out`; `shutdown` ends the long-running ones.
pub async fn run(cli: Cli, out: &mut dyn Write, shutdown: CancellationToken) -> anyhow::Result<()> {
    if let Command::Migrate { database_url } = &cli.command {
        return Ok(write!(out, "{}", migrate(database_url).await?)?);
    }
    let redis = connect(&cli).await?;
    match cli.command {
        Command::Produce {
            count,
            delay,
            stream,
        } => {
            anyhow::ensure!(
                delay >= 0.0 && delay.is_finite(),
                "DELAY must be 0 or more seconds"
            );
            let step = (count / 10).max(if delay > 0.0 { 1 } else { 1_000 });
            let mut report = |sent: u64, total: u64| {
                if sent == total || sent.is_multiple_of(step) {
                    let _ = writeln!(out, "sent {sent}/{total}");
                }
            };
            let ids = produce::produce(
                &producer(&redis),
                &stream,
                count,
                Duration::from_secs_f64(delay),
                &mut report,
            )
            .await?;
            let (first, last) = (ids.first(), ids.last());
            if let (Some(first), Some(last)) = (first, last) {
                writeln!(
                    out,
                    "produced {} items to {} ({first} … {last})",
                    ids.len(),
                    redis.key(&stream)
                )?;
            }
        }
        Command::Continuous { rate, stream } => {
            let mut report = |sent: u64, elapsed: Duration| {
                if sent.is_multiple_of((rate.ceil() as u64).max(1)) {
                    let _ = writeln!(out, "sent {sent} in {:.0}s", elapsed.as_secs_f64());
                }
            };
            let sent =
                produce::continuous(&producer(&redis), &stream, rate, &shutdown, &mut report)
                    .await?;
            writeln!(out, "stopped after {sent} items")?;
        }
        Command::Info { stream } => {
            let key = redis.key(&stream);
            write!(out, "{}", monitor::stream_info(&redis, &key).await?)?;
            write!(out, "{}", recipes::groups(&redis, &stream).await?)?;
        }
        Command::Monitor {
            stream,
            database_url,
            every,
        } => {
            let pool = match &database_url {
                Some(url) => Some(database(url).await?),
                None => None,
            };
            loop {
                let report = monitor::report(&redis, pool.as_ref(), &stream).await?;
                if every.is_some() {
                    write!(out, "\x1b[2J\x1b[H")?;
                }
                write!(out, "{report}")?;
                out.flush()?;
                let Some(seconds) = every else { break };
                if !bus_core::sleep_or_shutdown(Duration::from_secs(seconds.max(1)), &shutdown)
                    .await
                {
                    break;
                }
            }
        }
        Command::Migrate { .. } => {}
        Command::Pending {
            stream,
            group,
            count,
        } => {
            write!(
                out,
                "{}",
                recipes::pending(&redis, &stream, &group, count).await?
            )?;
        }
        Command::Groups { stream } => write!(out, "{}", recipes::groups(&redis, &stream).await?)?,
        Command::Consumers { stream, group } => {
            write!(
                out,
                "{}",
                recipes::consumers(&redis, &stream, &group).await?
            )?;
        }
        Command::Range { stream, count } => {
            write!(out, "{}", recipes::range(&redis, &stream, count).await?)?
        }
        Command::Trim {
            stream,
            maxlen,
            force,
        } => {
            write!(
                out,
                "{}",
                recipes::trim(&redis, &stream, maxlen, force).await?
            )?;
        }
        Command::Dlq { stream, count } => {
            write!(out, "{}", recipes::dlq(&redis, &stream, count).await?)?
        }
        Command::ReplayDlq { stream, count } => {
            write!(
                out,
                "{}",
                recipes::replay_dlq(&redis, &stream, count).await?
            )?;
        }
    }
    Ok(())
}
