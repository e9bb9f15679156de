//! Layered, typed settings: built-in defaults → optional TOML file (`CONFIG_FILE`) → environment.
//!
//! Environment variables are the upper-case field names; a nested section is joined with `__`
//! (`WORKER__BATCH_SIZE`). `REDIS_URL` and `DATABASE_URL` keep their conventional names.
//! A wrong value fails start-up with a message naming the variable.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Settings could not be loaded or are inconsistent.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A source could not be read or a value has the wrong type.
    #[error(
        "invalid configuration: {0} (environment variables are the upper-case keys, sections joined with `__`, e.g. WORKER__BATCH_SIZE)"
    )]
    Load(#[from] config::ConfigError),
    /// A value has the right type but is unusable.
    #[error("invalid configuration: {var}: {reason}")]
    Invalid {
        /// The environment variable that holds the bad value.
        var: String,
        /// Why it is unusable.
        reason: String,
    },
}

impl SettingsError {
    /// An unusable value, naming its variable.
    pub fn invalid(var: &str, reason: impl Into<String>) -> Self {
        SettingsError::Invalid {
            var: var.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Loads `T` from defaults (its `Default`), then `CONFIG_FILE` if set, then the environment.
///
/// The defaults are the bottom layer, field by field: setting one variable of a section
/// (`WORKER__BLOCK_MS`) keeps the service's own defaults for the rest of that section rather
/// than rebuilding the section from the section type's `Default`.
pub fn load<T: DeserializeOwned + Serialize + Default>() -> Result<T, SettingsError> {
    layered(
        std::env::var("CONFIG_FILE").ok(),
        config::Environment::default(),
    )
}

/// Defaults, then the optional TOML file, then `env` (sections joined with `__`).
fn layered<T: DeserializeOwned + Serialize + Default>(
    file: Option<String>,
    env: config::Environment,
) -> Result<T, SettingsError> {
    let mut builder =
        config::Config::builder().add_source(config::Config::try_from(&T::default())?);
    if let Some(path) = file {
        builder = builder.add_source(config::File::with_name(&path).required(true));
    }
    let cfg = builder.add_source(env.separator("__")).build()?;
    Ok(cfg.try_deserialize()?)
}

/// What a README's settings documentation gets wrong about `T`: every variable `T` reads must
/// be named in backquotes, and a table row of its own (`` | `NAME` | default | … ``) must show
/// the default the code uses (`unset` for none). Empty when the README is true; services
/// assert this in a test so their README cannot drift from `--help`.
pub fn readme_problems<T: Serialize + Default>(readme: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, default) in env_vars::<T>() {
        if !readme.contains(&format!("`{name}`")) {
            problems.push(format!("{name} is not documented"));
            continue;
        }
        let row = format!("| `{name}` |");
        if let Some(line) = readme.lines().find(|l| l.starts_with(&row)) {
            let shown = line[row.len()..].split('|').next().unwrap_or("").trim();
            let expected = if default.is_empty() {
                "unset"
            } else {
                &default
            };
            if shown.trim_matches('`') != expected {
                problems.push(format!(
                    "{name}: the README shows {shown}, the code uses {expected}"
                ));
            }
        }
    }
    problems
}

/// The environment variables a settings type reads, derived from its serialised defaults so
/// the list can never drift from the code. Sections become `SECTION__FIELD`.
pub fn env_vars<T: Serialize + Default>() -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(T::default()) {
        flatten("", &map, &mut out);
    }
    out
}

fn flatten(
    prefix: &str,
    map: &serde_json::Map<String, serde_json::Value>,
    out: &mut Vec<(String, String)>,
) {
    for (key, value) in map {
        let name = format!("{prefix}{}", key.to_uppercase());
        match value {
            serde_json::Value::Object(inner) => flatten(&format!("{name}__"), inner, out),
            serde_json::Value::Null => out.push((name, String::new())),
            serde_json::Value::String(s) => out.push((name, s.clone())),
            other => out.push((name, other.to_string())),
        }
    }
}

/// Renders `env_vars::<T>()` as the `VARIABLE (default: …)` lines used in `--help`.
pub fn env_help<T: Serialize + Default>() -> String {
    let vars = env_vars::<T>();
    let width = vars.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    vars.iter()
        .map(|(name, default)| {
            let default = if default.is_empty() { "unset" } else { default };
            format!("  {name:width$}  (default: {default})\n")
        })
        .collect()
}

/// A connection URL that may carry a password: shown redacted in logs and `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(url.into())
    }
    /// The URL with its password, for opening connections only.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Replaces the password of `scheme://user:password@host…` with `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings every service shares. Read from the top level of the environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CommonSettings {
    /// `REDIS_URL`: the Redis server (`redis://[:password@]host:port/db`).
    pub redis_url: SecretUrl,
    /// `REDIS_NAMESPACE`: tenant; when set every key and channel is prefixed `tenant:{ns}:`.
    pub redis_namespace: Option<String>,
    /// `DATABASE_URL`: PostgreSQL, for services that write to it.
    pub database_url: Option<SecretUrl>,
    /// `DATABASE_MAX_CONNECTIONS`: size of the PostgreSQL pool.
    pub database_max_connections: u32,
    /// `OPS_ADDR`: where `/metrics`, `/healthz` and `/readyz` listen.
    pub ops_addr: String,
    /// `LOG_FORMAT`: `text` or `json`.
    pub log_format: LogFormat,
    /// `CONSUMER_NAME`: this replica's consumer name; default is the host name (unique per
    /// container), so a restarted replica re-reads its own pending entries.
    pub consumer_name: Option<String>,
    /// `CONSUMER_SUFFIX`: appended to the consumer name (`<name>-<suffix>`), for several
    /// replicas on one host.
    pub consumer_suffix: Option<String>,
    /// `SHUTDOWN_TIMEOUT_MS`: how long in-flight work may take to finish after SIGTERM.
    pub shutdown_timeout_ms: u64,
}

