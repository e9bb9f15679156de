//! The ingest knobs a drain run sets, and their values as the service resolves them.

use serde::Serialize;

/// What a drain run changes from the service's defaults (`None` keeps the default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Knobs {
    /// Ingest processes in the consumer group.
    pub replicas: usize,
    /// Entries per batch on both data streams (`TOKENS_BATCH_SIZE`, `TRANSACTIONS_BATCH_SIZE`).
    pub batch: Option<usize>,
    /// Batches read but not yet acknowledged, per stream (`WORKER__MAX_IN_FLIGHT`).
    pub in_flight: Option<usize>,
    /// How a batch is written (`WRITE_METHOD`), when the service has that setting.
    pub method: Option<String>,
}

impl Knobs {
    /// The service defaults with `replicas` processes.
    pub fn defaults(replicas: usize) -> Knobs {
        Knobs {
            replicas,
            ..Knobs::default()
        }
    }

    /// The environment that applies these knobs.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = Vec::new();
        if let Some(batch) = self.batch {
            env.push(("TOKENS_BATCH_SIZE".into(), batch.to_string()));
            env.push(("TRANSACTIONS_BATCH_SIZE".into(), batch.to_string()));
        }
        if let Some(n) = self.in_flight {
            env.push(("WORKER__MAX_IN_FLIGHT".into(), n.to_string()));
        }
        if let Some(method) = &self.method {
            env.push(("WRITE_METHOD".into(), method.clone()));
        }
        env
    }

    /// The values in effect, given the service's documented defaults and any extra settings.
    pub fn resolve(&self, defaults: &[(String, String)], extra: &[(String, String)]) -> Resolved {
        let own = self.env();
        let value = |name: &str| -> String {
            own.iter()
                .chain(extra.iter())
                .chain(defaults.iter())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| "-".into())
        };
        Resolved {
            replicas: self.replicas,
            tokens_batch: value("TOKENS_BATCH_SIZE"),
            transactions_batch: value("TRANSACTIONS_BATCH_SIZE"),
            in_flight: value("WORKER__MAX_IN_FLIGHT"),
            pool: value("DATABASE_MAX_CONNECTIONS"),
            method: value("WRITE_METHOD"),
        }
    }
}

/// Knob values as in effect for a run (text, as the service reads them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    /// Ingest processes.
    pub replicas: usize,
    /// `TOKENS_BATCH_SIZE`.
    pub tokens_batch: String,
    /// `TRANSACTIONS_BATCH_SIZE`.
    pub transactions_batch: String,
    /// `WORKER__MAX_IN_FLIGHT`.
    pub in_flight: String,
    /// `DATABASE_MAX_CONNECTIONS`.
    pub pool: String,
    /// `WRITE_METHOD` (`-` when the service has no such setting).
    pub method: String,
}

impl Resolved {
    /// `tokens/transactions` batch sizes, or one number when they are equal.
    pub fn batch(&self) -> String {
        if self.tokens_batch == self.transactions_batch {
            self.tokens_batch.clone()
        } else {
            format!("{}/{}", self.tokens_batch, self.transactions_batch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_knob_overrides_extra_settings_which_override_the_defaults() {
        let defaults = vec![
            ("TOKENS_BATCH_SIZE".to_owned(), "10".to_owned()),
            ("TRANSACTIONS_BATCH_SIZE".to_owned(), "50".to_owned()),
            ("WORKER__MAX_IN_FLIGHT".to_owned(), "4".to_owned()),
            ("DATABASE_MAX_CONNECTIONS".to_owned(), "10".to_owned()),
        ];
        let extra = vec![("WORKER__MAX_IN_FLIGHT".to_owned(), "2".to_owned())];
        let plain = Knobs::defaults(1).resolve(&defaults, &extra);
        assert_eq!(
            (plain.batch(), plain.in_flight.as_str()),
            ("10/50".into(), "2")
        );
        assert_eq!(plain.method, "-");
        let knobs = Knobs {
            replicas: 2,
            batch: Some(500),
            in_flight: Some(8),
            method: None,
        };
        let set = knobs.resolve(&defaults, &extra);
        assert_eq!((set.batch(), set.in_flight.as_str()), ("500".into(), "8"));
    }
}
