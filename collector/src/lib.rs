//! Canh's collector: consumes events from Kafka and stores them in ClickHouse. `main.rs` is a thin
//! command-line shell over these modules.

pub mod admin;
pub mod api;
pub mod auth;
pub mod config;
pub mod consume;
pub mod detect;
pub mod lag;
pub mod metrics;
pub mod query;
pub mod rollup;
pub mod store;
pub mod tls;
