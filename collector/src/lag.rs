//! Consumer lag of the collectors' Kafka group: for every partition of the dataset topics, the
//! records the group has still to read (high watermark minus the committed offset).
//!
//! It is measured from outside the group, as Burrow or kafka_exporter do: a consumer that carries
//! the group id but never subscribes asks the broker for the group's committed offsets and each
//! partition's watermarks. So the lag is known while no collector runs, which is when it matters.
//! The collector exports it as `canh_collector_kafka_lag{topic,partition}` every
//! `kafka.lag_interval`; the API measures it when the sensor health page asks.

use crate::config::Settings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LagError {
    #[error("creating the kafka client for group {group}: {source}")]
    Create { group: String, source: rdkafka::error::KafkaError },
    #[error("reading topic metadata: {0}")]
    Metadata(rdkafka::error::KafkaError),
    #[error("reading the watermarks of {topic}/{partition}: {source}")]
    Watermarks { topic: String, partition: i32, source: rdkafka::error::KafkaError },
    #[error("reading the committed offsets of group {group}: {source}")]
    Committed { group: String, source: rdkafka::error::KafkaError },
}

/// The lag of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The next offset the group reads; `None` when the group never committed here.
    pub committed: Option<i64>,
    pub low_watermark: i64,
    pub high_watermark: i64,
    /// Records still to read.
    pub lag: i64,
}

/// Records still to read on a partition holding offsets `low..high`. Without a commit the
/// collector starts at the earliest record (`auto.offset.reset = earliest`), and so it does when
/// its commit points before the earliest record still kept (retention deleted the rest).
pub fn records_behind(committed: Option<i64>, low: i64, high: i64) -> i64 {
    let start = match committed {
        Some(offset) if offset >= low => offset,
        _ => low,
    };
    (high - start).max(0)
}

/// Lag per partition from watermarks `(topic, partition, low, high)` and the group's commits.
pub fn lag_of(
    watermarks: &[(String, i32, i64, i64)],
    committed: &HashMap<(String, i32), i64>,
) -> Vec<PartitionLag> {
    watermarks
        .iter()
        .map(|(topic, partition, low, high)| {
            let done = committed.get(&(topic.clone(), *partition)).copied();
            PartitionLag {
                topic: topic.clone(),
                partition: *partition,
                committed: done,
                low_watermark: *low,
                high_watermark: *high,
                lag: records_behind(done, *low, *high),
            }
        })
        .collect()
}

/// A Kafka client that measures one group's lag on a fixed set of topics. Its calls block: run
/// them on a blocking thread.
pub struct LagProbe {
    consumer: BaseConsumer,
    pub group: String,
    topics: Vec<String>,
    timeout: Duration,
}

impl LagProbe {
    /// The probe of the collectors' group (`kafka.group_id`) on every dataset topic.
    pub fn new(settings: &Settings, timeout: Duration) -> Result<LagProbe, LagError> {
        let kafka = &settings.config.kafka;
        let mut client = crate::consume::client_config(settings);
        // Never subscribes, so it never joins the group and never takes partitions from a collector.
        client.set("group.id", &kafka.group_id).set("enable.auto.commit", "false");
        let consumer: BaseConsumer = client
            .create()
            .map_err(|source| LagError::Create { group: kafka.group_id.clone(), source })?;
        Ok(LagProbe {
            consumer,
            group: kafka.group_id.clone(),
            topics: crate::consume::topics(&kafka.topic_prefix),
            timeout,
        })
    }

    /// The lag of every partition of the topics that exist, ordered by topic and partition.
    pub fn measure(&self) -> Result<Vec<PartitionLag>, LagError> {
        // Serve the client's queued events (errors, logs); nothing is assigned, so no record comes.
        let _ = self.consumer.poll(Duration::ZERO);
        let metadata =
            self.consumer.fetch_metadata(None, self.timeout).map_err(LagError::Metadata)?;
        let mut watermarks = Vec::new();
        let mut list = TopicPartitionList::new();
        for topic in metadata.topics() {
            if !self.topics.iter().any(|t| t == topic.name()) || topic.error().is_some() {
                continue;
            }
            for partition in topic.partitions() {
                let (low, high) = self
                    .consumer
                    .fetch_watermarks(topic.name(), partition.id(), self.timeout)
                    .map_err(|source| LagError::Watermarks {
                        topic: topic.name().to_string(),
                        partition: partition.id(),
                        source,
                    })?;
                watermarks.push((topic.name().to_string(), partition.id(), low, high));
                list.add_partition(topic.name(), partition.id());
            }
        }
        watermarks.sort();
        if watermarks.is_empty() {
            return Ok(Vec::new());
        }
        let committed = self
            .consumer
            .committed_offsets(list, self.timeout)
            .map_err(|source| LagError::Committed { group: self.group.clone(), source })?;
        let committed: HashMap<(String, i32), i64> = committed
            .to_topic_map()
            .into_iter()
            .filter_map(|(key, offset)| match offset {
                Offset::Offset(n) => Some((key, n)),
                _ => None,
            })
            .collect();
        Ok(lag_of(&watermarks, &committed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_behind_counts_from_the_commit_or_the_earliest_record() {
        assert_eq!(records_behind(None, 0, 137), 137, "never committed: everything kept");
        assert_eq!(records_behind(None, 40, 137), 97);
        assert_eq!(records_behind(Some(100), 0, 137), 37);
        assert_eq!(records_behind(Some(137), 0, 137), 0);
        assert_eq!(records_behind(Some(10), 40, 137), 97, "commit older than the kept records");
        assert_eq!(records_behind(Some(150), 0, 137), 0, "never negative");
        assert_eq!(records_behind(None, 0, 0), 0);
    }

    #[test]
    fn lag_per_partition_joins_watermarks_and_commits() {
        let marks = vec![("canh-dns".to_string(), 0, 0, 5), ("canh-flow".to_string(), 1, 10, 90)];
        let committed = HashMap::from([(("canh-flow".to_string(), 1), 60)]);
        let lag = lag_of(&marks, &committed);
        assert_eq!(lag.len(), 2);
        assert_eq!((lag[0].committed, lag[0].lag), (None, 5));
        assert_eq!((lag[1].committed, lag[1].lag), (Some(60), 30));
    }
}
