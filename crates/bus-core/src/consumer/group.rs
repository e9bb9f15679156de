//! Consumer-group administration: creation, safe consumer removal, idle-consumer clean-up.

use redis::aio::ConnectionManager;

use super::reply;
use crate::error::{BusError, is_busygroup};

/// Deletes a consumer only if it has nothing pending, atomically: a plain XINFO-then-
/// DELCONSUMER could race a read and orphan the entries it just received.
const DELETE_IF_IDLE: &str = r"
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #pending == 0 then
  return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
end
return -1
";

/// Creates the group (and the stream) from `start_id`; an existing group is fine.
pub(crate) async fn ensure(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &str,
    start_id: &str,
) -> Result<(), BusError> {
    let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(stream)
        .arg(group)
        .arg(start_id)
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Ok(()) => {
            tracing::info!(stream, group, start_id, "created consumer group");
            Ok(())
        }
        Err(e) if is_busygroup(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Removes `consumer` from the group when it has no pending entries. Returns whether it did.
pub(crate) async fn delete_consumer_if_idle(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &str,
    consumer: &str,
) -> Result<bool, BusError> {
    let removed: i64 = redis::cmd("EVAL")
        .arg(DELETE_IF_IDLE)
        .arg(1)
        .arg(stream)
        .arg(group)
        .arg(consumer)
        .query_async(conn)
        .await?;
    Ok(removed >= 0)
}

/// Removes other consumers idle for at least `idle_ms` that hold nothing pending.
pub(crate) async fn remove_idle_consumers(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &str,
    me: &str,
    idle_ms: u64,
) -> Result<usize, BusError> {
    let rows: redis::Value = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stream)
        .arg(group)
        .query_async(conn)
        .await?;
    let mut removed = 0;
    for row in reply::info_rows(rows)? {
        let name = row
            .get("name")
            .map(reply::text)
            .transpose()?
            .unwrap_or_default();
        let idle = row.get("idle").and_then(reply::int).unwrap_or(0);
        let pending = row.get("pending").and_then(reply::int).unwrap_or(1);
        if name != me
            && pending == 0
            && idle >= idle_ms as i64
            && delete_consumer_if_idle(conn, stream, group, &name).await?
        {
            tracing::info!(stream, group, consumer = %name, idle_ms = idle, "removed idle consumer");
            removed += 1;
        }
    }
    Ok(removed)
}
