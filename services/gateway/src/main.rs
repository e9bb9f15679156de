//! The gateway binary: settings from the environment (see `--help`), then [`gateway::run`].

use std::process::ExitCode;

use bus_core::{ServiceInfo, service_main};
use gateway::GatewaySettings;

fn main() -> ExitCode {
    service_main::<GatewaySettings, _, _>(
        ServiceInfo {
            name: "gateway",
            about: "HTTP gateway of the commerce pipeline: POST /api/events (events.raw), \
                    /api/items (raw_items) and /api/predictions (predictions.requests), the \
                    stream inspection API (/api/streams/...), its OpenAPI document \
                    (/api/openapi.json) and page (/api/docs); /metrics, /healthz, /readyz on \
                    the same listener.",
        },
        gateway::run,
    )
}