impl Default for CommonSettings {
    fn default() -> Self {
        CommonSettings {
            redis_url: SecretUrl::new("redis://127.0.0.1:6379/"),
            redis_namespace: None,
            database_url: None,
            database_max_connections: 10,
            ops_addr: "0.0.0.0:9100".into(),
            log_format: LogFormat::Text,
            consumer_name: None,
            consumer_suffix: None,
            shutdown_timeout_ms: 10_000,
        }
    }
}

impl CommonSettings {
    /// The consumer name this replica uses in every group it joins.
    pub fn consumer_name(&self) -> String {
        let base = match &self.consumer_name {
            Some(name) if !name.is_empty() => name.clone(),
            _ => gethostname::gethostname().to_string_lossy().into_owned(),
        };
        match &self.consumer_suffix {
            Some(suffix) if !suffix.is_empty() => format!("{base}-{suffix}"),
            _ => base,
        }
    }

    /// The PostgreSQL URL, or an error naming `DATABASE_URL` when it is not set.
    pub fn require_database_url(&self) -> Result<&SecretUrl, SettingsError> {
        self.database_url
            .as_ref()
            .ok_or_else(|| SettingsError::invalid("DATABASE_URL", "is required by this service"))
    }

    /// The drain deadline after a shutdown signal.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

/// Consumer-group worker knobs (section `WORKER__`). Each has a named default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkerSettings {
    /// `WORKER__BATCH_SIZE`: entries per XREADGROUP (COUNT) and per handler call.
    pub batch_size: usize,
    /// `WORKER__BLOCK_MS`: how long one XREADGROUP waits for new entries.
    pub block_ms: u64,
    /// `WORKER__MAX_IN_FLIGHT`: batches read but not yet acknowledged (read-ahead bound).
    pub max_in_flight: usize,
    /// `WORKER__CLAIM_INTERVAL_MS`: how often to look for entries abandoned by dead consumers.
    pub claim_interval_ms: u64,
    /// `WORKER__CLAIM_MIN_IDLE_MS`: an entry pending this long with another consumer is taken over.
    pub claim_min_idle_ms: u64,
    /// `WORKER__MAX_DELIVERIES`: deliveries after which a failing entry is dead-lettered.
    pub max_deliveries: u64,
    /// `WORKER__RETRY_BASE_MS`: first backoff after a transient failure (doubles each time).
    pub retry_base_ms: u64,
    /// `WORKER__RETRY_MAX_MS`: longest backoff between retries and reconnects.
    pub retry_max_ms: u64,
    /// `WORKER__GROUP_START_ID`: where a (re)created group starts; `0` replays the stream
    /// (safe: handlers are idempotent), `$` takes only new entries.
    pub group_start_id: String,
    /// `WORKER__IDLE_CONSUMER_TIMEOUT_MS`: consumers idle this long with nothing pending are
    /// removed from the group; `0` disables the clean-up.
    pub idle_consumer_timeout_ms: u64,
    /// `WORKER__MONITOR_INTERVAL_MS`: how often lag, pending and stream length are sampled.
    pub monitor_interval_ms: u64,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            batch_size: 100,
            block_ms: 2_000,
            max_in_flight: 4,
            claim_interval_ms: 5_000,
            claim_min_idle_ms: 30_000,
            max_deliveries: 5,
            retry_base_ms: 250,
            retry_max_ms: 30_000,
            group_start_id: "0".into(),
            idle_consumer_timeout_ms: 3_600_000,
            monitor_interval_ms: 5_000,
        }
    }
}

