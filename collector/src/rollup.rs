//! The hourly top sources (`top_sources_per_hour`, migration 004): for each settled hour, the
//! sources with the most bytes per tenant, taken from `source_bytes_per_hour`. Overviews over many
//! hours sum these few rows instead of every source of every hour. A materialized view cannot do
//! it (it sees one inserted block, not the hour), so the collector does, now and then.

use crate::store::StoreError;
use clickhouse::Client;

/// Sources kept per hour and tenant.
pub const TOP_SOURCES: u64 = 100;
/// An hour is summarized once this long has passed since it began (late events have arrived).
pub const SETTLE_SECS: i64 = 2 * 3600;
/// Hours summarized in one pass at most, newest first (the first pass after an upgrade catches
/// up over several passes).
pub const MAX_HOURS_PER_PASS: u64 = 200;

/// The start of the newest hour that may be summarized at `now_secs`, plus one hour: hours
/// strictly before the returned time are settled.
pub fn settled_before(now_secs: i64) -> i64 {
    (now_secs - SETTLE_SECS + 3600).div_euclid(3600) * 3600
}

/// Settled hours with traffic and no summary yet, newest first.
pub const PENDING_SQL: &str = "SELECT DISTINCT toUInt32(hour) AS h FROM source_bytes_per_hour \
     WHERE hour < toDateTime(?) AND hour NOT IN (SELECT DISTINCT hour FROM top_sources_per_hour) \
     ORDER BY h DESC LIMIT ?";

/// The summary of one hour: its top sources per tenant.
pub const SUMMARIZE_SQL: &str = "INSERT INTO top_sources_per_hour \
     SELECT hour, organization_id, source_ip, sum(flows) AS flows, sum(packets) AS packets, \
     sum(bytes) AS bytes FROM source_bytes_per_hour WHERE hour = toDateTime(?) \
     GROUP BY hour, organization_id, source_ip ORDER BY bytes DESC LIMIT ? BY organization_id";

fn ch(context: String) -> impl FnOnce(clickhouse::error::Error) -> StoreError {
    move |source| StoreError::ClickHouse { context, source }
}

/// Summarize the pending hours; returns the hours written (seconds since 1970).
pub async fn summarize(db: &Client, now_secs: i64) -> Result<Vec<u32>, StoreError> {
    let pending: Vec<u32> = db
        .query(PENDING_SQL)
        .bind(settled_before(now_secs))
        .bind(MAX_HOURS_PER_PASS)
        .fetch_all()
        .await
        .map_err(ch("listing hours to summarize".into()))?;
    for hour in &pending {
        db.query(SUMMARIZE_SQL)
            .bind(*hour)
            .bind(TOP_SOURCES)
            .execute()
            .await
            .map_err(ch(format!("summarizing the top sources of hour {hour}")))?;
    }
    Ok(pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_settle_two_hours_after_they_begin() {
        let h = 1_700_000_000 / 3600 * 3600;
        // At h + 2h the hour h has settled, h + 1h has not.
        assert_eq!(settled_before(h + 2 * 3600), h + 3600);
        assert_eq!(settled_before(h + 2 * 3600 - 1), h);
        assert_eq!(settled_before(h + 3 * 3600 - 1), h + 3600);
    }

    #[test]
    fn statements_bind_every_value() {
        assert_eq!(PENDING_SQL.matches('?').count(), 2);
        assert_eq!(SUMMARIZE_SQL.matches('?').count(), 2);
    }
}
