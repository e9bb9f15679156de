//! The prediction-dispatcher binary: settings from the environment (see `--help`), then
//! [`prediction_dispatcher::run`].

use std::process::ExitCode;

use bus_core::{ServiceInfo, service_main};
use prediction_dispatcher::DispatcherSettings;

fn main() -> ExitCode {
    service_main::<DispatcherSettings, _, _>(
        ServiceInfo {
            name: "prediction-dispatcher",
            about: "Reads predictions.requests (group prediction-processors), predicts churn, \
                    lifetime value and RFM segment from each profile's stored features with the \
                    built-in rfm-v1 model (or an external model over HTTP when MODEL_URL is set), \
                    upserts the results in PostgreSQL and announces them on \
                    predictions.completed and channel:predictions:completed.",
        },
        |common, settings, shutdown| async move {
            prediction_dispatcher::run(common, settings, shutdown).await
        },
    )
}
