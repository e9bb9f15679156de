//! The library's error type.

/// What can go wrong at a `bus-core` boundary.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A Redis command or connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A PostgreSQL query or connection failed.
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// Applying migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Settings are missing or wrong.
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    /// A reply from Redis did not have the expected shape.
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
    /// Binding or serving the ops HTTP endpoint failed.
    #[error("ops http: {0}")]
    Io(#[from] std::io::Error),
}

/// Is this Redis error the server saying the consumer group (or its stream) does not exist?
pub(crate) fn is_nogroup(e: &redis::RedisError) -> bool {
    e.code() == Some("NOGROUP")
}

/// Is this Redis error the server saying the consumer group already exists?
pub(crate) fn is_busygroup(e: &redis::RedisError) -> bool {
    e.code() == Some("BUSYGROUP")
}
