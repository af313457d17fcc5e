//! Canh's event schema: every record that travels on Kafka between the sensor and the collector.
//!
//! Events are JSON objects nested the Elastic Common Schema way (`{"source":{"ip":..}}`) and use ECS
//! field names wherever ECS has one. This crate has no I/O and no async: it defines the types, their
//! JSON encoding, the deterministic `event.id` and the Community ID flow hash.

pub mod community_id;
mod id;
pub mod json;
pub mod kafka;
pub mod pack;
mod schema;
mod timestamp;

pub use id::{event_id, event_id_bytes, event_id_with_prefix, sensor_prefix, write_event_id};
pub use schema::*;
pub use timestamp::{Timestamp, TimestampError};

/// Version of this schema, carried by every event as `canh.schema_version`. Raise it when a field
/// changes meaning or type; adding an optional field does not need a new version.
pub const SCHEMA_VERSION: u32 = 1;
