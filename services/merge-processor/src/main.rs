//! The merge-processor binary: settings from the environment (see `--help`), then
//! [`merge_processor::run`].

use std::process::ExitCode;

use bus_core::{ServiceInfo, service_main};
use merge_processor::MergeSettings;

fn main() -> ExitCode {
    service_main::<MergeSettings, _, _>(
        ServiceInfo {
            name: "merge-processor",
            about: "Reads profiles.merge_requests (group merge-processors) as the single active \
                    instance (a Redis lease with a PostgreSQL fence; other replicas wait as hot \
                    standbys), merges profiles into the oldest one or queues them for manual \
                    review, and requests fresh predictions for merged customers.",
        },
        |common, settings, shutdown| async move {
            merge_processor::run(common, settings, shutdown).await
        },
    )
}
