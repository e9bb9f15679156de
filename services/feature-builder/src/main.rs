//! The feature-builder binary: settings from the environment (see `--help`), then
//! [`feature_builder::run`].

use std::process::ExitCode;

use bus_core::{ServiceInfo, service_main};
use feature_builder::FeatureBuilderSettings;

fn main() -> ExitCode {
    service_main::<FeatureBuilderSettings, _, _>(
        ServiceInfo {
            name: "feature-builder",
            about: "Reads events.normalized (group event-processors), keeps per-profile features \
                    (event and order counts, total spent, first and last seen, events by type) in \
                    PostgreSQL, counting each event_id once, and asks predictions.requests for a \
                    fresh prediction of every profile that made a purchase.",
        },
        |common, settings, shutdown| async move {
            feature_builder::run(common, settings, shutdown).await
        },
    )
}
