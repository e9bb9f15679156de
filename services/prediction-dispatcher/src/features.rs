//! What every model sees of a profile: its stored features, or those of a customer with no
//! orders when the feature builder has counted nothing for it yet.

use std::collections::HashMap;

use bus_core::chrono::{DateTime, Utc};
use bus_core::serde_json::{Map, Value};
use bus_core::sqlx::{self, PgConnection};
use serde::Serialize;
use uuid::Uuid;

/// A profile's features, as sent to an external model (`features` of its request).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Features {
    /// Events counted.
    pub event_count: i64,
    /// Purchases counted.
    pub order_count: i64,
    /// What the purchases were worth.
    pub total_spent: f64,
    /// The earliest event (the profile's creation when nothing was counted yet).
    pub first_seen_at: DateTime<Utc>,
    /// The latest event (the profile's creation when nothing was counted yet).
    pub last_seen_at: DateTime<Utc>,
    /// The latest purchase.
    pub last_order_at: Option<DateTime<Utc>>,
    /// Events per type.
    pub events_by_type: Map<String, Value>,
}

impl Features {
    /// A profile the feature builder has not counted anything for: no events, no orders,
    /// first and last seen when it was created.
    pub fn none_since(created_at: DateTime<Utc>) -> Self {
        Features {
            event_count: 0,
            order_count: 0,
            total_spent: 0.0,
            first_seen_at: created_at,
            last_seen_at: created_at,
            last_order_at: None,
            events_by_type: Map::new(),
        }
    }
}

/// A profile to predict for: its brand and features.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// The brand it belongs to.
    pub brand_id: String,
    /// Its features.
    pub features: Features,
}

type Row = (
    Uuid,
    String,
    DateTime<Utc>,
    Option<i32>,
    Option<i32>,
    Option<f64>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<Value>,
);

/// Loads the profiles `ids` (which must be resolved survivors) with their features.
pub async fn load(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Profile>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT p.profile_id, p.brand_id, p.created_at, f.event_count, f.order_count,
                f.total_spent::float8, f.first_seen_at, f.last_seen_at, f.last_order_at,
                f.events_by_type
         FROM profiles p
         LEFT JOIN profile_features f ON f.profile_id = p.profile_id
         WHERE p.profile_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(profile).collect())
}

fn profile(row: Row) -> (Uuid, Profile) {
    let (id, brand_id, created_at, events, orders, spent, first, last, last_order, by_type) = row;
    let features = match (events, first, last) {
        (Some(events), Some(first), Some(last)) => Features {
            event_count: i64::from(events),
            order_count: i64::from(orders.unwrap_or(0)),
            total_spent: spent.unwrap_or(0.0),
            first_seen_at: first,
            last_seen_at: last,
            last_order_at: last_order,
            events_by_type: match by_type {
                Some(Value::Object(map)) => map,
                _ => Map::new(),
            },
        },
        _ => Features::none_since(created_at),
    };
    (id, Profile { brand_id, features })
}
