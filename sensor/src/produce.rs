//! Publishing events to Kafka. One topic per dataset family (`<prefix><dataset>`); the message key
//! keeps related events on one partition: the Community ID for network events, the sensor id for
//! the rest.

use crate::config::KafkaSection;
use canh_event::Event;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum UplinkError {
    #[error("creating the kafka producer for {brokers}: {source}")]
    Create { brokers: String, source: KafkaError },
    #[error("producing to topic {topic}: {source}")]
    Produce { topic: String, source: KafkaError },
    #[error("kafka did not acknowledge {pending} events within {timeout:?}")]
    FlushTimeout { pending: i32, timeout: Duration },
    #[error("kafka refused {failed} events")]
    Refused { failed: u64 },
}

/// Counts Kafka's acknowledgements.
pub struct DeliveryCounter {
    delivered: prometheus::IntCounter,
    failed: prometheus::IntCounter,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        match result {
            Ok(_) => self.delivered.inc(),
            Err((err, _)) => {
                self.failed.inc();
                tracing::error!(error = %err, "kafka refused an event");
            }
        }
    }
}

pub struct Uplink {
    producer: BaseProducer<DeliveryCounter>,
    topic_prefix: String,
    failed: prometheus::IntCounter,
}

impl Uplink {
    pub fn connect(
        kafka: &KafkaSection,
        linger: Duration,
        delivered: prometheus::IntCounter,
        failed: prometheus::IntCounter,
    ) -> Result<Uplink, UplinkError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &kafka.brokers)
            .set("compression.type", &kafka.compression)
            .set("enable.idempotence", kafka.idempotence.to_string())
            .set("linger.ms", linger.as_millis().to_string())
            .set("batch.size", (1 << 20).to_string())
            .set("queue.buffering.max.messages", "200000")
            .set("message.timeout.ms", "300000")
            .set("security.protocol", &kafka.security_protocol);
        if let Some(mechanism) = &kafka.sasl_mechanism {
            client.set("sasl.mechanism", mechanism);
        }
        if let Ok(user) = std::env::var("CANH_KAFKA_USERNAME") {
            client.set("sasl.username", user);
        }
        if let Ok(password) = std::env::var("CANH_KAFKA_PASSWORD") {
            client.set("sasl.password", password);
        }
        if let Some(ca) = &kafka.ssl_ca_location {
            client.set("ssl.ca.location", ca.display().to_string());
        }
        let producer = client
            .create_with_context(DeliveryCounter { delivered, failed: failed.clone() })
            .map_err(|source| UplinkError::Create { brokers: kafka.brokers.clone(), source })?;
        Ok(Uplink { producer, topic_prefix: kafka.topic_prefix.clone(), failed })
    }

    /// Queue one event. Blocks while librdkafka's queue is full (back-pressure to the reader).
    pub fn send(&self, event: &Event) -> Result<(), UplinkError> {
        let topic = format!("{}{}", self.topic_prefix, event.event.dataset.as_str());
        let payload = event.to_json();
        let key = event
            .network
            .as_ref()
            .and_then(|n| n.community_id.as_deref())
            .unwrap_or(&event.observer.id);
        let mut record = BaseRecord::to(&topic).payload(&payload).key(key);
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.producer.poll(Duration::from_millis(50));
                }
                Err((source, _)) => return Err(UplinkError::Produce { topic, source }),
            }
        }
        self.producer.poll(Duration::ZERO);
        Ok(())
    }

    /// Wait until Kafka acknowledged everything queued; fail if anything was refused.
    pub fn flush(&self, timeout: Duration) -> Result<(), UplinkError> {
        if self.producer.flush(timeout).is_err() {
            return Err(UplinkError::FlushTimeout {
                pending: self.producer.in_flight_count(),
                timeout,
            });
        }
        match self.failed.get() {
            0 => Ok(()),
            failed => Err(UplinkError::Refused { failed }),
        }
    }
}
