//! Synthetic `raw_items` in the seed 003 format, and the producer loops that send them.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bus_core::tokio_util::sync::CancellationToken;
use bus_core::{EntryId, Fields, Producer};
use serde_json::json;

const NAMES: [&str; 8] = [
    "Nguyen Van A",
    "Tran Thi B",
    "Đỗ Minh",
    "Lê Văn Cường",
    "Phạm Thu",
    "李明",
    "Hoàng Anh",
    "Vũ Lan",
];
const SOURCES: [&str; 3] = ["web_crawler", "api", "import"];

/// Generates seed-format items: about one in five breaks a rule (short phone, short bank
/// account, bad email or a one-character name), like the seed producer's test data.
#[derive(Debug, Clone)]
pub struct SeedItems {
    state: u64,
    batch_id: String,
}

impl Default for SeedItems {
    fn default() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        SeedItems::with_seed(nanos)
    }
}

impl SeedItems {
    /// A reproducible generator.
    pub fn with_seed(seed: u64) -> Self {
        SeedItems {
            state: seed | 1,
            batch_id: format!("batch_{}", chrono::Local::now().format("%Y%m%d_%H%M%S")),
        }
    }

    /// xorshift64*: good enough for test data, and no extra dependency.
    fn next_u64(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + (self.next_u64() % 10) as u8))
            .collect()
    }

    /// The next item's fields: `data`, `source`, `timestamp`, `producer`, `batch_id`.
    pub fn next_fields(&mut self) -> Fields {
        let i = self.next_u64();
        let source = SOURCES[(i % 3) as usize];
        let mut phone = format!("0{}", self.digits(9));
        let mut account = self.digits(8 + (i % 6) as usize);
        let mut email = format!("user{}@example.com", i % 100_000);
        let mut name = NAMES[(i % NAMES.len() as u64) as usize].to_owned();
        match self.next_u64() % 20 {
            0 => phone = self.digits(3),
            1 => account = self.digits(5),
            2 => email = "not-an-email".into(),
            3 => name = "A".into(),
            _ => {}
        }
        let data = json!({
            "phone": phone,
            "bank_account": account,
            "email": email,
            "name": name,
            "source": source,
        });
        [
            ("data", data.to_string()),
            ("source", source.to_owned()),
            (
                "timestamp",
                chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
            ),
            ("producer", "busctl".to_owned()),
            ("batch_id", self.batch_id.clone()),
        ]
        .into_iter()
        .collect()
    }
}

/// Sends `count` items with `delay` between them (all pipelined when `delay` is zero), calling
/// `progress(sent, count)` along the way. Returns the entry IDs.
pub async fn produce(
    producer: &Producer,
    stream: &str,
    count: u64,
    delay: Duration,
    progress: &mut dyn FnMut(u64, u64),
) -> anyhow::Result<Vec<EntryId>> {
    let mut items = SeedItems::default();
    let mut ids = Vec::with_capacity(count as usize);
    if delay.is_zero() {
        let mut left = count;
        while left > 0 {
            let chunk = left.min(1_000);
            let batch: Vec<Fields> = (0..chunk).map(|_| items.next_fields()).collect();
            ids.extend(producer.send_fields(stream, batch).await?);
            left -= chunk;
            progress(ids.len() as u64, count);
        }
        return Ok(ids);
    }
    for n in 1..=count {
        ids.push(producer.send(stream, &items.next_fields()).await?);
        progress(n, count);
        if n < count {
            tokio::time::sleep(delay).await;
        }
    }
    Ok(ids)
}

/// Sends `rate` items per second until `shutdown`; returns how many were sent.
pub async fn continuous(
    producer: &Producer,
    stream: &str,
    rate: f64,
    shutdown: &CancellationToken,
    progress: &mut dyn FnMut(u64, Duration),
) -> anyhow::Result<u64> {
    anyhow::ensure!(
        rate > 0.0 && rate.is_finite(),
        "RATE must be a positive number"
    );
    let mut items = SeedItems::default();
    let period = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let mut ticker = tokio::time::interval(period);
    let mut sent = 0u64;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(sent),
            _ = ticker.tick() => {}
        }
        producer.send(stream, &items.next_fields()).await?;
        sent += 1;
        progress(sent, started.elapsed());
    }
}
