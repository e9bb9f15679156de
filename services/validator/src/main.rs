//! The validator binary: settings from the environment (see `--help`), then [`validator::run`].

use std::process::ExitCode;

use bus_core::{ServiceInfo, service_main};
use validator::ValidatorSettings;

fn main() -> ExitCode {
    service_main::<ValidatorSettings, _, _>(
        ServiceInfo {
            name: "validator",
            about: "Reads raw_items (group validator_workers), checks phone, bank account, email \
                    and name (seed 003 error codes), and records every item with its verdict in \
                    PostgreSQL, with per-consumer statistics and per-minute metrics.",
        },
        |common, settings, shutdown| async move { validator::run(common, settings, shutdown).await },
    )
}
