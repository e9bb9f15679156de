use std::process::ExitCode;

use bus_core::{ServiceInfo, service_main};
use crawler::CrawlerSettings;

fn main() -> ExitCode {
    service_main::<CrawlerSettings, _, _>(
        ServiceInfo {
            name: "crawler",
            about: "Produces token, transaction and crawler-event entries in the seed-000 \
                    format (synthetic or replayed) and obeys START_CRAWLING, PAUSE, STOP and \
                    CRAWL_TOKEN on channel:service:{SERVICE_ID}:commands.",
        },
        crawler::run,
    )
}
