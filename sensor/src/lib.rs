//! Canh's sensor: captures packets into flow records and protocol metadata and publishes them as
//! events. `main.rs` is a thin command-line shell over these modules.

pub mod admin;
pub mod capture;
pub mod config;
pub mod decode;
pub mod flow;
pub mod metrics;
pub mod packets;
pub mod produce;
pub mod sequence;
pub mod spool;
pub mod uplink;
