//! The normalizer binary: settings from the environment (see `--help`), then [`normalizer::run`].

use std::process::ExitCode;

use bus_core::{ServiceInfo, service_main};
use normalizer::NormalizerSettings;

fn main() -> ExitCode {
    service_main::<NormalizerSettings, _, _>(
        ServiceInfo {
            name: "normalizer",
            about: "Reads events.raw (group normalizers), normalises the customer identifiers \
                    in each event, matches the event to the brand's profile (creating one, or \
                    raising a merge request when it ties several together), stores it in the \
                    events audit trail and publishes events.normalized and \
                    profiles.merge_requests.",
        },
        |common, settings, shutdown| async move { normalizer::run(common, settings, shutdown).await },
    )
}
