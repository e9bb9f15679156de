#![doc = include_str!("../README.md")]

pub mod auth;
mod backoff;
mod connection;
mod consumer;
mod entry;
mod error;
mod health;
mod lease;
mod message;
mod metrics;
mod ops;
mod postgres;
mod producer;
mod pubsub;
mod runner;
mod service;
pub mod settings;
mod shutdown;
pub mod telemetry;
mod trim;

pub use backoff::{Backoff, sleep_or_shutdown};
pub use connection::Redis;
pub use consumer::{
    Batch, Consumer, ConsumerConfig, DeadLetter, Delivery, GroupStatus, Handler, HandlerError,
    Outcome, dead_letter_stream, group_status,
};
pub use entry::{EntryId, Fields, InvalidEntryId, RawEntry};
pub use error::BusError;
pub use health::{Check, Health, LoopFlag};
pub use lease::{FenceError, Held, Lease, LeaseLabels, LeaseMetrics, LeaseSettings, fence};
pub use message::{DecodeError, StreamMessage, json_kind, required, required_json};
pub use metrics::Metrics;
pub use ops::{router as ops_router, serve as serve_ops, serve_on as serve_ops_on};
pub use postgres::{
    CopyRows, MIGRATOR, connect as connect_postgres, connect_and_migrate, copy_in, inbox,
    is_unique_violation,
};
pub use producer::{Prepared, Producer};
pub use pubsub::{MessageHandler, Publisher, Received, Subscriber, SubscriberError};
pub use runner::{Bus, Runner};
pub use service::{ServiceInfo, help as service_help, service_main};
pub use settings::{
    CommonSettings, LogFormat, ProducerSettings, SecretUrl, SettingsError, TrimMode, WorkerSettings,
};
pub use shutdown::on_signals;
pub use trim::{TrimReport, safe_point, trim_lag_aware};

/// Metric types, for services registering their own metrics.
pub mod prometheus {
    pub use crate::metrics::{
        ChannelLabels, FailureLabels, GroupLabels, RoleLabels, StreamLabels, TrimLabels,
    };
    pub use prometheus_client::encoding::EncodeLabelSet;
    pub use prometheus_client::metrics::{
        counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
    };
}

/// Re-exported so services use the same versions.
pub use {
    anyhow, axum, chrono, prometheus_client, redis, serde, serde_json, sqlx, tokio, tokio_util,
    tracing,
};
