//! crawler: the producer side of seed 000.
//!
//! Writes `TOKEN_CREATED`/`TOKEN_UPDATED` to `stream:tokens`, `TRANSACTION_CREATED` to
//! `stream:transactions` and `CRAWLER_ONLINE`/`CRAWLER_OFFLINE`/`HEARTBEAT`/`CRAWLER_ERROR`
//! to `stream:crawler-events`, in the seed's exact format, from a seeded synthetic generator
//! or a replay file; obeys `START_CRAWLING`, `PAUSE`, `STOP` and `CRAWL_TOKEN` on
//! `channel:service:{SERVICE_ID}:commands`.

mod control;
mod metrics;
mod produce;
pub mod replay;
mod rng;
mod settings;
pub mod synthetic;

use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{Bus, CommonSettings, Received, Runner};
use ingest::messages::{CrawlerEventKind, commands_channel};

pub use control::{CrawlState, Crawler};
pub use metrics::CrawlerMetrics;
pub use produce::Source;
pub use rng::SplitMix64;
pub use settings::CrawlerSettings;

/// Runs the crawler until `shutdown`.
pub async fn run(
    common: CommonSettings,
    settings: CrawlerSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    settings.validate()?;
    let source = match &settings.replay_file {
        Some(path) => Source::Replay(replay::Replay::open(path, &settings.service_id)?),
        None => Source::Synthetic(synthetic::Generator::new(
            settings.seed,
            &settings.service_id,
            &settings.chain,
            settings.token_ratio,
            settings.update_ratio,
        )),
    };
    let bus = Bus::connect(&common).await?;
    let metrics = CrawlerMetrics::register(&bus.metrics);
    let producer = bus.producer(settings.producer.clone());
    let ops = bus_core::serve_ops(&common.ops_addr, bus.ops_router(), shutdown.clone()).await?;
    let channel = commands_channel(&settings.service_id);
    let crawler = Crawler::new(settings, producer.clone(), metrics);
    crawler.event(CrawlerEventKind::Online, None).await?;

    let commands = {
        let crawler = crawler.clone();
        move |message: Received| {
            let crawler = crawler.clone();
            async move { crawler.on_command(message).await }
        }
    };
    let mut runner = Runner::new(shutdown.clone());
    runner
        .spawn(
            bus.subscriber()
                .channel(&channel, commands)
                .run(shutdown.clone()),
        )
        .spawn(crawler.clone().produce(source, shutdown.clone()))
        .spawn(crawler.clone().heartbeats(shutdown.clone()))
        .spawn({
            let shutdown = shutdown.clone();
            async move {
                producer.run_trimmer(shutdown).await;
                Ok(())
            }
        });
    let result = runner.wait().await;
    if let Err(e) = crawler.event(CrawlerEventKind::Offline, None).await {
        tracing::warn!(error = %e, "could not report CRAWLER_OFFLINE");
    }
    let _ = ops.await;
    Ok(result?)
}
