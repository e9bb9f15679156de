use std::process::ExitCode;

use bus_core::{ServiceInfo, service_main};
use ingest::IngestSettings;

fn main() -> ExitCode {
    service_main::<IngestSettings, _, _>(
        ServiceInfo {
            name: "ingest",
            about: "Reads stream:tokens, stream:transactions and stream:crawler-events (group \
                    server-group) into PostgreSQL, effectively once, and publishes \
                    channel:token:created for every new token.",
        },
        ingest::run,
    )
}
