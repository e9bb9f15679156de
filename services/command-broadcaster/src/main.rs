use std::process::ExitCode;

use bus_core::{ServiceInfo, service_main};
use command_broadcaster::BroadcasterSettings;

fn main() -> ExitCode {
    service_main::<BroadcasterSettings, _, _>(
        ServiceInfo {
            name: "command-broadcaster",
            about: "HTTP API that publishes validated commands on \
                    channel:service:{serviceId}:commands, and a WebSocket relay of \
                    notification channels; /metrics, /healthz, /readyz on the same listener.",
        },
        command_broadcaster::run,
    )
}
