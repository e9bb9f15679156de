//! The common `main` of every service: `--help` generated from the settings types, layered
//! settings, telemetry, signals, and an exit code that says how it ended.

use std::future::Future;
use std::process::ExitCode;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::settings::{self, CommonSettings};

/// Static description of a service binary.
#[derive(Debug, Clone, Copy)]
pub struct ServiceInfo {
    /// Binary and service name (also the tracing service name).
    pub name: &'static str,
    /// One paragraph on what it does, shown by `--help`.
    pub about: &'static str,
}

/// Runs a service: parses `--help`/`--version`, loads [`CommonSettings`] and `S` from the
/// environment, installs telemetry and signal handling, then awaits `run`.
///
/// Exit codes: 0 after a clean shutdown, 1 when the service failed, 2 for bad settings.
pub fn service_main<S, F, Fut>(info: ServiceInfo, run: F) -> ExitCode
where
    S: Serialize + DeserializeOwned + Default,
    F: FnOnce(CommonSettings, S, CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{}", help::<S>(info));
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("{} {}", info.name, env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if let Some(arg) = args.first() {
        eprintln!(
            "{}: unexpected argument {arg:?}; configuration is read from the environment (see --help)",
            info.name
        );
        return ExitCode::from(2);
    }
    let loaded = settings::load::<CommonSettings>().and_then(|c| Ok((c, settings::load::<S>()?)));
    let (common, service) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{}: {e}", info.name);
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{}: cannot start the async runtime: {e}", info.name);
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let _telemetry = crate::telemetry::init(info.name, common.log_format);
        tracing::info!(service = info.name, redis = %common.redis_url, "starting");
        let shutdown = crate::shutdown::on_signals();
        match run(common, service, shutdown).await {
            Ok(()) => {
                tracing::info!(service = info.name, "stopped cleanly");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(service = info.name, error = format!("{e:#}"), "failed");
                ExitCode::FAILURE
            }
        }
    })
}

/// The `--help` text: what the service does and every environment variable with its default.
pub fn help<S: Serialize + Default>(info: ServiceInfo) -> String {
    format!(
        "{name} {version}\n\n{about}\n\nUSAGE:\n    {name} [--help | --version]\n\n\
         Configuration comes from the environment (and an optional TOML file named by CONFIG_FILE).\n\n\
         SERVICE SETTINGS:\n{service}\nCOMMON SETTINGS:\n{common}\n  OTEL_EXPORTER_OTLP_ENDPOINT  (default: unset; export traces with OTLP/HTTP)\n  RUST_LOG  (default: info)\n",
        name = info.name,
        version = env!("CARGO_PKG_VERSION"),
        about = info.about,
        service = settings::env_help::<S>(),
        common = settings::env_help::<CommonSettings>(),
    )
}