impl WorkerSettings {
    /// Checks ranges, naming the variable of the first bad value.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.batch_size == 0 {
            return Err(SettingsError::invalid(
                "WORKER__BATCH_SIZE",
                "must be at least 1",
            ));
        }
        if self.max_in_flight == 0 {
            return Err(SettingsError::invalid(
                "WORKER__MAX_IN_FLIGHT",
                "must be at least 1",
            ));
        }
        if self.max_deliveries == 0 {
            return Err(SettingsError::invalid(
                "WORKER__MAX_DELIVERIES",
                "must be at least 1",
            ));
        }
        if self.retry_base_ms == 0 || self.retry_max_ms < self.retry_base_ms {
            return Err(SettingsError::invalid(
                "WORKER__RETRY_BASE_MS",
                "must be positive and not above WORKER__RETRY_MAX_MS",
            ));
        }
        if self.group_start_id != "$" && self.group_start_id.parse::<crate::EntryId>().is_err() {
            return Err(SettingsError::invalid(
                "WORKER__GROUP_START_ID",
                "must be `0`, `$` or a stream id",
            ));
        }
        Ok(())
    }
}

/// How a producer keeps its streams bounded (section `PRODUCER__`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProducerSettings {
    /// `PRODUCER__MAXLEN`: approximate number of entries each stream keeps; `0` keeps all.
    pub maxlen: u64,
    /// `PRODUCER__TRIM`: `lag-aware` (never trims entries a group has not acknowledged),
    /// `on-add` (`XADD … MAXLEN ~`, as the original producers do) or `none`.
    pub trim: TrimMode,
    /// `PRODUCER__HARD_MAX_LEN`: with `lag-aware`, the length at which trimming proceeds even
    /// over unacknowledged entries (counted and logged); `0` means never.
    pub hard_max_len: u64,
    /// `PRODUCER__TRIM_INTERVAL_MS`: how often the lag-aware trim runs.
    pub trim_interval_ms: u64,
    /// `PRODUCER__HIGH_WATER_LAG`: the producer waits while a group lags more than this many
    /// entries; `0` disables the back-off.
    pub high_water_lag: u64,
    /// `PRODUCER__PIPELINE`: entries per pipelined XADD round trip.
    pub pipeline: usize,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        ProducerSettings {
            maxlen: 10_000,
            trim: TrimMode::LagAware,
            hard_max_len: 0,
            trim_interval_ms: 1_000,
            high_water_lag: 0,
            pipeline: 100,
        }
    }
}

/// Trimming strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrimMode {
    /// Periodic `XTRIM` that never removes entries some group still needs.
    LagAware,
    /// `MAXLEN ~` on every `XADD`, regardless of consumers.
    OnAdd,
    /// No trimming.
    None,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Serialize, Deserialize)]
    #[serde(default)]
    struct Service {
        name: String,
        worker: WorkerSettings,
    }

    impl Default for Service {
        fn default() -> Self {
            Service {
                name: "svc".into(),
                worker: WorkerSettings {
                    batch_size: 7,
                    claim_min_idle_ms: 2_000,
                    ..WorkerSettings::default()
                },
            }
        }
    }

    #[test]
    fn one_variable_of_a_section_keeps_the_services_defaults_for_the_rest() {
        let vars = [("WORKER__BLOCK_MS", "200"), ("NAME", "other")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let env = config::Environment::default().source(Some(vars.into_iter().collect()));
        let loaded: Service = layered(None, env).unwrap();
        assert_eq!(loaded.name, "other");
        assert_eq!(loaded.worker.block_ms, 200);
        assert_eq!(
            loaded.worker.batch_size, 7,
            "the service's default, not the section's"
        );
        assert_eq!(loaded.worker.claim_min_idle_ms, 2_000);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact_url("redis://:pw@r:6379/"), "redis://:***@r:6379/");
        assert_eq!(redact_url("redis://r:6379/"), "redis://r:6379/");
        assert!(!format!("{:?}", SecretUrl::new("redis://:pw@r/")).contains("pw"));
    }

    #[test]
    fn env_vars_are_derived_from_the_defaults() {
        #[derive(Serialize, Default)]
        struct S {
            top: u32,
            worker: WorkerSettings,
        }
        let vars = env_vars::<S>();
        assert!(vars.contains(&("TOP".into(), "0".into())));
        assert!(vars.contains(&("WORKER__BATCH_SIZE".into(), "100".into())));
    }

    #[test]
    fn worker_settings_validation_names_the_variable() {
        let bad = WorkerSettings {
            batch_size: 0,
            ..Default::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("WORKER__BATCH_SIZE")
        );
        assert!(WorkerSettings::default().validate().is_ok());
    }
}
